"""Taking a step's route: where the run goes once a step has left, and the record of it.

A step leaves in one of the ways `state.ROUTES` names: in order (`sequence`, or `end` after
the last step), at its `next:`, by ending the run (`exit`: lam.exit, lam.response), by an
action its response carried (`actionFrom`: `action.next`, `action.exit`, `action.url`), or,
when it failed, by its `onError` (`onError.next`, `onError.exit`) or `continueOnFailure`.
Each execution is added to `state.route` (a `StepRun`) before the run is saved, so a resumed
run continues where the route led. The run's bound, `limits.maxStepRuns`, is checked before
each step starts: route loops end there at the latest.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from lamrunner.definition.directives import HttpDirective
from lamrunner.definition.routing import success_index, target_index
from lamrunner.definition.templates import render
from lamrunner.definition.workflow import Step
from lamrunner.errors import (
    Cancelled,
    DefinitionError,
    LamrunnerError,
    RouteError,
    StepRunsExceeded,
)
from lamrunner.http.request import RenderedRequest
from lamrunner.runner.calls import Element, perform, register
from lamrunner.runner.context import RunContext
from lamrunner.runner.rendering import render_request
from lamrunner.runner.state import SUCCESS, RunState, StepRun, iso_ms

# errors no route handles: the bound (it would loop again), a route to nowhere, a cancel
UNROUTED = (StepRunsExceeded, RouteError, Cancelled)
_ACTIONS = (("next",), ("exit", "result"), ("url", "data"))


def check_bound(ctx: RunContext, state: RunState, step: Step) -> None:
    """Before a step starts: a StepRunsExceeded once the run has made maxStepRuns."""
    limit = ctx.workflow.limits.max_step_runs
    if state.pending is None and len(state.route) >= limit:
        last = " -> ".join(run.step for run in state.route[-6:])
        raise StepRunsExceeded(
            f"limits.maxStepRuns: the run has made {len(state.route)} step executions, its "
            f"limit, and would start {step.name!r} again (the last ones: {last}); a route loop "
            "did not end: check the condition that should leave it, or raise the limit",
            step=step.name,
        )


def forget_children(state: RunState, step: Step) -> None:
    """A step run again (a route loop) starts its sub-workflows afresh: the finished children
    of its earlier execution are dropped from the state (the run store keeps their runs), so
    the call is not answered with the earlier child's result."""
    if state.pending is None and any(run.key == step.key for run in state.route):
        state.children = [c for c in state.children if c.step != step.key or not c.finished]


async def leave(ctx: RunContext, step: Step, state: RunState, directive: Any) -> None:
    """A step that completed: run the action its response carries, if any, else its `next`
    or the step after it (the run ends after the last); an exit ended the run already."""
    if state.status == SUCCESS:
        _note(ctx, step, state, "exit", None)
        return
    action = _action(step, state, directive)
    if action is not None:
        await _run_action(ctx, step, state, directive, action)
        return
    _go(ctx, step, state, "next" if step.route.next is not None else "sequence")


def on_error(
    ctx: RunContext, step: Step, state: RunState, error: LamrunnerError, before: Any
) -> bool:
    """A failed step's `onError` or `continueOnFailure`; False when it has neither (the run
    fails). The step's GWO entry keeps what the step left (a batch's other elements) with
    the error and the route; `before` is the entry an earlier execution left, not kept."""
    route = step.route
    if isinstance(error, UNROUTED) or (route.on_error is None and not route.continue_on_failure):
        return False
    masked = ctx.secrets.mask_data({"type": error.type_name, "message": error.message})
    left = "continueOnFailure"
    if route.on_error is not None:
        left = "onError.exit" if route.on_error.exit else "onError.next"
    now = state.gwo.get(step.key)
    kept = now if isinstance(now, dict) and now is not before else {}
    state.gwo[step.key] = {**kept, "error": masked, "route": left}
    state.pending = None
    ctx.log.warning("step.failed_routed", step=step.name, error=masked["message"], route=left)
    if route.on_error is not None and route.on_error.exit:
        where = f"{ctx.workflow.path}: step {step.name!r}.onError.result"
        state.status = SUCCESS
        state.result = ctx.secrets.mask_data(render(route.on_error.result, ctx.config, where))
        _note(ctx, step, state, left, None, error=masked)
    elif route.on_error is not None:
        assert route.on_error.next is not None
        _jump(ctx, step, state, route.on_error.next, f"{step.name}.onError.next")
        _note(ctx, step, state, left, _name(ctx, state), error=masked)
    else:
        _go(ctx, step, state, left, error=masked)
    return True


def _go(ctx: RunContext, step: Step, state: RunState, left: str, **extra: Any) -> None:
    """On along the step's success route: its `next`, or the step after it."""
    steps = ctx.workflow.steps
    state.next_step = success_index(steps, step)
    if left == "sequence" and state.next_step >= len(steps):
        left = "end"
    _note(ctx, step, state, left, _name(ctx, state), **extra)


