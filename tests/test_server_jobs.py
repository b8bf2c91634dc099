"""The job core of `lamrunner serve` (JobService) against real job APIs on 127.0.0.1: the job
lifecycle, the rolling hold (a long wait leaves memory, the waker brings it back on time),
cancel and resume, retention, the listing, the cap on runs in memory, bad requests; and the
engine's `hold` itself, on a fake clock."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import Reply, ScriptedAPI

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.runner.calls import HANDOVER
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import Engine
from lamrunner.runner.state import RunState
from lamrunner.server.jobs import (
    LARGE_RESULT_BYTES,
    Job,
    JobRequestError,
    JobService,
    Served,
)
from lamrunner.store.sqlite import RunStore

ROOT = Path(__file__).resolve().parent.parent


# -- helpers -----------------------------------------------------------------------------------


def write_flow(folder: Path, name: str, handlers: dict[str, str], extra: str = "") -> Path:
    """A workflow `name` in `folder` whose steps are the Python handlers given (in order)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file, body in handlers.items():
        (folder / file).write_text(body)
    steps = "".join(f"  - handler: {file}\n" for file in handlers)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n{extra}steps:\n{steps}")
    return path


def returning(expression: str) -> str:
    return f"def transform(data):\n    return {expression}\n"


def request(req: dict[str, Any]) -> str:
    """A handler returning one lam.httpRequest."""
    text = json.dumps({"lam.httpRequest": req})
    return f"import json\n\ndef transform(data):\n    return json.loads({text!r})\n"


def poll(url: str, delay: str, attempts: int = 10, **extra: Any) -> dict[str, Any]:
    loop = {"condition": "ctx.response.s === 'done'", "maxAttempts": attempts}
    loop["initialDelay"] = delay
    return {"method": "GET", "url": url, "loopUntil": loop, **extra}


def serving(*paths: Path) -> dict[str, Served]:
    served = {}
    for path in paths:
        workflow = load_workflow(path, env={})
        served[workflow.name] = Served(workflow, str(path))
    return served


@asynccontextmanager
async def service(
    tmp_path: Path, *paths: Path, configs: dict[str, Path] | None = None, **options: Any
) -> AsyncIterator[JobService]:
    jobs = JobService(serving(*paths), configs or {}, tmp_path / "serve.sqlite3", env={}, **options)
    await jobs.start()
    try:
        yield jobs
    finally:
        await jobs.close()


async def until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait (briefly polling) until `check()` is truthy; its value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {timeout}s")


async def finished(jobs: JobService, job: Job, timeout: float = 5.0) -> Job:
    """The job once `settled` answers (it ended, here)."""
    return await asyncio.wait_for(jobs.settled(job.job_id), timeout)


async def ended(jobs: JobService, job: Job, timeout: float = 5.0) -> Job:
    """The job once it ended (a job that waits as a row settles before it ends)."""
    done = ("completed", "failed", "canceled")
    return await until(lambda: (j := jobs.get(job.job_id)) and j.status in done and j, timeout)  # type: ignore[no-any-return]


# -- the sample job API, with a log of what it was sent ------------------------------------------


