"""Deciding, apart from doing: what happens after one attempt of a retry or a poll.

`PollState` is a plain, serializable record of a loop's progress (attempt count, next due time,
deadline), so a run store can checkpoint it and a later process can resume the loop exactly.
`decide_poll` and `decide_retry` are pure: (policy, state, what just happened, now) → next move.
The async driver in `calls` only sends, evaluates and sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lamrunner.errors import (
    DeadlineExceeded,
    LamrunnerError,
    PollingExhausted,
    PollingFailed,
    TransportError,
)
from lamrunner.definition.policies import (
    RETRY_AFTER_STATUSES,
    PollPolicy,
    RetryPolicy,
    delay_before,
)
from lamrunner.units import format_duration


@dataclass
class PollState:
    """A loop's progress; times are epoch seconds so they survive a process restart."""

    started_at: float
    deadline: float | None = None
    attempt: int = 0  # attempts made so far
    requests: int = 0  # HTTP requests sent, retries included
    next_due: float = 0.0
    last_status: int | None = None
    last_excerpt: str | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)  # flat and JSON-ready; asdict's deep copy costs 60 µs/attempt

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PollState:
        return cls(**data)

    @classmethod
    def start(cls, policy: PollPolicy, now: float) -> PollState:
        deadline = None if policy.timeout is None else now + policy.timeout
        return cls(started_at=now, deadline=deadline, next_due=now)


@dataclass(frozen=True)
class Observation:
    """What one poll attempt saw."""

    status: int | None = None
    excerpt: str | None = None
    condition: bool = False
    fail_when: bool = False
    error: TransportError | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Succeed:
    pass


@dataclass(frozen=True)
class Wait:
    until: float  # epoch seconds of the next attempt
    delay: float


@dataclass(frozen=True)
class Fail:
    error: LamrunnerError


Decision = Succeed | Wait | Fail


def decide_poll(
    policy: PollPolicy, state: PollState, seen: Observation, now: float, rand: float = 0.5
) -> Decision:
    """After attempt `state.attempt`: stop with success, fail, or wait until the next one."""
    if seen.error is not None and not policy.ignore_errors:
        return Fail(seen.error)
    if seen.condition:
        return Succeed()
    if seen.fail_when:
        return Fail(PollingFailed(_summary("failWhen held", state), **_counts(state)))
    if state.attempt >= policy.max_attempts:
        what = f"the condition did not hold after {state.attempt} attempts"
        return Fail(PollingExhausted(_summary(what, state), **_counts(state)))
    delay = delay_before(policy.backoff, state.attempt + 1, rand)
    if seen.retry_after is not None and seen.status in RETRY_AFTER_STATUSES:
        delay = max(delay, seen.retry_after)
    until = now + delay
    if state.deadline is not None and until > state.deadline:
        what = (
            f"the condition did not hold within the {format_duration(policy.timeout or 0)} "
            f"timeout (attempt {state.attempt + 1} would be due after it)"
        )
        return Fail(DeadlineExceeded(_summary(what, state), **_counts(state)))
    return Wait(until, delay)


def deadline_error(policy: PollPolicy, state: PollState) -> DeadlineExceeded:
    """The error for a loop whose deadline passed while an attempt was under way."""
    what = f"the condition did not hold within the {format_duration(policy.timeout or 0)} timeout"
    return DeadlineExceeded(_summary(what, state), **_counts(state))


def decide_retry(
    policy: RetryPolicy,
    attempt: int,
    status: int | None,
    error: TransportError | None,
    retry_after: float | None,
    rand: float = 0.5,
) -> float | None:
    """Seconds to wait before retrying after try `attempt`, or None to stop retrying."""
    if attempt >= policy.max_attempts:
        return None
    if error is not None:
        retryable = error.kind in policy.retryable_exceptions
    else:
        retryable = status in policy.retryable_statuses
    if not retryable:
        return None
    delay = delay_before(policy.backoff, attempt + 1, rand)
    if retry_after is not None and error is None:
        delay = max(delay, retry_after)
    return delay


def _counts(state: PollState) -> dict[str, Any]:
    return {"attempts": state.attempt, "last_status": state.last_status}


def _summary(what: str, state: PollState) -> str:
    parts = [what, f"attempts: {state.attempt}"]
    if state.last_status is not None:
        parts.append(f"last status: {state.last_status}")
    if state.last_error:
        parts.append(f"last error: {state.last_error}")
    if state.last_excerpt is not None:
        parts.append(f"last response: {state.last_excerpt}")
    return "; ".join(parts)
