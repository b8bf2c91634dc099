"""Deciding, apart from doing: what happens after one attempt of a retry or a poll.

`PollState` is a plain, serializable record of a loop's progress (attempt count, next due time,
deadline), so a run store can checkpoint it and a later process can resume the loop exactly. Its
saved form is flat JSON with its fields; the optional ones — `throttled` and `throttled_s` when
not 0, and when set the URL a 202 sent the poll to, its progress and when its answers last
changed, and a poll with an onGiveUp its last body (OPTIONAL_FIELDS) — are left out otherwise, so states saved before them load as they
were. `from_dict` refuses anything else. `decide_poll` and `decide_retry` are pure: (policy,
state, what just happened, now) → next move, and `choose_delay` is the rule for how long that
move waits. The async driver in `calls` only sends, evaluates and sleeps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

from lamrunner.decide.schedules import delay_before, delay_bounds
from lamrunner.definition.policies import RETRY_AFTER_STATUSES, Backoff, PollPolicy, RetryPolicy
from lamrunner.errors import (
    DeadlineExceeded,
    DefinitionError,
    HttpStatusError,
    LamrunnerError,
    PollingExhausted,
    PollingFailed,
    PollingStalled,
    TransportError,
    UnexpectedResponse,
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
    throttled: int = 0  # attempts answered 429/503 + Retry-After: not counted in maxAttempts
    throttled_s: float = 0.0  # seconds waited because of them, retries' throttled waits too
    # optional (saved only when set): where a 202 sent the poll (followAsync)
    follow_url: str | None = None
    # progress: the last value, and the first one seen ([epoch, value]) for the ETA
    progress: float | None = None
    progress_origin: list[float] | None = None
    # stalls: a digest of the progress (or the body) and when it last changed
    fingerprint: str | None = None
    changed_at: float | None = None

    # the last response's body, for onGiveUp's `<<last.response.…>>` after a restart or a
    # `lamrunner cancel` (kept only for a poll with onGiveUp, and only when it is small)
    last_response: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The saved form: the fields by name, flat and JSON-ready, the optional ones only
        when set (the throttle counts when not 0), so a poll that uses none of them saves
        what it saved before they came. Runs after every attempt, so a copy of the instance
        dict (0.1 µs; asdict's deep copy costs 60 µs)."""
        saved = self.__dict__.copy()
        if not (self.throttled or self.throttled_s):
            del saved["throttled"], saved["throttled_s"]
        for name in OPTIONAL_FIELDS:
            if saved[name] is None:
                del saved[name]
        if self.progress_origin is not None:
            saved["progress_origin"] = list(self.progress_origin)
        return saved

    def copy(self) -> PollState:
        """A snapshot: the loop that owns this state goes on changing it."""
        snapshot = object.__new__(PollState)
        snapshot.__dict__ = self.__dict__.copy()
        return snapshot

    def update_from(self, other: PollState) -> None:
        """Become a snapshot of `other` again, in place (after every attempt: no allocation)."""
        self.__dict__.update(other.__dict__)

    @classmethod
    def from_dict(cls, data: Any, where: str = "poll state") -> PollState:
        """The inverse of `to_dict`. Every field must be there with its type; an unknown key
        is refused (a saved form this code does not fully understand is not resumed on a
        guess). Errors are DefinitionErrors naming `where` and the field."""
        if not isinstance(data, dict):
            raise DefinitionError(f"{where}: expected an object, got {_shown(data)}")
        missing = [name for name in _REQUIRED_FIELDS if name not in data]
        if missing:
            raise DefinitionError(f"{where}: missing {', '.join(missing)}")
        unknown = sorted(str(key) for key in data if key not in _POLL_FIELDS)
        if unknown:
            raise DefinitionError(f"{where}: unknown {', '.join(unknown)}")
        return cls(
            started_at=_time(data, "started_at", where),
            deadline=_time(data, "deadline", where, optional=True),
            attempt=_count(data, "attempt", where),
            requests=_count(data, "requests", where),
            next_due=_time(data, "next_due", where),
            last_status=_status(data, "last_status", where),
            last_excerpt=_text(data, "last_excerpt", where),
            last_error=_text(data, "last_error", where),
            throttled=_count(data, "throttled", where) if "throttled" in data else 0,
            throttled_s=_seconds(data, "throttled_s", where) if "throttled_s" in data else 0.0,
            follow_url=_text(data, "follow_url", where, optional=True),
            progress=_time(data, "progress", where, optional=True, what="a number"),
            progress_origin=_pair(data, "progress_origin", where),
            fingerprint=_text(data, "fingerprint", where, optional=True),
            changed_at=_time(data, "changed_at", where, optional=True),
            last_response=data.get("last_response"),
        )

    @classmethod
    def start(cls, policy: PollPolicy, now: float) -> PollState:
        deadline = None if policy.timeout is None else now + policy.timeout
        return cls(started_at=now, deadline=deadline, next_due=now)


