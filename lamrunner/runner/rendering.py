"""From a validated request object and the config to the exact request that goes on the wire.

Order: templates in every field, then path parameters into the URL (URL-encoded), then query
parameters appended in order (a list value repeats the key), then the body encoded as JSON,
form or text. Every problem is found here, before anything is sent.

`authentication` is rendered here too (`render_auth`): basic, bearer and apikey become a header
or a query parameter of the request; oauth2 becomes an `OAuthClient`, whose token the call
fetches when it sends (`tokens`). A paginated request's next page is the same request with the
values its `next` scripts gave laid over its own (`Overrides`), after its templates are filled:
a value a server sent is never read as a template.

A `pathParams` entry the url does not use is a warning, not an error: Laminar ignores it, and
its own batching example passes one. `render_request` appends the warning to `warnings` (the
engine logs it) and sends the request without it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from lamrunner.definition.auth import APIKEY, BASIC, BEARER, OAUTH2, AuthSpec
from lamrunner.definition.directives import RequestSpec
from lamrunner.definition.templates import render, to_text
from lamrunner.definition.validation import did_you_mean
from lamrunner.errors import DefinitionError, TemplateError
from lamrunner.http.request import RenderedRequest

_PATH_PARAM = re.compile(r"\{\{\s*([A-Za-z_][\w-]*)\s*\}\}|\{([A-Za-z_][\w-]*)\}")
FORM = "application/x-www-form-urlencoded"
# the values a paginated request's `next` scripts gave, per part: queryParams, headers, body
# (a None value leaves that field out of the next page)
Overrides = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class OAuthClient:
    """An oauth2 client-credentials `authentication`, its values filled from the config."""

    token_url: str
    client_id: str
    client_secret: str
    scope: str | None
    audience: str | None
    client_auth: str  # body | basic: how the client authenticates to the token endpoint
    where: str

    @property
    def key(self) -> tuple[str, str, str | None, str | None]:
        """What a cached token is shared by: one client asking for one scope at one URL."""
        return (self.token_url, self.client_id, self.scope, self.audience)

    def __repr__(self) -> str:
        return f"OAuthClient(token_url={self.token_url!r}, client_id={self.client_id!r})"


@dataclass(frozen=True)
class Credentials:
    """What an `authentication` adds to its request, and the values the run must mask."""

    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()
    oauth: OAuthClient | None = None


def render_request(
    spec: RequestSpec,
    config: Mapping[str, Any],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    overrides: Overrides | None = None,
    warnings: list[str] | None = None,
) -> RenderedRequest:
    """Fill templates and parameters; raise TemplateError/DefinitionError naming the field.
    `extra`: more template namespaces (an onGiveUp request's `last`); `overrides`: a next
    page's values, laid over the rendered fields; `warnings` gets what is suspicious but sent
    anyway (an unused pathParams entry)."""
    where, over = spec.where, overrides or {}
    url = render(spec.url, config, f"{where}.url", extra)
    if not isinstance(url, str):
        raise TemplateError(f"{where}.url: the template gave {type(url).__name__}, not a string")
    path_params = render(dict(spec.path_params), config, f"{where}.pathParams", extra)
    url, unused = _fill_path(url, path_params, where)
    if warnings is not None:
        warnings.extend(unused_param_warning(where, name) for name in unused)
    query = _laid_over(
        render(dict(spec.query_params), config, f"{where}.queryParams", extra),
        over.get("queryParams"),
    )
    auth = Credentials() if spec.auth is None else render_auth(spec.auth, config, extra)
    _no_clash(query, auth.query, f"{where}.queryParams", spec)
    url = _append_query(url, {**query, **dict(auth.query)})
    _check_url(url, where)
    rendered_headers = render(dict(spec.headers), config, f"{where}.headers", extra)
    headers = _headers(_laid_over(rendered_headers, over.get("headers"), fold=True), where)
    _no_clash(dict(headers), auth.headers, f"{where}.headers", spec)
    headers.extend(auth.headers)
    body = None
    if spec.has_body or over.get("body"):
        content = render(spec.body, config, f"{where}.body", extra) if spec.has_body else {}
        body, content_type = _encode_body(_body_over(content, over.get("body"), spec), headers)
        if content_type and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", content_type))
    return RenderedRequest(
        spec.method, url, tuple(headers), body, spec.timeout, where, secrets=auth.secrets
    )


def render_auth(
    spec: AuthSpec,
    config: Mapping[str, Any],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Credentials:
    """An `authentication` with its templates filled: the header or query parameter it adds
    (basic, bearer, apikey) or the oauth2 client whose token the call fetches."""
    values = {
        key: _auth_text(render(value, config, f"{spec.where}.{key}", extra), spec, key)
        for key, value in spec.fields.items()
    }
    if spec.type == BASIC:
        user_pass = f"{values['username']}:{values['password']}".encode()
        header = "Basic " + base64.b64encode(user_pass).decode("ascii")
        return Credentials(
            headers=(("Authorization", header),), secrets=(values["password"], header)
        )
    if spec.type == BEARER:
        header = f"Bearer {values['token']}"
        return Credentials(headers=(("Authorization", header),), secrets=(values["token"], header))
    if spec.type == APIKEY:
        pair = ((spec.key_name, values["apiKey"]),)
        if spec.location == "query":
            return Credentials(query=pair, secrets=(values["apiKey"],))
        return Credentials(headers=pair, secrets=(values["apiKey"],))
    assert spec.type == OAUTH2
    _check_url(values["tokenUrl"], f"{spec.where}.tokenUrl", "tokenUrl")
    client = OAuthClient(
        values["tokenUrl"],
        values["clientId"],
        values["clientSecret"],
        values.get("scope"),
        values.get("audience"),
        spec.client_auth,
        spec.where,
    )
    return Credentials(secrets=(values["clientSecret"],), oauth=client)


def _auth_text(value: Any, spec: AuthSpec, key: str) -> str:
    """A rendered credential as text; a template that gave no usable value is named, its
    value never shown."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return to_text(value)
    raise TemplateError(
        f"{spec.where}.{key}: the template gave {type(value).__name__}, not a non-empty string"
    )


def _no_clash(
    given: Mapping[str, Any], added: tuple[tuple[str, str], ...], where: str, spec: RequestSpec
) -> None:
    """`authentication` and the request's own fields may not both set one header/parameter."""
    names = {str(k).lower() for k in given}
    for name, _ in added:
        if name.lower() in names:
            raise DefinitionError(
                f"{where}.{name}: the request sets it and {spec.where}.authentication sets it "
                "too; keep one"
            )


def _laid_over(
    own: Mapping[str, Any], over: Mapping[str, Any] | None, fold: bool = False
) -> dict[str, Any]:
    """`own` with `over`'s values in place of its (a None removes the field); `fold`: names
    match without case, as header names do."""
    result = dict(own)
    for name, value in (over or {}).items():
        if fold:
            for key in [k for k in result if str(k).lower() == name.lower()]:
                del result[key]
        else:
            result.pop(name, None)
        if value is not None:
            result[name] = value
    return result


def _body_over(body: Any, over: Mapping[str, Any] | None, spec: RequestSpec) -> Any:
    if not over:
        return body
    if not isinstance(body, Mapping):
        raise DefinitionError(
            f"{spec.where}.pagination.next.body: the request's body must be an object for "
            f"its fields to change from page to page, not {type(body).__name__}"
        )
    return _laid_over(body, over)


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


def _check_url(url: str, where: str, name: str = "url") -> None:
    at = where if name != "url" else f"{where}.url"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:  # e.g. 'http://[' : an unclosed IPv6 literal
        raise DefinitionError(f"{at}: {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise DefinitionError(f"{at}: {url!r} is not an absolute http(s) URL")
    if any(c in url for c in " \r\n\t"):
        raise DefinitionError(f"{at}: the URL contains white space; encode it")


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
