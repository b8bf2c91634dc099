"""Durable runs: the SQLite store, `lamrunner runs`, and resuming after Ctrl-C, SIGTERM and
SIGKILL with exact attempt counts and no completed step sent twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time

import pytest
from conftest import Reply

from lamrunner.decide.polling import PollState
from lamrunner.runner.state import ElementState, PendingStep, RunState
from lamrunner.store.sqlite import INTERRUPTED, RunStore

LAMRUNNER = [sys.executable, "-m", "lamrunner"]


async def cli(*args: str, env: dict | None = None, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *LAMRUNNER,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "runs.sqlite3")


@pytest.fixture
def poll_flow(api, wf):
    """Step 1 POSTs once; step 2 polls, the job is done on the 5th attempt, 400 ms apart."""
    api.script("POST", "/start", Reply(json={"id": "j1"}))
    api.script(
        "GET", "/jobs/j1", *[Reply(json={"state": "pending"})] * 4, Reply(json={"state": "done"})
    )
    start = wf.request_step("start", {"method": "POST", "url": api.url + "/start"})
    wait = wf.request_step(
        "wait",
        {
            "method": "GET",
            "url": api.url + "/jobs/j1",
            "loopUntil": {
                "condition": "ctx.response.state === 'done'",
                "initialDelay": "400ms",
                "maxAttempts": 10,
                "timeout": "60s",
            },
        },
    )
    return str(
        wf.workflow([{"name": "start", "handler": start}, {"name": "wait", "handler": wait}])
    )


def _as_in_a_terminal() -> None:
    """SIGINT as a terminal's foreground job has it: a suite started in the background (`&`
    without job control) hands its children SIGINT ignored, which lamrunner keeps ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def start_run(flow: str, store_path: str):
    return await asyncio.create_subprocess_exec(
        *LAMRUNNER,
        "run",
        flow,
        "--store",
        store_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_as_in_a_terminal,
    )


