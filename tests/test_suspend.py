"""Runs that suspend at a budget, resume later (another process), and the hosts API.

A run with a budget does not wait for a poll attempt due after the budget's end: it saves its
state and returns SUSPENDED with `resumeAt` (the earliest next-due time of the step's polls).
Resuming continues with the exact attempt counts and schedule, sending nothing twice. The
single-attempt API (`Engine.poller` → `Poller.attempt`) is what the poll loop is built on; a
test loop over it reproduces `perform`'s attempts exactly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import pytest
from conftest import Reply

from lamrunner.decide.polling import Fail, Succeed, Wait
from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import SUSPENDED, ElementState, RunState
from lamrunner.store.sqlite import RunStore

LAMRUNNER = [sys.executable, "-m", "lamrunner"]
EXIT_SUSPENDED = 3


async def cli(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *LAMRUNNER, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def poll(url: str, interval: str, max_attempts: int = 10, **extra: Any) -> dict[str, Any]:
    return {
        "method": "GET",
        "url": url,
        "loopUntil": {
            "condition": "ctx.response.state === 'done'",
            "strategy": "fixed",
            "initialDelay": interval,
            "jitter": "none",
            "maxAttempts": max_attempts,
            "timeout": "10m",
            **extra,
        },
    }


class Recorder(RunObserver):
    """Keeps every saved state as JSON, the elements given, and every history row."""

    def __init__(self) -> None:
        self.saved: list[str] = []
        self.elements: list[tuple[int, dict[str, Any]]] = []
        self.rows: list[dict[str, Any]] = []

    def save_run(self, state: RunState) -> None:
        self.saved.append(json.dumps(state.to_dict()))

    def save_element(self, state: RunState, index: int, entry: ElementState) -> None:
        self.elements.append((index, entry.to_dict()))

    def save_attempt(self, state: RunState, index: int, row: dict[str, Any]) -> None:
        self.rows.append({**row, "index": index})

    def last_state(self) -> RunState:
        return RunState.from_dict(json.loads(self.saved[-1]))


def engine(path: Any, clock: FakeClock, *observers: RunObserver) -> Engine:
    workflow = load_workflow(path, env={})
    return Engine(workflow, build_config(workflow.config), clock=clock, observers=observers)


def job_flow(api: Any, wf: Any, n: int, interval: str) -> str:
    """Step 1 POSTs once; step 2 polls /jobs/j1, done at attempt `n`."""
    api.script("POST", "/start", Reply(json={"id": "j1"}))
    api.script(
        "GET",
        "/jobs/j1",
        *[Reply(json={"state": "pending"})] * (n - 1),
        Reply(json={"state": "done"}),
    )
    start = wf.request_step("start", {"method": "POST", "url": api.url + "/start"})
    wait = wf.request_step("wait", poll(api.url + "/jobs/j1", interval))
    return str(
        wf.workflow([{"name": "start", "handler": start}, {"name": "wait", "handler": wait}])
    )


# -- (a), (b): two processes ------------------------------------------------------------------


async def test_a_poll_suspends_in_one_process_and_resumes_in_another(api, wf, tmp_path):
    store = str(tmp_path / "runs.sqlite3")
    flow = job_flow(api, wf, n=3, interval="2s")

    code, out, err = await cli("run", flow, "--budget", "0.5s", "--store", store)

    assert code == EXIT_SUSPENDED, err
    record = json.loads(out)
    assert record["status"] == SUSPENDED
    assert record["error"] is None and record["result"] is None
    first = api.requests_to("/jobs/j1")
    assert len(first) == 1
    at = record["resumeAt"]
    assert set(at) == {"epoch", "iso"} and at["iso"].endswith("Z") and len(at["iso"]) == 24
    state, _, listed = RunStore(store).load(record["runId"])
    assert listed == SUSPENDED
    assert state.pending is not None and state.pending.elements[0] is not None
    saved = state.pending.elements[0].poll
    assert saved is not None and saved.attempt == 1
    assert at["epoch"] == saved.next_due
    code, listing, _ = await cli("runs", "--json", "--store", store)
    assert [(r["runId"], r["status"]) for r in json.loads(listing)] == [
        (record["runId"], SUSPENDED)
    ]

    code, out, err = await cli("resume", record["runId"], "--store", store)

    assert code == 0, err
    done = json.loads(out)
    assert done["status"] == "SUCCESS"
    assert done["gwo"]["step_2"]["http"]["attempts"] == 3
    assert len(api.requests_to("/jobs/j1")) == 3
    assert len(api.requests_to("/start")) == 1
    polls = json.loads((await cli("runs", "show", record["runId"], "--store", store))[1])["polls"]
    assert [p["attempt"] for p in polls] == [1, 2, 3]
    assert polls[0]["nextDue"] == at["iso"]
    loop_time_of_resume = api.requests_to("/jobs/j1")[1].at - first[0].at
    assert loop_time_of_resume >= 2.0 - 0.01  # the schedule kept: not sent before it was due


async def test_a_batch_resumes_at_its_earliest_due_request_not_its_first(api, wf, tmp_path):
    store = str(tmp_path / "runs.sqlite3")
    for name in ("slow", "fast"):
        api.script(
            "GET", f"/{name}", Reply(json={"state": "pending"}), Reply(json={"state": "done"})
        )
    batch = wf.handler(
        "batch.py",
        f"""
        import json

        def transform(data):
            return {{"lam.httpRequests": [
                json.loads({json.dumps(json.dumps(poll(api.url + "/slow", "3s")))}),
                json.loads({json.dumps(json.dumps(poll(api.url + "/fast", "1s")))}),
            ]}}
        """,
    )
    flow = str(wf.workflow([batch]))

    code, out, err = await cli("run", flow, "--budget", "0.5s", "--store", store)

    assert code == EXIT_SUSPENDED, err
    record = json.loads(out)
    state, _, _ = RunStore(store).load(record["runId"])
    assert state.pending is not None
    slow, fast = (e.poll for e in state.pending.elements if e is not None)
    assert slow is not None and fast is not None and fast.next_due < slow.next_due
    assert abs(record["resumeAt"]["epoch"] - fast.next_due) < 0.001

    code, out, err = await cli("resume", record["runId"], "--budget", "30s", "--store", store)

    assert code == 0, err
    done = json.loads(out)
    assert done["status"] == "SUCCESS"
    assert [h["attempts"] for h in done["gwo"]["step_1"]["http"]] == [2, 2]
    assert len(api.requests_to("/slow")) == len(api.requests_to("/fast")) == 2


async def test_a_signal_during_resumes_wait_leaves_the_run_suspended(api, wf, tmp_path):
    store = str(tmp_path / "runs.sqlite3")
    flow = job_flow(api, wf, n=2, interval="8s")
    code, out, _ = await cli("run", flow, "--budget", "0s", "--store", store)
    assert code == EXIT_SUSPENDED
    run_id = json.loads(out)["runId"]

    proc = await asyncio.create_subprocess_exec(
        *LAMRUNNER,
        "resume",
        run_id,
        "--store",
        store,
        "--log-format",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert line, "resume ended before it waited"
        if "run.waiting" in line:
            assert "waiting until" in line
            break
    os.kill(proc.pid, signal.SIGTERM)
    out_b, _ = await asyncio.wait_for(proc.communicate(), 20)

    assert proc.returncode == 130
    stopped = json.loads(out_b)
    assert stopped["status"] == SUSPENDED and stopped["error"]["type"] == "Interrupted"
    assert f"lamrunner resume {run_id}" in stopped["error"]["message"]
    _, listing, _ = await cli("runs", "--json", "--store", store)
    assert [r["status"] for r in json.loads(listing)] == [SUSPENDED]
    assert len(api.requests_to("/jobs/j1")) == 1


async def test_budget_is_a_duration_and_needs_a_store(wf, tmp_path):
    flow = str(wf.workflow([wf.py_step("a", "{}")]))
    code, out, _ = await cli("run", flow, "--budget", "-3s")
    assert code == 2 and json.loads(out)["error"]["type"] == "DefinitionError"
    code, out, _ = await cli("run", flow, "--budget", "30s", "--no-store")
    assert code == 2 and "--no-store" in json.loads(out)["error"]["message"]
    code, out, _ = await cli("run", flow, "--budget", "30s", "--store", str(tmp_path / "s.db"))
    assert code == 0 and json.loads(out)["status"] == "SUCCESS"  # nothing waited: it finished


# -- (c): in process, on a fake clock ---------------------------------------------------------


async def test_budget_suspends_and_resume_waits_with_continuous_attempts(api, wf):
    flow = job_flow(api, wf, n=4, interval="10s")
    clock = FakeClock()
    t0 = clock.now()
    first = Recorder()

    record = await engine(flow, clock, first).run({}, budget=25)

    assert record["status"] == SUSPENDED
    assert record["resumeAt"]["epoch"] == t0 + 30  # attempts at 0, 10, 20; the 4th is due at 30
    assert clock.sleeps == [10, 10]
    assert [r["attempt"] for r in first.rows] == [1, 2, 3]
    state = first.last_state()
    assert state.status == SUSPENDED and state.resume_at == t0 + 30
    assert json.loads(first.saved[-1])["schema"] == 2

    clock.advance(5)  # suspended at t0 + 20, resumed at t0 + 25: it waits until resumeAt
    second = Recorder()
    done = await engine(flow, clock, second).resume(state)

    assert done["status"] == "SUCCESS" and "resumeAt" not in done
    assert clock.now() == t0 + 30 and clock.sleeps[2:] == [5]  # from t0 + 25
    assert clock.now() == t0 + 30
    assert [r["attempt"] for r in second.rows] == [4]
    assert second.rows[0]["at"] == t0 + 30
    assert done["gwo"]["step_2"]["http"]["attempts"] == 4
    assert done["gwo"]["step_2"]["http"]["durationMs"] == 30_000
    assert len(api.requests_to("/jobs/j1")) == 4 and len(api.requests_to("/start")) == 1


async def test_no_budget_never_suspends_and_a_zero_budget_makes_every_due_attempt(api, wf):
    flow = job_flow(api, wf, n=3, interval="2m")
    clock = FakeClock()
    record = await engine(flow, clock).run({})
    assert record["status"] == "SUCCESS" and clock.sleeps == [120, 120]

    api.replies.clear()
    api.seen.clear()
    flow = job_flow(api, wf, n=3, interval="2m")
    clock = FakeClock()
    recorder = Recorder()
    state = RunState.start("test-flow", {})
    attempts = []
    for _ in range(3):
        record = await engine(flow, clock, recorder).resume(state, budget=0)
        attempts.append(len(api.requests_to("/jobs/j1")))
        if record["status"] != SUSPENDED:
            break
        state = recorder.last_state()
        clock.advance(record["resumeAt"]["epoch"] - clock.now())
    assert record["status"] == "SUCCESS"
    assert attempts == [1, 2, 3]
    assert [r["attempt"] for r in recorder.rows] == [1, 2, 3]
    assert clock.sleeps == []  # never waited in process: each wait was a suspension


async def test_a_failed_batch_element_survives_the_suspension(api, wf):
    """The run settles as an uninterrupted one does: FAILED with element 0's error, and
    element 1's result, after element 1 finished polling."""

    def script() -> None:
        api.replies.clear()
        api.script("GET", "/bad", Reply(status=500, json={"error": "broken"}))
        api.script("GET", "/job", Reply(json={"state": "pending"}), Reply(json={"state": "done"}))

    bad = {"method": "GET", "url": api.url + "/bad"}
    requests = [bad, poll(api.url + "/job", "10s")]
    literal = json.dumps({"lam.httpRequests": requests})
    handler = wf.handler(
        "batch.py", f"import json\n\ndef transform(data):\n    return json.loads({literal!r})\n"
    )
    flow = str(wf.workflow([{"name": "both", "handler": handler}]))

    script()
    whole = await engine(flow, FakeClock()).run({})
    assert whole["status"] == "FAILED"

    script()
    recorder = Recorder()
    clock = FakeClock()
    record = await engine(flow, clock, recorder).run({}, budget=1)
    assert record["status"] == SUSPENDED
    state = recorder.last_state()
    assert state.pending is not None
    failed, waiting = state.pending.elements
    assert failed is not None and failed.error is not None and failed.done
    assert failed.error["type"] == "HttpStatusError" and failed.error["status"] == 500
    assert waiting is not None and waiting.poll is not None and not waiting.done
    bad_sent = len(api.requests_to("/bad"))

    resumed = await engine(flow, clock).resume(state)

    assert resumed["status"] == "FAILED"
    assert resumed["error"] == whole["error"]
    assert resumed["gwo"]["step_1"]["response"] == whole["gwo"]["step_1"]["response"]
    assert resumed["gwo"]["step_1"]["http"][0] == whole["gwo"]["step_1"]["http"][0]
    assert resumed["gwo"]["step_1"]["http"][1]["attempts"] == 2
    assert len(api.requests_to("/bad")) == bad_sent  # not sent again


