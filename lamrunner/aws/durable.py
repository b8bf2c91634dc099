"""One lamrunner run as a durable execution: the SDK checkpoints, lamrunner decides.

    for each step:   ctx.step("<step>.handler")                the handler's output, once
                     ctx.wait_for_condition("<step>.requests")  its requests and polls, if any

A step's requests are one `wait_for_condition` whose state is each request's progress (the
engine's `ElementState`s): every check resumes the step with a zero budget, so the engine makes
the attempts that are due (concurrently, with lamrunner's schedule, retry, Retry-After,
deadline and jitter) and suspends as soon as one must wait. A wait under a second is slept
inside the check; a longer one is handed to the service, rounded up to whole seconds, so the
function is not running while it waits. One operation per step whatever the number of
attempts: a replay reads O(steps) checkpoints, not O(attempts).

Replays are deterministic: the GWO is rebuilt from the checkpointed outputs and entries, and
nothing that completed is sent again. Every checkpoint is plain JSON, checked against the
service's limit before it is written, so a run too big for the cloud fails here too.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets
from aws_durable_execution_sdk_python.serdes import PassThroughSerDes
from aws_durable_execution_sdk_python.types import DurableExecutionArn
from aws_durable_execution_sdk_python.waits import WaitForConditionConfig, WaitForConditionDecision

from lamrunner.aws.function import DeployedApp
from lamrunner.definition.directives import HttpDirective, parse_directive
from lamrunner.definition.workflow import Step
from lamrunner.errors import DefinitionError, HostLimitError, InternalError, LamrunnerError
from lamrunner.logs.chain import get_logger
from lamrunner.logs.masking import Secrets
from lamrunner.runner.engine import Engine
from lamrunner.runner.state import (
    FAILED,
    RUNNING,
    SUSPENDED,
    ElementState,
    PendingStep,
    RunState,
)

CHECKPOINT_LIMIT = 256 * 1024  # bytes: the most one durable operation's payload may hold
SHORTEST_DURABLE_WAIT = 1.0  # seconds: the service counts whole seconds; shorter are slept
IN_PROCESS_LIMIT = 60.0  # seconds of short waits one check may sleep before it hands one over
_NO_RETRY = StepConfig(retry_strategy=RetryPresets.none(), serdes=PassThroughSerDes())


class ServiceClock:
    """Real time, moved on to the moment the service woke the function for, if it woke it
    early: a test runner that skips time (or a service that fires a moment early) then sees
    the schedule as lamrunner modelled it. On AWS the waits are rounded up: it stays real."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.time() + self._offset

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def reach(self, due: float | None) -> None:
        if due is not None:
            self._offset = max(self._offset, due - time.time())


