"""The engine: advances a RunState through the workflow's steps.

    handler → directive → rendered requests → request or poll (calls) → step result → GWO

All progress lives in the RunState (see `runstate`), which is handed to `checkpoint` at every
step boundary and after every poll attempt; `resume` continues a saved state. The engine owns
the run's transport (one aiohttp session, so connections are reused) and its QuickJS workers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any, Protocol

import structlog

from lamrunner.cli import gcpolicy
from lamrunner.runner.calls import Caller
from lamrunner.runner.clock import Clock, SystemClock
from lamrunner.definition.directives import (
    ExitDirective,
    HttpDirective,
    PlainData,
    ResponseDirective,
    parse_directive,
)
from lamrunner.errors import ConditionError, LamrunnerError, ScriptError
from lamrunner.definition.handlers import call_handler
from lamrunner.logs.chain import PollProgress, get_logger, live_line
from lamrunner.logs.masking import SECRETS
from lamrunner.decide.polling import PollState
from lamrunner.runner.rendering import RenderedRequest, render_request
from lamrunner.runner.state import FAILED, SUCCESS, RunState
from lamrunner.http.transport import AiohttpTransport, Transport
from lamrunner.definition.workflow import Step, Workflow


class Checkpointer(Protocol):
    """Where progress goes (the run store, a cloud function's state, a test's list)."""

    def save_run(self, state: RunState) -> None:
        """At every step boundary and at the end: the whole state."""

    def save_element(self, state: RunState, index: int, entry: dict[str, Any]) -> None:
        """After every poll attempt and request result: one request's progress."""


