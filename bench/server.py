"""The target server: HTTP/1.1 keep-alive on a raw `asyncio.Protocol`, N worker processes on one
127.0.0.1 port (SO_REUSEPORT), uvloop when it is importable.

Every request is answered at once with a fixed small JSON (`{"status":"running","id":"j1"}`),
or with a JSON of about n bytes for `GET /body/<n>`. Parsing is the minimum that is still
correct HTTP/1.1 framing: request line, headers, a Content-Length body, pipelining, and
`Connection: close`. Each worker counts its requests and CPU time and reports them on its
control pipe (stdin: the line `stats` → one JSON line on stdout); EOF on stdin, or its lifetime
running out, stops it. `ServerPool` (used by the bench) starts and stops the workers.

    python -m bench.server --port PORT [--lifetime SECONDS] [--no-uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Self

BODY = b'{"status":"running","id":"j1"}'
MAX_HEAD = 64 * 1024
MAX_BODY_ROUTE = 50_000_000
_cache: dict[bytes, bytes] = {}


def _reply(path: bytes) -> bytes:
    cached = _cache.get(path)
    if cached is not None:
        return cached
    body = BODY
    if path.startswith(b"/body/") and path[6:].isdigit():
        size = min(int(path[6:]), MAX_BODY_ROUTE)
        head = b'{"status":"completed","id":"j1","data":"'
        body = head + b"x" * max(0, size - len(head) - 2) + b'"}'
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    if len(_cache) < 64:
        _cache[path] = reply
    return reply


class HttpProtocol(asyncio.Protocol):
    def __init__(self, stats: dict[str, int]) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self._close()
                return
            lines = bytes(buffer[:end]).split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self._close()
                return
            length, close = 0, parts[2] == b"HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if len(buffer) < end + 4 + length:
                return
            del buffer[: end + 4 + length]
            self.stats["requests"] += 1
            assert self.transport is not None
            self.transport.write(_reply(parts[1]))
            if close:
                self._close()
                return

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(port: int, lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    stats = {"requests": 0}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    server = await loop.create_server(lambda: HttpProtocol(stats), sock=sock)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": port, "loop": type(loop).__module__.split(".")[0]}), flush=True)

    async def control() -> None:
        while line := await reader.readline():  # EOF: the bench is done (or gone)
            if line.strip() == b"stats":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                cpu = usage.ru_utime + usage.ru_stime
                print(json.dumps({"requests": stats["requests"], "cpu": cpu}), flush=True)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(control(), lifetime)
    server.close()


class ServerPool:
    """`with ServerPool(2) as pool:` N workers on one free 127.0.0.1 port; `pool.url`."""

    def __init__(self, workers: int = 2, lifetime: float = 1800.0, uvloop: bool = True) -> None:
        self.workers, self.lifetime, self.uvloop = workers, lifetime, uvloop
        self.procs: list[subprocess.Popen[str]] = []
        self.url, self.loop = "", ""

    def __enter__(self) -> Self:
        # Hold the port (bound, not listening: it gets no connections) until the workers listen.
        reserve = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserve.bind(("127.0.0.1", 0))
        port = reserve.getsockname()[1]
        cmd = [
            sys.executable,
            "-m",
            "bench.server",
            "--port",
            str(port),
            "--lifetime",
            str(self.lifetime),
        ] + ([] if self.uvloop else ["--no-uvloop"])
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        try:
            for _ in range(self.workers):
                self.procs.append(
                    subprocess.Popen(
                        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
                    )
                )
            for proc in self.procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError("a bench server worker did not start")
                self.loop = json.loads(line)["loop"]
        except BaseException:
            self.__exit__()
            raise
        finally:
            reserve.close()
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stats(self) -> tuple[int, float]:
        """(requests served, CPU seconds used) summed over the workers, since they started."""
        requests, cpu = 0, 0.0
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("stats\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            requests, cpu = requests + answer["requests"], cpu + answer["cpu"]
        return requests, cpu

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs = []


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lifetime", type=float, default=1800.0, help="stop after this long")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    try:
        if args.no_uvloop:
            raise ImportError
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, args.lifetime))
    else:
        uvloop.run(serve(args.port, args.lifetime))


if __name__ == "__main__":
    main()
