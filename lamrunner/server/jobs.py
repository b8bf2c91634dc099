"""The job core of `lamrunner serve`: every job is a run in the run store, run by the engine.

A job is submitted `pending` (its run's row and its job row written, due at once); the waker
(`scheduler`) launches it, and it is `processing` from then until its run ends `completed`,
`failed` or `canceled`. The run is the engine's, observed by the `RunStore` exactly as the CLI's
runs are (attempts, elements and poll counts checkpointed: `lamrunner runs show JOB_ID` works on
a server's store). A run whose next poll is due more than `hold` seconds ahead suspends (the
engine's rolling hold): its coroutine ends, and the job is a row with a `due_at` until the waker
resumes it from the store. So a job polling every 10 s stays in memory, one polling hourly costs
a row, and at most `max_active` runs are in memory at once (the rest stay due).

A process that dies leaves its in-memory jobs without a `due_at`: the next `start` makes them
due now, and each resumes from its last checkpoint (completed requests are not sent again, a
poll's attempts count on). `close` stops the runs in memory as a handover: no onGiveUp is sent,
their checkpoints stay, and they are due again at once for the next process.

A cancel is recorded in the run store (its cancels table, which `lamrunner cancel` writes too)
before it is acted on, and the service looks for recorded cancels at start and every
CANCEL_CHECK_INTERVAL: a cancel the process did not finish, or one asked while no server ran,
is carried out, never lost. One service per store file: `start` takes the store's `ServeLock`.

`retention` seconds after a job ended, `sweep` makes it `expired`: its result becomes a stub
and its run leaves the store. Results and errors are masked with the run's secrets before they
are stored in the job row, which is what every reader (`get`, `list`, `result_json`) sees.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamrunner import defaults
from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import Workflow
from lamrunner.errors import Cancelled, DefinitionError, InternalError, LamrunnerError
from lamrunner.http.transport import AiohttpTransport
from lamrunner.logs.chain import get_logger
from lamrunner.logs.masking import Secrets
from lamrunner.runner.calls import CANCELLED, HANDOVER
from lamrunner.runner.clock import Clock, SystemClock
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import FAILED, RUNNING, SUCCESS, SUSPENDED, RunState, iso_ms
from lamrunner.server.scheduler import LEAD as WAKE_LEAD
from lamrunner.server.scheduler import Waker
from lamrunner.store import jobs as table
from lamrunner.store.jobs import JobRow, JobStore, ServeLock
from lamrunner.store.sqlite import RunStore
from lamrunner.units import format_duration

JOB_STATUSES = ("pending", "processing", "completed", "failed", "canceled", "expired")
LARGE_RESULT_BYTES = 5_000_000  # seed 004: a result this big (JSON) is answered as a pointer
MAX_ACTIVE = 20_000  # runs in memory at once; due jobs beyond it wait their turn
SWEEP_EVERY = 3600.0  # seconds between retention sweeps
DEFAULT_HOLD = 60.0
DEFAULT_RETENTION = 7 * 86400.0


class JobRequestError(LamrunnerError):
    """A job request the service refuses: `status` is the HTTP status it means (400 bad input,
    naming the field; 404 no such workflow, job or configuration; 409 the job's state forbids
    it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Served:
    """One workflow the server serves, under its `workflow.name`."""

    workflow: Workflow  # loaded once (load_workflow)
    file: str  # its path (the run store's invocation names it)


@dataclass(frozen=True)
class Job:
    """A job as the store has it: its run's outcome masked, times in epoch seconds."""

    job_id: str  # == the run's id in the run store
    workflow: str  # the served name
    status: str  # one of JOB_STATUSES
    created_at: float
    updated_at: float
    result: Any = None  # completed (or expired: the stub); None when result_bytes is large
    error: dict[str, Any] | None = None  # failed/canceled: the run's error (type, message, step)
    result_bytes: int | None = None  # size of the result's JSON (the 5 MB pointer)
    ended_by: str | None = None  # "lam.response", "lam.exit", "lam.resolveThenExecute"
    configuration: str | None = None
    callback_url: str | None = None
    attempts: int = 0  # poll attempts so far (the store's poll_counts, summed)
    # added: where the job was asked to start and end (1-based step numbers), when it ended,
    # and when a waiting job is due to be woken (None while it runs in memory, or ended)
    start_from_step: int | None = None
    end_at_step: int | None = None
    finished_at: float | None = None
    due_at: float | None = None

    @property
    def large(self) -> bool:
        return self.result_bytes is not None and self.result_bytes >= LARGE_RESULT_BYTES

    def document(self) -> dict[str, Any]:
        """The job object of seed 004's Poll Job API, JSON-ready: `result` when completed (a
        pointer to GET /jobs/{id}/result when large) or expired (the stub), `error` (its
        message) when failed or canceled."""
        doc: dict[str, Any] = {
            "job_id": self.job_id,
            "status": self.status,
            "created_at": iso_ms(self.created_at),
            "updated_at": iso_ms(self.updated_at),
        }
        if self.status in ("completed", "expired"):
            doc["result"] = (
                {"is_url": True, "url": f"/jobs/{self.job_id}/result"}
                if self.large
                else self.result
            )
        if self.status in ("failed", "canceled") and self.error is not None:
            doc["error"] = str(self.error.get("message", ""))
        return doc


@dataclass(frozen=True)
class _Setup:
    """What runs a job of one served workflow under one configuration (and end step)."""

    engine: Engine
    invocation: dict[str, Any]  # the run store's invocation (as the CLI writes it)
    secrets: Secrets


class _EarlyResults(RunObserver):
    """Hears a job's run become SUCCESS while it still runs (lam.resolveThenExecute: its
    children go on): the sync endpoint answers then."""

    def __init__(self, heard: Callable[[RunState], None]) -> None:
        self._heard = heard

    def save_run(self, state: RunState) -> None:
        if state.status == SUCCESS and any(not child.finished for child in state.children):
            self._heard(state)


_Jobs = list[Job]  # (named here: in JobService, `list` is its method)
_DueRows = list[JobRow]
_Ids = list[str]


class JobService:
    """The jobs of a server: submit, read, cancel, resume; the waker and retention sweeps.

    `served` by name; `configs` by name (a --config file's stem), the first one the default;
    `env` fills the configs' `${VAR}`s (os.environ when None). `max_active` (added) caps the
    runs in memory at once."""

    def __init__(
        self,
        served: Mapping[str, Served],
        configs: Mapping[str, Path],
        store_path: Path,
        *,
        hold: float = DEFAULT_HOLD,
        retention: float = DEFAULT_RETENTION,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
        max_active: int = MAX_ACTIVE,
    ) -> None:
        self.served = dict(served)
        self.configs = {name: Path(path) for name, path in configs.items()}
        self.store_path = Path(store_path)
        self.hold, self.retention, self.max_active = hold, retention, max_active
        self.clock = clock or SystemClock()
        self._env = env
        self._setups: dict[tuple[str, str | None], _Setup] = {}
        self._active: dict[str, asyncio.Task[None]] = {}
        self._cancels: set[str] = set()
        self._early: dict[str, Job] = {}
        self._waiters: dict[str, list[asyncio.Future[Job]]] = {}
        self._listeners: list[Callable[[Job], None]] = []
        self._transports: dict[str, AiohttpTransport] = {}
        self._js: Any = None
        self._runs: RunStore | None = None
        self._jobs: JobStore | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._waker: Waker | None = None
        self._lock = ServeLock(self.store_path)
        self._log = get_logger(component="serve")

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, check every workflow's configuration, make the jobs a dead process
        left in memory due, carry out the cancels it recorded, and start the waker, the cancel
        watch and the retention sweeps."""
        self._lock.acquire()
        try:
            await self._open()
        except BaseException:
            self._lock.release()
            raise

    async def _open(self) -> None:
        self._runs = RunStore(self.store_path)
        self._jobs = JobStore(self.store_path)
        for name in self.served:
            for config in [None] if not self.configs else list(self.configs):
                self._setup(name, config)
        recovered = self._jobs.recover(self.clock.now())
        if recovered:
            self._log.info("serve.recovered", jobs=recovered)
        self.sweep()
        waiting = self._jobs.unserved(self._names)
        if waiting:
            self._log.warning(
                "serve.unserved_jobs",
                jobs=waiting,
                note="jobs of workflows this server does not serve wait until one serves them",
            )
        self._carry_out_cancels()  # before the waker: a canceled job must not poll again
        self._waker = Waker(self.clock, self._due, self._launch, self._room, self._next_due)
        self._loops = [
            asyncio.ensure_future(self._waker.run()),
            asyncio.ensure_future(self._sweeps()),
            asyncio.ensure_future(self._cancel_watch()),
        ]

    async def close(self) -> None:
        """Stop the waker and every run in memory, as a handover: checkpoints stay, nothing
        more is sent (no onGiveUp), and each such job is due again for the next process."""
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        tasks = list(self._active.values())
        for waiting in list(self._background):
            waiting.cancel()  # a recorded cancel's waiter: the record stays for the next start
        for task in tasks:
            task.cancel(HANDOVER)
        await asyncio.gather(*tasks, return_exceptions=True)
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
        for transport in self._transports.values():
            await transport.__aexit__(None, None, None)
        self._transports = {}
        if self._js is not None:
            self._js.close()
            self._js = None
        if self._jobs is not None:
            self._jobs.recover(self.clock.now())  # the stopped runs: due for the next process
            self._jobs.close()
        if self._runs is not None:
            self._runs.close()
        self._lock.release()

    # -- requests ----------------------------------------------------------------------------

    async def submit(
        self,
        name: str,
        input: Any,  # noqa: A002 - the interface's name (the workflow's input)
        *,
        configuration: str | None = None,
        start_from_step: int | str | None = None,
        end_at_step: int | str | None = None,
        callback_url: str | None = None,
    ) -> Job:
        """A new job, pending: its run is in the store before this returns. The step numbers
        count from 1 (step k is the GWO's `step_k`); a digit string (a query parameter) is
        read as its number."""
        served = self._served(name)
        config = self._configuration(configuration)
        steps = len(served.workflow.steps)
        start = _step_number(start_from_step, "start_from_step", steps)
        end = _step_number(end_at_step, "end_at_step", steps)
        if start is not None and end is not None and end < start:
            raise JobRequestError(
                400, f"end_at_step: {end} is before start_from_step {start}; it must be >= it"
            )
        setup = self._setup(name, config)
        job_id = _new_job_id(self.clock.now())
        state = RunState.start(name, {} if input is None else input, job_id)
        state.next_step = 0 if start is None else start - 1
        if end is not None:  # saved with the run: a resumed or recovered run ends there too
            state.meta["endAtStep"] = end
        self._store.begin(state, setup.invocation)
        now_running = self._room() > 0  # else it waits as a due row for the waker
        self._table.add(
            job_id,
            name,
            self.clock.now(),
            configuration=config,
            start_step=start,
            end_step=end,
            callback_url=callback_url,
            due=not now_running,
        )
        self._log.info("job.submitted", job_id=job_id, workflow=name)
        job = self.get(job_id)
        assert job is not None
        if now_running:  # its state is in hand and its row owned: no store round trip
            self._table.running(job_id, self.clock.now())
            self._track(job_id, self._guarded(job_id, self._run(job_id, setup, state)))
        else:
            self._poke()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None when the store has no such job."""
        row = self._table.get(job_id)
        if row is None:
            return None
        early = self._early.get(job_id)
        if early is not None and row.status == table.PROCESSING:
            return dataclasses.replace(self._job(row), result=early.result, ended_by=early.ended_by)
        return self._job(row)

    def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> _Jobs:
        """Jobs newest first, filtered by workflow and status; `before` a job id to page on."""
        if status is not None and status not in JOB_STATUSES:
            raise JobRequestError(
                400, f"status: {status!r} is not a job status; one of {', '.join(JOB_STATUSES)}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise JobRequestError(400, f"limit: expected a number from 1 to 1000, got {limit!r}")
        rows = self._table.list(workflow=workflow, status=status, limit=limit, before=before)
        return [self._job(row) for row in rows]

    async def settled(self, job_id: str) -> Job:
        """The job once it ended, or once its run's result is known while the run goes on
        (lam.resolveThenExecute: the run is SUCCESS, its children still run), or (added) once
        it waits as a row: its run suspended, its next poll more than `hold` away (`due_at`
        set, status processing) — the sync endpoint answers 202 then, the caller polls."""
        job = self._known(job_id)
        if job.status in table.FINISHED or self._waiting(job):
            return job
        early = self._early.get(job_id)
        if early is not None:
            return self.get(job_id) or early
        waiter: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(waiter)
        try:
            return await waiter
        finally:
            waiters = self._waiters.get(job_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(job_id, None)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: in memory, its task is stopped (a poll in flight sends its onGiveUp,
        nothing else is sent); waiting as a row, it is ended from its saved state (each
        unsettled poll's onGiveUp is sent); pending and not started, it ends at once."""
        job = self._known(job_id)
        if job.status in table.FINISHED:
            raise JobRequestError(409, f"job {job_id} is {job.status}: nothing to cancel")
        task = self._active.get(job_id)
        if job_id in self._cancels and task is not None:
            await asyncio.wait([task])  # being canceled already
            return self._known(job_id)
        self._store.request_cancel(job_id)  # recorded first: a restart carries it out
        self._cancels.add(job_id)
        if task is None:
            self._table.take(job_id)  # now, before the waker may launch it
            task = self._track(job_id, self._guarded(job_id, self._cancel_row(job_id)))
        else:
            task.cancel(CANCELLED)
        await asyncio.wait([task])
        return self._known(job_id)

    async def resume(self, job_id: str) -> Job:
        """Run a failed or canceled job on: its failed step is redriven (`RunState.redrive`:
        completed steps and the step's requests that succeeded are kept) under the same id."""
        job = self._known(job_id)
        if job.status not in (table.FAILED, table.CANCELED):
            raise JobRequestError(
                409, f"job {job_id} is {job.status}: only a failed or canceled job can be resumed"
            )
        try:
            setup = self._job_setup(job)
        except DefinitionError as exc:
            raise JobRequestError(409, exc.message) from None
        state, _saved, _status = self._store.load(job_id)
        state.redrive(self.clock.now())
        self._store.redriven(job_id, state.next_step)
        self._store.begin(state, setup.invocation)
        self._table.requeue(job_id, self.clock.now())
        self._log.info("job.resumed", job_id=job_id, from_step=state.next_step + 1)
        self._poke()
        return self._known(job_id)

    def result_json(self, job_id: str) -> bytes | None:
        """The job's whole result as JSON (a completed or expired job's), else None."""
        row = self._table.get(job_id)
        if row is None or row.status not in (table.COMPLETED, table.EXPIRED):
            return None
        text = self._table.result_text(job_id)
        return None if text is None else text.encode()

    def listen(self, fn: Callable[[Job], None]) -> None:
        """`fn(job)` once for each job that ends (completed, failed or canceled)."""
        self._listeners.append(fn)

    def sweep(self, now: float | None = None) -> _Ids:
        """Expire the jobs that ended more than `retention` seconds before `now` (the clock's
        by default); returns their ids."""
        at = self.clock.now() if now is None else now
        stub = json.dumps(
            {
                "expired": True,
                "message": f"the job's result was deleted {_days(self.retention)} after it "
                "ended (the server's --retention)",
            }
        )
        expired: _Ids = []
        while batch := self._table.expire(at - self.retention, at, stub):
            expired.extend(batch)
        if expired:
            self._log.info("jobs.expired", jobs=len(expired))
        return expired

    @property
    def active(self) -> int:
        """Runs in memory now."""
        return len(self._active)

    # -- running -----------------------------------------------------------------------------

    def _launch(self, row: JobRow) -> None:
        """The waker's: take a due job over and run it in memory."""
        self._table.running(row.job_id, self.clock.now())
        self._track(row.job_id, self._guarded(row.job_id, self._drive(row)))

    async def _guarded(self, job_id: str, work: Coroutine[Any, Any, None]) -> None:
        """`work` on a job, where a failure outside its run (a store that cannot be read, a
        configuration no longer given) fails the job with a clear error, never the server."""
        try:
            await work
        except LamrunnerError as exc:
            self._log.error("job.unrunnable", job_id=job_id, error=exc.message)
            self._end(job_id, table.FAILED, error=exc.to_dict())
        except Exception as exc:  # noqa: BLE001 - a bug: this job fails, the others go on
            error = InternalError.of(exc, "serve")
            self._log.error("internal.error", job_id=job_id, error=error.message)
            self._end(job_id, table.FAILED, error=error.to_dict())

    def _track(self, job_id: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._active[job_id] = task

        def done(_task: asyncio.Task[None]) -> None:
            if self._active.get(job_id) is task:
                del self._active[job_id]
            self._cancels.discard(job_id)
            self._poke()

        task.add_done_callback(done)
        return task

    async def _drive(self, row: JobRow) -> None:
        """Run (or resume) the job's run until it ends or suspends; then its row says which."""
        setup = self._job_setup(row)
        try:
            state, _saved, _status = self._store.load(row.job_id)
        except DefinitionError as exc:
            self._end(row.job_id, table.FAILED, error=exc.to_dict())
            return
        if state.finished:  # it ended, but the process died before its job row said so
            self._ended(row.job_id, state, setup.secrets.mask_data(state.record()))
            return
        self._store.begin(state, setup.invocation)
        await self._run(row.job_id, setup, state)

    async def _run(self, job_id: str, setup: _Setup, state: RunState) -> None:
        """Run the job's run (owned by this process) until it ends or suspends; then its row
        says which."""
        try:
            record = await setup.engine.resume(state, hold=self.hold)
        except asyncio.CancelledError:
            if job_id not in self._cancels:
                raise  # a handover (close): the checkpoint stays
            _uncancel()
            record = await self._cancelled(setup, state)
        except Exception as exc:  # noqa: BLE001 - a bug: the job fails, the server stays up
            record = self._internal_failure(setup, state, exc)
        finally:
            self._store.flush()
        if state.status == SUSPENDED:
            due = state.resume_at or self.clock.now()
            self._table.waiting(job_id, due)
            if job_id in self._waiters and due - self.clock.now() > WAKE_LEAD:
                waiting = self.get(job_id)  # its task ends now: a sync caller gets the row
                if waiting is not None:
                    self._notify(job_id, waiting)
        elif state.status == RUNNING:  # not expected: run it again from its checkpoint
            self._table.waiting(job_id, self.clock.now())
        else:
            self._ended(job_id, state, record)

    async def _cancelled(self, setup: _Setup, state: RunState) -> dict[str, Any]:
        """A run in memory was cancelled: a suspended one (woken, waiting out its lead) ends
        from its saved state (its polls' onGiveUp sent); one stopped mid-step (its polls in
        flight sent theirs as they stopped) ends FAILED with a Cancelled error, saved."""
        if state.status == SUSPENDED:
            return await setup.engine.cancel(state, "job canceled")
        steps = setup.engine.workflow.steps
        step = steps[min(state.next_step, len(steps) - 1)].name
        state.status = FAILED
        state.error = Cancelled(
            f"cancelled (job canceled) before step {state.next_step + 1} finished", step=step
        ).to_dict()
        self._store.save_run(state)
        return setup.secrets.mask_data(state.record())  # type: ignore[no-any-return]

    async def _cancel_row(self, job_id: str) -> None:
        """Cancel a job no task runs: pending and not started, it ends at once (nothing was
        sent); waiting, it ends from its saved state like `lamrunner cancel` of a suspended
        run (each unsettled poll's onGiveUp sent)."""
        job = self._known(job_id)
        setup = self._job_setup(job)
        state, _saved, _status = self._store.load(job_id)
        if job.status == table.PENDING:
            steps = setup.engine.workflow.steps
            state.status = FAILED
            state.error = Cancelled(
                "cancelled (job canceled) before it started",
                step=steps[min(state.next_step, len(steps) - 1)].name,
            ).to_dict()
            self._store.save_run(state)
            record = setup.secrets.mask_data(state.record())
        else:
            self._store.begin(state, setup.invocation)
            record = await setup.engine.cancel(state, "job canceled")
            self._store.flush()
        self._ended(job_id, state, record, status=table.CANCELED)

    def _internal_failure(self, setup: _Setup, state: RunState, exc: Exception) -> dict[str, Any]:
        error = InternalError.of(exc, "serve")
        steps = setup.engine.workflow.steps
        if state.next_step < len(steps):
            error = error.in_step(steps[state.next_step].name)
        self._log.error("internal.error", job_id=state.run_id, error=error.message)
        state.status = FAILED
        state.error = error.to_dict()
        self._store.save_run(state)
        return setup.secrets.mask_data(state.record())  # type: ignore[no-any-return]

    def _ended(
        self,
        job_id: str,
        state: RunState,
        record: Mapping[str, Any],
        status: str | None = None,
    ) -> None:
        """The job's run ended (the masked `record` its outcome): its row, then its waiters."""
        if state.status == SUCCESS:
            result = json.dumps(record.get("result"))
            ended_by = state.meta.get("endedBy")
            self._end(job_id, status or table.COMPLETED, result=result, ended_by=ended_by)
            return
        error = record.get("error") or {}
        canceled = error.get("type") == "Cancelled" or job_id in self._cancels
        self._end(job_id, status or (table.CANCELED if canceled else table.FAILED), error=error)

    def _end(
        self,
        job_id: str,
        status: str,
        *,
        result: str | None = None,
        error: dict[str, Any] | None = None,
        ended_by: str | None = None,
    ) -> None:
        first = self._table.finish(
            job_id, status, self.clock.now(), result=result, error=error, ended_by=ended_by
        )
        self._early.pop(job_id, None)
        job = self.get(job_id)
        assert job is not None
        self._log.info("job.ended", job_id=job_id, status=status)
        self._notify(job_id, job)
        if first:
            for listener in self._listeners:
                try:
                    listener(job)
                except Exception as exc:  # noqa: BLE001 - a listener's bug must not stop a job
                    self._log.error("job.listener_failed", job_id=job_id, error=type(exc).__name__)

    def _heard_success(self, state: RunState) -> None:
        """A job's run is SUCCESS while it runs on: its result is known (resolveThenExecute)."""
        if state.run_id not in self._active or state.run_id in self._early:
            return
        row = self._table.get(state.run_id)
        if row is None:
            return
        setup = self._job_setup(row)
        masked = setup.secrets.mask_data(state.result)
        job = dataclasses.replace(self._job(row), result=masked, ended_by=state.meta.get("endedBy"))
        self._early[state.run_id] = job
        self._notify(state.run_id, job)

    def _notify(self, job_id: str, job: Job) -> None:
        for waiter in self._waiters.pop(job_id, []):
            if not waiter.done():
                waiter.set_result(job)

    def _carry_out_cancels(self) -> None:
        """Cancel each unfinished job a cancel was recorded for and no task cancels yet."""
        for job_id in self._table.cancel_requests(self._names):
            if job_id not in self._cancels:
                self._log.info("job.cancel_requested", job_id=job_id)
                self._background.add(asyncio.ensure_future(self._cancel_quietly(job_id)))

    async def _cancel_quietly(self, job_id: str) -> None:
        try:
            await self.cancel(job_id)
        except JobRequestError:
            pass  # it ended (or expired) meanwhile: nothing to cancel
        finally:
            self._background.discard(asyncio.current_task())  # type: ignore[arg-type,unused-ignore]

    async def _cancel_watch(self) -> None:
        """`lamrunner cancel JOB_ID` writes the store's cancels table; look in it often."""
        while True:
            await asyncio.sleep(defaults.CANCEL_CHECK_INTERVAL)
            self._carry_out_cancels()

    async def _sweeps(self) -> None:
        """Hourly, in real time (a fake clock's sleeps jump: `sweep(now)` is for tests)."""
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.sweep()

    # -- the parts ---------------------------------------------------------------------------

    @property
    def _store(self) -> RunStore:
        if self._runs is None:
            raise RuntimeError("JobService.start() was not called")
        return self._runs

    @property
    def _table(self) -> JobStore:
        if self._jobs is None:
            raise RuntimeError("JobService.start() was not called")
        return self._jobs

    def _poke(self) -> None:
        if self._waker is not None:
            self._waker.poke()

    def _room(self) -> int:
        return self.max_active - len(self._active)

    def _next_due(self) -> float | None:
        return self._table.next_due(self._names)

    def _due(self, until: float, limit: int) -> _DueRows:
        return self._table.due(until, limit, self._names)

    @property
    def _names(self) -> tuple[str, ...]:
        return tuple(self.served)

    def _waiting(self, job: Job) -> bool:
        """A row until a poll well ahead (not a job due now: pending, resumed, recovered)."""
        return (
            job.status == table.PROCESSING
            and job.due_at is not None
            and job.due_at - self.clock.now() > WAKE_LEAD
            and job.job_id not in self._active
        )

    def _known(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise JobRequestError(404, f"no job {job_id!r} in this server's store")
        return job

    def _served(self, name: str) -> Served:
        served = self.served.get(name)
        if served is None:
            names = ", ".join(sorted(self.served)) or "none"
            raise JobRequestError(404, f"no workflow named {name!r} is served (served: {names})")
        return served

    def _configuration(self, name: str | None) -> str | None:
        """The configuration a job runs under: the one named, else the first given (None:
        the workflow's own `config:`)."""
        if name is None:
            return next(iter(self.configs), None)
        if name not in self.configs:
            known = ", ".join(self.configs) or "none; start the server with --config FILE"
            raise JobRequestError(404, f"configuration: no configuration {name!r} (known: {known})")
        return name

    def _job_setup(self, job: JobRow | Job) -> _Setup:
        if job.configuration is not None and job.configuration not in self.configs:
            raise DefinitionError(
                f"job {job.job_id} runs under the configuration {job.configuration!r}, which "
                "this server was not given (start it with that --config file to run the job)"
            )
        return self._setup(job.workflow, job.configuration)

    def _setup(self, name: str, config: str | None) -> _Setup:
        """The engine of (workflow, configuration), made once."""
        key = (name, config)
        setup = self._setups.get(key)
        if setup is not None:
            return setup
        served = self._served(name)
        workflow = served.workflow
        files = [] if config is None else [str(self.configs[config].resolve())]
        env = self._env

        def layered(base: Any) -> dict[str, Any]:
            return build_config(base, files, (), env)

        engine = Engine(
            workflow,
            layered(workflow.config),
            transport=self._transport(workflow),
            js=self._js_engine(),
            clock=self.clock,
            observers=[self._store, _EarlyResults(self._heard_success)],
            saved_runs=self._store.saved_state,
            config_layers=layered,
        )
        invocation = {
            "workflow": str(Path(served.file).resolve()),
            "configFiles": files,
            "sets": [],
            "digest": "",
        }
        setup = _Setup(engine, invocation, Secrets.of_config(engine.config))
        self._setups[key] = setup
        return setup

    def _transport(self, workflow: Workflow) -> Any:
        """One transport per response limit and network policy, shared by every run of the
        workflows that have them (connections reused), opened lazily on first send."""
        key = f"{workflow.limits.max_response_bytes}:{workflow.network.allow_link_local}"
        transport = self._transports.get(key)
        if transport is None:
            transport = self._transports[key] = _LazyTransport(
                max_response_bytes=workflow.limits.max_response_bytes,
                allow_link_local=workflow.network.allow_link_local,
            )
        return transport

    def _js_engine(self) -> Any:
        if self._js is None:
            from lamrunner.js.runtime import JsEngine  # QuickJS loads only when a server starts

            self._js = JsEngine()
        return self._js

    def _job(self, row: JobRow) -> Job:
        result = None
        large = row.result_bytes is not None and row.result_bytes >= LARGE_RESULT_BYTES
        if row.status in (table.COMPLETED, table.EXPIRED) and not large:
            text = self._table.result_text(row.job_id)
            result = None if text is None else json.loads(text)
        return Job(
            job_id=row.job_id,
            workflow=row.workflow,
            status=row.status,
            created_at=row.created_at,
            updated_at=row.updated_at,
            result=result,
            error=row.error,
            result_bytes=row.result_bytes,
            ended_by=row.ended_by,
            configuration=row.configuration,
            callback_url=row.callback_url,
            attempts=row.attempts,
            start_from_step=row.start_step,
            end_at_step=row.end_step,
            finished_at=row.finished_at,
            due_at=row.due_at,
        )


class _LazyTransport(AiohttpTransport):
    """An AiohttpTransport opened on its first request (its session needs a running loop)."""

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        if self._session is None:  # no await before it is set: one session, however many
            await self.__aenter__()
        return await super().send(*args, **kwargs)


def _step_number(value: Any, field: str, steps: int) -> int | None:
    """A 1-based step number (step k is the GWO's `step_k`), or None."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= steps:
        raise JobRequestError(
            400,
            f"{field}: expected a step number from 1 to {steps} (steps count from 1, in the "
            f"order of the workflow's steps), got {value!r}",
        )
    return value


def _new_job_id(now: float) -> str:
    """Sortable, readable and unique enough for many jobs a second: 20261202-101512-<16 hex>."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{secrets.token_hex(8)}"


def _uncancel() -> None:
    """The task goes on after a cancel it handled (a job cancel is not the task's end)."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _days(seconds: float) -> str:
    """A retention as a person says it: `7 days`, else the duration's form (`1h`, `90s`)."""
    if seconds >= 86400 and seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day" + ("" if days == 1 else "s")
    return format_duration(seconds)


__all__ = [
    "JOB_STATUSES",
    "LARGE_RESULT_BYTES",
    "Job",
    "JobRequestError",
    "JobService",
    "Served",
]
