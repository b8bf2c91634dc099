"""`lamrunner validate --explain`: the schedule of every loopUntil and retry, before running."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import Reply

from lamrunner.decide.timeline import explain_poll, explain_retry, jitter_range, step_functions
from lamrunner.definition.config import build_config
from lamrunner.definition.policies import Backoff, parse_loop_until, parse_retry
from lamrunner.definition.workflow import load_workflow
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import Engine
from lamrunner.runner.state import RunState
from lamrunner.store.sqlite import RunStore


def loop(**fields: Any) -> Any:
    return parse_loop_until({"condition": "true", **fields}, "loopUntil")


def test_a_fixed_poll_timeline_worst_case_and_step_functions_cost():
    shown = explain_poll(loop(maxAttempts=5, initialDelay="1s"), None, 30.0)
    assert [r["atS"] for r in shown["timeline"]] == [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]]
    assert shown["timeline"][1]["delayS"] == [1, 1]
    assert "delayS" not in shown["timeline"][0]
    assert shown["deadline"] is None
    assert shown["worstCase"] == {"attempts": 5, "requests": 5, "durationS": 4 + 5 * 30}
    assert shown["stepFunctions"]["transitions"] == 5 + 2 * 5 - 1  # Task+Choice+Wait, no last Wait
    assert shown["stepFunctions"]["usd"] == round(14 * 0.025 / 1000, 6)


def test_jitter_ranges():
    assert jitter_range(Backoff("fixed", 4.0, 30.0, 2.0, "none"), 2) == (4.0, 4.0)
    assert jitter_range(Backoff("fixed", 4.0, 30.0, 2.0, "full"), 2) == (0.0, 4.0)
    assert jitter_range(Backoff("fixed", 4.0, 30.0, 2.0, "equal"), 2) == (2.0, 4.0)
    assert jitter_range(Backoff("exponential", 1.0, 30.0, 2.0, "none"), 7) == (30.0, 30.0)


def test_where_the_deadline_cuts():
    shown = explain_poll(loop(maxAttempts=100, initialDelay="10s", timeout="35s"), None, 5.0)
    assert shown["deadline"] == {
        "timeoutS": 35.0,
        "lastPossibleAttempt": 4,
        "neverSent": 5,
        "maySkipFrom": None,
    }
    assert shown["worstCase"] == {"attempts": 4, "requests": 4, "durationS": 35.0}

    jittered = explain_poll(
        loop(maxAttempts=100, initialDelay="10s", timeout="35s", jitter="equal"), None, 5.0
    )
    assert jittered["deadline"]["lastPossibleAttempt"] == 8  # 7 delays of at least 5 s
    assert jittered["deadline"]["maySkipFrom"] == 5  # at 40 s with the longest delays
    assert jittered["timeline"][4] == {"attempt": 5, "atS": [20.0, 40.0], "delayS": [5.0, 10.0]}


def test_retries_inside_each_attempt_multiply_the_requests():
    retry = parse_retry({"maxAttempts": 3, "initialDelay": "1s"}, "retry")
    shown = explain_poll(loop(maxAttempts=4, initialDelay="2s"), retry, 10.0)
    assert shown["worstCase"]["requests"] == 12
    # delays 3 x 2 s, and per attempt 3 timeouts of 10 s and retry waits of 1 s and 2 s
    assert shown["worstCase"]["durationS"] == 6 + 4 * (30 + 3)
    assert shown["stepFunctions"]["transitions"] == 12 + 2 * 4 - 1


def test_a_long_timeline_keeps_its_start_and_end():
    shown = explain_poll(loop(maxAttempts=10_000, initialDelay="1s"), None, 1.0)
    attempts = [r["attempt"] for r in shown["timeline"]]
    assert attempts == [*range(1, 11), 9999, 10_000]
    assert shown["elidedAttempts"] == 10_000 - 12


def test_a_lone_retry():
    retry = parse_retry({"maxAttempts": 4, "initialDelay": "1s", "jitter": "full"}, "retry")
    shown = explain_retry(retry, 5.0)
    assert [r["atS"] for r in shown["timeline"]] == [[0, 0], [0, 1], [0, 3], [0, 7]]
    assert shown["worstCase"] == {"attempts": 4, "requests": 4, "durationS": 7 + 4 * 5}
    assert step_functions(4, 1)["transitions"] == 5


async def test_the_explained_timeline_is_the_one_a_run_follows(api, wf, tmp_path):
    """The same poll run against a server on a fake clock: its attempts are sent at the
    times the explanation gives."""
    api.script("GET", "/job", *[Reply(json={"s": "pending"})] * 5, Reply(json={"s": "done"}))
    fields = {"maxAttempts": 6, "strategy": "exponential", "initialDelay": "1s", "maxDelay": "3s"}
    request = {
        "method": "GET",
        "url": api.url + "/job",
        "loopUntil": {"condition": "ctx.response.s === 'done'", **fields},
    }
    path = wf.workflow([wf.request_step("wait", request)])
    workflow = load_workflow(path, env={})
    store = RunStore(tmp_path / "s.sqlite3")
    state = RunState.start(workflow.name, {})
    store.begin(state, {"workflow": str(path), "configFiles": [], "sets": []})
    clock = FakeClock(start=1_700_000_000.0)
    engine = Engine(workflow, build_config(workflow.config), clock=clock, observers=[store])
    record = await engine.resume(state)
    assert record["status"] == "SUCCESS"
    store.close()
    with __import__("sqlite3").connect(tmp_path / "s.sqlite3") as db:
        sent = [row[0] - 1_700_000_000.0 for row in db.execute("SELECT at FROM attempts")]

    shown = explain_poll(loop(**fields), None, 30.0)
    assert [r["atS"][0] for r in shown["timeline"]] == sent == [0, 1, 3, 6, 9, 12]
    assert len(api.requests_to("/job")) == shown["worstCase"]["attempts"]


def validate(*args: str) -> tuple[int, Any]:
    command = [sys.executable, "-m", "lamrunner", "validate", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout)


def flow(wf, *handlers: tuple[str, str]) -> Path:
    steps = [{"name": name, "handler": wf.handler(file, text)} for name, file, text in handlers]
    return wf.workflow(steps, config={"url": "http://127.0.0.1:9", "polls": 7})


JS_POLL = """
(data) => ({ "lam.httpRequest": { method: "GET", url: "<<config.url>>/jobs/" + data.input.id,
  loopUntil: { condition: "ctx.response.done", maxAttempts: "<<config.polls>>",
               initialDelay: "2s", timeout: "1m" } } })
