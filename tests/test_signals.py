"""SIGTERM stops a run from any parent: exit 130, INTERRUPTED, resumable.

A script that starts `lamrunner run ... &` (non-interactive bash, no job control) hands it
SIGINT ignored; SIGTERM must not depend on that. The run polls a real local server, is stopped
mid-poll, and `lamrunner resume` completes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys

import pytest
from conftest import Reply

from lamrunner.store.sqlite import INTERRUPTED

LAMRUNNER = [sys.executable, "-m", "lamrunner"]


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *LAMRUNNER, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def slow_poll(api, wf):
    """The job is done on the 5th attempt, 300 ms apart: long enough to be stopped in between."""
    api.script(
        "GET", "/jobs/j1", *[Reply(json={"state": "pending"})] * 4, Reply(json={"state": "done"})
    )
    wait = wf.request_step(
        "wait",
        {
            "method": "GET",
            "url": api.url + "/jobs/j1",
            "loopUntil": {
                "condition": "ctx.response.state === 'done'",
                "initialDelay": "300ms",
                "maxAttempts": 10,
                "timeout": "60s",
            },
        },
    )
    return str(wf.workflow([{"name": "wait", "handler": wait}]))


async def wait_until(predicate, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_sigterm_stops_a_run_a_script_started_in_the_background(api, slow_poll, tmp_path):
    store = str(tmp_path / "runs.sqlite3")
    command = shlex.join([*LAMRUNNER, "run", slow_poll, "--store", store])
    script = f"{command} &\necho $!\nwait $!\n"  # the way a deploy script backgrounds a job
    shell = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    pid = int(await asyncio.wait_for(shell.stdout.readline(), 10))
    await wait_until(lambda: len(api.requests_to("/jobs/j1")) >= 2)

    os.kill(pid, signal.SIGTERM)
    out, err = await asyncio.wait_for(shell.communicate(), 20)

    assert shell.returncode == 130, err.decode()  # `wait` passes lamrunner's status on
    record = json.loads(out)
    assert record["status"] == INTERRUPTED
    run_id = record["runId"]
    assert f"lamrunner resume {run_id}" in record["error"]["message"]
    code, listing, _ = await cli("runs", "--json", "--store", store)
    assert [(r["runId"], r["status"]) for r in json.loads(listing)] == [(run_id, INTERRUPTED)]
    sent = len(api.requests_to("/jobs/j1"))
    assert sent < 5

    code, out, err = await cli("resume", run_id, "--store", store)

    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_1"]["http"]["attempts"] == 5
    assert len(api.requests_to("/jobs/j1")) == 5


async def test_sigint_ignored_by_the_parent_stays_ignored(api, slow_poll, tmp_path):
    """Ctrl-C in a script's terminal is for the foreground job, not for its `&` jobs."""
    command = shlex.join([*LAMRUNNER, "run", slow_poll, "--no-store"])
    shell = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"{command} &\necho $!\nwait $!\n",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    pid = int(await asyncio.wait_for(shell.stdout.readline(), 10))
    await wait_until(lambda: len(api.requests_to("/jobs/j1")) >= 2)

    os.kill(pid, signal.SIGINT)
    out, err = await asyncio.wait_for(shell.communicate(), 20)

    assert shell.returncode == 0, err.decode()
    assert json.loads(out)["status"] == "SUCCESS"
