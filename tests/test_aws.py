"""lamrunner.aws.durable_handler under the AWS durable execution testing SDK's own runner.

`DurableFunctionTestRunner` really re-invokes the handler after each durable wait (with
`skip_time=True` it skips the waits' wall-clock time and keeps their modelled durations in the
history), so these tests see what the service would: the invocations, the checkpointed
operations and their payloads. The APIs polled are real servers on 127.0.0.1 that count what
they receive, so "a replay re-sends nothing that completed" is asserted on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

from lamrunner.aws import durable_handler
from lamrunner.aws.durable import CHECKPOINT_LIMIT
from lamrunner.aws.function import _configure_logs
from lamrunner.deployed import _loaded
from lamrunner.logs.chain import detach_stdlib
from tests.conftest import WorkflowDir

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-live-0123456789abcdef"


# -- a counting API on 127.0.0.1 (a background thread: the test runner blocks) ---------------


@dataclass
class CountingApi:
    """POST /jobs makes a job; GET /jobs/{id} answers `pending` until its `ready_after`-th GET."""

    url: str = ""
    ready_after: dict[str, int] = field(default_factory=dict)  # job id → GETs until completed
    seen: Counter[str] = field(default_factory=Counter)  # "METHOD /path" → count
    keys: list[str] = field(default_factory=list)  # X-API-Key values received

    async def submit(self, request: web.Request) -> web.Response:
        self.seen[f"POST {request.path}"] += 1
        self.keys.append(request.headers.get("X-API-Key", ""))
        body = await request.json()
        job = f"job-{body['name']}"
        self.ready_after[job] = int(body.get("polls", 3))
        return web.json_response({"id": job, "status": "pending"}, status=202)

    async def status(self, request: web.Request) -> web.Response:
        self.seen[f"GET {request.path}"] += 1
        self.keys.append(request.headers.get("X-API-Key", ""))
        job = request.match_info["job"]
        done = self.seen[f"GET {request.path}"] >= self.ready_after.get(job, 1)
        status = (
            "failed" if job.endswith("-doomed") and done else "completed" if done else "pending"
        )
        return web.json_response({"id": job, "status": status})


@pytest.fixture
def api() -> Iterator[CountingApi]:
    state = CountingApi()
    app = web.Application()
    app.router.add_post("/jobs", state.submit)
    app.router.add_get("/jobs/{job}", state.status)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        holder["runner"] = runner
        state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        finally:
            ready.set()
        loop.run_forever()
        loop.run_until_complete(holder["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="counting-api", daemon=True)
    thread.start()
    assert ready.wait(15) and state.url, "the counting API did not start"
    yield state
    loop.call_soon_threadsafe(loop.stop)
    thread.join(15)


@pytest.fixture(autouse=True)
def _new_container() -> Iterator[None]:
    """The handler configures logging and loads its workflow once per container: give the
    next test a new one."""
    yield
    detach_stdlib()
    structlog.reset_defaults()
    _configure_logs.cache_clear()
    _loaded.cache_clear()  # a container's workflow: the next test deploys its own


# -- running the handler -----------------------------------------------------------------------


@dataclass
class Execution:
    record: dict[str, Any]
    status: str  # the durable execution's own status
    operations: list[str]  # top-level operation names, in order
    events: list[dict[str, Any]]  # the execution history, with data
    seconds: float  # wall-clock time the execution took here

    def count(self, event_type: str) -> int:
        return sum(1 for e in self.events if e["EventType"] == event_type)

    def waits(self, operation: str) -> list[int]:
        """The durable waits between the checks of a wait_for_condition, in seconds."""
        return [
            e["StepSucceededDetails"]["RetryDetails"]["NextAttemptDelaySeconds"]
            for e in self.events
            if e.get("Name") == operation
            and e["EventType"] == "StepSucceeded"
            and "RetryDetails" in e.get("StepSucceededDetails", {})
        ]


def execute(
    workflow: Path,
    event: Any,
    monkeypatch: pytest.MonkeyPatch,
    *,
    skip_time: bool = True,
    name: str = "run-1",
) -> Execution:
    monkeypatch.setenv("LAMRUNNER_WORKFLOW", str(workflow))
    monkeypatch.delenv("LAMRUNNER_CONFIG", raising=False)
    with DurableFunctionTestRunner(handler=durable_handler, skip_time=skip_time) as runner:
        started = time.monotonic()
        arn = runner.run_async(input=json.dumps(event), execution_name=name, execution_timeout=600)
        result = runner.wait_for_result(execution_arn=arn, timeout=120)
        seconds = time.monotonic() - started
        history = runner.get_execution_history(arn, include_execution_data=True)
    # The testing SDK's Scheduler stops its event loop but never closes it (1.4.0).
    runner._scheduler._loop.close()
    if result.error is not None:  # a FAILED run fails the execution, its record the data
        assert result.result is None and result.error.type.endswith(".RunFailed"), result.error
        record = json.loads(result.error.data)
        error = record["error"]
        step = f"step {error['step']}: " if error.get("step") else ""
        assert result.error.message == f"{error['type']}: {step}{error['message']}"
    else:
        assert result.result is not None
        record = json.loads(result.result)
    return Execution(
        record=record,
        status=str(result.execution_status.value if result.execution_status else None),
        operations=[op.name or "" for op in result.operations],
        events=[json.loads(json.dumps(e.to_dict(), default=str)) for e in history.events],
        seconds=seconds,
    )


def poll_workflow(
    wf: WorkflowDir, url: str, loop: dict[str, Any], *, polls: int = 3, name: str = "a"
) -> Path:
    """submit (POST /jobs) → wait (GET /jobs/{id} with `loop`) → report (plain data)."""
    wf.request_step(
        "submit",
        {
            "method": "POST",
            "url": "<<config.api>>/jobs",
            "headers": {"X-API-Key": "<<config.apiKey>>"},
            "body": {"name": name, "polls": polls},
        },
    )
    wf.handler(
        "wait.py",
        f"""
        def transform(data):
            job = data["step_1"]["response"]["id"]
            return {{"lam.httpRequest": {{
                "method": "GET", "url": "<<config.api>>/jobs/" + job,
                "headers": {{"X-API-Key": "<<config.apiKey>>"}},
                "loopUntil": {json.dumps(loop)},
            }}}}
        """,
    )
    wf.py_step(
        "report",
        '{"job": data["step_2"]["response"]["id"], "status": data["step_2"]["response"]["status"]}',
    )
    return wf.workflow(
        [
            {"name": "submit", "handler": "submit.py"},
            {"name": "wait", "handler": "wait.py"},
            {"name": "report", "handler": "report.py"},
        ],
        config={"api": url, "apiKey": "dev-key"},
    )


COMPLETED = "ctx.response.status === 'completed'"


def _log_lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """lamrunner's JSON log lines on stderr (the SDK's own lines are skipped)."""
    lines = [json.loads(t) for t in capfd.readouterr().err.splitlines() if t.startswith("{")]
    return [line for line in lines if "logger" not in line]


# -- the sample, end to end, in real time ------------------------------------------------------


@contextlib.contextmanager
def _jobapi(phase_seconds: float) -> Iterator[str]:
    """samples/jobapi.py as a subprocess on a free port, its jobs done in 2 phases."""
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "samples/jobapi.py"),
            "--port",
            "0",
            "--quiet",
            "--phase-seconds",
            str(phase_seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    try:
        line = server.stdout.readline().strip()
        assert line.startswith("jobapi listening on http://127.0.0.1:"), line
        yield line.rsplit(" ", 1)[1]
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()


@pytest.fixture(scope="module")
def jobapi_url() -> Iterator[str]:
    """The job API with jobs done in about 1.5 s."""
    with _jobapi(0.75) as url:
        yield url


@pytest.fixture(scope="module")
def quick_jobapi_url() -> Iterator[str]:
    """The job API with jobs done in 0.1 s of real time: with skip_time the runner's
    modelled clock runs ahead of the API's real one, so the jobs must not take long."""
    with _jobapi(0.05) as url:
        yield url


