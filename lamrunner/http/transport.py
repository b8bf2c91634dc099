"""HTTP on the wire: one `send` per attempt, and the one place aiohttp errors are translated.

`Transport` is the seam (tests swap in a double); `AiohttpTransport` is the real one: one
session per run, so connections are reused across polls, and a body cap that is enforced while
reading, so a 2 GB answer costs at most the cap in memory.
"""

from __future__ import annotations

import functools
import json
import re
import time
from typing import Any, Protocol

from lamrunner import defaults
from lamrunner.errors import TransportError
from lamrunner.http.netpolicy import BlockedAddress, is_blocked, refusal
from lamrunner.http.request import RenderedRequest
from lamrunner.units import format_duration, format_size

DEFAULT_MAX_RESPONSE_BYTES = defaults.MAX_RESPONSE_BYTES
_UNPARSED = object()
MAX_REDIRECTS = 10
_CHUNK = 1 << 16


class Response:
    """One HTTP answer. `text` is kept so JS can parse it once; `value` is parsed on demand.

    A plain class with slots: one is made per attempt, and a frozen dataclass costs more.
    """

    __slots__ = ("_value", "elapsed", "headers", "is_json", "size", "status", "text")

    def __init__(
        self, status: int, headers: dict[str, str], text: str, is_json: bool, elapsed: float
    ) -> None:
        self.status, self.headers, self.text = status, headers, text
        self.is_json, self.elapsed = is_json, elapsed
        self.size = len(text)  # bytes read off the wire (the transport sets it); else chars
        self._value: Any = _UNPARSED

    @property
    def value(self) -> Any:
        """The body: parsed JSON, text, or None when empty. Invalid JSON is a TransportError."""
        value = self._value
        if value is _UNPARSED:
            value = self._value = self._parse()
        return value

    def _parse(self) -> Any:
        text = self.text
        if not text.strip():
            return None
        if not self.is_json:
            return text
        try:
            return _decode(text)
        except ValueError as exc:
            raise TransportError(
                f"the response says it is JSON but is not ({exc}); body starts: "
                f"{excerpt(self.text, 120)}",
                kind="protocol",
            ) from None

    @property
    def json_text(self) -> str:
        """The body as JSON text without parsing it here: JSON bodies are passed as they are
        (whoever parses them reports invalid JSON), text bodies are encoded as strings."""
        if not self.text.strip():
            return "null"
        return self.text if self.is_json else json.dumps(self.text)


class Transport(Protocol):
    async def send(self, request: RenderedRequest, timeout: float) -> Response: ...


