"""Every sample workflow, end to end, against samples/jobapi.py served on 127.0.0.1.

The job API runs in-process (aiohttp AppRunner + TCPSite on port 0) with short job phases, and
the workflows are loaded exactly as `lamrunner run` loads them, with JOBAPI_URL pointing at it.
One test runs `samples/demo.py` as a user would: the README's first command depends on it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.runner.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
INPUTS = SAMPLES / "inputs"

_spec = importlib.util.spec_from_file_location("lamrunner_samples_jobapi", SAMPLES / "jobapi.py")
assert _spec is not None and _spec.loader is not None
jobapi = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = jobapi  # dataclasses look their module up while the file executes
_spec.loader.exec_module(jobapi)


@pytest.fixture
async def jobapi_url() -> AsyncIterator[str]:
    app = jobapi.create_app(api_key="dev-key", phase_seconds=0.05)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def sample_input(name: str) -> Any:
    return json.loads((INPUTS / name).read_text(encoding="utf-8"))


async def run_sample(workflow_name: str, input_name: str, url: str) -> dict[str, Any]:
    env = {"JOBAPI_URL": url}  # PROCESSOR_API_KEY unset: the samples' default, dev-key
    workflow = load_workflow(SAMPLES / workflow_name, env=env)
    config = build_config(workflow.config, (), (), env)
    return await Engine(workflow, config).run(sample_input(input_name))


def test_every_sample_is_covered() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.yaml")) == [
        "batch.yaml",
        "client-poll.yaml",
        "job-lifecycle.yaml",
        "large-result.yaml",
        "poll-external-api.yaml",
        "poll-warmup.yaml",
        "process-dataset.yaml",
    ]
    assert {p.name for p in INPUTS.glob("*.json")} == {
        "batch.json",
        "job-fails.json",
        "job-ok.json",
        "job-rate-limited.json",
        "poll-external-api.json",
        "poll-warmup.json",
        "large-result.json",
        "process-dataset.json",
    }


async def test_process_dataset_polls_until_the_job_completes(jobapi_url: str) -> None:
    record = await run_sample("process-dataset.yaml", "process-dataset.json", jobapi_url)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["error"] is None
    assert record["workflow"] == "process-dataset"
    result = record["result"]
    assert result["datasetId"] == "ds-42"
    assert result["status"] == "completed"
    assert isinstance(result["rows"], int) and result["rows"] > 0
    assert result["location"] == "file:///tmp/out/ds-42.parquet"
    assert result["attempts"] >= 2  # it really polled: the first answer was not completed
    step_1 = record["gwo"]["step_1"]
    assert step_1["http"]["status"] == 200
    assert step_1["http"]["attempts"] == result["attempts"]
    assert step_1["response"]["job_id"] == result["jobId"]
    assert record["gwo"]["step_2"] == {"data": result}


async def test_client_poll_runs_the_url_action_then_its_next_step(jobapi_url: str) -> None:
    record = await run_sample("client-poll.yaml", "job-ok.json", jobapi_url)

    assert record["status"] == "SUCCESS", record["error"]
    result = record["result"]
    assert result["status"] == "completed" and result["location"] == "file:///tmp/out/ds-7.csv"
    assert result["polls"] >= 2  # it polled until the action came
    step_2 = record["gwo"]["step_2"]
    assert step_2["poll"]["response"] == {"action": {"url": f"/api/jobs/{result['jobId']}"}}
    assert step_2["response"]["job_id"] == result["jobId"]  # the GET the action asked for
    assert "step_3" not in record["gwo"]  # skipped by client_poll's next
    assert [(r["step"], r["left"]) for r in record["route"]] == [
        ("submit_job", "sequence"),
        ("client_poll", "action.url"),
        ("report", "end"),
    ]
    assert record["route"][1]["url"] == f"{jobapi_url}/api/jobs/{result['jobId']}"


async def test_client_poll_of_a_failed_job_exits_with_the_actions_result(jobapi_url: str) -> None:
    record = await run_sample("client-poll.yaml", "job-fails.json", jobapi_url)

    assert record["status"] == "SUCCESS" and record["error"] is None
    assert record["result"]["status"] == "failed" and "out of memory" in record["result"]["error"]
    assert [r["left"] for r in record["route"]] == ["sequence", "action.exit"]
    assert "step_4" not in record["gwo"]


async def test_job_lifecycle_ok(jobapi_url: str) -> None:
    record = await run_sample("job-lifecycle.yaml", "job-ok.json", jobapi_url)

    assert record["status"] == "SUCCESS", record["error"]
    result = record["result"]
    assert result["dataset"] == "ds-7"
    assert result["status"] == "completed"
    assert result["statusWhenSubmitted"] in ("pending", "processing")
    assert result["location"] == "file:///tmp/out/ds-7.csv"
    assert isinstance(result["rows"], int) and result["rows"] > 0
    assert result["pollAttempts"] >= 1
    gwo = record["gwo"]
    assert gwo["step_1"]["http"]["status"] == 202  # submitted, still running
    assert gwo["step_2"]["response"]["job_id"] == gwo["step_1"]["response"]["job_id"]
    assert gwo["step_2"]["response"]["request"]["outputFormat"] == "csv"
    assert gwo["step_3"] == {"data": result}


async def test_job_lifecycle_fails_with_polling_failed(jobapi_url: str) -> None:
    record = await run_sample("job-lifecycle.yaml", "job-fails.json", jobapi_url)

    assert record["status"] == "FAILED"
    assert record["result"] is None
    error = record["error"]
    assert error["type"] == "PollingFailed", error
    assert error["step"] == "wait_for_job"
    assert error["message"]
    assert "step_1" in record["gwo"]  # the submit went through
    assert "step_3" not in record["gwo"]  # the report never ran


async def test_job_lifecycle_rate_limited_is_absorbed_by_retry(jobapi_url: str) -> None:
    record = await run_sample("job-lifecycle.yaml", "job-rate-limited.json", jobapi_url)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"]["dataset"] == "ds-99"
    assert record["result"]["status"] == "completed"


async def test_batch_returns_one_result_per_dataset_in_input_order(jobapi_url: str) -> None:
    ids = sample_input("batch.json")["datasetIds"]
    record = await run_sample("batch.yaml", "batch.json", jobapi_url)

    assert record["status"] == "SUCCESS", record["error"]
    result = record["result"]
    assert [job["datasetId"] for job in result["jobs"]] == ids
    assert all(job["status"] == "completed" for job in result["jobs"])
    assert len({job["jobId"] for job in result["jobs"]}) == len(ids)
    assert result["completed"] == len(ids)
    assert result["totalRows"] == sum(job["rows"] for job in result["jobs"])
    step_1 = record["gwo"]["step_1"]
    assert [job["request"]["datasetId"] for job in step_1["response"]] == ids
    assert len(step_1["http"]) == len(ids)
    assert all(h["status"] == 200 for h in step_1["http"])


def test_demo_runs_process_dataset_end_to_end(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JOBAPI_URL", "PROCESSOR_API_KEY", "JOBAPI_API_KEY")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(SAMPLES / "demo.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert set(record) == {"runId", "workflow", "status", "result", "error", "gwo"}
    assert record["status"] == "SUCCESS"
    assert record["workflow"] == "process-dataset"
    assert record["result"]["status"] == "completed"
    assert "poll.attempt" in proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr


async def test_poll_external_api_runs_seed_000s_step_as_written(jobapi_url: str) -> None:
    record = await run_sample("poll-external-api.yaml", "poll-external-api.json", jobapi_url)

    assert record["status"] == "SUCCESS", record["error"]
    result = record["result"]
    assert result["status"] == "success" and result["job"] == "completed"
    assert result["processedUrl"].startswith(f"{jobapi_url}/api/jobs/job_")
    assert result["stepsOutput"]["final_job_result"]["format"] == "mp4"
    assert record["gwo"]["step_2"]["interval"] == 0.3


async def test_poll_warmup_polls_through_the_503s_of_a_service_not_yet_up(
    jobapi_url: str,
) -> None:
    record = await run_sample("poll-warmup.yaml", "poll-warmup.json", jobapi_url)

    assert record["status"] == "SUCCESS", record["error"]
    result = record["result"]
    assert result["status"] == "success" and result["responseCode"] == 200
    assert result["pollCount"] >= 4  # about 1 s of 503s at 300 ms, then the job's phases
    assert isinstance(result["stepsOutput"]["rows"], int)


@pytest.fixture
async def small_results_url() -> AsyncIterator[str]:
    """The job API with a 20 kB large-result threshold, so the sample's rows are a pointer
    without the test making megabytes of them."""
    app = jobapi.create_app(api_key="dev-key", phase_seconds=0.05, large_result_bytes=20_000)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def run_large_result(url: str, rows: int) -> dict[str, Any]:
    given = {**sample_input("large-result.json"), "resultRows": rows}
    env = {"JOBAPI_URL": url}
    workflow = load_workflow(SAMPLES / "large-result.yaml", env=env)
    return await Engine(workflow, build_config(workflow.config, (), (), env)).run(given)


async def test_large_result_follows_the_pointer_and_summarizes(small_results_url: str) -> None:
    record = await run_large_result(small_results_url, 2_000)  # ~180 kB of JSON

    assert record["status"] == "SUCCESS", record["error"]
    summary = record["result"]
    assert summary["rows"] == 2_000 and summary["followedPointer"] is True
    assert summary["lastRow"]["id"] == 1_999
    assert summary["resultBytes"] > 20_000
    fetched = record["gwo"]["step_2"]["http"]["resultUrl"]
    assert fetched["url"] == f"{small_results_url}/api/jobs/{summary['jobId']}/result"
    assert len(record["gwo"]["step_2"]["response"]["result"]["data"]) == 2_000


async def test_large_result_leaves_a_small_result_inline(jobapi_url: str) -> None:
    record = await run_large_result(jobapi_url, 10)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"]["rows"] == 10 and record["result"]["followedPointer"] is False
    assert "resultUrl" not in record["gwo"]["step_2"]["http"]


def test_the_large_result_sample_asks_for_more_than_seed_004s_5_mb() -> None:
    rows = sample_input("large-result.json")["resultRows"]
    app = jobapi.JobAPI("k", 1.0, lambda: 0.0)
    job = jobapi.Job("job_x", {"datasetId": "ds-big"}, "completed", 0.0, None, result_rows=rows)
    assert app.result_of(job)["is_url"] is True
    assert job.large_result is not None and len(job.large_result) >= jobapi.LARGE_RESULT_BYTES