def _jobapi_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "jobapi_for_serve", ROOT / "samples" / "jobapi.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["jobapi_for_serve"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def jobapi() -> AsyncIterator[tuple[str, list[tuple[str, str]]]]:
    """samples/jobapi.py's app (phases of 0.3 s) on 127.0.0.1, and its request log."""
    seen: list[tuple[str, str]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.method, request.path))
        return await handler(request)  # type: ignore[no-any-return]

    app = _jobapi_module().create_app(api_key="dev-key", phase_seconds=0.3)
    app.middlewares.append(record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


def lifecycle_flow(folder: Path, url: str) -> Path:
    """Submit a job to the sample API, poll it until it ends, report its result."""
    submit = request(
        {
            "method": "POST",
            "url": f"{url}/api/jobs",
            "headers": {"X-API-Key": "<<config.apiKey>>"},
            "body": {"datasetId": "ds-serve"},
        }
    )
    wait = (
        "def transform(data):\n"
        "    job = data['step_1']['response']['job_id']\n"
        "    return {'lam.httpRequest': {'method': 'GET',\n"
        f"        'url': '{url}/api/jobs/' + job, 'headers': {{'X-API-Key': '<<config.apiKey>>'}},\n"
        "        'loopUntil': {'condition': \"ctx.response.status === 'completed'\",\n"
        "                      'maxAttempts': 40, 'initialDelay': '100ms'}}}\n"
    )
    report = returning("{'job': data['step_2']['response']['status'], 'done': True}")
    handlers = {"submit.py": submit, "wait.py": wait, "report.py": report}
    return write_flow(folder, "lifecycle", handlers, "config:\n  apiKey: dev-key\n")


# -- the lifecycle -----------------------------------------------------------------------------


async def test_a_job_runs_pending_processing_completed_with_the_last_steps_output(tmp_path, jobapi):
    url, seen = jobapi
    async with service(tmp_path, lifecycle_flow(tmp_path / "wf", url)) as jobs:
        job = await jobs.submit("lifecycle", {})
        assert job.status == "pending"
        assert job.document()["status"] == "pending" and "result" not in job.document()
        running = await until(lambda: (j := jobs.get(job.job_id)) and j.attempts >= 1 and j)
        assert running.status == "processing"
        done = await finished(jobs, job)
    assert done.status == "completed"
    assert done.result == {"job": "completed", "done": True}
    assert done.document()["result"] == {"job": "completed", "done": True}
    assert done.document()["updated_at"].endswith("Z") and done.updated_at >= done.created_at
    assert done.attempts >= 2  # the poll's attempts, from the store's poll counts
    assert seen[0] == ("POST", "/api/jobs") and seen.count(("POST", "/api/jobs")) == 1
    # the job is a run in the run store: `lamrunner runs show` reads it
    store = RunStore(tmp_path / "serve.sqlite3")
    try:
        assert store.load(job.job_id)[2] == "SUCCESS"
        assert len(store.attempts(job.job_id)) == done.attempts
    finally:
        store.close()


async def test_a_failed_run_is_a_failed_job_with_its_error_message(tmp_path):
    path = write_flow(
        tmp_path, "boom", {"a.py": "def transform(data):\n    raise ValueError('no')\n"}
    )
    async with service(tmp_path, path) as jobs:
        done = await finished(jobs, await jobs.submit("boom", {}))
    assert done.status == "failed"
    assert done.error is not None and done.error["step"] == "step_1"
    assert "ValueError: no" in done.document()["error"]
    assert "result" not in done.document()


async def test_a_lam_response_ends_the_job_with_it_and_says_so(tmp_path):
    answer = {"lam.response": {"statusCode": 201, "message": "made", "data": {"made": True}}}
    path = write_flow(tmp_path, "answer", {"a.py": returning(repr(answer)), "b.py": returning("1")})
    async with service(tmp_path, path) as jobs:
        done = await finished(jobs, await jobs.submit("answer", {}))
    assert done.status == "completed" and done.ended_by == "lam.response"
    assert done.result == {"statusCode": 201, "message": "made", "data": {"made": True}}


async def test_secrets_of_the_config_are_masked_in_a_jobs_result(tmp_path):
    path = write_flow(
        tmp_path,
        "leak",
        {"a.py": returning("{'echo': data['input']}")},
        "config:\n  apiKey: s3cr3t-value\n",
    )
    async with service(tmp_path, path) as jobs:
        done = await finished(jobs, await jobs.submit("leak", {"k": "s3cr3t-value"}))
    assert "s3cr3t-value" not in json.dumps(done.document())
    assert "s3cr3t-value" not in (jobs_result := json.dumps(done.result))
    assert "***" in jobs_result


async def test_listeners_hear_each_job_end_once(tmp_path):
    path = write_flow(tmp_path, "quick", {"a.py": returning("{'ok': 1}")})
    heard: list[tuple[str, str]] = []
    async with service(tmp_path, path) as jobs:
        jobs.listen(lambda job: heard.append((job.job_id, job.status)))
        first = await finished(jobs, await jobs.submit("quick", {}))
        second = await finished(jobs, await jobs.submit("quick", {}))
        await asyncio.sleep(0.05)
    assert sorted(heard) == sorted([(first.job_id, "completed"), (second.job_id, "completed")])


async def test_a_large_result_is_answered_as_a_pointer_and_served_whole(tmp_path):
    path = write_flow(tmp_path, "big", {"a.py": returning(f"'x' * {LARGE_RESULT_BYTES}")})
    async with service(tmp_path, path) as jobs:
        done = await finished(jobs, await jobs.submit("big", {}))
        whole = jobs.result_json(done.job_id)
    assert done.status == "completed" and done.result is None
    assert done.result_bytes is not None and done.result_bytes >= LARGE_RESULT_BYTES
    assert done.document()["result"] == {"is_url": True, "url": f"/jobs/{done.job_id}/result"}
    assert whole is not None and json.loads(whole) == "x" * LARGE_RESULT_BYTES


async def test_resolve_then_execute_settles_with_its_result_while_the_child_runs(tmp_path, api):
    api.script("GET", "/child", Reply(json={"s": "running"}), Reply(json={"s": "done"}))
    child = write_flow(
        tmp_path / "child", "child", {"c.py": request(poll(f"{api.url}/child", "300ms"))}
    )
    call = {"lam.resolveThenExecute": {"lam.workflowId": 7, "lam.payload": {}, "lam.result": 42}}
    parent = write_flow(
        tmp_path / "parent",
        "parent",
        {"p.py": returning(repr(call))},
        f"workflows:\n  7: {child}\n",
    )
    async with service(tmp_path, parent) as jobs:
        job = await jobs.submit("parent", {})
        early = await asyncio.wait_for(jobs.settled(job.job_id), 5)
        assert early.result == 42 and early.status == "processing"
        assert not api.requests_to("/child") or len(api.requests_to("/child")) == 1
        await until(lambda: len(api.requests_to("/child")) == 1)  # the child polls on
        assert jobs.get(job.job_id).status == "processing"  # type: ignore[union-attr]
        done = await until(lambda: (j := jobs.get(job.job_id)) and j.status == "completed" and j)
    assert done.result == 42 and done.ended_by == "lam.resolveThenExecute"
    assert len(api.requests_to("/child")) == 2


# -- the hold and the waker ----------------------------------------------------------------------


async def test_a_job_waiting_beyond_the_hold_leaves_memory_and_is_woken_on_time(tmp_path, api):
    api.script("GET", "/job", Reply(json={"s": "running"}), Reply(json={"s": "done"}))
    path = write_flow(tmp_path, "slow", {"a.py": request(poll(f"{api.url}/job", "2s"))})
    async with service(tmp_path, path, hold=0.5) as jobs:
        job = await jobs.submit("slow", {})
        waiting = await until(
            lambda: (j := jobs.get(job.job_id)) and j.due_at is not None and j.attempts == 1 and j
        )
        await until(lambda: jobs.active == 0)
        assert (await jobs.settled(job.job_id)).due_at == waiting.due_at  # a sync call: 202
        assert waiting.status == "processing"  # a row, no task: processing all the same
        assert waiting.document()["status"] == "processing"
        assert waiting.due_at == pytest.approx(time.time() + 2, abs=0.5)
        done = await ended(jobs, job, timeout=6)
    assert done.status == "completed" and done.attempts == 2
    first, second = api.requests_to("/job")
    assert second.at - first.at == pytest.approx(2.0, abs=0.3)  # woken early, sent on time


async def test_a_job_within_the_hold_stays_in_memory(tmp_path, api):
    api.script("GET", "/job", Reply(json={"s": "running"}), Reply(json={"s": "done"}))
    path = write_flow(tmp_path, "fast", {"a.py": request(poll(f"{api.url}/job", "300ms"))})
    async with service(tmp_path, path, hold=5) as jobs:
        job = await jobs.submit("fast", {})
        await until(lambda: len(api.requests_to("/job")) == 1)
        await asyncio.sleep(0.1)
        assert jobs.active == 1
        assert jobs.get(job.job_id).due_at is None  # type: ignore[union-attr]
        assert (await finished(jobs, job)).status == "completed"


async def test_at_most_max_active_jobs_run_at_once_the_rest_wait_pending(tmp_path, api):
    api.script("GET", "/job", Reply(json={"s": "running"}), Reply(json={"s": "done"}))
    path = write_flow(tmp_path, "capped", {"a.py": request(poll(f"{api.url}/job", "200ms", 3))})
    async with service(tmp_path, path, max_active=1) as jobs:
        one = await jobs.submit("capped", {})
        two = await jobs.submit("capped", {})
        await until(lambda: len(api.requests_to("/job")) >= 1)
        assert jobs.active == 1
        assert jobs.get(two.job_id).status == "pending"  # type: ignore[union-attr]
        assert (await finished(jobs, one)).status == "completed"
        assert (await finished(jobs, two)).status == "completed"


# -- cancel and resume -------------------------------------------------------------------------


def give_up_poll(api: ScriptedAPI, delay: str) -> dict[str, Any]:
    return poll(
        f"{api.url}/job",
        delay,
        onGiveUp={"method": "POST", "url": f"{api.url}/cancel/<<last.response.id>>"},
    )


async def test_cancel_of_a_job_in_memory_stops_its_polls_and_sends_only_on_give_up(tmp_path, api):
    api.script("GET", "/job", Reply(json={"s": "running", "id": "j1"}))
    api.script("POST", "/cancel/j1", Reply(json={"ok": True}))
    path = write_flow(tmp_path, "cancel", {"a.py": request(give_up_poll(api, "200ms"))})
    async with service(tmp_path, path) as jobs:
        job = await jobs.submit("cancel", {})
        await until(lambda: len(api.requests_to("/job")) >= 2)
        canceled = await jobs.cancel(job.job_id)
        polls = len(api.requests_to("/job"))
        await asyncio.sleep(0.6)  # three more polls' worth
        assert len(api.requests_to("/job")) == polls
        with pytest.raises(JobRequestError) as again:
            await jobs.cancel(job.job_id)
    assert canceled.status == "canceled" and canceled.document()["status"] == "canceled"
    assert canceled.error is not None and canceled.error["type"] == "Cancelled"
    assert len(api.requests_to("/cancel/j1")) == 1
    assert again.value.status == 409 and "canceled" in again.value.message


async def test_cancel_of_a_job_waiting_as_a_row_ends_it_from_its_saved_state(tmp_path, api):
    api.script("GET", "/job", Reply(json={"s": "running", "id": "j2"}))
    api.script("POST", "/cancel/j2", Reply(json={"ok": True}))
    path = write_flow(tmp_path, "row", {"a.py": request(give_up_poll(api, "1h"))})
    async with service(tmp_path, path, hold=1) as jobs:
        job = await jobs.submit("row", {})
        await until(lambda: (j := jobs.get(job.job_id)) and j.attempts == 1 and j.due_at)
        await until(lambda: jobs.active == 0)
        canceled = await jobs.cancel(job.job_id)
    assert canceled.status == "canceled"
    assert len(api.requests_to("/job")) == 1  # no poll more
    assert len(api.requests_to("/cancel/j2")) == 1  # its onGiveUp, from the saved response


async def test_cancel_of_a_pending_job_sends_nothing(tmp_path, api):
    path = write_flow(tmp_path, "never", {"a.py": request(poll(f"{api.url}/job", "1s"))})
    async with service(tmp_path, path, max_active=0) as jobs:
        job = await jobs.submit("never", {})
        canceled = await jobs.cancel(job.job_id)
    assert canceled.status == "canceled" and api.seen == []


async def test_resume_runs_a_failed_job_on_from_its_failed_step(tmp_path, api):
    api.script("POST", "/first", Reply(json={"n": 1}))
    api.script("GET", "/flaky", Reply(status=500), Reply(json={"ok": True}))
    handlers = {
        "a.py": request({"method": "POST", "url": f"{api.url}/first"}),
        "b.py": request({"method": "GET", "url": f"{api.url}/flaky"}),
    }
    path = write_flow(tmp_path, "redo", handlers)
    async with service(tmp_path, path) as jobs:
        failed = await finished(jobs, await jobs.submit("redo", {}))
        assert failed.status == "failed" and failed.error["type"] == "HttpStatusError"  # type: ignore[index]
        resumed = await jobs.resume(failed.job_id)
        assert resumed.status == "processing" and resumed.error is None
        done = await finished(jobs, resumed)
        with pytest.raises(JobRequestError) as refused:
            await jobs.resume(done.job_id)
    assert done.status == "completed" and done.result == {"ok": True}
    assert len(api.requests_to("/first")) == 1  # its completed step is not run again
    assert refused.value.status == 409


# -- retention ---------------------------------------------------------------------------------


async def test_the_retention_sweep_expires_old_jobs_and_purges_their_runs(tmp_path, api):
    api.script("GET", "/job", Reply(json={"s": "done"}))
    path = write_flow(tmp_path, "old", {"a.py": request(poll(f"{api.url}/job", "1s"))})
    async with service(tmp_path, path, retention=3600) as jobs:
        done = await finished(jobs, await jobs.submit("old", {}))
        assert done.finished_at is not None
        assert jobs.sweep(done.finished_at + 3599) == []
        assert jobs.sweep(done.finished_at + 3601) == [done.job_id]
        expired = jobs.get(done.job_id)
        assert jobs.result_json(done.job_id) is not None
    assert expired is not None and expired.status == "expired"
    assert expired.result == {
        "expired": True,
        "message": "the job's result was deleted 1h after it ended (the server's --retention)",
    }
    assert expired.document()["result"] == expired.result
    store = RunStore(tmp_path / "serve.sqlite3")
    try:
        with pytest.raises(DefinitionError):
            store.load(done.job_id)
        assert store.attempts(done.job_id) == [] and store.poll_counts(done.job_id) == []
    finally:
        store.close()


# -- the listing and bad requests --------------------------------------------------------------


async def test_list_is_newest_first_and_filters_by_workflow_and_status(tmp_path):
    good = write_flow(tmp_path / "g", "good", {"a.py": returning("1")})
    bad = write_flow(
        tmp_path / "b", "bad", {"a.py": "def transform(data):\n    raise KeyError()\n"}
    )
    async with service(tmp_path, good, bad) as jobs:
        made = []
        for name in ("good", "bad", "good"):
            made.append(await finished(jobs, await jobs.submit(name, {})))
        newest = [j.job_id for j in jobs.list()]
        assert newest == [j.job_id for j in reversed(made)]
        assert [j.job_id for j in jobs.list(workflow="bad")] == [made[1].job_id]
        assert [j.job_id for j in jobs.list(status="completed")] == [made[2].job_id, made[0].job_id]
        assert [j.job_id for j in jobs.list(limit=1, before=made[2].job_id)] == [made[1].job_id]
        with pytest.raises(JobRequestError) as wrong:
            jobs.list(status="done")
    assert wrong.value.status == 400 and "status" in wrong.value.message


async def test_bad_requests_name_what_is_wrong(tmp_path, api):
    path = write_flow(tmp_path, "two", {"a.py": returning("1"), "b.py": returning("2")})
    async with service(tmp_path, path) as jobs:
        cases = [
            (jobs.submit("nope", {}), 404, "no workflow named 'nope'"),
            (jobs.submit("two", {}, configuration="prod"), 404, "configuration"),
            (jobs.submit("two", {}, start_from_step=3), 400, "start_from_step"),
            (jobs.submit("two", {}, end_at_step=0), 400, "end_at_step"),
            (jobs.submit("two", {}, end_at_step="x"), 400, "end_at_step"),
            (jobs.submit("two", {}, start_from_step=2, end_at_step=1), 400, "end_at_step"),
            (jobs.cancel("missing"), 404, "no job 'missing'"),
            (jobs.resume("missing"), 404, "no job 'missing'"),
        ]
        for call, status, words in cases:
            with pytest.raises(JobRequestError) as refused:
                await call
            assert refused.value.status == status and words in refused.value.message
        assert jobs.get("missing") is None and jobs.list() == []


async def test_start_and_end_steps_count_from_one(tmp_path):
    handlers = {
        "a.py": returning("{'a': 1}"),
        "b.py": returning("{'b': 'step_1' in data}"),
        "c.py": returning("{'c': 3}"),
    }
    path = write_flow(tmp_path, "three", handlers)
    async with service(tmp_path, path) as jobs:
        ended = await finished(jobs, await jobs.submit("three", {}, end_at_step=1))
        started = await finished(
            jobs, await jobs.submit("three", {}, start_from_step="2", end_at_step=2)
        )
    assert ended.result == {"a": 1} and ended.end_at_step == 1
    assert started.result == {"b": False} and started.start_from_step == 2


async def test_end_at_step_ends_after_that_step_wherever_its_route_leads(tmp_path):
    for name in ("one", "two", "three"):
        (tmp_path / f"{name}.py").write_text(returning(repr(name)))
    path = tmp_path / "routed.yaml"
    path.write_text(
        "name: routed\nsteps:\n  - {name: one, handler: one.py, next: three}\n"
        "  - {name: two, handler: two.py}\n  - {name: three, handler: three.py}\n"
    )
    async with service(tmp_path, path) as jobs:
        first = await finished(jobs, await jobs.submit("routed", {}, end_at_step=1))
        skipped = await finished(jobs, await jobs.submit("routed", {}, end_at_step=2))
    assert (first.status, first.result) == ("completed", "one")
    assert (skipped.status, skipped.result) == ("completed", "three")  # step 2 never ran
    store = RunStore(tmp_path / "serve.sqlite3")
    try:
        assert "step_3" not in store.load(first.job_id)[0].gwo
    finally:
        store.close()


async def test_configuration_picks_a_config_file_by_name_the_first_by_default(tmp_path, api):
    for where in ("own", "prod", "dev"):
        api.script("GET", f"/{where}", Reply(json=where))
    path = write_flow(
        tmp_path,
        "cfg",
        {"a.py": request({"method": "GET", "url": f"{api.url}/<<config.where>>"})},
        "config:\n  where: own\n",
    )
    (tmp_path / "prod.yaml").write_text("where: prod\n")
    (tmp_path / "dev.yaml").write_text("where: dev\n")
    configs = {"prod": tmp_path / "prod.yaml", "dev": tmp_path / "dev.yaml"}
    async with service(tmp_path, path, configs=configs) as jobs:
        default = await finished(jobs, await jobs.submit("cfg", {}))
        dev = await finished(jobs, await jobs.submit("cfg", {}, configuration="dev"))
    assert (default.result, default.configuration) == ("prod", "prod")
    assert (dev.result, dev.configuration) == ("dev", "dev")


# -- the engine's hold (a fake clock: nothing sleeps) --------------------------------------------


async def test_the_engine_holds_short_waits_and_suspends_long_ones(api, wf):
    api.script("GET", "/job", Reply(json={"s": "running"}), Reply(json={"s": "done"}))
    for delay, status in (("10s", "SUCCESS"), ("1h", "SUSPENDED")):
        api.seen.clear()
        api.replies.clear()
        api.script("GET", "/job", Reply(json={"s": "running"}), Reply(json={"s": "done"}))
        path = wf.workflow([wf.request_step(f"p{delay}", poll(f"{api.url}/job", delay))])
        workflow = load_workflow(path, env={})
        clock = FakeClock()
        engine = Engine(workflow, build_config(workflow.config), clock=clock)
        state = RunState.start(workflow.name, {})
        record = await engine.resume(state, hold=60)
        assert record["status"] == status
    assert state.resume_at == pytest.approx(clock.now() + 3600)
    assert len(api.seen) == 1
    resumed = await engine.resume(RunState.from_dict(json.loads(json.dumps(state.to_dict()))))
    assert resumed["status"] == "SUCCESS" and len(api.seen) == 2


async def test_the_engine_refuses_a_bad_hold(api, wf):
    path = wf.workflow([wf.py_step("a", "1")])
    engine = Engine(load_workflow(path, env={}), clock=FakeClock())
    with pytest.raises(DefinitionError, match="hold: expected seconds >= 0"):
        await engine.run({}, hold=-1)


async def test_a_handover_stops_a_poll_without_its_on_give_up(api, wf):
    api.script("GET", "/job", Reply(json={"s": "running", "id": "j9"}))
    api.script("POST", "/cancel/j9", Reply(json={"ok": True}))
    path = wf.workflow([wf.request_step("p", give_up_poll(api, "50ms"))])
    workflow = load_workflow(path, env={})
    engine = Engine(workflow, build_config(workflow.config))
    task = asyncio.ensure_future(engine.run({}))
    await until(lambda: len(api.requests_to("/job")) >= 2)
    task.cancel(HANDOVER)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert api.requests_to("/cancel/j9") == []


# -- restarts with other workflows or configurations ---------------------------------------------


async def test_jobs_of_a_workflow_no_longer_served_wait_until_it_is_served_again(tmp_path):
    one = write_flow(tmp_path / "one", "one", {"a.py": returning("'one'")})
    other = write_flow(tmp_path / "other", "other", {"a.py": returning("'other'")})
    async with service(tmp_path, one, max_active=0) as jobs:
        waiting = await jobs.submit("one", {})
    async with service(tmp_path, other) as jobs:
        done = await finished(jobs, await jobs.submit("other", {}))
        assert done.result == "other"
        assert jobs.get(waiting.job_id).status == "pending"  # type: ignore[union-attr]
    async with service(tmp_path, one) as jobs:
        assert (await finished(jobs, waiting)).result == "one"


async def test_a_job_whose_configuration_is_gone_fails_saying_so(tmp_path):
    path = write_flow(tmp_path, "cfg", {"a.py": returning("1")})
    (tmp_path / "prod.yaml").write_text("x: 1\n")
    async with service(
        tmp_path, path, configs={"prod": tmp_path / "prod.yaml"}, max_active=0
    ) as jobs:
        waiting = await jobs.submit("cfg", {})
    async with service(tmp_path, path) as jobs:
        failed = await finished(jobs, waiting)
        with pytest.raises(JobRequestError) as refused:
            await jobs.resume(waiting.job_id)
    assert failed.status == "failed"
    assert "configuration 'prod', which this server was not given" in failed.document()["error"]
    assert refused.value.status == 409 and "--config" in refused.value.message
