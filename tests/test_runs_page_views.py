"""The runs page's JSON (`/api/page/...`) over a real run store filled by real runs.

The runs poll the project's job API (samples/jobapi.py) on 127.0.0.1; the page's routes are
mounted on an aiohttp app of their own and asked over HTTP, as the browser asks them.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.logs.masking import Secrets
from lamrunner.runner.engine import Engine
from lamrunner.runner.state import RunState
from lamrunner.server.page import VIEWS_KEY, add_page_routes
from lamrunner.store.sqlite import RunStore

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("jobapi_for_page", ROOT / "samples" / "jobapi.py")
assert _spec is not None and _spec.loader is not None
jobapi = importlib.util.module_from_spec(_spec)
sys.modules["jobapi_for_page"] = jobapi
_spec.loader.exec_module(jobapi)

KEY = "page-test-key-7f3a9c"  # the job API's key: a config secret of the workflows


@pytest.fixture
async def job_api() -> AsyncIterator[str]:
    app = jobapi.create_app(api_key=KEY, phase_seconds=0.15)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def write_workflow(root: Path, name: str, history: dict[str, int] | None = None) -> Path:
    """submit_job (the project's handler), a fast poll of the job, and a step that returns a
    value under a secret-looking key."""
    loop: dict[str, Any] = {
        "condition": "(ctx) => ctx.response.status === 'completed'",
        "failWhen": "(ctx) => ['failed','canceled','expired'].includes(ctx.response.status)",
        "maxAttempts": 400,
        "strategy": "fixed",
        "initialDelay": "20ms",
        "timeout": "20s",
    }
    if history:
        loop["history"] = history
    (root / f"{name}_wait.py").write_text(
        "def transform(data):\n"
        "    return {'lam.httpRequest': {'method': 'GET',\n"
        "        'url': '<<config.jobApiUrl>>/api/jobs/{{jobId}}',\n"
        "        'pathParams': {'jobId': data['step_1']['response']['job_id']},\n"
        "        'headers': {'X-API-Key': '<<config.apiKey>>'},\n"
        f"        'loopUntil': {loop!r}}}}}\n"
    )
    (root / f"{name}_report.py").write_text(
        "def transform(data):\n"
        "    return {'session_token': 'tok-0123456789', 'status': data['step_2']['response']['status']}\n"
    )
    path = root / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "config:\n  jobApiUrl: ${JOBAPI_URL}\n  apiKey: ${JOBAPI_KEY}\n"
        "steps:\n"
        f"  - name: submit_job\n    handler: {ROOT / 'handlers' / 'submit_job.py'}\n"
        f"  - name: wait_for_job\n    handler: {name}_wait.py\n"
        f"  - name: report\n    handler: {name}_report.py\n"
    )
    return path


async def run_into(store: RunStore, path: Path, url: str, data: dict[str, Any]) -> str:
    """A real run of `path` checkpointed into `store`, as `lamrunner run --store` does."""
    env = {"JOBAPI_URL": url, "JOBAPI_KEY": KEY}
    workflow = load_workflow(path, env)
    engine = Engine(workflow, build_config(workflow.config, (), (), env), observers=[store])
    state = RunState.start(workflow.name, data)
    store.begin(state, {"workflow": str(path)})
    await engine.resume(state)
    store.flush()
    return state.run_id


def secrets_for(workflow: str) -> Secrets:
    return Secrets.of_config({"apiKey": KEY})


@pytest.fixture
async def filled(tmp_path: Path, job_api: str) -> AsyncIterator[dict[str, Any]]:
    """Four runs: alpha ok, alpha failed, beta ok with a long poll (history 2+2), alpha ok."""
    store = RunStore(tmp_path / "store.sqlite3")
    alpha = write_workflow(tmp_path, "alpha")
    beta = write_workflow(tmp_path, "beta", history={"first": 2, "last": 2})
    ids = {
        "ok1": await run_into(store, alpha, job_api, {"datasetId": "ds-1"}),
        "failed": await run_into(store, alpha, job_api, {"datasetId": KEY, "simulate": "failed"}),
        "long": await run_into(store, beta, job_api, {"datasetId": "ds-3"}),
        "ok2": await run_into(store, alpha, job_api, {"datasetId": "ds-4"}),
    }
    app = web.Application()
    add_page_routes(app, store.path, secrets_for=secrets_for)
    env = {"JOBAPI_URL": job_api, "JOBAPI_KEY": KEY}
    gamma = write_workflow(tmp_path, "gamma")  # served, no runs yet
    served = {p.stem: load_workflow(p, env) for p in (alpha, beta, gamma)}
    served_app = web.Application()  # as `lamrunner serve` mounts it: with its workflows
    add_page_routes(served_app, store.path, secrets_for=secrets_for, workflows=served)
    async with TestClient(TestServer(app)) as client, TestClient(TestServer(served_app)) as other:
        yield {"client": client, "served": other, "ids": ids}
    store.close()


async def get(client: TestClient, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    assert resp.status == status, await resp.text()
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    return await resp.json()


async def test_the_list_is_newest_first_with_attempts_and_durations(filled: dict[str, Any]) -> None:
    ids = filled["ids"]
    listed = await get(filled["client"], "/api/page/runs")
    assert [r["jobId"] for r in listed["runs"]] == [
        ids["ok2"],
        ids["long"],
        ids["failed"],
        ids["ok1"],
    ]
    by_id = {r["jobId"]: r for r in listed["runs"]}
    assert by_id[ids["failed"]]["status"] == "failed"
    assert by_id[ids["ok1"]]["status"] == "completed"
    assert by_id[ids["long"]]["attempts"] > 5  # 0.3 s of job at 20 ms a poll
    assert all(r["durationMs"] >= 300 for r in listed["runs"])  # two job phases at least
    assert listed["live"] is False
    assert listed["workflows"] == ["alpha", "beta"]
    assert listed["older"] is None


async def test_the_workflow_filter_offers_the_served_workflows(filled: dict[str, Any]) -> None:
    """A served workflow is in the filter before its first run, and the names come from the
    server, not from a scan of every job in the store."""
    queries: list[str] = []
    listed = await get(filled["served"], "/api/page/runs")
    assert listed["workflows"] == ["alpha", "beta", "gamma"]
    views = filled["served"].server.app[VIEWS_KEY]
    views._db.set_trace_callback(queries.append)
    try:
        await get(filled["served"], "/api/page/runs?workflow=gamma")
    finally:
        views._db.set_trace_callback(None)
    assert queries and not [q for q in queries if "DISTINCT" in q]


async def test_filters_by_status_and_workflow(filled: dict[str, Any]) -> None:
    client, ids = filled["client"], filled["ids"]
    failed = await get(client, "/api/page/runs?status=failed")
    assert [r["jobId"] for r in failed["runs"]] == [ids["failed"]]
    beta = await get(client, "/api/page/runs?workflow=beta")
    assert [r["jobId"] for r in beta["runs"]] == [ids["long"]]
    both = await get(client, "/api/page/runs?workflow=alpha&status=completed")
    assert [r["jobId"] for r in both["runs"]] == [ids["ok2"], ids["ok1"]]
    none = await get(client, "/api/page/runs?workflow=beta&status=failed")
    assert none["runs"] == []


async def test_pages_follow_the_older_cursor_without_gaps_or_repeats(
    filled: dict[str, Any],
) -> None:
    client, ids = filled["client"], filled["ids"]
    seen, query = [], "/api/page/runs?limit=1"
    while True:
        page = await get(client, query)
        seen += [r["jobId"] for r in page["runs"]]
        if page["older"] is None:
            break
        query = f"/api/page/runs?limit=1&before={page['older']}"
    assert seen == [ids["ok2"], ids["long"], ids["failed"], ids["ok1"]]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("status=done", "query status"),
        ("limit=0", "query limit"),
        ("limit=abc", "query limit"),
        ("before=yesterday", "query before"),
        ("before=nan~x", "query before"),
    ],
)
async def test_bad_queries_get_a_clear_400(filled: dict[str, Any], query: str, named: str) -> None:
    body = await get(filled["client"], f"/api/page/runs?{query}", status=400)
    assert body["error"]["message"].startswith(named)
    assert "Traceback" not in str(body)


async def test_a_failed_run_shows_its_steps_timeline_and_last_response(
    filled: dict[str, Any],
) -> None:
    shown = await get(filled["client"], f"/api/page/runs/{filled['ids']['failed']}")
    run, steps = shown["run"], shown["steps"]
    assert run["status"] == "failed" and run["canResume"] and not run["canCancel"]
    assert run["error"]["type"] == "PollingFailed" and run["error"]["step"] == "wait_for_job"
    assert [(s["name"], s["status"]) for s in steps] == [
        ("submit_job", "completed"),
        ("wait_for_job", "failed"),
    ]
    assert steps[0]["result"]["http"]["status"] == 202
    (poll,) = steps[1]["polls"]
    timeline = poll["timeline"]
    assert [a["attempt"] for a in timeline] == list(range(1, poll["attempts"] + 1))
    assert all(a["status"] == 200 for a in timeline)
    assert all(a["delayMs"] == 20 for a in timeline[:-1]) and timeline[-1]["delayMs"] is None
    assert timeline[-1]["outcome"] == "PollingFailed"
    assert '"status": "failed"' in timeline[-1]["lastResponse"]["body"]


async def test_a_run_lists_every_step_of_its_workflow_when_the_server_has_it(
    filled: dict[str, Any],
) -> None:
    failed = filled["ids"]["failed"]
    shown = await get(filled["served"], f"/api/page/runs/{failed}")
    assert [(s["name"], s["status"]) for s in shown["steps"]] == [
        ("submit_job", "completed"),
        ("wait_for_job", "failed"),
        ("report", "not-started"),
    ]
    unrun = shown["steps"][2]
    assert unrun["key"] == "step_3" and unrun["polls"] == [] and unrun["durationMs"] is None
    ok = await get(filled["served"], f"/api/page/runs/{filled['ids']['ok1']}")
    assert [s["status"] for s in ok["steps"]] == ["completed"] * 3


async def test_a_long_poll_shows_the_elided_attempts_counted(filled: dict[str, Any]) -> None:
    shown = await get(filled["client"], f"/api/page/runs/{filled['ids']['long']}")
    assert [s["name"] for s in shown["steps"]] == ["submit_job", "wait_for_job", "report"]
    (poll,) = shown["steps"][1]["polls"]
    timeline = poll["timeline"]
    gap = [t for t in timeline if "elided" in t]
    assert len(gap) == 1 and gap[0]["elided"] == poll["elided"] == poll["attempts"] - 4
    kept = [t["attempt"] for t in timeline if "attempt" in t]
    assert kept == [1, 2, poll["attempts"] - 1, poll["attempts"]]
    assert timeline[-1]["outcome"] == "success"
    assert sum(poll["statuses"].values()) == poll["attempts"]


async def test_secrets_are_masked_by_value_and_by_key(filled: dict[str, Any]) -> None:
    client, ids = filled["client"], filled["ids"]
    failed = await client.get(f"/api/page/runs/{ids['failed']}")
    text = await failed.text()
    assert KEY not in text  # the job API echoed it back (as the datasetId) in step 1's result
    shown = await failed.json()
    assert shown["steps"][0]["result"]["response"]["request"]["datasetId"] == "***"
    ok = await get(client, f"/api/page/runs/{ids['ok1']}")
    assert ok["run"]["result"] == {"session_token": "***", "status": "completed"}
    assert ok["steps"][2]["result"] == {"data": {"session_token": "***", "status": "completed"}}


async def test_an_unknown_run_is_a_404_naming_it(filled: dict[str, Any]) -> None:
    body = await get(filled["client"], "/api/page/runs/nope-123", status=404)
    assert "nope-123" in body["error"]["message"]


async def test_the_page_and_its_assets_are_served_with_the_policy(filled: dict[str, Any]) -> None:
    client = filled["client"]
    for path, kind in [
        ("/", "text/html"),
        (f"/runs/{filled['ids']['ok1']}", "text/html"),
        ("/page/static/page.js", "text/javascript"),
        ("/page/static/page.css", "text/css"),
    ]:
        resp = await client.get(path)
        assert resp.status == 200 and resp.content_type == kind
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    html = await (await client.get("/")).text()
    assert '<script src="/page/static/page.js"' in html and "http" not in html.split("<body>")[0]
    resp = await client.get("/page/static/other.js")
    assert resp.status == 404
