"""The plain-answer path of the poll loop (`Poller._plainly`) decides exactly as the general
one: every scenario runs twice against the same scripted server on 127.0.0.1, once as shipped
and once with the plain path switched off, and the run records, the poll history rows and the
requests sent must be the same. Each scenario also checks the plain path really decided some
attempts, so the comparison cannot pass by never taking it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Reply, ScriptedAPI, WorkflowDir

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.runner import calls
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import ElementState, RunState
from lamrunner.store.sqlite import RunStore

PENDING = Reply(json={"state": "pending", "id": "j7"})
DONE = Reply(json={"state": "done", "id": "j7"})


def poll_workflow(wf: WorkflowDir, url: str, **request: Any) -> Path:
    loop = request.pop("loopUntil", {})
    loop.setdefault("condition", "ctx.response.state === 'done'")
    loop.setdefault("initialDelay", "1s")
    handler = wf.request_step("wait", {"method": "GET", "url": url, "loopUntil": loop, **request})
    return wf.workflow([{"name": "wait_for_job", "handler": handler}])


class Checkpoints(RunObserver):
    """Every poll state checkpointed after an attempt, as a resumed run would load it."""

    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []

    def save_element(self, state: RunState, index: int, entry: ElementState) -> None:
        if entry.poll is not None:
            self.saved.append(entry.poll.to_dict())


async def run_once(path: Path, store: RunStore) -> tuple[dict[str, Any], list[Any]]:
    """The run's record, and its history rows and checkpoints (times from the fake clock)."""
    workflow = load_workflow(path, env={})
    config = build_config(workflow.config, (), (), {})
    state = RunState.start(workflow.name, {})
    store.begin(state, {"workflow": str(path), "configFiles": [], "sets": []})
    clock, checkpoints = FakeClock(start=1_700_000_000.0), Checkpoints()
    engine = Engine(workflow, config, clock=clock, observers=[store, checkpoints])
    record = await engine.resume(state)
    rows = store.attempts(record["runId"])
    for row in rows:
        row.pop("durationMs", None)  # real requests take real time; the rest is the clock's
    return record, [*rows, *checkpoints.saved]


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in record.items() if k not in ("runId", "durationMs", "startedAt")}
    for entry in kept["gwo"].values():
        if isinstance(entry, dict) and isinstance(entry.get("http"), dict):
            entry["http"].pop("durationMs", None)
    return kept


