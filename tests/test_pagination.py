"""`pagination` on a request object: parsing, the pages walked, and how it combines with
retry, failOnHttpError and authentication, against a real server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from lamrunner.definition.directives import parse_directive
from lamrunner.errors import ConditionError, DefinitionError
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import _check_condition
from tests.conftest import Reply, run_path

CURSOR = {"queryParams": {"cursor": "(ctx) => ctx.response.next"}}


def paged(api: Any, path: str = "/items", **more: Any) -> dict[str, Any]:
    return {"method": "GET", "url": api.url + path, "pagination": {"next": CURSOR}, **more}


def parse(request: dict[str, Any]) -> Any:
    base = {"method": "GET", "url": "http://h/x"}
    return parse_directive({"lam.httpRequest": {**base, **request}}, _check_condition)


@pytest.mark.parametrize(
    ("request_fields", "error", "message"),
    [
        (
            {"pagination": {"next": CURSOR}, "loopUntil": {"condition": "true"}},
            DefinitionError,
            "cannot both paginate and poll (loopUntil)",
        ),
        (
            {"pagination": {"next": CURSOR}, "followAsync": True},
            DefinitionError,
            "cannot both paginate and poll (followAsync: true)",
        ),
        ({"pagination": {"next": {}}}, DefinitionError, "give at least one value"),
        ({"pagination": {"nxt": CURSOR}}, DefinitionError, "did you mean 'next'"),
        ({"pagination": {"next": {"query": {}}}}, DefinitionError, "did you mean 'queryParams'"),
        ({"pagination": {"next": CURSOR, "maxPages": 0}}, DefinitionError, "maxPages"),
        ({"pagination": {"next": CURSOR, "maxPages": 20000}}, DefinitionError, "10000 pages"),
        (
            {"pagination": {"next": CURSOR, "stopCondition": "(ctx) => ctx.response.("}},
            ConditionError,
            "pagination.stopCondition",
        ),
        (
            {"pagination": {"next": {"headers": {"X-Page": "ctx.)"}}}},
            ConditionError,
            "pagination.next.headers.X-Page",
        ),
    ],
)
def test_bad_pagination_is_refused_at_parse_time(
    request_fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as err:
        parse(request_fields)
    assert message in str(err.value)


async def test_pages_stop_when_no_next_value_is_left(api, wf):
    api.script(
        "GET",
        "/items",
        Reply(json={"items": [1], "next": "c2"}),
        Reply(json={"items": [2], "next": None}),
    )
    record = await run_path(wf.workflow([wf.request_step("s", paged(api))]))
    assert record["result"] == [{"items": [1], "next": "c2"}, {"items": [2], "next": None}]
    assert [s.query for s in api.seen] == [[], [("cursor", "c2")]]


async def test_each_page_is_retried(api, wf):
    api.script(
        "GET",
        "/items",
        Reply(json={"next": "c2"}),
        Reply(status=503, json={}),
        Reply(json={"next": None}),
    )
    request = paged(api, retry={"maxAttempts": 3, "initialDelay": "1s"})
    clock = FakeClock()
    steps = [wf.request_step("s", request), wf.py_step("h", "data['step_1']['http']")]
    record = await run_path(wf.workflow(steps), clock=clock)
    assert record["status"] == "SUCCESS", record
    assert clock.sleeps == [1]
    http = record["result"]
    assert http["attempts"] == 3
    assert http["pagination"] == {"pages": 2, "stoppedBy": "noNext", "statuses": [200, 200]}


async def test_a_failed_page_fails_the_request(api, wf):
    api.script("GET", "/items", Reply(json={"next": "c2"}), Reply(status=404, json={"e": 1}))
    record = await run_path(wf.workflow([wf.request_step("s", paged(api))]))
    assert record["error"]["type"] == "HttpStatusError"
    assert "/items?cursor=c2 answered 404" in record["error"]["message"]


async def test_a_next_value_that_throws_names_its_field_and_page(api, wf):
    api.script("GET", "/items", Reply(json={"n": 1}))
    request = {
        "method": "GET",
        "url": api.url + "/items",
        "pagination": {"next": {"queryParams": {"after": "(ctx) => ctx.response.meta.last"}}},
    }
    record = await run_path(wf.workflow([wf.request_step("s", request)]))
    assert record["error"]["type"] == "ConditionError"
    assert "pagination.next.queryParams.after" in record["error"]["message"]
    assert "(on page 1)" in record["error"]["message"]


async def test_a_cursor_is_never_read_as_a_template(api, wf):
    """A server cannot make the next request carry a config secret."""
    api.script(
        "GET", "/items", Reply(json={"next": "{{config.apiSecret}}"}), Reply(json={"next": None})
    )
    path = wf.workflow([wf.request_step("s", paged(api))], config={"apiSecret": "hidden-value"})
    record = await run_path(path)
    assert record["status"] == "SUCCESS"
    assert api.seen[1].query == [("cursor", "{{config.apiSecret}}")]


async def test_oauth2_pages_share_one_token(api, wf):
    api.script("POST", "/token", Reply(json={"access_token": "at-pages", "expires_in": 600}))
    api.script(
        "GET",
        "/items",
        Reply(json={"next": "2"}),
        Reply(json={"next": "3"}),
        Reply(json={"next": None}),
    )
    auth = {
        "type": "oauth2",
        "tokenUrl": api.url + "/token",
        "clientId": "c",
        "clientSecret": "{{config.clientSecret}}",
    }
    request = paged(api, authentication=auth)
    path = wf.workflow([wf.request_step("s", request)], config={"clientSecret": "cs-pages"})
    record = await run_path(path)
    assert len(record["result"]) == 3
    assert len(api.requests_to("/token")) == 1
    assert {s.headers["Authorization"] for s in api.requests_to("/items")} == {"Bearer at-pages"}


async def test_a_next_value_of_null_leaves_the_field_out(api, wf):
    """`next` values are laid over the request's own: null removes one of them."""
    api.script("GET", "/items", Reply(json={"next": "c2"}), Reply(json={"next": None}))
    request = {
        "method": "GET",
        "url": api.url + "/items",
        "queryParams": {"since": "2024-01-01", "limit": 5},
        "pagination": {
            "next": {"queryParams": {"cursor": "ctx.response.next", "since": "null"}},
            "maxPages": 2,
        },
    }
    await run_path(wf.workflow([wf.request_step("s", request)]))
    assert api.seen[0].query == [("since", "2024-01-01"), ("limit", "5")]
    assert api.seen[1].query == [("limit", "5"), ("cursor", "c2")]