class Engine:
    """Runs one workflow with one resolved config. Reusable for several runs."""

    def __init__(
        self,
        workflow: Workflow,
        config: Mapping[str, Any] | None = None,
        *,
        transport: Transport | None = None,
        js: Any = None,
        clock: Clock | None = None,
        checkpoint: Checkpointer | None = None,
        manage_gc: bool = False,
    ) -> None:
        self.workflow = workflow
        self.config = dict(workflow.config if config is None else config)
        self._transport = transport
        self._js = js  # shared by every run when given; else each run starts and stops its own
        self.clock = clock or SystemClock()
        self._checkpoint = checkpoint
        self._manage_gc = manage_gc  # see gcpolicy: for processes with thousands of polls
        SECRETS.add_config(self.config)

    async def run(self, input_data: Any = None, run_id: str | None = None) -> dict[str, Any]:
        """Run from the first step; returns the run record."""
        state = RunState.start(self.workflow.name, {} if input_data is None else input_data, run_id)
        return await self.resume(state)

    async def resume(self, state: RunState) -> dict[str, Any]:
        """Continue a (saved) run from its next step or its in-flight poll."""
        with structlog.contextvars.bound_contextvars(
            run_id=state.run_id, workflow=self.workflow.name
        ):
            return await self._resume(state)  # every line of the run, handlers' too, has them

    async def _resume(self, state: RunState) -> dict[str, Any]:
        log = get_logger(run_id=state.run_id, workflow=self.workflow.name)
        log.info(
            "run.start" if state.next_step == 0 and not state.pending else "run.resume",
            steps=len(self.workflow.steps),
        )
        _warn(log, self.workflow.warnings)
        async with AsyncExitStack() as stack:
            if self._manage_gc:
                await stack.enter_async_context(gcpolicy.hold())
            caller = await self._caller(stack, log)
            progress = _progress(stack)
            try:
                await self._advance(state, caller, progress, log)
            except LamrunnerError as exc:
                self._fail(state, exc)
            self._save(state)
        level = log.info if state.status == SUCCESS else log.error
        level("run.done", status=state.status, error=(state.error or {}).get("message"))
        return state.record()

    async def _caller(self, stack: AsyncExitStack, log: Any) -> Caller:
        transport = self._transport
        if transport is None:
            transport = AiohttpTransport(
                max_response_bytes=self.workflow.limits.max_response_bytes,
                allow_link_local=self.workflow.network.allow_link_local,
            )
            await stack.enter_async_context(transport)  # type: ignore[arg-type]
        from lamrunner.js.runtime import JsEngine, JsLimits

        js = self._js
        if js is None:
            js = JsEngine()
            stack.callback(js.close)
        limits = self.workflow.limits
        return Caller(
            transport=transport,
            conditions=js,
            clock=self.clock,
            condition_limits=JsLimits(limits.condition_timeout, limits.condition_memory),
            log=log,
        )

    async def _advance(self, state: RunState, caller: Caller, progress: Any, log: Any) -> None:
        steps = self.workflow.steps
        while state.next_step < len(steps) and not state.finished:
            step = steps[state.next_step]
            structlog.contextvars.bind_contextvars(step=step.name)
            try:
                await self._run_step(step, state, caller, progress, log)
            except LamrunnerError as exc:
                raise exc.in_step(step.name) from None
            finally:
                structlog.contextvars.unbind_contextvars("step")
        if not state.finished:
            state.status = SUCCESS
            state.result = _step_result(state.gwo.get(steps[-1].key))

    async def _run_step(
        self, step: Step, state: RunState, caller: Caller, progress: Any, log: Any
    ) -> None:
        if state.pending is None:
            log.info("step.start", step=step.name, handler=step.handler.spec)
            output = await self._call_handler(step, state, caller.conditions, log)
        else:
            log.info("step.resume", step=step.name)
            output = state.pending["output"]
        directive = parse_directive(output, _check_condition, self.config)
        if isinstance(directive, PlainData):
            self._complete(state, step, {"data": directive.data})
        elif isinstance(directive, ExitDirective):
            self._complete(state, step, {"data": directive.data})
            self._succeed(state, directive.data, log, step, "lam.exit")
        elif isinstance(directive, ResponseDirective):
            self._complete(state, step, {"data": dict(directive.response)})
            self._succeed(state, dict(directive.response), log, step, "lam.response")
        else:
            _warn(log, directive.warnings, f"{step.name} ")
            await self._requests(step, state, directive, output, caller, progress)
        self._save(state)

    async def _call_handler(self, step: Step, state: RunState, js: Any, log: Any) -> Any:
        limits = self.workflow.limits
        js_limits = None
        if step.handler.language == "javascript":
            from lamrunner.js.runtime import JsLimits

            js_limits = JsLimits(limits.handler_timeout, limits.handler_memory)

        def console(level: str, text: str) -> None:
            log.log(_LEVELS.get(level, 20), "handler.console", step=step.name, text=text)

        return await call_handler(
            step.handler,
            json.dumps(state.gwo),
            js=js,
            js_limits=js_limits,
            console=console,
            timeout=limits.handler_timeout,
        )

    async def _requests(
        self,
        step: Step,
        state: RunState,
        directive: HttpDirective,
        output: Any,
        caller: Caller,
        progress: PollProgress | None,
    ) -> None:
        """Render every request (nothing is sent if one fails), then run them concurrently."""
        rendered = [render_request(spec, self.config) for spec in directive.requests]
        for request in rendered:
            SECRETS.add_headers(request.headers)
        if state.pending is None:
            state.pending = {"output": output, "elements": [None] * len(rendered)}
            self._save(state)
        gate = asyncio.Semaphore(self.workflow.limits.concurrency)
        outcomes = await asyncio.gather(
            *(
                self._element(i, step, state, directive, request, caller, progress, gate)
                for i, request in enumerate(rendered)
            ),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, LamrunnerError):
                raise outcome
        self._settle(step, state, directive, outcomes)

    async def _element(
        self,
        i: int,
        step: Step,
        state: RunState,
        directive: HttpDirective,
        request: RenderedRequest,
        caller: Caller,
        progress: PollProgress | None,
        gate: asyncio.Semaphore,
    ) -> dict[str, Any]:
        """One request object to its GWO entry, resuming its poll if it has one in progress."""
        assert state.pending is not None
        elements: list[Any] = state.pending["elements"]
        if elements[i] is not None and "result" in elements[i]:
            return elements[i]["result"]  # type: ignore[no-any-return]
        spec = directive.requests[i]
        async with gate:
            poll = elements[i] and elements[i].get("poll")
            key = f"{step.key}[{i}]"

            def on_attempt(poll_state: PollState) -> None:
                elements[i] = {"poll": poll_state.to_dict()}
                self._save_element(state, i, elements[i])
                if progress is not None and spec.loop is not None:
                    due = max(0.0, poll_state.next_due - self.clock.now())
                    progress.update(
                        key,
                        step.name,
                        poll_state.attempt,
                        spec.loop.max_attempts,
                        poll_state.last_status,
                        asyncio.get_running_loop().time() + due,
                    )

            try:
                result = await caller.perform(
                    request,
                    spec,
                    PollState.from_dict(poll) if poll else None,
                    on_attempt,
                    self._history_hook(state, step, i),
                )
            finally:
                if progress is not None:
                    progress.done(key)
        stored = {"response": result.value, "http": result.http()}
        elements[i] = {"result": stored}
        if directive.batch:  # a lone request's result is saved with the step
            self._save_element(state, i, elements[i])
        return stored

    def _settle(
        self, step: Step, state: RunState, directive: HttpDirective, outcomes: list[Any]
    ) -> None:
        """Record the step's entry, or fail with the first error while keeping the rest."""
        errors = [o for o in outcomes if isinstance(o, LamrunnerError)]
        if not errors:
            self._complete(
                state, step, outcomes if directive.batch else outcomes[0], batch=directive.batch
            )
            return
        state.pending = None
        first = errors[0]
        if directive.batch:
            state.gwo[step.key] = _batch_entry(outcomes)  # what the other elements got
            first.message = f"lam.httpRequests[{outcomes.index(first)}]: {first.message}"
            first.args = (first.message,)
        raise first

    def _complete(self, state: RunState, step: Step, entry: Any, *, batch: bool = False) -> None:
        state.gwo[step.key] = _batch_entry(entry) if batch else entry
        state.pending = None
        state.next_step = step.index

    def _succeed(self, state: RunState, result: Any, log: Any, step: Step, how: str) -> None:
        state.status = SUCCESS
        state.result = result
        log.info("run.exit", step=step.name, directive=how)

    def _fail(self, state: RunState, exc: LamrunnerError) -> None:
        state.status = FAILED
        state.error = SECRETS.mask_data(exc.to_dict())

    def _save(self, state: RunState) -> None:
        if self._checkpoint is not None:
            self._checkpoint.save_run(state)

    def _save_element(self, state: RunState, index: int, entry: dict[str, Any]) -> None:
        if self._checkpoint is not None:
            self._checkpoint.save_element(state, index, entry)

    def _history_hook(self, state: RunState, step: Step, index: int) -> Any:
        """Where a poll's history rows go (see history); None, so no row is even made, when
        the checkpointer keeps no history (it has no save_attempt)."""
        save = getattr(self._checkpoint, "save_attempt", None)
        if save is None:
            return None
        return lambda row: save(state, index, {**row, "stepName": step.name})


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _warn(log: Any, notes: tuple[str, ...], prefix: str = "") -> None:
    """Suspicious durations (`initialDelay: 2000` is seconds): legal, so warnings, not errors."""
    for note in notes:
        log.warning("duration.suspicious", note=prefix + note)


