"""Retry and polling policies: small frozen objects, parsed and validated at load time.

The schedules they describe (how long before attempt n, what a `Retry-After` asks for) are
pure decisions and live with the others, in `lamrunner.decide.schedules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lamrunner import defaults
from lamrunner.definition.validation import (
    check_keys,
    expect_bool,
    expect_int,
    expect_number,
    expect_str,
    type_name,
)
from lamrunner.errors import DefinitionError
from lamrunner.units import parse_duration

STRATEGIES = ("fixed", "exponential")
JITTERS = ("none", "full", "equal")
EXCEPTION_KINDS = ("timeout", "connection", "protocol")
DEFAULT_RETRYABLE_STATUSES = defaults.RETRYABLE_STATUSES
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Backoff:
    """How long to wait between attempts; shared by `retry` and `loopUntil`."""

    strategy: str = defaults.POLL_STRATEGY
    initial_delay: float = defaults.INITIAL_DELAY
    max_delay: float = defaults.MAX_DELAY
    multiplier: float = defaults.MULTIPLIER
    jitter: str = defaults.JITTER
    delays: tuple[float, ...] = ()  # an explicit schedule (`delays:`); the last one repeats


@dataclass(frozen=True)
class RetryPolicy:
    """Transient-failure retries of one request (`retry:`)."""

    max_attempts: int
    backoff: Backoff
    retryable_statuses: frozenset[int] = DEFAULT_RETRYABLE_STATUSES
    retryable_exceptions: frozenset[str] = defaults.RETRYABLE_EXCEPTIONS
    max_throttle_wait: float = defaults.MAX_THROTTLE_WAIT


@dataclass(frozen=True)
class HistoryWindow:
    """Which attempts of a poll keep a history row (`loopUntil.history`): the first `first`
    and the last `last`; the ones between are counted, not kept."""

    first: int = defaults.HISTORY_FIRST
    last: int = defaults.HISTORY_LAST


@dataclass(frozen=True)
class PollPolicy:
    """Polling until a JS condition holds (`loopUntil:`)."""

    condition: str
    max_attempts: int = defaults.POLL_MAX_ATTEMPTS
    backoff: Backoff = Backoff()
    fail_when: str | None = None
    timeout: float | None = None
    ignore_errors: bool = False
    next_delay: str | None = None  # JS: (ctx) => milliseconds before the next attempt
    max_throttle_wait: float = defaults.MAX_THROTTLE_WAIT
    pending_when: str | None = None  # given: an answer neither done, failed nor pending fails
    conditional: bool = defaults.CONDITIONAL_POLLS  # ETag / Last-Modified -> conditional GETs
    progress: str | None = None  # JS: ctx -> a number (percent), shown with an ETA
    stall_timeout: float | None = defaults.STALL_TIMEOUT  # progress (or body) unchanged: fail
    history: HistoryWindow = HistoryWindow()
    # a non-2xx answer: None offers it to the conditions (loopUntil); "fail" fails the step
    # with HttpStatusError; "ignore" counts it as an attempt unseen by the conditions (a
    # poll step's failOnHttpError and ignoreIntermediateFailures, see definition.pollstep)
    http_errors: str | None = None


_BACKOFF_KEYS = ("strategy", "initialDelay", "maxDelay", "multiplier", "jitter", "delays")
_REPLACED_BY_DELAYS = ("strategy", "initialDelay", "maxDelay", "multiplier")
RETRY_KEYS = (
    "maxAttempts",
    *_BACKOFF_KEYS,
    "retryableStatusCodes",
    "retryableExceptions",
    "maxThrottleWait",
)
LOOP_KEYS = (
    "condition",
    "maxAttempts",
    *_BACKOFF_KEYS,
    "failWhen",
    "timeout",
    "ignoreErrors",
    "nextDelay",
    "maxThrottleWait",
    "pendingWhen",
    "conditional",
    "progress",
    "stallTimeout",
    "history",
)


def _state_in(names: tuple[str, ...]) -> str:
    listed = ", ".join(f"'{name}'" for name in names)
    return (
        "(ctx) => { const b = ctx.response; "
        "const s = b !== null && typeof b === 'object' ? (b.status ?? b.state) : undefined; "
        "if (typeof s !== 'string') return %s; "
        f"return [{listed}].includes(s.toLowerCase().replace(/[\\s_-]/g, '')); }}"
    )


# followAsync without a condition: "the operation is done" (see docs/polling-and-retry.md).
FOLLOW_DONE_CONDITION = (
    "(ctx) => ctx.status !== 202 && (" + (_state_in(defaults.FOLLOW_SUCCEEDED) % "true") + ")(ctx)"
)
FOLLOW_FAILED_CONDITION = (
    "(ctx) => ctx.status !== 202 && (" + (_state_in(defaults.FOLLOW_FAILED) % "false") + ")(ctx)"
)
HISTORY_KEYS = ("first", "last")


def parse_retry(data: Any, where: str) -> RetryPolicy:
    """Validate a `retry` mapping into a RetryPolicy."""
    if not isinstance(data, Mapping):
        raise DefinitionError(f"{where}: expected a mapping with at least maxAttempts")
    check_keys(data, RETRY_KEYS, where, required=("maxAttempts",))
    statuses = data.get("retryableStatusCodes", sorted(DEFAULT_RETRYABLE_STATUSES))
    if not isinstance(statuses, list) or not all(_is_status(s) for s in statuses):
        raise DefinitionError(f"{where}.retryableStatusCodes: expected a list of HTTP status codes")
    kinds = data.get("retryableExceptions", sorted(defaults.RETRYABLE_EXCEPTIONS))
    if not isinstance(kinds, list) or any(k not in EXCEPTION_KINDS for k in kinds):
        raise DefinitionError(
            f"{where}.retryableExceptions: expected a list of {', '.join(EXCEPTION_KINDS)}"
        )
    return RetryPolicy(
        max_attempts=expect_int(data["maxAttempts"], f"{where}.maxAttempts", minimum=1),
        backoff=_parse_backoff(data, where, default_strategy=defaults.RETRY_STRATEGY),
        retryable_statuses=frozenset(statuses),
        retryable_exceptions=frozenset(kinds),
        max_throttle_wait=_throttle_wait(data, where),
    )


def parse_loop_until(data: Any, where: str, follow: bool = False) -> PollPolicy:
    """Validate a `loopUntil` mapping into a PollPolicy (the JS is compiled elsewhere).

    With `follow` (the request has `followAsync: true`) the condition may be left out: it is
    then "the operation is done" (FOLLOW_DONE_CONDITION), and without a failWhen too, a
    failed operation fails the poll (FOLLOW_FAILED_CONDITION)."""
    if not isinstance(data, Mapping):
        raise DefinitionError(f"{where}: expected a mapping with at least a condition")
    check_keys(data, LOOP_KEYS, where, required=() if follow else ("condition",))
    fail_when = data.get("failWhen")
    timeout = data.get("timeout")
    next_delay = data.get("nextDelay")
    pending_when = data.get("pendingWhen")
    progress = data.get("progress")
    stall = data.get("stallTimeout")
    condition = data.get("condition")
    if condition is None:
        condition = FOLLOW_DONE_CONDITION
        fail_when = FOLLOW_FAILED_CONDITION if fail_when is None else fail_when
    return PollPolicy(
        condition=expect_str(condition, f"{where}.condition"),
        max_attempts=expect_int(
            data.get("maxAttempts", defaults.POLL_MAX_ATTEMPTS), f"{where}.maxAttempts", minimum=1
        ),
        backoff=_parse_backoff(data, where, default_strategy=defaults.POLL_STRATEGY),
        fail_when=None if fail_when is None else expect_str(fail_when, f"{where}.failWhen"),
        timeout=None if timeout is None else parse_duration(timeout, f"{where}.timeout"),
        ignore_errors=expect_bool(data.get("ignoreErrors", False), f"{where}.ignoreErrors"),
        next_delay=None if next_delay is None else expect_str(next_delay, f"{where}.nextDelay"),
        max_throttle_wait=_throttle_wait(data, where),
        pending_when=(
            None if pending_when is None else expect_str(pending_when, f"{where}.pendingWhen")
        ),
        conditional=expect_bool(
            data.get("conditional", defaults.CONDITIONAL_POLLS), f"{where}.conditional"
        ),
        progress=None if progress is None else expect_str(progress, f"{where}.progress"),
        stall_timeout=None if stall is None else _positive(stall, f"{where}.stallTimeout"),
        history=parse_history(data.get("history"), f"{where}.history"),
    )


def parse_history(data: Any, where: str) -> HistoryWindow:
    """`history: {first: 5, last: 50}` (either key may be left out: its default)."""
    if data is None:
        return HistoryWindow()
    if not isinstance(data, Mapping):
        raise DefinitionError(
            f"{where}: expected a mapping like {{first: {defaults.HISTORY_FIRST}, "
            f"last: {defaults.HISTORY_LAST}}}, got {data!r}"
        )
    check_keys(data, HISTORY_KEYS, where)
    return HistoryWindow(
        first=expect_int(data.get("first", defaults.HISTORY_FIRST), f"{where}.first", minimum=0),
        last=expect_int(data.get("last", defaults.HISTORY_LAST), f"{where}.last", minimum=1),
    )


def _positive(value: Any, where: str) -> float:
    seconds = parse_duration(value, where)
    if seconds <= 0:
        raise DefinitionError(f"{where}: expected a duration above zero, got {value!r}")
    return seconds


def _throttle_wait(data: Mapping[str, Any], where: str) -> float:
    value = data.get("maxThrottleWait", defaults.MAX_THROTTLE_WAIT)
    return parse_duration(value, f"{where}.maxThrottleWait")


def _parse_delays(data: Mapping[str, Any], where: str) -> tuple[float, ...]:
    """`delays: [1s, 5s, 30s, 2m]`: a non-empty list of durations, alone of the schedule."""
    if "delays" not in data:
        return ()
    value = data["delays"]
    if not isinstance(value, list) or not value:
        raise DefinitionError(
            f"{where}.delays: expected a non-empty list of durations, got {type_name(value)}"
        )
    both = [key for key in _REPLACED_BY_DELAYS if key in data]
    if both:
        raise DefinitionError(
            f"{where}: delays and {both[0]} together; delays is the whole schedule "
            f"(it replaces {', '.join(_REPLACED_BY_DELAYS)})"
        )
    return tuple(parse_duration(d, f"{where}.delays[{i}]") for i, d in enumerate(value))


def _parse_backoff(data: Mapping[str, Any], where: str, *, default_strategy: str) -> Backoff:
    strategy = data.get("strategy", default_strategy)
    if strategy not in STRATEGIES:
        raise DefinitionError(f"{where}.strategy: {strategy!r} is not one of fixed, exponential")
    jitter = data.get("jitter", defaults.JITTER)
    if jitter not in JITTERS:
        raise DefinitionError(f"{where}.jitter: {jitter!r} is not one of none, full, equal")
    return Backoff(
        strategy=strategy,
        initial_delay=parse_duration(
            data.get("initialDelay", defaults.INITIAL_DELAY), f"{where}.initialDelay"
        ),
        max_delay=parse_duration(data.get("maxDelay", defaults.MAX_DELAY), f"{where}.maxDelay"),
        multiplier=expect_number(
            data.get("multiplier", defaults.MULTIPLIER), f"{where}.multiplier", minimum=1
        ),
        jitter=jitter,
        delays=_parse_delays(data, where),
    )


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599