def _jump(ctx: RunContext, step: Step, state: RunState, target: str, where: str) -> None:
    names = [s.name for s in ctx.workflow.steps]
    try:
        state.next_step = target_index(names, target, where)
    except DefinitionError as exc:  # a name the service (or a handler) chose
        raise RouteError(exc.message, step=step.name) from None


def _name(ctx: RunContext, state: RunState) -> str | None:
    steps = ctx.workflow.steps
    return steps[state.next_step].name if state.next_step < len(steps) else None


def _note(
    ctx: RunContext,
    step: Step,
    state: RunState,
    left: str,
    to: str | None,
    *,
    error: dict[str, Any] | None = None,
    url: str | None = None,
) -> None:
    entered = state.entered
    at = iso_ms(ctx.clock.now())
    state.route.append(StepRun(step.name, step.key, entered, left, to, at, error, url))
    if left not in ("sequence", "end"):
        ctx.log.info("step.route", step=step.name, entered=entered, left=left, to=to)


def _action(step: Step, state: RunState, directive: Any) -> Mapping[str, Any] | None:
    """The action object the step's lone request's `actionFrom` selects in its response."""
    if not isinstance(directive, HttpDirective) or directive.batch:
        return None
    query = directive.requests[0].action_from
    entry = state.gwo.get(step.key)
    if query is None or not isinstance(entry, dict):
        return None
    found = query.first(entry.get("response"), None)
    return found if isinstance(found, dict) else None


async def _run_action(
    ctx: RunContext, step: Step, state: RunState, directive: HttpDirective, action: Any
) -> None:
    spec = directive.requests[0]
    where = f"step {step.name!r}: the action at {spec.action_from.text if spec.action_from else ''}"
    keys = set(action)
    shape = next((a for a in _ACTIONS if a[0] in keys and keys <= set(a)), None)
    if shape is None:
        raise RouteError(
            f"{where}: {sorted(keys)} is not an action; expected {{next: <step>}}, "
            "{exit: true, result: …} or {url: …, data: …}",
            step=step.name,
        )
    if shape[0] == "next":
        target = action["next"]
        if not isinstance(target, str):
            raise RouteError(f"{where}.next: expected a step name, got {target!r}", step=step.name)
        _jump(ctx, step, state, target, f"{where}.next")
        _note(ctx, step, state, "action.next", _name(ctx, state))
    elif shape[0] == "exit":
        if action["exit"] is not True:
            raise RouteError(f"{where}.exit: expected true, got {action['exit']!r}", step=step.name)
        state.status = SUCCESS
        state.result = ctx.secrets.mask_data(action.get("result"))
        _note(ctx, step, state, "action.exit", None)
    else:
        url = await _follow(ctx, step, state, directive, action, where)
        _go(ctx, step, state, "action.url", url=ctx.secrets.mask(url))


async def _follow(
    ctx: RunContext,
    step: Step,
    state: RunState,
    directive: HttpDirective,
    action: Mapping[str, Any],
    where: str,
) -> str:
    """`{url, data}`: one request to `url` (relative to the polled URL): a POST of `data` as
    JSON, or a GET without it, with the request's timeout and retry, and its headers and
    authentication only when the URL is on the polled URL's origin. Its answer becomes the
    step's `response` and `http`; what the poll got stays under `poll`."""
    spec = directive.requests[0]
    if not isinstance(action["url"], str):
        raise RouteError(f"{where}.url: expected a URL, got {action['url']!r}", step=step.name)
    polled = render_request(spec, ctx.config)
    url = urljoin(polled.url, action["url"])
    if urlsplit(url).scheme not in ("http", "https"):
        raise RouteError(f"{where}.url: {url!r} is not an http(s) URL", step=step.name)
    same = _origin(url) == _origin(polled.url)
    headers = tuple(
        (k, v) for k, v in polled.headers if same and k.lower() not in ("content-type",)
    )
    body = None
    if "data" in action:
        body = json.dumps(action["data"]).encode()
        headers = (*headers, ("Content-Type", "application/json"))
    method = "POST" if "data" in action else "GET"
    request = RenderedRequest(
        method,
        url,
        headers,
        body,
        polled.timeout,
        f"{spec.where} action.url",
        polled.secrets if same else (),
    )
    followed = dataclasses.replace(
        spec,
        method=method,
        loop=None,
        action_from=None,
        on_give_up=None,
        pagination=None,
        auth=spec.auth if same else None,
        where=f"{spec.where} action.url",
    )
    register(ctx.secrets, request)
    ctx.log.info("action.url", step=step.name, method=method, url=ctx.secrets.mask(url))
    result = await perform(ctx, Element(request, followed))
    poll = state.gwo.get(step.key)
    state.gwo[step.key] = {"response": result.value, "http": result.http(), "poll": poll}
    return url


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port
