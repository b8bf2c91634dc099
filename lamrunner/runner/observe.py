"""How a host hears of a run's progress: observers, plugged into `Engine(observers=...)`.

The run core keeps no process state and imports no host: a run store, a cloud function's state
table, the CLI's live poll line or a test's recorder each subclass `RunObserver` and override
the hooks they need; the rest stay no-ops. Hooks are called in the run's task, synchronously,
so a checkpoint is written before the run goes on (keep them quick: the event loop waits).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lamrunner.runner.state import ElementState, RunState


class RunObserver:
    """Every hook of a run; each a no-op here."""

    def run_started(self, state: RunState) -> None:
        """The run starts or resumes (`state.next_step`, `state.pending` say where)."""

    def save_run(self, state: RunState) -> None:
        """At every step boundary and at the end: the whole state."""

    def save_element(self, state: RunState, index: int, entry: ElementState) -> None:
        """After every poll attempt and request result: request `index`'s progress."""

    def save_attempt(self, state: RunState, index: int, row: dict[str, Any]) -> None:
        """One poll attempt's history row (see `history.attempt_row`), already masked.

        Rows are only made when some observer overrides this hook."""

    def poll_progress(
        self,
        key: str,
        step_name: str,
        attempt: int,
        max_attempts: int,
        last_status: int | None,
        due_in_seconds: float,
    ) -> None:
        """A poll (`key`: "step_2[0]") made `attempt` and waits `due_in_seconds` for the next."""

    def poll_done(self, key: str) -> None:
        """The request `key` settled (or stopped): no more progress for it."""

    def run_finished(self, state: RunState) -> None:
        """The run stopped: finished (after its last `save_run`), suspended at its budget
        (`state.status` SUSPENDED, after its last `save_run` too) or cancelled mid-way, when
        `state.status` is still RUNNING. Always called once per `run_started`."""


class Observers(RunObserver):
    """Fan-out: every hook goes to each observer in order."""

    wants_attempts: bool  # some observer keeps history rows (so they are worth making)

    def __init__(self, observers: Iterable[RunObserver] = ()) -> None:
        self._all = tuple(observers)
        self.wants_attempts = any(
            o.wants_attempts if isinstance(o, Observers) else _overrides(o, "save_attempt")
            for o in self._all
        )

    def run_started(self, state: RunState) -> None:
        for observer in self._all:
            observer.run_started(state)

    def save_run(self, state: RunState) -> None:
        for observer in self._all:
            observer.save_run(state)

    def save_element(self, state: RunState, index: int, entry: ElementState) -> None:
        for observer in self._all:
            observer.save_element(state, index, entry)

    def save_attempt(self, state: RunState, index: int, row: dict[str, Any]) -> None:
        for observer in self._all:
            observer.save_attempt(state, index, row)

    def poll_progress(
        self,
        key: str,
        step_name: str,
        attempt: int,
        max_attempts: int,
        last_status: int | None,
        due_in_seconds: float,
    ) -> None:
        for observer in self._all:
            observer.poll_progress(
                key, step_name, attempt, max_attempts, last_status, due_in_seconds
            )

    def poll_done(self, key: str) -> None:
        for observer in self._all:
            observer.poll_done(key)

    def run_finished(self, state: RunState) -> None:
        for observer in self._all:
            observer.run_finished(state)


def _overrides(observer: RunObserver, hook: str) -> bool:
    """Whether `observer` does something on `hook` (so work made only for it can be skipped)."""
    mine = getattr(type(observer), hook, None)
    return mine is not None and mine is not getattr(RunObserver, hook)
