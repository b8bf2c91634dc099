#!/usr/bin/env python3
"""jobapi: a small local job API for the lamrunner samples to poll.

    .venv/bin/python samples/jobapi.py --port 8765        # --port 0 picks a free port

Every job walks the same lifecycle, driven by the clock rather than by workers:

    pending  --phase_seconds-->  processing  --phase_seconds-->  completed
                                                             (or failed / canceled / expired,
                                                              when the request asks for it)

Endpoints (JSON in and out; /api/* needs `Authorization: Bearer KEY` or `X-API-Key: KEY`):

    POST /api/jobs                 {"datasetId", "operation"?, "outputFormat"?, "simulate"?,
                                    "resultRows"?}
                                   202 while the job runs, 200 once it is terminal
    GET  /api/jobs/{job_id}        the job: job_id, status, created_at, updated_at, progress,
                                   request, result (completed; a stub when expired), error (failed)
    GET  /api/jobs/{job_id}/result a completed job's large result (JSON, streamed)
    POST /api/jobs/{job_id}/cancel 200 canceled, 409 if it had already finished
    GET  /api/jobs/{job_id}/client-poll  a client poll (seed 001): {"status", "progress"} while
                                   it runs, then {"action": {"url": "/api/jobs/{job_id}"}}
                                   or {"action": {"exit": true, "result": {...}}} if it failed
    GET  /api/jobs                 {"jobs": [...]}
    GET  /healthz                  {"ok": true}

POST /api/jobs is idempotent: the same (datasetId, operation, outputFormat, simulate) returns the
same job, so Laminar's polling example, which re-sends its POST on every attempt, sees its one job
move to `completed`. An `Idempotency-Key` header takes precedence: same key, same job.
Add `?rate_limit=1` (or the header `X-Simulate-Rate-Limit: 1`) and every other GET of a path
answers 429 with `Retry-After: 1`, to watch a runner's retry policy at work.

Large results (as seed 004's job API): a job submitted with `"resultRows": N` completes with N
rows of data in its result. Under `--large-result-bytes` (default 5 MB) of JSON they are inline;
at or above it the job's `result` is the pointer `{"is_url": true, "url":
"/api/jobs/{job_id}/result"}` and that URL serves the full result JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import signal
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

try:
    from aiohttp import web
except ModuleNotFoundError as _missing:  # started with a Python that lacks the dependencies
    print(
        f"jobapi: {_missing.name} is not installed for {sys.executable}; run "
        "`bash scripts/demo.sh` once (it creates .venv), then use .venv/bin/python "
        "samples/jobapi.py",
        file=sys.stderr,
    )
    sys.exit(2)

TERMINAL = ("completed", "failed", "canceled", "expired")
LARGE_RESULT_BYTES = 5_000_000  # seed 004: results of 5 MB and more come back as a pointer
MAX_RESULT_ROWS = 2_000_000
_CHUNK = 1 << 16


@dataclass
class Job:
    job_id: str
    request: dict[str, str]  # what was submitted (datasetId, operation, outputFormat, simulate?)
    outcome: str  # the terminal state it will reach on its own: completed unless simulated
    started: float  # clock() at submission
    created_at: datetime  # wall-clock time at submission
    canceled_after: float | None = None  # seconds after `started` when it was canceled
    unavailable_for: float = 0.0  # its GET answers 503 this long after submission (warm-up)
    result_rows: int | None = None  # "resultRows": the rows its result carries
    large_result: bytes | None = None  # that result as JSON, once made (when it is large)


def _rows(job: Job) -> Any:
    """A large result's rows: made up, stable per job, about 90 bytes of JSON each."""
    dataset = job.request["datasetId"]
    for i in range(job.result_rows or 0):
        yield {"id": i, "dataset": dataset, "value": (i * 7919) % 100_003, "label": f"row-{i:08d}"}


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class JobAPI:
    """The job store and the request handlers; state lives in memory only."""

    def __init__(
        self,
        api_key: str,
        phase_seconds: float,
        clock: Callable[[], float],
        large_result_bytes: int = LARGE_RESULT_BYTES,
    ) -> None:
        self.api_key = api_key
        self.large_result_bytes = large_result_bytes
        self.phase = phase_seconds
        self.clock = clock
        self.jobs: dict[str, Job] = {}
        self.by_key: dict[tuple[str, ...], str] = {}  # idempotency key -> job_id
        self.gets: Counter[str] = Counter()  # GETs per path, for the rate-limit simulation

    # -- lifecycle ----------------------------------------------------------------------------

    def state(self, job: Job) -> tuple[str, float, int]:
        """(status, seconds after submission of its last change, progress 0..100) right now."""
        if job.canceled_after is not None:
            _, _, progress = self.lifecycle(job, job.canceled_after)
            return "canceled", job.canceled_after, progress
        return self.lifecycle(job, self.clock() - job.started)

    def lifecycle(self, job: Job, elapsed: float) -> tuple[str, float, int]:
        if elapsed < self.phase:
            return "pending", 0.0, 0
        if elapsed < 2 * self.phase:
            return "processing", self.phase, min(99, int((elapsed - self.phase) / self.phase * 100))
        return job.outcome, 2 * self.phase, 100

    def payload(self, job: Job) -> dict[str, Any]:
        status, changed_after, progress = self.state(job)
        body: dict[str, Any] = {
            "job_id": job.job_id,
            "status": status,
            "created_at": iso(job.created_at),
            "updated_at": iso(job.created_at + timedelta(seconds=changed_after)),
            "progress": progress,
            "request": job.request,
        }
        dataset, fmt = job.request["datasetId"], job.request["outputFormat"]
        if status == "completed":
            body["result"] = {
                "rows": 1000 + zlib.crc32(dataset.encode()) % 99_000,  # stable per dataset
                "format": fmt,
                "location": f"file:///tmp/out/{quote(dataset)}.{quote(fmt)}",
            }
            if job.result_rows is not None:
                body["result"] = self.result_of(job)
        elif status == "failed":
            body["error"] = f"{job.request['operation']} of {dataset} failed: out of memory"
        elif status == "expired":  # the retention stub: the output existed but has been purged
            body["result"] = {
                "expired": True,
                "location": None,
                "message": "output purged after the retention window; resubmit",
            }
        return body

    def result_of(self, job: Job) -> dict[str, Any]:
        """A `resultRows` job's result: its rows inline, or a pointer when they are large."""
        if job.large_result is not None:
            return {"is_url": True, "url": f"/api/jobs/{job.job_id}/result"}
        result = {"rows": job.result_rows, "data": list(_rows(job))}
        encoded = json.dumps(result, separators=(",", ":")).encode()
        if len(encoded) < self.large_result_bytes:
            return result
        job.large_result = encoded  # made once: every later poll answers with the pointer
        return {"is_url": True, "url": f"/api/jobs/{job.job_id}/result"}

    # -- handlers -----------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def create_job(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the body must be a JSON object")
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object")
        fields = {
            "datasetId": body.get("datasetId"),
            "operation": body.get("operation", "transform"),
            "outputFormat": body.get("outputFormat", "parquet"),
        }
        for name, value in fields.items():
            if not isinstance(value, str) or not value:
                return error(400, f"{name} is required and must be a non-empty string")
        outcome = body.get("simulate") or "completed"
        if outcome not in TERMINAL:
            return error(400, f"simulate must be one of {', '.join(TERMINAL[1:])}")
        if outcome != "completed":
            fields["simulate"] = outcome
        warmup = body.get("unavailableSeconds", 0)
        if isinstance(warmup, bool) or not isinstance(warmup, int | float) or warmup < 0:
            return error(400, "unavailableSeconds must be a number of seconds >= 0")
        rows = body.get("resultRows")
        if rows is not None and (
            isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= MAX_RESULT_ROWS
        ):
            return error(400, f"resultRows must be a whole number from 0 to {MAX_RESULT_ROWS}")
        if rows is not None:
            fields["resultRows"] = rows

        # Same key, same job: the Idempotency-Key header if given, else the request itself.
        idem = request.headers.get("Idempotency-Key")
        key = (
            ("header", idem)
            if idem
            else ("body", fields["datasetId"], fields["operation"], fields["outputFormat"], outcome)
        )
        job = self.jobs.get(self.by_key.get(key, ""))
        replayed = job is not None
        if job is not None and job.request != fields:
            return error(422, "this Idempotency-Key was already used with a different request")
        if job is None:
            job = Job(
                f"job_{uuid.uuid4().hex[:12]}",
                fields,
                outcome,
                self.clock(),
                datetime.now(UTC),
                result_rows=rows,
            )
            job.unavailable_for = float(warmup)
            self.jobs[job.job_id] = job
            self.by_key[key] = job.job_id

        payload = self.payload(job)
        return web.json_response(
            payload,
            status=200 if payload["status"] in TERMINAL else 202,
            headers={
                "Location": f"/api/jobs/{job.job_id}",
                "Idempotent-Replayed": "true" if replayed else "false",
            },
        )

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return error(404, f"no job {request.match_info['job_id']!r}")
        if self.clock() - job.started < job.unavailable_for:  # the status service warms up
            return error(503, "the status service is starting; try again shortly")
        return web.json_response(self.payload(job))

    async def client_poll(self, request: web.Request) -> web.Response:
        """A client poll's answer (seed 001): the job's status while it runs, then an action
        for the client to run: load the finished job (`url`, relative to this one), or end
        the flow with the failure (`exit`)."""
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return error(404, f"no job {request.match_info['job_id']!r}")
        payload = self.payload(job)
        status = payload["status"]
        if status not in TERMINAL:
            return web.json_response({"status": status, "progress": payload["progress"]})
        if status == "completed":
            return web.json_response({"action": {"url": f"/api/jobs/{job.job_id}"}})
        reason = payload.get("error") or f"the job ended {status}"
        result = {"jobId": job.job_id, "status": status, "error": reason}
        return web.json_response({"action": {"exit": True, "result": result}})

    async def get_result(self, request: web.Request) -> web.StreamResponse:
        """A large result, streamed in chunks (with its length, as storage serves a file)."""
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return error(404, f"no job {request.match_info['job_id']!r}")
        if self.state(job)[0] == "completed" and job.result_rows is not None:
            self.result_of(job)
        if job.large_result is None:
            return error(404, "this job has no large result (see its `result`)")
        data = job.large_result
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        view = memoryview(data)
        for start in range(0, len(data), _CHUNK):
            await response.write(view[start : start + _CHUNK])
        await response.write_eof()
        return response

    async def cancel_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return error(404, f"no job {request.match_info['job_id']!r}")
        status, _, _ = self.state(job)
        if status in TERMINAL:
            return error(409, f"job is already {status}", job=self.payload(job))
        job.canceled_after = self.clock() - job.started
        return web.json_response(self.payload(job))

    async def list_jobs(self, request: web.Request) -> web.Response:
        return web.json_response({"jobs": [self.payload(job) for job in self.jobs.values()]})

    # -- middleware: JSON errors, authentication, simulated rate limiting ----------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            bearer = token if scheme.lower() == "bearer" else ""
            given = request.headers.get("X-API-Key") or bearer
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                response = error(
                    401, "missing or wrong API key (Authorization: Bearer KEY or X-API-Key: KEY)"
                )
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
            simulate_429 = "1" in (
                request.query.get("rate_limit"),
                request.headers.get("X-Simulate-Rate-Limit"),
            )
            if request.method == "GET" and simulate_429:
                self.gets[request.path] += 1
                if self.gets[request.path] % 2 == 0:
                    response = error(429, "rate limited (simulated); retry later")
                    response.headers["Retry-After"] = "1"
                    return response
        try:
            return await handler(request)
        except web.HTTPException as exc:  # unknown route, wrong method: answer in JSON too
            response = error(exc.status, exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response


def create_app(
    *,
    api_key: str = "dev-key",
    phase_seconds: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    large_result_bytes: int = LARGE_RESULT_BYTES,
) -> web.Application:
    """The aiohttp application; tests pass a fake `clock` to move jobs along without sleeping,
    and a small `large_result_bytes` to get pointers without megabytes of rows."""
    api = JobAPI(api_key, phase_seconds, clock, large_result_bytes)
    app = web.Application(middlewares=[api.middleware])
    app.router.add_get("/healthz", api.healthz)
    app.router.add_post("/api/jobs", api.create_job)
    app.router.add_get("/api/jobs", api.list_jobs)
    app.router.add_get("/api/jobs/{job_id}", api.get_job)
    app.router.add_get("/api/jobs/{job_id}/result", api.get_result)
    app.router.add_post("/api/jobs/{job_id}/cancel", api.cancel_job)
    app.router.add_get("/api/jobs/{job_id}/client-poll", api.client_poll)
    return app


async def serve(app: web.Application, port: int, quiet: bool) -> None:
    """Listen on 127.0.0.1:port, announce the URL on stdout, serve until SIGINT or SIGTERM."""
    runner = web.AppRunner(app, access_log=None if quiet else logging.getLogger("aiohttp.access"))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        bound_port = runner.addresses[0][1]
        print(f"jobapi listening on http://127.0.0.1:{bound_port}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # (On Windows there are no signal handlers: Ctrl+C raises KeyboardInterrupt instead.)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local job API for the lamrunner samples.")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    parser.add_argument(
        "--phase-seconds",
        type=float,
        default=1.0,
        help="seconds a job spends pending, then processing (default 1.0)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("JOBAPI_API_KEY", "dev-key"),
        help="the key clients must send (default $JOBAPI_API_KEY or dev-key)",
    )
    parser.add_argument(
        "--large-result-bytes",
        type=int,
        default=LARGE_RESULT_BYTES,
        help="a result of this many bytes of JSON or more is a pointer (default 5000000)",
    )
    parser.add_argument("--quiet", action="store_true", help="no access log on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="jobapi: %(message)s")
    app = create_app(
        api_key=args.api_key,
        phase_seconds=args.phase_seconds,
        large_result_bytes=args.large_result_bytes,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(app, args.port, args.quiet))
    return 0


if __name__ == "__main__":
    sys.exit(main())