@pytest.mark.parametrize(
    ("sample", "given", "status"),
    [
        ("process-dataset", "process-dataset", "SUCCESS"),
        ("job-lifecycle", "job-ok", "SUCCESS"),
        ("job-lifecycle", "job-fails", "FAILED"),
        ("batch", "batch", "SUCCESS"),
    ],
)
def test_every_sample_runs_as_a_durable_function_with_skipped_time(
    sample: str,
    given: str,
    status: str,
    quick_jobapi_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The same record as `lamrunner run` prints, the durable way."""
    monkeypatch.setenv("JOBAPI_URL", quick_jobapi_url)
    input_data = json.loads((ROOT / f"samples/inputs/{given}.json").read_text())
    input_data = {**input_data, "datasetId": f"{input_data.get('datasetId', 'x')}-{sample}"}
    run = execute(ROOT / f"samples/{sample}.yaml", {"input": input_data}, monkeypatch)
    local = subprocess.run(
        [
            sys.executable,
            "-m",
            "lamrunner",
            "run",
            str(ROOT / f"samples/{sample}.yaml"),
            "--input",
            json.dumps(input_data),
            "--store",
            str(tmp_path / "runs.db"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "JOBAPI_URL": quick_jobapi_url},
        timeout=60,
        check=False,
    )
    expected = json.loads(local.stdout)
    assert run.record["status"] == expected["status"] == status, run.record["error"]
    assert run.status == ("SUCCEEDED" if status == "SUCCESS" else "FAILED")
    assert set(run.record) == set(expected)
    assert sorted(run.record["gwo"]) == sorted(expected["gwo"])
    if status == "FAILED":
        assert run.record["error"]["type"] == expected["error"]["type"] == "PollingFailed"
        assert run.record["error"]["step"] == expected["error"]["step"]


def test_the_job_lifecycle_sample_runs_as_a_durable_function_in_real_time(
    jobapi_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBAPI_URL", jobapi_url)
    run = execute(
        ROOT / "samples/job-lifecycle.yaml",
        {"input": {"datasetId": "ds-durable"}},
        monkeypatch,
        skip_time=False,
        name="lifecycle-1",
    )
    record = run.record
    assert run.status == "SUCCEEDED"
    assert record["status"] == "SUCCESS", record["error"]
    assert record["runId"] == "lifecycle-1" and record["workflow"] == "job-lifecycle"
    assert record["result"]["status"] == "completed" and record["result"]["dataset"] == "ds-durable"
    assert run.operations == [
        "submit_job.handler",
        "submit_job.requests",
        "wait_for_job.handler",
        "wait_for_job.requests",
        "report.handler",
    ]
    # The sample backs off 300 ms → 2 s: the short waits are slept in the check, the 1 s+
    # ones are durable waits, each one invocation; the job takes 1.5 s, so at least one.
    waits = run.waits("wait_for_job.requests")
    assert waits and all(w >= 1 for w in waits)
    assert run.count("InvocationCompleted") == len(waits) + 1


# -- long polls: modelled time, counted invocations, nothing sent twice -----------------------


def test_a_six_hour_exponential_poll_finishes_in_seconds_with_its_waits_in_the_history(
    wf: WorkflowDir,
    api: CountingApi,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    loop = {
        "condition": COMPLETED,
        "strategy": "exponential",
        "initialDelay": "6m",
        "multiplier": 2,
        "maxDelay": "4h",
        "maxAttempts": 10,
        "timeout": "8h",
    }
    run = execute(poll_workflow(wf, api.url, loop, polls=7), {}, monkeypatch)
    assert run.record["status"] == "SUCCESS", run.record["error"]
    assert run.record["result"] == {"job": "job-a", "status": "completed"}
    assert run.seconds < 60
    # 7 attempts, 6 durable waits of 6, 12, 24, 48, 96, 192 minutes: 6 h 18 min modelled.
    assert run.waits("wait.requests") == [360, 720, 1440, 2880, 5760, 11520]
    assert sum(run.waits("wait.requests")) == 6 * 3600 + 18 * 60
    # One invocation per durable wait, plus the first: each attempt costs one invocation and
    # one checkpoint of the one wait_for_condition, whatever the number of attempts so far.
    assert run.count("InvocationCompleted") == 7
    sizes = [
        line["bytes"]
        for line in _log_lines(capfd)
        if line["event"] == "durable.checkpoint" and line["step"] == "wait"
    ]
    print("checkpoint bytes per attempt:", sizes)
    assert len(sizes) == 7 and max(sizes[:-1]) - min(sizes[:-1]) < 16 and max(sizes) < 2048
    assert run.operations == [
        "submit.handler",
        "submit.requests",
        "wait.handler",
        "wait.requests",
        "report.handler",
    ]
    # Seven replays of the submit step, one POST: nothing that completed was sent again.
    assert api.seen == Counter({"POST /jobs": 1, "GET /jobs/job-a": 7})
    gwo = run.record["gwo"]
    assert gwo["step_2"]["http"]["attempts"] == 7


def test_each_handler_is_called_once_although_the_run_is_replayed(
    wf: WorkflowDir, api: CountingApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    path = poll_workflow(
        wf, api.url, {"condition": COMPLETED, "initialDelay": "1m", "timeout": "1h"}, polls=4
    )
    for name in ("submit", "wait", "report"):
        source = (wf.root / f"{name}.py").read_text()
        (wf.root / f"{name}.py").write_text(
            source.replace(
                "def transform(data):",
                f"def transform(data):\n    with open({str(calls)!r}, 'a') as f: f.write('{name} ')",
            )
        )
    run = execute(path, {}, monkeypatch)
    assert run.record["status"] == "SUCCESS", run.record["error"]
    assert run.count("InvocationCompleted") == 4
    assert calls.read_text().split() == ["submit", "wait", "report"]


def test_waits_under_a_second_are_slept_inside_one_invocation(
    wf: WorkflowDir, api: CountingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = poll_workflow(wf, api.url, {"condition": COMPLETED, "initialDelay": "100ms"}, polls=5)
    run = execute(path, {}, monkeypatch)
    assert run.record["status"] == "SUCCESS", run.record["error"]
    assert run.count("InvocationCompleted") == 1 and run.waits("wait.requests") == []
    assert api.seen["GET /jobs/job-a"] == 5


def test_a_batch_polls_concurrently_and_wakes_for_the_request_due_first(
    wf: WorkflowDir, api: CountingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Element 0 polls every 10 minutes, element 1 every 3: the service is asked to wake the
    function for element 1, and element 0 is not polled before its own time."""
    wf.handler(
        "submit.py",
        """
        def transform(data):
            return {"lam.httpRequests": [
                {"method": "POST", "url": "<<config.api>>/jobs", "body": {"name": n, "polls": p}}
                for n, p in (("slow", 2), ("fast", 3))
            ]}
        """,
    )
    wf.handler(
        "wait.py",
        """
        def transform(data):
            ids = [r["id"] for r in data["step_1"]["response"]]
            return {"lam.httpRequests": [
                {"method": "GET", "url": "<<config.api>>/jobs/" + job, "loopUntil": {
                    "condition": "ctx.response.status === 'completed'",
                    "initialDelay": every, "timeout": "2h"}}
                for job, every in zip(ids, ("10m", "3m"))
            ]}
        """,
    )
    path = wf.workflow(
        [{"name": "submit", "handler": "submit.py"}, {"name": "wait", "handler": "wait.py"}],
        config={"api": api.url},
    )
    run = execute(path, {}, monkeypatch)
    assert run.record["status"] == "SUCCESS", run.record["error"]
    statuses = [r["status"] for r in run.record["result"]]
    assert statuses == ["completed", "completed"]
    # t=0 both; t=3m fast; t=6m fast (done); t=10m slow (done): the earliest due each time.
    assert run.waits("wait.requests") == [180, 180, 240]
    assert api.seen == Counter({"POST /jobs": 2, "GET /jobs/job-slow": 2, "GET /jobs/job-fast": 3})


# -- failures are FAILED records, as `lamrunner run` prints them ------------------------------


def test_failwhen_ends_the_run_failed_with_the_step_and_the_attempts(
    wf: WorkflowDir, api: CountingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = {
        "condition": COMPLETED,
        "failWhen": "ctx.response.status === 'failed'",
        "initialDelay": "5m",
        "timeout": "1h",
    }
    run = execute(poll_workflow(wf, api.url, loop, polls=2, name="doomed"), {}, monkeypatch)
    record = run.record
    assert run.status == "FAILED"  # alarms on the execution's status see it
    assert record["status"] == "FAILED" and record["result"] is None
    assert record["error"]["type"] == "PollingFailed" and record["error"]["step"] == "wait"
    assert "step_3" not in record["gwo"]
    assert run.operations == ["submit.handler", "submit.requests", "wait.handler", "wait.requests"]
    assert api.seen["GET /jobs/job-doomed"] == 2


def test_a_step_output_over_the_checkpoint_limit_fails_naming_the_step_and_the_size(
    wf: WorkflowDir, api: CountingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf.py_step("big", '{"blob": "x" * 300_000}')
    wf.request_step(
        "after", {"method": "POST", "url": "<<config.api>>/jobs", "body": {"name": "never"}}
    )
    path = wf.workflow(
        [{"name": "big", "handler": "big.py"}, {"name": "after", "handler": "after.py"}],
        config={"api": api.url},
    )
    run = execute(path, {}, monkeypatch)
    error = run.record["error"]
    assert run.record["status"] == "FAILED"
    assert error["type"] == "HostLimitError" and error["step"] == "big"
    size = len(json.dumps({"output": {"blob": "x" * 300_000}}, separators=(",", ":")))
    assert (
        f"{size:,} bytes" in error["message"]
        and f"{CHECKPOINT_LIMIT // 1024} KB" in (error["message"])
    )
    assert run.operations == ["big.handler"] and not api.seen


def test_a_bad_event_is_a_failed_record_naming_it_and_nothing_is_sent(
    wf: WorkflowDir, api: CountingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = poll_workflow(wf, api.url, {"condition": COMPLETED})
    run = execute(path, {"input": {}, "confg": {"apiKey": "x"}}, monkeypatch)
    assert run.status == "FAILED" and run.record["status"] == "FAILED"
    assert run.record["runId"] == "run-1" and run.record["workflow"] == "test-flow"
    assert run.record["error"]["type"] == "DefinitionError"
    assert "confg" in run.record["error"]["message"]
    run = execute(path, {"config": ["not", "an", "object"]}, monkeypatch, name="run-2")
    assert "event.config" in run.record["error"]["message"]
    assert not api.seen


# -- secrets and config --------------------------------------------------------------------------


def test_event_config_overrides_reach_the_requests_and_the_secret_no_checkpoint(
    wf: WorkflowDir,
    api: CountingApi,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = poll_workflow(wf, api.url, {"condition": COMPLETED, "initialDelay": "2m"}, polls=2)
    run = execute(path, {"config": {"apiKey": SECRET}}, monkeypatch)
    assert run.record["status"] == "SUCCESS", run.record["error"]
    assert set(api.keys) == {SECRET}  # the override was used for every request
    # The event itself is the caller's (the service keeps it as the execution's input); what
    # lamrunner checkpoints, returns and logs never holds the secret.
    written = [e for e in run.events if e["EventType"] != "ExecutionStarted"]
    assert SECRET in json.dumps(run.events[0])  # payloads are visible to this test
    assert "<<config.apiKey>>" in json.dumps(written)  # a directive is kept unrendered
    everything = json.dumps(written) + json.dumps(run.record) + "".join(capfd.readouterr())
    assert SECRET not in everything


def test_the_handler_logs_one_json_line_per_event_with_the_run_id(
    wf: WorkflowDir,
    api: CountingApi,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = poll_workflow(wf, api.url, {"condition": COMPLETED, "initialDelay": "2m"}, polls=2)
    execute(path, {}, monkeypatch, name="logged-run")
    lines = _log_lines(capfd)
    events = {line["event"] for line in lines if line.get("run_id") == "logged-run"}
    assert {"step.start", "run.resume"} <= events, sorted(events)
    assert os.environ.get("LAMRUNNER_WORKFLOW") == str(path)