_POLL_FIELDS = tuple(f.name for f in fields(PollState))
_ZERO_WHEN_UNSAVED = ("throttled", "throttled_s")  # later additions: 0 when not saved
OPTIONAL_FIELDS = (
    "follow_url",
    "progress",
    "progress_origin",
    "fingerprint",
    "changed_at",
    "last_response",
)
_REQUIRED_FIELDS = tuple(
    name for name in _POLL_FIELDS if name not in OPTIONAL_FIELDS + _ZERO_WHEN_UNSAVED
)


def _seconds(data: dict[str, Any], key: str, where: str) -> float:
    value = data[key]
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and value >= 0:
        return float(value)
    raise DefinitionError(f"{where}: {key}: expected seconds >= 0 (a number), got {_shown(value)}")


def _time(
    data: dict[str, Any],
    key: str,
    where: str,
    optional: bool = False,
    what: str = "epoch seconds (a number)",
) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    expected = f"{what} or null" if optional else what
    raise DefinitionError(f"{where}: {key}: expected {expected}, got {_shown(value)}")


def _pair(data: dict[str, Any], key: str, where: str) -> list[float] | None:
    value = data.get(key)
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) == 2
    if ok and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        return [float(value[0]), float(value[1])]
    raise DefinitionError(
        f"{where}: {key}: expected [epoch seconds, value] or null, got {_shown(value)}"
    )


def _count(data: dict[str, Any], key: str, where: str) -> int:
    value = data[key]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise DefinitionError(f"{where}: {key}: expected a whole number >= 0, got {_shown(value)}")


def _status(data: dict[str, Any], key: str, where: str) -> int | None:
    value = data[key]
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise DefinitionError(f"{where}: {key}: expected an HTTP status or null, got {_shown(value)}")


