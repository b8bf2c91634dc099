"""A loop's schedule, seen before running (`lamrunner validate --explain`): pure arithmetic on
the policies, the same `delay_before` the loops use, no clock and no request.

For a `loopUntil` (with its request's `retry` inside each attempt) or a lone `retry`:

- the **timeline**: attempt 1 at 0 s, then each attempt's delay as a jitter range (`none`:
  exactly the delay; `full`: 0 … delay; `equal`: delay/2 … delay) and the range of times it
  is sent at, counting the delays only (requests take time too: see the worst case);
- where the **deadline** (`loopUntil.timeout`) cuts: the last attempt that can be sent, the
  first one that never can (due after the deadline even with the shortest delays), and the
  first one that may not be (due after it with the longest);
- the **worst case**: attempts, HTTP requests (retries included) and duration (the longest
  delays, and every request taking its whole `timeout`, each retry too; a deadline bounds it);
- what the same loop would cost as an **AWS Step Functions** standard workflow: per attempt a
  Task state, a Choice state and a Wait state (3 transitions), no Wait after the last, and one
  more Task transition per retry: `transitions = requests + 2 × attempts − 1`.

`Retry-After` is not counted: it can only lengthen a delay, never add a request, and a
deadline still bounds the duration.
"""

from __future__ import annotations

from typing import Any

from lamrunner import defaults
from lamrunner.decide.schedules import delay_before
from lamrunner.definition.policies import Backoff, PollPolicy, RetryPolicy

SFN_FORMULA = "requests + 2 x attempts - 1 (per attempt Task + Choice + Wait; a retry is a Task)"
_MAX_STEPS = 1_000_000  # attempts walked one by one; beyond, the delays have long been constant


def jitter_range(backoff: Backoff, attempt: int) -> tuple[float, float]:
    """The shortest and longest delay before `attempt` (the jitter's r at 0 and towards 1)."""
    return delay_before(backoff, attempt, 0.0), delay_before(backoff, attempt, 1.0)


def attempt_worst(retry: RetryPolicy | None, request_timeout: float) -> tuple[int, float]:
    """(requests, seconds) of one attempt at worst: every retry made, each timing out."""
    if retry is None:
        return 1, request_timeout
    waits = sum(jitter_range(retry.backoff, n)[1] for n in range(2, retry.max_attempts + 1))
    return retry.max_attempts, retry.max_attempts * request_timeout + waits


def explain_poll(
    policy: PollPolicy,
    retry: RetryPolicy | None,
    request_timeout: float,
    rows: int = defaults.EXPLAIN_TIMELINE_ROWS,
) -> dict[str, Any]:
    """The explanation of one `loopUntil` (see the module's docstring)."""
    deadline = policy.timeout
    earliest = latest = 0.0
    timeline: list[dict[str, Any]] = []
    last_possible, never, may_not = 0, None, None
    for n in range(1, min(policy.max_attempts, _MAX_STEPS) + 1):
        low, high = jitter_range(policy.backoff, n) if n > 1 else (0.0, 0.0)
        earliest, latest = earliest + low, latest + high
        if deadline is not None and earliest > deadline:
            never = n
            break
        if deadline is not None and may_not is None and latest > deadline:
            may_not = n
        last_possible = n
        row: dict[str, Any] = {"attempt": n, "atS": [_s(earliest), _s(latest)]}
        if n > 1:
            row["delayS"] = [_s(low), _s(high)]
        timeline.append(row)
    tries, per_attempt = attempt_worst(retry, request_timeout)
    attempts = last_possible
    duration = _latest_start(timeline) + attempts * per_attempt
    if deadline is not None:
        duration = min(duration, deadline)
    requests = attempts * tries
    return {
        "maxAttempts": policy.max_attempts,
        "strategy": policy.backoff.strategy,
        "jitter": policy.backoff.jitter,
        "timeline": _cut(timeline, rows),
        "elidedAttempts": max(0, len(timeline) - rows) if len(timeline) > rows else 0,
        "deadline": None
        if deadline is None
        else {
            "timeoutS": _s(deadline),
            "lastPossibleAttempt": last_possible,
            "neverSent": never,  # the first attempt due after it even at the shortest delays
            "maySkipFrom": may_not,  # the first one due after it at the longest delays
        },
        "worstCase": {"attempts": attempts, "requests": requests, "durationS": _s(duration)},
        "stepFunctions": step_functions(requests, attempts),
    }


def explain_retry(
    retry: RetryPolicy, request_timeout: float, rows: int = defaults.EXPLAIN_TIMELINE_ROWS
) -> dict[str, Any]:
    """The explanation of a lone request's `retry` (no loopUntil)."""
    earliest = latest = 0.0
    timeline: list[dict[str, Any]] = []
    for n in range(1, retry.max_attempts + 1):
        low, high = jitter_range(retry.backoff, n) if n > 1 else (0.0, 0.0)
        earliest, latest = earliest + low, latest + high
        row: dict[str, Any] = {"attempt": n, "atS": [_s(earliest), _s(latest)]}
        if n > 1:
            row["delayS"] = [_s(low), _s(high)]
        timeline.append(row)
    requests, duration = attempt_worst(retry, request_timeout)
    return {
        "maxAttempts": retry.max_attempts,
        "strategy": retry.backoff.strategy,
        "jitter": retry.backoff.jitter,
        "timeline": _cut(timeline, rows),
        "elidedAttempts": max(0, len(timeline) - rows),
        "worstCase": {"attempts": requests, "requests": requests, "durationS": _s(duration)},
        "stepFunctions": step_functions(requests, 1),
    }


def step_functions(requests: int, attempts: int) -> dict[str, Any]:
    """The loop as AWS Step Functions standard-workflow state transitions, and their price."""
    transitions = requests + 2 * attempts - 1 if attempts else 0
    price = defaults.SFN_PRICE_PER_1000_TRANSITIONS
    return {
        "transitions": transitions,
        "formula": SFN_FORMULA,
        "usd": round(transitions * price / 1000, 6),
        "usdPer1000Transitions": price,
    }


def _latest_start(timeline: list[dict[str, Any]]) -> float:
    return float(timeline[-1]["atS"][1]) if timeline else 0.0


def _cut(timeline: list[dict[str, Any]], rows: int) -> list[dict[str, Any]]:
    """The first rows - 2 attempts and the last 2 (a long timeline's middle repeats itself)."""
    if len(timeline) <= rows:
        return timeline
    return [*timeline[: rows - 2], *timeline[-2:]]


def _s(seconds: float) -> float:
    return round(seconds, 3)