async def both_ways(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    api: ScriptedAPI,
    script: Callable[[], None],
    path: Path,
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Run `path` as shipped, then with the plain path off; assert the two agree. Returns the
    record, the history rows, and how many attempts the plain path decided."""
    plainly = calls.Poller._plainly
    decided = 0

    def counting(self: calls.Poller, *args: Any) -> Any:
        nonlocal decided
        decision = plainly(self, *args)
        decided += decision is not None
        return decision

    script()
    with monkeypatch.context() as patch:
        patch.setattr(calls.Poller, "_plainly", counting)
        record, rows = await run_once(path, RunStore(tmp_path / "plain.sqlite3"))
    sent = [(s.method, s.path, s.headers.get("If-None-Match")) for s in api.seen]
    api.seen.clear()
    api.replies.clear()
    script()
    with monkeypatch.context() as patch:
        patch.setattr(calls.Poller, "_plainly", lambda self, *args: None)
        general, general_rows = await run_once(path, RunStore(tmp_path / "general.sqlite3"))
    assert comparable(record) == comparable(general)
    assert rows == general_rows
    assert sent == [(s.method, s.path, s.headers.get("If-None-Match")) for s in api.seen]
    return record, rows, decided


async def test_a_poll_that_succeeds(api, wf, tmp_path, monkeypatch):
    path = poll_workflow(wf, api.url + "/job")
    record, rows, decided = await both_ways(
        monkeypatch, tmp_path, api, lambda: api.script("GET", "/job", PENDING, PENDING, DONE), path
    )
    assert record["status"] == "SUCCESS"
    assert [r["outcome"] for r in rows[:3]] == ["wait", "wait", "success"]
    assert [saved["attempt"] for saved in rows[3:]] == [1, 2]
    assert decided == 3


async def test_a_poll_that_runs_out_of_attempts(api, wf, tmp_path, monkeypatch):
    path = poll_workflow(wf, api.url + "/job", loopUntil={"maxAttempts": 3})
    record, rows, decided = await both_ways(
        monkeypatch, tmp_path, api, lambda: api.script("GET", "/job", PENDING), path
    )
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "PollingExhausted"
    assert '"state":"pending"' in record["error"]["message"].replace(" ", "")
    assert rows[2]["lastResponse"]["body"] == '{"state": "pending", "id": "j7"}'
    assert decided == 3


async def test_a_poll_cut_by_its_deadline(api, wf, tmp_path, monkeypatch):
    path = poll_workflow(wf, api.url + "/job", loopUntil={"timeout": "2500ms"})
    record, _, decided = await both_ways(
        monkeypatch, tmp_path, api, lambda: api.script("GET", "/job", PENDING), path
    )
    assert record["error"]["type"] == "DeadlineExceeded"
    assert decided == 3


async def test_answers_the_plain_path_hands_on(api, wf, tmp_path, monkeypatch):
    """A validator, a delay asked for, an error status and a body that is not JSON go to the
    general path, between plain answers, and the poll goes on the same."""

    def script() -> None:
        api.script(
            "GET",
            "/job",
            PENDING,
            Reply(json={"state": "pending"}, headers={"ETag": '"v1"'}),
            Reply(status=304, headers={"ETag": '"v1"'}),
            Reply(json={"state": "pending"}, headers={"Retry-After": "3"}),
            Reply(status=500, json={"error": "busy"}),
            Reply(text="not json", headers={"Content-Type": "application/json"}),
            PENDING,
            DONE,
        )

    path = poll_workflow(wf, api.url + "/job", loopUntil={"ignoreErrors": True})
    record, rows, decided = await both_ways(monkeypatch, tmp_path, api, script, path)
    assert record["status"] == "SUCCESS"
    assert len(rows) == 8 + 7  # a row per attempt, a checkpoint for each but the last
    assert decided == 3  # the first, the seventh and the last


async def test_a_condition_python_cannot_decide_goes_to_quickjs(api, wf, tmp_path, monkeypatch):
    """`>=` of a string: JS compares it (Python hands that answer to QuickJS)."""

    def script() -> None:
        api.script(
            "GET",
            "/job",
            Reply(json={"n": 1}),
            Reply(json={"n": "2"}),
            Reply(json={"n": 2}),
            Reply(json={"n": 3}),
        )

    path = poll_workflow(
        wf, api.url + "/job", loopUntil={"condition": "(ctx) => ctx.response.n >= 3"}
    )
    record, rows, decided = await both_ways(monkeypatch, tmp_path, api, script, path)
    assert record["gwo"]["step_1"]["response"] == {"n": 3}
    assert [r["attempt"] for r in rows[:4]] == [1, 2, 3, 4]
    assert decided == 3  # not the string


async def test_a_poll_that_gives_up_sends_on_give_up_with_the_last_answer(
    api, wf, tmp_path, monkeypatch
):
    def script() -> None:
        api.script("GET", "/job", PENDING)
        api.script("DELETE", "/job/j7", Reply(json={"canceled": True}))

    path = poll_workflow(
        wf,
        api.url + "/job",
        loopUntil={"maxAttempts": 2},
        onGiveUp={"method": "DELETE", "url": api.url + "/job/<<last.response.id>>"},
    )
    record, rows, decided = await both_ways(monkeypatch, tmp_path, api, script, path)
    assert record["error"]["type"] == "PollingExhausted"
    assert rows[-1]["last_response"] == {"state": "pending", "id": "j7"}  # for a restart
    [outcome] = record["giveUps"]
    assert outcome["status"] == 200
    assert api.requests_to("/job/j7")  # the id came from the last answer
    assert decided == 2


async def test_failure_messages_quote_the_last_body_whatever_came_before(
    api, wf, tmp_path, monkeypatch
):
    """The plain path keeps the excerpt of a small body for the next attempt: a long body, a
    short one and a long one again must each be quoted as themselves."""
    long_a = {"state": "pending", "pad": "a" * 5000}
    long_b = {"state": "pending", "pad": "b" * 5000}

    def script() -> None:
        api.script(
            "GET",
            "/job",
            Reply(json=long_a),
            Reply(json={"state": "pending"}),
            Reply(json={"state": "pending"}),
            Reply(json=long_b),
        )

    path = poll_workflow(wf, api.url + "/job", loopUntil={"maxAttempts": 4})
    record, rows, decided = await both_ways(monkeypatch, tmp_path, api, script, path)
    assert "bbbb" in record["error"]["message"]
    assert [saved["last_excerpt"] for saved in rows[4:]] == [
        rows[4]["last_excerpt"],
        '{"state": "pending"}',
        '{"state": "pending"}',
    ]
    assert "aaaa" in rows[4]["last_excerpt"]
    assert decided == 4
