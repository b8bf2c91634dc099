"""Bounded poll history, decided: which attempt's row leaves the store as a poll goes on.

A poll keeps a row for each of its first `first` attempts and its last `last` ones; the rows
between are counted, not kept, so a poll of 10,000 attempts holds at most first + last rows.
Each new attempt's row is kept (it is among the last ones); the attempt that thereby leaves
the window of the last `last`, unless it is one of the first `first`, is the row to drop.
"""

from __future__ import annotations

from lamrunner.definition.policies import HistoryWindow


def row_to_drop(window: HistoryWindow, attempt: int) -> int | None:
    """The attempt whose row leaves when attempt `attempt`'s row is added, or None."""
    leaving = attempt - window.last
    return leaving if leaving > window.first else None


def elided(window: HistoryWindow, attempts: int) -> int:
    """How many of `attempts` attempts have no row."""
    return max(0, attempts - window.first - window.last)
