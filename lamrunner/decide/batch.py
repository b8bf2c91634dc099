"""Batch tolerance, decided: whether a `lam.httpRequests` with `minSuccess` (or
`toleratedFailures`) can still have enough of its requests succeed.

The batch's requests run side by side; after each one settles, the engine asks `hopeless`.
A batch whose failures exceed what it tolerates (`size - min_success`) can no longer succeed:
its requests still in flight are cancelled and the step fails at once. Otherwise every request
runs to its end (its result or error is kept) and the step succeeds when at least
`min_success` succeeded.
"""

from __future__ import annotations


def tolerated(size: int, min_success: int) -> int:
    """How many of `size` requests may fail."""
    return max(0, size - min_success)


def hopeless(size: int, min_success: int, failed: int) -> bool:
    """Whether `failed` failures leave too few requests to reach `min_success`."""
    return failed > tolerated(size, min_success)


def enough(min_success: int, succeeded: int) -> bool:
    return succeeded >= min_success
