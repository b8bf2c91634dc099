"""onGiveUp: a poll that gives up sends one request (to cancel the remote job), rendered with
`<<last.response.…>>` from its last response; `lamrunner cancel` stops a run, running or not.

Every test polls a real aiohttp server on 127.0.0.1; the engine-level ones skip time with a
FakeClock, the CLI ones run real `lamrunner` processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import pytest
from conftest import Reply, run_path

from lamrunner.definition.directives import parse_directive
from lamrunner.errors import DefinitionError
from lamrunner.runner.clock import FakeClock
from lamrunner.store.sqlite import RunStore

LAMRUNNER = [sys.executable, "-m", "lamrunner"]


def job_poll(url: str, **loop: Any) -> dict[str, Any]:
    """POST /jobs, polled until its state is done; onGiveUp DELETEs the job it answered."""
    return {
        "method": "POST",
        "url": url + "/jobs",
        "headers": {"Authorization": "Bearer <<config.token>>"},
        "loopUntil": {
            "condition": "ctx.response.state === 'done'",
            "failWhen": "ctx.response.state === 'failed'",
            "initialDelay": "1s",
            **loop,
        },
        "onGiveUp": {
            "method": "DELETE",
            "url": url + "/jobs/<<last.response.id>>",
            "headers": {"Authorization": "Bearer <<config.token>>"},
            "body": {"reason": "lamrunner gave up", "lastState": "<<last.response.state>>"},
        },
    }


def flow(wf: Any, request: dict[str, Any]) -> Any:
    step = wf.request_step("wait", request)
    return wf.workflow([{"name": "wait", "handler": step}], config={"token": "s3cret-token"})


@pytest.mark.parametrize(
    ("replies", "loop", "error"),
    [
        ([Reply(json={"id": "j7", "state": "running"})], {"maxAttempts": 3}, "PollingExhausted"),
        (
            [
                Reply(json={"id": "j7", "state": "running"}),
                Reply(json={"id": "j7", "state": "failed"}),
            ],
            {"maxAttempts": 5},
            "PollingFailed",
        ),
        ([Reply(json={"id": "j7", "state": "running"})], {"timeout": "3.5s"}, "DeadlineExceeded"),
    ],
)
async def test_a_poll_that_gives_up_sends_on_give_up_with_its_last_response(
    api, wf, replies, loop, error
):
    api.script("POST", "/jobs", *replies)
    api.script("DELETE", "/jobs/j7", Reply(status=202, json={"cancelled": True}))

    record = await run_path(flow(wf, job_poll(api.url, **loop)), clock=FakeClock())

    assert record["status"] == "FAILED" and record["error"]["type"] == error
    [sent] = api.requests_to("/jobs/j7")
    assert sent.method == "DELETE"
    assert sent.headers["Authorization"] == "Bearer s3cret-token"
    last_state = "failed" if error == "PollingFailed" else "running"
    assert json.loads(sent.body) == {"reason": "lamrunner gave up", "lastState": last_state}
    [outcome] = record["giveUps"]
    assert outcome["reason"] == error
    assert outcome["status"] == 202 and outcome["sent"] is True and "error" not in outcome
    assert outcome["method"] == "DELETE" and outcome["url"] == api.url + "/jobs/j7"
    assert outcome["step"] == "wait" and outcome["element"] == 0
    assert outcome["where"] == "lam.httpRequest.onGiveUp"


async def test_the_last_state_is_the_last_answer_and_secrets_are_masked_in_the_record(api, wf):
    api.script(
        "POST",
        "/jobs",
        Reply(json={"id": "j7", "state": "queued"}),
        Reply(json={"id": "j7", "state": "running"}),
    )
    api.script("DELETE", "/jobs/j7", Reply(status=500, text="boom s3cret-token"))

    record = await run_path(flow(wf, job_poll(api.url, maxAttempts=2)), clock=FakeClock())

    [sent] = api.requests_to("/jobs/j7")
    assert json.loads(sent.body) == {"reason": "lamrunner gave up", "lastState": "running"}
    [outcome] = record["giveUps"]
    assert outcome["status"] == 500
    assert "answered 500" in outcome["error"] and "s3cret-token" not in json.dumps(record)


async def test_success_sends_no_give_up_and_a_poll_without_one_sends_nothing(api, wf):
    api.script("POST", "/jobs", Reply(json={"id": "j7", "state": "done"}))
    record = await run_path(flow(wf, job_poll(api.url)), clock=FakeClock())
    assert record["status"] == "SUCCESS" and "giveUps" not in record
    assert api.requests_to("/jobs/j7") == []


async def test_a_give_up_that_cannot_be_rendered_is_an_outcome_not_a_crash(api, wf):
    api.script("POST", "/jobs", Reply(json={"state": "running"}))  # no id to cancel
    record = await run_path(flow(wf, job_poll(api.url, maxAttempts=2)), clock=FakeClock())
    assert record["error"]["type"] == "PollingExhausted"
    [outcome] = record["giveUps"]
    assert outcome["sent"] is False and "<<last.response.id>>" in outcome["error"]
    assert api.requests_to("/jobs/") == []


async def test_an_interrupted_poll_sends_its_give_up_before_it_stops(api, wf):
    api.script("POST", "/jobs", Reply(json={"id": "j7", "state": "running"}))
    api.script("DELETE", "/jobs/j7", Reply(status=204))
    path = flow(wf, job_poll(api.url, maxAttempts=1000, initialDelay="50ms"))

    task = asyncio.ensure_future(run_path(path))
    await wait_until(lambda: len(api.requests_to("/jobs")) >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [sent] = api.requests_to("/jobs/j7")
    assert sent.method == "DELETE"


@pytest.mark.parametrize(
    ("give_up", "message"),
    [
        ({"method": "DELETE", "url": "x", "retry": {"maxAttempts": 2}}, "unknown key 'retry'"),
        ({"method": "DELETE", "urll": "x"}, "did you mean 'url'"),
        ("DELETE /jobs", "onGiveUp: expected a mapping, got a string"),
        ({"method": "ZAP", "url": "x"}, "onGiveUp.method: 'ZAP' is not one of"),
    ],
)
def test_on_give_up_is_checked_like_a_request(give_up, message):
    request = {"method": "GET", "url": "http://h/x", "loopUntil": {"condition": "true"}}
    with pytest.raises(DefinitionError) as caught:
        parse_directive({"lam.httpRequest": {**request, "onGiveUp": give_up}})
    assert message in caught.value.message
    assert "lam.httpRequest.onGiveUp" in caught.value.message


def test_on_give_up_needs_a_poll_and_a_typo_of_it_is_named():
    with pytest.raises(DefinitionError) as caught:
        parse_directive(
            {"lam.httpRequest": {"method": "GET", "url": "u", "onGiveUp": {"method": "GET"}}}
        )
    assert "onGiveUp: only a request with loopUntil gives up" in caught.value.message
    with pytest.raises(DefinitionError) as caught:
        parse_directive({"lam.httpRequest": {"method": "GET", "url": "u", "onGiveup": {}}})
    assert "did you mean 'onGiveUp'" in caught.value.message


async def test_a_give_up_with_a_bad_field_fails_the_step_naming_it(api, wf):
    request = job_poll(api.url)
    request["onGiveUp"]["timeout"] = "soon"
    record = await run_path(flow(wf, request), clock=FakeClock())
    assert record["error"]["type"] == "DefinitionError" and record["error"]["step"] == "wait"
    assert "lam.httpRequest.onGiveUp.timeout" in record["error"]["message"]
    assert api.seen == []


# -- lamrunner cancel and signals: real processes -----------------------------------------------


async def cli(*args: str, timeout: float = 40) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *LAMRUNNER, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wait_until(predicate: Any, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


def slow_job(api: Any, wf: Any, interval: str = "300ms") -> str:
    api.script("POST", "/jobs", Reply(json={"id": "j7", "state": "running"}))
    api.script("DELETE", "/jobs/j7", Reply(status=202, json={"cancelled": True}))
    return str(flow(wf, job_poll(api.url, initialDelay=interval, maxAttempts=1000)))


async def test_lamrunner_cancel_stops_a_run_another_process_is_running(api, wf, tmp_path):
    store = str(tmp_path / "runs.sqlite3")
    run = await asyncio.create_subprocess_exec(
        *LAMRUNNER,
        "run",
        slow_job(api, wf),
        "--store",
        store,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await wait_until(lambda: len(api.requests_to("/jobs")) >= 2)
    [summary] = RunStore(store).list()

    code, out, err = await cli("cancel", summary.run_id, "--store", store)

    assert code == 0, err
    cancelled = json.loads(out)
    assert cancelled["status"] == "FAILED" and cancelled["error"]["type"] == "Cancelled"
    ran_out, ran_err = await asyncio.wait_for(run.communicate(), 20)
    assert run.returncode == 1, ran_err.decode()
    record = json.loads(ran_out)
    assert record["error"]["type"] == "Cancelled" and record["error"]["step"] == "wait"
    [outcome] = record["giveUps"]
    assert outcome["reason"] == "Cancelled" and outcome["status"] == 202
    assert [s.method for s in api.requests_to("/jobs/j7")] == ["DELETE"]
    assert cancelled["giveUps"] == record["giveUps"]
    code, out, _ = await cli("resume", summary.run_id, "--store", store)
    assert code == 2 and "already finished with FAILED" in out


async def test_lamrunner_cancel_ends_a_suspended_run_at_once(api, wf, tmp_path):
    store = str(tmp_path / "runs.sqlite3")
    code, out, err = await cli("run", slow_job(api, wf, "10m"), "--budget", "1s", "--store", store)
    assert code == 3, err
    run_id = json.loads(out)["runId"]

    code, out, err = await cli("cancel", run_id, "--store", store)

    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "FAILED" and record["error"]["type"] == "Cancelled"
    [outcome] = record["giveUps"]  # from the last response saved with the poll's state
    assert outcome["reason"] == "Cancelled" and outcome["url"] == api.url + "/jobs/j7"
    [sent] = api.requests_to("/jobs/j7")
    assert json.loads(sent.body)["lastState"] == "running"
    state, _, status = RunStore(store).load(run_id)
    assert status == "FAILED" and state.meta["giveUps"] == record["giveUps"]
    code, out, _ = await cli("cancel", run_id, "--store", store)
    assert code == 2 and "already finished with FAILED; nothing to cancel" in out
    code, out, _ = await cli("cancel", "no-such-run", "--store", store)
    assert code == 2 and "is not in the run store" in out


async def test_sigterm_sends_the_give_up_and_leaves_the_run_resumable(api, wf, tmp_path):
    store = str(tmp_path / "runs.sqlite3")
    run = await asyncio.create_subprocess_exec(
        *LAMRUNNER,
        "run",
        slow_job(api, wf),
        "--store",
        store,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await wait_until(lambda: len(api.requests_to("/jobs")) >= 2)

    os.kill(run.pid, signal.SIGTERM)
    out, err = await asyncio.wait_for(run.communicate(), 20)

    assert run.returncode == 130, err.decode()
    record = json.loads(out)
    assert record["status"] == "INTERRUPTED"
    [outcome] = record["giveUps"]
    assert outcome["reason"] == "Interrupted" and outcome["status"] == 202
    assert [s.method for s in api.requests_to("/jobs/j7")] == ["DELETE"]
    state, _, status = RunStore(store).load(record["runId"])
    assert status == "INTERRUPTED" and state.meta["giveUps"] == record["giveUps"]
