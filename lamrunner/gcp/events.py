"""What a request to the function asks for: start a run, or continue a suspended one.

    start         {"input": any, "config": {overrides}, "callbackUrl": "https://..."}
                  every key optional; an empty body is {}
    continuation  {"continuation": n, "state": {saved RunState}, "config": {...},
                   "callbackUrl": ...}: the body of a task the function scheduled itself

Every problem is a DefinitionError naming the key and what was expected, which the function
answers with 400: the caller sent it, the caller can fix it. Config overrides are taken as
given — `${VAR}` is not expanded in them, so a caller cannot read the function's environment.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lamrunner.definition.yamlfile import parse_json
from lamrunner.errors import DefinitionError
from lamrunner.runner.state import RunState

BODY = "request body"
START_KEYS = ("input", "config", "callbackUrl")
CONTINUATION_KEYS = ("continuation", "state", "config", "callbackUrl")
MAX_URL = 2083  # the longest URL a Cloud Tasks HTTP target takes


@dataclass(frozen=True)
class Start:
    input: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    callback: str | None = None


@dataclass(frozen=True)
class Continuation:
    state: RunState
    count: int  # which continuation of the run this is: 1, 2, ... (names its task)
    config: dict[str, Any] = field(default_factory=dict)
    callback: str | None = None


def parse_event(body: bytes, workflow: str) -> Start | Continuation:
    """The request body as a Start or a Continuation of `workflow`'s runs."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DefinitionError(f"{BODY}: not UTF-8 text; send JSON") from None
    data = parse_json(text, BODY) if text.strip() else {}
    if not isinstance(data, dict):
        raise DefinitionError(f"{BODY}: expected a JSON object, got {_kind(data)}")
    if "state" in data or "continuation" in data:
        return _continuation(data, workflow)
    _check_keys(data, START_KEYS)
    return Start(data.get("input"), _config(data), _callback(data))


def _continuation(data: dict[str, Any], workflow: str) -> Continuation:
    _check_keys(data, CONTINUATION_KEYS)
    count = data.get("continuation")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DefinitionError(f"{BODY}: continuation: expected a number >= 1, got {_kind(count)}")
    state = RunState.from_dict(data.get("state"))
    if state.workflow != workflow:
        raise DefinitionError(
            f"{BODY}: state: run {state.run_id} is of workflow {state.workflow!r}; "
            f"this function runs {workflow!r}"
        )
    if state.finished:
        raise DefinitionError(
            f"{BODY}: state: run {state.run_id} already finished with {state.status}"
        )
    return Continuation(state, count, _config(data), _callback(data))


def _check_keys(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(allowed)})"
            raise DefinitionError(f"{BODY}: unknown key {str(key)!r}{hint}")


def _config(data: dict[str, Any]) -> dict[str, Any]:
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise DefinitionError(
            f"{BODY}: config: expected an object of overrides, got {_kind(config)}"
        )
    return config


def _callback(data: dict[str, Any]) -> str | None:
    url = data.get("callbackUrl")
    if url is None:
        return None
    if not (isinstance(url, str) and _is_http_url(url)):
        raise DefinitionError(f"{BODY}: callbackUrl: expected an http(s) URL, got {_kind(url)}")
    if len(url) > MAX_URL:
        raise DefinitionError(f"{BODY}: callbackUrl: longer than {MAX_URL} characters")
    return url


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a malformed host ("http://[::1") or port ("http://h:99999")
        return False


def _kind(value: Any) -> str:
    """A JSON type name, with a short value, for a message."""
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    name = names.get(type(value), "a number")
    if isinstance(value, dict | list):
        return name
    shown = repr(value)
    return f"{name} ({shown if len(shown) <= 40 else shown[:37] + '...'})"
