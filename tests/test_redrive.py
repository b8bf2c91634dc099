"""Redrive: a FAILED run re-run from the step that failed, under its run id, keeping completed
steps and the requests that succeeded (a failed batch keeps its succeeded elements)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from conftest import Reply

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import RunState

LAMRUNNER = [sys.executable, "-m", "lamrunner"]


class Last(RunObserver):
    def __init__(self) -> None:
        self.saved = ""

    def save_run(self, state: RunState) -> None:
        self.saved = json.dumps(state.to_dict())

    def state(self) -> RunState:
        return RunState.from_dict(json.loads(self.saved))


def engine(path: Any, observer: RunObserver) -> Engine:
    workflow = load_workflow(path, env={})
    config = build_config(workflow.config)
    return Engine(workflow, config, clock=FakeClock(), observers=[observer])


def two_steps(api: Any, wf: Any) -> Any:
    api.script("POST", "/start", Reply(json={"id": "j1"}))
    start = wf.request_step("start", {"method": "POST", "url": api.url + "/start"})
    wait = wf.request_step(
        "wait",
        {
            "method": "POST",
            "url": api.url + "/jobs/j1",
            "loopUntil": {"condition": "ctx.response.state === 'done'", "maxAttempts": 2},
        },
    )
    return wf.workflow([{"name": "start", "handler": start}, {"name": "wait", "handler": wait}])


async def test_a_failed_poll_is_redriven_keeping_the_step_before(api, wf):
    path = two_steps(api, wf)
    api.script("POST", "/jobs/j1", Reply(json={"state": "running"}))
    last = Last()
    failed = await engine(path, last).run({"n": 1})
    assert failed["error"]["type"] == "PollingExhausted"
    first_key = api.requests_to("/jobs/j1")[0].headers["Idempotency-Key"]
    api.replies.clear()
    api.script("POST", "/jobs/j1", Reply(json={"state": "done"}))

    state = last.state()
    state.redrive(now=1_700_000_100.0)
    record = await engine(path, last).resume(state)

    assert record["status"] == "SUCCESS" and record["runId"] == failed["runId"]
    assert len(api.requests_to("/start")) == 1  # the completed step is kept, not re-run
    assert record["gwo"]["step_1"] == failed["gwo"]["step_1"]
    assert record["gwo"]["step_2"]["response"] == {"state": "done"}
    assert record["gwo"]["step_2"]["http"]["attempts"] == 1  # a fresh poll
    [redrive] = record["redrives"]
    assert redrive == {
        "at": "2023-11-14T22:15:00.000Z",
        "fromStep": 2,
        "error": failed["error"],
    }
    new_key = api.requests_to("/jobs/j1")[-1].headers["Idempotency-Key"]
    assert new_key != first_key  # a new submission: the failed one is not replayed


async def test_a_failed_batch_keeps_its_succeeded_elements(api, wf):
    api.script("GET", "/a", Reply(json={"a": 1}))
    api.script("GET", "/b", Reply(status=500, json={"error": "down"}), Reply(json={"b": 2}))
    api.script("GET", "/c", Reply(json={"c": 3}))
    literal = json.dumps(
        {"lam.httpRequests": [{"method": "GET", "url": f"{api.url}/{p}"} for p in "abc"]}
    )
    calls = wf.root / "calls.txt"
    handler = wf.handler(
        "batch.py",
        f"import json\ndef transform(data):\n    with open({str(calls)!r}, 'a') as f:\n"
        "        f.write('x')\n"
        f"    return json.loads({literal!r})\n",
    )
    path = wf.workflow([{"name": "fanout", "handler": handler}])
    last = Last()
    failed = await engine(path, last).run()
    assert failed["error"]["type"] == "HttpStatusError"
    assert failed["gwo"]["step_1"]["response"] == [{"a": 1}, None, {"c": 3}]

    state = last.state()
    state.redrive()
    record = await engine(path, last).resume(state)

    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_1"]["response"] == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert [len(api.requests_to(f"/{p}")) for p in "abc"] == [1, 2, 1]
    assert calls.read_text() == "x"  # the handler had returned: its directive is re-used


async def test_a_failed_handler_is_called_again(api, wf):
    flag = wf.root / "ok"
    handler = wf.handler(
        "h.py",
        f"import os\ndef transform(data):\n    if not os.path.exists({str(flag)!r}):\n"
        "        raise RuntimeError('not yet')\n    return {'done': True}\n",
    )
    path = wf.workflow([handler])
    last = Last()
    assert (await engine(path, last).run())["error"]["type"] == "HandlerError"
    flag.write_text("")
    state = last.state()
    state.redrive()
    record = await engine(path, last).resume(state)
    assert record["status"] == "SUCCESS" and record["result"] == {"done": True}


@pytest.mark.parametrize("status", ["RUNNING", "SUSPENDED", "SUCCESS"])
def test_only_a_failed_run_is_redriven(status):
    state = RunState.start("wf", {}, run_id="r1")
    state.status = status
    with pytest.raises(DefinitionError) as caught:
        state.redrive()
    assert caught.value.message == f"run r1 is {status}; only a FAILED run can be redriven"


# -- the command ------------------------------------------------------------------------------


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *LAMRUNNER, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_resume_redrive_reruns_a_failed_run_under_its_id(api, wf, tmp_path):
    store = str(tmp_path / "runs.sqlite3")
    path = str(two_steps(api, wf))
    api.script("POST", "/jobs/j1", Reply(json={"state": "failed"}))
    code, out, err = await cli("run", path, "--store", store)
    assert code == 1, err
    run_id = json.loads(out)["runId"]
    code, out, _ = await cli("resume", run_id, "--store", store)
    assert code == 2 and "already finished with FAILED" in out
    api.replies.clear()
    api.script("POST", "/jobs/j1", Reply(json={"state": "done"}))

    code, out, err = await cli("resume", "--redrive", run_id, "--store", store)

    assert code == 0, err
    record = json.loads(out)
    assert record["runId"] == run_id and record["status"] == "SUCCESS"
    assert record["redrives"][0]["fromStep"] == 2
    assert record["redrives"][0]["error"]["type"] == "PollingExhausted"
    assert len(api.requests_to("/start")) == 1
    code, out, _ = await cli("runs", "show", run_id, "--store", store)
    shown = json.loads(out)
    assert shown["run"]["status"] == "SUCCESS" and len(shown["run"]["redrives"]) == 1
    code, listing, _ = await cli("runs", "--json", "--store", store)
    assert [r["runId"] for r in json.loads(listing)] == [run_id]

    code, out, _ = await cli("resume", "--redrive", run_id, "--store", store)
    assert code == 2
    assert f"run {run_id} is SUCCESS: --redrive re-runs a FAILED run" in out
