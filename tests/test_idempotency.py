"""Submit once across crashes: a POST or PATCH in a step that polls sends an Idempotency-Key,
made and checkpointed before its first send, the same on every attempt and after a resume."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import pytest
from conftest import Reply, run_path

from lamrunner.definition.directives import parse_directive
from lamrunner.errors import DefinitionError
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import PendingStep, RunState
from lamrunner.store.sqlite import RunStore

LAMRUNNER = [sys.executable, "-m", "lamrunner"]


def polled(url: str, method: str = "POST", **extra: Any) -> dict[str, Any]:
    return {
        "method": method,
        "url": url + "/jobs",
        "body": {"datasetId": "ds-1"},
        "loopUntil": {"condition": "ctx.response.state === 'done'", "initialDelay": "1s"},
        **extra,
    }


def job_replies(api: Any, path: str = "/jobs", method: str = "POST") -> None:
    api.script(
        method,
        path,
        Reply(json={"state": "running"}),
        Reply(json={"state": "running"}),
        Reply(json={"state": "done"}),
    )


class Saves(RunObserver):
    def __init__(self) -> None:
        self.states: list[dict[str, Any]] = []

    def save_run(self, state: RunState) -> None:
        self.states.append(json.loads(json.dumps(state.to_dict())))


async def test_a_polled_post_sends_one_key_on_every_attempt_saved_before_the_first(api, wf):
    job_replies(api)
    saves = Saves()
    path = wf.workflow([wf.request_step("submit", polled(api.url))])

    record = await run_path(path, clock=FakeClock(), observers=[saves])

    assert record["status"] == "SUCCESS"
    keys = {s.headers.get("Idempotency-Key") for s in api.requests_to("/jobs")}
    assert len(keys) == 1 and None not in keys
    [key] = keys
    assert str(uuid.UUID(key)) == key
    first_save = saves.states[0]  # saved before any request went out
    assert first_save["pending"]["keys"] == [key]
    assert first_save["pending"]["elements"] == [None]


@pytest.mark.parametrize(
    ("method", "extra", "header"),
    [
        ("PATCH", {}, "Idempotency-Key"),
        ("POST", {"idempotencyKey": "X-Request-Id"}, "X-Request-Id"),
        ("PUT", {"idempotencyKey": True}, "Idempotency-Key"),
        ("POST", {"idempotencyKey": "<<config.keyHeader>>"}, "X-Dedup"),
    ],
)
async def test_the_header_by_method_and_by_choice(api, wf, method, extra, header):
    job_replies(api, method=method)
    step = wf.request_step("submit", polled(api.url, method, **extra))
    path = wf.workflow([step], config={"keyHeader": "X-Dedup"})
    record = await run_path(path, clock=FakeClock())
    assert record["status"] == "SUCCESS", record
    sent = [{k.lower(): v for k, v in s.headers.items()} for s in api.requests_to("/jobs")]
    assert len({s[header.lower()] for s in sent}) == 1
    others = {"idempotency-key", "x-request-id", "x-dedup"} - {header.lower()}
    assert not any(h in s for s in sent for h in others)


@pytest.mark.parametrize(
    "request_",
    [
        lambda url: polled(url, idempotencyKey=False),  # opted out
        lambda url: polled(url, "GET"),  # idempotent method
        lambda url: {"method": "POST", "url": url + "/jobs"},  # a step that does not poll
        lambda url: polled(url, headers={"Idempotency-Key": "mine"}),  # the handler's own
    ],
)
async def test_no_key_is_made_when_not_asked_for(api, wf, request_):
    job_replies(api, method=request_("")["method"])
    saves = Saves()
    path = wf.workflow([wf.request_step("submit", request_(api.url))])
    await run_path(path, clock=FakeClock(), observers=[saves])
    assert {s.headers.get("Idempotency-Key") for s in api.requests_to("/jobs")} <= {None, "mine"}
    assert all("keys" not in (s["pending"] or {}) for s in saves.states)


async def test_a_batch_keys_each_post_of_a_step_that_polls(api, wf):
    api.script("POST", "/submit", Reply(json={"ok": True}))
    job_replies(api, "/jobs", "GET")
    literal = json.dumps(
        {
            "lam.httpRequests": [
                {"method": "POST", "url": api.url + "/submit"},
                {"method": "POST", "url": api.url + "/submit"},
                polled(api.url, "GET"),
            ]
        }
    )
    handler = wf.handler(
        "b.py", f"import json\ndef transform(data):\n    return json.loads({literal!r})\n"
    )
    await run_path(wf.workflow([handler]), clock=FakeClock())
    keys = [s.headers.get("Idempotency-Key") for s in api.requests_to("/submit")]
    assert len(set(keys)) == 2 and None not in keys
    assert all("Idempotency-Key" not in s.headers for s in api.requests_to("/jobs"))


def test_idempotency_key_is_validated_naming_the_field():
    for bad in (3, "has space", "", ["x"]):
        with pytest.raises(DefinitionError) as caught:
            parse_directive(
                {"lam.httpRequest": {"method": "POST", "url": "u", "idempotencyKey": bad}}
            )
        assert caught.value.message.startswith(
            "lam.httpRequest.idempotencyKey: expected true, false or a header name"
        )
    with pytest.raises(DefinitionError) as caught:
        parse_directive({"lam.httpRequest": {"method": "POST", "url": "u", "idempotencykey": 1}})
    assert "did you mean 'idempotencyKey'" in caught.value.message


def test_a_pending_step_saved_before_keys_existed_loads():
    old = {"output": {"lam.httpRequest": {}}, "elements": [None]}
    assert PendingStep.from_dict(old).keys is None
    assert PendingStep.from_dict(old).to_dict() == old
    with pytest.raises(DefinitionError) as caught:
        PendingStep.from_dict({**old, "keys": [3]})
    assert "pending.keys: expected a list of strings or nulls" in caught.value.message


async def wait_until(predicate: Any, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


async def test_a_killed_run_resumes_with_the_same_key(api, wf, tmp_path):
    """The process is killed mid-poll (SIGKILL: nothing is cleaned up); the resumed run, in a
    new process, sends the key the first one made."""
    store = str(tmp_path / "runs.sqlite3")
    api.script(
        "POST", "/jobs", *[Reply(json={"state": "running"})] * 3, Reply(json={"state": "done"})
    )
    request = polled(api.url)
    request["loopUntil"]["initialDelay"] = "300ms"
    path = str(wf.workflow([wf.request_step("submit", request)]))
    run = await asyncio.create_subprocess_exec(
        *LAMRUNNER,
        "run",
        path,
        "--store",
        store,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_until(lambda: len(api.requests_to("/jobs")) >= 2)
    run.kill()
    await run.wait()
    [summary] = RunStore(store).list()
    before = {s.headers["Idempotency-Key"] for s in api.requests_to("/jobs")}

    proc = await asyncio.create_subprocess_exec(
        *LAMRUNNER,
        "resume",
        summary.run_id,
        "--store",
        store,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)

    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["status"] == "SUCCESS"
    after = {s.headers["Idempotency-Key"] for s in api.requests_to("/jobs")}
    assert len(before) == 1 and after == before
    assert len(api.requests_to("/jobs")) == 4
