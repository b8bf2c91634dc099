"""What a handler's return value asks for: plain data, HTTP requests, or the end of the run.

Parsing here is the edge: every request object is checked (keys, method, timeout, retry and
loopUntil, the JS of conditions) before any request of the step is sent, so a typo in the
third element of a batch does not leave the first two half-done.

The settings of a request (SETTINGS_KEYS) are rendered with the config first and validated
after, so `maxAttempts: "<<config.n>>"` is checked as the number it becomes, with the same
errors as a literal. The url, parameters, headers and body are rendered later, in `rendering`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lamrunner import defaults
from lamrunner.definition.auth import AuthSpec, parse_authentication
from lamrunner.definition.pagination import PageSpec, parse_pagination
from lamrunner.definition.policies import PollPolicy, RetryPolicy, parse_loop_until, parse_retry
from lamrunner.definition.resulturl import parse_follow_result
from lamrunner.definition.templates import has_template, render
from lamrunner.definition.validation import (
    check_keys,
    did_you_mean,
    expect_bool,
    expect_mapping,
    expect_str,
    type_name,
)
from lamrunner.errors import DefinitionError
from lamrunner.jsonpath import Query, compile_query
from lamrunner.units import noting_durations, parse_duration

HTTP_REQUEST = "lam.httpRequest"
HTTP_REQUESTS = "lam.httpRequests"
EXIT = "lam.exit"
RESPONSE = "lam.response"
EXECUTE = "lam.execute"
ASYNC_EXECUTE = "lam.asyncExecute"
RESOLVE_THEN_EXECUTE = "lam.resolveThenExecute"
RESULT = "lam.result"  # deprecated: its list form is lam.execute
KNOWN_KEYS = (
    HTTP_REQUEST,
    HTTP_REQUESTS,
    EXIT,
    RESPONSE,
    EXECUTE,
    ASYNC_EXECUTE,
    RESOLVE_THEN_EXECUTE,
    RESULT,
)
BATCH_KEYS = ("minSuccess", "toleratedFailures")  # may stand beside lam.httpRequests
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
REQUEST_KEYS = (
    "method",
    "url",
    "pathParams",
    "queryParams",
    "headers",
    "body",
    "timeout",
    "failOnHttpError",
    "retry",
    "loopUntil",
    "followAsync",
    "idempotencyKey",
    "onGiveUp",
    "authentication",
    "pagination",
    "actionFrom",
    "followResultUrl",
)
SETTINGS_KEYS = (
    "method",
    "timeout",
    "failOnHttpError",
    "retry",
    "loopUntil",
    "followAsync",
    "idempotencyKey",
)
# onGiveUp: a request object of its own, sent once, so it has no retry, poll or give-up of its own
GIVE_UP_KEYS = (
    "method",
    "url",
    "pathParams",
    "queryParams",
    "headers",
    "body",
    "timeout",
    "authentication",
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
DEFAULT_TIMEOUT = defaults.REQUEST_TIMEOUT
_NO_BODY = object()


@dataclass(frozen=True)
class RequestSpec:
    """One request object, validated but with templates not yet rendered."""

    method: str
    url: str
    where: str
    path_params: Mapping[str, Any] = field(default_factory=dict)
    query_params: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)
    body: Any = _NO_BODY
    timeout: float = DEFAULT_TIMEOUT
    fail_on_http_error: bool = True
    retry: RetryPolicy | None = None
    loop: PollPolicy | None = None
    # True: follow a 202's Location; False: never; None: a GET/HEAD poll's first 202
    follow_async: bool | None = defaults.FOLLOW_ASYNC
    # idempotencyKey: None (the default rule: POST/PATCH in a step that polls), False (never),
    # or the header name to send a key in (True is read as the default header name)
    idempotency_key: str | bool | None = None
    on_give_up: RequestSpec | None = None  # sent when the poll gives up (see calls.give_up)
    auth: AuthSpec | None = None  # `authentication`: its values are filled when rendered
    pagination: PageSpec | None = None  # follow pages (never together with loopUntil)
    # `actionFrom`: where an action sits in the response body (seed 001); a poll stops once
    # it selects an object, and the engine runs that action (runner/routes.py)
    action_from: Query | None = None
    # followResultUrl: where a pointer {"is_url": true, "url"} may stand in the final body
    follow_result: Query | None = None

    @property
    def has_body(self) -> bool:
        return self.body is not _NO_BODY


@dataclass(frozen=True)
class PlainData:
    data: Any
    warnings: tuple[str, ...] = ()  # e.g. a bare list of workflow calls (see _bare_calls)


@dataclass(frozen=True)
class HttpDirective:
    requests: tuple[RequestSpec, ...]
    batch: bool  # lam.httpRequests: results are lists, in request order
    warnings: tuple[str, ...] = ()  # suspicious durations, e.g. `initialDelay: 2000` (seconds)
    # lam.httpRequests with minSuccess / toleratedFailures: how many must succeed (a count,
    # percentages resolved against the batch's size); None: every one must
    min_success: int | None = None


@dataclass(frozen=True)
class ExitDirective:
    data: Any


@dataclass(frozen=True)
class ResponseDirective:
    response: Mapping[str, Any]


ConditionCheck = Callable[[str, str], None]


def parse_directive(
    value: Any,
    check_condition: ConditionCheck | None = None,
    config: Mapping[str, Any] | None = None,
) -> Directive:
    """Classify a handler's return value. `check_condition(source, where)` compiles JS.

    With `config`, the templates in each request's settings are filled before they are
    validated, and those of a `lam.response` or a `lam.exit: true` payload (it ends the run);
    without it (tests of the shape alone) they are validated as written.
    """
    if not isinstance(value, Mapping):
        return PlainData(value, _bare_calls(value))
    lam_keys = [k for k in value if isinstance(k, str) and k.startswith("lam.")]
    if not lam_keys:
        return PlainData(value)
    for key in lam_keys:
        if key not in KNOWN_KEYS:
            raise DefinitionError(
                f"the handler returned unknown directive {key!r}{did_you_mean(key, KNOWN_KEYS)}; "
                f"known directives: {', '.join(KNOWN_KEYS)}"
            )
    if len(lam_keys) > 1:
        raise DefinitionError(
            f"the handler returned {' and '.join(lam_keys)} together; return one directive"
        )
    key = lam_keys[0]
    if key == EXIT:
        return _parse_exit(value, config)
    if key in (EXECUTE, ASYNC_EXECUTE, RESOLVE_THEN_EXECUTE, RESULT):
        _no_siblings(value, key, ())
        return parse_execute(key, value[key])
    _no_siblings(value, key, BATCH_KEYS if key == HTTP_REQUESTS else ())
    if key == RESPONSE:
        payload = value[key] if config is None else render(value[key], config, RESPONSE)
        return ResponseDirective(_parse_response(payload))
    directive = _parse_http(key, value[key], check_condition, config)
    if key == HTTP_REQUESTS and any(k in value for k in BATCH_KEYS):
        need = batch_min_success(value, len(directive.requests), config)
        directive = replace(directive, min_success=need)
    return directive


def batch_min_success(
    value: Mapping[str, Any], size: int, config: Mapping[str, Any] | None = None
) -> int:
    """How many of a batch's `size` requests must succeed, from its `minSuccess` or its
    `toleratedFailures`: a count, or a percentage of the batch ("90%"). A minSuccess
    percentage rounds up, a toleratedFailures one down: neither tolerates more than it says."""
    given = [k for k in BATCH_KEYS if k in value]
    if len(given) > 1:
        raise DefinitionError(
            f"{HTTP_REQUESTS}: give minSuccess or toleratedFailures, not both "
            f"(toleratedFailures: n is minSuccess: size - n)"
        )
    name = given[0]
    raw = value[name]
    if config is not None:
        raw = render(raw, config, name)
    count = _count_or_percent(raw, size, name, up=name == "minSuccess")
    if name == "minSuccess":
        if count > size:
            raise DefinitionError(f"{name}: {raw!r} is more than the {size} requests of the batch")
        return count
    return max(0, size - count)


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def _count_or_percent(raw: Any, size: int, where: str, *, up: bool) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    match = _PERCENT.match(raw) if isinstance(raw, str) else None
    if match is None or float(match.group(1)) > 100:
        raise DefinitionError(
            f"{where}: expected a whole number >= 0 or a percentage like '10%', got {raw!r}"
        )
    share = size * float(match.group(1)) / 100
    return math.ceil(share - 1e-9) if up else math.floor(share + 1e-9)


def _parse_http(
    key: str,
    items: Any,
    check_condition: ConditionCheck | None,
    config: Mapping[str, Any] | None,
) -> HttpDirective:
    """Every request object of the step, and the duration warnings their parsing noted."""
    batch = key == HTTP_REQUESTS
    if batch and (not isinstance(items, list) or not items):
        raise DefinitionError(f"{key}: expected a non-empty list of request objects")
    wheres = [f"{key}[{i}]" for i in range(len(items))] if batch else [key]
    for item, where in zip(items if batch else [], wheres, strict=False):
        if isinstance(item, Mapping) and "actionFrom" in item:
            raise DefinitionError(
                f"{where}.actionFrom: an action routes the whole run, so only a lone "
                f"{HTTP_REQUEST} may carry one, not a request of a {HTTP_REQUESTS} batch"
            )
    with noting_durations() as notes:
        specs = tuple(
            parse_request(item, where, check_condition, config)
            for item, where in zip(items if batch else [items], wheres, strict=True)
        )
    return HttpDirective(specs, batch=batch, warnings=_once_per_field(notes))


def _once_per_field(notes: list[str]) -> tuple[str, ...]:
    """One warning per field of the step: a batch of 100 alike elements warns once."""
    first: dict[str, str] = {}
    for note in notes:
        first.setdefault(re.sub(r"^lam\.httpRequests\[\d+\]", "lam.httpRequests[*]", note), note)
    return tuple(first.values())


def parse_request(
    data: Any,
    where: str,
    check_condition: ConditionCheck | None,
    config: Mapping[str, Any] | None = None,
) -> RequestSpec:
    """Validate one request object, its settings rendered with `config` first when given."""
    data = expect_mapping(data, where)
    check_keys(data, REQUEST_KEYS, where, required=("method", "url"))
    return _parse_checked(data, where, check_condition, config)


def _parse_checked(
    data: Mapping[str, Any],
    where: str,
    check_condition: ConditionCheck | None,
    config: Mapping[str, Any] | None,
) -> RequestSpec:
    if config is None:
        return _build_request(data, where, check_condition)
    rendered = {
        k: render(v, config, f"{where}.{k}") if k in SETTINGS_KEYS else v for k, v in data.items()
    }
    try:
        return _build_request(rendered, where, check_condition)
    except DefinitionError as exc:
        raise _name_template(exc, data, where) from None


def _build_request(
    data: Mapping[str, Any], where: str, check_condition: ConditionCheck | None
) -> RequestSpec:
    method = expect_str(data["method"], f"{where}.method").upper()
    if method not in METHODS:
        raise DefinitionError(
            f"{where}.method: {data['method']!r} is not one of {', '.join(METHODS)}"
            f"{did_you_mean(method, METHODS)}"
        )
    follow = data.get("followAsync", defaults.FOLLOW_ASYNC)
    if follow is not None:
        follow = expect_bool(follow, f"{where}.followAsync")
    if "loopUntil" in data:
        loop: PollPolicy | None = parse_loop_until(
            _until_action(data), f"{where}.loopUntil", follow=follow is True
        )
    else:  # followAsync: true alone polls with the defaults until the operation is done
        loop = parse_loop_until({}, f"{where}.loopUntil", follow=True) if follow else None
    if loop is not None and check_condition is not None:
        for name, source in (
            ("condition", loop.condition),
            ("failWhen", loop.fail_when),
            ("pendingWhen", loop.pending_when),
            ("progress", loop.progress),
            ("nextDelay", loop.next_delay),
        ):
            if source is not None:
                check_condition(source, f"{where}.loopUntil.{name}")
    pagination = _pagination(data, where, loop, check_condition)
    if "onGiveUp" in data and loop is None:
        raise DefinitionError(
            f"{where}.onGiveUp: only a request with loopUntil gives up; add loopUntil or drop it"
        )
    return RequestSpec(
        method=method,
        url=expect_str(data["url"], f"{where}.url"),
        where=where,
        path_params=_mapping(data, "pathParams", where),
        query_params=_mapping(data, "queryParams", where),
        headers=_mapping(data, "headers", where),
        body=data.get("body", _NO_BODY),
        timeout=parse_duration(data.get("timeout", DEFAULT_TIMEOUT), f"{where}.timeout"),
        fail_on_http_error=expect_bool(
            data.get("failOnHttpError", True), f"{where}.failOnHttpError"
        ),
        retry=parse_retry(data["retry"], f"{where}.retry") if "retry" in data else None,
        loop=loop,
        follow_async=follow,
        idempotency_key=_idempotency_key(data.get("idempotencyKey"), where),
        on_give_up=_give_up(data["onGiveUp"], where) if "onGiveUp" in data else None,
        auth=(
            parse_authentication(data["authentication"], f"{where}.authentication")
            if "authentication" in data
            else None
        ),
        pagination=pagination,
        action_from=(
            compile_query(data["actionFrom"], f"{where}.actionFrom")
            if "actionFrom" in data
            else None
        ),
        follow_result=_follow_result(data, where, pagination),
    )


def _until_action(data: Mapping[str, Any]) -> Any:
    """A poll with `actionFrom` may leave out loopUntil's condition (seed 001: it polls
    until an action arrives, or maxAttempts); it is then `false`."""
    loop = data["loopUntil"]
    if "actionFrom" in data and isinstance(loop, Mapping) and "condition" not in loop:
        return {**loop, "condition": "false"}
    return loop


def _follow_result(
    data: Mapping[str, Any], where: str, pagination: PageSpec | None
) -> Query | None:
    """`followResultUrl`, refused beside `pagination`: a paginated request's response is the
    list of its pages, with no one final body for the pointer to be in."""
    if "followResultUrl" not in data:
        return None
    if pagination is not None:
        raise DefinitionError(
            f"{where}.followResultUrl: a paginated request has no single final body to follow "
            "a result pointer in; fetch the pages in one step and the result in another"
        )
    return parse_follow_result(data["followResultUrl"], where)


def _pagination(
    data: Mapping[str, Any],
    where: str,
    loop: PollPolicy | None,
    check_condition: ConditionCheck | None,
) -> PageSpec | None:
    """`pagination`, refused beside a poll: a poll repeats one request until it is done, a
    paginated request walks on to the next page; which page a poll's condition sees would
    be anyone's guess."""
    if "pagination" not in data:
        return None
    if loop is not None:
        also = "loopUntil" if "loopUntil" in data else "followAsync: true"
        raise DefinitionError(
            f"{where}.pagination: a request cannot both paginate and poll ({also}); poll in "
            "one step and fetch the pages in the next"
        )
    return parse_pagination(data["pagination"], f"{where}.pagination", check_condition)


