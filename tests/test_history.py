"""Poll history in the run store (`lamrunner runs show`): one row per attempt, the settling one
included, and what a failed poll keeps of the last response that says why it failed."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import Reply

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import Engine
from lamrunner.runner.state import RunState
from lamrunner.store.sqlite import RunStore

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

_spec = importlib.util.spec_from_file_location("history_jobapi", SAMPLES / "jobapi.py")
assert _spec is not None and _spec.loader is not None
jobapi = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = jobapi
_spec.loader.exec_module(jobapi)


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "history.sqlite3")


async def run_with(
    path: Path,
    store: RunStore,
    clock: FakeClock,
    input_data: Any = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    workflow = load_workflow(path, env=env or {})
    config = build_config(workflow.config, (), (), env or {})
    state = RunState.start(workflow.name, {} if input_data is None else input_data)
    store.begin(state, {"workflow": str(path), "configFiles": [], "sets": []})
    return await Engine(workflow, config, clock=clock, observers=[store]).resume(state)


def poll_step(wf, url: str, **loop: Any) -> Path:
    loop.setdefault("condition", "ctx.response.state === 'done'")
    loop.setdefault("initialDelay", "1s")
    handler = wf.request_step("wait", {"method": "GET", "url": url, "loopUntil": loop})
    return wf.workflow([{"name": "wait_for_job", "handler": handler}])


async def test_every_attempt_has_a_row_with_times_status_duration_and_delay(api, wf, store):
    api.script(
        "GET", "/job", *[Reply(json={"state": "pending"})] * 3, Reply(json={"state": "done"})
    )
    clock = FakeClock(start=1_700_000_000.25)
    record = await run_with(poll_step(wf, api.url + "/job"), store, clock)

    rows = store.attempts(record["runId"])
    assert record["status"] == "SUCCESS"
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4]
    assert {(r["step"], r["stepName"], r["element"]) for r in rows} == {
        ("step_1", "wait_for_job", 0)
    }
    assert [r["at"] for r in rows] == [
        "2023-11-14T22:13:20.250Z",
        "2023-11-14T22:13:21.250Z",
        "2023-11-14T22:13:22.250Z",
        "2023-11-14T22:13:23.250Z",
    ]
    assert [r["status"] for r in rows] == [200, 200, 200, 200]
    assert [r["delayMs"] for r in rows] == [1000, 1000, 1000, None]
    assert [r["nextDue"] for r in rows][-1] is None
    assert all(isinstance(r["durationMs"], int) and r["durationMs"] >= 0 for r in rows)
    assert [r["outcome"] for r in rows] == ["wait", "wait", "wait", "success"]


def refused_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/job"


@pytest.mark.parametrize(
    ("how", "loop", "outcome", "attempts"),
    [
        ("failWhen", {"failWhen": "ctx.response.state === 'failed'"}, "PollingFailed", 3),
        ("exhaustion", {"maxAttempts": 3}, "PollingExhausted", 3),
        ("deadline", {"timeout": "2500ms"}, "DeadlineExceeded", 3),
    ],
)
async def test_the_attempt_that_settles_a_failed_poll_is_recorded(
    api, wf, store, how, loop, outcome, attempts
):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "pending"}),
        Reply(json={"state": "pending"}),
        Reply(json={"state": "failed" if how == "failWhen" else "pending"}),
    )
    record = await run_with(poll_step(wf, api.url + "/job", **loop), store, FakeClock())

    rows = store.attempts(record["runId"])
    assert record["error"]["type"] == outcome
    assert [r["attempt"] for r in rows] == list(range(1, attempts + 1))
    assert rows[-1]["outcome"] == outcome and rows[-1]["delayMs"] is None
    assert rows[-1]["lastResponse"]["status"] == 200


async def test_a_transport_failure_is_a_row_with_its_kind(wf, store):
    record = await run_with(poll_step(wf, refused_url()), store, FakeClock())

    rows = store.attempts(record["runId"])
    assert record["error"]["type"] == "TransportError"
    assert [(r["attempt"], r["status"], r["outcome"]) for r in rows] == [
        (1, "connection", "TransportError")
    ]
    assert rows[0]["error"] and rows[0]["delayMs"] is None


async def test_batch_rows_say_which_element(api, wf, store):
    api.script("GET", "/a", Reply(json={"state": "pending"}), Reply(json={"state": "done"}))
    api.script("GET", "/b", Reply(json={"state": "done"}))
    loop = {"condition": "ctx.response.state === 'done'", "initialDelay": "1s"}
    handler = wf.handler(
        "batch.py",
        f"""
        def transform(data):
            return {{"lam.httpRequests": [
                {{"method": "GET", "url": "{api.url}/a", "loopUntil": {loop!r}}},
                {{"method": "GET", "url": "{api.url}/b", "loopUntil": {loop!r}}}]}}
    """,
    )
    record = await run_with(wf.workflow([{"name": "both", "handler": handler}]), store, FakeClock())

    rows = store.attempts(record["runId"])
    assert sorted((r["element"], r["attempt"], r["outcome"]) for r in rows) == [
        (0, 1, "wait"),
        (0, 2, "success"),
        (1, 1, "success"),
    ]
    assert all(ISO_MS.match(r["at"]) for r in rows)


def test_the_settling_attempt_is_committed_at_once(tmp_path):
    """Fast polls share commits, but a poll's last attempt is on disk when the poll settles
    (a batch's other elements may poll on for a long time)."""
    path = tmp_path / "s.sqlite3"
    store = RunStore(path)
    state = RunState.start("wf", {}, run_id="r1")
    store.begin(state, {"workflow": "w.yaml", "configFiles": [], "sets": []})
    row = {
        "attempt": 1,
        "at": 1.0,
        "status": 200,
        "error": None,
        "durationMs": 3,
        "delayMs": None,
        "nextDue": None,
        "requests": 1,
        "outcome": "PollingFailed",
        "lastResponse": {"status": 200, "headers": {}, "body": "{}", "truncated": False},
        "stepName": "wait",
    }
    store.save_attempt(state, 0, row)
    with sqlite3.connect(path) as other:  # another process reading the file
        seen = other.execute("SELECT attempt, outcome FROM attempts").fetchall()
    assert seen == [(1, "PollingFailed")]


# -- the last response of a failed poll -------------------------------------------------------


@pytest.fixture
async def jobapi_on(request) -> AsyncIterator[tuple[str, FakeClock]]:
    """samples/jobapi.py on 127.0.0.1, its jobs moving on the same fake clock as the run."""
    clock = FakeClock()
    app = jobapi.create_app(api_key="dev-key-1234", phase_seconds=1.0, clock=clock.now)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", clock
    finally:
        await runner.cleanup()


async def test_failed_job_keeps_its_error_field_and_its_whole_last_response(jobapi_on, store):
    url, clock = jobapi_on
    env = {"JOBAPI_URL": url, "PROCESSOR_API_KEY": "dev-key-1234"}
    dataset = "ds-" + "x" * 180 + "-dev-key-1234"  # a long id, echoed twice; holds the secret
    record = await run_with(
        SAMPLES / "job-lifecycle.yaml",
        store,
        clock,
        {"datasetId": dataset, "simulate": "failed"},
        env,
    )

    error = record["error"]
    expected = f"transform of ds-{'x' * 180}-*** failed: out of memory"
    assert error["type"] == "PollingFailed"
    assert f'last response: {{"error":"{expected}","status":"failed"' in error["message"]
    assert "dev-key-1234" not in json.dumps(record["error"])

    last = store.attempts(record["runId"])[-1]
    assert last["outcome"] == "PollingFailed" and last["stepName"] == "wait_for_job"
    shown = last["lastResponse"]
    assert shown["status"] == 200 and shown["truncated"] is False
    assert shown["headers"]["content-type"].startswith("application/json")
    body = json.loads(shown["body"])
    assert body["error"] == expected and body["status"] == "failed"
    assert body["request"]["datasetId"] == f"ds-{'x' * 180}-***"
    assert "dev-key-1234" not in json.dumps(store.attempts(record["runId"]))


async def test_last_response_is_bounded_with_a_truncated_flag(api, wf, store):
    big = "y" * 100_000
    api.script("GET", "/job", Reply(text=big))
    record = await run_with(poll_step(wf, api.url + "/job", maxAttempts=2), store, FakeClock())

    shown = store.attempts(record["runId"])[-1]["lastResponse"]
    assert record["error"]["type"] == "PollingExhausted"
    assert shown["truncated"] is True and shown["body"] == big[:65_536]


async def test_http_status_error_quotes_the_reason_fields_first(api, wf):
    body = {"id": "r-1", "items": ["z" * 40] * 10, "detail": "quota of project p-7 used up"}
    api.script("POST", "/submit", Reply(status=429, json=body))
    handler = wf.request_step("submit", {"method": "POST", "url": api.url + "/submit"})
    workflow = load_workflow(wf.workflow([handler]), env={})
    record = await Engine(workflow, build_config(workflow.config)).run({})

    assert record["error"]["type"] == "HttpStatusError"
    assert (
        'answered 429: {"detail":"quota of project p-7 used up","id":"r-1"'
        in (record["error"]["message"])
    )


async def test_each_row_says_what_went_wrong_in_that_attempt_only(api, wf, store):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": None}),
        Reply(json={"state": {"x": 1}}),
        Reply(json={"state": {"x": 2}}),
    )
    cond = "(ctx) => ctx.response.state.x === 2"  # throws while state is null
    record = await run_with(poll_step(wf, api.url + "/job", condition=cond), store, FakeClock())

    rows = store.attempts(record["runId"])
    assert record["status"] == "SUCCESS"
    assert "condition threw" in rows[0]["error"]
    assert [r["error"] for r in rows[1:]] == [None, None]


