"""What goes on the wire, checked with aioresponses: method, URL, headers and body encoding."""

from __future__ import annotations

import inspect
import json

import aioresponses.core as aioresponses_core
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses
from conftest import run_path
from yarl import URL

BASE = "http://api.test"


class _SentBody:
    output_size = 0


class _CompatResponse(ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14's required `stream_writer`; supply one."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream_writer", _SentBody())
        super().__init__(*args, **kwargs)


@pytest.fixture
def mocked(monkeypatch):
    if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
        monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as m:
        yield m


def sent(mocked, method: str, url: str):
    calls = mocked.requests[(method, URL(url))]
    assert calls, f"nothing was sent to {method} {url}"
    return calls


async def test_json_body_and_content_type(mocked, wf):
    mocked.post(BASE + "/jobs", payload={"id": 1})
    request = {"method": "post", "url": BASE + "/jobs", "body": {"a": [1, 2], "b": None}}
    record = await run_path(wf.workflow([wf.request_step("s", request)]))
    assert record["result"] == {"id": 1}
    call = sent(mocked, "POST", BASE + "/jobs")[0]
    assert json.loads(call.kwargs["data"]) == {"a": [1, 2], "b": None}
    assert ("Content-Type", "application/json") in call.kwargs["headers"]


async def test_form_body_when_content_type_says_so(mocked, wf):
    mocked.post(BASE + "/token", payload={})
    request = {
        "method": "POST",
        "url": BASE + "/token",
        "body": {"grant": "x y", "scope": ["a", "b"]},
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    await run_path(wf.workflow([wf.request_step("s", request)]))
    call = sent(mocked, "POST", BASE + "/token")[0]
    assert call.kwargs["data"] == b"grant=x+y&scope=a&scope=b"


async def test_string_body_is_sent_as_is(mocked, wf):
    mocked.put(BASE + "/raw", payload={})
    request = {
        "method": "PUT",
        "url": BASE + "/raw",
        "body": "<xml/>",
        "headers": {"Content-Type": "application/xml"},
    }
    await run_path(wf.workflow([wf.request_step("s", request)]))
    call = sent(mocked, "PUT", BASE + "/raw")[0]
    assert call.kwargs["data"] == b"<xml/>"
    assert ("Content-Type", "application/xml") in call.kwargs["headers"]


async def test_no_body_for_get(mocked, wf):
    mocked.get(BASE + "/x", payload={})
    await run_path(wf.workflow([wf.request_step("s", {"method": "GET", "url": BASE + "/x"})]))
    assert sent(mocked, "GET", BASE + "/x")[0].kwargs["data"] is None


async def test_rendered_headers_url_and_query(mocked, wf):
    url = BASE + "/v1/users/u%2F1/items?existing=1&page=2&tag=a&tag=b"
    mocked.get(url, payload=[])
    request = {
        "method": "GET",
        "url": "<<config.base>>/v1/users/{user}/items?existing=1",
        "pathParams": {"user": "u/1"},
        "queryParams": {"page": 2, "tag": ["a", "b"]},
        "headers": {"Authorization": "Bearer {{config.token}}", "X-Num": 5},
    }
    path = wf.workflow([wf.request_step("s", request)], config={"base": BASE, "token": "abcdef"})
    record = await run_path(path)
    assert record["status"] == "SUCCESS", record["error"]
    headers = dict(sent(mocked, "GET", url)[0].kwargs["headers"])
    assert headers == {"Authorization": "Bearer abcdef", "X-Num": "5"}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
async def test_every_method(mocked, wf, method):
    mocked.add(BASE + "/m", method=method, body="", content_type="text/plain")
    record = await run_path(
        wf.workflow([wf.request_step("s", {"method": method, "url": BASE + "/m"})])
    )
    assert record["status"] == "SUCCESS"
    assert record["result"] is None
    assert sent(mocked, method, BASE + "/m")


async def test_same_request_resent_on_each_poll(mocked, wf):
    mocked.post(BASE + "/jobs", payload={"status": "pending"})
    mocked.post(BASE + "/jobs", payload={"status": "completed"})
    request = {
        "method": "POST",
        "url": BASE + "/jobs",
        "body": {"datasetId": "d"},
        "loopUntil": {
            "condition": "(ctx) => ctx.response.status === 'completed'",
            "initialDelay": "1ms",
        },
    }
    record = await run_path(wf.workflow([wf.request_step("s", request)]))
    calls = sent(mocked, "POST", BASE + "/jobs")
    assert record["gwo"]["step_1"]["http"]["attempts"] == 2
    assert [json.loads(c.kwargs["data"]) for c in calls] == [{"datasetId": "d"}] * 2
