"""lamrunner.gcp: the HTTP function, served by the real functions-framework, against the real
job API (samples/jobapi.py) and gcloud-tasks-emulator, all on 127.0.0.1.

The function is started the way Cloud Run functions start it: `functions-framework --target
http_function --source main.py` in a source folder laid out as `lamrunner package --target gcp`
makes it (the workflow, its handlers, main.py). Two servers share one emulator queue: one with
a budget its runs never reach (they finish in the first request) and one with a zero budget
(each invocation makes the attempts that are due, then suspends into a Cloud Task). The job
API's access log is read to count what the runs really sent. The job API's key is a secret in
the workflow's config: no response, task body or log line may hold it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lamrunner.gcp import tasks
from lamrunner.gcp.events import Start
from lamrunner.gcp.runs import Invocation
from lamrunner.gcp.settings import Settings

with warnings.catch_warnings():  # google-api-core's notice about Python 3.11's end of support
    warnings.filterwarnings("ignore", message=tasks._PY_SUPPORT, category=FutureWarning)
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

ROOT = Path(__file__).resolve().parent.parent
SECRET = "gcp-secret-5d1f0c9e"  # the job API's key: config apiKey, masked wherever it shows
QUEUE = "projects/lamrunner-test/locations/local/queues/runs"
RECORD_KEYS = {"runId", "workflow", "status", "result", "error", "gwo"}
DEADLINE = 45.0  # seconds: generous; each wait returns as soon as its condition holds


# -- processes on 127.0.0.1 --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """A subprocess whose output lines (stdout and stderr) are collected as they come."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)

    @classmethod
    def start(cls, command: list[str], env: dict[str, str], cwd: Path = ROOT) -> Process:
        popen = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        process = cls(popen)
        process._reader.start()
        return process

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str) -> re.Match[str]:
        found = wait(lambda: next(filter(None, map(re.compile(pattern).search, self.lines)), None))
        assert found is not None
        return found

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._reader.join(timeout=10)
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                pipe.close()

    def text(self) -> str:
        return "\n".join(self.lines)


