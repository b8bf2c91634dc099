"""Durable runs: the SQLite store, `lamrunner runs`, and resuming after Ctrl-C, SIGTERM and
SIGKILL with exact attempt counts and no completed step sent twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys

import pytest
from conftest import Reply

from lamrunner.runner.state import RunState
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


async def start_run(flow: str, store_path: str):
    return await asyncio.create_subprocess_exec(
        *LAMRUNNER,
        "run",
        flow,
        "--store",
        store_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
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
    state.pending = {"output": {"lam.httpRequests": []}, "elements": [None, None]}
    store.save_run(state)
    poll = {"attempt": 3, "last_status": 202, "last_error": None, "next_due": 1.0}
    store.save_element(state, 1, {"poll": poll})
    loaded, invocation, _status = store.load("r1")
    assert loaded.pending["elements"] == [None, {"poll": poll}]
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
