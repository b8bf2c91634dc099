"""lamrunner.aws end to end through `dex-local-runner start-server`, over HTTP, as a user runs it.

Three processes, all real, all on 127.0.0.1:

    dex-local-runner start-server   the durable execution service's control plane (memory
                                    store, real time), started with --lambda-endpoint ...
    tests/aws_lambda_endpoint.py    ... a Lambda Invoke endpoint: the function's container,
                                    running `lamrunner.aws.durable_handler` once per Invoke; its
                                    SDK checkpoints back to the dex server through boto3
    the sample job API              samples/jobapi.py's app, served from a thread here so the
                                    test can count every request the run sends it

The run is started with the service's StartDurableExecution route and watched with
GetDurableExecution and GetDurableExecutionHistory, as the `dex-local-runner invoke` and
`get-durable-execution*` commands do. The AWS environment of the subprocesses is dummy
credentials and config files that do not exist: nothing is read from or written to $HOME.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT = Path(__file__).with_name("aws_lambda_endpoint.py")
DEX = Path(sys.executable).with_name("dex-local-runner")
WORKFLOW = "samples/job-lifecycle.yaml"  # relative to the function's code root, as deployed
JOB_OK = json.loads((ROOT / "samples" / "inputs" / "job-ok.json").read_text())
START_TIMEOUT = 30  # seconds a server may take to come up
RUN_TIMEOUT = 30  # seconds the whole durable run may take (it takes about four)
PHASE_SECONDS = 1.0  # the job is pending 1 s, processing 1 s, then completed

_spec = importlib.util.spec_from_file_location("jobapi_for_dex", ROOT / "samples" / "jobapi.py")
assert _spec is not None and _spec.loader is not None
jobapi = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = jobapi  # its dataclasses look their module up there
_spec.loader.exec_module(jobapi)


# -- the job API, counting ----------------------------------------------------------------------


@dataclass
class JobAPI:
    url: str
    requests: Counter[tuple[str, str]]  # (method, path) -> how many arrived


@pytest.fixture
def job_api() -> Iterator[JobAPI]:
    """samples/jobapi.py's application in a background thread, every request counted."""
    requests: Counter[tuple[str, str]] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        requests[(request.method, request.path)] += 1
        return await handler(request)

    app = jobapi.create_app(api_key="dev-key", phase_seconds=PHASE_SECONDS)
    app.middlewares.insert(0, count)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()
    port: list[int] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port.append(runner.addresses[0][1])
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, name="job-api", daemon=True)
    thread.start()
    try:
        assert ready.wait(START_TIMEOUT), "the job API did not start"
        yield JobAPI(f"http://127.0.0.1:{port[0]}", requests)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT)
        loop.close()


# -- the service and the function ---------------------------------------------------------------


