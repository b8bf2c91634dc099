"""Declarative poll steps: `poll:` in the workflow file, compiled at load time into a request.

A poll step is not a second polling engine. Its `poll:` mapping is split into a request object
and a `loopUntil`, validated by `directives.parse_request` like any handler's request, so the
step gets everything a `loopUntil` poll has (retry, timeouts, templates, authentication,
Retry-After, checkpoints and resume, the hosts, history, `validate --explain`). What is its
own is small: JSONPath conditions (`pathconditions`), `ignoreIntermediateFailures`, the
`inputMappings` its templates read as `<<mappings.name>>`, and the outputs and
`outputMappings` of its GWO entry (`runner.pollsteps`).

Seed 000's `POLL_EXTERNAL_API` object (`stepType`, `apiCallDefinition`, `pollingConfig`,
`exitConditions`, …) is translated here into the same `poll:` form (`from_external_api`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from lamrunner.definition.directives import REQUEST_KEYS, RequestSpec, parse_request
from lamrunner.definition.pathconditions import compile_path_condition, is_path_condition
from lamrunner.definition.policies import LOOP_KEYS
from lamrunner.definition.validation import (
    check_keys,
    expect_bool,
    expect_mapping,
    expect_str,
)
from lamrunner.errors import ConditionError, DefinitionError, LamrunnerError, ScriptError
from lamrunner.jsonpath import Query, compile_query, compile_singular

MAPPINGS = "mappings"  # the template namespace of inputMappings: <<mappings.jobId>>
# a request object's keys, less the ones a poll step sets itself or cannot have; `timeout`
# is the whole poll's (loopUntil's) and `requestTimeout` each request's
_REQUEST_KEYS = tuple(k for k in REQUEST_KEYS if k not in ("loopUntil", "pagination", "timeout"))
_SCHEDULE_KEYS = tuple(
    k for k in LOOP_KEYS if k not in ("condition", "failWhen", "ignoreErrors", "pendingWhen")
)
POLL_KEYS = (
    *_REQUEST_KEYS,
    "requestTimeout",
    "interval",
    *_SCHEDULE_KEYS,
    "successCondition",
    "failureCondition",
    "ignoreIntermediateFailures",
    "inputMappings",
    "outputMappings",
)
STEPS_OUTPUT = "steps_output"


@dataclass(frozen=True)
class InputMapping:
    name: str
    query: Query
    where: str


@dataclass(frozen=True)
class OutputMapping:
    target: Query  # singular, under $.steps_output
    source: Query  # over the final response {status, headers, data}
    where: str


@dataclass(frozen=True)
class PollStep:
    """A `poll:` step, compiled: the request (with its loopUntil policy) and its mappings."""

    request: RequestSpec
    inputs: tuple[InputMapping, ...] = ()
    outputs: tuple[OutputMapping, ...] = ()
    interval: float | None = None  # the fixed delay between attempts (`interval`), if given


def parse_poll(data: Any, where: str) -> PollStep:
    """Validate a step's `poll:` mapping into a PollStep (nothing is rendered yet)."""
    data = expect_mapping(data, where)
    check_keys(data, POLL_KEYS, where, required=("url", "successCondition"))
    request = {k: data[k] for k in _REQUEST_KEYS if k in data}
    request.setdefault("method", "GET")
    if "requestTimeout" in data:
        request["timeout"] = data["requestTimeout"]
    ignore = expect_bool(
        data.get("ignoreIntermediateFailures", False), f"{where}.ignoreIntermediateFailures"
    )
    loop = {k: data[k] for k in _SCHEDULE_KEYS if k in data}
    _interval(data, loop, where)
    loop["condition"] = _condition(data["successCondition"], f"{where}.successCondition")
    if "failureCondition" in data:
        loop["failWhen"] = _condition(data["failureCondition"], f"{where}.failureCondition")
    loop["ignoreErrors"] = ignore
    request["loopUntil"] = loop
    spec = parse_request(request, where, None)
    assert spec.loop is not None
    # non-2xx answers: counted and skipped (ignore), or the step's failure (failOnHttpError,
    # the default); with failOnHttpError: false they are offered to the conditions
    mode = "ignore" if ignore else ("fail" if spec.fail_on_http_error else None)
    spec = replace(_with_http_errors(spec, mode), where="poll")  # run-time errors: "poll.url"
    assert spec.loop is not None
    return PollStep(
        request=spec,
        inputs=_inputs(data.get("inputMappings"), f"{where}.inputMappings"),
        outputs=_outputs(data.get("outputMappings"), f"{where}.outputMappings"),
        interval=spec.loop.backoff.initial_delay if "interval" in data else None,
    )