def test_a_store_written_before_the_history_columns_still_opens(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE attempts (run_id TEXT NOT NULL, step INTEGER NOT NULL,"
            " idx INTEGER NOT NULL, attempt INTEGER NOT NULL, status INTEGER, error TEXT,"
            " at REAL NOT NULL, next_due REAL, PRIMARY KEY (run_id, step, idx, attempt))"
        )
        db.execute("INSERT INTO attempts VALUES ('r0', 1, 0, 1, 202, NULL, 1.5, 2.5)")
    store = RunStore(path)
    assert store.attempts("r0") == [
        {
            "step": "step_2",
            "stepName": None,
            "element": 0,
            "attempt": 1,
            "at": "1970-01-01T00:00:01.500Z",
            "status": 202,
            "error": None,
            "durationMs": None,
            "delayMs": None,
            "nextDue": "1970-01-01T00:00:02.500Z",
            "outcome": None,
            "lastResponse": None,
        }
    ]
    state = RunState.start("wf", {}, run_id="r0")
    state.next_step = 1
    store.save_attempt(
        state,
        0,
        {
            "attempt": 2,
            "at": 3.0,
            "status": "timeout",
            "error": "slow",
            "durationMs": 5,
            "delayMs": None,
            "nextDue": None,
            "outcome": "TransportError",
            "lastResponse": None,
        },
    )
    assert [(r["attempt"], r["status"]) for r in store.attempts("r0")] == [(1, 202), (2, "timeout")]
