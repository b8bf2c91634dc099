"""`lamrunner validate --explain`: every `loopUntil` and `retry` it can see, as a schedule.

What it can see, step by step:

- **the handler's output**, when the handler can be called without side effects: a
  JavaScript handler (it runs in the sandbox — no network, files or timers) when `--input` is
  given. It is called on the GWO as far as it is known: the input, and the `data` of earlier
  steps that returned plain data (a step that sends requests leaves nothing known behind).
  Its directive is validated as `lamrunner run` would, so a bad field fails `validate`.
- **a poll step** (`poll:`): its request and schedule, as the workflow file declares them.
- otherwise **the declared policies**: the `loopUntil` and `retry` objects written in the
  handler's source — a Python dict literal (a value that is not a literal is left out, so its
  default is shown) or a JavaScript object literal (evaluated in the sandbox; one that uses
  a variable is reported, not guessed). Python handlers are never called: they are trusted
  code that may do anything.

Each is explained by `decide.timeline`: timeline, deadline, worst case, Step Functions cost.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lamrunner import defaults
from lamrunner.decide.timeline import explain_poll, explain_retry
from lamrunner.definition.directives import (
    ExecuteDirective,
    HttpDirective,
    PlainData,
    RequestSpec,
    parse_directive,
)
from lamrunner.definition.handlers import call_handler
from lamrunner.definition.policies import parse_loop_until, parse_retry
from lamrunner.definition.templates import render
from lamrunner.definition.workflow import Step, Workflow
from lamrunner.errors import (
    ConditionError,
    HandlerError,
    LamrunnerError,
    ScriptError,
    TemplateError,
)
from lamrunner.units import parse_duration

POLICY_KEYS = ("loopUntil", "retry")


async def explain(workflow: Workflow, config: Mapping[str, Any], input_data: Any) -> list[Any]:
    """One entry per request object (alike elements of a batch together) or declared policy."""
    from lamrunner.js.runtime import JsEngine, JsLimits

    limits = JsLimits(workflow.limits.handler_timeout, workflow.limits.handler_memory)
    js = JsEngine()
    gwo: dict[str, Any] = {"input": input_data}
    entries: list[Any] = []
    try:
        for step in workflow.steps:
            if step.poll is not None:  # declarative: its request is known without running
                poll = HttpDirective((step.poll.request,), batch=False)
                entries.extend({**e, "source": "poll step"} for e in _from_output(step, poll))
                continue
            output, why = None, None
            if input_data is not None and step.handler.language == "javascript":
                try:
                    output = await call_handler(
                        step.handler,
                        json.dumps(gwo),
                        js=js,
                        js_limits=limits,
                        console=lambda _level, _text: None,
                        config=config,
                    )
                except (HandlerError, TemplateError) as exc:
                    why = f"the handler could not be called on what is known: {exc.message}"
            elif input_data is None:
                why = "no --input: the handler was not called"
            else:
                why = "a Python handler is never called by validate"
            if output is not None:
                try:
                    directive = parse_directive(output, _check_condition, config)
                except LamrunnerError as exc:
                    raise exc.in_step(step.name) from None
                if isinstance(directive, PlainData):
                    gwo[step.key] = {"data": directive.data}
                elif isinstance(directive, HttpDirective):
                    entries.extend(_from_output(step, directive))
                elif isinstance(directive, ExecuteDirective):  # every id it names is known
                    at = f"{workflow.path}: step {step.name!r}"
                    for call in directive.calls:
                        workflow.child(call.workflow_id, f"{at}: {call.where}")
                continue
            entries.extend(await _declared(step, config, js, limits, why))
    finally:
        js.close()
    return entries


def _from_output(step: Step, directive: HttpDirective) -> list[dict[str, Any]]:
    groups: list[tuple[list[str], dict[str, Any]]] = []
    for spec in directive.requests:
        shown = _explained(spec)
        if shown is None:
            continue
        if groups and groups[-1][1] == shown:
            groups[-1][0].append(spec.where)
        else:
            groups.append(([spec.where], shown))
    return [
        {
            "step": step.name,
            "key": step.key,
            "where": wheres[0] if len(wheres) == 1 else f"{wheres[0]} … {wheres[-1]}",
            "requests": len(wheres),
            "source": "handler output",
            **shown,
        }
        for wheres, shown in groups
    ]


def _explained(spec: RequestSpec) -> dict[str, Any] | None:
    if spec.loop is not None:
        return {"loopUntil": explain_poll(spec.loop, spec.retry, spec.timeout)}
    if spec.retry is not None:
        return {"retry": explain_retry(spec.retry, spec.timeout)}
    return None


async def _declared(
    step: Step, config: Mapping[str, Any], js: Any, limits: Any, why: str | None
) -> list[dict[str, Any]]:
    handler = step.handler
    source = _source(handler)
    if source is None:
        return []
    if handler.language == "javascript":
        found = await _declared_js(source, js, limits)
    else:
        found = _declared_python(source)
    entries = []
    for line, request in found:
        entry: dict[str, Any] = {
            "step": step.name,
            "key": step.key,
            "where": f"{handler.spec}:{line}",
            "source": "declared",
            "note": why,
        }
        try:
            entry.update(_explain_declared(request, config, entry["where"]))
        except LamrunnerError as exc:
            entry["error"] = exc.message
        entries.append(entry)
    return entries


def _source(handler: Any) -> str | None:
    """A handler's source text: a JS handler keeps it; a Python file's is read."""
    if handler.source is not None:
        return handler.source  # type: ignore[no-any-return]
    path = Path(str(handler.location).split(":")[0])
    try:
        return path.read_text(encoding="utf-8") if path.suffix == ".py" else None
    except (OSError, UnicodeDecodeError):
        return None


def _explain_declared(
    request: Mapping[str, Any], config: Mapping[str, Any], where: str
) -> dict[str, Any]:
    rendered = {k: render(v, config, f"{where}.{k}") for k, v in request.items()}
    timeout = parse_duration(rendered.get("timeout", defaults.REQUEST_TIMEOUT), f"{where}.timeout")
    retry = rendered.get("retry")
    retry_policy = None if retry is None else parse_retry(retry, f"{where}.retry")
    loop = rendered.get("loopUntil")
    if loop is not None:
        loop = {"condition": "true", **loop}  # the condition may be built at run time
        policy = parse_loop_until(loop, f"{where}.loopUntil")
        return {"loopUntil": explain_poll(policy, retry_policy, timeout)}
    assert retry_policy is not None
    return {"retry": explain_retry(retry_policy, timeout)}


def _declared_python(source: str) -> list[tuple[int, dict[str, Any]]]:
    """Each dict literal with a `loopUntil` or `retry` key: those keys and `timeout`, the
    values that are literals (a field computed at run time is left out: its default shows)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        fields = _literal_fields(node)
        if any(k in fields for k in POLICY_KEYS):
            keep = {k: v for k, v in fields.items() if k in (*POLICY_KEYS, "timeout")}
            found.append((node.lineno, keep))
    return found


