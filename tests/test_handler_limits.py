"""limits.handlerTimeout for Python handlers: wall-clock time, for `def` and `async def` alike.

A sync handler cannot be stopped (it runs in a thread); the step fails once the time is up, and
neither the run nor the CLI process waits for the thread. Handlers here sleep a few seconds
(in-process) or 30 s (CLI) under limits of a fraction of a second, so a missing limit shows up
as a slow, successful run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_path

ROOT = Path(__file__).resolve().parent.parent

SLEEPY_SYNC = (
    "import time\n\ndef transform(data):\n    time.sleep({s})\n    return {{'woke': True}}\n"
)
SLEEPY_ASYNC = (
    "import asyncio\n\nasync def transform(data):\n    await asyncio.sleep({s})\n"
    "    return {{'woke': True}}\n"
)


async def timed_run(wf, source: str, limit: str) -> tuple[dict, float]:
    path = wf.workflow([wf.handler("slow.py", source)], limits={"handlerTimeout": limit})
    started = time.monotonic()
    record = await run_path(path)
    return record, time.monotonic() - started


def assert_timed_out(record: dict, limit: str) -> str:
    assert record["status"] == "FAILED", record
    error = record["error"]
    assert error["type"] == "HandlerError" and error["step"] == "step_1", error
    message = error["message"]
    assert "slow.py" in message and "transform()" in message, message
    assert f"its {limit} time limit" in message and "limits.handlerTimeout" in message, message
    assert "wall-clock" in message, message
    return message


async def test_an_async_handler_past_its_timeout_is_cancelled(wf):
    record, elapsed = await timed_run(wf, SLEEPY_ASYNC.format(s=30), "300ms")
    assert "cancelled" in assert_timed_out(record, "0.3s")
    assert elapsed < 3


async def test_a_sync_handler_past_its_timeout_fails_the_step_without_waiting(wf):
    record, elapsed = await timed_run(wf, SLEEPY_SYNC.format(s=4), "300ms")
    assert "background thread" in assert_timed_out(record, "0.3s")
    assert elapsed < 3


async def test_handlers_within_their_timeout_succeed(wf):
    for source in (SLEEPY_SYNC, SLEEPY_ASYNC):
        record, _ = await timed_run(wf, source.format(s=0.05), "2s")
        assert record["status"] == "SUCCESS", record
        assert record["result"] == {"woke": True}


async def test_a_handler_raising_timeout_error_itself_is_not_the_limit(wf):
    source = "def transform(data):\n    raise TimeoutError('the upstream API timed out')\n"
    record, _ = await timed_run(wf, source, "5s")
    assert record["status"] == "FAILED"
    message = record["error"]["message"]
    assert "TimeoutError: the upstream API timed out" in message, message
    assert "limits.handlerTimeout" not in message


async def test_stuck_sync_handlers_do_not_starve_later_runs(wf):
    """More stuck handlers than worker threads time out together; a later run still runs now."""
    stuck = wf.workflow(
        [wf.handler("slow.py", SLEEPY_SYNC.format(s=3))], limits={"handlerTimeout": "200ms"}
    )
    started = time.monotonic()
    records = await asyncio.gather(*(run_path(stuck) for _ in range(40)))
    assert all(r["error"]["type"] == "HandlerError" for r in records)
    quick = wf.workflow([wf.py_step("quick", "{'ok': True}")], limits={"handlerTimeout": "1s"})
    assert (await run_path(quick))["status"] == "SUCCESS"
    assert time.monotonic() - started < 2.5  # not behind the 3 s sleepers


def test_the_cli_does_not_wait_for_a_stuck_sync_handler_at_exit(tmp_path: Path):
    """The thread cannot be killed; the process exits anyway, at once, with the failed record."""
    (tmp_path / "slow.py").write_text(SLEEPY_SYNC.format(s=30))
    doc = {"name": "stuck", "steps": ["slow.py"], "limits": {"handlerTimeout": "1s"}}
    (tmp_path / "wf.yaml").write_text(json.dumps(doc))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "lamrunner", "run", "wf.yaml", "--no-store", "--log-format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    record = json.loads(proc.stdout)
    assert record["error"]["type"] == "HandlerError"
    assert "1s time limit" in record["error"]["message"]
    assert "Traceback" not in proc.stderr
    assert elapsed < 8, elapsed
