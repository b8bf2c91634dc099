"""The engine: advances a RunState through the workflow's steps.

    handler → directive → rendered requests → request or poll (calls) → step result → GWO

All progress lives in the RunState (see `state`); the run's observers (`observe`) hear of
it at every step boundary and after every poll attempt, and `resume` continues a saved state.
A run given a `budget` suspends instead of waiting past it: once every request of the step in
flight has settled or waits for an attempt due after the budget's end, the run is checkpointed
and returned SUSPENDED with its `resumeAt`, so a host need not hold a process through a long
wait. `poller` opens one polled request for a host that drives the attempts itself.
Each run gets its own `RunContext` (`context`): its secrets, its bound log, and the transport
(one aiohttp session, so connections are reused) and QuickJS workers it owns unless the engine
was given shared ones. An engine holds no run's state, so one engine runs many runs, at once
or one after another, each independent of the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import lamrunner.errors as error_types
from lamrunner import defaults
from lamrunner.decide.batch import enough, hopeless, tolerated
from lamrunner.decide.polling import PollState, eta_seconds
from lamrunner.definition.directives import (
    RESOLVE_MODE,
    ExecuteDirective,
    ExitDirective,
    HttpDirective,
    PlainData,
    RequestSpec,
    ResponseDirective,
    parse_directive,
)
from lamrunner.definition.handlers import call_handler
from lamrunner.definition.pollstep import check_condition
from lamrunner.definition.workflow import Step, Workflow
from lamrunner.errors import (
    BatchFailed,
    DefinitionError,
    LamrunnerError,
    RequestCancelled,
)
from lamrunner.http.request import RenderedRequest
from lamrunner.http.transport import AiohttpTransport, Transport
from lamrunner.logs.chain import get_logger, run_logging, step_logging
from lamrunner.logs.masking import Secrets
from lamrunner.runner import routes
from lamrunner.runner.calls import (
    CANCELLED,
    CallResult,
    Element,
    GiveUpHook,
    HistoryHook,
    PolledHook,
    Poller,
    ProgressHook,
    Suspended,
    give_up,
    open_poller,
    perform,
    register,
)
from lamrunner.runner.clock import Clock, SystemClock
from lamrunner.runner.context import RunContext
from lamrunner.runner.observe import Observers, RunObserver
from lamrunner.runner.pollsteps import (
    extra_templates,
    failure_entry,
    input_values,
    success_entry,
    write_outputs,
)
from lamrunner.runner.rendering import render_request
from lamrunner.runner.state import (
    FAILED,
    RUNNING,
    SUCCESS,
    SUSPENDED,
    ChildRun,
    ElementState,
    PendingStep,
    RunState,
    iso_ms,
    new_run_id,
)
from lamrunner.runner.subruns import ChildEngine, Lineage, SavedRuns, SubRuns, failure

ConfigLayers = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class Engine:
    """Runs one workflow with one resolved config. Reusable for many runs, concurrent ones too.

    `transport` and `js` are shared by every run when given (the caller closes them); else
    each run opens and closes its own. `observers` hear of every run's progress, its
    sub-workflows' too. For sub-workflows (`subruns`): `saved_runs` reads a saved run by its
    id, so a resumed parent resumes its unfinished children (a run store's `saved_state`);
    `config_layers` puts the host's config layers (the CLI's --config and --set) over a child
    workflow's own `config:` (a child without one gets this engine's config)."""

    def __init__(
        self,
        workflow: Workflow,
        config: Mapping[str, Any] | None = None,
        *,
        transport: Transport | None = None,
        js: Any = None,
        clock: Clock | None = None,
        observers: Iterable[RunObserver] = (),
        saved_runs: SavedRuns | None = None,
        config_layers: ConfigLayers | None = None,
        lineage: Lineage | None = None,
    ) -> None:
        self.workflow = workflow
        self.config = dict(workflow.config if config is None else config)
        self._transport = transport
        self._js = js
        self.clock = clock or SystemClock()
        self._observer = Observers(observers)
        self._saved_runs = saved_runs
        self._layers = config_layers
        self._lineage = lineage or Lineage.root(workflow)

    async def run(
        self,
        input_data: Any = None,
        run_id: str | None = None,
        *,
        budget: float | None = None,
        hold: float | None = None,
    ) -> dict[str, Any]:
        """Run from the first step; returns the run record. With a `budget` (seconds), the run
        suspends rather than wait for a poll attempt due after the budget's end; with a `hold`
        (seconds), rather than wait for one due more than `hold` after now (see `resume`)."""
        state = RunState.start(self.workflow.name, {} if input_data is None else input_data, run_id)
        return await self.resume(state, budget=budget, hold=hold)

    async def resume(
        self,
        state: RunState,
        *,
        budget: float | None = None,
        steps: int | None = None,
        hold: float | None = None,
    ) -> dict[str, Any]:
        """Continue a (saved) run from its next step or its in-flight poll. A SUSPENDED state
        resumed before its `resume_at` first waits until then; the budget counts from then.
        With `steps`, the run stops RUNNING once that many steps have completed (a host that
        checkpoints each step itself advances one at a time). `hold` is a rolling budget: a
        poll whose next attempt is due more than `hold` seconds after the moment it would
        start waiting suspends the run (once every request of its step has settled or waits
        so), so a server keeps short waits in memory and turns long ones into saved rows."""
        _check_budget(budget)
        _check_budget(hold, "hold")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
            raise DefinitionError(f"steps: expected a number of steps >= 1, got {steps!r}")
        if steps is not None and steps < 1:
            raise DefinitionError(f"steps: expected a number of steps >= 1, got {steps!r}")
        secrets = Secrets.of_config(self.config)
        with run_logging(state.run_id, self.workflow.name, secrets):  # handlers' lines too
            log = get_logger(run_id=state.run_id, workflow=self.workflow.name)
            fresh = state.next_step == 0 and not state.pending and not state.route
            log.info("run.start" if fresh else "run.resume", steps=len(self.workflow.steps))
            _warn(log, self.workflow.warnings)
            if state.status == SUSPENDED:
                await self._wait_for(state, log)
                state.status = RUNNING
            end = None if budget is None else self.clock.now() + budget
            async with AsyncExitStack() as stack:
                ctx = await self._context(
                    stack, state.run_id, secrets, log, self._observer, end, hold
                )
                await _drive(ctx, state, steps)
            if state.status == SUSPENDED:
                at = state.resume_at
                log.info("run.suspended", resume_at=None if at is None else iso_ms(at))
            elif state.status == RUNNING:
                log.debug("run.paused", next_step=state.next_step)
            else:
                level = log.info if state.status == SUCCESS else log.error
                level("run.done", status=state.status, error=(state.error or {}).get("message"))
            return _masked_record(state, secrets)

    async def call_handler(self, state: RunState) -> Any:
        """What the handler of the run's next step returns, called on the run's GWO; nothing
        else happens and `state` is unchanged. For a host that checkpoints each handler call
        itself (a durable function's step): it then sets `state.pending =
        PendingStep.begin(output)` and resumes, so the engine carries out that output
        without calling the handler again."""
        step = self.workflow.steps[state.next_step]
        secrets = Secrets.of_config(self.config)
        with run_logging(state.run_id, self.workflow.name, secrets), step_logging(step.name):
            log = get_logger(run_id=state.run_id, workflow=self.workflow.name)
            async with AsyncExitStack() as stack:
                ctx = await self._context(stack, state.run_id, secrets, log, self._observer)
                log.info("step.start", step=step.name, handler=step.handler.spec)
                try:
                    return await _call_handler(ctx, step, state)
                except LamrunnerError as exc:
                    raise exc.in_step(step.name) from None

    async def cancel(self, state: RunState, reason: str = "cancelled") -> dict[str, Any]:
        """End a run that no process is running (SUSPENDED, or stopped mid-way): each poll of
        its step in flight that has an onGiveUp sends it (from the poll's saved last
        response), and the run ends FAILED with a `Cancelled` error. Returns the record."""
        if state.finished:
            raise DefinitionError(f"run {state.run_id} already finished with {state.status}")
        secrets = Secrets.of_config(self.config)
        with run_logging(state.run_id, self.workflow.name, secrets):
            log = get_logger(run_id=state.run_id, workflow=self.workflow.name)
            async with AsyncExitStack() as stack:
                ctx = await self._context(stack, state.run_id, secrets, log, self._observer)
                ctx.observer.run_started(state)
                try:
                    await _give_up_pending(ctx, state)
                    step = self.workflow.steps[min(state.next_step, len(self.workflow.steps) - 1)]
                    error = error_types.Cancelled(
                        f"cancelled ({reason}) before step {state.next_step + 1} finished",
                        step=step.name,
                    )
                    _fail(ctx, state, error)
                    log.error("run.cancelled", step=step.name)
                    ctx.observer.save_run(state)
                finally:
                    ctx.observer.run_finished(state)
            return _masked_record(state, secrets)

    async def _wait_for(self, state: RunState, log: Any) -> None:
        """Until a suspended run's `resume_at`, if it is still ahead."""
        at = state.resume_at
        if at is not None and at > self.clock.now():
            log.info("run.waiting", until=iso_ms(at), note=f"waiting until {iso_ms(at)}")
            await self.clock.sleep(at - self.clock.now())

    @asynccontextmanager
    async def poller(
        self,
        request: Mapping[str, Any],
        *,
        run_id: str | None = None,
        on_history: HistoryHook | None = None,
    ) -> AsyncIterator[Poller]:
        """One polled request, opened for a host that drives its attempts itself (the hosts
        API, docs/python-api.md): `request` is a `lam.httpRequest` object with a `loopUntil`,
        as a handler returns it (templates filled from this engine's config). The `Poller`'s
        `attempt(state)` makes one attempt with the engine's own semantics and returns its
        `AttemptOutcome`; `on_history` gets each attempt's history row, masked."""
        directive = parse_directive(
            {"lam.httpRequest": dict(request)}, _check_condition, self.config
        )
        assert isinstance(directive, HttpDirective)
        spec = directive.requests[0]
        if spec.loop is None:
            raise DefinitionError(f"{spec.where}: not a poll: it has no loopUntil")
        rendered = render_request(spec, self.config)
        secrets = Secrets.of_config(self.config)
        register(secrets, rendered)
        run_id = run_id or new_run_id()
        with run_logging(run_id, self.workflow.name, secrets):
            async with AsyncExitStack() as stack:
                log = get_logger(run_id=run_id, workflow=self.workflow.name)
                ctx = await self._context(stack, run_id, secrets, log, Observers(()))
                poller = await open_poller(ctx, Element(rendered, spec, on_history=on_history))
                async with poller:
                    yield poller

    async def _context(
        self,
        stack: AsyncExitStack,
        run_id: str,
        secrets: Secrets,
        log: Any,
        observer: Observers,
        budget_end: float | None = None,
        hold: float | None = None,
    ) -> RunContext:
        """One run's context; what it opens for the run is closed with `stack`."""
        transport = await self._run_transport(stack)
        js = self._run_js(stack)

        def spawn(child: Workflow, lineage: Lineage) -> ChildEngine:
            return self._child_engine(child, lineage, transport, js, observer)

        return RunContext(
            run_id=run_id,
            workflow=self.workflow,
            config=self.config,
            secrets=secrets,
            log=log,
            transport=transport,
            js=js,
            clock=self.clock,
            observer=observer,
            budget_end=budget_end,
            hold=hold,
            subruns=SubRuns(spawn, self._lineage, observer, self._saved_runs),
        )

    def _child_engine(
        self,
        child: Workflow,
        lineage: Lineage,
        transport: Transport,
        js: Any,
        observer: RunObserver,
    ) -> Engine:
        """The engine of a sub-workflow run: this run's JS workers, clock and observers, its
        transport too unless the child's limits or network policy differ; the child's own
        config under the host's layers, or this run's config when it has none."""
        if child.config:
            config = dict(child.config if self._layers is None else self._layers(child.config))
        else:
            config = self.config
        alike = (
            child.limits.max_response_bytes == self.workflow.limits.max_response_bytes
            and child.network == self.workflow.network
        )
        return Engine(
            child,
            config,
            transport=transport if alike else None,
            js=js,
            clock=self.clock,
            observers=[observer],
            saved_runs=self._saved_runs,
            config_layers=self._layers,
            lineage=lineage,
        )

    async def _run_transport(self, stack: AsyncExitStack) -> Transport:
        """The shared transport, or one for this run, closed with `stack`."""
        if self._transport is not None:
            return self._transport
        transport = AiohttpTransport(
            max_response_bytes=self.workflow.limits.max_response_bytes,
            allow_link_local=self.workflow.network.allow_link_local,
        )
        await stack.enter_async_context(transport)
        return transport

    def _run_js(self, stack: AsyncExitStack) -> Any:
        """The shared JS engine, or one for this run, closed with `stack`."""
        if self._js is not None:
            return self._js
        from lamrunner.js.runtime import JsEngine  # QuickJS loads only when a run needs it

        js = JsEngine()
        stack.callback(js.close)
        return js


async def _drive(ctx: RunContext, state: RunState, steps: int | None = None) -> None:
    """The run between its observers' `run_started` and `run_finished`: a failure ends it
    FAILED with its error in the state, which is saved at the end."""
    ctx.observer.run_started(state)
    try:
        try:
            _restart_children(ctx, state)
            await _advance(ctx, state, steps)
        except LamrunnerError as exc:
            _fail(ctx, state, exc)
        await ctx.subruns.settle()  # the children that run beside it end before it does
        ctx.observer.save_run(state)
    finally:
        await ctx.subruns.cancel()  # a run stopped by a signal stops its children too
        ctx.observer.run_finished(state)


def _restart_children(ctx: RunContext, state: RunState) -> None:
    """A resumed run's unfinished children that ran beside it (asyncExecute, resolve) start
    again from their checkpoints."""
    waiting = [c for c in state.children if c.mode != "execute" and not c.finished]
    workflows = {
        c.run_id: ctx.workflow.child(c.workflow_id, f"{c.step}[{c.index}]") for c in waiting
    }
    ctx.subruns.restart(state, workflows)


async def _advance(ctx: RunContext, state: RunState, limit: int | None = None) -> None:
    """Step after step, each where the one before routed the run (`routes`), until the run
    ends, suspends, or (with `limit`) that many steps have run."""
    steps = ctx.workflow.steps
    done = 0
    while state.next_step < len(steps) and state.status == RUNNING:
        if limit is not None and done == limit:
            return  # paused RUNNING: the host advances it again
        step = steps[state.next_step]
        with step_logging(step.name):
            routes.check_bound(ctx, state, step)
            routes.forget_children(state, step)
            before = state.gwo.get(step.key)  # an earlier execution's entry (a route loop)
            try:
                directive = await _run_step(ctx, step, state)
                if state.pending is None and state.status != SUSPENDED:
                    await routes.leave(ctx, step, state, directive)
            except LamrunnerError as exc:
                error = exc.in_step(step.name)
                if not routes.on_error(ctx, step, state, error, before):
                    raise error from None
            ctx.observer.save_run(state)
        done += 1
        if _ends_after(state, step):
            state.status = SUCCESS  # the run's last step, by the host's choice
            state.result = _step_result(state.gwo.get(step.key))
            return
    if state.status == RUNNING:
        state.status = SUCCESS
        state.result = _step_result(state.gwo.get(steps[-1].key))


def _ends_after(state: RunState, step: Step) -> bool:
    """A run whose `meta["endAtStep"]` is k (1-based, a server's `end_at_step`) ends with
    step k's result once step k has run, wherever its route would lead."""
    end = state.meta.get("endAtStep")
    return (
        isinstance(end, int)
        and step.index == end
        and state.status == RUNNING
        and state.pending is None
    )


async def _run_step(ctx: RunContext, step: Step, state: RunState) -> Any:
    """The step's handler and what its directive asks for; returns the directive (the run
    is saved by the caller, once the step's route is taken)."""
    if state.pending is None:
        ctx.log.info("step.start", step=step.name, handler=step.handler.spec)
        output = await _call_handler(ctx, step, state)
    else:
        ctx.log.info("step.resume", step=step.name)
        output = state.pending.output
    directive = _directive(step, output, ctx.config)
    if isinstance(directive, PlainData):
        for note in directive.warnings:
            ctx.log.warning("directive.suspicious", step=step.name, note=note)
        _complete(state, step, {"data": directive.data})
    elif isinstance(directive, ExitDirective):
        _end(ctx, step, state, directive.data, "lam.exit")
    elif isinstance(directive, ResponseDirective):
        _end(ctx, step, state, dict(directive.response), "lam.response")
    elif isinstance(directive, ExecuteDirective):
        for note in directive.warnings:
            ctx.log.warning("directive.deprecated", step=step.name, note=note)
        await _sub_workflows(ctx, step, state, directive, output)
    else:
        _warn(ctx.log, directive.warnings, f"{step.name} ")
        await _requests(ctx, step, state, directive, output)
    return directive


def _directive(step: Step, output: Any, config: Mapping[str, Any]) -> Any:
    """What the step's output asks for: a poll step's is its own compiled request (its output
    holds the values of its inputMappings), a handler's is parsed."""
    if step.poll is not None:
        return HttpDirective((step.poll.request,), batch=False)
    return parse_directive(output, _check_condition, config)


async def _call_handler(ctx: RunContext, step: Step, state: RunState) -> Any:
    if step.poll is not None:  # no code: its "output" is what its inputMappings read
        return input_values(step.poll, state.gwo, ctx.workflow.steps[: step.index - 1])
    program = step.handler.language != "python"  # JavaScript or JQ: limits travel in JsLimits

    def console(level: str, text: str) -> None:
        ctx.log.log(_LEVELS.get(level, 20), "handler.console", step=step.name, text=text)

    return await call_handler(
        step.handler,
        json.dumps(state.gwo),
        js=ctx.js,
        js_limits=ctx.handler_limits if program else None,
        console=console,
        timeout=ctx.workflow.limits.handler_timeout,
        config=ctx.config,
    )


async def _sub_workflows(
    ctx: RunContext, step: Step, state: RunState, directive: ExecuteDirective, output: Any
) -> None:
    """lam.execute: each child in order, the step waiting for all (a failed one fails the
    step, naming it; the ones after it do not run); lam.asyncExecute and resolveThenExecute:
    all started beside the run, which goes on (resolve: ends now with its lam.result). Every
    workflow id is resolved, and the depth checked, before any child starts."""
    if state.pending is None:  # the handler is not called again on resume
        state.pending = PendingStep.begin(output)
        ctx.observer.save_run(state)
    at = f"{ctx.workflow.path}: step {step.name!r}"
    children = [ctx.workflow.child(c.workflow_id, f"{at}: {c.where}") for c in directive.calls]
    for call, child in zip(directive.calls, children, strict=True):
        ctx.subruns.lineage.below(call, child)
    if not directive.blocks:
        records = [
            ctx.subruns.start(state, step.key, i, call, child, directive.mode)
            for i, (call, child) in enumerate(zip(directive.calls, children, strict=True))
        ]
        _complete(state, step, _executions(records))
        if directive.mode == RESOLVE_MODE:
            _succeed(ctx, step, state, directive.result, directive.key)
        return
    done: list[ChildRun] = []
    for i, (call, child) in enumerate(zip(directive.calls, children, strict=True)):
        ctx.log.info("subworkflow.start", step=step.name, workflow_id=call.workflow_id)
        record = await ctx.subruns.run(state, step.key, i, call, child)
        done.append(record)
        if record.status == FAILED:
            state.gwo[step.key] = _executions(done)  # the pending step stays, for a redrive
            raise failure(record, child, call.where)
    _complete(state, step, _executions(done))


def _executions(records: list[ChildRun]) -> dict[str, Any]:
    """The calling step's GWO entry: each child's workflowId, runId, status and result."""
    return {"executions": [record.entry() for record in records]}


@dataclass
class _Batch:
    """A step's request objects once rendered, and the gate that bounds them in flight; for
    a tolerant batch, its failures so far (counted as each happens, so a request waiting at
    the gate is not started once the batch can no longer succeed)."""

    directive: HttpDirective
    requests: list[RenderedRequest]
    gate: asyncio.Semaphore
    failed: int = 0

    def hopeless(self) -> bool:
        need = self.directive.min_success
        return need is not None and hopeless(len(self.requests), need, self.failed)

    def cancelled(self) -> RequestCancelled:
        size, need = len(self.requests), self.directive.min_success or 0
        return RequestCancelled(
            f"cancelled: {self.failed} of the batch's {size} requests had failed, more than "
            f"the {tolerated(size, need)} it tolerates (minSuccess {need})"
        )


async def _requests(
    ctx: RunContext, step: Step, state: RunState, directive: HttpDirective, output: Any
) -> None:
    """Render every request (nothing is sent if one fails), then run them concurrently."""
    notes: list[str] = []
    extra = None if step.poll is None else extra_templates(output)
    rendered = [
        render_request(spec, ctx.config, extra, warnings=notes) for spec in directive.requests
    ]
    for note in _once_per_batch(notes):  # legal, Laminar ignores it: warned, then sent
        ctx.log.warning("request.path_param_unused", step=step.name, note=note)
    for request in rendered:
        register(ctx.secrets, request)
    fresh = state.pending is None or (rendered and not state.pending.elements)  # not yet begun
    if fresh:
        state.pending = PendingStep.start(output, len(rendered))
    assert state.pending is not None
    if _key_requests(state, step, directive, rendered) or fresh:
        ctx.observer.save_run(state)  # the keys are saved before anything is sent
    rendered = _with_keys(state.pending, directive, rendered)
    batch = _Batch(directive, rendered, asyncio.Semaphore(ctx.workflow.limits.concurrency))
    if directive.min_success is not None:
        await _tolerant(ctx, step, state, batch, directive.min_success)
        return
    outcomes = await asyncio.gather(
        *(_element(ctx, step, state, batch, i) for i in range(len(rendered))),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, LamrunnerError):
            raise outcome
    if any(outcome is _WAITING for outcome in outcomes):  # each one done, failed, or waiting
        state.status = SUSPENDED  # the pending step keeps every element's progress
        return
    _settle(ctx, step, state, directive, outcomes)


_WAITING: Any = object()  # an element's outcome when its next attempt is due after the budget


async def _give_up_pending(ctx: RunContext, state: RunState) -> None:
    """The onGiveUp of every poll of the step in flight that has not settled."""
    pending = state.pending
    if pending is None or state.next_step >= len(ctx.workflow.steps):
        return
    step = ctx.workflow.steps[state.next_step]
    directive = _directive(step, pending.output, ctx.config)
    if not isinstance(directive, HttpDirective):
        return
    for i, spec in enumerate(directive.requests):
        entry = pending.elements[i] if i < len(pending.elements) else None
        if spec.on_give_up is None or entry is None or entry.poll is None or entry.done:
            continue
        last = {"response": entry.poll.last_response, "status": entry.poll.last_status}
        outcome = await give_up(ctx, spec, CANCELLED, last)
        _note_give_up(state, step, i, outcome, ctx.clock.now())


def _key_header(spec: RequestSpec, polls: bool, request: RenderedRequest) -> str | None:
    """The header a request sends its Idempotency-Key in, or None: by default a POST or PATCH
    of a step that polls; `idempotencyKey: false` never, a name (or true) always. A request
    that sets the header itself keeps its own value."""
    chosen = spec.idempotency_key
    if chosen is False:
        return None
    if chosen is None:
        if not polls or spec.method not in defaults.NON_IDEMPOTENT_METHODS:
            return None
        chosen = defaults.IDEMPOTENCY_HEADER
    assert isinstance(chosen, str)
    if any(name.lower() == chosen.lower() for name, _ in request.headers):
        return None
    return chosen


def _key_requests(
    state: RunState, step: Step, directive: HttpDirective, rendered: list[RenderedRequest]
) -> bool:
    """Make the keys the step's unsettled requests need and lack; True when one was made.

    A key is a UUID derived from the run id, the step, the request's index, the run's
    redrives and the request itself (method, url, body: never its headers), so a host that
    replays a step without its checkpoint (a cloud function) makes the same key again, and a
    different request never shares one; it is saved in the pending step all the same."""
    pending = state.pending
    assert pending is not None
    polls = any(spec.loop is not None for spec in directive.requests)
    keys: list[str | None] = list(pending.keys or [])
    keys.extend([None] * (len(rendered) - len(keys)))
    made = False
    redrives = len(state.meta.get("redrives") or ())
    for i, (spec, request) in enumerate(zip(directive.requests, rendered, strict=True)):
        entry = pending.elements[i] if i < len(pending.elements) else None
        if keys[i] is not None or (entry is not None and entry.done):
            continue
        if _key_header(spec, polls, request) is not None:
            sent = hashlib.sha256(request.body or b"").hexdigest()
            name = f"lamrunner:{state.run_id}:{step.key}:{i}:{redrives}:{request.method}"
            keys[i] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}:{request.url}:{sent}"))
            made = True
    pending.keys = keys if any(k is not None for k in keys) else None
    return made


def _with_keys(
    pending: PendingStep, directive: HttpDirective, rendered: list[RenderedRequest]
) -> list[RenderedRequest]:
    """The requests, each with its Idempotency-Key header when it has a key."""
    if pending.keys is None:
        return rendered
    polls = any(spec.loop is not None for spec in directive.requests)
    out = []
    for spec, request, key in zip(directive.requests, rendered, pending.keys, strict=False):
        header = None if key is None else _key_header(spec, polls, request)
        if header is not None and key is not None:
            request = dataclasses.replace(request, headers=(*request.headers, (header, key)))
        out.append(request)
    return out + rendered[len(out) :]


async def _tolerant(ctx: RunContext, step: Step, state: RunState, batch: _Batch, need: int) -> None:
    """A batch with `minSuccess` / `toleratedFailures`: its elements run side by side; once
    more have failed than it tolerates (`decide.batch.hopeless`), the ones still in flight or
    not yet started are cancelled and the step fails with BatchFailed. Otherwise each runs to
    its end and the step succeeds with every element's result or error, and a `batch` count."""
    size = len(batch.requests)
    tasks: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(_element(ctx, step, state, batch, i)) for i in range(size)
    ]
    outcomes: list[Any] = [None] * size
    index: dict[asyncio.Future[Any], int] = {task: i for i, task in enumerate(tasks)}
    try:
        waiting: set[asyncio.Future[Any]] = set(tasks)
        while waiting:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                outcomes[index[task]] = _outcome(task)
            if waiting and batch.hopeless():
                for task in waiting:
                    task.cancel()
                await asyncio.gather(*waiting, return_exceptions=True)
                for task in waiting:
                    stopped = task.cancelled()
                    outcomes[index[task]] = batch.cancelled() if stopped else _outcome(task)
                break
    finally:
        stray = [task for task in tasks if not task.done()]
        for task in stray:  # the step itself was cancelled (a signal): stop every element
            task.cancel()
        if stray:
            await asyncio.gather(*stray, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, LamrunnerError)]
    cancelled = sum(isinstance(o, RequestCancelled) for o in failures)
    if not hopeless(size, need, len(failures) - cancelled) and any(o is _WAITING for o in outcomes):
        state.status = SUSPENDED  # the pending step keeps every element's progress
        return
    entry = _batch_entry(outcomes, ctx.secrets)
    succeeded = size - len(failures) - sum(o is _WAITING for o in outcomes)
    entry["batch"] = {
        "requests": size,
        "minSuccess": need,
        "succeeded": succeeded,
        "failed": len(failures) - cancelled,
        "cancelled": cancelled,
    }
    if enough(need, succeeded):
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, LamrunnerError):
                ctx.log.warning(
                    "batch.tolerated",
                    where=f"lam.httpRequests[{i}]",
                    error=ctx.secrets.mask(outcome.message),
                )
        _complete(state, step, entry)
        return
    state.pending = None
    state.gwo[step.key] = entry  # what every element got
    first = next(o for o in failures if not isinstance(o, RequestCancelled))
    where = f"lam.httpRequests[{outcomes.index(first)}]"
    raise BatchFailed(
        f"lam.httpRequests: {len(failures) - cancelled} of {size} requests failed, more than "
        f"the {tolerated(size, need)} tolerated (minSuccess {need}); {cancelled} cancelled, "
        f"{succeeded} succeeded; first failure: {where}: {first.message}",
        succeeded=succeeded,
        failed=len(failures) - cancelled,
        cancelled=cancelled,
        min_success=need,
    )


def _outcome(task: asyncio.Future[Any]) -> Any:
    """A settled element's outcome: its GWO entry, `_WAITING`, or its LamrunnerError (any
    other exception is a bug, and raised)."""
    error = task.exception()
    if error is None:
        return task.result()
    if isinstance(error, LamrunnerError):
        return error
    raise error


async def _element(
    ctx: RunContext, step: Step, state: RunState, batch: _Batch, i: int
) -> dict[str, Any]:
    """One request object to its GWO entry, resuming its poll if it has one in progress;
    `_WAITING` when it waits past the run's budget. A batch request that fails keeps its
    error in its element (so a resumed step settles as if it had not stopped)."""
    assert state.pending is not None
    elements = state.pending.elements
    entry = elements[i]
    if entry is not None and entry.result is not None:
        return entry.result
    if entry is not None and entry.error is not None:
        batch.failed += 1
        raise _restored_error(entry.error)
    key = f"{step.key}[{i}]"
    async with batch.gate:
        if batch.hopeless():  # a tolerant batch that failed while this one waited its turn
            raise batch.cancelled()
        poll = None if entry is None or entry.poll is None else entry.poll.copy()
        polled = None if entry is None or entry.fetch is None else CallResult.restored(entry.fetch)
        spec = batch.directive.requests[i]
        of = spec.loop.max_attempts if spec.loop is not None else 1
        element = Element(
            batch.requests[i],
            spec,
            _attempt_hook(ctx, step, state, i, of),
            _history_hook(ctx, step, state, i),
            None if spec.on_give_up is None else _give_up_hook(ctx, step, state, i),
            None if spec.follow_result is None else _polled_hook(ctx, state, i),
        )
        try:
            result = await perform(ctx, element, poll, polled)
        except Suspended:
            return _WAITING  # type: ignore[no-any-return]
        except LamrunnerError as exc:
            batch.failed += 1
            if step.poll is not None:  # its outputs say how it failed (for a step after it)
                state.gwo[step.key] = failure_entry(step.poll, exc, batch.requests[i], ctx.secrets)
            if batch.directive.batch:
                failed = elements[i] = ElementState(error=_error_state(exc, ctx.secrets))
                ctx.observer.save_element(state, i, failed)
            raise
        finally:
            ctx.observer.poll_done(key)
    stored = {"response": result.value, "http": result.http()}
    if step.poll is not None:
        stored = success_entry(step.poll, stored, result.polls, batch.requests[i], ctx.secrets)
    done = elements[i] = ElementState(result=stored)
    if batch.directive.batch:  # a lone request's result is saved with the step
        ctx.observer.save_element(state, i, done)
    return stored


def _attempt_hook(ctx: RunContext, step: Step, state: RunState, i: int, of: int) -> ProgressHook:
    """After each poll attempt that another follows (of at most `of`): checkpoint the poll,
    report its progress."""
    assert state.pending is not None
    elements = state.pending.elements
    key, name = f"{step.key}[{i}]", step.name
    save, progress = ctx.observer.save_element, ctx.observer.poll_progress
    report, now = ctx.observer.wants_progress, ctx.clock.now  # no one shown: no countdown made

    def on_attempt(poll_state: PollState) -> None:
        entry = elements[i]  # a snapshot of the loop's state as of this attempt
        if entry is None or entry.poll is None:
            entry = elements[i] = ElementState(poll=poll_state.copy())
        else:  # in place, as this runs after every attempt (see ElementState)
            entry.poll.update_from(poll_state)
        save(state, i, entry)
        if report:
            at = now()
            due = max(0.0, poll_state.next_due - at)
            counted = poll_state.attempt - poll_state.throttled  # of `of`: throttled ones not
            if poll_state.progress is None:
                progress(key, name, counted, of, poll_state.last_status, due)
            else:
                progress(
                    key,
                    name,
                    counted,
                    of,
                    poll_state.last_status,
                    due,
                    percent=poll_state.progress,
                    eta_seconds=eta_seconds(poll_state, at),
                )

    return on_attempt


def _polled_hook(ctx: RunContext, state: RunState, index: int) -> PolledHook:
    """Checkpoint a success whose result pointer is about to be fetched: an interrupted fetch
    is made again on resume, without sending the request (or polling) again."""
    assert state.pending is not None
    elements = state.pending.elements

    def on_polled(result: CallResult) -> None:
        entry = elements[index] = ElementState(
            fetch={"response": result.value, "http": result.http()}
        )
        ctx.observer.save_element(state, index, entry)

    return on_polled


def _give_up_hook(ctx: RunContext, step: Step, state: RunState, index: int) -> GiveUpHook:
    """Where the outcome of a poll's onGiveUp goes: the run's `meta["giveUps"]` (so the run
    record has it), saved at once (an interrupted run is not saved again)."""

    def on_give_up(outcome: dict[str, Any]) -> None:
        _note_give_up(state, step, index, outcome, ctx.clock.now())
        ctx.observer.save_run(state)

    return on_give_up


def _note_give_up(
    state: RunState, step: Step, index: int, outcome: dict[str, Any], now: float
) -> None:
    entry = {"step": step.name, "element": index, "at": iso_ms(now), **outcome}
    state.meta.setdefault("giveUps", []).append(entry)


def _history_hook(ctx: RunContext, step: Step, state: RunState, index: int) -> HistoryHook | None:
    """Where a poll's history rows go; None, so no row is even made, when no observer keeps
    them (none overrides save_attempt)."""
    if not ctx.observer.wants_attempts:
        return None
    save, name = ctx.observer.save_attempt, step.name

    def on_history(row: dict[str, Any]) -> None:
        row["stepName"] = name  # the row is made for this call alone: no copy
        save(state, index, row)

    return on_history


def _settle(
    ctx: RunContext, step: Step, state: RunState, directive: HttpDirective, outcomes: list[Any]
) -> None:
    """Record the step's entry, or fail with the first error while keeping the rest."""
    errors = [o for o in outcomes if isinstance(o, LamrunnerError)]
    if not errors:
        entry = _batch_entry(outcomes, ctx.secrets) if directive.batch else outcomes[0]
        if step.poll is not None:
            for note in write_outputs(step.poll, state.gwo, entry):
                ctx.log.warning("poll.output_mapping_empty", step=step.name, note=note)
        _complete(state, step, entry)
        return
    first = errors[0]  # the pending step stays: a redrive keeps the requests that succeeded
    if not directive.batch:
        raise first
    state.gwo[step.key] = _batch_entry(outcomes, ctx.secrets)  # what the other elements got
    where = f"lam.httpRequests[{outcomes.index(first)}]"
    raise first.replaced(message=f"{where}: {first.message}") from None


def _complete(state: RunState, step: Step, entry: Any) -> None:
    state.gwo[step.key] = entry
    state.pending = None
    state.next_step = step.index


def _end(ctx: RunContext, step: Step, state: RunState, payload: Any, how: str) -> None:
    """A lam.exit / lam.response ends the run with its (rendered) payload as the result; the
    run's secrets in it are masked, as in a log line: the record goes to stdout."""
    payload = ctx.secrets.mask_data(payload)
    _complete(state, step, {"data": payload})
    _succeed(ctx, step, state, payload, how)


def _succeed(ctx: RunContext, step: Step, state: RunState, result: Any, how: str) -> None:
    """The run ends now with `result`; `how` (lam.exit, lam.response, lam.resolveThenExecute)
    is kept as the state's `meta["endedBy"]`, so a host can answer a lam.response with it."""
    state.status = SUCCESS
    state.result = result
    state.meta["endedBy"] = how
    ctx.log.info("run.exit", step=step.name, directive=how)


def _fail(ctx: RunContext, state: RunState, exc: LamrunnerError) -> None:
    state.status = FAILED
    state.error = ctx.secrets.mask_data(exc.to_dict())


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _warn(log: Any, notes: tuple[str, ...], prefix: str = "") -> None:
    """Suspicious durations (`initialDelay: 2000` is seconds): legal, so warnings, not errors."""
    for note in notes:
        log.warning("duration.suspicious", note=prefix + note)


def _once_per_batch(notes: list[str]) -> list[str]:
    """One warning per field: a batch of 100 alike elements warns once (the first element)."""
    first: dict[str, str] = {}
    for note in notes:
        first.setdefault(re.sub(r"^lam\.httpRequests\[\d+\]", "*", note), note)
    return list(first.values())


def _check_condition(source: str, where: str) -> None:
    """A loopUntil condition: JSONPath (`$.status == 'done'`) or JavaScript."""
    check_condition(source, where)


def _check_budget(budget: float | None, what: str = "budget") -> None:
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget >= 0:
        raise DefinitionError(f"{what}: expected seconds >= 0 (a number), got {budget!r}")
    if not math.isfinite(budget):
        raise DefinitionError(f"{what}: expected a finite number of seconds (None: no {what})")


def _error_state(error: LamrunnerError, secrets: Secrets) -> dict[str, Any]:
    """A failed element's error as its ElementState keeps it: `to_dict()` and the attributes
    its type carries (`_error_http` and the step's error are made again from them), masked."""
    saved = error.to_dict()
    for name in ("status", "attempts", "kind", "last_status"):
        if hasattr(error, name):
            saved[name] = getattr(error, name)
    return secrets.mask_data(saved)  # type: ignore[no-any-return]


def _restored_error(saved: Mapping[str, Any]) -> LamrunnerError:
    """The error `_error_state` kept, as the exception it was."""
    kind = getattr(error_types, str(saved["type"]), None)
    if not (isinstance(kind, type) and issubclass(kind, LamrunnerError)):
        kind = LamrunnerError
    error = kind.__new__(kind)
    error.__dict__.update({k: v for k, v in saved.items() if k != "type"})
    error.__dict__.setdefault("step", None)
    Exception.__init__(error, error.message)
    return error


def _masked_record(state: RunState, secrets: Secrets) -> dict[str, Any]:
    """The run record as it leaves the engine (to stdout, to a host's caller): the run's
    secrets masked in it, as in a log line — the GWO's input may carry the very key a program
    compared with `{{config.validApiKey}}`. The saved state keeps the values (a resumed run
    needs them)."""
    return secrets.mask_data(state.record())  # type: ignore[no-any-return]


def _step_result(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return None
    if "executions" in entry:  # a lam.execute step: its children's results, in order
        return [e.get("result") for e in entry["executions"]]
    return entry["response"] if "response" in entry else entry.get("data")


def _batch_entry(outcomes: list[Any], secrets: Secrets) -> dict[str, Any]:
    """`{"response": [...], "http": [...]}` in request order; a failed element is a null
    response and an `error` (masked with the run's secrets) in its http entry."""
    return {
        "response": [None if isinstance(o, BaseException) else o["response"] for o in outcomes],
        "http": [
            _error_http(o, secrets) if isinstance(o, BaseException) else o["http"] for o in outcomes
        ],
    }


def _error_http(error: BaseException, secrets: Secrets) -> dict[str, Any]:
    assert isinstance(error, LamrunnerError)
    info: dict[str, Any] = {
        "error": {"type": error.type_name, "message": secrets.mask(error.message)}
    }
    for name in ("status", "attempts"):
        if hasattr(error, name):
            info[name] = getattr(error, name)
    if getattr(error, "last_status", None) is not None:
        info["status"] = error.last_status  # type: ignore[attr-defined]
    return info
