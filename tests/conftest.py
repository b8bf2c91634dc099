"""Shared fixtures: a scriptable HTTP API on 127.0.0.1 and helpers to write and run workflows."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import textwrap
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.runner.engine import Engine


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    at: float  # loop.time() when the request arrived
    peer: Any = None  # client (host, port): the same port means a reused connection


class ScriptedAPI:
    """A real aiohttp server whose answers each test scripts, per (method, path).

    `api.script("GET", "/job", Reply(...), Reply(...))` queues replies; the last one repeats.
    Every request is recorded in `api.seen`.
    """

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], deque[Reply]] = defaultdict(deque)
        self.seen: list[Seen] = []
        self.url = ""
        self.in_flight = 0
        self.max_in_flight = 0

    def script(self, method: str, path: str, *replies: Reply) -> None:
        self.replies[(method.upper(), path)].extend(replies)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(
            Seen(
                request.method,
                request.path,
                list(request.query.items()),
                dict(request.headers),
                body,
                asyncio.get_running_loop().time(),
                peer,
            )
        )
        queue = self.replies.get((request.method, request.path))
        if not queue:
            return web.json_response({"error": "not scripted"}, status=404)
        reply = queue.popleft() if len(queue) > 1 else queue[0]
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.text is not None:
            return web.Response(status=reply.status, text=reply.text, headers=reply.headers)
        if reply.json is None:
            return web.Response(status=reply.status, headers=reply.headers)
        return web.json_response(reply.json, status=reply.status, headers=reply.headers)


# -- the user's home is never touched ---------------------------------------------------------

PRIVATE_ENV = ("HOME", "XDG_STATE_HOME", "LAMRUNNER_STORE")
_saved_env: dict[str, str | None] = {}
_private_root: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """Before any fixture (module- and session-scoped ones included) and any subprocess: HOME,
    XDG_STATE_HOME and LAMRUNNER_STORE point into one temporary folder for the whole session,
    so no run a test starts can checkpoint into ~/.local/state/lamrunner/runs.sqlite3."""
    root = Path(tempfile.mkdtemp(prefix="lamrunner-tests-"))
    (root / "home").mkdir()
    _private_root.append(root)
    _saved_env.update({name: os.environ.get(name) for name in PRIVATE_ENV})
    os.environ["HOME"] = str(root / "home")
    os.environ["XDG_STATE_HOME"] = str(root / "state")
    os.environ["LAMRUNNER_STORE"] = str(root / "session-runs.sqlite3")
    # Made once here, as a user's store exists before their runs: module fixtures start many
    # CLI processes on it at once, and a fresh store's column upgrade is not yet safe to race.
    from lamrunner.store.sqlite import RunStore

    RunStore(root / "session-runs.sqlite3").close()


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for root in _private_root:
        shutil.rmtree(root, ignore_errors=True)
    _private_root.clear()


@pytest.fixture(autouse=True)
def private_run_store(tmp_path, monkeypatch):
    """Runs started by tests (and their subprocesses) checkpoint into the test's own store."""
    monkeypatch.setenv("LAMRUNNER_STORE", str(tmp_path / "runs.sqlite3"))


@pytest.fixture
async def api():
    scripted = ScriptedAPI()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scripted.url = f"http://127.0.0.1:{port}"
    yield scripted
    await runner.cleanup()


class WorkflowDir:
    """Writes handlers and a workflow file into a temp folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def handler(self, name: str, source: str) -> str:
        (self.root / name).write_text(textwrap.dedent(source).lstrip())
        return name

    def workflow(
        self,
        steps: list[str | dict[str, Any]],
        config: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        name: str = "test-flow",
    ) -> Path:
        doc: dict[str, Any] = {
            "name": name,
            "config": config or {},
            "steps": [s if isinstance(s, dict) else {"handler": s} for s in steps],
        }
        if limits:
            doc["limits"] = limits
        path = self.root / "workflow.yaml"
        path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
        return path

    def py_step(self, name: str, body: str) -> str:
        """A Python handler whose transform returns `body` (an expression over data)."""
        return self.handler(f"{name}.py", f"def transform(data):\n    return {body}\n")

    def request_step(self, name: str, request: dict[str, Any]) -> str:
        """A Python handler returning one lam.httpRequest built from `request` (JSON)."""
        literal = json.dumps({"lam.httpRequest": request})
        return self.handler(
            f"{name}.py",
            f"import json\n\ndef transform(data):\n    return json.loads({literal!r})\n",
        )


@pytest.fixture
def wf(tmp_path: Path) -> WorkflowDir:
    return WorkflowDir(tmp_path)


async def run_path(
    path: Path, input_data: Any = None, sets: tuple[str, ...] = (), **engine_options: Any
) -> dict[str, Any]:
    workflow = load_workflow(path, env={})
    config = build_config(workflow.config, (), sets, {})
    return await Engine(workflow, config, **engine_options).run(input_data)