def _idempotency_key(value: Any, where: str) -> str | bool | None:
    """`idempotencyKey`: true (the default header), false, or a header name."""
    if value is None:
        return None
    if value is True:
        return defaults.IDEMPOTENCY_HEADER
    if value is False:
        return False
    if isinstance(value, str) and _HEADER_NAME.fullmatch(value):
        return value
    raise DefinitionError(
        f"{where}.idempotencyKey: expected true, false or a header name "
        f"(e.g. 'Idempotency-Key'), got {value!r}"
    )


def _give_up(data: Any, where: str) -> RequestSpec:
    """`onGiveUp`: a plain request object (no retry, loopUntil or onGiveUp of its own); its
    templates are filled when it is sent, `<<last.…>>` from the poll's last response."""
    at = f"{where}.onGiveUp"
    data = expect_mapping(data, at)
    check_keys(data, GIVE_UP_KEYS, at, required=("method", "url"))
    return _build_request(data, at, None)


def _name_template(exc: DefinitionError, raw: Mapping[str, Any], where: str) -> DefinitionError:
    """Say which template gave the bad value: the handler shows `<<config.n>>`, not 'abc'."""
    field_name = exc.message.partition(": ")[0]
    for path, text in _templated({k: raw[k] for k in SETTINGS_KEYS if k in raw}, where):
        if _gave(path, field_name):
            return exc.replaced(message=f"{exc.message} (from {text!r})")
    return exc


