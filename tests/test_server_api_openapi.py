"""/openapi.json stays true: every route of the app is documented and every documented path
is a route, and real answers of a real server validate against the documented schemas."""

from __future__ import annotations

import json

import aiohttp
import jsonschema_rs
import pytest

from tests.test_server_api import KEY, call, serve, until_status

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
async def running(tmp_path, api):
    srv = await serve(tmp_path)
    async with aiohttp.ClientSession(srv.url, headers={"X-API-KEY": KEY}) as client:
        _, document, _ = await call(client, "GET", "/openapi.json")
        yield srv, client, document
    await srv.close()


def _routes(srv) -> set[tuple[str, str]]:
    app = srv.runner.app
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp answers HEAD for every GET
        found.add((route.method.lower(), route.resource.canonical))
    return found


def _documented(document) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item
    }


async def test_every_route_is_documented_and_every_documented_path_is_a_route(running):
    srv, _client, document = running
    assert document["openapi"].startswith("3.1")
    assert _routes(srv) == _documented(document)


async def test_both_key_schemes_are_documented_and_health_needs_none(running):
    _srv, _client, document = running
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-KEY"}
    assert schemes["ApiKeyQuery"] == {"type": "apiKey", "in": "query", "name": "api_key"}
    assert document["paths"]["/health"]["get"]["security"] == []


async def test_the_name_parameter_lists_the_served_workflows(running):
    srv, _client, document = running
    item = document["paths"]["/workflow/execute/{name}"]
    assert item["parameters"][0]["schema"]["enum"] == list(srv.workflows)


def _validator(document, path: str, method: str, status: int):
    responses = document["paths"][path][method]["responses"]
    spec = responses.get(str(status)) or responses.get("default")
    assert spec is not None, f"{method.upper()} {path} answered an undocumented {status}"
    schema = spec["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})


async def test_real_answers_validate_against_the_documented_schemas(running):
    _srv, client, document = running
    checked: list[tuple[str, int]] = []

    async def check(method: str, url: str, template: str, **kwargs) -> dict:
        status, body, _ = await call(client, method.upper(), url, **kwargs)
        validator = _validator(document, template, method, status)
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (url, status, errors, body)
        checked.append((template, status))
        return body

    await check("get", "/health", "/health")
    accepted = await check("post", "/workflow/execute/echo/async", "/workflow/execute/{name}/async")
    job_id = accepted["job_id"]
    await until_status(client, job_id, "completed")
    await check("get", f"/jobs/{job_id}", "/jobs/{job_id}")
    await check("get", f"/jobs/{job_id}/result", "/jobs/{job_id}/result")
    await check("get", "/jobs", "/jobs")
    await check("post", f"/jobs/{job_id}/cancel", "/jobs/{job_id}/cancel")  # 409
    await check("post", f"/jobs/{job_id}/resume", "/jobs/{job_id}/resume")  # 409
    await check("get", "/jobs/nope", "/jobs/{job_id}")  # 404
    await check("get", "/jobs?status=nope", "/jobs")  # 400
    await check("post", "/workflow/execute/echo", "/workflow/execute/{name}", json={"x": 1})
    await check("post", "/workflow/execute/boom", "/workflow/execute/{name}")  # 500: failed
    await check("post", "/workflow/execute/teapot", "/workflow/execute/{name}")  # lam.response
    await check("post", "/workflow/execute/echo", "/workflow/execute/{name}", data=b"{")  # 400
    await check("post", "/workflow/execute/nope", "/workflow/execute/{name}")  # 404
    await check("get", "/workflow/echo/executions", "/workflow/{name}/executions")
    for tail in ("", "/status", "/result"):
        await check(
            "get",
            f"/workflow/echo/executions/{job_id}{tail}",
            f"/workflow/{{name}}/executions/{{job_id}}{tail}",
        )
    _, failed, _ = await call(client, "GET", "/jobs?status=failed")
    failed_id = failed["jobs"][0]["job_id"]
    resumed = await check("post", f"/jobs/{failed_id}/resume", "/jobs/{job_id}/resume")
    assert resumed["status"] in ("pending", "processing", "failed")
    await until_status(client, failed_id, "failed")
    _, polling, _ = await call(client, "POST", "/workflow/execute/poll/async")
    await until_status(client, polling["job_id"], "processing")
    await check("get", f"/jobs/{polling['job_id']}/result", "/jobs/{job_id}/result")  # 409
    await check("post", f"/jobs/{polling['job_id']}/cancel", "/jobs/{job_id}/cancel")
    async with aiohttp.ClientSession(client._base_url) as anon:
        status, body, _ = await call(anon, "GET", "/jobs")
        errors = list(_validator(document, "/jobs", "get", status).iter_errors(body))
        assert status == 401 and not errors
    statuses = {status for _, status in checked}
    assert {200, 202, 400, 404, 409, 418, 500} <= statuses


async def test_a_large_result_pointer_validates_as_documented(running):
    _srv, client, document = running
    _, accepted, _ = await call(client, "POST", "/workflow/execute/big/async")
    job = await until_status(client, accepted["job_id"], "completed")
    validator = _validator(document, "/jobs/{job_id}", "get", 200)
    assert not list(validator.iter_errors(job))
    pointer = jsonschema_rs.Draft202012Validator(
        {"$ref": "#/components/schemas/LargeResult", "components": document["components"]}
    )
    assert pointer.is_valid(job["result"])
    assert "rows" not in json.dumps(job)  # not inline
