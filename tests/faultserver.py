"""A misbehaving HTTP/1.1 server on 127.0.0.1, written on raw asyncio streams.

aiohttp's own server is too well behaved to reset a connection half way through the headers or
to stall forever, so this one speaks HTTP by hand. The fault is chosen by the URL path:

    /reset              status line and some headers, then a TCP RST (SO_LINGER 0)
    /reset-body         complete headers (Content-Length 100), 10 bytes of body, then a TCP RST
    /stall              reads the request and never answers (until the client gives up)
    /drip               headers with Content-Length, then the body one byte every `drip_interval`
    /huge               a `huge_bytes` body with Content-Length declared
    /huge-chunked       the same body, chunked, no length
    /badjson            Content-Type: application/json with a body that is not JSON
    /burst5xx?n=K       the first K hits answer 503 (`&status=500` for 500), then 200 JSON
    /429s?n=K           the first K hits answer 429 with `Retry-After: 1`, then 200 JSON
    /429date?n=K        the same with `Retry-After: <HTTP date 1-2 s ahead>`
    /redirect-loop      302 to itself, forever
    /redirect-chain?n=K 302 to `?n=K-1`, ..., and `?n=0` answers 200 JSON: exactly K redirects
    /ok?delay=S         200 `{"state": "done"}`, after S seconds

Every request is recorded (path → arrival times, `loop.time()`), so a test can assert how many
requests arrived and when. Per-path state (the burst counters) is cleared by `reset()`;
`settle()` waits for the clients to close their connections and says how many are still open.
`closed_port_url()` gives a URL nobody listens on, for "connection refused".

    async with FaultServer() as server:
        url = server.url("/burst5xx?n=2")
        ...
        assert server.hits("/burst5xx") == 3
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import math
import socket
import struct
import time
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

DONE = {"state": "done"}
_REASONS = {
    200: "OK",
    302: "Found",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def closed_port_url(path: str = "/refuse") -> str:
    """A URL on 127.0.0.1 whose port was just closed: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


class _Close(Exception):
    """Raised by a fault to end the connection without a keep-alive loop."""


class FaultServer:
    def __init__(
        self,
        *,
        drip_interval: float = 0.05,
        drip_bytes: int = 200,
        huge_bytes: int = 2 * 1000 * 1000,
    ) -> None:
        self.drip_interval = drip_interval
        self.drip_bytes = drip_bytes
        self.huge_bytes = huge_bytes
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self._served: dict[str, int] = defaultdict(int)  # per-path state for the burst faults
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.base = ""

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FaultServer:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # -- for tests ---------------------------------------------------------------------------

    def url(self, path_and_query: str) -> str:
        return self.base + path_and_query

    def hits(self, path: str) -> int:
        return len(self.arrivals.get(path, []))

    def gaps(self, path: str) -> list[float]:
        times = self.arrivals.get(path, [])
        return [b - a for a, b in itertools.pairwise(times)]

    @property
    def open_connections(self) -> int:
        return len(self._tasks)

    async def settle(self, within: float = 1.0) -> int:
        """Wait until every client connection is closed (or `within` passes); how many are left."""
        loop = asyncio.get_running_loop()
        until = loop.time() + within
        while self._tasks and loop.time() < until:  # noqa: ASYNC110 - a deadline; no close event
            await asyncio.sleep(0.01)
        return len(self._tasks)

    def reset(self) -> None:
        """Forget every hit and every burst counter."""
        self.arrivals.clear()
        self._served.clear()

    # -- the wire ----------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:  # keep-alive: one request after another on this connection
                request = await _read_request(reader)
                if request is None:
                    break
                target, _ = request
                parts = urlsplit(target)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                self.arrivals[parts.path].append(asyncio.get_running_loop().time())
                await self._dispatch(parts.path, query, reader, writer)
        except (_Close, ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _dispatch(
        self,
        path: str,
        query: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if path == "/ok":
            await asyncio.sleep(float(query.get("delay", 0)))
            await _send(writer, 200, json.dumps(DONE).encode())
        elif path == "/reset":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
            )  # the blank line never comes
            await writer.drain()
            await asyncio.sleep(0.02)  # let the client read the partial headers first
            _rst(writer)
        elif path == "/reset-body":
            writer.write(
                _head(200, {"Content-Type": "application/json", "Content-Length": "100"})
                + b'{"state": '
            )
            await writer.drain()
            await asyncio.sleep(0.02)
            _rst(writer)
        elif path == "/stall":
            await reader.read()  # until the client hangs up (EOF) or the server stops
            raise _Close
        elif path == "/drip":
            head = _head(
                200, {"Content-Type": "application/json", "Content-Length": str(self.drip_bytes)}
            )
            writer.write(head)
            await writer.drain()
            for _ in range(self.drip_bytes):
                await asyncio.sleep(self.drip_interval)
                writer.write(b" ")
                await writer.drain()
            raise _Close
        elif path == "/huge":
            writer.write(
                _head(200, {"Content-Type": "text/plain", "Content-Length": str(self.huge_bytes)})
            )
            await self._stream_huge(writer, chunked=False)
        elif path == "/huge-chunked":
            writer.write(_head(200, {"Content-Type": "text/plain", "Transfer-Encoding": "chunked"}))
            await self._stream_huge(writer, chunked=True)
        elif path == "/badjson":
            await _send(writer, 200, b'{"state": "done", oops', content_type="application/json")
        elif path == "/burst5xx":
            status = int(query.get("status", 503))
            if self._burst(path, query):
                await _send(writer, status, json.dumps({"error": "busy"}).encode())
            else:
                await _send(writer, 200, json.dumps(DONE).encode())
        elif path in ("/429s", "/429date"):
            if self._burst(path, query):
                if path == "/429s":
                    after = "1"
                else:  # whole seconds only: a date 1 to 2 s ahead of now
                    after = email.utils.formatdate(math.floor(time.time()) + 2, usegmt=True)
                await _send(
                    writer,
                    429,
                    json.dumps({"error": "slow down"}).encode(),
                    extra={"Retry-After": after},
                )
            else:
                await _send(writer, 200, json.dumps(DONE).encode())
        elif path == "/redirect-loop":
            await _send(writer, 302, b"", extra={"Location": "/redirect-loop"})
        elif path == "/redirect-chain":
            left = int(query.get("n", 1))
            if left > 0:
                await _send(writer, 302, b"", extra={"Location": f"/redirect-chain?n={left - 1}"})
            else:
                await _send(writer, 200, json.dumps(DONE).encode())
        else:
            await _send(writer, 404, json.dumps({"error": f"no fault {path}"}).encode())

    def _burst(self, path: str, query: dict[str, str]) -> bool:
        """True while this path is still inside its burst of K failing answers."""
        self._served[path] += 1
        return self._served[path] <= int(query.get("n", 1))

    async def _stream_huge(self, writer: asyncio.StreamWriter, *, chunked: bool) -> None:
        block = b"x" * 65536
        left = self.huge_bytes
        while left > 0:
            piece = block[: min(left, len(block))]
            left -= len(piece)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets an RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    raise _Close


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]] | None:
    """(target, headers) of the next request, or None at a clean EOF. The body is discarded."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    _method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", 0) or 0)
    if length:
        await reader.readexactly(length)
    return target, headers


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json",
    extra: dict[str, str] | None = None,
) -> None:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(extra or {})}
    writer.write(_head(status, headers) + body)
    await writer.drain()