"""
JS_LATER = """
(data) => ({ "lam.httpRequest": { method: "GET", url: data.step_1.response.next,
  retry: { maxAttempts: 4, initialDelay: "250ms" }, // the handler needs step 1's response
  timeout: "5s" } })
"""
PY_DECLARED = """
def transform(data):
    job = data["step_1"]["response"]["id"]
    return {"lam.httpRequest": {
        "method": "GET", "url": f"http://127.0.0.1:9/jobs/{job}", "timeout": "5s",
        "loopUntil": {"condition": "ctx.response.done", "maxAttempts": 3,
                      "initialDelay": "1s", "maxDelay": wait_cap()},
    }}
"""


async def test_validate_explain_calls_js_handlers_and_reads_declared_policies(wf):
    path = flow(
        wf,
        ("start", "start.js", JS_POLL),
        ("next", "later.js", JS_LATER),
        ("wait", "wait.py", PY_DECLARED),
    )
    code, out = await asyncio.to_thread(validate, str(path), "--explain", "--input", '{"id": 1}')
    assert code == 0, out
    start, later, wait = out["explain"]
    assert (start["step"], start["where"], start["source"]) == (
        "start",
        "lam.httpRequest",
        "handler output",
    )
    assert start["loopUntil"]["maxAttempts"] == 7  # the template filled from the config
    assert start["loopUntil"]["deadline"]["timeoutS"] == 60.0
    assert (later["step"], later["where"], later["source"]) == ("next", "later.js:2", "declared")
    assert "could not be called" in later["note"]
    assert later["retry"]["worstCase"] == {"attempts": 4, "requests": 4, "durationS": 1.75 + 4 * 30}
    assert (wait["step"], wait["where"], wait["source"]) == ("wait", "wait.py:3", "declared")
    assert wait["loopUntil"]["maxAttempts"] == 3
    assert wait["loopUntil"]["worstCase"]["durationS"] == 2 + 3 * 5  # maxDelay: not a literal

    code, out = await asyncio.to_thread(validate, str(path), "--explain")
    assert code == 0 and out["explain"][0]["source"] == "declared"
    assert out["explain"][0]["note"] == "no --input: the handler was not called"


async def test_validate_explain_checks_the_handlers_directive(wf):
    bad = """
    (data) => ({ "lam.httpRequests": [{ method: "GET", url: "http://127.0.0.1:9/a" }],
                 minSucess: 1 })
    """
    path = flow(wf, ("fan_out", "fan.js", bad))
    code, out = await asyncio.to_thread(validate, str(path), "--explain", "--input", "{}")
    assert code == 2 and out["valid"] is False
    assert out["error"]["type"] == "DefinitionError" and out["error"]["step"] == "fan_out"
    assert "did you mean 'minSuccess'?" in out["error"]["message"]

    code, out = await asyncio.to_thread(validate, str(path), "--input", "{}")
    assert code == 2 and "--input is only used with --explain" in out["error"]["message"]