async def test_a_plain_request_is_never_suspended_mid_flight(api, wf):
    api.script("GET", "/slow", Reply(json={"ok": True}, delay=0.3))
    api.script("GET", "/job", Reply(json={"state": "pending"}), Reply(json={"state": "done"}))
    requests = [{"method": "GET", "url": api.url + "/slow"}, poll(api.url + "/job", "10s")]
    literal = json.dumps({"lam.httpRequests": requests})
    handler = wf.handler(
        "batch.py", f"import json\n\ndef transform(data):\n    return json.loads({literal!r})\n"
    )
    flow = str(wf.workflow([handler]))
    clock = FakeClock()
    recorder = Recorder()

    record = await engine(flow, clock, recorder).run({}, budget=0)

    assert record["status"] == SUSPENDED
    state = recorder.last_state()
    assert state.pending is not None
    plain = state.pending.elements[0]
    assert plain is not None and plain.result == {
        "response": {"ok": True},
        "http": plain.result["http"],
    }
    done = await engine(flow, clock).resume(state)
    assert done["status"] == "SUCCESS"
    assert done["gwo"]["step_1"]["response"] == [{"ok": True}, {"state": "done"}]
    assert len(api.requests_to("/slow")) == 1


def test_saved_forms_of_before_and_after_suspension_load():
    poll_state = {
        "started_at": 1.0,
        "deadline": None,
        "attempt": 1,
        "requests": 1,
        "next_due": 11.0,
        "last_status": 200,
        "last_excerpt": None,
        "last_error": None,
    }
    base = {
        "run_id": "r",
        "workflow": "w",
        "gwo": {"input": {}},
        "next_step": 0,
        "pending": {"output": {"lam.httpRequests": []}, "elements": [{"poll": poll_state}]},
        "status": "RUNNING",
        "result": None,
        "error": None,
        "meta": {},
    }
    for old in (base, {"schema": 2, **base}):  # schema 1 and 2 as written before
        state = RunState.from_dict(json.loads(json.dumps(old)))
        assert state.status == "RUNNING" and state.resume_at == 11.0
        assert state.to_dict()["pending"]["elements"] == [{"poll": poll_state}]
    error = {"type": "HttpStatusError", "message": "m", "step": None, "status": 500, "attempts": 1}
    new = {
        **base,
        "schema": 2,
        "status": "SUSPENDED",
        "pending": {"output": {}, "elements": [{"error": error}, {"poll": poll_state}]},
    }
    state = RunState.from_dict(json.loads(json.dumps(new)))
    assert state.status == SUSPENDED and state.resume_at == 11.0
    assert state.to_dict() == new
    assert state.record()["resumeAt"] == {"epoch": 11.0, "iso": "1970-01-01T00:00:11.000Z"}
    bad = {**new, "pending": {"output": {}, "elements": [{"error": {"type": "X"}}]}}
    with pytest.raises(DefinitionError, match=r"elements\[0\]\.error: missing message"):
        RunState.from_dict(bad)