def _with_http_errors(spec: RequestSpec, mode: str | None) -> RequestSpec:
    assert spec.loop is not None
    return replace(spec, loop=replace(spec.loop, http_errors=mode))


def _interval(data: Mapping[str, Any], loop: dict[str, Any], where: str) -> None:
    """`interval: 5s` is the fixed delay between attempts: loopUntil's initialDelay, with the
    `fixed` strategy unless another is given."""
    if "interval" not in data:
        return
    if "initialDelay" in data or "delays" in data:
        other = "initialDelay" if "initialDelay" in data else "delays"
        raise DefinitionError(
            f"{where}: interval and {other} together; interval is the fixed delay between "
            f"attempts (give one of them)"
        )
    loop["initialDelay"] = data["interval"]
    loop.setdefault("strategy", "fixed")


def _condition(source: Any, where: str) -> str:
    """A JSONPath condition or JavaScript, compiled now so a bad one fails `validate`."""
    text = expect_str(source, where)
    check_condition(text, where, DefinitionError)
    return text


def check_condition(source: str, where: str, error: type[LamrunnerError] = ConditionError) -> None:
    """A condition compiled: JSONPath ones (`$…`) by `pathconditions`, the rest in QuickJS
    (its syntax error raised as `error`, naming `where`)."""
    if is_path_condition(source):
        compile_path_condition(source, where)
        return
    from lamrunner.js.runtime import check_condition as check_js

    try:
        check_js(source)
    except ScriptError as exc:
        raise error(f"{where}: {exc.message}") from None


def _inputs(raw: Any, where: str) -> tuple[InputMapping, ...]:
    """`inputMappings: {jobId: "$.steps_output.start.jobId"}` (a value may also be seed 000's
    `{sourceJsonPath: ...}`)."""
    if raw is None:
        return ()
    raw = expect_mapping(raw, where)
    found = []
    for name, value in raw.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[\w-]+", name):
            raise DefinitionError(
                f"{where}: {name!r} is not a mapping name (letters, digits, _ and -)"
            )
        if isinstance(value, Mapping):
            check_keys(value, ("sourceJsonPath", "placeholder"), at, required=("sourceJsonPath",))
            value, at = value["sourceJsonPath"], f"{at}.sourceJsonPath"
        found.append(InputMapping(name, compile_query(value, at), at))
    return tuple(found)


def _outputs(raw: Any, where: str) -> tuple[OutputMapping, ...]:
    """`outputMappings: {"$.steps_output.result": "$.data"}`: target → source."""
    if raw is None:
        return ()
    raw = expect_mapping(raw, where)
    found = []
    for target, source in raw.items():
        at = f"{where}[{target!r}]"
        query = compile_singular(target, at)
        location = query.location()
        if len(location) < 2 or location[0] != STEPS_OUTPUT or not isinstance(location[1], str):
            raise DefinitionError(
                f"{at}: a target must name a place under $.steps_output "
                f"(e.g. $.steps_output.result), got {target!r}"
            )
        found.append(OutputMapping(query, compile_query(source, at), at))
    return tuple(found)


# -- seed 000's POLL_EXTERNAL_API object ------------------------------------------------------

EXTERNAL_API = "POLL_EXTERNAL_API"
EXTERNAL_KEYS = (
    "stepType",
    "stepInstanceId",
    "displayName",
    "description",
    "apiCallDefinition",
    "pollingConfig",
    "exitConditions",
    "inputMappings",
    "outputMappings",
    "defaultNextStepInstanceId",
)
_CALL_KEYS = ("apiHttpMethod", "apiUrlTemplate", "headers", "body", "queryParams", "timeout")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w-]*)\s*\}\}")


