"""followResultUrl: a finished job's large result behind a pointer `{"is_url": true, "url"}`
is fetched and put in the pointer's place; everything against real servers on 127.0.0.1
(a second one standing in for another origin), the request's shape with aioresponses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from conftest import Reply, ScriptedAPI, run_path
from test_request_shape import mocked, sent  # noqa: F401 - the fixture, used by name
from test_resume import Crash, Recorder, engine_for

from lamrunner.definition.directives import parse_directive
from lamrunner.errors import DefinitionError
from lamrunner.runner.state import RunState

BIG = {"rows": [{"id": i, "name": f"row {i}"} for i in range(200)]}
POINTER = {"is_url": True, "url": "/jobs/j1/result"}


@pytest.fixture
async def other() -> AsyncIterator[ScriptedAPI]:
    """A second server: another origin (another port) than `api`."""
    scripted = ScriptedAPI()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    scripted.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield scripted
    await runner.cleanup()


def poll_request(api: ScriptedAPI, **extra: object) -> dict[str, object]:
    request: dict[str, object] = {
        "method": "GET",
        "url": api.url + "/jobs/j1",
        "headers": {"X-API-Key": "<<config.apiKey>>", "Authorization": "Bearer tok-123456"},
        "loopUntil": {
            "condition": "ctx.response.status === 'completed'",
            "initialDelay": "10ms",
            "maxAttempts": 5,
        },
        "followResultUrl": "$.result",
    }
    request.update(extra)
    return request


def job_polls(api: ScriptedAPI, result: object) -> None:
    api.script(
        "GET",
        "/jobs/j1",
        Reply(json={"status": "processing"}),
        Reply(json={"status": "completed", "result": result}),
    )


async def run_one(wf, request, limits=None):  # type: ignore[no-untyped-def]
    config = {"apiKey": "key-secret-42"}
    return await run_path(wf.workflow([wf.request_step("wait", request)], config, limits))


async def test_a_pointer_is_fetched_and_put_in_its_place(api, wf):
    job_polls(api, POINTER)
    api.script("GET", "/jobs/j1/result", Reply(json=BIG))

    record = await run_one(wf, poll_request(api))

    assert record["status"] == "SUCCESS", record["error"]
    entry = record["gwo"]["step_1"]
    assert entry["response"] == {"status": "completed", "result": BIG}
    assert record["result"] == entry["response"]
    fetched = entry["http"]["resultUrl"]
    assert fetched["url"] == api.url + "/jobs/j1/result"  # relative, resolved
    assert fetched["status"] == 200 and fetched["attempts"] == 1
    assert fetched["bytes"] == len(json.dumps(BIG).encode())
    assert fetched["durationMs"] >= 0
    assert entry["http"]["attempts"] == 2  # the poll's own count, the fetch apart
    # same origin: the request's credentials go along, its body headers do not
    (got,) = api.requests_to("/jobs/j1/result")
    assert got.method == "GET"
    assert got.headers["X-API-Key"] == "key-secret-42"
    assert got.headers["Authorization"] == "Bearer tok-123456"


async def test_an_inline_result_is_left_as_it_is(api, wf):
    job_polls(api, {"rows": [1, 2, 3]})

    record = await run_one(wf, poll_request(api))

    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"] == {"status": "completed", "result": {"rows": [1, 2, 3]}}
    assert "resultUrl" not in record["gwo"]["step_1"]["http"]
    assert not api.requests_to("/jobs/j1/result")


async def test_a_pointer_to_another_origin_gets_no_credentials(api, other, wf):
    url = other.url + "/bucket/result.json?X-Amz-Expires=60"
    job_polls(api, {"is_url": True, "url": url})
    other.script(
        "GET",
        "/bucket/result.json",
        Reply(text=json.dumps(BIG), headers={"Content-Type": "binary/octet-stream"}),
    )
    request = poll_request(api, headers={"X-API-Key": "<<config.apiKey>>", "Accept": "*/*"})
    request["headers"]["Authorization"] = "Bearer tok-123456"  # type: ignore[index]

    record = await run_one(wf, request)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"]["result"] == BIG  # JSON, whatever its Content-Type says
    (got,) = other.requests_to("/bucket/result.json")
    names = {name.lower() for name in got.headers}
    assert "authorization" not in names and "x-api-key" not in names
    assert got.headers["Accept"] == "*/*"  # an ordinary header still goes
    assert ("X-Amz-Expires", "60") in got.query


async def test_a_whole_body_pointer_with_root_path(api, wf):
    api.script("GET", "/export", Reply(json={"is_url": True, "url": "export/data.json"}))
    api.script("GET", "/export/data.json", Reply(json=[1, 2, 3]))
    request = {"method": "GET", "url": api.url + "/export", "followResultUrl": "$"}

    record = await run_one(wf, request)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"] == [1, 2, 3]
    assert record["gwo"]["step_1"]["http"]["resultUrl"]["url"] == api.url + "/export/data.json"


async def test_the_result_fetch_is_retried_with_the_requests_retry(api, wf):
    job_polls(api, POINTER)
    api.script(
        "GET",
        "/jobs/j1/result",
        Reply(status=503, json={"error": "warming up"}),
        Reply(json=BIG),
    )
    retry = {"maxAttempts": 3, "initialDelay": "10ms", "strategy": "fixed"}

    record = await run_one(wf, poll_request(api, retry=retry))

    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"]["result"] == BIG
    assert record["gwo"]["step_1"]["http"]["resultUrl"]["attempts"] == 2
    assert len(api.requests_to("/jobs/j1/result")) == 2


async def test_a_missing_result_fails_the_step_naming_it_and_the_url(api, wf):
    job_polls(api, POINTER)
    api.script("GET", "/jobs/j1/result", Reply(status=404, json={"error": "no such result"}))

    record = await run_one(wf, poll_request(api))

    assert record["status"] == "FAILED"
    error = record["error"]
    assert error["type"] == "ResultFetchFailed"
    assert error["step"] == "step_1"
    assert f"GET {api.url}/jobs/j1/result answered 404" in error["message"]
    assert "followResultUrl" in error["message"] and "no such result" in error["message"]


async def test_a_result_that_is_not_json_fails(api, wf):
    job_polls(api, POINTER)
    api.script("GET", "/jobs/j1/result", Reply(text="<html>login</html>"))

    record = await run_one(wf, poll_request(api))

    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "ResultFetchFailed"
    assert "did not serve JSON" in record["error"]["message"]
    assert "<html>login" in record["error"]["message"]


async def test_a_result_over_the_size_cap_fails_naming_the_cap(api, wf):
    job_polls(api, POINTER)
    api.script("GET", "/jobs/j1/result", Reply(json=BIG))  # ~6 kB

    record = await run_one(wf, poll_request(api), limits={"maxResponseBytes": "2kB"})

    assert record["status"] == "FAILED"
    message = record["error"]["message"]
    assert record["error"]["type"] == "ResultFetchFailed"
    assert "larger than 2 KB" in message and "limits.maxResponseBytes" in message
    assert "/jobs/j1/result" in message


async def test_a_result_fetch_timeout_fails_after_the_requests_timeout(api, wf):
    job_polls(api, POINTER)
    api.script("GET", "/jobs/j1/result", Reply(json=BIG, delay=1.0))

    record = await run_one(wf, poll_request(api, timeout="200ms"))

    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "ResultFetchFailed"
    assert "timeout" in record["error"]["message"]


async def test_credentials_in_the_pointers_query_are_masked(api, wf):
    signed = "/jobs/j1/result?X-Amz-Signature=sig-abcdef987654&X-Amz-Expires=60"
    job_polls(api, {"is_url": True, "url": signed})
    api.script("GET", "/jobs/j1/result", Reply(status=403, json={"error": "expired"}))

    record = await run_one(wf, poll_request(api))

    assert record["status"] == "FAILED"
    text = json.dumps(record)
    assert "sig-abcdef987654" not in text
    assert "X-Amz-Signature=***" in record["error"]["message"]
    assert "X-Amz-Expires=60" in record["error"]["message"]


async def test_the_signed_url_is_masked_in_a_successful_record(api, wf):
    signed = "/jobs/j1/result?token=tk-abcdef987654"
    job_polls(api, {"is_url": True, "url": signed})
    api.script("GET", "/jobs/j1/result", Reply(json=BIG))

    record = await run_one(wf, poll_request(api))

    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["http"]["resultUrl"]["url"].endswith("?token=***")
    assert "tk-abcdef987654" not in json.dumps(record)
    assert api.requests_to("/jobs/j1/result")[0].query == [("token", "tk-abcdef987654")]


async def test_a_single_request_follows_its_pointer_too(api, wf):
    api.script("GET", "/jobs/j1", Reply(json={"status": "completed", "result": POINTER}))
    api.script("GET", "/jobs/j1/result", Reply(json=BIG))
    request = {"method": "GET", "url": api.url + "/jobs/j1", "followResultUrl": "$.result"}

    record = await run_one(wf, request)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"]["result"] == BIG


async def test_a_recorded_http_error_is_not_followed(api, wf):
    api.script("GET", "/jobs/j1", Reply(status=500, json={"result": POINTER}))
    request = {
        "method": "GET",
        "url": api.url + "/jobs/j1",
        "failOnHttpError": False,
        "followResultUrl": "$.result",
    }

    record = await run_one(wf, request)

    assert record["status"] == "SUCCESS"
    assert record["result"] == {"result": POINTER}
    assert not api.requests_to("/jobs/j1/result")


async def test_resume_after_an_interrupted_fetch_fetches_again_without_polling(api, wf):
    job_polls(api, POINTER)
    api.script("GET", "/jobs/j1/result", Reply(json=BIG))
    path = wf.workflow([wf.request_step("wait", poll_request(api))], {"apiKey": "key-secret-42"})

    def crash_once_polled(state: RunState) -> None:
        element = state.pending.elements[0] if state.pending else None
        if element is not None and element.fetch is not None:
            raise Crash  # the process dies as the fetch is about to start

    recorder = Recorder(crash_once_polled)
    with pytest.raises(Crash):
        await engine_for(path, recorder).run({})
    assert len(api.requests_to("/jobs/j1")) == 2
    assert not api.requests_to("/jobs/j1/result")
    saved = json.loads(recorder.saved[-1])
    assert saved["pending"]["elements"][0]["fetch"]["response"]["result"] == POINTER

    record = await engine_for(path, Recorder()).resume(RunState.from_dict(saved))

    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"] == {"status": "completed", "result": BIG}
    assert record["gwo"]["step_1"]["http"]["attempts"] == 2
    assert len(api.requests_to("/jobs/j1")) == 2  # not polled again
    assert len(api.requests_to("/jobs/j1/result")) == 1


def test_a_fetch_checkpoint_round_trips_and_older_states_still_load() -> None:
    entry = {"response": {"result": POINTER}, "http": {"status": 200, "headers": {}}}
    from lamrunner.runner.state import ElementState

    assert ElementState.from_dict({"fetch": entry}).to_dict() == {"fetch": entry}
    assert ElementState.from_dict({"result": entry}).fetch is None
    with pytest.raises(DefinitionError, match=r"element\.fetch: missing http"):
        ElementState.from_dict({"fetch": {"response": 1}})


async def test_the_result_request_shape(mocked, wf):  # noqa: F811 - the fixture
    base = "http://api.test"
    mocked.post(base + "/jobs", payload={"result": {"is_url": True, "url": "/jobs/1/result"}})
    mocked.get(base + "/jobs/1/result", payload={"ok": True})
    request = {
        "method": "POST",
        "url": base + "/jobs",
        "body": {"rows": 10},
        "headers": {"X-API-Key": "k-1234"},
        "idempotencyKey": True,
        "followResultUrl": "$.result",
    }

    record = await run_path(wf.workflow([wf.request_step("s", request)]))

    assert record["result"] == {"result": {"ok": True}}
    (call,) = sent(mocked, "GET", base + "/jobs/1/result")
    headers = dict(call.kwargs["headers"])
    assert call.kwargs["data"] is None
    assert headers == {"X-API-Key": "k-1234"}  # no Content-Type, no Idempotency-Key


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "expected a JSONPath query"),
        ("result", "expected a JSONPath query starting with \\$"),
        ("$.results[*]", "must name one place"),
        ("$.[", "is not a valid JSONPath query"),
    ],
)
def test_a_bad_follow_result_url_is_refused_before_anything_is_sent(value, expected) -> None:
    directive = {"lam.httpRequest": {"method": "GET", "url": "http://x", "followResultUrl": value}}
    with pytest.raises(DefinitionError, match=expected) as caught:
        parse_directive(directive)
    assert "lam.httpRequest.followResultUrl" in caught.value.message


def test_follow_result_url_beside_pagination_is_refused() -> None:
    directive = {
        "lam.httpRequest": {
            "method": "GET",
            "url": "http://x",
            "pagination": {"next": {"queryParams": {"page": "ctx.page + 1"}}},
            "followResultUrl": "$.result",
        }
    }
    with pytest.raises(DefinitionError, match="paginated request"):
        parse_directive(directive)
