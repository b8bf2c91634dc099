"""Starting and resuming runs from the command line: the invocation, the store, the signals.

A run started with `lamrunner run` is remembered by its invocation (workflow file, --config
files, --set values; the input is in the GWO), so `lamrunner resume RUN_ID` rebuilds the same
workflow and config and continues the saved RunState. Ctrl-C and SIGTERM stop a run cleanly:
its last checkpoint stays in the store, and the record printed says how to resume it.
With `--budget`, a run that would wait past it suspends (SUSPENDED, with `resumeAt`); `resume`
of a suspended run first waits until its `resumeAt`, owning nothing meanwhile, so a signal
during that wait leaves it SUSPENDED.

The CLI is a host of the run core like any embedding program: the store and the live poll line
are its run observers, and the garbage-collector policy is held around the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamrunner import defaults
from lamrunner.cli import gcpolicy, live
from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import Workflow, load_workflow
from lamrunner.errors import Cancelled, DefinitionError, InternalError
from lamrunner.logs.chain import get_logger
from lamrunner.logs.masking import Secrets, masked_with
from lamrunner.runner import loop as aio
from lamrunner.runner.calls import CANCELLED
from lamrunner.runner.calls import INTERRUPTED as STOPPED
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import FAILED, RUNNING, SUCCESS, SUSPENDED, RunState, iso_ms
from lamrunner.store import jobs
from lamrunner.store.sqlite import RunStore

INTERRUPTED = "INTERRUPTED"


@dataclass(frozen=True)
class Invocation:
    workflow: str
    config_files: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    digest: str = ""  # of the workflow file, to warn when it changed before a resume

    @classmethod
    def of(cls, workflow: str, config_files: list[str], sets: list[str]) -> Invocation:
        path = Path(workflow).resolve()
        files = tuple(str(Path(f).resolve()) for f in config_files)
        return cls(str(path), files, tuple(sets), _digest(path))

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "configFiles": list(self.config_files),
            "sets": list(self.sets),
            "digest": self.digest,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Invocation:
        return cls(
            data["workflow"],
            tuple(data["configFiles"]),
            tuple(data["sets"]),
            data.get("digest", ""),
        )

    def load(self) -> tuple[Workflow, dict[str, Any]]:
        workflow = load_workflow(self.workflow)
        return workflow, self.layered(workflow.config)

    def layered(self, base: Any) -> dict[str, Any]:
        """`base` (a workflow's `config:`) under this invocation's --config files and --set
        values: the parent's config, and a sub-workflow's that has a `config:` of its own."""
        return build_config(base, self.config_files, self.sets, os.environ)


def start(
    invocation: Invocation,
    input_data: Any,
    store: RunStore | None,
    loaded: tuple[Workflow, dict[str, Any]] | None = None,
    budget: float | None = None,
) -> dict[str, Any]:
    """Run a workflow from its first step; returns the run record. `loaded` is what
    `invocation.load()` gave the caller, so the workflow is loaded once per run."""
    workflow, config = loaded if loaded is not None else invocation.load()
    state = RunState.start(workflow.name, input_data)
    engine = _engine(workflow, config, store, invocation)
    return _drive(engine, state, invocation, store, "run", budget)


def resume(
    run_id: str, store: RunStore, budget: float | None = None, redrive: bool = False
) -> dict[str, Any]:
    """Continue an interrupted or suspended run from its last checkpoint; a suspended one
    is waited for until its `resumeAt` first. With `redrive`, re-run a FAILED run from the
    step that failed (`RunState.redrive`), under the same run id."""
    if redrive:
        return _redrive(run_id, store, budget)
    _top_level(run_id, store, "resume")
    state, saved, status = _resumable(run_id, store)
    at = state.resume_at if status == SUSPENDED else None
    if at is not None and at > time.time():
        stopped = _wait_until(state, at)
        if stopped is not None:
            return stopped
        state, saved, status = _resumable(run_id, store)  # another process may have gone on
    if state.status == SUSPENDED:
        state.status = RUNNING  # owned from here: `runs` lists it RUNNING, then INTERRUPTED
    invocation = Invocation.from_dict(saved)
    if invocation.digest and invocation.digest != _digest(Path(invocation.workflow)):
        get_logger(run_id=run_id).warning(
            "run.workflow_changed",
            workflow=invocation.workflow,
            note="the workflow file changed since the run started; resuming with the new one",
        )
    workflow, config = invocation.load()
    engine = _engine(workflow, config, store, invocation)
    return _drive(engine, state, invocation, store, "resume", budget)


def _top_level(run_id: str, store: RunStore, command: str) -> None:
    """Refuse to act on a sub-workflow's run alone: its parent owns it (resuming the parent
    resumes it; cancelling the parent stops it)."""
    parent = store.parent(run_id)
    if parent is not None:
        raise DefinitionError(
            f"run {run_id} is a sub-workflow of run {parent['runId']} (its {parent['step']}, "
            f"workflow {parent['workflowId']!r}): `lamrunner {command} {parent['runId']}` "
            f"{command}s it with its parent"
        )


def _redrive(run_id: str, store: RunStore, budget: float | None) -> dict[str, Any]:
    _top_level(run_id, store, "resume")
    _not_a_job(run_id, store)
    state, saved, status = store.load(run_id)
    if status != FAILED:
        raise DefinitionError(
            f"run {run_id} is {status}: --redrive re-runs a FAILED run; "
            f"`lamrunner resume {run_id}` continues an interrupted or suspended one"
        )
    invocation = Invocation.from_dict(saved)
    workflow, config = invocation.load()
    state.redrive()
    get_logger(run_id=run_id).info("run.redrive", from_step=state.next_step + 1)
    store.redriven(run_id, state.next_step)  # the state keeps what the redrive keeps
    engine = _engine(workflow, config, store, invocation)
    return _drive(engine, state, invocation, store, "resume", budget)


def cancel(run_id: str, store: RunStore) -> dict[str, Any]:
    """Cancel a run: one another process is running is asked to stop (through the store; it
    looks every CANCEL_CHECK_INTERVAL, sends its polls' onGiveUp and ends FAILED), and waited
    for up to CANCEL_WAIT; a suspended or interrupted one is ended here, at once."""
    _top_level(run_id, store, "cancel")
    state, saved, status = store.load(run_id)
    if status in (SUCCESS, FAILED):
        raise DefinitionError(f"run {run_id} already finished with {status}; nothing to cancel")
    job = jobs.job_of(store.path, run_id)
    if job is not None:
        return _cancel_job(job, store)
    if store.owner_alive(run_id) is not None:
        store.request_cancel(run_id)
        end = time.monotonic() + defaults.CANCEL_WAIT
        while time.monotonic() < end:
            time.sleep(0.05)
            state, saved, status = store.load(run_id)
            if status != RUNNING:
                record = state.record()
                record["status"] = status
                return record
        record = state.record()
        record["status"] = RUNNING
        return _cancel_pending(
            record,
            f"cancel requested; run {run_id} had not stopped after "
            f"{defaults.CANCEL_WAIT:g}s (its process looks between its waits)",
        )
    invocation = Invocation.from_dict(saved)
    workflow, config = invocation.load()
    engine = _engine(workflow, config, store, invocation)
    gcpolicy.freeze_at_exit()
    store.begin(state, invocation.to_dict())  # owned while its onGiveUp requests go out
    with masked_with(Secrets.of_config(engine.config)):
        try:
            return aio.run(engine.cancel(state, "lamrunner cancel"))
        finally:
            store.flush()


def _cancel_job(job: jobs.JobRow, store: RunStore) -> dict[str, Any]:
    """A `lamrunner serve` job is the server's to end (its job row, onGiveUp, callback): the
    cancel is recorded in the store, which the server reads every CANCEL_CHECK_INTERVAL, and
    waited for up to CANCEL_WAIT while a server serves the store; with none serving it, the
    next one to start carries it out before it wakes anything (the record says so)."""
    run_id = job.job_id
    store.request_cancel(run_id)
    server = jobs.server_pid(store.path)
    end = time.monotonic() + (defaults.CANCEL_WAIT if server is not None else 0)
    while time.monotonic() < end:
        time.sleep(0.05)
        row = jobs.job_of(store.path, run_id)
        if row is None or row.status in jobs.FINISHED:
            record = _record_now(store, run_id)
            record["error"] = None if row is None else row.error  # as the server masked it
            return record
    where = (
        f"the server (pid {server}) had not stopped it after {defaults.CANCEL_WAIT:g}s"
        if server is not None
        else f"no lamrunner serve is serving {store.path}: the next one started on it "
        "carries the cancel out (its polls' onGiveUp, the job canceled, its callback)"
    )
    return _cancel_pending(_record_now(store, run_id), f"cancel of job {run_id} recorded; {where}")


def _record_now(store: RunStore, run_id: str) -> dict[str, Any]:
    """The run's record as the store has it now, with its listed status."""
    state, _saved, status = store.load(run_id)
    record = state.record()
    record["status"] = status
    return record


def _cancel_pending(record: dict[str, Any], message: str) -> dict[str, Any]:
    """The record of a cancel asked for and not yet carried out (exit 1)."""
    record["error"] = {"type": "CancelPending", "message": message, "step": None}
    return record


def _not_a_job(run_id: str, store: RunStore) -> None:
    """A server's job is resumed through its server, which keeps its job row and callback."""
    job = jobs.job_of(store.path, run_id)
    if job is not None:
        raise DefinitionError(
            f"run {run_id} is a job of lamrunner serve (job status {job.status}): a waiting "
            f"job resumes itself; a failed or canceled one is resumed with POST "
            f"/jobs/{run_id}/resume (or the runs page's resume button)"
        )


def _resumable(run_id: str, store: RunStore) -> tuple[RunState, dict[str, Any], str]:
    _not_a_job(run_id, store)
    state, saved, status = store.load(run_id)
    if status in (SUCCESS, FAILED):
        raise DefinitionError(f"run {run_id} already finished with {status}; nothing to resume")
    owner = store.owner_alive(run_id)
    if owner is not None:
        raise DefinitionError(f"run {run_id} is still running in process {owner}")
    return state, saved, status


def _wait_until(state: RunState, at: float) -> dict[str, Any] | None:
    """Sleep until `at` (a suspended run's resumeAt); None when it came, else the record of
    a wait a signal stopped: the run is left SUSPENDED, untouched in the store."""
    log = get_logger(run_id=state.run_id)

    async def wait() -> dict[str, Any]:  # logs once SIGTERM and SIGINT are handled
        log.info("run.waiting", until=iso_ms(at), note=f"waiting until {iso_ms(at)}")
        await asyncio.sleep(max(0.0, at - time.time()))
        return {}

    try:
        aio.run(_until_stopped(wait()))
    except (KeyboardInterrupt, _Stopped):
        how = f"resume it with: lamrunner resume {state.run_id}"
        log.warning("run.interrupted", resume=how, note="the run is still SUSPENDED")
        record = state.record()
        record["error"] = {
            "type": "Interrupted",
            "message": f"stopped by a signal while waiting until {iso_ms(at)}; the run is "
            f"still SUSPENDED: {how}",
            "step": None,
        }
        return record
    return None


def _engine(
    workflow: Workflow, config: dict[str, Any], store: RunStore | None, invocation: Invocation
) -> Engine:
    """The engine with the CLI's observers: the store (when there is one), the live line;
    sub-workflows get the invocation's config layers and, from the store, their saved
    states when a resumed parent resumes them."""
    observers: list[RunObserver] = [] if store is None else [store]
    line = live.live_polls()
    if line is not None:
        observers.append(line)
    return Engine(
        workflow,
        config,
        observers=observers,
        saved_runs=None if store is None else store.saved_state,
        config_layers=invocation.layered,
    )


def _drive(
    engine: Engine,
    state: RunState,
    invocation: Invocation,
    store: RunStore | None,
    command: str,
    budget: float | None = None,
) -> dict[str, Any]:
    gcpolicy.freeze_at_exit()  # the command ends with its run: no final sweeps of the heap
    if store is not None:
        store.begin(state, invocation.to_dict())
    # The run masks its own lines; this masks the CLI's about it (interrupted, a traceback).
    with masked_with(Secrets.of_config(engine.config)):
        return _drive_masked(engine, state, store, command, budget)


def _drive_masked(
    engine: Engine, state: RunState, store: RunStore | None, command: str, budget: float | None
) -> dict[str, Any]:
    watch = None if store is None else (store, state.run_id)
    try:
        run = _with_gc_policy(engine.resume(state, budget=budget))
        return aio.run(_until_stopped(run, watch))
    except _CancelledByRequest:
        return _cancelled(engine, state, store)
    except (KeyboardInterrupt, _Stopped):
        return _interrupted(state, store)
    except Exception as exc:  # noqa: BLE001 - a bug in lamrunner: the run ends FAILED, not stuck RUNNING
        return _internal_failure(engine, state, store, exc, command)
    finally:
        if store is not None:
            store.flush()


async def _with_gc_policy(run: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Await the run with the GC policy on: a CLI process may hold thousands of polls."""
    async with gcpolicy.hold():
        return await run


class _Stopped(Exception):
    """SIGTERM or SIGINT cancelled the run."""


class _CancelledByRequest(Exception):
    """`lamrunner cancel` asked, through the store, for the run to stop."""


async def _watch_for_cancel(store: RunStore, run_id: str, stop: Any) -> None:
    """Every CANCEL_CHECK_INTERVAL, look in the store for a `lamrunner cancel` of the run."""
    while True:
        await asyncio.sleep(defaults.CANCEL_CHECK_INTERVAL)
        if store.cancel_requested(run_id):
            stop(CANCELLED)
            return


async def _until_stopped(
    run: Coroutine[Any, Any, dict[str, Any]], watch: tuple[RunStore, str] | None = None
) -> dict[str, Any]:
    """Await the run; SIGTERM (and SIGINT) cancel it from a loop signal handler, and so does a
    `lamrunner cancel` of it (`watch`: the store and the run id to look for one in).

    Handled here, not by re-sending SIGINT: a job a script starts with `&` inherits SIGINT
    ignored, and SIGTERM must stop it all the same. An ignored SIGINT stays ignored (the shell
    asked for that: Ctrl-C in the terminal is for the foreground job).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int | str] = []

    def stop(why: int | str) -> None:
        if not received:  # the first reason is the run's; polls hear it as the cancel's message
            task.cancel(CANCELLED if why == CANCELLED else STOPPED)
        received.append(why)

    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        handled.append(signal.SIGINT)
    for signum in handled:
        loop.add_signal_handler(signum, stop, signum)
    watcher = None if watch is None else asyncio.ensure_future(_watch_for_cancel(*watch, stop))
    try:
        return await run
    except asyncio.CancelledError:
        if received and received[0] == CANCELLED:
            raise _CancelledByRequest from None
        if received:
            raise _Stopped(signal.Signals(int(received[0])).name) from None
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
        for signum in handled:
            loop.remove_signal_handler(signum)


def _cancelled(engine: Engine, state: RunState, store: RunStore | None) -> dict[str, Any]:
    """The run `lamrunner cancel` stopped: FAILED with a Cancelled error, saved. Its polls
    sent their onGiveUp as they stopped (the outcomes are in `giveUps`)."""
    steps = engine.workflow.steps
    step = steps[min(state.next_step, len(steps) - 1)].name
    get_logger(run_id=state.run_id).error("run.cancelled", step=step)
    state.status = FAILED
    state.error = Cancelled(
        f"cancelled (lamrunner cancel) before step {state.next_step + 1} finished", step=step
    ).to_dict()
    if store is not None:
        store.save_run(state)
    return state.record()


def _interrupted(state: RunState, store: RunStore | None) -> dict[str, Any]:
    how = (
        f"resume it with: lamrunner resume {state.run_id}"
        if store is not None
        else "it ran without a store (--no-store), so it cannot be resumed"
    )
    get_logger(run_id=state.run_id).warning("run.interrupted", resume=how)
    record = state.record()
    record["status"] = INTERRUPTED
    record["error"] = {
        "type": "Interrupted",
        "message": f"stopped by a signal before step {state.next_step + 1} finished; {how}",
        "step": None,
    }
    return record


def _internal_failure(
    engine: Engine, state: RunState, store: RunStore | None, exc: Exception, command: str
) -> dict[str, Any]:
    """The run record for a bug: FAILED with an InternalError; the traceback at debug level."""
    error = InternalError.of(exc, command)
    steps = engine.workflow.steps
    if state.next_step < len(steps):
        error = error.in_step(steps[state.next_step].name)
    log = get_logger(run_id=state.run_id)
    log.error("internal.error", error=error.message)
    log.debug("internal.traceback", exception=traceback.format_exc())  # masked by the chain
    state.status = FAILED
    state.error = error.to_dict()
    if store is not None:
        store.save_run(state)
    return state.record()


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return ""