class AiohttpTransport:
    """The real transport. Use as `async with AiohttpTransport() as t:`."""

    def __init__(
        self,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allow_link_local: bool = False,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        self.allow_link_local = allow_link_local
        self._session: Any = None
        self._aiohttp: Any = None

    async def __aenter__(self) -> AiohttpTransport:
        import aiohttp

        self._aiohttp = aiohttp
        connector_class = aiohttp.TCPConnector if self.allow_link_local else _guarded_connector()
        connector = connector_class(limit=100, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, raise_for_status=False, trust_env=False
        )
        # aiohttp quietly re-sends an idempotent request once when a kept-alive connection
        # breaks; that would make `attempts` lie and bypass the workflow's retry policy.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: RenderedRequest, timeout: float) -> Response:
        aiohttp = self._aiohttp
        started = time.perf_counter()
        try:
            async with self._session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                timeout=_timeout(aiohttp, timeout),  # covers the body read too
                max_redirects=MAX_REDIRECTS + 1,  # aiohttp stops *at* the limit
            ) as resp:
                declared = resp.content_length
                if declared is not None and declared <= self.max_response_bytes:
                    raw = await resp.read()  # one read: the length is known and within the cap
                else:  # a chunked read, in a coroutine of its own (the rare case)
                    raw = await self._read(resp)
                return _response(resp, raw, time.perf_counter() - started)
        except TransportError:
            raise
        except TimeoutError:
            raise TransportError(
                f"no complete response within {format_duration(timeout)} (timeout)",
                kind="timeout",
            ) from None
        except aiohttp.TooManyRedirects as exc:
            raise TransportError(
                f"too many redirects (more than {MAX_REDIRECTS}); the last went to "
                f"{exc.request_info.real_url}",
                kind="protocol",
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise TransportError(
                f"the connection broke while the body was being read ({_root_reason(exc)})",
                kind="connection",
            ) from None
        except aiohttp.ClientResponseError as exc:
            raise TransportError(f"malformed response: {_reason(exc)}", kind="protocol") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                raise TransportError(str(exc.os_error), kind="blocked") from None
            raise TransportError(
                f"could not connect to {exc.host}:{exc.port}: {_reason(exc.os_error)}",
                kind="connection",
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"connection failed: {_reason(exc)}", kind="connection") from None

    async def _read(self, resp: Any) -> bytes:
        """A body of unknown length, read in chunks up to the cap (or one declared too long)."""
        cap = self.max_response_bytes
        declared = resp.content_length
        if declared is not None:
            raise _too_large(declared, cap)
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise _too_large(size, cap)
            chunks.append(chunk)
        return b"".join(chunks)


@functools.lru_cache(maxsize=64)
def _timeout(aiohttp: Any, seconds: float) -> Any:
    """One ClientTimeout per distinct value (they are immutable), not one per request."""
    return aiohttp.ClientTimeout(total=seconds)


def _guarded_connector() -> type:
    """A TCPConnector that refuses blocked addresses, whether literal, resolved or redirected."""
    import aiohttp

    class GuardedConnector(aiohttp.TCPConnector):
        async def _resolve_host(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
            results = await super()._resolve_host(host, port, *args, **kwargs)
            allowed = [r for r in results if not is_blocked(r["host"])]
            if not allowed:
                raise refusal(host, results[0]["host"] if results else host)
            return allowed

    return GuardedConnector


def _response(resp: Any, raw: bytes, elapsed: float) -> Response:
    raw_headers = resp.headers
    headers = {name.lower(): value for name, value in raw_headers.items()}
    if len(headers) < len(raw_headers):  # a repeated header: join its values, as HTTP allows
        headers = {}
        for name, value in raw_headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    content_type = headers.get("content-type", "").lower()
    text = raw.decode(resp.charset or "utf-8", errors="replace")
    is_json = "json" in content_type or (not content_type and text.lstrip()[:1] in ("{", "["))
    response = Response(resp.status, headers, text, is_json, elapsed)
    response.size = len(raw)
    return response


def excerpt(text: str, limit: int = 200) -> str:
    """The first `limit` characters of a body on one line, for error messages."""
    flat = " ".join(text[: limit * 4].split())  # never split a 10 MB body for 200 chars
    if len(flat) <= limit and len(text) <= limit * 4:
        return flat
    return flat[: limit - 1] + "…"


def _too_large(size: int, cap: int) -> TransportError:
    return TransportError(
        f"the response body is larger than {format_size(cap)} ({format_size(size)} so far); "
        "raise limits.maxResponseBytes if this is expected",
        kind="too_large",
    )


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


_OS_ERROR = re.compile(r"(Connection\w*Error|BrokenPipeError)\(\d+, '([^']+)'\)")


def _root_reason(exc: BaseException) -> str:
    """aiohttp's payload errors, readable: 'received 10 of 100 bytes; connection reset by peer'."""
    parts = []
    message = getattr(exc.__cause__, "message", None)
    if isinstance(message, str) and message:
        parts.append(message.rstrip("."))
    os_error = _OS_ERROR.search(str(exc))
    if os_error:
        parts.append(os_error.group(2).lower())
    return "; ".join(parts) or _reason(exc)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # one decoder, not one per body
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__
_JSON_SPACE = " \t\n\r"


def _decode(text: str) -> Any:
    """`_DECODER.decode(text)` without its Python wrapper (two regex matches and two calls,
    half the cost of parsing a small body): the C scanner, then a check for trailing data."""
    start = len(text) - len(text.lstrip(_JSON_SPACE)) if text[:1] in _JSON_SPACE else 0
    try:
        value, end = _SCAN(text, start)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if end != len(text):
        rest = text[end:]
        trailing = rest.lstrip(_JSON_SPACE)
        if trailing:
            raise json.JSONDecodeError("Extra data", text, end + len(rest) - len(trailing))
    return value
