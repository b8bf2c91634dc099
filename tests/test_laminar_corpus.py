"""Laminar-shaped programs run unchanged through `lamrunner run`, each against a local server.

Every folder under tests/laminar/ is one case: a workflow file (`workflow.yaml`), its handlers,
and `case.yaml`, which says what the server answers, what the command is given, and what a user
must see: the requests sent, in order, and the run record. The server is a real aiohttp server on
127.0.0.1 in a background thread; the command is a real `python -m lamrunner run` subprocess
whose environment carries `LAMINAR_API` (the server's base URL) for the workflow's config.

case.yaml:

    about: what Laminar feature this shows (and where Laminar documents it)
    input: {...}                      # the workflow input (--input as JSON); default {}
    args: [--config, extra.yaml]      # more command-line arguments, relative to the case folder
    env: {NAME: value}                # more environment (LAMINAR_API is always set)
    workflow: child.yaml              # the file to run, when it is not workflow.yaml
    server:                           # replies per "METHOD /path" (or "METHOD /path?query"),
      "POST /jobs":                   # in order; the last one repeats
        - {status: 202, json: {...}, headers: {...}}
        - {echo: true}                # answers {method, path, query, headers, json} of the request
        - {json: {...}, in_flight: 2} # answered once 2 requests were in flight at once (a 504
                                      # after 10 s if they never were): proves concurrency
    expect:
      exit: 0                         # default 0 (1 when status is FAILED)
      status: SUCCESS                 # the record's status
      result: {...}                   # the record's result, exactly
      error_contains: [..]            # fragments of the record's error (message and fields)
      requests_in_any_order: true     # for a batch, whose requests race (default: in order)
      requests:                       # every request the server saw, in order; each entry
        - {method: POST, path: /jobs, # checks what it names: query (exact, as a dict), json
           json: {...},               # (the body, exactly), form (a urlencoded body as a
           headers: {X-Key: abc}}     # dict), headers (these ones, values exact)
      stderr_contains: [..]           # e.g. a warning's text
      never_shown: [s3cr3t]           # strings that must appear in neither stdout nor stderr,
                                      # nor in the run store (each case has its own SQLite file)
                                      # unless the case's input holds them (kept for resume)
      sub_workflows:                  # the record's subWorkflows, in order: each entry checks
        - {workflowId: 39, status: SUCCESS, mode: execute}   # the keys it names (and a runId)
      route:                          # the record's route (docs/declarative-steps.md), in order: each
        - {step: poll, left: action.next, to: done}          # entry checks the keys it names
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "laminar"
TRACEBACK = "Traceback (most recent call last)"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.yaml").is_file())


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class CaseServer:
    """Answers from a case's `server:` table; records every request."""

    table: dict[str, list[dict[str, Any]]]
    seen: list[Seen] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    peak: int = 0  # the most requests in flight at once so far

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path, dict(request.query), dict(request.headers), body)
        self.seen.append(seen)
        key = self._key(request)
        if key is None:
            return web.json_response(
                {"error": f"{request.method} {request.path_qs} is not in case.yaml"}, status=404
            )
        replies = self.table[key]
        index = min(self.served.get(key, 0), len(replies) - 1)
        self.served[key] = self.served.get(key, 0) + 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            want = int(replies[index].get("in_flight", 0))
            for _ in range(1000):  # 10 s
                if self.peak >= want:
                    return _reply(replies[index], seen)
                await asyncio.sleep(0.01)
            return web.json_response(
                {"error": f"at most {self.peak} requests were in flight at once, not {want}"},
                status=504,
            )
        finally:
            self.in_flight -= 1

    def _key(self, request: web.Request) -> str | None:
        with_query = f"{request.method} {request.path_qs}"
        plain = f"{request.method} {request.path}"
        for key in (with_query, plain):
            if key in self.table:
                return key
        return None


def _reply(reply: dict[str, Any], seen: Seen) -> web.StreamResponse:
    status = int(reply.get("status", 200))
    headers = {str(k): str(v) for k, v in (reply.get("headers") or {}).items()}
    if reply.get("echo"):
        return web.json_response(
            {
                "method": seen.method,
                "path": seen.path,
                "query": seen.query,
                "headers": seen.headers,
                "json": _json_or_none(seen.body),
            },
            status=status,
            headers=headers,
        )
    if "text" in reply:
        return web.Response(status=status, text=str(reply["text"]), headers=headers)
    if "json" in reply:
        return web.json_response(reply["json"], status=status, headers=headers)
    return web.Response(status=status, headers=headers)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


@pytest.fixture
def serve() -> Iterator[Any]:
    """Starts a CaseServer in a background thread (the CLI subprocess blocks the test's thread)."""
    yield from case_servers()