async def test_a_budget_must_be_seconds(api, wf):
    flow = job_flow(api, wf, n=1, interval="1s")
    for budget in (-1, float("nan"), "30s"):
        with pytest.raises(DefinitionError, match="budget"):
            await engine(flow, FakeClock()).run({}, budget=budget)  # type: ignore[arg-type]


# -- (d): the single-attempt API --------------------------------------------------------------


async def test_a_loop_over_poller_attempt_is_the_engines_poll(api, wf):
    """Retry inside an attempt (a 503, then a 429's Retry-After), invalid JSON ignored
    (ignoreErrors), failWhen not holding:
    the same rows, decisions and counts as the engine's own loop."""
    request = poll(api.url + "/job", "2s", max_attempts=8, ignoreErrors=True)
    request["loopUntil"]["failWhen"] = "ctx.response.state === 'failed'"
    request["retry"] = {"maxAttempts": 3, "initialDelay": "1s", "jitter": "none"}

    def script() -> None:
        api.replies.clear()
        api.seen.clear()
        api.script(
            "GET",
            "/job",
            Reply(json={"state": "pending"}),
            Reply(status=503, json={"state": "busy"}),  # retried inside attempt 2
            Reply(json={"state": "pending"}),
            Reply(status=429, json={}, headers={"Retry-After": "7"}),
            Reply(text="not json", headers={"Content-Type": "application/json"}),
            Reply(json={"state": "done", "n": 6}),
        )

    literal = json.dumps({"lam.httpRequest": request})
    handler = wf.handler(
        "poll.py", f"import json\n\ndef transform(data):\n    return json.loads({literal!r})\n"
    )
    flow = str(wf.workflow([handler]))

    script()
    recorder = Recorder()
    record = await engine(flow, FakeClock(), recorder).run({})
    assert record["status"] == "SUCCESS", record
    engine_sent = len(api.seen)

    script()
    clock = FakeClock()
    rows: list[dict[str, Any]] = []
    decisions = []
    async with engine(flow, clock).poller(request, on_history=rows.append) as poller:
        state = poller.start()
        while True:
            if state.next_due > clock.now():
                await clock.sleep(state.next_due - clock.now())
            outcome = await poller.attempt(state)
            saved = json.dumps(outcome.state.to_dict())  # what a durable host keeps
            decisions.append(type(outcome.decision).__name__)
            if isinstance(outcome.decision, Wait):
                assert outcome.state.next_due == outcome.decision.until
                state = type(state).from_dict(json.loads(saved))
                continue
            break
    assert isinstance(outcome.decision, Succeed) and not isinstance(outcome.decision, Fail)
    assert outcome.result is not None
    assert outcome.result.value == record["result"]
    assert outcome.result.http() == {
        **record["gwo"]["step_1"]["http"],
        "headers": outcome.result.headers,
    }
    assert len(api.seen) == engine_sent
    assert rows == [
        {k: v for k, v in r.items() if k not in ("index", "stepName")} for r in recorder.rows
    ]
    outcomes = {"Wait": "wait", "Succeed": "success"}
    assert [r["outcome"] for r in rows] == [outcomes[d] for d in decisions]
    assert decisions == ["Wait"] * 3 + ["Succeed"]
    assert [r["durationMs"] for r in rows] == [0, 1000, 7000, 0]  # retries inside attempts
    assert rows[2]["error"].startswith("the response says it is JSON but is not")  # ignored
    assert [r["nextDue"] for r in rows[:3]] == [rows[i + 1]["at"] for i in range(3)]


async def test_poller_attempt_fails_past_the_deadline_and_refuses_a_plain_request(api, wf):
    flow = job_flow(api, wf, n=5, interval="2s")
    request = poll(api.url + "/jobs/j1", "2s")
    request["loopUntil"]["timeout"] = "3s"
    clock = FakeClock()
    eng = engine(flow, clock)
    async with eng.poller(request) as poller:
        state = poller.start()
        first = await poller.attempt(state)
        assert isinstance(first.decision, Wait) and first.state.attempt == 1
        clock.advance(5)
        late = await poller.attempt(state)
        assert isinstance(late.decision, Fail)
        assert late.decision.error.type_name == "DeadlineExceeded"
        assert late.state.attempt == 1  # nothing was sent
    with pytest.raises(DefinitionError, match="no loopUntil"):
        async with eng.poller({"method": "GET", "url": api.url + "/x"}):
            pass