def _text(data: dict[str, Any], key: str, where: str, optional: bool = False) -> str | None:
    value = data.get(key) if optional else data[key]
    if value is None or isinstance(value, str):
        return value
    raise DefinitionError(f"{where}: {key}: expected a string or null, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A wrong value, short, for an error message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(slots=True)
class Observation:
    """What one poll attempt saw. (Made every attempt: slots, not frozen, which costs 4x.)"""

    status: int | None = None
    excerpt: str | None = None
    condition: bool = False
    fail_when: bool = False
    error: TransportError | HttpStatusError | None = None  # HttpStatusError: a poll step's
    retry_after: float | None = None  # what the headers ask for (`server_delay`), any status
    next_delay: float | None = None  # seconds `nextDelay` returned
    pending: bool = False  # pendingWhen held (asked only when it is given)
    rejected: bool = False  # an error answer (>= 400) to a poll that stops at one (actionFrom)


@dataclass(slots=True)
class Succeed:
    pass


@dataclass(slots=True)
class Wait:
    until: float  # epoch seconds of the next attempt
    delay: float
    throttled: bool = False  # waiting out a 429/503 + Retry-After: not counted in maxAttempts


@dataclass(slots=True)
class Fail:
    error: LamrunnerError


Decision = Succeed | Wait | Fail  # values: made every attempt, so slotted, not frozen


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
    if seen.rejected and not is_throttle(seen.status, seen.retry_after):
        what = f"the answer was HTTP {seen.status} (a poll with actionFrom stops at an error)"
        return Fail(PollingFailed(_summary(what, state), **_counts(state)))
    if policy.pending_when is not None and seen.error is None and not seen.pending:
        what = "the answer is neither done (condition), failed (failWhen) nor pending (pendingWhen)"
        return Fail(UnexpectedResponse(_summary(what, state), **_counts(state)))
    stalled = None if policy.stall_timeout is None else stall_error(policy, state, now)
    if stalled is not None:
        return Fail(stalled)
    throttled = seen.retry_after is not None and is_throttle(seen.status, seen.retry_after)
    counted = state.attempt - state.throttled  # this attempt included, throttled or not
    if not throttled and counted >= policy.max_attempts:
        what = f"the condition did not hold after {state.attempt} attempts"
        return Fail(PollingExhausted(_summary(what, state), **_counts(state)))
    if seen.retry_after is None and seen.next_delay is None:  # most attempts: the schedule
        delay, throttled = delay_before(policy.backoff, counted + 1, rand), False
    else:
        delay, throttled = choose_delay(
            policy.backoff, counted + 1, seen.status, seen.retry_after, seen.next_delay, rand
        )
    until = now + delay
    if state.deadline is not None and until > state.deadline:
        what = (
            f"the condition did not hold within the {format_duration(policy.timeout or 0)} "
            f"timeout (attempt {state.attempt + 1} would be due after it)"
        )
        return Fail(DeadlineExceeded(_summary(what, state), **_counts(state)))
    if throttled and state.throttled_s + delay > policy.max_throttle_wait:
        what = (
            f"throttled (429/503 with Retry-After) for {format_duration(state.throttled_s)}; "
            f"waiting {format_duration(delay)} more would pass maxThrottleWait "
            f"({format_duration(policy.max_throttle_wait)})"
        )
        return Fail(DeadlineExceeded(_summary(what, state), **_counts(state)))
    return Wait(until, delay, throttled)


def is_throttle(status: int | None, asked: float | None) -> bool:
    """A rate limit to wait out: a 429 or 503 whose headers say how long (`server_delay`)."""
    return asked is not None and status in RETRY_AFTER_STATUSES


def clamp_delay(seconds: float, backoff: Backoff) -> float:
    """A delay the server or the body decided, within `delay_bounds` ([initialDelay,
    maxDelay], or the shortest and longest of `delays`)."""
    floor, ceiling = delay_bounds(backoff)
    return min(max(seconds, floor), ceiling)


def choose_delay(
    backoff: Backoff,
    attempt: int,
    status: int | None,
    asked: float | None,
    next_delay: float | None,
    rand: float = 0.5,
) -> tuple[float, bool]:
    """Seconds before attempt `attempt` of the schedule (throttled attempts do not advance
    it), and whether that wait is throttled. The rule, in order:

    - a 429 or 503 whose headers ask for a delay (`asked`) is a rate limit: the scheduled delay
      or `asked` when longer, not clamped (sending sooner only earns another 429);
    - else, when the headers (`asked`, any status) or `nextDelay` ask for a delay: the longest
      of them, clamped by `clamp_delay`, without jitter;
    - else the schedule (`delay_before`), jitter on top.

    The deadline is the caller's: a delay that ends past it ends the loop."""
    scheduled = delay_before(backoff, attempt, rand)
    if asked is None and next_delay is None:
        return scheduled, False  # nothing asked for a delay: the schedule (most attempts)
    if is_throttle(status, asked):
        assert asked is not None
        return max(scheduled, asked), True
    wanted = [s for s in (asked, next_delay) if s is not None]
    if wanted:
        return clamp_delay(max(wanted), backoff), False
    return scheduled, False


def stall_error(policy: PollPolicy, state: PollState, now: float) -> PollingStalled | None:
    """`stallTimeout`: the error when the progress (or the body) has not changed for it."""
    limit = policy.stall_timeout
    if limit is None or state.changed_at is None or now - state.changed_at < limit:
        return None
    what = "progress" if policy.progress is not None else "response"
    message = (
        f"the {what} did not change for {format_duration(now - state.changed_at)} "
        f"(stallTimeout {format_duration(limit)})"
    )
    return PollingStalled(_summary(message, state), **_counts(state))


def note_progress(
    state: PollState, now: float, value: Any, fingerprint: str | None, percent: bool
) -> None:
    """Record one answer's progress `value` (a number, when `percent`) and the digest of what
    a stall is judged on: `changed_at` moves only when the digest does."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if percent and number and math.isfinite(value):
        state.progress = float(value)
        if state.progress_origin is None:
            state.progress_origin = [now, float(value)]
    if fingerprint is not None and fingerprint != state.fingerprint:
        state.fingerprint, state.changed_at = fingerprint, now
    elif state.changed_at is None:
        state.changed_at = now


def eta_seconds(state: PollState, now: float, total: float = 100.0) -> float | None:
    """Seconds until the progress reaches `total` at the rate seen since it was first seen;
    None until it has moved forward (or when it already got there)."""
    if state.progress is None or state.progress_origin is None:
        return None
    at, first = state.progress_origin
    gained, took = state.progress - first, now - at
    if gained <= 0 or took <= 0:
        return None
    return max(0.0, (total - state.progress) * took / gained)


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
    wait = decide_retry_wait(policy, attempt, status, error, retry_after, 0.0, rand)
    return None if wait is None else wait.delay


def decide_retry_wait(
    policy: RetryPolicy,
    attempt: int,
    status: int | None,
    error: TransportError | None,
    retry_after: float | None,
    throttled_s: float = 0.0,
    rand: float = 0.5,
) -> Wait | None:
    """The wait before retrying after try `attempt` (earlier throttled tries left out), or
    None to stop retrying; `until` is relative (the delay). A throttled wait (a 429/503 whose
    headers ask for a delay) does not count against `maxAttempts` but, with `throttled_s`
    already waited so, must fit in `maxThrottleWait`."""
    if error is not None:
        retryable = error.kind in policy.retryable_exceptions
        retry_after = None
    else:
        retryable = status in policy.retryable_statuses
    if not retryable:
        return None
    throttled = is_throttle(status, retry_after)
    if not throttled and attempt >= policy.max_attempts:
        return None
    delay, throttled = choose_delay(policy.backoff, attempt + 1, status, retry_after, None, rand)
    if throttled and throttled_s + delay > policy.max_throttle_wait:
        return None
    return Wait(delay, delay, throttled)


def _counts(state: PollState) -> dict[str, Any]:
    return {"attempts": state.attempt, "last_status": state.last_status}


def _summary(what: str, state: PollState) -> str:
    parts = [what, f"attempts: {state.attempt}"]
    if state.throttled or state.throttled_s:
        waited = format_duration(state.throttled_s)
        parts.append(f"throttled: {state.throttled} attempts, {waited} waited")
    if state.last_status is not None:
        parts.append(f"last status: {state.last_status}")
    if state.last_error:
        parts.append(f"last error: {state.last_error}")
    if state.last_excerpt is not None:
        parts.append(f"last response: {state.last_excerpt}")
    return "; ".join(parts)