@dataclass
class Dex:
    url: str
    endpoint_log: Path
    dex_log: Path

    def logs(self) -> str:
        """The tail of both processes' output, for a failing assertion's message."""
        tails = [
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in (self.endpoint_log, self.dex_log)
        ]
        return "\n".join(tails)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"{method} {path}: {exc.code} {exc.read()!r}\n{self.logs()}"
            ) from None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _aws_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without any AWS or sample setting of the developer's, plus dummy
    credentials and config files that do not exist (so boto3 reads nothing under $HOME)."""
    scrub = ("JOBAPI_URL", "PROCESSOR_API_KEY", "JOBAPI_API_KEY", "LAMRUNNER_CONFIG")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in scrub}
    env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # dummies: the requests are signed, never checked
        AWS_DEFAULT_REGION="us-west-2",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
    return env


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _announced_url(process: subprocess.Popen[str], log: Path) -> str:
    """The URL the endpoint prints once it listens (it imports the handler first)."""
    assert process.stdout is not None
    stdout = process.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    line = lines[0].strip() if lines else ""
    assert line.startswith("listening on http://127.0.0.1:"), (line, log.read_text()[-3000:])
    return line.rsplit(" ", 1)[1]


def _wait_healthy(url: str, process: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.poll() is None, f"dex-local-runner exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if json.loads(response.read()).get("status") == "healthy":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, f"dex-local-runner never healthy:\n{log.read_text()}"
        time.sleep(0.05)


@pytest.fixture
def dex(tmp_path: Path) -> Iterator[Dex]:
    """The dex server (memory store, real time) and the Lambda endpoint it invokes."""
    dex_url = f"http://127.0.0.1:{_free_port()}"
    endpoint_log, dex_log = tmp_path / "lambda-endpoint.log", tmp_path / "dex-local-runner.log"
    processes: list[subprocess.Popen[Any]] = []
    try:
        with endpoint_log.open("w") as log:
            endpoint = subprocess.Popen(
                [sys.executable, str(ENDPOINT), "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=ROOT,  # the function's code root: LAMRUNNER_WORKFLOW is relative to it
                env=_aws_env(
                    tmp_path, AWS_ENDPOINT_URL_LAMBDA=dex_url, LAMRUNNER_WORKFLOW=WORKFLOW
                ),
            )
        processes.append(endpoint)
        endpoint_url = _announced_url(endpoint, endpoint_log)
        port = dex_url.rsplit(":", 1)[1]
        command = [
            str(DEX), "start-server", "--host", "127.0.0.1", "--port", port,
            "--store-type", "memory", "--no-skip-time", "--lambda-endpoint", endpoint_url,
            "--local-runner-endpoint", dex_url, "--local-runner-region", "us-west-2",
        ]  # fmt: skip
        with dex_log.open("w") as log:
            server = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=_aws_env(tmp_path)
            )
        processes.append(server)
        _wait_healthy(dex_url, server, dex_log)
        yield Dex(dex_url, endpoint_log, dex_log)
    finally:
        for process in reversed(processes):
            _stop(process)
        for process in processes:
            if process.stdout is not None:
                process.stdout.close()


def _wait_done(dex: Dex, arn: str) -> dict[str, Any]:
    path = f"/2025-12-01/durable-executions/{urllib.parse.quote(arn, safe='')}"
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        execution: dict[str, Any] = dex.call("GET", path)
        if execution["Status"] != "RUNNING":
            return execution
        assert time.monotonic() < deadline, f"still RUNNING after {RUN_TIMEOUT}s\n{dex.logs()}"
        time.sleep(0.1)


def test_a_sample_runs_to_success_as_a_durable_execution_over_http(
    dex: Dex, job_api: JobAPI
) -> None:
    name = "job-ok-run-1"
    event = {"input": JOB_OK, "config": {"jobApiUrl": job_api.url}}
    started = dex.call(
        "POST",
        "/start-durable-execution",
        {
            "AccountId": "123456789012",
            "FunctionName": "job-lifecycle",
            "FunctionQualifier": "$LATEST",
            "ExecutionName": name,
            "ExecutionTimeoutSeconds": 60,
            "ExecutionRetentionPeriodDays": 1,
            "Input": json.dumps(event),
        },
    )
    arn = started["ExecutionArn"]
    execution = _wait_done(dex, arn)

    assert execution["Status"] == "SUCCEEDED", (execution, dex.logs())
    assert execution["DurableExecutionName"] == name
    record = json.loads(execution["Result"])
    assert record["status"] == "SUCCESS" and record["error"] is None, record
    assert record["runId"] == name  # the execution's name is the run's id
    assert record["workflow"] == "job-lifecycle"
    job = record["gwo"]["step_1"]["response"]
    assert record["result"] == record["gwo"]["step_3"]["data"]
    result = record["result"]
    assert result["jobId"] == job["job_id"] and result["dataset"] == JOB_OK["datasetId"]
    assert result["status"] == "completed" and result["statusWhenSubmitted"] == "pending"
    assert result["location"].endswith(f"{JOB_OK['datasetId']}.csv")
    assert isinstance(result["rows"], int)

    history = dex.call(
        "GET",
        f"/2025-12-01/durable-executions/{urllib.parse.quote(arn, safe='')}/history"
        "?IncludeExecutionData=true",
    )["Events"]
    named = [e["Name"] for e in history if e["EventType"] == "StepStarted"]
    # Each handler call is one step and ran once; each step's requests one wait_for_condition.
    assert list(dict.fromkeys(named)) == [
        "submit_job.handler",
        "submit_job.requests",
        "wait_for_job.handler",
        "wait_for_job.requests",
        "report.handler",
    ], named
    assert all(named.count(n) == 1 for n in named if n.endswith(".handler")), named
    # The poll handed a wait to the service and the function stopped: more than one invocation.
    invocations = [e for e in history if e["EventType"] == "InvocationCompleted"]
    assert len(invocations) >= 2, history
    endpoint_log = dex.endpoint_log.read_text()
    served = endpoint_log.count('"POST /2015-03-31/functions/job-lifecycle/invocations')
    assert served == len(invocations), endpoint_log[-3000:]
    assert "Traceback" not in endpoint_log, endpoint_log[-3000:]
    retries = [
        e["StepSucceededDetails"].get("RetryDetails")
        for e in history
        if e["EventType"] == "StepSucceeded" and e["Name"] == "wait_for_job.requests"
    ]
    delays = [r["NextAttemptDelaySeconds"] for r in retries if r is not None]
    assert delays and all(d >= 1 for d in delays), history

    # What the job API saw: one POST (the replays did not send it again) and each poll once.
    polls = record["gwo"]["step_2"]["http"]["attempts"]
    assert polls >= 3 and result["pollAttempts"] == polls
    assert dict(job_api.requests) == {
        ("POST", "/api/jobs"): 1,
        ("GET", f"/api/jobs/{job['job_id']}"): polls,
    }