def run_durable(
    ctx: DurableContext, app: DeployedApp, input_data: Any, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The run record of the whole run, replayed up to where the last invocation stopped."""
    config = app.config_for(overrides)
    clock = ServiceClock()
    run = _DurableRun(ctx, Engine(app.workflow, config, clock=clock), clock)
    state = RunState.start(app.workflow.name, input_data, execution_name(ctx))
    with asyncio.Runner() as runner:
        run.runner = runner
        run.advance(state)
    record = state.record()
    return Secrets.of_config(config).mask_data(record)  # type: ignore[no-any-return]


def execution_name(ctx: DurableContext) -> str:
    """The durable execution's name: the run's id, as the caller chose it when starting."""
    arn = ctx.execution_context.durable_execution_arn
    parsed = DurableExecutionArn.from_arn(arn)
    if parsed is not None:
        return parsed.execution_name
    execution = ctx.state.get_execution_operation()  # a local emulator's ARN has another shape
    return execution.name if execution is not None and execution.name else arn


class _DurableRun:
    def __init__(self, ctx: DurableContext, engine: Engine, clock: ServiceClock) -> None:
        self.ctx, self.engine, self.clock = ctx, engine, clock
        self.runner: asyncio.Runner | None = None

    def _await(self, coro: Any) -> Any:
        assert self.runner is not None
        return self.runner.run(coro)

    def advance(self, state: RunState) -> None:
        steps = self.engine.workflow.steps
        while state.status == RUNNING and state.next_step < len(steps):
            step = steps[state.next_step]
            outcome = self._handler(state, step)
            if "error" in outcome:
                state.status, state.error = FAILED, outcome["error"]
                return
            state.pending = PendingStep.begin(outcome["output"])
            refused = _refused_action(outcome["output"], step, self.engine.config)
            if refused is not None:
                state.status, state.error = FAILED, self._masked(refused)
                return
            if self._sends_requests(outcome["output"]):
                self._requests(state, step)
            else:  # plain data, lam.exit, lam.response or a bad directive: no I/O, replayable
                self._await(self.engine.resume(state, steps=1))

    def _handler(self, state: RunState, step: Step) -> dict[str, Any]:
        """The handler's output as a checkpointed step: `{"output"}` or `{"error"}`."""

        def call(_: Any) -> str:
            try:
                output = self._await(self.engine.call_handler(state))
            except LamrunnerError as exc:
                return _json({"error": self._masked(exc)})
            except Exception as exc:  # noqa: BLE001 - a bug of ours: a FAILED record, not a crash loop
                return _json({"error": self._masked(_internal(exc))})
            text = _json({"output": output})
            if len(text.encode()) > CHECKPOINT_LIMIT:
                error = _too_large(step, "handler's output", text)
                return _json({"error": self._masked(error)})
            return text

        text = self.ctx.step(call, name=f"{step.name}.handler", config=_NO_RETRY)
        return json.loads(text)  # type: ignore[no-any-return]

    def _sends_requests(self, output: Any) -> bool:
        try:
            directive = parse_directive(output, lambda _source, _where: None, self.engine.config)
        except LamrunnerError:
            return False  # the engine reports it, as it would locally
        return isinstance(directive, HttpDirective)

    def _requests(self, state: RunState, step: Step) -> None:
        """The step's requests, to the end, as one durable poll; the state is as a local run
        leaves it (entry in the GWO, next step, or FAILED)."""
        assert state.pending is not None
        output = state.pending.output
        base = RunState(state.run_id, state.workflow, state.gwo, state.next_step)

        def check(saved: str, _: Any) -> str:
            try:
                return self._check(base, step, output, json.loads(saved))
            except Exception as exc:  # noqa: BLE001 - a bug of ours: a FAILED record, not a crash loop
                return _json({"status": FAILED, "error": self._masked(_internal(exc))})

        def strategy(saved: str, _attempt: int) -> WaitForConditionDecision:
            due = json.loads(saved).get("resumeAt")
            if due is None:
                return WaitForConditionDecision.stop_polling()
            wait = max(SHORTEST_DURABLE_WAIT, math.ceil(due - self.clock.now()))
            return WaitForConditionDecision.continue_waiting(Duration.from_seconds(wait))

        config = WaitForConditionConfig(
            wait_strategy=strategy, initial_state=_json({}), serdes=PassThroughSerDes()
        )
        text = self.ctx.wait_for_condition(check, config=config, name=f"{step.name}.requests")
        _apply(state, step, json.loads(text))

    def _check(self, base: RunState, step: Step, output: Any, saved: dict[str, Any]) -> str:
        """One invocation's share of the step: the attempts now due, and the short waits."""
        state = _restore(base, output, saved)
        self.clock.reach(saved.get("resumeAt"))
        started = time.monotonic()
        self._await(self.engine.resume(state, budget=0, steps=1))
        while _waits_briefly(state, self.clock) and time.monotonic() - started < IN_PROCESS_LIMIT:
            self._await(self.engine.resume(state, budget=0, steps=1))
        text = _json(_progress(state, step))
        size = len(text.encode())
        log = get_logger(run_id=state.run_id, workflow=state.workflow)
        log.info("durable.checkpoint", step=step.name, status=state.status, bytes=size)
        if size > CHECKPOINT_LIMIT:
            failed = _too_large(step, "requests' progress (their responses so far)", text)
            return _json({"status": FAILED, "error": self._masked(failed)})
        return text

    def _masked(self, error: LamrunnerError) -> dict[str, Any]:
        secrets = Secrets.of_config(self.engine.config)
        return secrets.mask_data(error.to_dict())  # type: ignore[no-any-return]


def _refused_action(output: Any, step: Step, config: Mapping[str, Any]) -> LamrunnerError | None:
    """A request with `actionFrom` routes the run from its response: not on this host yet
    (its checkpoints are one per step; a step run again would replay the first one)."""
    try:
        directive = parse_directive(output, lambda _source, _where: None, config)
    except LamrunnerError:
        return None  # the engine reports it, as it would locally
    if isinstance(directive, HttpDirective) and any(r.action_from for r in directive.requests):
        return DefinitionError(
            f"{directive.requests[0].where}.actionFrom: actions in responses are not "
            "supported on AWS Lambda durable functions yet; run this workflow with "
            "`lamrunner run` or on GCP (see docs/declarative-steps.md#hosts)",
            step=step.name,
        )
    return None


def _restore(base: RunState, output: Any, saved: Mapping[str, Any]) -> RunState:
    """The run as of the last check: the GWO so far, this step's requests' progress."""
    elements = [
        None if e is None else ElementState.from_dict(e, f"checkpoint.elements[{i}]")
        for i, e in enumerate(saved.get("elements") or [])
    ]
    status = SUSPENDED if saved.get("status") == SUSPENDED else RUNNING
    return RunState(
        base.run_id,
        base.workflow,
        dict(base.gwo),
        base.next_step,
        pending=PendingStep(output, elements),
        status=status,
    )


def _waits_briefly(state: RunState, clock: ServiceClock) -> bool:
    at = state.resume_at
    return state.status == SUSPENDED and at is not None and at - clock.now() < SHORTEST_DURABLE_WAIT


def _progress(state: RunState, step: Step) -> dict[str, Any]:
    """What a check checkpoints: each request's progress while the step waits; once it has
    settled, the step's GWO entry and how the run stands."""
    if state.status == SUSPENDED:
        assert state.pending is not None
        elements = [None if e is None else e.to_dict() for e in state.pending.elements]
        return {"status": SUSPENDED, "elements": elements, "resumeAt": state.resume_at}
    saved: dict[str, Any] = {"status": state.status, "result": state.result, "error": state.error}
    if step.key in state.gwo:
        saved["entry"] = state.gwo[step.key]
    return saved


def _apply(state: RunState, step: Step, saved: Mapping[str, Any]) -> None:
    state.pending = None
    state.status = saved["status"]
    state.result, state.error = saved.get("result"), saved.get("error")
    if "entry" in saved:
        state.gwo[step.key] = saved["entry"]
    if state.status != FAILED:
        state.next_step = step.index


def _internal(exc: Exception) -> InternalError:
    get_logger().error("internal.error", exc_info=exc)  # the traceback only in the log
    return InternalError(
        f"internal error ({type(exc).__name__}): this is a bug in lamrunner, not in your "
        f"workflow; please report it on lamrunner's issue tracker with the function's log"
    )


def _too_large(step: Step, what: str, text: str) -> HostLimitError:
    size = len(text.encode())
    return HostLimitError(
        f"the {what} is {size:,} bytes as JSON, over the {CHECKPOINT_LIMIT // 1024} KB a Lambda "
        f"durable function can checkpoint; return less from the step (or keep large data "
        f"elsewhere, e.g. S3, and pass its key)",
        step=step.name,
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
