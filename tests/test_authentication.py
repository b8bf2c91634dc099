"""`authentication` on a request object: parsing, the headers sent, and the oauth2 token
cache (one fetch shared, expiry by the run's clock, one refresh on a 401), against a real
server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from lamrunner.definition.directives import parse_directive
from lamrunner.errors import DefinitionError
from lamrunner.runner.clock import FakeClock
from tests.conftest import Reply, run_path

SECRET = "cs-unit-s3cr3t"


def oauth(api: Any, **more: Any) -> dict[str, Any]:
    return {
        "type": "oauth2",
        "tokenUrl": api.url + "/token",
        "clientId": "client-1",
        "clientSecret": "{{config.clientSecret}}",
        **more,
    }


def token(value: str, expires_in: Any = 3600) -> Reply:
    return Reply(json={"access_token": value, "token_type": "Bearer", "expires_in": expires_in})


def bearer(seen: Any) -> str | None:
    return seen.headers.get("Authorization")  # type: ignore[no-any-return]


def parse(auth: Any) -> Any:
    request = {"method": "GET", "url": "http://h/x", "authentication": auth}
    return parse_directive({"lam.httpRequest": request})


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"username": "a"}, "missing required key 'type'"),
        ({"type": "oauth", "tokenUrl": "u"}, "did you mean 'oauth2'"),
        ({"type": "basic", "user": "a", "password": "p"}, "did you mean 'username'"),
        ({"type": "basic", "username": "a"}, "missing required key 'password'"),
        ({"type": "apikey", "apiKey": "k", "in": "body"}, "'body' is not one of header, query"),
        (
            {"type": "bearer", "token": 123456789},
            "token: expected a non-empty string, got a number",
        ),
        ("basic", "expected a mapping"),
    ],
)
def test_bad_authentication_is_refused_at_parse_time(auth: Any, message: str) -> None:
    with pytest.raises(DefinitionError) as err:
        parse(auth)
    assert message in err.value.message
    assert "123456789" not in err.value.message  # a credential value is never quoted


def test_type_is_read_without_case() -> None:
    spec = parse({"type": "apiKey", "apiKey": "k-literal-key"}).requests[0]
    assert spec.auth.type == "apikey"
    assert "k-literal-key" not in repr(spec.auth)


async def test_authentication_and_own_header_clash_before_anything_is_sent(api, wf):
    request = {
        "method": "GET",
        "url": api.url + "/x",
        "headers": {"authorization": "Bearer mine"},
        "authentication": {"type": "bearer", "token": "theirs-token"},
    }
    record = await run_path(wf.workflow([wf.request_step("s", request)]))
    assert record["status"] == "FAILED"
    assert "headers.Authorization" in record["error"]["message"]
    assert "keep one" in record["error"]["message"]
    assert api.seen == []


async def test_basic_credentials_from_config(api, wf):
    api.script("GET", "/me", Reply(json={"ok": True}))
    request = {
        "method": "GET",
        "url": api.url + "/me",
        "authentication": {"type": "basic", "username": "bob", "password": "{{config.password}}"},
    }
    path = wf.workflow([wf.request_step("s", request)], config={"password": "p4ss-w0rd"})
    record = await run_path(path)
    assert record["status"] == "SUCCESS"
    expected = "Basic " + base64.b64encode(b"bob:p4ss-w0rd").decode()
    assert bearer(api.seen[0]) == expected


async def test_oauth2_token_is_fetched_once_for_a_batch(api, wf):
    """Five concurrent requests that find no token share one fetch."""
    api.script(
        "POST", "/token", Reply(json={"access_token": "at-batch", "expires_in": 60}, delay=0.1)
    )
    api.script("GET", "/item", Reply(json={"ok": 1}))
    item = {"method": "GET", "url": api.url + "/item", "authentication": oauth(api)}
    handler = wf.handler(
        "batch.py",
        f"def transform(data):\n    return {{'lam.httpRequests': [{item!r}] * 5}}\n",
    )
    path = wf.workflow([handler], config={"clientSecret": SECRET})
    record = await run_path(path)
    assert record["status"] == "SUCCESS", record
    assert len(api.requests_to("/token")) == 1
    assert [bearer(s) for s in api.requests_to("/item")] == ["Bearer at-batch"] * 5
    form = api.requests_to("/token")[0].body.decode()
    assert "grant_type=client_credentials" in form and f"client_secret={SECRET}" in form


async def test_a_poll_reuses_its_token_and_refreshes_it_when_it_expires(api, wf):
    """expires_in 100 s: refreshed 10 s early (10% of its life), so the attempts at 0 s and
    60 s share one token and the one at 120 s fetches another."""
    api.script("POST", "/token", token("at-first", 100), token("at-second", 100))
    api.script(
        "GET", "/job", Reply(json={"s": "run"}), Reply(json={"s": "run"}), Reply(json={"s": "done"})
    )
    request = {
        "method": "GET",
        "url": api.url + "/job",
        "authentication": oauth(api),
        "loopUntil": {
            "condition": "ctx.response.s === 'done'",
            "strategy": "fixed",
            "initialDelay": "60s",
        },
    }
    clock = FakeClock()
    path = wf.workflow([wf.request_step("s", request)], config={"clientSecret": SECRET})
    record = await run_path(path, clock=clock)
    assert record["status"] == "SUCCESS", record
    assert clock.sleeps == [60, 60]
    assert len(api.requests_to("/token")) == 2
    assert [bearer(s) for s in api.requests_to("/job")] == [
        "Bearer at-first",
        "Bearer at-first",
        "Bearer at-second",
    ]


async def test_a_token_without_expires_in_is_kept_until_a_401(api, wf):
    api.script("POST", "/token", token("at-forever", None))
    api.script("GET", "/a", Reply(json=1))
    request = {"method": "GET", "url": api.url + "/a", "authentication": oauth(api)}
    clock = FakeClock()
    steps = [
        wf.request_step("one", request),
        wf.py_step("wait", "None"),
        wf.request_step("two", request),
    ]
    record = await run_path(wf.workflow(steps, config={"clientSecret": SECRET}), clock=clock)
    assert record["status"] == "SUCCESS"
    assert len(api.requests_to("/token")) == 1


async def test_a_second_401_is_the_answer(api, wf):
    """Refreshed once, sent once more: a token the API still refuses fails the request."""
    api.script("POST", "/token", token("at-one"), token("at-two"))
    api.script("GET", "/x", Reply(status=401, json={"error": "nope"}))
    request = {"method": "GET", "url": api.url + "/x", "authentication": oauth(api)}
    path = wf.workflow([wf.request_step("s", request)], config={"clientSecret": SECRET})
    record = await run_path(path)
    assert record["error"]["type"] == "HttpStatusError"
    assert "answered 401" in record["error"]["message"]
    assert len(api.requests_to("/token")) == 2
    assert len(api.requests_to("/x")) == 2


async def test_a_token_answer_without_access_token_is_an_authentication_error(api, wf):
    api.script("POST", "/token", Reply(json={"token": "x"}))
    request = {"method": "GET", "url": api.url + "/x", "authentication": oauth(api)}
    path = wf.workflow([wf.request_step("s", request)], config={"clientSecret": SECRET})
    record = await run_path(path)
    assert record["error"]["type"] == "AuthenticationError"
    assert "without an access_token" in record["error"]["message"]
    assert api.requests_to("/x") == []


async def test_an_unreachable_token_endpoint_is_retried_as_a_failed_send(api, wf):
    """A connection failure of the token endpoint is a TransportError: `retry` retries it."""
    api.script("GET", "/x", Reply(json={"ok": 1}))
    request = {
        "method": "GET",
        "url": api.url + "/x",
        "authentication": {**oauth(api), "tokenUrl": "http://127.0.0.1:9/token"},
        "retry": {"maxAttempts": 2, "initialDelay": "1s"},
    }
    clock = FakeClock()
    path = wf.workflow([wf.request_step("s", request)], config={"clientSecret": SECRET})
    record = await run_path(path, clock=clock)
    assert record["error"]["type"] == "TransportError"
    assert "oauth2 token request to http://127.0.0.1:9/token failed" in record["error"]["message"]
    assert clock.sleeps == [1]
    assert api.seen == []


async def test_the_token_is_not_sent_to_another_origin(api, wf):
    """A 202 whose Location is on another host is followed without the bearer token."""
    other = "http://localhost:{}/elsewhere".format(api.url.rsplit(":", 1)[1])
    api.script("POST", "/token", token("at-origin"))
    api.script("GET", "/op", Reply(status=202, json={}, headers={"Location": other}))
    api.script("GET", "/elsewhere", Reply(json={"done": True}))
    request = {
        "method": "GET",
        "url": api.url + "/op",
        "authentication": oauth(api),
        "loopUntil": {"condition": "ctx.response.done", "initialDelay": "1s"},
    }
    path = wf.workflow([wf.request_step("s", request)], config={"clientSecret": SECRET})
    record = await run_path(path, clock=FakeClock())
    assert record["status"] == "SUCCESS", record
    assert bearer(api.requests_to("/op")[0]) == "Bearer at-origin"
    assert bearer(api.requests_to("/elsewhere")[0]) is None


async def test_two_runs_never_share_a_token(api, wf):
    api.script("POST", "/token", token("at-run-1"), token("at-run-2"))
    api.script("GET", "/x", Reply(json=1))
    request = {"method": "GET", "url": api.url + "/x", "authentication": oauth(api)}
    path = wf.workflow([wf.request_step("s", request)], config={"clientSecret": SECRET})
    await asyncio.gather(run_path(path), run_path(path))
    assert len(api.requests_to("/token")) == 2
    assert {bearer(s) for s in api.requests_to("/x")} == {"Bearer at-run-1", "Bearer at-run-2"}


async def test_on_give_up_reuses_the_polls_token(api, wf):
    api.script("POST", "/token", token("at-give-up"))
    api.script("GET", "/job", Reply(json={"s": "run"}))
    api.script("DELETE", "/job", Reply(status=204))
    request = {
        "method": "GET",
        "url": api.url + "/job",
        "authentication": oauth(api),
        "loopUntil": {"condition": "ctx.response.s === 'done'", "maxAttempts": 2},
        "onGiveUp": {"method": "DELETE", "url": api.url + "/job", "authentication": oauth(api)},
    }
    path = wf.workflow([wf.request_step("s", request)], config={"clientSecret": SECRET})
    record = await run_path(path, clock=FakeClock())
    assert record["error"]["type"] == "PollingExhausted"
    assert len(api.requests_to("/token")) == 1
    cancel = [s for s in api.seen if s.method == "DELETE"]
    assert [bearer(s) for s in cancel] == ["Bearer at-give-up"]
