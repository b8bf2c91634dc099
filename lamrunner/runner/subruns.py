"""Sub-workflows: the child runs one run starts (lam.execute, lam.asyncExecute,
lam.resolveThenExecute), each a full run of its own with its own run id and state.

A child is recorded in its parent's state (`RunState.children`, a `ChildRun`) and the parent
checkpointed *before* the child starts, so a resumed parent finds it: a finished child's result
is kept (never run again), an unfinished one is resumed from its own checkpoint (`load`, the
host's way to read a saved run; without one it starts again from its input). The run's
observers hear of each child (`child_run`) and then of the child's own progress, so a run store
keeps the child as a run of its own, linked to its parent.

A blocking child (`lam.execute`) runs in the parent's task; the others run as tasks beside it
and are awaited before the parent's run ends (`settle`), so a host that awaits a run awaits its
whole tree. Nesting is bounded: `Lineage` counts the depth from the root run, whose
`limits.subWorkflowDepth` binds the whole tree (a workflow may call itself, as in Laminar, but
not without end).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from lamrunner.definition.directives import WorkflowCall
from lamrunner.definition.workflow import Workflow
from lamrunner.errors import SubWorkflowDepthExceeded, SubWorkflowFailed
from lamrunner.logs.chain import child_logging
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import FAILED, ChildRun, RunState, new_run_id

SavedRuns = Callable[[str], RunState | None]  # a saved run by its id (None: not kept)


@dataclass(frozen=True)
class Lineage:
    """Where a run sits in its tree: its depth (the root run is 0), the root's limit, and the
    workflows from the root down to it (for the depth error)."""

    limit: int
    depth: int = 0
    chain: tuple[str, ...] = ()

    @classmethod
    def root(cls, workflow: Workflow) -> Lineage:
        return cls(workflow.limits.subworkflow_depth, 0, (workflow.path.name,))

    def below(self, call: WorkflowCall, child: Workflow) -> Lineage:
        """The lineage of a child run, or SubWorkflowDepthExceeded past the root's limit."""
        depth = self.depth + 1
        chain = (*self.chain, child.path.name)
        if depth > self.limit:
            raise SubWorkflowDepthExceeded(
                f"{call.where}: workflow {call.workflow_id!r} ({child.path}) would run at "
                f"depth {depth}, deeper than limits.subWorkflowDepth ({self.limit}) of the "
                f"root workflow {self.chain[0] if self.chain else '?'}: "
                f"{' → '.join(chain)}; a workflow that starts itself needs a case that stops"
            )
        return replace(self, depth=depth, chain=chain)


class ChildEngine(Protocol):
    """What a child run is driven by (an `Engine` for the child's workflow)."""

    async def resume(self, state: RunState) -> dict[str, Any]: ...


Spawn = Callable[[Workflow, Lineage], ChildEngine]


class SubRuns:
    """One run's children: starts or resumes each, keeps the ones that run on as tasks."""

    def __init__(
        self, spawn: Spawn, lineage: Lineage, observer: RunObserver, load: SavedRuns | None
    ) -> None:
        self._spawn = spawn
        self.lineage = lineage
        self._observer = observer
        self._load = load
        self._tasks: dict[str, asyncio.Future[ChildRun]] = {}

    async def run(
        self, state: RunState, step: str, index: int, call: WorkflowCall, child: Workflow
    ) -> ChildRun:
        """The child of `call` run to its end (or resumed to it); its ChildRun, finished."""
        record = self._record(state, step, index, call, "execute")
        if not record.finished:
            await self._drive(state, record, call.payload, child)
        return record

    def start(
        self,
        state: RunState,
        step: str,
        index: int,
        call: WorkflowCall,
        child: Workflow,
        mode: str,
    ) -> ChildRun:
        """The child of `call` started as a task beside the run (awaited by `settle`)."""
        record = self._record(state, step, index, call, mode)
        if not record.finished:
            self._background(state, record, call.payload, child)
        return record

    def restart(self, state: RunState, workflows: Mapping[str, Workflow]) -> None:
        """A resumed run's children that ran beside it and had not finished: again as tasks,
        each from its own checkpoint (`workflows`: each one's workflow, by run id)."""
        for record in state.children:
            if record.mode != "execute" and not record.finished and record.run_id in workflows:
                self._background(state, record, None, workflows[record.run_id])

    async def settle(self) -> None:
        """Wait for every child that runs beside the run (each ends FAILED rather than raise;
        anything else raised is a bug, and raised here)."""
        while self._tasks:
            tasks = list(self._tasks.values())
            self._tasks.clear()
            await asyncio.gather(*tasks)

    async def cancel(self) -> None:
        """Stop the children still running beside the run (the run itself was stopped)."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _record(
        self, state: RunState, step: str, index: int, call: WorkflowCall, mode: str
    ) -> ChildRun:
        """The ChildRun of this call: the saved one of a resumed run, else a new one, saved
        in the parent before anything of the child runs."""
        record = state.child(step, index)
        if record is None:
            record = ChildRun(new_run_id(), call.workflow_id, step, index, mode)
            state.children.append(record)
            self._observer.save_run(state)
        return record

    def _background(self, state: RunState, record: ChildRun, payload: Any, child: Workflow) -> None:
        async def run() -> ChildRun:
            await self._drive(state, record, payload, child)
            return record

        self._tasks[record.run_id] = asyncio.ensure_future(run())

    async def _drive(
        self, parent: RunState, record: ChildRun, payload: Any, child: Workflow
    ) -> None:
        """Run (or resume) the child; its outcome goes into `record`, saved with the parent."""
        state = self._saved(record, payload, child)
        if state is None:
            record.status = FAILED
            record.error = _lost(record)
        else:
            if not state.finished:  # (a child that ended before its parent saved that: kept)
                engine = self._spawn(child, self._child_lineage(record, child))
                self._observer.child_run(parent, state, record, str(child.path))
                with child_logging(parent.run_id):
                    await engine.resume(state)
            record.status, record.result, record.error = state.status, state.result, state.error
        self._observer.save_run(parent)

    def _child_lineage(self, record: ChildRun, child: Workflow) -> Lineage:
        call = WorkflowCall(record.workflow_id, None, f"{record.step}[{record.index}]")
        return self.lineage.below(call, child)

    def _saved(self, record: ChildRun, payload: Any, child: Workflow) -> RunState | None:
        """The child's saved state (a resumed parent), else a fresh one from `payload`; None
        when it has neither (a child that ran beside an interrupted run, with no store)."""
        saved = None if self._load is None else self._load(record.run_id)
        if saved is not None:
            return saved
        if payload is None:
            return None
        return RunState.start(child.name, payload, record.run_id)


def failure(record: ChildRun, child: Workflow, where: str) -> SubWorkflowFailed:
    """The step's error for a child that ended FAILED: names the child, repeats its error."""
    cause = record.error or {}
    inner = f" in its step {cause['step']!r}" if cause.get("step") else ""
    return SubWorkflowFailed(
        f"{where}: sub-workflow {record.workflow_id!r} ({child.path.name}, run "
        f"{record.run_id}) failed{inner}: {cause.get('type', 'Error')}: "
        f"{cause.get('message', 'no error was recorded')}",
        workflow_id=record.workflow_id,
        run_id=record.run_id,
        cause=record.error,
    )


def _lost(record: ChildRun) -> dict[str, Any]:
    return {
        "type": "SubWorkflowFailed",
        "message": f"sub-workflow run {record.run_id} was interrupted and its state was not "
        "kept (the run had no store): it cannot be resumed",
        "step": None,
    }