def case_servers() -> Iterator[Any]:
    """The `serve` fixture's body (other test modules make their fixture of it): yields
    `start(server) -> base URL`, and stops every server started when resumed."""
    started: list[tuple[asyncio.AbstractEventLoop, web.AppRunner, threading.Thread]] = []

    def start(server: CaseServer) -> str:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        state: dict[str, Any] = {}

        async def boot() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", server.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            state["runner"] = runner
            state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(boot())
            finally:
                ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="laminar-case-api", daemon=True)
        thread.start()
        assert ready.wait(15) and "url" in state, "the case server did not start"
        started.append((loop, state["runner"], thread))
        return str(state["url"])

    yield start
    for loop, runner, thread in started:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        loop.close()


def _run_cli(
    folder: Path, case: dict[str, Any], url: str, store: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["LAMRUNNER_STORE"] = str(store)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["LAMINAR_API"] = url
    env.update({str(k): str(v) for k, v in (case.get("env") or {}).items()})
    args = [
        "run",
        str(folder / case.get("workflow", "workflow.yaml")),
        "--input",
        json.dumps(case.get("input", {})),
        *[str(a) for a in case.get("args", [])],
    ]
    return subprocess.run(
        [sys.executable, "-m", "lamrunner", *args],
        cwd=folder,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        encoding="utf-8",
    )


def _check_request(index: int, seen: Seen, want: dict[str, Any]) -> None:
    where = f"request {index + 1} ({seen.method} {seen.path})"
    assert seen.method == want.get("method", seen.method), where
    assert seen.path == want.get("path", seen.path), where
    if "query" in want:
        assert seen.query == {k: str(v) for k, v in want["query"].items()}, where
    if "json" in want:
        assert _json_or_none(seen.body) == want["json"], where
    if "form" in want:
        assert dict(parse_qsl(seen.body.decode())) == want["form"], where
    for name, value in (want.get("headers") or {}).items():
        assert seen.headers.get(name) == str(value), f"{where}: header {name}"
    for name in want.get("headers_absent") or []:
        assert name not in seen.headers, f"{where}: header {name} should not be sent"


def _match_any_order(seen: list[Seen], wants: list[dict[str, Any]], shown: str) -> None:
    """Each expected request matches a different request sent, whatever the order."""
    left = list(enumerate(seen))
    for want in wants:
        for position, (index, candidate) in enumerate(left):
            try:
                _check_request(index, candidate, want)
            except AssertionError:
                continue
            del left[position]
            break
        else:
            raise AssertionError(f"no request sent matches {want}\n{shown}")


def test_there_is_a_corpus() -> None:
    assert len(CASES) >= 1


@pytest.mark.parametrize("name", CASES)
def test_laminar_program_runs_unchanged(name: str, serve: Any, tmp_path: Path) -> None:
    folder = CORPUS / name
    case = yaml.safe_load((folder / "case.yaml").read_text())
    server = CaseServer({str(k): list(v) for k, v in (case.get("server") or {}).items()})
    store = tmp_path / "runs.sqlite3"
    proc = _run_cli(folder, case, serve(server), store)
    shown = f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    expect = case.get("expect") or {}
    assert TRACEBACK not in proc.stdout + proc.stderr, shown
    record = json.loads(proc.stdout)
    status = expect.get("status", "SUCCESS")
    assert record["status"] == status, shown
    assert proc.returncode == expect.get("exit", 1 if status == "FAILED" else 0), shown
    if "result" in expect:
        assert record["result"] == expect["result"], shown
    error_text = json.dumps(record.get("error"))
    for fragment in expect.get("error_contains") or []:
        assert fragment in error_text, shown
    if "requests" in expect:
        sent = [f"{s.method} {s.path} {s.query}" for s in server.seen]
        assert len(server.seen) == len(expect["requests"]), f"sent {sent}\n{shown}"
        if expect.get("requests_in_any_order"):  # a batch: its requests race each other
            _match_any_order(server.seen, expect["requests"], shown)
        else:
            for index, (seen, want) in enumerate(zip(server.seen, expect["requests"], strict=True)):
                _check_request(index, seen, want)
    for fragment in expect.get("stderr_contains") or []:
        assert fragment in proc.stderr, shown
    stored = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("runs.sqlite3*")))
    assert stored or proc.returncode == 2, "the run was not stored"  # 2: refused at load
    if "sub_workflows" in expect:
        listed = record.get("subWorkflows") or []
        assert len(listed) == len(expect["sub_workflows"]), shown
        for got, want in zip(listed, expect["sub_workflows"], strict=True):
            assert isinstance(got.get("runId"), str), shown
            assert {k: got.get(k) for k in want} == want, shown
    if "route" in expect:
        taken = record.get("route") or []
        assert len(taken) == len(expect["route"]), shown
        for got, want in zip(taken, expect["route"], strict=True):
            assert {k: got.get(k) for k in want} == want, shown
    given = json.dumps(case.get("input", {}))  # the caller's own input is stored as given, so
    for secret in expect.get("never_shown") or []:  # that a resumed run gets it back
        assert secret not in proc.stdout and secret not in proc.stderr, shown
        if secret not in given and json.dumps(secret)[1:-1] not in given:
            assert secret.encode() not in stored, f"{secret!r} is in the run store\n{shown}"
