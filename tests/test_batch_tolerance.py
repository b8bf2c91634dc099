"""Batch tolerance: `lam.httpRequests` with `minSuccess` or `toleratedFailures` (a count or a
percentage) succeeds when enough requests succeed, stops early — cancelling the requests in
flight — once that can no longer happen, and keeps every request's result or error."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from conftest import Reply, run_path

from lamrunner.decide.batch import hopeless, tolerated
from lamrunner.definition.config import build_config
from lamrunner.definition.directives import HttpDirective, parse_directive
from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import Engine
from lamrunner.runner.state import RunState

GET = {"method": "GET", "url": "http://x/"}


def batch(size: int = 3, **siblings: Any) -> dict[str, Any]:
    return {"lam.httpRequests": [GET] * size, **siblings}


def min_success(value: dict[str, Any], config: dict[str, Any] | None = None) -> int | None:
    directive = parse_directive(value, config=config)
    assert isinstance(directive, HttpDirective)
    return directive.min_success


def test_the_rule():
    assert tolerated(10, 8) == 2
    assert [hopeless(10, 8, failed) for failed in (0, 2, 3)] == [False, False, True]
    assert hopeless(3, 0, 3) is False  # minSuccess 0: nothing is needed


@pytest.mark.parametrize(
    ("siblings", "size", "expected"),
    [
        ({}, 3, None),
        ({"minSuccess": 2}, 3, 2),
        ({"minSuccess": 0}, 3, 0),
        ({"minSuccess": "50%"}, 3, 2),  # rounds up: at least half
        ({"minSuccess": "100%"}, 4, 4),
        ({"toleratedFailures": 1}, 3, 2),
        ({"toleratedFailures": 7}, 3, 0),
        ({"toleratedFailures": "34%"}, 3, 2),  # rounds down: at most 34% may fail
        ({"toleratedFailures": "10%"}, 20, 18),
        ({"toleratedFailures": "12.5%"}, 8, 7),
    ],
)
def test_counts_and_percentages(siblings, size, expected):
    assert min_success(batch(size, **siblings)) == expected


def test_a_templated_tolerance_takes_the_configs_value():
    assert min_success(batch(3, minSuccess="<<config.need>>"), {"need": 2}) == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (batch(minSucess=2), r"unexpected sibling key 'minSucess'.*did you mean 'minSuccess'"),
        (batch(minSuccess=2, toleratedFailures=1), r"minSuccess or toleratedFailures, not both"),
        (batch(minSuccess=4), r"^minSuccess: 4 is more than the 3 requests of the batch"),
        (batch(minSuccess="abc"), r"^minSuccess: expected a whole number >= 0 or a percentage"),
        (batch(minSuccess=True), r"^minSuccess: expected a whole number"),
        (batch(toleratedFailures=-1), r"^toleratedFailures: expected a whole number"),
        (batch(toleratedFailures="150%"), r"^toleratedFailures: expected .* percentage"),
        ({"lam.httpRequest": GET, "minSuccess": 1}, r"unexpected sibling key 'minSuccess'"),
    ],
)
def test_bad_tolerances_are_refused(value, message):
    with pytest.raises(DefinitionError, match=message):
        parse_directive(value)


def batch_flow(
    wf, requests: list[dict[str, Any]], limits: dict[str, Any] | None = None, **tol: Any
):
    literal = json.dumps({"lam.httpRequests": requests, **tol})
    handler = wf.handler(
        "fan_out.py", f"import json\n\ndef transform(data):\n    return json.loads({literal!r})\n"
    )
    return wf.workflow([{"name": "fan_out", "handler": handler}], limits=limits)


async def test_enough_successes_succeed_and_every_result_and_error_is_kept(api, wf):
    api.script("GET", "/a", Reply(json={"id": "a"}))
    api.script("GET", "/b", Reply(status=500, json={"error": "boom"}))
    api.script("GET", "/c", Reply(json={"id": "c"}))
    requests = [{"method": "GET", "url": f"{api.url}/{p}"} for p in "abc"]
    record = await run_path(batch_flow(wf, requests, minSuccess=2), clock=FakeClock())

    assert record["status"] == "SUCCESS", record["error"]
    entry = record["gwo"]["step_1"]
    assert entry["response"] == [{"id": "a"}, None, {"id": "c"}]
    assert entry["http"][1]["error"]["type"] == "HttpStatusError"
    assert entry["http"][1]["status"] == 500
    assert entry["batch"] == {
        "requests": 3,
        "minSuccess": 2,
        "succeeded": 2,
        "failed": 1,
        "cancelled": 0,
    }


async def test_a_percentage_of_failures_is_tolerated(api, wf):
    api.script("GET", "/ok", Reply(json={"ok": True}))
    api.script("GET", "/bad", Reply(status=503))
    requests = [{"method": "GET", "url": f"{api.url}/{p}"} for p in ("ok", "bad", "ok", "bad")]
    record = await run_path(batch_flow(wf, requests, toleratedFailures="50%"), clock=FakeClock())
    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_1"]["batch"]["failed"] == 2


async def test_once_success_is_out_of_reach_the_polls_in_flight_are_cancelled(api, wf):
    """Real clock: the slow poll waits 30 s between attempts; the failure cancels it at once."""
    api.script("GET", "/bad", Reply(status=500, json={"error": "no such dataset"}))
    api.script("GET", "/slow", Reply(json={"state": "running"}))
    api.script("GET", "/ok", Reply(json={"state": "done"}))
    loop = {"condition": "ctx.response.state === 'done'", "initialDelay": "30s", "maxAttempts": 9}
    requests = [
        {"method": "GET", "url": f"{api.url}/ok", "loopUntil": loop},
        {"method": "GET", "url": f"{api.url}/slow", "loopUntil": loop},
        {"method": "GET", "url": f"{api.url}/bad"},
    ]
    started = time.monotonic()
    record = await run_path(batch_flow(wf, requests, toleratedFailures=0))

    assert time.monotonic() - started < 10
    assert record["status"] == "FAILED"
    error = record["error"]
    assert error["type"] == "BatchFailed" and error["step"] == "fan_out"
    assert error["message"].startswith(
        "lam.httpRequests: 1 of 3 requests failed, more than the 0 tolerated (minSuccess 3);"
        " 1 cancelled, 1 succeeded; first failure: lam.httpRequests[2]: "
    )
    assert len(api.requests_to("/slow")) == 1
    entry = record["gwo"]["step_1"]
    assert entry["response"] == [{"state": "done"}, None, None]
    assert entry["http"][1]["error"]["type"] == "RequestCancelled"
    assert entry["http"][2]["error"]["type"] == "HttpStatusError"
    assert entry["batch"] == {
        "requests": 3,
        "minSuccess": 3,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 1,
    }


async def test_requests_not_yet_started_are_never_sent(api, wf):
    api.script("GET", "/bad", Reply(status=500))
    api.script("GET", "/later", Reply(json={"ok": True}))
    requests = [{"method": "GET", "url": f"{api.url}/bad"}] + [
        {"method": "GET", "url": f"{api.url}/later"}
    ] * 3
    flow = batch_flow(
        wf, requests, limits={"concurrency": 1}, minSuccess="80%"
    )  # 4 of 4: rounds up
    record = await run_path(flow, clock=FakeClock())

    assert record["error"]["type"] == "BatchFailed"
    assert api.requests_to("/later") == []
    kinds = [h["error"]["type"] for h in record["gwo"]["step_1"]["http"]]
    assert kinds == ["HttpStatusError", "RequestCancelled", "RequestCancelled", "RequestCancelled"]


async def test_without_a_tolerance_one_failure_still_fails_the_step(api, wf):
    api.script("GET", "/a", Reply(json={"id": "a"}))
    api.script("GET", "/b", Reply(status=500))
    requests = [{"method": "GET", "url": f"{api.url}/{p}"} for p in "ab"]
    record = await run_path(batch_flow(wf, requests), clock=FakeClock())
    assert record["error"]["type"] == "HttpStatusError"
    assert "batch" not in record["gwo"]["step_1"]


async def test_a_bad_tolerance_names_the_step(api, wf):
    requests = [{"method": "GET", "url": f"{api.url}/a"}]
    record = await run_path(batch_flow(wf, requests, toleratedFailure=1), clock=FakeClock())
    assert record["error"]["type"] == "DefinitionError"
    assert record["error"]["step"] == "fan_out"
    assert "did you mean 'toleratedFailures'?" in record["error"]["message"]
    assert api.seen == []


async def test_a_suspended_tolerant_batch_resumes_with_its_failures_counted(api, wf):
    """budget=0: the step suspends while one poll waits; the resumed step (from the saved
    state) still counts the failure it had, and succeeds with it tolerated."""
    api.script("GET", "/bad", Reply(status=500))
    api.script("GET", "/ok", Reply(json={"s": "done"}))
    api.script("GET", "/slow", Reply(json={"s": "running"}), Reply(json={"s": "done"}))
    loop = {"condition": "ctx.response.s === 'done'", "initialDelay": "10s"}
    requests = [
        {"method": "GET", "url": f"{api.url}/bad"},
        {"method": "GET", "url": f"{api.url}/ok", "loopUntil": loop},
        {"method": "GET", "url": f"{api.url}/slow", "loopUntil": loop},
    ]
    workflow = load_workflow(batch_flow(wf, requests, minSuccess=2), env={})
    clock = FakeClock()
    engine = Engine(workflow, build_config(workflow.config), clock=clock)
    state = RunState.start(workflow.name, {})
    first = await engine.resume(state, budget=0)
    assert first["status"] == "SUSPENDED"

    saved = RunState.from_dict(json.loads(json.dumps(state.to_dict())))
    record = await engine.resume(saved)
    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["batch"]["failed"] == 1
    assert record["gwo"]["step_1"]["response"] == [None, {"s": "done"}, {"s": "done"}]
    assert len(api.requests_to("/bad")) == 1  # a failed request is not sent again


async def test_a_resumed_batch_whose_saved_failures_are_too_many_fails_at_once(api, wf):
    api.script("GET", "/bad", Reply(status=500))
    api.script("GET", "/slow", Reply(json={"s": "running"}))
    loop = {"condition": "ctx.response.s === 'done'", "initialDelay": "10s"}
    requests = [
        {"method": "GET", "url": f"{api.url}/bad"},
        {"method": "GET", "url": f"{api.url}/slow", "loopUntil": loop},
        {"method": "GET", "url": f"{api.url}/slow", "loopUntil": loop},
    ]
    workflow = load_workflow(batch_flow(wf, requests, toleratedFailures=1), env={})
    engine = Engine(workflow, build_config(workflow.config), clock=FakeClock())
    state = RunState.start(workflow.name, {})
    assert (await engine.resume(state, budget=0))["status"] == "SUSPENDED"
    saved = RunState.from_dict(json.loads(json.dumps(state.to_dict())))
    # a second failure would fail it: make one of the polls fail on its next attempt
    api.replies.clear()
    api.script("GET", "/slow", Reply(json={"s": "running"}, status=200))
    loop_fail = saved.pending.output["lam.httpRequests"][2]["loopUntil"]  # type: ignore[union-attr]
    loop_fail["maxAttempts"] = 2
    record = await engine.resume(saved)
    assert record["error"]["type"] == "BatchFailed", record["error"]
    kinds = [h.get("error", {}).get("type") for h in record["gwo"]["step_1"]["http"]]
    assert kinds == ["HttpStatusError", "RequestCancelled", "PollingExhausted"]
