"""Retry and polling policies: small frozen objects, and delay schedules as pure functions.

`delay_before(backoff, attempt, rand)` is the whole schedule: tests check sequences of it
without sleeping, and the drivers only ever ask it "how long before attempt n?".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from lamrunner import defaults
from lamrunner.definition.validation import (
    check_keys,
    expect_bool,
    expect_int,
    expect_number,
    expect_str,
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


@dataclass(frozen=True)
class RetryPolicy:
    """Transient-failure retries of one request (`retry:`)."""

    max_attempts: int
    backoff: Backoff
    retryable_statuses: frozenset[int] = DEFAULT_RETRYABLE_STATUSES
    retryable_exceptions: frozenset[str] = defaults.RETRYABLE_EXCEPTIONS


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
    history: HistoryWindow = HistoryWindow()


def base_delay(backoff: Backoff, attempt: int) -> float:
    """Seconds before attempt `attempt` (1-based), before jitter.

    fixed: initialDelay. exponential: min(initialDelay * multiplier^(n-2), maxDelay), computed
    without overflow for any attempt number.
    """
    if attempt < 2:
        return 0.0
    if backoff.strategy == "fixed":
        return backoff.initial_delay
    if backoff.initial_delay <= 0:
        return 0.0
    exponent = attempt - 2
    if backoff.multiplier > 1:
        ceiling = math.log(max(backoff.max_delay, 1e-12) / backoff.initial_delay)
        if exponent * math.log(backoff.multiplier) >= ceiling:
            return backoff.max_delay
    return min(backoff.initial_delay * backoff.multiplier**exponent, backoff.max_delay)


def delay_before(backoff: Backoff, attempt: int, rand: float = 0.5) -> float:
    """The schedule with jitter applied; `rand` in [0, 1) is injected so tests stay exact."""
    delay = base_delay(backoff, attempt)
    if backoff.jitter == "full":
        return delay * rand
    if backoff.jitter == "equal":
        return delay / 2 + delay / 2 * rand
    return delay


def retry_after_seconds(value: str | None, now_epoch: float) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):  # 3.10+: ValueError, never None
            return None
        seconds = when.timestamp() - now_epoch
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


_BACKOFF_KEYS = ("strategy", "initialDelay", "maxDelay", "multiplier", "jitter")
RETRY_KEYS = ("maxAttempts", *_BACKOFF_KEYS, "retryableStatusCodes", "retryableExceptions")
LOOP_KEYS = (
    "condition",
    "maxAttempts",
    *_BACKOFF_KEYS,
    "failWhen",
    "timeout",
    "ignoreErrors",
    "history",
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
    )


def parse_loop_until(data: Any, where: str) -> PollPolicy:
    """Validate a `loopUntil` mapping into a PollPolicy (the JS is compiled elsewhere)."""
    if not isinstance(data, Mapping):
        raise DefinitionError(f"{where}: expected a mapping with at least a condition")
    check_keys(data, LOOP_KEYS, where, required=("condition",))
    fail_when = data.get("failWhen")
    timeout = data.get("timeout")
    return PollPolicy(
        condition=expect_str(data["condition"], f"{where}.condition"),
        max_attempts=expect_int(
            data.get("maxAttempts", defaults.POLL_MAX_ATTEMPTS), f"{where}.maxAttempts", minimum=1
        ),
        backoff=_parse_backoff(data, where, default_strategy=defaults.POLL_STRATEGY),
        fail_when=None if fail_when is None else expect_str(fail_when, f"{where}.failWhen"),
        timeout=None if timeout is None else parse_duration(timeout, f"{where}.timeout"),
        ignore_errors=expect_bool(data.get("ignoreErrors", False), f"{where}.ignoreErrors"),
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
    )


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599
