"""`followResultUrl`: fetch a large result its pointer names, and put it in the pointer's place.

Once a request (or its poll) has succeeded, the value at the request's `followResultUrl` in the
final body is looked at. A pointer, `{"is_url": true, "url": "..."}` (seed 004's shape), is
fetched — a GET of its URL, resolved against the request's URL, with the request's `timeout`
per attempt and its `retry` policy, read under `limits.maxResponseBytes` like any response —
and the JSON it serves replaces the pointer. Anything else (a small result inline) is left as
it is. A fetch that fails is a ResultFetchFailed naming the request and the URL, masked.

Credentials go only where they were meant to: the request's headers are sent to a result URL
on the request's own origin (scheme, host, port); to any other origin (a presigned storage URL)
every credential-looking header is dropped, as a browser drops them on a cross-origin redirect.
A presigned URL carries its own credentials in its query (`X-Amz-Signature`, `token`, ...):
those values are registered as the run's secrets before the URL shows up anywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

from lamrunner.errors import ResultFetchFailed, TransportError
from lamrunner.http.request import RenderedRequest
from lamrunner.http.transport import Response, excerpt
from lamrunner.jsonpath import NOTHING, Query, write
from lamrunner.logs.masking import SECRET_NAME, Secrets

# what a pointer's fetch does not inherit from the request: its body's headers, its key
_NOT_INHERITED = frozenset(
    {"content-type", "content-length", "content-encoding", "idempotency-key"}
)
_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})

# send(request) -> (response, error, requests sent): the request's own send, retry included
Send = Callable[[RenderedRequest], Awaitable[tuple[Response | None, TransportError | None, int]]]


@dataclass(frozen=True)
class Pointer:
    """A pointer found in a final body: the URL as it was written, and resolved."""

    written: str
    url: str


def find_pointer(body: Any, query: Query, base_url: str) -> Pointer | None:
    """The pointer at `query` in `body`, or None when the value there is anything else (a
    small result inline, nothing at all). A relative URL resolves against `base_url`."""
    value = body if not query.location() else query.first(body, NOTHING)
    if not isinstance(value, dict) or value.get("is_url") is not True:
        return None
    written = value.get("url")
    if not isinstance(written, str) or not written.strip():
        return None
    return Pointer(written, urljoin(base_url, written.strip()))


def register_url_secrets(secrets: Secrets, url: str) -> None:
    """A presigned URL's credentials (query values under key-like names) are secrets."""
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=False):
        if SECRET_NAME.search(name):
            secrets.add(value)


def result_request(base: RenderedRequest, url: str) -> RenderedRequest:
    """The GET of a result URL: the request's headers (not its body's), its credentials only
    when `url` is on the request's origin; its timeout; its secrets to mask."""
    same = _origin(url) == _origin(base.url)
    headers = tuple(
        (name, value)
        for name, value in base.headers
        if name.lower() not in _NOT_INHERITED and (same or not _credential(name))
    )
    secrets = base.secrets if same else ()
    return RenderedRequest("GET", url, headers, None, base.timeout, base.where, secrets)


async def fetch_result(
    pointer: Pointer,
    request: RenderedRequest,
    send: Send,
    secrets: Secrets,
    now: Callable[[], float],
) -> tuple[Any, dict[str, Any]]:
    """The JSON the pointer names, and what the GWO's `http.resultUrl` says of its fetch:
    `{url (masked), status, bytes, attempts, durationMs}`. Raises ResultFetchFailed."""
    register_url_secrets(secrets, pointer.url)
    shown = secrets.mask(pointer.url)
    if urlsplit(pointer.url).scheme not in ("http", "https"):
        raise ResultFetchFailed(
            f"{request.where}.followResultUrl: the result pointer's url {shown!r} is not an "
            "http(s) URL",
            kind="url",
        )
    started = now()
    response, error, sent = await send(request)
    after = f" after {sent} attempts" if sent > 1 else ""
    where = f"{request.where}.followResultUrl: GET {shown}"
    if error is not None:
        raise ResultFetchFailed(
            secrets.mask(f"{where} failed{after}: {error.message}"), kind=error.kind, attempts=sent
        )
    assert response is not None
    if response.status >= 300:
        raise ResultFetchFailed(
            secrets.mask(
                f"{where} answered {response.status}{after}: {excerpt(response.text, 160)}"
            ),
            kind="status",
            status=response.status,
            attempts=sent,
        )
    value = _parsed(response, where, secrets, sent)
    info = {
        "url": shown,
        "status": response.status,
        "bytes": response.size,
        "attempts": sent,
        "durationMs": max(0, round((now() - started) * 1000)),
    }
    return value, info


def put_result(body: Any, query: Query, value: Any) -> Any:
    """`body` with `value` at `query` (the pointer's place); the root `$` is the whole body."""
    if not query.location():
        return value
    write(body, query, value)
    return body


def _parsed(response: Response, where: str, secrets: Secrets, sent: int) -> Any:
    """The result as JSON, whatever its Content-Type says (storage often serves JSON as
    application/octet-stream); an empty or non-JSON body fails the step."""
    as_json = response if response.is_json else _as_json(response)
    try:
        if not response.text.strip():
            raise TransportError("the body is empty", kind="protocol")
        return as_json.value
    except TransportError as exc:
        raise ResultFetchFailed(
            secrets.mask(f"{where} did not serve JSON: {exc.message}"),
            kind="not_json",
            status=response.status,
            attempts=sent,
        ) from None


def _as_json(response: Response) -> Response:
    """The same answer read as JSON (its text shared, not copied)."""
    same = Response(response.status, response.headers, response.text, True, response.elapsed)
    same.size = response.size
    return same


def _credential(name: str) -> bool:
    lowered = name.lower()
    return lowered in _CREDENTIALS or bool(SECRET_NAME.search(lowered))


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname, port
