"""Routing between steps (docs/declarative-steps.md): `next`, `onError`, `continueOnFailure`, actions in
responses (`actionFrom`), the run's bound on step executions, what `validate` refuses, and a
routed run resumed by another process. HTTP against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Reply, run_path

from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.runner.state import RunState

LAMRUNNER = [sys.executable, "-m", "lamrunner"]
SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "client-poll.yaml"


def step(name: str, handler: str, **route: Any) -> dict[str, Any]:
    return {"name": name, "handler": handler, **route}


def routes(record: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    return [(r["step"], r["entered"], r["left"], r["to"]) for r in record["route"]]


def failing(wf, name: str, url: str) -> str:
    """A handler whose request gets a 500 (no retry): the step fails."""
    return wf.request_step(name, {"method": "GET", "url": url})


# -- next ----------------------------------------------------------------------------------


async def test_next_skips_to_the_named_step_and_the_record_shows_the_route(wf):
    path = wf.workflow(
        [
            step("a", wf.py_step("a", "1"), next="c"),
            step("b", wf.py_step("b", "2")),
            step("c", wf.py_step("c", "data['step_1']['data'] + 10")),
        ]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["result"] == 11
    assert "step_2" not in record["gwo"]  # b never ran
    assert routes(record) == [("a", "start", "next", "c"), ("c", "next", "end", None)]
    assert all(r["at"].endswith("Z") for r in record["route"])


async def test_a_run_in_order_has_no_route_in_its_record(wf):
    path = wf.workflow([wf.py_step("a", "1"), wf.py_step("b", "2")])
    record = await run_path(path)
    assert set(record) == {"runId", "workflow", "status", "result", "error", "gwo"}


async def test_a_loop_reruns_a_step_overwriting_its_gwo_entry_until_a_handler_exits(wf):
    count = wf.handler(
        "count.py",
        """
        def transform(data):
            n = (data.get('step_1') or {}).get('data', 0) + 1
            return {'lam.exit': True, 'data': {'n': n}} if n == 3 else n
        """,
    )
    path = wf.workflow(
        [step("count", count), step("again", wf.py_step("again", "0"), next="count")]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["result"] == {"n": 3}
    assert record["gwo"]["step_1"] == {"data": {"n": 3}}  # the latest execution's
    assert [r["left"] for r in record["route"]] == [
        "sequence",
        "next",
        "sequence",
        "next",
        "exit",
    ]


async def test_a_loop_that_never_ends_stops_at_max_step_runs(wf):
    path = wf.workflow(
        [step("a", wf.py_step("a", "1")), step("b", wf.py_step("b", "2"), next="a")],
        limits={"maxStepRuns": 5},
    )
    record = await run_path(path)
    assert record["status"] == "FAILED"
    error = record["error"]
    assert error["type"] == "StepRunsExceeded" and error["step"] == "b"
    assert "limits.maxStepRuns" in error["message"] and "5 step executions" in error["message"]
    assert len(record["route"]) == 5


# -- onError and continueOnFailure ----------------------------------------------------------


async def test_on_error_next_continues_at_its_step_with_the_error_in_the_gwo(api, wf):
    api.script("GET", "/boom", Reply(status=500, json={"error": "down"}))
    path = wf.workflow(
        [
            step("call", failing(wf, "call", api.url + "/boom"), onError={"next": "recover"}),
            step("skipped", wf.py_step("skipped", "'no'")),
            step("recover", wf.py_step("recover", "{'saw': data['step_1']['error']['type']}")),
        ]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["error"] is None
    assert record["result"] == {"saw": "HttpStatusError"}
    entry = record["gwo"]["step_1"]
    assert entry["route"] == "onError.next" and "500" in entry["error"]["message"]
    assert routes(record)[0] == ("call", "start", "onError.next", "recover")
    assert record["route"][0]["error"]["type"] == "HttpStatusError"


async def test_on_error_exit_ends_the_run_successfully_with_its_result(api, wf):
    api.script("GET", "/boom", Reply(status=503))
    path = wf.workflow(
        [
            step(
                "call",
                failing(wf, "call", api.url + "/boom"),
                onError={"exit": True, "result": {"fallback": "<<config.mode>>"}},
            ),
            step("never", wf.py_step("never", "1")),
        ],
        config={"mode": "cached"},
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["error"] is None
    assert record["result"] == {"fallback": "cached"}
    assert record["gwo"]["step_1"]["route"] == "onError.exit"
    assert record["gwo"]["step_1"]["error"]["type"] == "HttpStatusError"
    assert "step_2" not in record["gwo"]
    assert routes(record) == [("call", "start", "onError.exit", None)]


async def test_on_error_action_is_seed_001s_form_of_on_error(api, wf):
    api.script("GET", "/boom", Reply(status=404))
    path = wf.workflow(
        [
            step(
                "call",
                failing(wf, "call", api.url + "/boom"),
                onError={"action": {"exit": True, "result": {"exit-action-data": "EXIT!!!"}}},
            )
        ]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["result"] == {"exit-action-data": "EXIT!!!"}


async def test_continue_on_failure_records_the_failure_and_goes_on(api, wf):
    api.script("GET", "/boom", Reply(status=500))
    path = wf.workflow(
        [
            step("call", failing(wf, "call", api.url + "/boom"), continueOnFailure=True),
            step("next", wf.py_step("next", "'error' in data['step_1']")),
        ]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["result"] is True
    assert record["gwo"]["step_1"]["route"] == "continueOnFailure"
    assert routes(record)[0] == ("call", "start", "continueOnFailure", "next")


async def test_a_failure_without_a_route_still_fails_the_run(api, wf):
    api.script("GET", "/boom", Reply(status=500))
    path = wf.workflow([step("call", failing(wf, "call", api.url + "/boom"))])
    record = await run_path(path)
    assert record["status"] == "FAILED" and record["error"]["type"] == "HttpStatusError"


async def test_the_error_kept_by_a_route_is_masked(api, wf):
    api.script("GET", "/boom", Reply(status=500))
    url = api.url + "/boom?key=<<config.apiKey>>"
    path = wf.workflow(
        [
            step(
                "call",
                failing(wf, "call", url),
                onError={"exit": True, "result": "<<config.apiKey>>"},
            )
        ],
        config={"apiKey": "s3cr3t-value-123"},
    )
    record = await run_path(path)
    assert "s3cr3t-value-123" not in json.dumps(record)


# -- actions in responses (seed 001) --------------------------------------------------------


def action_poll(api_url: str, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "method": "GET",
        "url": api_url + path,
        "actionFrom": "$.action",
        "loopUntil": {"initialDelay": "10ms", "maxAttempts": 10},
        **extra,
    }


async def test_a_poll_stops_at_an_action_and_routes_to_its_next_step(api, wf):
    api.script(
        "GET",
        "/status",
        Reply(json={"state": "running"}),
        Reply(json={"state": "running"}),
        Reply(json={"action": {"next": "done"}}),
    )
    path = wf.workflow(
        [
            step("poll", wf.request_step("poll", action_poll(api.url, "/status"))),
            step("skipped", wf.py_step("skipped", "1")),
            step("done", wf.py_step("done", "'done'")),
        ]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["result"] == "done"
    assert len(api.requests_to("/status")) == 3
    assert record["gwo"]["step_1"]["response"] == {"action": {"next": "done"}}
    assert routes(record) == [
        ("poll", "start", "action.next", "done"),
        ("done", "action.next", "end", None),
    ]


async def test_an_exit_action_ends_the_run_with_its_result(api, wf):
    api.script("GET", "/status", Reply(json={"action": {"exit": True, "result": {"ok": 1}}}))
    path = wf.workflow(
        [
            step("poll", wf.request_step("poll", action_poll(api.url, "/status"))),
            step("never", wf.py_step("never", "1")),
        ]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["result"] == {"ok": 1}
    assert routes(record) == [("poll", "start", "action.exit", None)]


async def test_a_url_action_posts_its_data_to_the_url_relative_to_the_polled_one(api, wf):
    api.script("GET", "/v1/status", Reply(json={"action": {"url": "next-step", "data": "all-ok"}}))
    api.script("POST", "/v1/next-step", Reply(json={"loaded": True}))
    request = action_poll(api.url, "/v1/status", headers={"Authorization": "Bearer t0k"})
    path = wf.workflow(
        [
            step("poll", wf.request_step("poll", request)),
            step("after", wf.py_step("after", "data['step_1']['response']")),
        ]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["result"] == {"loaded": True}
    (sent,) = api.requests_to("/v1/next-step")
    assert json.loads(sent.body) == "all-ok"
    assert sent.headers["Authorization"] == "Bearer t0k"  # same origin: the poll's headers
    entry = record["gwo"]["step_1"]
    assert entry["poll"]["response"]["action"]["url"] == "next-step"
    assert routes(record)[0] == ("poll", "start", "action.url", "after")
    assert record["route"][0]["url"] == api.url + "/v1/next-step"


async def test_a_url_action_to_another_origin_gets_no_credentials(api, wf):
    other = api.url.replace("127.0.0.1", "localhost")
    api.script("GET", "/status", Reply(json={"action": {"url": other + "/elsewhere"}}))
    api.script("GET", "/elsewhere", Reply(json={"fine": True}))
    request = action_poll(api.url, "/status", headers={"Authorization": "Bearer t0k"})
    path = wf.workflow([step("poll", wf.request_step("poll", request))])
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["result"] == {"fine": True}
    (sent,) = api.requests_to("/elsewhere")
    assert sent.method == "GET" and "Authorization" not in sent.headers


async def test_a_poll_without_an_action_exhausts_and_its_on_error_runs(api, wf):
    api.script("GET", "/status", Reply(json={"state": "running"}))
    request = action_poll(api.url, "/status")
    request["loopUntil"]["maxAttempts"] = 3
    path = wf.workflow(
        [
            step(
                "poll",
                wf.request_step("poll", request),
                onError={"action": {"exit": True, "result": "gave up"}},
            )
        ]
    )
    record = await run_path(path)
    assert len(api.requests_to("/status")) == 3
    assert record["status"] == "SUCCESS" and record["result"] == "gave up"
    assert record["gwo"]["step_1"]["error"]["type"] == "PollingExhausted"


async def test_an_action_naming_no_step_fails_the_run_with_a_route_error(api, wf):
    api.script("GET", "/status", Reply(json={"action": {"next": "dnoe"}}))
    path = wf.workflow(
        [
            step(
                "poll",
                wf.request_step("poll", action_poll(api.url, "/status")),
                continueOnFailure=True,
            ),
            step("done", wf.py_step("done", "1")),
        ]
    )
    record = await run_path(path)
    assert record["status"] == "FAILED"  # not handled by continueOnFailure
    assert record["error"]["type"] == "RouteError" and record["error"]["step"] == "poll"
    assert (
        "'dnoe'" in record["error"]["message"]
        and "did you mean 'done'" in record["error"]["message"]
    )


async def test_an_action_that_is_not_one_fails_clearly(api, wf):
    api.script("GET", "/status", Reply(json={"action": {"goto": "x"}}))
    path = wf.workflow([step("poll", wf.request_step("poll", action_poll(api.url, "/status")))])
    record = await run_path(path)
    assert (
        record["error"]["type"] == "RouteError" and "is not an action" in record["error"]["message"]
    )


async def test_action_from_is_refused_in_a_batch(api, wf):
    literal = {"lam.httpRequests": [action_poll(api.url, "/status")]}
    handler = wf.handler("batch.py", f"def transform(data):\n    return {literal!r}\n")
    record = await run_path(wf.workflow([handler]))
    assert record["status"] == "FAILED" and record["error"]["type"] == "DefinitionError"
    assert "lam.httpRequests[0].actionFrom" in record["error"]["message"]
    assert api.seen == []  # nothing sent


async def test_a_bad_action_from_is_a_definition_error(api, wf):
    request = action_poll(api.url, "/status", actionFrom="$.[")
    record = await run_path(wf.workflow([wf.request_step("p", request)]))
    assert record["error"]["type"] == "DefinitionError"
    assert "actionFrom" in record["error"]["message"] and api.seen == []


# -- validate --------------------------------------------------------------------------------


def load_error(wf, steps: list[dict[str, Any]]) -> str:
    with pytest.raises(DefinitionError) as caught:
        load_workflow(wf.workflow(steps), env={})
    return caught.value.message


def test_a_missing_target_names_the_step_and_field_and_suggests(wf):
    message = load_error(
        wf,
        [
            step("fetch", wf.py_step("a", "1"), next="summrize"),
            step("summarize", wf.py_step("b", "1")),
        ],
    )
    assert "steps[0] (fetch).next" in message
    assert "no step is called 'summrize'" in message and "did you mean 'summarize'" in message


def test_a_missing_on_error_target_is_refused(wf):
    message = load_error(wf, [step("a", wf.py_step("a", "1"), onError={"next": "nowhere"})])
    assert "steps[0] (a).onError.next" in message and "'nowhere'" in message


def test_a_loop_no_step_can_leave_is_refused(wf):
    wf.handler("a.js", "(data) => ({n: 1});\n")
    wf.handler("b.js", "(data) => data;\n")
    message = load_error(wf, [step("a", "a.js"), step("b", "b.js", next="a")])
    assert "the route loop a -> b -> a can never end" in message


def test_a_self_loop_of_a_plain_program_is_refused(wf):
    wf.handler("spin.js", "(data) => 1;\n")
    message = load_error(wf, [step("spin", "spin.js", next="spin")])
    assert "spin -> spin" in message


def test_a_loop_with_a_way_out_loads(wf):
    wf.handler("a.js", "(data) => data.input.done ? {'lam.exit': true, data: 1} : 1;\n")
    wf.handler("b.js", "(data) => data;\n")
    workflow = load_workflow(wf.workflow([step("a", "a.js"), step("b", "b.js", next="a")]), env={})
    assert workflow.routed
    wf.handler("c.js", "(data) => data;\n")
    out = {"exit": True}
    load_workflow(
        wf.workflow([step("c", "c.js", onError=out), step("b", "b.js", next="c")]), env={}
    )


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ({"onError": {"next": "a"}, "continueOnFailure": True}, "keep one"),
        ({"onError": {"exit": True, "next": "a"}}, "either next"),
        ({"onError": {"next": "a", "result": 1}}, "only an exit has a result"),
        ({"onError": "a"}, "expected {next"),
        ({"next": 3}, ".next"),
        ({"nxt": "a"}, "did you mean 'next'"),
    ],
)
def test_bad_routes_are_refused_at_load_time(wf, route, expected):
    assert expected in load_error(wf, [step("a", wf.py_step("a", "1"), **route)])


def test_max_step_runs_must_be_a_positive_number(wf):
    with pytest.raises(DefinitionError, match="maxStepRuns"):
        load_workflow(wf.workflow([wf.py_step("a", "1")], limits={"maxStepRuns": 0}), env={})


# -- saved states and resume ----------------------------------------------------------------


def test_a_state_saved_without_a_route_loads_with_an_empty_one():
    state = RunState.from_dict(
        {
            "schema": 2,
            "run_id": "r",
            "workflow": "w",
            "gwo": {"input": {}},
            "next_step": 1,
            "pending": None,
            "status": "RUNNING",
            "result": None,
            "error": None,
            "meta": {},
        }
    )
    assert state.route == [] and state.entered == "start"
    assert "route" not in state.to_dict()


def test_a_damaged_route_is_refused():
    saved = RunState.start("w", {}).to_dict()
    saved["route"] = [
        {"step": "a", "key": "step_1", "entered": "start", "left": "jump", "to": None, "at": "x"}
    ]
    with pytest.raises(DefinitionError, match=r"route\[0\]\.left"):
        RunState.from_dict(saved)


async def cli(*args: str) -> tuple[int, str, str]:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        *LAMRUNNER, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_an_interrupted_routed_run_resumes_at_the_step_its_route_led_to(
    api, wf, tmp_path: Path
):
    """The run jumps over `skipped` to the poll, stops at its budget there, and another
    process resumes it: the poll goes on, `skipped` never runs, the route is whole."""
    api.script("GET", "/job", Reply(json={"state": "pending"}), Reply(json={"state": "done"}))
    poll = {
        "method": "GET",
        "url": api.url + "/job",
        "loopUntil": {"condition": "ctx.response.state === 'done'", "initialDelay": "1500ms"},
    }
    path = wf.workflow(
        [
            step("start", wf.py_step("start", "1"), next="wait"),
            step("skipped", wf.py_step("skipped", "2")),
            step("wait", wf.request_step("wait", poll)),
        ]
    )
    store = str(tmp_path / "runs.sqlite3")
    code, out, err = await cli("run", str(path), "--budget", "0.2s", "--store", store)
    assert code == 3, err
    suspended = json.loads(out)
    assert suspended["status"] == "SUSPENDED" and len(api.requests_to("/job")) == 1

    code, out, err = await cli("resume", suspended["runId"], "--store", store)
    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "SUCCESS" and record["result"] == {"state": "done"}
    assert "step_2" not in record["gwo"] and len(api.requests_to("/job")) == 2
    assert routes(record) == [("start", "start", "next", "wait"), ("wait", "next", "end", None)]
    code, out, _ = await cli("runs", "show", suspended["runId"], "--store", store)
    shown = json.loads(out)
    assert code == 0 and shown["route"] == shown["run"]["route"] == record["route"]


# -- hosts -----------------------------------------------------------------------------------


async def test_packaging_a_routed_workflow_for_aws_is_refused(tmp_path: Path):
    out = tmp_path / "out"
    code, stdout, _ = await cli("package", str(SAMPLE), "--target", "aws", "--output", str(out))
    assert code == 2
    message = json.loads(stdout)["error"]["message"]
    assert "client_poll" in message and "not supported on AWS Lambda durable functions" in message
    assert not out.exists()  # nothing built


def test_a_routed_workflow_is_refused_at_aws_cold_start(wf, monkeypatch):
    from lamrunner.aws.function import deployed_app

    path = wf.workflow([step("a", wf.py_step("a", "1"), continueOnFailure=True)])
    monkeypatch.setenv("LAMRUNNER_WORKFLOW", str(path))
    monkeypatch.delenv("LAMRUNNER_CONFIG", raising=False)
    with pytest.raises(DefinitionError, match="routing between steps"):
        deployed_app()


async def test_a_sub_workflow_step_run_again_runs_its_child_again(wf, tmp_path: Path):
    (tmp_path / "double.py").write_text("def transform(data):\n    return data['input']['n'] * 2\n")
    (tmp_path / "child.yaml").write_text("name: child\nsteps: [double.py]\n")
    call = wf.handler(
        "call.py",
        """
        def transform(data):
            n = (data.get('step_2') or {}).get('data', 0) + 1
            return {'lam.execute': [{'lam.workflowId': 'c', 'lam.payload': {'n': n}}]}
        """,
    )
    tally = wf.handler(
        "tally.py",
        """
        def transform(data):
            got = data['step_1']['executions'][0]['result']
            return {'lam.exit': True, 'data': got} if got >= 6 else got // 2
        """,
    )
    path = wf.workflow([step("call", call), step("tally", tally, next="call")])
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "workflows": {"c": "./child.yaml"}}))
    record = await run_path(path)
    assert record["status"] == "SUCCESS" and record["result"] == 6  # 2, 4, 6: three children
    assert [c["result"] for c in record["subWorkflows"]] == [6]  # the latest execution's