def wait(probe: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    """`probe()` once it is truthy; a failure with the last value after the deadline."""
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if value or time.monotonic() > end:
            assert value, f"still {value!r} after {deadline}s"
            return value
        time.sleep(0.05)


@dataclass
class JobApi:
    process: Process
    url: str

    def jobs_of(self, dataset: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(self.url + "/api/jobs", headers={"X-API-Key": SECRET})
        with urllib.request.urlopen(request, timeout=10) as response:
            jobs: list[dict[str, Any]] = json.load(response)["jobs"]
        return [j for j in jobs if j["request"]["datasetId"] == dataset]

    def requests(self, method: str, path: str) -> int:
        """How many `method path` requests its access log shows."""
        return sum(f'"{method} {path} HTTP/1.1"' in line for line in self.process.lines)


@pytest.fixture(scope="module")
def jobapi() -> Iterator[JobApi]:
    env = {**os.environ, "JOBAPI_API_KEY": SECRET}
    command = [sys.executable, str(ROOT / "samples" / "jobapi.py"), "--port", "0"]
    process = Process.start([*command, "--phase-seconds", "0.3"], env)
    try:
        yield JobApi(process, process.wait_for(r"listening on (http://\S+)").group(1))
    finally:
        process.stop()


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    command = [sys.executable, str(ROOT / "tests" / "gcp_tasks_emulator.py"), QUEUE]
    process = Process.start(command, dict(os.environ))
    try:
        yield process.wait_for(r"listening on (127\.0\.0\.1:\d+)").group(1)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def queue(emulator: str) -> tasks_v2.CloudTasksClient:
    """A client of the emulator, to look at (and pause) the queue the functions use."""
    channel = grpc.insecure_channel(emulator)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


class Callbacks(ThreadingHTTPServer):
    """Where callbackUrl points: keeps every POST (its status, headers and JSON body); a path
    in `refuse` is answered 503 that many times first."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        self.received: list[tuple[int, dict[str, str], Any]] = []
        self.refuse: dict[str, int] = {}
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self.url = self.base + "/done"

    def of(self, run_id: str) -> list[Any]:
        """The records of `run_id` it accepted."""
        return [b for status, _, b in self.received if status == 200 and b["runId"] == run_id]

    def tries(self, run_id: str) -> list[int]:
        return [status for status, _, b in self.received if b["runId"] == run_id]


class _CallbackHandler(BaseHTTPRequestHandler):
    server: Callbacks

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        refused = self.server.refuse.get(self.path, 0)
        self.server.refuse[self.path] = max(0, refused - 1)
        status = 503 if refused else 200
        self.server.received.append((status, dict(self.headers), json.loads(body)))
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass


@pytest.fixture(scope="module")
def callbacks() -> Iterator[Callbacks]:
    server = Callbacks()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source folder as `lamrunner package --target gcp` lays it out for job-lifecycle."""
    folder = tmp_path_factory.mktemp("gcp-source")
    (folder / "samples").mkdir()
    shutil.copyfile(
        ROOT / "samples" / "job-lifecycle.yaml", folder / "samples" / "job-lifecycle.yaml"
    )
    shutil.copytree(ROOT / "handlers", folder / "handlers")
    (folder / "main.py").write_text(
        "from lamrunner.gcp import http_function\n\n__all__ = ['http_function']\n"
    )
    return folder


@dataclass
class Function:
    process: Process
    url: str
    responses: list[str] = field(default_factory=list)  # every body it answered

    def post(self, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        return self.call("POST", data)

    def call(self, method: str, data: bytes | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=DEADLINE) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        self.responses.append(text)
        assert SECRET not in text and "Traceback" not in text, text
        return status, json.loads(text)

    def records(self) -> list[dict[str, Any]]:
        """The `run.record` log lines, as JSON."""
        lines = [json.loads(line) for line in self.process.lines if '"run.record"' in line]
        return [line for line in lines if line.get("event") == "run.record"]


def serve(source: Path, jobapi: JobApi, emulator: str, budget: str) -> Iterator[Function]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {
        **os.environ,
        "LAMRUNNER_WORKFLOW": "samples/job-lifecycle.yaml",
        "LAMRUNNER_BUDGET": budget,
        "LAMRUNNER_TASKS_QUEUE": QUEUE,
        "LAMRUNNER_SELF_URL": url,
        "LAMRUNNER_TASKS_ENDPOINT": emulator,
        "LAMRUNNER_TASKS_SERVICE_ACCOUNT": "runner@lamrunner-test.iam.gserviceaccount.com",
        "JOBAPI_URL": jobapi.url,
        "PROCESSOR_API_KEY": SECRET,
    }
    command = [str(Path(sys.executable).with_name("functions-framework"))]
    command += ["--target", "http_function", "--source", "main.py"]
    process = Process.start([*command, "--host", "127.0.0.1", "--port", str(port)], env, source)
    function = Function(process, url)
    try:
        wait(lambda: _answers(url))
        yield function
    finally:
        process.stop()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError as error:
        return error.code == 405
    except OSError:
        return False
    return False


@pytest.fixture(scope="module")
def quick(source: Path, jobapi: JobApi, emulator: str) -> Iterator[Function]:
    """Its runs finish within the budget: the answer is the record."""
    yield from serve(source, jobapi, emulator, "30s")


@pytest.fixture(scope="module")
def suspending(source: Path, jobapi: JobApi, emulator: str) -> Iterator[Function]:
    """A zero budget: every invocation makes the attempts due now, then suspends."""
    yield from serve(source, jobapi, emulator, "0s")


def tasks_of(queue: tasks_v2.CloudTasksClient, run_id: str) -> list[tasks_v2.Task]:
    return [t for t in queue.list_tasks(parent=QUEUE) if run_id in t.name]


# -- runs that finish in their first request ---------------------------------------------------


def test_a_run_that_finishes_within_its_budget_answers_200_with_its_record(
    quick: Function, jobapi: JobApi
) -> None:
    status, record = quick.post({"input": {"datasetId": "ds-gcp-ok"}})
    assert status == 200, record
    assert set(record) == RECORD_KEYS  # the record `lamrunner run` prints
    assert record["status"] == "SUCCESS" and record["error"] is None
    result = record["result"]
    assert result["dataset"] == "ds-gcp-ok" and result["status"] == "completed"
    [job] = jobapi.jobs_of("ds-gcp-ok")
    assert result["jobId"] == job["job_id"]
    assert jobapi.requests("GET", f"/api/jobs/{job['job_id']}") == result["pollAttempts"]
    [logged] = [r for r in quick.records() if r["record"]["runId"] == record["runId"]]
    assert logged["record"] == record and logged["http_status"] == 200


def test_a_failed_run_is_an_answer_200_whose_record_says_what_failed(quick: Function) -> None:
    """The function worked: 200, so Cloud Tasks would not run the failed run again."""
    status, record = quick.post({"input": {"datasetId": "ds-gcp-fails", "simulate": "failed"}})
    assert status == 200
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "PollingFailed" and record["error"]["step"] == "wait_for_job"


def test_config_overrides_are_merged_over_the_workflows_config(quick: Function) -> None:
    status, record = quick.post(
        {"input": {"datasetId": "ds-gcp-elsewhere"}, "config": {"jobApiUrl": "http://127.0.0.1:9"}}
    )
    assert status == 200 and record["status"] == "FAILED"
    assert record["error"]["type"] == "TransportError"
    assert "127.0.0.1:9" in record["error"]["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "request body: not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "expected a JSON object, got a list"),
        (b'{"inptu": {}}', "unknown key 'inptu'; did you mean 'input'?"),
        (b'{"input": {}, "runId": "x"}', "unknown key 'runId' (known: input, config, callbackUrl)"),
        (b'{"config": ["a"]}', "config: expected an object of overrides, got a list"),
        (b'{"callbackUrl": "ftp://example.com/x"}', "callbackUrl: expected an http(s) URL"),
        (b'{"callbackUrl": 7}', "callbackUrl: expected an http(s) URL, got a number (7)"),
        (b'{"continuation": 0, "state": {}}', "continuation: expected a number >= 1"),
        (b'{"continuation": 1, "state": {"schema": 99}}', "saved by a newer lamrunner"),
        (b'{"continuation": 1, "state": []}', "saved run state: expected an object"),
    ],
)
def test_a_bad_request_is_400_with_one_error_record_naming_what_is_wrong(
    quick: Function, body: bytes, says: str
) -> None:
    status, record = quick.post(None, raw=body)
    assert status == 400, record
    assert set(record) == RECORD_KEYS and record["runId"] is None
    assert record["workflow"] == "job-lifecycle" and record["status"] == "FAILED"
    assert record["error"]["type"] == "DefinitionError"
    assert says in record["error"]["message"], record["error"]["message"]


def test_a_continuation_of_another_workflows_run_is_refused(quick: Function) -> None:
    state = {"run_id": "r-1", "workflow": "other", "gwo": {"input": {}}, "next_step": 0}
    state |= {"pending": None, "status": "SUSPENDED", "result": None, "error": None, "meta": {}}
    status, record = quick.post({"continuation": 1, "state": state})
    assert status == 400
    assert (
        "run r-1 is of workflow 'other'; this function runs 'job-lifecycle'"
        in (record["error"]["message"])
    )


def test_only_post_is_answered(quick: Function) -> None:
    status, record = quick.call("GET")
    assert status == 405 and record["error"]["type"] == "DefinitionError"
    assert "POST" in record["error"]["message"]


# -- runs that suspend into Cloud Tasks --------------------------------------------------------


def test_a_suspended_run_continues_from_cloud_tasks_and_calls_back_its_record(
    suspending: Function, jobapi: JobApi, callbacks: Callbacks, queue: tasks_v2.CloudTasksClient
) -> None:
    """POST → 202 SUSPENDED; the emulator calls the function back at each resumeAt (nothing
    runs in between); the last continuation sends the SUCCESS record to callbackUrl. The job
    API saw one POST and exactly the poll attempts the record counts: nothing was re-sent."""
    status, started = suspending.post(
        {"input": {"datasetId": "ds-gcp-e2e"}, "callbackUrl": callbacks.url}
    )
    assert status == 202, started
    assert started["status"] == "SUSPENDED" and started["resumeAt"]["epoch"] > 0
    run_id = started["runId"]
    [record] = wait(lambda: callbacks.of(run_id))
    assert record["status"] == "SUCCESS" and set(record) == RECORD_KEYS
    assert record["result"]["dataset"] == "ds-gcp-e2e"
    [job] = jobapi.jobs_of("ds-gcp-e2e")
    attempts = record["result"]["pollAttempts"]
    assert jobapi.requests("GET", f"/api/jobs/{job['job_id']}") == attempts >= 2
    logged = [r for r in suspending.records() if r["record"]["runId"] == run_id]
    assert [r["http_status"] for r in logged] == [202] * (len(logged) - 1) + [200]
    assert len(logged) == attempts  # each invocation made the one attempt that was due
    assert logged[-1]["record"] == record
    assert tasks_of(queue, run_id) == []  # each continuation's task is done and gone
    assert SECRET not in json.dumps(callbacks.received)


def test_a_callback_the_receiver_refuses_is_delivered_again(
    suspending: Function, callbacks: Callbacks
) -> None:
    callbacks.refuse["/flaky"] = 1
    status, started = suspending.post(
        {"input": {"datasetId": "ds-gcp-flaky"}, "callbackUrl": callbacks.base + "/flaky"}
    )
    assert status == 202
    [record] = wait(lambda: callbacks.of(started["runId"]))
    assert record["status"] == "SUCCESS"
    assert callbacks.tries(started["runId"]) == [503, 200]  # Cloud Tasks retried the delivery


def test_a_continuation_that_comes_early_schedules_itself_again_and_runs_nothing(
    suspending: Function, jobapi: JobApi, queue: tasks_v2.CloudTasksClient
) -> None:
    """A resumeAt past Cloud Tasks' 30 days is reached by hops: a continuation that finds its
    run not yet due schedules the next one, as far ahead as it may, and sends nothing."""
    queue.pause_queue(name=QUEUE)
    try:
        status, started = suspending.post({"input": {"datasetId": "ds-gcp-early"}})
        run_id = started["runId"]
        [first] = tasks_of(queue, run_id)
        body = json.loads(first.http_request.body)
        later = time.time() + 40 * 86400
        body["state"]["pending"]["elements"][0]["poll"]["next_due"] = later
        status, record = suspending.post(body)
        assert status == 202 and record["resumeAt"]["epoch"] == later
        [hop] = [t for t in tasks_of(queue, run_id) if t.name.endswith("-c2")]
        assert 29 * 86400 < hop.schedule_time.timestamp() - time.time() <= 30 * 86400
        wait(lambda: len([r for r in suspending.records() if r["run_id"] == run_id]) == 2)
        attempts = [line for line in suspending.process.lines if run_id in line]
        assert sum('"poll.attempt"' in line for line in attempts) == 1  # the start's only
        assert not any('"run.resume"' in line for line in attempts)
    finally:
        queue.purge_queue(name=QUEUE)  # (paused: the dispatcher holds no task of it)
        queue.resume_queue(name=QUEUE)


def test_a_retried_continuation_schedules_the_next_one_once(
    suspending: Function, jobapi: JobApi, callbacks: Callbacks, queue: tasks_v2.CloudTasksClient
) -> None:
    """Cloud Tasks retries a continuation whose answer it did not get: the retry schedules
    the same next task by name, gets ALREADY_EXISTS, and answers 202 all the same."""
    queue.pause_queue(name=QUEUE)
    try:
        status, started = suspending.post(
            {"input": {"datasetId": "ds-gcp-retried"}, "callbackUrl": callbacks.url}
        )
        assert status == 202
        run_id = started["runId"]
        [first] = tasks_of(queue, run_id)
        assert first.name.endswith(f"-{run_id}-c1")
        assert first.http_request.oidc_token.service_account_email.startswith("runner@")
        body = json.loads(first.http_request.body)
        assert body["continuation"] == 1 and body["callbackUrl"] == callbacks.url
        assert SECRET not in first.http_request.body.decode()
        for _ in range(2):  # the continuation delivered twice
            status, again = suspending.post(body)
            assert status == 202 and again["runId"] == run_id
        names = sorted(t.name.rsplit("-", 1)[1] for t in tasks_of(queue, run_id))
        assert names == ["c1", "c2"]
        assert "task.already_scheduled" in suspending.process.text()
    finally:
        queue.resume_queue(name=QUEUE)
    [record] = wait(lambda: callbacks.of(run_id))
    assert record["status"] == "SUCCESS"
    time.sleep(0.5)  # the one wait for nothing: a second callback would come within it
    assert len(callbacks.of(run_id)) == 1
    assert len(jobapi.jobs_of("ds-gcp-retried")) == 1  # step 1's POST was never sent again


def test_a_state_too_large_for_a_task_ends_the_run_failed_naming_run_and_size(
    suspending: Function, queue: tasks_v2.CloudTasksClient
) -> None:
    padding = "x" * 1_100_000  # in the input, so in the GWO the continuation must carry
    status, record = suspending.post({"input": {"datasetId": "ds-gcp-big", "padding": padding}})
    assert status == 200 and record["status"] == "FAILED" and "resumeAt" not in record
    error = record["error"]
    assert error["type"] == "CloudTasksError"
    message = error["message"]
    assert message.startswith(f"run {record['runId']}: its continuation task would be 1.1 MB (")
    assert re.search(r"\(11\d{5} bytes\), over Cloud Tasks' limit of 1 MB per task", message)
    assert tasks_of(queue, record["runId"]) == []


def test_no_log_line_of_either_function_holds_the_secret_or_a_traceback(
    quick: Function, suspending: Function
) -> None:
    for function in (quick, suspending):
        assert function.records(), "no run.record lines"
        text = function.process.text()
        assert SECRET not in text and "Traceback" not in text
        assert "FutureWarning" not in text  # google-api-core's notice, filtered where imported


# -- in-process: the pieces ------------------------------------------------------------------


def test_task_ids_are_deterministic_and_what_cloud_tasks_accepts() -> None:
    first = tasks.task_id("20261122-104512-3fa9c1", "c3")
    assert first == tasks.task_id("20261122-104512-3fa9c1", "c3")
    assert first != tasks.task_id("20261122-104512-3fa9c1", "c4")
    assert re.fullmatch(r"[0-9a-f]{12}-20261122-104512-3fa9c1-c3", first)
    odd = tasks.task_id("a run/with:odd chars" + "x" * 600, "record")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,500}", odd)