def _literal_fields(node: ast.Dict) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            continue
        if isinstance(value, ast.Dict):
            fields[key.value] = _literal_fields(value)
            continue
        try:
            fields[key.value] = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
    return fields


_JS_POLICY = re.compile(r"""(?:^|[{,\s])["']?(loopUntil|retry)["']?\s*:\s*\{""")


async def _declared_js(source: str, js: Any, limits: Any) -> list[tuple[int, dict[str, Any]]]:
    """Each `loopUntil: {...}` / `retry: {...}` object literal of a JavaScript handler,
    evaluated alone in the sandbox (one that uses a variable is reported as not a literal)."""
    found = []
    for match in _JS_POLICY.finditer(source):
        start = match.end() - 1
        text = _balanced(source, start)
        line = source.count("\n", 0, start) + 1
        if text is None:
            continue
        try:
            value = json.loads(await js.call_handler(f"() => ({text})", "null", limits, _quiet))
        except ScriptError as exc:
            value = {"error": f"not a literal: {exc.message}"}
        found.append((line, {match.group(1): value}))
    return found


def _quiet(_level: str, _text: str) -> None:
    pass


def _balanced(source: str, start: int) -> str | None:
    """The `{...}` starting at `start`, skipping braces inside strings and comments."""
    depth, quote, i = 0, "", start
    while i < len(source):
        char = source[i]
        if not quote and source.startswith("//", i):
            i = source.find("\n", i)
            if i < 0:
                return None
            continue
        if not quote and source.startswith("/*", i):
            i = source.find("*/", i)
            if i < 0:
                return None
            i += 2
            continue
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return source[start : i + 1]
        i += 1
    return None


def _check_condition(source: str, where: str) -> None:
    from lamrunner.js.runtime import check_condition

    try:
        check_condition(source)
    except ScriptError as exc:
        raise ConditionError(f"{where}: {exc.message}") from None
