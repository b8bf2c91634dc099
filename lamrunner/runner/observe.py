"""How a host hears of a run's progress: observers, plugged into `Engine(observers=...)`.

The run core keeps no process state and imports no host: a run store, a cloud function's state
table, the CLI's live poll line or a test's recorder each subclass `RunObserver` and override
the hooks they need; the rest stay no-ops. Hooks are called in the run's task, synchronously,
so a checkpoint is written before the run goes on (keep them quick: the event loop waits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lamrunner.runner.state import ChildRun, ElementState, RunState


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
        **progress: Any,
    ) -> None:
        """A poll (`key`: "step_2[0]") made `attempt` and waits `due_in_seconds` for the next.

        A poll with `loopUntil.progress` adds `percent` (its last value) and `eta_seconds`
        (None until it can be estimated) as keywords; other polls pass none."""

    def poll_done(self, key: str) -> None:
        """The request `key` settled (or stopped): no more progress for it."""

    def child_run(self, parent: RunState, child: RunState, call: ChildRun, file: str) -> None:
        """A sub-workflow run (`child`, of the workflow file `file`) starts or resumes for
        `call` of `parent` (saved in `parent.children` already); the child's own hooks follow,
        with the child's state. A run store links the two here."""

    def run_finished(self, state: RunState) -> None:
        """The run stopped: finished (after its last `save_run`), suspended at its budget
        (`state.status` SUSPENDED, after its last `save_run` too) or cancelled mid-way, when
        `state.status` is still RUNNING. Always called once per `run_started`."""


class Observers(RunObserver):
    """Fan-out: every hook goes to each observer in order.

    Each hook is bound once, here, to only the observers that do something on it (a hook an
    observer leaves a no-op is skipped): with one such observer the hook *is* that observer's
    method, and with none it is a no-op, so the calls made after every poll attempt
    (save_element, save_attempt, poll_progress) cost one call each, not a loop over no-ops.
    `wants_attempts` and `wants_progress` say whether anyone listens to those two at all, so
    the engine can skip making what they would be given. The observers are fixed at
    construction (hooks overridden on an observer later are not seen)."""

    wants_attempts: bool  # some observer keeps history rows (so they are worth making)
    wants_progress: bool  # some observer shows poll progress (so it is worth computing)

    def __init__(self, observers: Iterable[RunObserver] = ()) -> None:
        self._all = tuple(observers)
        for hook in _HOOKS:
            targets = [m for m in (_listening(o, hook) for o in self._all) if m is not None]
            setattr(self, hook, _fan_out(targets))
        self.wants_attempts = _listening(self, "save_attempt") is not None
        self.wants_progress = _listening(self, "poll_progress") is not None


_HOOKS = (
    "run_started",
    "save_run",
    "save_element",
    "save_attempt",
    "poll_progress",
    "poll_done",
    "child_run",
    "run_finished",
)


def _nothing(*_args: Any) -> None:
    """A hook no observer listens to."""


def _listening(observer: RunObserver, hook: str) -> Callable[..., None] | None:
    """`observer`'s `hook` when it does something (so work made only for it can be skipped),
    else None: RunObserver's own no-op, or a fan-out's hook that reaches no one."""
    method = getattr(observer, hook)
    if method is _nothing or getattr(method, "__func__", None) is getattr(RunObserver, hook):
        return None
    return method  # type: ignore[no-any-return]


def _fan_out(targets: list[Callable[..., None]]) -> Callable[..., None]:
    if not targets:
        return _nothing
    if len(targets) == 1:
        return targets[0]
    hooks = tuple(targets)

    def each(*args: Any, **kwargs: Any) -> None:
        for hook in hooks:
            hook(*args, **kwargs)

    return each