def _check_condition(source: str, where: str) -> None:
    from lamrunner.js.runtime import check_condition

    try:
        check_condition(source)
    except ScriptError as exc:
        raise ConditionError(f"{where}: {exc.message}") from None


def _step_result(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return None
    return entry["response"] if "response" in entry else entry.get("data")


def _batch_entry(outcomes: list[Any]) -> dict[str, Any]:
    """`{"response": [...], "http": [...]}` in request order; a failed element is a null
    response and an `error` in its http entry."""
    return {
        "response": [None if isinstance(o, BaseException) else o["response"] for o in outcomes],
        "http": [_error_http(o) if isinstance(o, BaseException) else o["http"] for o in outcomes],
    }


def _error_http(error: BaseException) -> dict[str, Any]:
    assert isinstance(error, LamrunnerError)
    info: dict[str, Any] = {
        "error": {"type": error.type_name, "message": SECRETS.mask(error.message)}
    }
    for name in ("status", "attempts"):
        if hasattr(error, name):
            info[name] = getattr(error, name)
    if getattr(error, "last_status", None) is not None:
        info["status"] = error.last_status  # type: ignore[attr-defined]
    return info


def _progress(stack: AsyncExitStack) -> PollProgress | None:
    live = live_line()
    if live is None:
        return None
    progress = PollProgress(live)
    task = asyncio.get_running_loop().create_task(progress.tick())
    stack.callback(task.cancel)
    stack.callback(live.clear)
    return progress