def _gave(path: str, field_name: str) -> bool:
    """Whether the template at `path` gave the value that the error about `field_name` is
    about: the field itself, a mapping holding it, or an element of a list it is."""
    inside = field_name.startswith((f"{path}.", f"{path}["))
    return field_name == path or inside or path.startswith(f"{field_name}[")


def _templated(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(field, template text) for every string holding a template, depth first."""
    if isinstance(value, str) and has_template(value):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _templated(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _templated(item, f"{where}[{i}]")


def _parse_exit(value: Mapping[str, Any], config: Mapping[str, Any] | None) -> Directive:
    """`lam.exit: true` ends the run with its `data`, templates filled (with `config`);
    `false` makes `data` the step's plain result, as it is."""
    _no_siblings(value, EXIT, ("data",))
    flag = value[EXIT]
    if not isinstance(flag, bool):
        raise DefinitionError(f"{EXIT}: expected true or false, got {flag!r}")
    data = value.get("data")
    if not flag:
        return PlainData(data)
    return ExitDirective(data if config is None else render(data, config, f"{EXIT}.data"))


def _parse_response(value: Any) -> Mapping[str, Any]:
    value = expect_mapping(value, RESPONSE)
    check_keys(
        value,
        ("statusCode", "message", "data", "error"),
        RESPONSE,
        required=("statusCode", "message"),
    )
    code = value["statusCode"]
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        raise DefinitionError(f"{RESPONSE}.statusCode: expected an HTTP status code, got {code!r}")
    if not isinstance(value["message"], str):
        raise DefinitionError(f"{RESPONSE}.message: expected a string")
    return dict(value)


# -- sub-workflows ---------------------------------------------------------------------------

WORKFLOW_ID = "lam.workflowId"
PAYLOAD = "lam.payload"
CALL_KEYS = (WORKFLOW_ID, PAYLOAD)
RESOLVE_KEYS = (WORKFLOW_ID, PAYLOAD, RESULT)
EXECUTE_MODE, ASYNC_MODE, RESOLVE_MODE = "execute", "async", "resolve"
_MODES = {EXECUTE: EXECUTE_MODE, RESULT: EXECUTE_MODE, ASYNC_EXECUTE: ASYNC_MODE}


@dataclass(frozen=True)
class WorkflowCall:
    """One `{"lam.workflowId", "lam.payload"}`: which workflow, with what as its input."""

    workflow_id: int | str  # as the handler wrote it (Laminar's ids are integers)
    payload: Any  # the child's input (its GWO's `input`); {} when not given
    where: str  # "lam.execute[1]"


@dataclass(frozen=True)
class ExecuteDirective:
    """Run other workflows: `execute` one after another, blocking the step (lam.execute and
    the deprecated lam.result list); `async` all at once while the run goes on
    (lam.asyncExecute); `resolve`: the run ends now with `result`, then the child runs
    (lam.resolveThenExecute)."""

    calls: tuple[WorkflowCall, ...]
    mode: str
    key: str  # the directive as written, for messages
    result: Any = None  # resolve: the run's result (lam.result)
    warnings: tuple[str, ...] = ()  # the deprecated lam.result form says so

    @property
    def blocks(self) -> bool:
        """Whether the step waits for the children to finish."""
        return self.mode == EXECUTE_MODE


Directive = PlainData | HttpDirective | ExitDirective | ResponseDirective | ExecuteDirective


def parse_execute(key: str, value: Any) -> ExecuteDirective:
    """`lam.execute` / `lam.asyncExecute` / `lam.result`: a non-empty list of calls;
    `lam.resolveThenExecute`: one call with a `lam.result` beside its id and payload."""
    if key == RESOLVE_THEN_EXECUTE:
        body = expect_mapping(value, key)
        check_keys(body, RESOLVE_KEYS, key, required=(WORKFLOW_ID,))
        call = _call(body, key, RESOLVE_KEYS)
        return ExecuteDirective((call,), RESOLVE_MODE, key, result=body.get(RESULT))
    if not isinstance(value, list) or not value:
        old = " (the deprecated lam.result form)" if key == RESULT else ""
        raise DefinitionError(
            f"{key}{old}: expected a non-empty list of "
            f'{{"{WORKFLOW_ID}": ..., "{PAYLOAD}": ...}} objects, got {type_name(value)}'
        )
    calls = tuple(_call(item, f"{key}[{i}]", CALL_KEYS) for i, item in enumerate(value))
    note = (
        (
            f"{RESULT} with a list of workflow calls is Laminar's deprecated form of {EXECUTE}: "
            f'it runs them as {EXECUTE} does; return {{"{EXECUTE}": [...]}} instead',
        )
        if key == RESULT
        else ()
    )
    return ExecuteDirective(calls, _MODES[key], key, warnings=note)


def _call(item: Any, where: str, allowed: tuple[str, ...]) -> WorkflowCall:
    item = expect_mapping(item, where)
    check_keys(item, allowed, where, required=(WORKFLOW_ID,))
    given = item[WORKFLOW_ID]
    if isinstance(given, bool) or not isinstance(given, int | str) or not str(given).strip():
        raise DefinitionError(
            f"{where}.{WORKFLOW_ID}: expected a workflow id (a whole number or a name from "
            f"the workflows: map), got {given!r}"
        )
    payload = item.get(PAYLOAD)
    return WorkflowCall(given, {} if payload is None else payload, where)


def _bare_calls(value: Any) -> tuple[str, ...]:
    """A warning for a bare list of workflow calls returned as data: Laminar runs nothing for
    it either, but it is almost always a forgotten `lam.execute`."""
    if not isinstance(value, list) or not value:
        return ()
    if not all(isinstance(v, Mapping) and WORKFLOW_ID in v for v in value):
        return ()
    return (
        f"the handler returned a bare list of {{{WORKFLOW_ID}, {PAYLOAD}}} objects: it is plain "
        f'data and no workflow runs; return {{"{EXECUTE}": [...]}} to run them',
    )


def _no_siblings(value: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    extra = [k for k in value if k != key and k not in allowed]
    if extra:
        also = f"; only {', '.join(allowed)} may stand beside it" if allowed else ""
        guess = did_you_mean(str(extra[0]), allowed) if allowed else ""
        raise DefinitionError(
            f"{key}: unexpected sibling key {extra[0]!r} next to the directive{guess}{also}"
        )


def _mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if value is None:
        return {}
    return expect_mapping(value, f"{where}.{key}")
