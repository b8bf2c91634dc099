"""Bounded poll history (`loopUntil.history`): a poll keeps the rows of its first and last
attempts, counts every attempt, and its checkpoint stays the same size however long it runs."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Reply

from lamrunner.decide.history import elided, row_to_drop
from lamrunner.definition.config import build_config
from lamrunner.definition.directives import parse_directive
from lamrunner.definition.policies import HistoryWindow
from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.http.transport import Response
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import ElementState, RunState
from lamrunner.store.sqlite import RunStore


def test_the_window_keeps_the_first_and_the_last_attempts():
    window = HistoryWindow(first=2, last=3)
    drops = {n: row_to_drop(window, n) for n in range(1, 11)}
    assert drops == {1: None, 2: None, 3: None, 4: None, 5: None, 6: 3, 7: 4, 8: 5, 9: 6, 10: 7}
    kept = set(range(1, 11)) - {d for d in drops.values() if d is not None}
    assert kept == {1, 2, 8, 9, 10}
    assert elided(window, 10) == 5 and elided(window, 4) == 0


def test_the_default_window_is_5_and_50():
    assert HistoryWindow() == HistoryWindow(first=5, last=50)
    directive = parse_directive(
        {"lam.httpRequest": {"method": "GET", "url": "http://x", "loopUntil": {"condition": "1"}}}
    )
    assert directive.requests[0].loop.history == HistoryWindow(5, 50)  # type: ignore[union-attr]


def _loop(**history: Any) -> dict[str, Any]:
    loop = {"condition": "ctx.response.done", "history": history}
    return {"lam.httpRequest": {"method": "GET", "url": "http://x", "loopUntil": loop}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"frist": 1},
            r"lam\.httpRequest\.loopUntil\.history: unknown key 'frist' \(did you mean 'first'\?\)",
        ),
        ({"first": -1}, r"lam\.httpRequest\.loopUntil\.history\.first: expected a whole number"),
        ({"last": 0}, r"lam\.httpRequest\.loopUntil\.history\.last: expected a whole number >= 1"),
        ({"last": "50"}, r"lam\.httpRequest\.loopUntil\.history\.last: expected a whole number"),
    ],
)
def test_history_fields_are_checked(value, message):
    with pytest.raises(DefinitionError, match=message):
        parse_directive(_loop(**value))


def test_history_must_be_a_mapping():
    request = _loop()
    request["lam.httpRequest"]["loopUntil"]["history"] = 5
    with pytest.raises(DefinitionError, match=r"loopUntil\.history: expected a mapping"):
        parse_directive(request)


def test_a_bad_history_names_the_step(wf, tmp_path):
    bad = wf.request_step(
        "wait",
        {
            "method": "GET",
            "url": "http://127.0.0.1:9/x",
            "loopUntil": {"condition": "ctx.response.done", "history": {"firts": 3}},
        },
    )
    path = wf.workflow([{"name": "wait_for_job", "handler": bad}])
    record = asyncio_run(_run(path, RunStore(tmp_path / "s.sqlite3"), FakeClock()))
    assert record["error"]["type"] == "DefinitionError"
    assert record["error"]["step"] == "wait_for_job"
    assert "history: unknown key 'firts' (did you mean 'first'?)" in record["error"]["message"]


def asyncio_run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _run(path: Path, store: RunStore, clock: Any, **engine: Any) -> dict[str, Any]:
    workflow = load_workflow(path, env={})
    state = RunState.start(workflow.name, {})
    store.begin(state, {"workflow": str(path), "configFiles": [], "sets": []})
    config = build_config(workflow.config, (), (), {})
    return await Engine(workflow, config, clock=clock, observers=[store], **engine).resume(state)


def runs_show(run_id: str, store: Path) -> Any:
    """`lamrunner runs show RUN_ID` as a user runs it."""
    command = [sys.executable, "-m", "lamrunner", "runs", "show", run_id, "--store", str(store)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout)


async def test_a_long_poll_against_a_server_keeps_first_and_last_rows(api, wf, tmp_path):
    api.script(
        "GET", "/job", *[Reply(json={"state": "pending"})] * 11, Reply(json={"state": "done"})
    )
    handler = wf.request_step(
        "wait",
        {
            "method": "GET",
            "url": api.url + "/job",
            "loopUntil": {
                "condition": "ctx.response.state === 'done'",
                "maxAttempts": 20,
                "initialDelay": "1s",
                "history": {"first": 2, "last": 3},
            },
        },
    )
    path = wf.workflow([{"name": "wait_for_job", "handler": handler}])
    store_path = tmp_path / "h.sqlite3"
    store = RunStore(store_path)
    record = await _run(path, store, FakeClock())
    assert record["status"] == "SUCCESS"
    assert len(api.requests_to("/job")) == 12

    rows = store.attempts(record["runId"])
    assert [r["attempt"] for r in rows] == [1, 2, 10, 11, 12]
    assert rows[-1]["outcome"] == "success"
    assert store.poll_counts(record["runId"]) == [
        {
            "step": "step_1",
            "stepName": "wait_for_job",
            "element": 0,
            "attempts": 12,
            "rowsKept": 5,
            "elided": 7,
            "history": {"first": 2, "last": 3},
            "statuses": {"200": 12},
        }
    ]
    store.close()

    shown = await asyncio.to_thread(runs_show, record["runId"], store_path)
    assert [r["attempt"] for r in shown["polls"]] == [1, 2, 10, 11, 12]
    assert shown["pollCounts"][0]["elided"] == 7


class Pending:
    """A transport answering 'pending' until attempt `done_at`, then 'done', at once."""

    def __init__(self, done_at: int) -> None:
        self.done_at, self.sent = done_at, 0

    async def send(self, request: Any, timeout: float) -> Response:
        self.sent += 1
        state = "done" if self.sent >= self.done_at else "pending"
        status = 503 if self.sent % 1000 == 0 else 200
        body = json.dumps({"state": state, "n": self.sent})
        return Response(status, {"content-type": "application/json"}, body, True, 0.0)


class CheckpointSizes(RunObserver):
    """The size of every element checkpoint the run hands its observers, and every 500
    attempts the rows the store file holds (read as another process would)."""

    def __init__(self, store: Path) -> None:
        self.sizes: list[int] = []
        self.rows: list[int] = []
        self.store = store

    def save_element(self, state: RunState, index: int, entry: ElementState) -> None:
        self.sizes.append(len(json.dumps(entry.to_dict())))
        if len(self.sizes) % 500 == 0:
            with sqlite3.connect(self.store) as db:
                self.rows.append(db.execute("SELECT count(*) FROM attempts").fetchone()[0])


async def test_a_10000_attempt_poll_keeps_a_constant_size_state_and_at_most_first_plus_last_rows(
    wf, tmp_path
):
    attempts = 10_000
    handler = wf.request_step(
        "wait",
        {
            "method": "GET",
            "url": "http://127.0.0.1:9/job",
            "loopUntil": {
                "condition": "ctx.response.state === 'done'",
                "maxAttempts": attempts,
                "initialDelay": "30s",
            },
        },
    )
    path = wf.workflow([{"name": "wait_for_job", "handler": handler}])
    store_path = tmp_path / "long.sqlite3"
    store = RunStore(store_path)
    sizes = CheckpointSizes(store_path)
    workflow = load_workflow(path, env={})
    state = RunState.start(workflow.name, {})
    store.begin(state, {"workflow": str(path), "configFiles": [], "sets": []})
    transport = Pending(done_at=attempts)
    engine = Engine(workflow, {}, clock=FakeClock(), observers=[store, sizes], transport=transport)
    record = await engine.resume(state)

    assert record["status"] == "SUCCESS"
    assert transport.sent == attempts
    assert len(sizes.sizes) == attempts - 1  # one checkpoint per attempt another follows
    # the same fields at every attempt: only the digits of the counts and times may grow
    assert max(sizes.sizes) - sizes.sizes[99] <= 8
    assert len(sizes.rows) == 19 and max(sizes.rows) <= 5 + 50  # pruned as the poll goes
    rows = store.attempts(record["runId"])
    assert len(rows) == 5 + 50
    assert [r["attempt"] for r in rows] == [*range(1, 6), *range(attempts - 49, attempts + 1)]
    (counts,) = store.poll_counts(record["runId"])
    assert counts["attempts"] == attempts and counts["elided"] == attempts - 55
    assert counts["statuses"] == {"200": attempts - 10, "503": 10}
    store.close()
    with sqlite3.connect(store_path) as db:
        assert db.execute("SELECT count(*) FROM attempts").fetchone() == (55,)
        (saved,) = db.execute("SELECT state FROM runs").fetchone()
    assert len(saved) < 2_000  # the run's own state holds no per-attempt data either


def test_the_docs_state_the_default_window():
    text = (Path(__file__).resolve().parent.parent / "docs" / "polling-and-retry.md").read_text()
    assert "| `history` | `{first: 5, last: 50}` |" in text
    default = HistoryWindow()
    assert f"{{first: {default.first}, last: {default.last}}}" in text
