"""The sample job API (samples/jobapi.py) that the sample workflows poll.

Lifecycle tests drive a fake clock instead of sleeping; one test starts the real script.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "samples" / "jobapi.py"

_spec = importlib.util.spec_from_file_location("jobapi", SCRIPT)
assert _spec is not None and _spec.loader is not None
jobapi = importlib.util.module_from_spec(_spec)
sys.modules["jobapi"] = jobapi
_spec.loader.exec_module(jobapi)

AUTH = {"Authorization": "Bearer dev-key"}
BODY = {"datasetId": "ds-42", "operation": "transform", "outputFormat": "parquet"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(clock: FakeClock) -> AsyncIterator[TestClient]:
    app = jobapi.create_app(api_key="dev-key", phase_seconds=1.0, clock=clock)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def submit(client: TestClient, body: dict | None = None, **headers: str) -> tuple[int, dict]:
    resp = await client.post("/api/jobs", json=body or BODY, headers={**AUTH, **headers})
    return resp.status, await resp.json()


async def fetch(client: TestClient, job_id: str) -> dict:
    resp = await client.get(f"/api/jobs/{job_id}", headers=AUTH)
    assert resp.status == 200
    return await resp.json()


async def test_healthz_needs_no_key(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"ok": True}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}, {"Authorization": "dev-key"}],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/jobs"),
        ("GET", "/api/jobs"),
        ("GET", "/api/jobs/job_x"),
        ("POST", "/api/jobs/job_x/cancel"),
    ],
)
async def test_api_routes_need_the_key(
    client: TestClient, headers: dict, method: str, path: str
) -> None:
    resp = await client.request(method, path, json=BODY, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert "API key" in (await resp.json())["error"]


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer dev-key"}, {"X-API-Key": "dev-key"}])
async def test_bearer_or_x_api_key_is_accepted(client: TestClient, headers: dict) -> None:
    resp = await client.post("/api/jobs", json=BODY, headers=headers)
    assert resp.status == 202


@pytest.mark.parametrize(
    "body",
    [
        {"operation": "transform"},
        {"datasetId": ""},
        {"datasetId": 42},
        {"datasetId": "ds-1", "simulate": "exploded"},
        ["ds-1"],
        "not json",
    ],
)
async def test_bad_submissions_are_400(client: TestClient, body: object) -> None:
    data = body if isinstance(body, str) else json.dumps(body)
    resp = await client.post("/api/jobs", data=data, headers=AUTH)
    assert resp.status == 400
    assert "error" in await resp.json()


async def test_lifecycle_pending_processing_completed(client: TestClient, clock: FakeClock) -> None:
    status, job = await submit(client)
    assert status == 202
    assert job["status"] == "pending" and job["progress"] == 0
    assert job["job_id"].startswith("job_") and "result" not in job
    assert job["request"] == BODY

    clock.advance(1.0)
    assert (await fetch(client, job["job_id"]))["status"] == "processing"
    clock.advance(0.5)
    halfway = await fetch(client, job["job_id"])
    assert halfway["status"] == "processing" and halfway["progress"] == 50

    clock.advance(0.5)
    done = await fetch(client, job["job_id"])
    assert done["status"] == "completed" and done["progress"] == 100
    assert done["result"]["format"] == "parquet"
    assert done["result"]["location"] == "file:///tmp/out/ds-42.parquet"
    assert isinstance(done["result"]["rows"], int) and done["result"]["rows"] > 0
    assert "error" not in done
    created = datetime.fromisoformat(done["created_at"])
    updated = datetime.fromisoformat(done["updated_at"])
    assert done["created_at"].endswith("Z") and (updated - created).total_seconds() == 2.0


async def test_client_poll_answers_status_then_an_action(
    client: TestClient, clock: FakeClock
) -> None:
    _, job = await submit(client)
    url = f"/api/jobs/{job['job_id']}/client-poll"
    running = await client.get(url, headers=AUTH)
    assert running.status == 200
    assert await running.json() == {"status": "pending", "progress": 0}
    clock.advance(2.0)
    done = await (await client.get(url, headers=AUTH)).json()
    assert done == {"action": {"url": f"/api/jobs/{job['job_id']}"}}
    missing = await client.get("/api/jobs/job_nope/client-poll", headers=AUTH)
    assert missing.status == 404
    assert (await client.get(url)).status == 401


async def test_client_poll_of_a_failed_job_answers_an_exit_action(
    client: TestClient, clock: FakeClock
) -> None:
    _, job = await submit(client, {**BODY, "simulate": "failed"})
    clock.advance(2.0)
    url = f"/api/jobs/{job['job_id']}/client-poll"
    action = (await (await client.get(url, headers=AUTH)).json())["action"]
    assert action["exit"] is True
    assert action["result"]["status"] == "failed" and action["result"]["jobId"] == job["job_id"]
    assert "out of memory" in action["result"]["error"]


@pytest.mark.parametrize("outcome", ["failed", "canceled", "expired"])
async def test_simulated_terminal_states(
    client: TestClient, clock: FakeClock, outcome: str
) -> None:
    status, job = await submit(client, {**BODY, "simulate": outcome})
    assert status == 202 and job["status"] == "pending"
    clock.advance(1.5)
    assert (await fetch(client, job["job_id"]))["status"] == "processing"
    clock.advance(0.5)
    final = await fetch(client, job["job_id"])
    assert final["status"] == outcome
    if outcome == "failed":
        assert final["error"] and "result" not in final
    elif outcome == "expired":
        assert final["result"]["expired"] is True and final["result"]["location"] is None
    else:
        assert "result" not in final and "error" not in final


async def test_post_is_idempotent_for_the_same_request(
    client: TestClient, clock: FakeClock
) -> None:
    """Laminar's example re-POSTs on every poll; each POST must report the one job's progress."""
    first = await client.post("/api/jobs", json=BODY, headers=AUTH)
    job = await first.json()
    assert first.headers["Idempotent-Replayed"] == "false"
    assert first.headers["Location"] == f"/api/jobs/{job['job_id']}"

    seen = []
    for _ in range(3):
        clock.advance(0.75)
        resp = await client.post("/api/jobs", json=BODY, headers=AUTH)
        again = await resp.json()
        assert again["job_id"] == job["job_id"]
        assert resp.headers["Idempotent-Replayed"] == "true"
        seen.append((resp.status, again["status"]))
    assert seen == [(202, "pending"), (202, "processing"), (200, "completed")]

    _, other = await submit(client, {**BODY, "datasetId": "ds-43"})
    _, failing = await submit(client, {**BODY, "simulate": "failed"})
    assert len({job["job_id"], other["job_id"], failing["job_id"]}) == 3


async def test_idempotency_key_header(client: TestClient) -> None:
    _, a = await submit(client, **{"Idempotency-Key": "k-1"})
    _, a_again = await submit(client, **{"Idempotency-Key": "k-1"})
    _, b = await submit(client, **{"Idempotency-Key": "k-2"})  # same body, new key: a new job
    assert a_again["job_id"] == a["job_id"] != b["job_id"]

    status, body = await submit(client, {**BODY, "datasetId": "ds-9"}, **{"Idempotency-Key": "k-1"})
    assert status == 422 and "Idempotency-Key" in body["error"]


async def test_cancel(client: TestClient, clock: FakeClock) -> None:
    _, job = await submit(client)
    clock.advance(1.25)
    resp = await client.post(f"/api/jobs/{job['job_id']}/cancel", headers=AUTH)
    assert resp.status == 200
    canceled = await resp.json()
    assert canceled["status"] == "canceled" and canceled["progress"] == 25

    clock.advance(10)  # a canceled job stays canceled
    assert (await fetch(client, job["job_id"]))["status"] == "canceled"
    again = await client.post(f"/api/jobs/{job['job_id']}/cancel", headers=AUTH)
    assert again.status == 409
    assert (await again.json())["job"]["status"] == "canceled"


async def test_a_finished_job_cannot_be_canceled(client: TestClient, clock: FakeClock) -> None:
    _, job = await submit(client)
    clock.advance(2)
    resp = await client.post(f"/api/jobs/{job['job_id']}/cancel", headers=AUTH)
    assert resp.status == 409 and "completed" in (await resp.json())["error"]


async def test_unknown_jobs_and_routes_are_json_404(client: TestClient) -> None:
    for path, method in [
        ("/api/jobs/job_nope", "GET"),
        ("/api/jobs/job_nope/cancel", "POST"),
        ("/api/nothing", "GET"),
    ]:
        resp = await client.request(method, path, headers=AUTH)
        assert resp.status == 404
        assert "error" in await resp.json()


async def test_list_jobs(client: TestClient) -> None:
    _, a = await submit(client)
    _, b = await submit(client, {**BODY, "datasetId": "ds-2"})
    resp = await client.get("/api/jobs", headers=AUTH)
    assert [job["job_id"] for job in (await resp.json())["jobs"]] == [a["job_id"], b["job_id"]]


@pytest.mark.parametrize(
    ("query", "headers"), [("?rate_limit=1", {}), ("", {"X-Simulate-Rate-Limit": "1"})]
)
async def test_rate_limit_simulation(client: TestClient, query: str, headers: dict) -> None:
    _, job = await submit(client)
    path = f"/api/jobs/{job['job_id']}{query}"
    statuses = []
    for _ in range(4):
        resp = await client.get(path, headers={**AUTH, **headers})
        statuses.append(resp.status)
        if resp.status == 429:
            assert resp.headers["Retry-After"] == "1"
            assert "rate limited" in (await resp.json())["error"]
    assert statuses == [200, 429, 200, 429]
    # Without the switch, and for POSTs, nothing is rate limited.
    assert [
        (await client.get(f"/api/jobs/{job['job_id']}", headers=AUTH)).status for _ in range(2)
    ] == [200, 200]
    assert (await client.post("/api/jobs?rate_limit=1", json=BODY, headers=AUTH)).status == 202


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_script_serves_and_exits_cleanly(sig: signal.Signals) -> None:
    """`python samples/jobapi.py --port 0` announces its URL, serves, and exits 0 on a signal."""
    with subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port", "0", "--quiet"], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("jobapi listening on http://127.0.0.1:"), line
            url = line.split()[-1]
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
                assert resp.status == 200 and json.load(resp) == {"ok": True}
            proc.send_signal(sig)
            assert proc.wait(timeout=5) == 0
            assert proc.stdout.read() == ""  # the listening line is all it ever prints
        finally:
            if proc.poll() is None:
                proc.kill()


async def test_unavailable_seconds_makes_the_jobs_status_answer_503_at_first(
    client: TestClient, clock: FakeClock
) -> None:
    """For the poll-warmup sample: a status service that is not up for its first seconds."""
    _, job = await submit(client, {**BODY, "unavailableSeconds": 1.5})
    resp = await client.get(f"/api/jobs/{job['job_id']}", headers=AUTH)
    assert resp.status == 503 and "starting" in (await resp.json())["error"]
    clock.advance(1.5)
    resp = await client.get(f"/api/jobs/{job['job_id']}", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["status"] == "processing"


async def test_unavailable_seconds_must_be_a_number(client: TestClient) -> None:
    status, body = await submit(client, {**BODY, "unavailableSeconds": "soon"})
    assert status == 400 and "unavailableSeconds" in body["error"]


@pytest.fixture
async def small_cap(clock: FakeClock) -> AsyncIterator[TestClient]:
    """The job API with large results from 2,000 bytes of JSON on (seed 004 says 5 MB)."""
    app = jobapi.create_app(
        api_key="dev-key", phase_seconds=1.0, clock=clock, large_result_bytes=2_000
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_a_small_result_is_inline(small_cap: TestClient, clock: FakeClock) -> None:
    _, job = await submit(small_cap, {**BODY, "resultRows": 3})
    clock.advance(2.0)
    result = (await fetch(small_cap, job["job_id"]))["result"]
    assert result["rows"] == 3 and len(result["data"]) == 3
    assert result["data"][0] == {"id": 0, "dataset": "ds-42", "value": 0, "label": "row-00000000"}


async def test_a_large_result_is_a_pointer_to_its_json(
    small_cap: TestClient, clock: FakeClock
) -> None:
    _, job = await submit(small_cap, {**BODY, "resultRows": 100})
    early = await small_cap.get(f"/api/jobs/{job['job_id']}/result", headers=AUTH)
    assert early.status == 404  # not completed yet: no result to serve
    clock.advance(2.0)
    done = await fetch(small_cap, job["job_id"])
    url = f"/api/jobs/{job['job_id']}/result"
    assert done["result"] == {"is_url": True, "url": url}
    resp = await small_cap.get(url, headers=AUTH)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert int(resp.headers["Content-Length"]) >= 2_000
    full = await resp.json()
    assert full["rows"] == 100 and [r["id"] for r in full["data"]] == list(range(100))
    assert (await small_cap.get(url)).status == 401  # it needs the key like the rest of /api


@pytest.mark.parametrize("rows", [-1, 1.5, True, "10", 10_000_000])
async def test_bad_result_rows_are_400(small_cap: TestClient, rows: object) -> None:
    status, body = await submit(small_cap, {**BODY, "resultRows": rows})
    assert status == 400 and "resultRows" in body["error"]


def test_the_default_threshold_is_seed_004s_5_mb() -> None:
    assert jobapi.LARGE_RESULT_BYTES == 5_000_000
    assert (
        "--large-result-bytes"
        in subprocess.run(
            [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True
        ).stdout
    )