async def wait_for_attempt(store_path: str, attempt: int, timeout: float = 20) -> str:
    """Block until the store shows `attempt` poll attempts of some run; return its id."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        try:
            with sqlite3.connect(store_path) as db:
                row = db.execute(
                    "SELECT run_id FROM attempts WHERE attempt = ?", (attempt,)
                ).fetchone()
            if row:
                return row[0]
        except sqlite3.OperationalError:
            pass  # the file or its tables are not there yet
        await asyncio.sleep(0.005)
    raise AssertionError(f"no attempt {attempt} checkpointed within {timeout}s")


@pytest.mark.parametrize(
    "how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["sigkill", "ctrl-c", "sigterm"]
)
async def test_stopped_run_resumes_with_exact_counts(api, poll_flow, store_path, how):
    proc = await start_run(poll_flow, store_path)
    run_id = await wait_for_attempt(store_path, 2)
    proc.send_signal(how)
    out, _err = await asyncio.wait_for(proc.communicate(), 20)
    if how == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL and out == b""
    else:
        record = json.loads(out)
        assert proc.returncode == 130
        assert record["status"] == INTERRUPTED
        assert f"lamrunner resume {run_id}" in record["error"]["message"]
    code, listing, _ = await cli("runs", "--json", "--store", store_path)
    assert code == 0 and json.loads(listing)[0] == {
        **json.loads(listing)[0],
        "runId": run_id,
        "status": INTERRUPTED,
    }
    assert len(api.requests_to("/jobs/j1")) == 2

    code, out, err = await cli("resume", run_id, "--store", store_path)

    record = json.loads(out)
    assert code == 0, err
    assert record["status"] == "SUCCESS" and record["runId"] == run_id
    assert record["gwo"]["step_2"]["http"]["attempts"] == 5
    assert len(api.requests_to("/jobs/j1")) == 5
    assert len(api.requests_to("/start")) == 1
    code, shown, _ = await cli("runs", "show", run_id, "--store", store_path)
    history = json.loads(shown)["polls"]
    assert [p["attempt"] for p in history] == [1, 2, 3, 4, 5]  # the one that saw "done" too
    assert [p["outcome"] for p in history][-2:] == ["wait", "success"]
    assert {p["stepName"] for p in history} == {"wait"}
    assert json.loads(shown)["run"]["status"] == "SUCCESS"


async def test_resume_refuses_finished_and_unknown_runs(api, poll_flow, store_path):
    code, out, _ = await cli("run", poll_flow, "--store", store_path)
    run_id = json.loads(out)["runId"]
    code, out, _ = await cli("resume", run_id, "--store", store_path)
    assert code == 2 and "already finished with SUCCESS" in json.loads(out)["error"]["message"]
    code, out, _ = await cli("resume", "no-such-run", "--store", store_path)
    assert code == 2 and "not in the run store" in json.loads(out)["error"]["message"]


async def test_runs_lists_newest_first_with_status(wf, store_path):
    ok = wf.py_step("ok", "1")
    bad = wf.py_step("bad", "1/0")
    ids = []
    for handler in (ok, bad, ok):
        _code, out, _ = await cli("run", str(wf.workflow([handler])), "--store", store_path)
        ids.append(json.loads(out)["runId"])
    code, out, _ = await cli("runs", "--json", "--store", store_path)
    listed = json.loads(out)
    assert code == 0
    assert [r["runId"] for r in listed] == ids[::-1]
    assert [r["status"] for r in listed] == ["SUCCESS", "FAILED", "SUCCESS"]
    assert {"runId", "workflow", "status"} <= set(listed[0])
    code, table, _ = await cli("runs", "--store", store_path)
    assert table.splitlines()[0].startswith("RUN ID") and ids[0] in table


async def test_no_store_writes_nothing(wf, tmp_path):
    path = tmp_path / "elsewhere.sqlite3"
    code, out, _ = await cli(
        "run",
        str(wf.workflow([wf.py_step("ok", "1")])),
        "--no-store",
        env={"LAMRUNNER_STORE": str(path)},
    )
    assert code == 0 and json.loads(out)["status"] == "SUCCESS"
    assert not path.exists()


def test_store_keeps_element_progress_apart_from_the_run(tmp_path):
    store = RunStore(tmp_path / "s.sqlite3")
    state = RunState.start("wf", {"a": 1}, run_id="r1")
    store.begin(state, {"workflow": "w.yaml", "configFiles": [], "sets": []})
    state.pending = PendingStep.start({"lam.httpRequests": []}, 2)
    store.save_run(state)
    poll = PollState(started_at=0.0, attempt=3, last_status=202, last_error=None, next_due=1.0)
    store.save_element(state, 1, ElementState(poll=poll))
    loaded, invocation, _status = store.load("r1")
    assert loaded.pending.elements == [None, ElementState(poll=poll)]
    assert invocation["workflow"] == "w.yaml"
    state.pending = None
    state.next_step = 1
    state.status = "SUCCESS"
    store.save_run(state)
    assert store.load("r1")[0].pending is None
    assert store.load("r1")[2] == "SUCCESS"
    assert oct(os.stat(tmp_path / "s.sqlite3").st_mode & 0o777) == "0o600"


def test_a_running_run_whose_process_is_gone_is_listed_interrupted(tmp_path):
    store = RunStore(tmp_path / "s.sqlite3")
    state = RunState.start("wf", {}, run_id="r2")
    store.begin(state, {"workflow": "w.yaml", "configFiles": [], "sets": []})
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        db.execute("UPDATE runs SET pid = 999999999 WHERE run_id = 'r2'")
    assert store.list()[0].status == INTERRUPTED
    assert store.owner_alive("r2") is None


# -- a store written by the previous release (state JSON without "schema") ----------------------


def write_old_run(store_path: str, flow: str, api_url: str) -> str:
    """A run row and an element row exactly as the release before versioned states wrote them:
    step 1 done, step 2 polling after its 2nd attempt, the process gone (INTERRUPTED)."""
    RunStore(store_path).close()  # the tables (the previous release's are the same)
    now = time.time()
    directive = {
        "lam.httpRequest": {
            "method": "GET",
            "url": api_url + "/jobs/j1",
            "loopUntil": {
                "condition": "ctx.response.state === 'done'",
                "initialDelay": "20ms",
                "maxAttempts": 10,
                "timeout": "60s",
            },
        }
    }
    state = {  # dataclasses.asdict(RunState) of that release: these keys, this order, no schema
        "run_id": "20250101-000000-0ld001",
        "workflow": "test-flow",
        "gwo": {
            "input": {},
            "step_1": {"response": {"id": "j1"}, "http": {"status": 200, "attempts": 1}},
        },
        "next_step": 1,
        "pending": {"output": directive, "elements": [None]},
        "status": "RUNNING",
        "result": None,
        "error": None,
        "meta": {},
    }
    poll = {  # PollState.to_dict of that release (dict(self.__dict__))
        "started_at": now - 1.0,
        "deadline": now + 60.0,
        "attempt": 2,
        "requests": 2,
        "next_due": now,
        "last_status": 200,
        "last_excerpt": '{"state": "pending"}',
        "last_error": None,
    }
    invocation = {"workflow": flow, "configFiles": [], "sets": [], "digest": ""}
    with sqlite3.connect(store_path) as db:
        db.execute(
            "INSERT INTO runs (run_id, workflow, status, created_at, updated_at, pid, invocation,"
            " state) VALUES (?, 'test-flow', 'RUNNING', ?, ?, NULL, ?, ?)",
            (state["run_id"], now - 1.0, now, json.dumps(invocation), json.dumps(state)),
        )
        db.execute(
            "INSERT INTO elements (run_id, step, idx, entry) VALUES (?, 1, 0, ?)",
            (state["run_id"], json.dumps({"poll": poll})),
        )
    return state["run_id"]


async def test_a_run_stored_by_the_previous_release_lists_shows_and_resumes(
    api, poll_flow, store_path
):
    api.replies.clear()
    api.script("GET", "/jobs/j1", Reply(json={"state": "pending"}), Reply(json={"state": "done"}))
    run_id = write_old_run(store_path, poll_flow, api.url)

    code, listing, err = await cli("runs", "--json", "--store", store_path)
    assert code == 0, err
    assert json.loads(listing) == [{**json.loads(listing)[0], "runId": run_id, "stepsDone": 1}]
    assert json.loads(listing)[0]["status"] == INTERRUPTED
    code, shown, err = await cli("runs", "show", run_id, "--store", store_path)
    assert code == 0, err
    run = json.loads(shown)["run"]
    assert run["status"] == INTERRUPTED and run["gwo"]["step_1"]["response"] == {"id": "j1"}

    code, out, err = await cli("resume", run_id, "--store", store_path)

    record = json.loads(out)
    assert code == 0, err
    assert record["status"] == "SUCCESS" and record["runId"] == run_id
    assert record["gwo"]["step_2"]["http"]["attempts"] == 4  # 2 before, 3rd and 4th now
    assert len(api.requests_to("/jobs/j1")) == 2
    assert api.requests_to("/start") == []  # step 1 was done: not sent again
    code, shown, _ = await cli("runs", "show", run_id, "--store", store_path)
    assert [p["attempt"] for p in json.loads(shown)["polls"]] == [3, 4]
    with sqlite3.connect(store_path) as db:
        (saved,) = db.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    assert json.loads(saved)["schema"] == 2  # rewritten in the current schema


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"schema": 3},
            "saved by a newer lamrunner: schema 3; this one reads 1–2",
        ),
        (
            {"next_step": "1"},
            "saved run state (schema 1): next_step: expected a step index >= 0, got a string",
        ),
        (
            {"pending": {"output": {}, "elements": [{"poll": {"attempt": 2}}]}},
            "pending.elements[0].poll: missing started_at",
        ),
    ],
    ids=["newer", "wrong-type", "missing-keys"],
)
async def test_a_state_it_cannot_read_is_refused_by_name(
    api, poll_flow, store_path, change, message
):
    run_id = write_old_run(store_path, poll_flow, api.url)
    with sqlite3.connect(store_path) as db:
        (saved,) = db.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        db.execute("DELETE FROM elements")
        db.execute(
            "UPDATE runs SET state = ? WHERE run_id = ?",
            (json.dumps({**json.loads(saved), **change}), run_id),
        )
    code, listing, _ = await cli("runs", "--json", "--store", store_path)
    assert code == 0 and json.loads(listing)[0]["runId"] == run_id  # still listed
    for command in (("runs", "show"), ("resume",)):
        code, out, _ = await cli(*command, run_id, "--store", store_path)
        error = json.loads(out)["error"]
        assert code == 2 and error["type"] == "DefinitionError"
        assert message in error["message"] and run_id in error["message"]
    assert api.seen == []


async def test_a_fast_polls_grouped_entry_is_serialized_when_its_group_commits(tmp_path):
    """The store keeps a grouped poll entry as the record (the engine refreshes it in place
    right before each save_element): the commit writes what the last save handed over."""
    store = RunStore(tmp_path / "s.sqlite3")
    state = RunState.start("wf", {}, run_id="r3")
    store.begin(state, {"workflow": "w.yaml", "configFiles": [], "sets": []})
    state.pending = PendingStep.start({"lam.httpRequests": []}, 1)
    store.save_run(state)
    poll = PollState(started_at=time.time(), attempt=1, next_due=time.time())  # due at once
    entry = ElementState(poll=poll)
    store.save_element(state, 0, entry)
    poll.attempt, poll.last_status = 2, 202  # the next attempt's refresh, then its save
    store.save_element(state, 0, entry)
    other = RunStore(tmp_path / "s.sqlite3")  # another process reading: not committed yet
    assert other.load("r3")[0].pending.elements == [None]
    await asyncio.sleep(0.1)  # the group's commit (GROUP_WINDOW later)
    saved = other.load("r3")[0].pending.elements[0]
    assert saved is not None and saved.poll is not None
    assert (saved.poll.attempt, saved.poll.last_status) == (2, 202)
    store.close()
    other.close()