def test_a_task_is_scheduled_at_most_30_days_ahead_with_a_deadline_cloud_tasks_allows() -> None:
    queue = tasks.TaskQueue(tasks.TaskSettings(QUEUE, "https://f.example/"))
    far = tasks.HttpTask("r", "c1", "https://f.example/", b"{}", at=time.time() + 90 * 86400)
    made = queue._task(far)
    ahead = made.schedule_time.timestamp() - time.time()
    assert 29 * 86400 < ahead <= 30 * 86400
    assert not made.http_request.oidc_token.service_account_email
    for asked, given in ((1.0, 15.0), (600.0, 600.0), (7200.0, 1800.0)):
        task = tasks.HttpTask("r", "c1", "https://f.example/", b"{}", deadline=asked)
        assert queue._task(task).dispatch_deadline.total_seconds() == given


def test_what_cloud_tasks_refuses_or_cannot_take_becomes_a_cloud_tasks_error(
    emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = tasks.HttpTask("r-9", "c1", None, b"{}", what="continuation")
    missing = tasks.TaskSettings(QUEUE + "-gone", "http://127.0.0.1:9/", endpoint=emulator)
    with pytest.raises(tasks.CloudTasksError) as refused:
        tasks.TaskQueue(missing).create(task)
    assert refused.value.kind == "refused"
    assert refused.value.message.startswith(
        f"run r-9: Cloud Tasks did not take its continuation task on {QUEUE}-gone: "
        "FailedPrecondition: "
    )
    from google.api_core import retry

    quick = retry.Retry(predicate=retry.if_transient_error, initial=0.05, timeout=0.5)
    monkeypatch.setattr(tasks, "_retry", lambda: quick)
    down = tasks.TaskSettings(QUEUE, "http://127.0.0.1:9/", endpoint=f"127.0.0.1:{free_port()}")
    with pytest.raises(tasks.CloudTasksError) as unavailable:
        tasks.TaskQueue(down).create(task)
    assert unavailable.value.kind == "unavailable"
    assert "still unavailable after retrying" in unavailable.value.message, unavailable.value


def test_settings_name_the_variable_that_is_wrong() -> None:
    assert Settings.from_env({}).budget == 540 and Settings.from_env({}).workflow == "workflow.yaml"
    assert Settings.from_env({"LAMRUNNER_CONFIG": "a.yaml:b.yaml"}).config_files == (
        "a.yaml",
        "b.yaml",
    )
    for env, says in (
        ({"LAMRUNNER_BUDGET": "soon"}, "LAMRUNNER_BUDGET: 'soon' is not a duration"),
        ({"LAMRUNNER_BUDGET": "1h"}, "longer than 29m"),
    ):
        with pytest.raises(Exception, match=re.escape(says)):
            Settings.from_env(env)
    bad_queue = {"LAMRUNNER_TASKS_QUEUE": "runs", "LAMRUNNER_SELF_URL": "https://f.example/"}
    with pytest.raises(Exception, match="expected projects/PROJECT/locations/LOCATION/queues"):
        Settings.from_env(bad_queue).tasks()


def test_a_run_that_suspends_without_a_queue_is_a_500_naming_the_setting(
    jobapi: JobApi,
) -> None:
    env = {
        "LAMRUNNER_WORKFLOW": str(ROOT / "samples" / "job-lifecycle.yaml"),
        "LAMRUNNER_BUDGET": "0",
    }
    settings = Settings.from_env(env)
    workflow, config = settings.load()
    config = dict(config, jobApiUrl=jobapi.url, apiKey=SECRET)
    reply = Invocation(workflow, config, settings).start(Start({"datasetId": "ds-gcp-noqueue"}))
    assert reply.status == 500
    assert reply.record["runId"] and reply.record["error"]["type"] == "DefinitionError"
    assert reply.record["error"]["message"].startswith("LAMRUNNER_TASKS_QUEUE is not set")