def from_external_api(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Seed 000's step object as a lamrunner step: `stepInstanceId` → `name`, `displayName`
    → `description`, `defaultNextStepInstanceId` → `next`, the rest → `poll:`. Its
    `{{job_id}}` placeholders become `<<mappings.job_id>>` for every name it maps."""
    check_keys(item, EXTERNAL_KEYS, where, required=("stepType", "apiCallDefinition"))
    if item["stepType"] != EXTERNAL_API:
        raise DefinitionError(
            f"{where}.stepType: {item['stepType']!r} is not a step type lamrunner runs; "
            f"it runs {EXTERNAL_API!r} (or write the step with handler: or poll:)"
        )
    call = expect_mapping(item["apiCallDefinition"], f"{where}.apiCallDefinition")
    at = f"{where}.apiCallDefinition"
    check_keys(call, _CALL_KEYS, at, required=("apiUrlTemplate",))
    template = call["apiUrlTemplate"]
    mappings: dict[str, Any] = dict(
        expect_mapping(item.get("inputMappings") or {}, f"{where}.inputMappings")
    )
    if isinstance(template, Mapping):
        check_keys(template, ("template", "contextMappings"), f"{at}.apiUrlTemplate")
        mappings.update(_context_mappings(template.get("contextMappings"), f"{at}.apiUrlTemplate"))
        url = expect_str(template.get("template"), f"{at}.apiUrlTemplate.template")
    else:
        url = expect_str(template, f"{at}.apiUrlTemplate")
    names = set(mappings)
    poll: dict[str, Any] = {
        "method": call.get("apiHttpMethod", "GET"),
        "url": _placeholders(url, names),
    }
    for key in ("headers", "body", "queryParams"):
        if key in call:
            poll[key] = _placeholders(call[key], names)
    if "timeout" in call:
        poll["requestTimeout"] = call["timeout"]
    poll.update(_polling_config(item.get("pollingConfig"), f"{where}.pollingConfig"))
    exits = expect_mapping(item.get("exitConditions") or {}, f"{where}.exitConditions")
    check_keys(exits, ("successCondition", "failureCondition"), f"{where}.exitConditions")
    poll.update(exits)
    if mappings:
        poll["inputMappings"] = mappings
    if "outputMappings" in item:
        poll["outputMappings"] = item["outputMappings"]
    step: dict[str, Any] = {"poll": poll}
    for theirs, ours in (
        ("stepInstanceId", "name"),
        ("displayName", "description"),
        ("description", "description"),
        ("defaultNextStepInstanceId", "next"),
    ):
        if item.get(theirs) is not None:
            step[ours] = item[theirs]
    return step


def _context_mappings(raw: Any, where: str) -> dict[str, Any]:
    """`contextMappings`: `{job_id: {sourceJsonPath}}` or `[{placeholder, sourceJsonPath}]`."""
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, list):
        raise DefinitionError(f"{where}.contextMappings: expected a mapping or a list")
    found: dict[str, Any] = {}
    for i, entry in enumerate(raw):
        at = f"{where}.contextMappings[{i}]"
        entry = expect_mapping(entry, at)
        check_keys(entry, ("placeholder", "sourceJsonPath"), at, required=("sourceJsonPath",))
        name = entry.get("placeholder") or _last_name(entry["sourceJsonPath"], at)
        found[str(name).strip("{} ")] = entry["sourceJsonPath"]
    return found


def _last_name(path: Any, where: str) -> str:
    location = compile_singular(expect_str(path, f"{where}.sourceJsonPath"), where).location()
    if not location or not isinstance(location[-1], str):
        raise DefinitionError(f"{where}: give a placeholder name for {path!r}")
    return location[-1]


def _polling_config(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    raw = expect_mapping(raw, where)
    check_keys(raw, ("intervalSeconds", "maxAttempts", "timeoutSeconds"), where)
    out: dict[str, Any] = {}
    if "intervalSeconds" in raw:
        out["interval"] = raw["intervalSeconds"]
    if "maxAttempts" in raw:
        out["maxAttempts"] = raw["maxAttempts"]
    if "timeoutSeconds" in raw:
        out["timeout"] = raw["timeoutSeconds"]
    return out


def _placeholders(value: Any, names: set[str]) -> Any:
    """Seed 000's `{{name}}` (a mapped name) as lamrunner's `<<mappings.name>>`; other
    `{{…}}` (Laminar's `{{config.key}}`) are left as they are."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(
            lambda m: f"<<{MAPPINGS}.{m.group(1)}>>" if m.group(1) in names else m.group(0), value
        )
    if isinstance(value, Mapping):
        return {k: _placeholders(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, names) for v in value]
    return value
