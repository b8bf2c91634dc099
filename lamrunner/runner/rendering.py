"""From a validated request object and the config to the exact request that goes on the wire.

Order: templates in every field, then path parameters into the URL (URL-encoded), then query
parameters appended in order (a list value repeats the key), then the body encoded as JSON,
form or text. Every problem is found here, before anything is sent.

A `pathParams` entry the url does not use is a warning, not an error: Laminar ignores it, and
its own batching example passes one. `render_request` appends the warning to `warnings` (the
engine logs it) and sends the request without it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from lamrunner.definition.directives import RequestSpec
from lamrunner.definition.templates import render, to_text
from lamrunner.definition.validation import did_you_mean
from lamrunner.errors import DefinitionError, TemplateError
from lamrunner.http.request import RenderedRequest

_PATH_PARAM = re.compile(r"\{\{\s*([A-Za-z_][\w-]*)\s*\}\}|\{([A-Za-z_][\w-]*)\}")
FORM = "application/x-www-form-urlencoded"


def render_request(
    spec: RequestSpec,
    config: Mapping[str, Any],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    warnings: list[str] | None = None,
) -> RenderedRequest:
    """Fill templates and parameters; raise TemplateError/DefinitionError naming the field.
    `extra`: more template namespaces (an onGiveUp request's `last`); `warnings` gets what is
    suspicious but sent anyway (an unused pathParams entry)."""
    where = spec.where
    url = render(spec.url, config, f"{where}.url", extra)
    if not isinstance(url, str):
        raise TemplateError(f"{where}.url: the template gave {type(url).__name__}, not a string")
    path_params = render(dict(spec.path_params), config, f"{where}.pathParams", extra)
    url, unused = _fill_path(url, path_params, where)
    if warnings is not None:
        warnings.extend(unused_param_warning(where, name) for name in unused)
    query = render(dict(spec.query_params), config, f"{where}.queryParams", extra)
    url = _append_query(url, query)
    _check_url(url, where)
    headers = _headers(render(dict(spec.headers), config, f"{where}.headers", extra), where)
    body = None
    if spec.has_body:
        body, content_type = _encode_body(
            render(spec.body, config, f"{where}.body", extra), headers
        )
        if content_type and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", content_type))
    return RenderedRequest(spec.method, url, tuple(headers), body, spec.timeout, where)


def unused_param_warning(where: str, name: str) -> str:
    """The warning for a pathParams entry the url does not use (run time and `validate`)."""
    return (
        f"{where}.pathParams: {name!r} is not used in the url and is ignored "
        f"(write {{{{{name}}}}} or {{{name}}} where it belongs, or drop it)"
    )


def _fill_path(url: str, params: Mapping[str, Any], where: str) -> tuple[str, list[str]]:
    """The url with its parameters filled, and the names of the entries it did not use."""
    used: set[str] = set()

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in params:
            raise TemplateError(
                f"{where}.url: path parameter {match.group(0)} has no value in pathParams"
                f"{did_you_mean(name, params)}"
            )
        used.add(name)
        return quote(to_text(params[name]), safe="")

    filled = _PATH_PARAM.sub(substitute, url)
    return filled, [str(name) for name in params if name not in used]


def _append_query(url: str, query: Mapping[str, Any]) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        values = value if isinstance(value, list) else [value]
        pairs.extend((str(key), to_text(v)) for v in values if v is not None)
    if not pairs:
        return url
    base, _, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        joiner = ""
    encoded = base + joiner + urlencode(pairs)
    return f"{encoded}#{fragment}" if fragment else encoded


def _check_url(url: str, where: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:  # e.g. 'http://[' : an unclosed IPv6 literal
        raise DefinitionError(f"{where}.url: {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise DefinitionError(f"{where}.url: {url!r} is not an absolute http(s) URL")
    if any(c in url for c in " \r\n\t"):
        raise DefinitionError(f"{where}.url: the URL contains white space; encode it")


def _headers(raw: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    headers = []
    for name, value in raw.items():
        if value is None:
            continue
        text = to_text(value)
        if "\r" in text or "\n" in text or "\r" in str(name) or "\n" in str(name):
            raise DefinitionError(f"{where}.headers.{name}: header values cannot contain newlines")
        headers.append((str(name), text))
    return headers


def _encode_body(body: Any, headers: list[tuple[str, str]]) -> tuple[bytes | None, str | None]:
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    if body is None:
        return None, None
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    if FORM in content_type.lower() and isinstance(body, Mapping):
        return urlencode(
            [(k, to_text(x)) for k, v in body.items() for x in (v if isinstance(v, list) else [v])]
        ).encode("ascii"), FORM
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), "application/json"
