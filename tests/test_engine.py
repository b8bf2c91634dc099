"""The engine end to end against a real aiohttp server on 127.0.0.1: GWO, directives, polling,
retries, batches and error types. Delays are tens of milliseconds; bounds are generous."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket

from conftest import Reply, run_path

from lamrunner.runner.clock import FakeClock


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(url: str, **loop) -> dict:
    loop.setdefault("condition", "(ctx) => ctx.response.state === 'done'")
    loop.setdefault("initialDelay", "10ms")
    return {"method": "GET", "url": url, "loopUntil": loop}


async def test_plain_data_steps_build_the_gwo(wf):
    path = wf.workflow(
        [wf.py_step("a", "{'n': data['input']['n'] + 1}"), wf.py_step("b", "{'seen': data}")]
    )
    record = await run_path(path, {"n": 1})
    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_1"] == {"data": {"n": 2}}
    assert record["result"]["seen"] == {"input": {"n": 1}, "step_1": {"data": {"n": 2}}}
    assert set(record) == {"runId", "workflow", "status", "result", "error", "gwo"}


async def test_handler_mutating_its_data_does_not_change_the_gwo(wf):
    wf.handler("mut.py", "def transform(data):\n    data['input']['x'] = 99\n    return 1\n")
    path = wf.workflow(["mut.py", wf.py_step("b", "data['input']")])
    record = await run_path(path, {"x": 1})
    assert record["result"] == {"x": 1}


async def test_http_request_step_records_response_and_http(api, wf):
    api.script("GET", "/thing", Reply(json={"ok": True}, headers={"X-Trace": "abc"}))
    path = wf.workflow([wf.request_step("get", {"method": "GET", "url": api.url + "/thing"})])
    record = await run_path(path)
    step = record["gwo"]["step_1"]
    assert step["response"] == {"ok": True}
    assert step["http"]["status"] == 200
    assert step["http"]["headers"]["x-trace"] == "abc"
    assert step["http"]["attempts"] == 1
    assert isinstance(step["http"]["durationMs"], int)
    assert record["result"] == {"ok": True}


async def test_text_and_empty_bodies(api, wf):
    api.script("GET", "/text", Reply(text="hello"))
    api.script("GET", "/empty", Reply(status=204))
    path = wf.workflow(
        [
            wf.request_step("a", {"method": "GET", "url": api.url + "/text"}),
            wf.request_step("b", {"method": "GET", "url": api.url + "/empty"}),
        ]
    )
    record = await run_path(path)
    assert record["gwo"]["step_1"]["response"] == "hello"
    assert record["gwo"]["step_2"]["response"] is None


async def test_polls_until_condition_holds(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "pending"}),
        Reply(json={"state": "running"}),
        Reply(json={"state": "done", "rows": 7}),
    )
    path = wf.workflow([wf.request_step("p", poll(api.url + "/job"))])
    record = await run_path(path)
    assert record["status"] == "SUCCESS"
    assert record["result"] == {"state": "done", "rows": 7}
    assert record["gwo"]["step_1"]["http"]["attempts"] == 3
    assert len(api.requests_to("/job")) == 3


async def test_polls_reuse_one_connection(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "pending"}),
        Reply(json={"state": "pending"}),
        Reply(json={"state": "done"}),
    )
    path = wf.workflow([wf.request_step("p", poll(api.url + "/job"))])
    await run_path(path)
    peers = {s.peer for s in api.requests_to("/job")}
    assert len(api.requests_to("/job")) == 3 and len(peers) == 1


async def test_exponential_schedule_on_a_real_clock(api, wf):
    """Delays 50, 100, 200 ms (cap 200): the server sees the gaps grow, within loose bounds."""
    api.script("GET", "/job", *[Reply(json={"state": "x"})] * 4, Reply(json={"state": "done"}))
    request = poll(
        api.url + "/job",
        strategy="exponential",
        initialDelay="50ms",
        maxDelay="200ms",
        maxAttempts=6,
    )
    path = wf.workflow([wf.request_step("p", request)])
    record = await run_path(path)
    assert record["gwo"]["step_1"]["http"]["attempts"] == 5
    times = [s.at for s in api.requests_to("/job")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2, 0.2], strict=True):
        assert expected * 0.9 <= gap <= expected + 0.25


async def test_fake_clock_sees_the_whole_schedule(api, wf):
    """With an injected clock, a 10-attempt exponential poll takes no real time."""
    api.script("GET", "/job", Reply(json={"state": "x"}))
    request = poll(
        api.url + "/job", strategy="exponential", initialDelay="1s", maxDelay="30s", maxAttempts=10
    )
    clock = FakeClock()
    record = await run_path(wf.workflow([wf.request_step("p", request)]), clock=clock)
    assert record["error"]["type"] == "PollingExhausted"
    assert clock.sleeps == [1, 2, 4, 8, 16, 30, 30, 30, 30]


async def test_retry_after_seconds_lengthens_the_next_poll(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(status=429, json={}, headers={"Retry-After": "7"}),
        Reply(json={"state": "done"}),
    )
    clock = FakeClock()
    record = await run_path(
        wf.workflow([wf.request_step("p", poll(api.url + "/job"))]), clock=clock
    )
    assert record["status"] == "SUCCESS"
    assert clock.sleeps == [7]


async def test_retry_after_http_date_on_retry(api, wf):
    clock = FakeClock(start=1_700_000_000)
    date = "Tue, 14 Nov 2023 22:13:32 GMT"  # 12 s after the fake clock's start
    api.script(
        "GET",
        "/flaky",
        Reply(status=503, json={}, headers={"Retry-After": date}),
        Reply(json={"ok": 1}),
    )
    request = {"method": "GET", "url": api.url + "/flaky", "retry": {"maxAttempts": 3}}
    record = await run_path(wf.workflow([wf.request_step("r", request)]), clock=clock)
    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_1"]["http"]["attempts"] == 2
    assert clock.sleeps == [12]


async def test_deadline_ends_the_loop_without_sleeping_past_it(api, wf):
    api.script("GET", "/job", Reply(json={"state": "pending"}))
    request = poll(api.url + "/job", initialDelay="200ms", timeout="500ms", maxAttempts=100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    record = await run_path(wf.workflow([wf.request_step("p", request)]))
    elapsed = loop.time() - started
    assert record["error"]["type"] == "DeadlineExceeded"
    assert "attempts: 3" in record["error"]["message"]
    assert elapsed < 0.5 + 0.3


async def test_deadline_cuts_a_slow_attempt(api, wf):
    api.script("GET", "/slow", Reply(json={"state": "pending"}, delay=3))
    request = poll(api.url + "/slow", timeout="300ms", ignoreErrors=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    record = await run_path(wf.workflow([wf.request_step("p", request)]))
    assert record["error"]["type"] == "DeadlineExceeded"
    assert loop.time() - started < 1.5


async def test_fail_when_fails_at_once(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "pending"}),
        Reply(json={"state": "failed", "error": "disk full"}),
    )
    request = poll(api.url + "/job", failWhen="(ctx) => ctx.response.state === 'failed'")
    record = await run_path(
        wf.workflow([{"name": "wait", "handler": wf.request_step("p", request)}])
    )
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "PollingFailed"
    assert record["error"]["step"] == "wait"
    assert "disk full" in record["error"]["message"]
    assert len(api.requests_to("/job")) == 2


async def test_exhaustion_reports_attempts_status_and_excerpt(api, wf):
    api.script("GET", "/job", Reply(status=500, json={"state": "broken-backend"}))
    request = poll(api.url + "/job", maxAttempts=3)
    record = await run_path(wf.workflow([wf.request_step("p", request)]))
    error = record["error"]
    assert error["type"] == "PollingExhausted"
    assert "attempts: 3" in error["message"]
    assert "last status: 500" in error["message"]
    assert "broken-backend" in error["message"]


async def test_every_status_is_offered_to_the_condition(api, wf):
    api.script("GET", "/gone", Reply(status=200, json={}), Reply(status=404, json={}))
    request = poll(api.url + "/gone", condition="ctx.status === 404")
    record = await run_path(wf.workflow([wf.request_step("p", request)]))
    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_1"]["http"]["status"] == 404


async def test_ctx_has_attempt_elapsed_and_headers(api, wf):
    api.script("GET", "/job", Reply(json={}, headers={"X-Ready": "yes"}))
    cond = (
        "(ctx) => ctx.attempt === 2 && ctx.elapsedMs >= 0 && "
        "ctx.headers['x-ready'] === 'yes' && ctx.status === 200"
    )
    record = await run_path(
        wf.workflow([wf.request_step("p", poll(api.url + "/job", condition=cond))])
    )
    assert record["gwo"]["step_1"]["http"]["attempts"] == 2


async def test_throwing_condition_counts_as_false_and_is_quoted(api, wf):
    api.script("GET", "/job", Reply(json={"state": None}))
    request = poll(api.url + "/job", condition="(ctx) => ctx.response.missing.deep", maxAttempts=2)
    record = await run_path(wf.workflow([wf.request_step("p", request)]))
    assert record["error"]["type"] == "PollingExhausted"
    assert "condition threw" in record["error"]["message"]
    assert len(api.requests_to("/job")) == 2


async def test_condition_syntax_error_sends_nothing(api, wf):
    api.script("GET", "/job", Reply(json={}))
    request = poll(api.url + "/job", condition="(ctx) => ctx.status ===")
    record = await run_path(wf.workflow([wf.request_step("p", request)]))
    assert record["error"]["type"] == "ConditionError"
    assert "loopUntil.condition" in record["error"]["message"]
    assert api.seen == []


async def test_condition_time_limit_fails_the_step_naming_it(api, wf):
    api.script("GET", "/job", Reply(json={}))
    request = poll(api.url + "/job", condition="(ctx) => { while (true) {} }")
    path = wf.workflow([wf.request_step("p", request)], limits={"conditionTimeout": "200ms"})
    record = await run_path(path)
    assert record["error"]["type"] == "ConditionError"
    assert "conditionTimeout" in record["error"]["message"]


async def test_transport_error_fails_a_poll_without_ignore_errors(wf):
    url = f"http://127.0.0.1:{closed_port()}/job"
    record = await run_path(wf.workflow([wf.request_step("p", poll(url))]))
    assert record["error"]["type"] == "TransportError"


async def test_ignore_errors_counts_transport_errors_as_attempts(wf):
    url = f"http://127.0.0.1:{closed_port()}/job"
    record = await run_path(
        wf.workflow([wf.request_step("p", poll(url, ignoreErrors=True, maxAttempts=3))])
    )
    assert record["error"]["type"] == "PollingExhausted"
    assert "attempts: 3" in record["error"]["message"]
    assert "could not connect" in record["error"]["message"]


async def test_http_error_fails_the_step_by_default(api, wf):
    api.script("GET", "/missing", Reply(status=404, json={"error": "no such thing"}))
    record = await run_path(
        wf.workflow([wf.request_step("g", {"method": "GET", "url": api.url + "/missing"})])
    )
    assert record["error"]["type"] == "HttpStatusError"
    assert "404" in record["error"]["message"] and "no such thing" in record["error"]["message"]


async def test_fail_on_http_error_false_records_and_goes_on(api, wf):
    api.script("GET", "/missing", Reply(status=404, json={"error": "nope"}))
    request = {"method": "GET", "url": api.url + "/missing", "failOnHttpError": False}
    record = await run_path(
        wf.workflow(
            [wf.request_step("g", request), wf.py_step("b", "data['step_1']['http']['status']")]
        )
    )
    assert record["status"] == "SUCCESS"
    assert record["result"] == 404


async def test_retry_recovers_from_transient_statuses(api, wf):
    api.script(
        "GET",
        "/flaky",
        Reply(status=503, json={}),
        Reply(status=502, json={}),
        Reply(json={"ok": True}),
    )
    request = {
        "method": "GET",
        "url": api.url + "/flaky",
        "retry": {"maxAttempts": 4, "initialDelay": "10ms"},
    }
    record = await run_path(wf.workflow([wf.request_step("r", request)]))
    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_1"]["http"]["attempts"] == 3


async def test_retry_gives_up_after_max_attempts(api, wf):
    api.script("GET", "/down", Reply(status=503, json={"e": 1}))
    request = {
        "method": "GET",
        "url": api.url + "/down",
        "retry": {"maxAttempts": 2, "initialDelay": "10ms"},
    }
    record = await run_path(wf.workflow([wf.request_step("r", request)]))
    assert record["error"]["type"] == "HttpStatusError"
    assert "after 2 attempts" in record["error"]["message"]
    assert len(api.requests_to("/down")) == 2


async def test_retry_does_not_retry_a_404(api, wf):
    api.script("GET", "/nope", Reply(status=404, json={}))
    request = {"method": "GET", "url": api.url + "/nope", "retry": {"maxAttempts": 5}}
    await run_path(wf.workflow([wf.request_step("r", request)]))
    assert len(api.requests_to("/nope")) == 1


async def test_per_attempt_timeout_is_a_transport_error(api, wf):
    api.script("GET", "/slow", Reply(json={}, delay=2))
    request = {"method": "GET", "url": api.url + "/slow", "timeout": "200ms"}
    loop = asyncio.get_running_loop()
    started = loop.time()
    record = await run_path(wf.workflow([wf.request_step("t", request)]))
    assert record["error"]["type"] == "TransportError"
    assert "timeout" in record["error"]["message"]
    assert loop.time() - started < 1.5


async def test_response_size_cap_fails_cleanly(api, wf):
    api.script("GET", "/big", Reply(text="x" * 5000))
    path = wf.workflow(
        [wf.request_step("b", {"method": "GET", "url": api.url + "/big"})],
        limits={"maxResponseBytes": 1000},
    )
    record = await run_path(path)
    assert record["error"]["type"] == "TransportError"
    assert "maxResponseBytes" in record["error"]["message"]


async def test_invalid_json_under_json_content_type_is_a_transport_error(api, wf):
    api.script("GET", "/bad", Reply(text="{not json", headers={"Content-Type": "application/json"}))
    record = await run_path(
        wf.workflow([wf.request_step("b", {"method": "GET", "url": api.url + "/bad"})])
    )
    assert record["error"]["type"] == "TransportError"
    assert "not" in record["error"]["message"] and "JSON" in record["error"]["message"]


async def test_batch_results_in_order_with_bounded_concurrency(api, wf):
    for i in range(6):
        api.script("GET", f"/item/{i}", Reply(json={"i": i}, delay=0.05 * (6 - i)))
    wf.handler(
        "batch.py",
        f"""
        def transform(data):
            return {{"lam.httpRequests": [
                {{"method": "GET", "url": "{api.url}/item/" + str(i)}} for i in range(6)]}}
    """,
    )
    record = await run_path(wf.workflow(["batch.py"], limits={"concurrency": 2}))
    assert record["result"] == [{"i": i} for i in range(6)]
    assert [h["status"] for h in record["gwo"]["step_1"]["http"]] == [200] * 6
    assert api.max_in_flight == 2


async def test_batch_elements_poll_on_their_own(api, wf):
    api.script("GET", "/a", Reply(json={"state": "done"}))
    api.script(
        "GET",
        "/b",
        Reply(json={"state": "x"}),
        Reply(json={"state": "x"}),
        Reply(json={"state": "done"}),
    )
    requests = [poll(api.url + "/a"), poll(api.url + "/b")]
    wf.handler(
        "batch.py",
        f"import json\ndef transform(data):\n"
        f"    return {{'lam.httpRequests': json.loads({json.dumps(requests)!r})}}\n",
    )
    record = await run_path(wf.workflow(["batch.py"]))
    assert [h["attempts"] for h in record["gwo"]["step_1"]["http"]] == [1, 3]


async def test_batch_failure_keeps_the_other_results(api, wf):
    api.script("GET", "/ok", Reply(json={"fine": True}, delay=0.1))
    api.script("GET", "/bad", Reply(status=500, json={}))
    requests = [
        {"method": "GET", "url": api.url + "/ok"},
        {"method": "GET", "url": api.url + "/bad"},
    ]
    wf.handler(
        "batch.py",
        f"import json\ndef transform(data):\n"
        f"    return {{'lam.httpRequests': json.loads({json.dumps(requests)!r})}}\n",
    )
    record = await run_path(wf.workflow(["batch.py"]))
    assert record["error"]["type"] == "HttpStatusError"
    assert "lam.httpRequests[1]" in record["error"]["message"]
    step = record["gwo"]["step_1"]
    assert step["response"][0] == {"fine": True}
    assert step["response"][1] is None
    assert step["http"][1]["error"]["type"] == "HttpStatusError"


async def test_missing_template_key_sends_nothing(api, wf):
    api.script("GET", "/x", Reply(json={}))
    requests = [
        {"method": "GET", "url": api.url + "/x"},
        {
            "method": "GET",
            "url": api.url + "/x",
            "headers": {"Authorization": "Bearer <<config.token>>"},
        },
    ]
    wf.handler(
        "batch.py",
        f"import json\ndef transform(data):\n"
        f"    return {{'lam.httpRequests': json.loads({json.dumps(requests)!r})}}\n",
    )
    record = await run_path(wf.workflow(["batch.py"]))
    assert record["error"]["type"] == "TemplateError"
    assert "token" in record["error"]["message"]
    assert "headers.Authorization" in record["error"]["message"]
    assert api.seen == []


async def test_templates_path_and_query_params_on_the_wire(api, wf):
    api.script("POST", "/v1/jobs/a b", Reply(json={}))
    request = {
        "method": "POST",
        "url": "<<config.base>>/v1/jobs/{{id}}",
        "pathParams": {"id": "a b"},
        "queryParams": {"tag": ["x", "y"], "n": 3},
        "headers": {"X-Key": "{{config.key}}"},
        "body": {"limit": "<<config.limit>>"},
    }
    path = wf.workflow(
        [wf.request_step("t", request)], config={"base": api.url, "key": "k-123456", "limit": 5}
    )
    await run_path(path)
    seen = api.seen[0]
    assert seen.path == "/v1/jobs/a b"
    assert seen.query == [("tag", "x"), ("tag", "y"), ("n", "3")]
    assert seen.headers["X-Key"] == "k-123456"
    assert json.loads(seen.body) == {"limit": 5}


async def test_set_overrides_workflow_config(api, wf):
    api.script("GET", "/v2", Reply(json={"v": 2}))
    request = {"method": "GET", "url": "<<config.base>>/<<config.version>>"}
    path = wf.workflow([wf.request_step("t", request)], config={"base": api.url, "version": "v1"})
    record = await run_path(path, sets=("version=v2",))
    assert record["result"] == {"v": 2}


async def test_exit_ends_the_run_with_its_data(wf):
    path = wf.workflow(
        [wf.py_step("a", "{'lam.exit': True, 'data': {'early': 1}}"), wf.py_step("b", "1/0")]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS"
    assert record["result"] == {"early": 1}
    assert "step_2" not in record["gwo"]


async def test_response_directive_is_the_result(wf):
    response = {"statusCode": 202, "message": "accepted", "data": {"id": 1}}
    path = wf.workflow(
        [wf.py_step("a", f"{{'lam.response': {response!r}}}"), wf.py_step("b", "1/0")]
    )
    record = await run_path(path)
    assert record["status"] == "SUCCESS"
    assert record["result"] == response


async def test_unknown_directive_names_the_closest(wf):
    record = await run_path(wf.workflow([wf.py_step("a", "{'lam.httpRequestz': {}}")]))
    assert record["error"]["type"] == "DefinitionError"
    assert "lam.httpRequest'" in record["error"]["message"]
    assert record["error"]["step"] == "step_1"


async def test_handler_exception_has_its_location(wf):
    wf.handler("boom.py", "def transform(data):\n    x = 1\n    raise ValueError('bad row')\n")
    record = await run_path(wf.workflow([{"name": "parse", "handler": "boom.py"}]))
    error = record["error"]
    assert error["type"] == "HandlerError"
    assert error["step"] == "parse"
    assert "boom.py:3" in error["message"] and "ValueError: bad row" in error["message"]


async def test_handler_exception_names_a_handler_outside_the_workflow_folder_once(wf):
    (wf.root / "flows").mkdir()
    (wf.root / "handlers").mkdir()
    wf.handler("handlers/boom.py", "def transform(data):\n    raise ValueError('bad row')\n")
    path = wf.workflow([{"name": "parse", "handler": "../handlers/boom.py"}])
    path = path.rename(wf.root / "flows" / "workflow.yaml")
    message = (await run_path(path))["error"]["message"]
    assert message == f"{wf.root / 'handlers' / 'boom.py'}:2 in transform: ValueError: bad row"


async def test_handler_returning_non_json_is_an_error(wf):
    record = await run_path(wf.workflow([wf.py_step("a", "{1, 2}")]))
    assert record["error"]["type"] == "HandlerError"
    assert "not JSON" in record["error"]["message"]


async def test_async_python_handler(wf):
    wf.handler(
        "a.py",
        "import asyncio\nasync def transform(data):\n"
        "    await asyncio.sleep(0)\n    return 'async ok'\n",
    )
    record = await run_path(wf.workflow(["a.py"]))
    assert record["result"] == "async ok"


async def test_sync_handler_does_not_stall_the_event_loop(wf):
    wf.handler("slow.py", "import time\ndef transform(data):\n    time.sleep(0.4)\n    return 1\n")
    path = wf.workflow(["slow.py"])
    loop = asyncio.get_running_loop()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await run_path(path)
    task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 20 and max(gaps) < 0.2


async def test_js_handler_gets_the_gwo_and_its_console_goes_to_the_log(wf, capsys):
    wf.handler(
        "h.js",
        """
        (data) => { console.log("rows", data.input.rows); return {double: data.input.rows * 2}; }
    """,
    )
    record = await run_path(wf.workflow(["h.js"]), {"rows": 21})
    assert record["result"] == {"double": 42}
    assert "rows 21" not in capsys.readouterr().out


async def test_secret_echoed_by_server_is_masked_in_the_error(api, wf):
    api.script("GET", "/echo", Reply(status=401, json={"detail": "bad token tok-9f8e7d6c5b"}))
    request = {
        "method": "GET",
        "url": api.url + "/echo",
        "headers": {"Authorization": "Bearer <<config.apiToken>>"},
    }
    path = wf.workflow([wf.request_step("s", request)], config={"apiToken": "tok-9f8e7d6c5b"})
    record = await run_path(path)
    assert record["error"]["type"] == "HttpStatusError"
    assert "tok-9f8e7d6c5b" not in record["error"]["message"]
    assert "***" in record["error"]["message"]


async def test_condition_memory_limit_fails_the_step_naming_it(api, wf):
    api.script("GET", "/job", Reply(json={}))
    bomb = "(ctx) => { const a = []; while (true) a.push({i: a.length, s: 'x'.repeat(100)}); }"
    path = wf.workflow(
        [wf.request_step("p", poll(api.url + "/job", condition=bomb))],
        limits={"conditionMemory": "16MB", "conditionTimeout": "5s"},
    )
    record = await run_path(path)
    assert record["error"]["type"] == "ConditionError"
    assert "conditionMemory" in record["error"]["message"]
    assert len(api.requests_to("/job")) == 1
