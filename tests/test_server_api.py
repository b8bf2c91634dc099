"""`lamrunner serve`'s HTTP API as a caller sees it: a real server on 127.0.0.1 (serve.start,
the host the CLI runs), real workflows, a real client. Statuses, bodies, headers, errors."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lamrunner.definition.policies import Backoff
from lamrunner.errors import DefinitionError
from lamrunner.server import auth
from lamrunner.server.callbacks import SIGNATURE_HEADER, CallbackPolicy, verify
from lamrunner.server.serve import ServeOptions, start
from tests.conftest import Reply

KEY = "test-api-key-7f3a9c"
SECRET = "s3cr3t-token-value"


def write_flows(root: Path, poll_url: str = "http://127.0.0.1:9/never") -> Path:
    """The served workflows: plain data, lam.response, a failure, a secret, a big result,
    a poll that never ends (for cancel), a resolveThenExecute."""
    flows = root / "flows"
    flows.mkdir()
    files = {
        "echo.py": "def transform(data):\n    return {'echo': data['input'], 'n': 1}\n",
        "teapot.py": "def transform(data):\n"
        "    return {'lam.response': {'statusCode': 418, 'message': 'short and stout',"
        " 'data': {'x': 1}}}\n",
        "boom.py": "def transform(data):\n    raise ValueError('boom in step')\n",
        "secret.py": "def transform(data):\n    return {'lam.exit': True, 'data': "
        "{'leaked': '{{config.apiToken}}', 'ok': True}}\n",
        "reflect.py": "def transform(data):\n    return {'lam.httpRequest': {'method': 'GET', "
        f"'url': {poll_url.replace('/job', '/reflect')!r}, "
        "'headers': {'Authorization': 'Bearer <<config.apiToken>>'}}}\n",
        "big.py": "def transform(data):\n    return {'rows': ['x' * 1000] * 5200}\n",
        "poll.py": "def transform(data):\n    return {'lam.httpRequest': {'url': "
        f"{poll_url!r}, 'method': 'GET', 'loopUntil': {{'condition': 'ctx.response.done === true', "
        "'maxAttempts': 1000, 'initialDelay': '100ms'}}}\n",
        "quick.py": "def transform(data):\n    return {'lam.resolveThenExecute': "
        "{'lam.workflowId': 'child', 'lam.payload': {}, 'lam.result': {'early': True}}}\n",
        "slow.py": "import time\n\ndef transform(data):\n    time.sleep(1.0)\n    return 1\n",
    }
    for name, text in files.items():
        (flows / name).write_text(text)
    docs: dict[str, dict[str, Any]] = {
        "echo": {"steps": [{"handler": "echo.py"}, {"handler": "echo.py"}]},
        "teapot": {"steps": [{"handler": "teapot.py"}]},
        "boom": {"steps": [{"handler": "boom.py"}]},
        "secret": {"config": {"apiToken": SECRET}, "steps": [{"handler": "secret.py"}]},
        "reflect": {"config": {"apiToken": SECRET}, "steps": [{"handler": "reflect.py"}]},
        "big": {"steps": [{"handler": "big.py"}]},
        "poll": {"steps": [{"handler": "poll.py"}]},
        "early": {"steps": [{"handler": "quick.py"}], "workflows": {"child": "child.json"}},
    }
    for name, doc in docs.items():
        (flows / f"{name}.json").write_text(json.dumps({"name": name, **doc}))
    child = {"name": "child", "steps": [{"handler": "slow.py"}]}
    (root / "flows" / "child.json").write_text(json.dumps(child))
    return flows


FAST_CALLBACKS = CallbackPolicy(
    max_attempts=5, backoff=Backoff("exponential", 0.05, 0.2, 2.0, "none"), timeout=2.0
)


async def serve(tmp_path: Path, **options: Any) -> Any:
    flows = options.pop("flows", None) or write_flows(tmp_path)
    defaults: dict[str, Any] = {
        "paths": (str(flows),),
        "store": tmp_path / "runs.sqlite3",
        "port": 0,
        "api_key_env": "LAMRUNNER_TEST_KEY",
        "env": {"LAMRUNNER_TEST_KEY": KEY},
        "callbacks": FAST_CALLBACKS,
    }
    return await start(ServeOptions(**{**defaults, **options}))


@pytest.fixture
async def server(tmp_path, api):
    api.script("GET", "/job", Reply(200, json={"done": False}))
    api.script("GET", "/reflect", Reply(200, json={"you_sent": SECRET}))
    srv = await serve(tmp_path, flows=write_flows(tmp_path, f"{api.url}/job"))
    yield srv
    await srv.close()


@pytest.fixture
async def client(server):
    async with aiohttp.ClientSession(server.url, headers={"X-API-KEY": KEY}) as session:
        yield session


async def call(client, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with client.request(method, path, allow_redirects=False, **kwargs) as response:
        text = await response.text()
        assert response.content_type == "application/json", text[:200]
        return response.status, json.loads(text), response.headers


async def until_status(client, job_id: str, *wanted: str, seconds: float = 10.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        _status, job, _headers = await call(client, "GET", f"/jobs/{job_id}")
        if job["status"] in wanted:
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


# -- synchronous execute -------------------------------------------------------------------


async def test_sync_execute_answers_the_last_steps_output_and_is_a_job(client):
    status, body, headers = await call(client, "POST", "/workflow/execute/echo", json={"a": 1})
    assert status == 200
    assert body == {"echo": {"a": 1}, "n": 1}
    job_id = headers["X-Lamrunner-Job-Id"]
    _, job, _ = await call(client, "GET", f"/jobs/{job_id}")
    assert job["status"] == "completed"
    assert job["result"] == body


async def test_an_empty_body_is_an_empty_input(client):
    status, body, _ = await call(client, "POST", "/workflow/execute/echo")
    assert (status, body) == (200, {"echo": {}, "n": 1})


async def test_lam_response_answers_its_status_code_and_object(client):
    status, body, _ = await call(client, "POST", "/workflow/execute/teapot")
    assert status == 418
    assert body == {"statusCode": 418, "message": "short and stout", "data": {"x": 1}}


async def test_an_informational_lam_response_status_is_refused_not_sent(tmp_path):
    flows = write_flows(tmp_path)
    (flows / "info.py").write_text(
        "def transform(data):\n    return {'lam.response': {'statusCode': 101, 'message': 'm'}}\n"
    )
    (flows / "info.json").write_text(
        json.dumps({"name": "info", "steps": [{"handler": "info.py"}]})
    )
    srv = await serve(tmp_path, flows=flows)
    try:
        async with aiohttp.ClientSession(srv.url, headers={"X-API-KEY": KEY}) as client:
            status, body, _ = await call(client, "POST", "/workflow/execute/info")
    finally:
        await srv.close()
    assert status == 500
    assert body["error"]["type"] == "InvalidResponse"
    assert "101" in body["error"]["message"]


async def test_a_failed_run_answers_500_with_its_error_and_job_id(client):
    status, body, _ = await call(client, "POST", "/workflow/execute/boom")
    assert status == 500
    assert body["error"]["type"] == "HandlerError"
    assert "boom in step" in body["error"]["message"]
    assert body["error"]["step"] == "step_1"
    _, job, _ = await call(client, "GET", f"/jobs/{body['job_id']}")
    assert job["status"] == "failed"
    assert "boom in step" in job["error"]


async def test_resolve_then_execute_answers_before_the_child_has_run(client):
    started = time.monotonic()
    status, body, headers = await call(client, "POST", "/workflow/execute/early")
    assert (status, body) == (200, {"early": True})
    assert time.monotonic() - started < 0.9  # the child sleeps 1 s
    job = await until_status(client, headers["X-Lamrunner-Job-Id"], "completed")
    assert job["result"] == {"early": True}


async def test_start_and_end_step_choose_the_steps_that_run(client):
    status, body, _ = await call(
        client, "POST", "/workflow/execute/echo?end_at_step=1", json={"only": "first"}
    )
    assert (status, body) == (200, {"echo": {"only": "first"}, "n": 1})
    status, body, _ = await call(client, "POST", "/workflow/execute/echo?start_from_step=x")
    assert status == 400
    assert "start_from_step" in body["error"]["message"]
    status, body, _ = await call(client, "POST", "/workflow/execute/echo?end_at_step=9")
    assert status == 400
    assert "end_at_step" in body["error"]["message"]


async def test_an_unknown_configuration_is_a_404_naming_the_known_ones(client):
    status, body, _ = await call(client, "POST", "/workflow/execute/echo?configuration=prod")
    assert status == 404
    assert "prod" in body["error"]["message"]


# -- asynchronous execute and the job API ------------------------------------------------


async def test_async_execute_is_202_with_location_and_retry_after_then_completes(client):
    status, body, headers = await call(
        client, "POST", "/workflow/execute/echo/async", json={"b": 2}
    )
    assert status == 202
    assert set(body) == {"job_id", "status", "created_at"}
    assert body["status"] == "pending"
    assert body["created_at"].endswith("Z")
    assert headers["Location"] == f"/jobs/{body['job_id']}"
    assert int(headers["Retry-After"]) >= 1
    job = await until_status(client, body["job_id"], "completed")
    assert job["result"] == {"echo": {"b": 2}, "n": 1}
    assert job["created_at"] <= job["updated_at"]
    status, result, _ = await call(client, "GET", f"/jobs/{body['job_id']}/result")
    assert (status, result) == (200, {"echo": {"b": 2}, "n": 1})


async def test_a_result_of_5_mb_or_more_is_a_pointer_to_its_own_url(client, server):
    _, accepted, _ = await call(client, "POST", "/workflow/execute/big/async")
    job = await until_status(client, accepted["job_id"], "completed")
    assert job["result"] == {"is_url": True, "url": f"{server.url}/jobs/{job['job_id']}/result"}
    async with client.get(job["result"]["url"]) as response:
        assert response.status == 200
        full = await response.json()
    assert len(full["rows"]) == 5200


async def test_cancel_stops_a_polling_job_and_nothing_more_is_sent(client, api):
    _, accepted, _ = await call(client, "POST", "/workflow/execute/poll/async")
    job_id = accepted["job_id"]
    await until_status(client, job_id, "processing")
    deadline = time.monotonic() + 5
    while len(api.requests_to("/job")) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    status, job, _ = await call(client, "POST", f"/jobs/{job_id}/cancel")
    assert status == 200
    assert job["status"] == "canceled"
    sent = len(api.requests_to("/job"))
    await asyncio.sleep(0.4)  # four poll intervals
    assert len(api.requests_to("/job")) == sent
    status, body, _ = await call(client, "POST", f"/jobs/{job_id}/cancel")
    assert status == 409
    assert body["error"]["type"] == "Conflict"


async def test_resume_runs_a_canceled_job_again_and_a_completed_one_is_409(client, api):
    _, accepted, _ = await call(client, "POST", "/workflow/execute/poll/async")
    job_id = accepted["job_id"]
    await until_status(client, job_id, "processing")
    await call(client, "POST", f"/jobs/{job_id}/cancel")
    api.script("GET", "/job", Reply(200, json={"done": True}))
    api.replies[("GET", "/job")].popleft()  # from now on: done
    status, job, _ = await call(client, "POST", f"/jobs/{job_id}/resume")
    assert status == 200
    assert job["status"] in ("pending", "processing")
    done = await until_status(client, job_id, "completed")
    assert done["result"] == {"done": True}
    status, body, _ = await call(client, "POST", f"/jobs/{job_id}/resume")
    assert status == 409
    assert "completed" in body["error"]["message"]


async def test_unknown_jobs_are_404(client):
    for method, path in (
        ("GET", "/jobs/nope"),
        ("GET", "/jobs/nope/result"),
        ("POST", "/jobs/nope/cancel"),
        ("POST", "/jobs/nope/resume"),
    ):
        status, body, _ = await call(client, method, path)
        assert status == 404, path
        assert "nope" in body["error"]["message"]


async def test_a_result_before_the_job_completes_is_409(client):
    _, accepted, _ = await call(client, "POST", "/workflow/execute/poll/async")
    await until_status(client, accepted["job_id"], "processing")
    status, body, _ = await call(client, "GET", f"/jobs/{accepted['job_id']}/result")
    assert status == 409
    assert "processing" in body["error"]["message"]
    await call(client, "POST", f"/jobs/{accepted['job_id']}/cancel")


async def test_the_job_list_filters_and_pages(client):
    ids = []
    for n in range(3):
        _, body, headers = await call(client, "POST", "/workflow/execute/echo", json={"n": n})
        ids.append(headers["X-Lamrunner-Job-Id"])
    await call(client, "POST", "/workflow/execute/boom")
    status, page, _ = await call(client, "GET", "/jobs?workflow=echo&limit=2")
    assert status == 200
    assert [j["job_id"] for j in page["jobs"]] == ids[::-1][:2]
    assert page["next"] == ids[1]
    _, rest, _ = await call(client, "GET", f"/jobs?workflow=echo&limit=2&before={page['next']}")
    assert [j["job_id"] for j in rest["jobs"]] == [ids[0]]
    assert rest["next"] is None
    _, failed, _ = await call(client, "GET", "/jobs?status=failed")
    assert [j["status"] for j in failed["jobs"]] == ["failed"]
    status, body, _ = await call(client, "GET", "/jobs?status=done")
    assert status == 400
    assert "completed" in body["error"]["message"]  # the choices are named
    status, body, _ = await call(client, "GET", "/jobs?limit=0")
    assert status == 400
    assert "limit" in body["error"]["message"]


async def test_laminars_execution_views_show_the_same_jobs(client):
    _, _, headers = await call(client, "POST", "/workflow/execute/echo", json={"v": 1})
    job_id = headers["X-Lamrunner-Job-Id"]
    _, listed, _ = await call(client, "GET", "/workflow/echo/executions")
    assert job_id in [j["job_id"] for j in listed["jobs"]]
    assert {j["job_id"] for j in listed["jobs"]} <= {j["job_id"] for j in listed["jobs"]}
    _, one, _ = await call(client, "GET", f"/workflow/echo/executions/{job_id}")
    _, same, _ = await call(client, "GET", f"/jobs/{job_id}")
    assert one == same
    _, status_view, _ = await call(client, "GET", f"/workflow/echo/executions/{job_id}/status")
    assert status_view == {k: same[k] for k in ("job_id", "status", "created_at", "updated_at")}
    _, result, _ = await call(client, "GET", f"/workflow/echo/executions/{job_id}/result")
    assert result == {"echo": {"v": 1}, "n": 1}
    status, body, _ = await call(client, "GET", f"/workflow/boom/executions/{job_id}")
    assert status == 404  # not that workflow's
    assert "boom" in body["error"]["message"]
    status, body, _ = await call(client, "GET", "/workflow/nope/executions")
    assert status == 404
    assert "echo" in body["error"]["message"]  # names what is served


# -- bad requests ------------------------------------------------------------------------------


async def test_bad_json_names_the_line_and_column(client):
    status, body, _ = await call(
        client, "POST", "/workflow/execute/echo", data=b'{\n  "a": 1,\n  oops\n}'
    )
    assert status == 400
    assert body["error"]["type"] == "BadRequest"
    assert "line 3 column 3" in body["error"]["message"]


async def test_an_unknown_workflow_lists_the_served_ones(client):
    status, body, _ = await call(client, "POST", "/workflow/execute/nope")
    assert status == 404
    for name in ("echo", "teapot", "boom", "poll"):
        assert name in body["error"]["message"]


async def test_aiohttps_404_and_405_are_json_errors(client):
    status, body, _ = await call(client, "GET", "/no/such/thing")
    assert status == 404
    assert "/no/such/thing" in body["error"]["message"]
    status, body, _ = await call(client, "DELETE", "/jobs")
    assert status == 405
    assert body["error"]["type"] == "MethodNotAllowed"
    assert "GET" in body["error"]["message"]


async def test_a_body_over_max_body_is_413_naming_the_limit(tmp_path):
    srv = await serve(tmp_path, max_body=1000)
    try:
        async with aiohttp.ClientSession(srv.url, headers={"X-API-KEY": KEY}) as client:
            big = json.dumps({"x": "y" * 2000})
            status, body, _ = await call(client, "POST", "/workflow/execute/echo", data=big)
            assert status == 413
            assert "1 KB" in body["error"]["message"]
            assert "--max-body" in body["error"]["message"]

            async def chunks():  # no Content-Length: the cap holds while reading
                for _ in range(10):
                    yield b"[" + b"1," * 100
                yield b"1]"

            status, body, _ = await call(client, "POST", "/workflow/execute/echo", data=chunks())
            assert status == 413
    finally:
        await srv.close()


async def test_callback_url_must_be_http_and_not_link_local(client):
    bad = ("ftp://example.com/x", "not a url", "http://169.254.169.254/latest", "http://a/\nb")
    for url in bad:
        status, body, _ = await call(
            client, "POST", "/workflow/execute/echo/async", params={"callback_url": url}
        )
        assert status == 400, url
        assert "callback_url" in body["error"]["message"]
    _, listed, _ = await call(client, "GET", "/jobs")
    assert listed["jobs"] == []  # nothing was submitted


async def test_a_bug_is_a_500_internal_error_without_a_traceback(client, server, monkeypatch):
    def broken(job_id):
        raise RuntimeError("private detail of the bug")

    monkeypatch.setattr(server.service, "get", broken)
    status, body, _ = await call(client, "GET", "/jobs/anything")
    assert status == 500
    assert body["error"]["type"] == "InternalError"
    text = json.dumps(body)
    assert "private detail" not in text
    assert "Traceback" not in text


# -- secrets and auth ----------------------------------------------------------------------


async def test_config_secrets_are_masked_in_results(client):
    status, body, headers = await call(client, "POST", "/workflow/execute/secret")
    assert status == 200
    assert body == {"leaked": "***", "ok": True}
    _, job, _ = await call(client, "GET", f"/jobs/{headers['X-Lamrunner-Job-Id']}")
    assert SECRET not in json.dumps(job)


async def test_a_secret_a_service_echoes_back_is_masked_in_every_view(client, api):
    status, body, headers = await call(client, "POST", "/workflow/execute/reflect")
    assert status == 200
    assert api.requests_to("/reflect")[0].headers["Authorization"] == f"Bearer {SECRET}"
    job_id = headers["X-Lamrunner-Job-Id"]
    views = [json.dumps(body)]
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/result", "/jobs"):
        views.append(json.dumps((await call(client, "GET", path))[1]))
    for view in views:
        assert SECRET not in view
    assert "***" in views[0]


async def test_the_key_is_accepted_in_the_header_or_the_query_and_nothing_else(server):
    async with aiohttp.ClientSession(server.url) as anon:
        missing = await call(anon, "GET", "/jobs")
        wrong = await call(anon, "GET", "/jobs", headers={"X-API-KEY": "guess"})
        assert missing[0] == wrong[0] == 401
        assert missing[1] == wrong[1]  # the same answer for both
        assert missing[1]["error"]["type"] == "Unauthorized"
        assert KEY not in json.dumps(wrong[1])
        assert (await call(anon, "GET", "/jobs", headers={"X-API-KEY": KEY}))[0] == 200
        assert (await call(anon, "GET", "/jobs", params={"api_key": KEY}))[0] == 200
        status, _, _ = await call(anon, "POST", "/workflow/execute/echo")
        assert status == 401
        assert (await call(anon, "GET", "/health"))[:2] == (200, {"ok": True})
    assert (await call_list(server)) == 0  # the refused execute ran nothing


async def call_list(server) -> int:
    async with aiohttp.ClientSession(server.url, headers={"X-API-KEY": KEY}) as client:
        _, listed, _ = await call(client, "GET", "/jobs")
    return len(listed["jobs"])


async def test_keys_are_compared_in_constant_time(server, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    async with aiohttp.ClientSession(server.url) as anon:
        await call(anon, "GET", "/jobs", headers={"X-API-KEY": "guess"})
    assert compared == [(b"guess", KEY.encode())]


async def test_the_page_takes_the_key_once_and_keeps_it_in_a_strict_cookie(server):
    jar = aiohttp.CookieJar(unsafe=True)  # a browser keeps cookies of 127.0.0.1 too
    async with aiohttp.ClientSession(server.url, cookie_jar=jar) as browser:
        async with browser.get("/", params={"api_key": KEY}, allow_redirects=False) as first:
            assert first.status == 303
            assert first.headers["Location"] == "/"  # the key leaves the address bar
            cookie = first.headers["Set-Cookie"]
        assert f"{auth.COOKIE}={KEY}" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        async with browser.get("/") as page:  # the cookie jar sends it now
            assert page.status == 200
            assert page.content_type == "text/html"
        status, _, _ = await call(browser, "GET", "/jobs")
        assert status == 200
    async with aiohttp.ClientSession(server.url) as stranger:
        status, _, _ = await call(stranger, "GET", "/")
        assert status == 401


async def test_without_a_key_the_server_refuses_to_listen_beyond_loopback(tmp_path):
    with pytest.raises(DefinitionError, match="loopback"):
        await serve(tmp_path, host="0.0.0.0", api_key_env=None)


async def test_an_unset_key_variable_is_named(tmp_path):
    with pytest.raises(DefinitionError, match="LAMRUNNER_NO_SUCH_VAR"):
        await serve(tmp_path, api_key_env="LAMRUNNER_NO_SUCH_VAR", env={})


async def test_without_a_key_loopback_serves_everyone(tmp_path):
    srv = await serve(tmp_path, api_key_env=None, env={})
    try:
        async with aiohttp.ClientSession(srv.url) as anon:
            status, body, _ = await call(anon, "POST", "/workflow/execute/echo")
        assert (status, body) == (200, {"echo": {}, "n": 1})
    finally:
        await srv.close()


# -- callbacks ---------------------------------------------------------------------------------


async def test_a_callback_gets_the_final_job_signed_after_two_failures(client, api):
    api.script("POST", "/hook", Reply(500), Reply(503), Reply(200, json={"thanks": True}))
    status, accepted, _ = await call(
        client,
        "POST",
        "/workflow/execute/echo/async",
        params={"callback_url": f"{api.url}/hook"},
        json={"c": 3},
    )
    assert status == 202
    deadline = time.monotonic() + 10
    while len(api.requests_to("/hook")) < 3:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    hooks = api.requests_to("/hook")
    assert len(hooks) == 3  # delivered on the third: no fourth
    document = json.loads(hooks[-1].body)
    _, job, _ = await call(client, "GET", f"/jobs/{accepted['job_id']}")
    assert document == job
    assert document["result"] == {"echo": {"c": 3}, "n": 1}
    for hook in hooks:
        assert verify(KEY, hook.headers[SIGNATURE_HEADER], hook.body.decode())


async def test_a_sync_caller_waiting_when_the_server_stops_gets_503_with_its_job(tmp_path, api):
    api.script("GET", "/job", Reply(200, json={"done": False}))
    srv = await serve(tmp_path, flows=write_flows(tmp_path, f"{api.url}/job"))
    async with aiohttp.ClientSession(srv.url, headers={"X-API-KEY": KEY}) as client:
        waiting = asyncio.ensure_future(call(client, "POST", "/workflow/execute/poll"))
        deadline = time.monotonic() + 5
        while len(api.requests_to("/job")) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await srv.close()
        status, body, headers = await waiting
    assert status == 503
    assert body["error"]["type"] == "ServiceUnavailable"
    assert body["job_id"] == headers["X-Lamrunner-Job-Id"]
    assert f"/jobs/{body['job_id']}" in body["error"]["message"]


async def test_an_expired_job_answers_its_stub_everywhere(client, server):
    _, _, headers = await call(client, "POST", "/workflow/execute/echo", json={"old": True})
    job_id = headers["X-Lamrunner-Job-Id"]
    assert server.service.sweep(now=time.time() + 7 * 86400 + 60) == [job_id]
    _, job, _ = await call(client, "GET", f"/jobs/{job_id}")
    assert job["status"] == "expired"
    assert job["result"] != {"echo": {"old": True}, "n": 1}
    assert "old" not in json.dumps(job["result"])  # the result is gone: a stub says so
    status, result, _ = await call(client, "GET", f"/jobs/{job_id}/result")
    assert (status, result) == (200, job["result"])
    _, view, _ = await call(client, "GET", f"/workflow/echo/executions/{job_id}/status")
    assert view["status"] == "expired"
    _, listed, _ = await call(client, "GET", "/jobs?status=expired")
    assert [j["job_id"] for j in listed["jobs"]] == [job_id]


async def test_a_large_results_callback_carries_its_absolute_pointer(client, server, api):
    api.script("POST", "/hook", Reply(200))
    await call(
        client, "POST", "/workflow/execute/big/async", params={"callback_url": f"{api.url}/hook"}
    )
    deadline = time.monotonic() + 10
    while not api.requests_to("/hook"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    document = json.loads(api.requests_to("/hook")[0].body)
    pointer = {"is_url": True, "url": f"{server.url}/jobs/{document['job_id']}/result"}
    assert document["result"] == pointer
    assert len(api.requests_to("/hook")[0].body) < 1000  # not the 5 MB


async def test_a_sync_run_that_waits_past_hold_answers_202_and_goes_on(tmp_path, api):
    api.script("GET", "/job", Reply(200, json={"done": False}))
    flows = write_flows(tmp_path, f"{api.url}/job")
    (flows / "poll.py").write_text(
        "def transform(data):\n    return {'lam.httpRequest': {'method': 'GET', 'url': "
        f"{api.url + '/job'!r}, 'loopUntil': {{'condition': 'ctx.response.done === true', "
        "'maxAttempts': 5, 'initialDelay': '30s'}}}\n"
    )
    srv = await serve(tmp_path, flows=flows, hold=0.2)
    try:
        async with aiohttp.ClientSession(srv.url, headers={"X-API-KEY": KEY}) as client:
            status, body, headers = await call(client, "POST", "/workflow/execute/poll")
            assert status == 202
            assert body["status"] == "processing"  # the job document
            assert int(headers["Retry-After"]) >= 1
            assert headers["Location"] == f"/jobs/{body['job_id']}"
            _, job, _ = await call(client, "GET", f"/jobs/{body['job_id']}")
            assert job["status"] == "processing"  # it waits as a row for its next poll
            status, _, _ = await call(client, "POST", f"/jobs/{body['job_id']}/cancel")
            assert status == 200
    finally:
        await srv.close()
    assert len(api.requests_to("/job")) == 1
