"""Delay schedules as pure functions: how long before attempt n, what the headers ask for.

`delay_before(backoff, attempt, rand)` is the whole schedule of a `retry` or a `loopUntil`:
tests check sequences of it without sleeping, and the drivers only ever ask it "how long before
attempt n?". The policies themselves (`Backoff` and the rest) are the load-time model, in
`lamrunner.definition.policies`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from lamrunner.definition.policies import Backoff


def base_delay(backoff: Backoff, attempt: int) -> float:
    """Seconds before attempt `attempt` (1-based), before jitter.

    delays: the (n-1)th of them, the last one repeating. fixed: initialDelay. exponential:
    min(initialDelay * multiplier^(n-2), maxDelay), computed without overflow for any attempt
    number.
    """
    if attempt < 2:
        return 0.0
    if backoff.delays:
        return backoff.delays[min(attempt - 2, len(backoff.delays) - 1)]
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
    if backoff.jitter == "none":
        return delay
    if backoff.jitter == "full":
        return delay * rand
    if backoff.jitter == "equal":
        return delay / 2 + delay / 2 * rand
    return delay


def delay_bounds(backoff: Backoff) -> tuple[float, float]:
    """[floor, ceiling] of the delays the server or the body decide: [initialDelay, maxDelay],
    or with `delays` [the shortest, the longest of them]."""
    if backoff.delays:
        return min(backoff.delays), max(backoff.delays)
    return backoff.initial_delay, max(backoff.initial_delay, backoff.max_delay)


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


def server_delay(headers: Mapping[str, str], now_epoch: float) -> float | None:
    """Seconds the response's headers ask to wait before the next request, or None: the
    longest of `Retry-After` (seconds or an HTTP date), `X-Poll-Interval` (seconds) and
    `RateLimit-Reset` (seconds) when `RateLimit-Remaining` is 0. Names are lower-cased."""
    if DELAY_HEADERS.isdisjoint(headers):
        return None  # the common answer: nothing asked (one check per attempt)
    retry_after, interval = headers.get("retry-after"), headers.get("x-poll-interval")
    remaining = headers.get("ratelimit-remaining")
    asked = [retry_after_seconds(retry_after, now_epoch), _seconds(interval)]
    if (remaining or "").strip() == "0":
        asked.append(_seconds(headers.get("ratelimit-reset")))
    found = [s for s in asked if s is not None]
    return max(found) if found else None


# the headers `server_delay` reads a delay from (RateLimit-Reset only with RateLimit-Remaining)
DELAY_HEADERS = frozenset({"retry-after", "x-poll-interval", "ratelimit-remaining"})


def _seconds(value: str | None) -> float | None:
    """A header's delta-seconds (a number >= 0), or None when absent or not a number."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
