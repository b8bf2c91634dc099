"""What survives a restart of `lamrunner serve`: the real server as a subprocess, jobs polling a
real job API on 127.0.0.1, the server killed with SIGKILL mid-poll (or stopped with SIGTERM) and
started again on the same store. Every job goes on from its checkpoint: no completed request
is sent again, a poll's attempts count on, and each job ends as it would have."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from conftest import Reply, ScriptedAPI

from lamrunner.store.sqlite import RunStore

RUNNING, DONE = Reply(json={"s": "running", "id": "x"}), Reply(json={"s": "done"})
POLLS = 6  # a fast job's answers "running" before the one that says "done"


def flow(folder: Path, api: ScriptedAPI) -> Path:
    """POST /submit/N once, poll GET /job/N until done (every `input.delay`), report."""
    (folder / "submit.py").write_text(
        "def transform(data):\n"
        "    n = data['input']['n']\n"
        f"    return {{'lam.httpRequest': {{'method': 'POST', 'url': '{api.url}/submit/' + n}}}}\n"
    )
    (folder / "wait.py").write_text(
        "def transform(data):\n"
        "    n = data['input']['n']\n"
        "    return {'lam.httpRequest': {\n"
        f"        'method': 'GET', 'url': '{api.url}/job/' + n,\n"
        "        'loopUntil': {'condition': \"ctx.response.s === 'done'\", 'maxAttempts': 30,\n"
        "                      'initialDelay': data['input']['delay']},\n"
        f"        'onGiveUp': {{'method': 'POST', 'url': '{api.url}/give-up/' + n}}}}}}\n"
    )
    (folder / "report.py").write_text(
        "def transform(data):\n"
        "    return {'n': data['input']['n'], 'polled': data['step_2']['response']['s']}\n"
    )
    path = folder / "durable.yaml"
    path.write_text(
        "name: durable\nsteps:\n  - handler: submit.py\n  - handler: wait.py\n"
        "  - handler: report.py\n"
    )
    return path


@asynccontextmanager
async def server(workflow: Path, store: Path, log: Path) -> AsyncIterator[tuple[Any, str]]:
    """`lamrunner serve` on a free port (--hold 1s: a wait longer than that is a row)."""
    with log.open("ab") as errors:
        async with _serving(workflow, store, errors) as started:
            yield started


@asynccontextmanager
async def _serving(workflow: Path, store: Path, errors: Any) -> AsyncIterator[tuple[Any, str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lamrunner",
        "serve",
        str(workflow),
        "--port",
        "0",
        "--store",
        str(store),
        "--hold",
        "1s",
        stdout=asyncio.subprocess.PIPE,
        stderr=errors,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 15)
        assert line, f"the server did not start (its log: {errors.name})"
        yield process, json.loads(line)["listening"]
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def submit(session: aiohttp.ClientSession, url: str, n: str, delay: str) -> str:
    async with session.post(
        f"{url}/workflow/execute/durable/async", json={"n": n, "delay": delay}
    ) as resp:
        assert resp.status == 202, await resp.text()
        return str((await resp.json())["job_id"])


async def job(session: aiohttp.ClientSession, url: str, job_id: str) -> dict[str, Any]:
    async with session.get(f"{url}/jobs/{job_id}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def all_ended(session: aiohttp.ClientSession, url: str, ids: dict[str, str]) -> dict:
    loop = asyncio.get_running_loop()
    end = loop.time() + 15
    while loop.time() < end:
        jobs = {n: await job(session, url, i) for n, i in ids.items()}
        if all(j["status"] in ("completed", "failed", "canceled") for j in jobs.values()):
            return jobs
        await asyncio.sleep(0.1)
    raise AssertionError(f"not all ended: {jobs}")


async def requests(api: ScriptedAPI, paths: list[str], at_least: int) -> None:
    """Until each path was asked `at_least` times (within 10 s)."""

    async def enough() -> None:
        while min(len(api.requests_to(p)) for p in paths) < at_least:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(enough(), 10)


async def quiet_moment(api: ScriptedAPI, paths: list[str], delay: float) -> None:
    """Until every poll's last answer is processed and its next not yet due: no request is
    in flight (a request killed in flight is legitimately sent again)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(0.005)
        last = [api.requests_to(p)[-1].at for p in paths]
        now = loop.time()
        if now - max(last) >= 0.06 and all(t + delay - now >= 0.05 for t in last):
            return


async def test_sigkill_mid_poll_then_restart_every_job_goes_on_from_its_checkpoint(tmp_path, api):
    fast = ["0", "1", "2"]
    for n in fast:
        api.script("POST", f"/submit/{n}", Reply(json={"ok": n}))
        api.script("GET", f"/job/{n}", *[RUNNING] * POLLS, DONE)
    api.script("POST", "/submit/slow", Reply(json={"ok": "slow"}))
    api.script("GET", "/job/slow", RUNNING, DONE)
    workflow, store, log = flow(tmp_path, api), tmp_path / "serve.sqlite3", tmp_path / "log"
    paths = [f"/job/{n}" for n in fast]
    async with aiohttp.ClientSession() as session:
        async with server(workflow, store, log) as (process, url):
            ids = {n: await submit(session, url, n, "300ms") for n in fast}
            ids["slow"] = await submit(session, url, "slow", "2s")  # beyond the hold: a row
            await requests(api, paths, 2)
            await quiet_moment(api, paths, 0.3)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        before = {n: len(api.requests_to(f"/job/{n}")) for n in fast}
        assert all(2 <= count < POLLS + 1 for count in before.values()), before
        async with server(workflow, store, log) as (_process, url):
            jobs = await all_ended(session, url, ids)
    for n in [*fast, "slow"]:
        assert jobs[n]["status"] == "completed", jobs[n]
        assert jobs[n]["result"] == {"n": n, "polled": "done"}
        assert len(api.requests_to(f"/submit/{n}")) == 1  # its completed step: not sent again
    for n in fast:  # every answer asked for once: none re-sent, none skipped
        assert len(api.requests_to(f"/job/{n}")) == POLLS + 1
    first, second = api.requests_to("/job/slow")
    assert 1.9 <= second.at - first.at <= 3.0  # woken from its row on time, restart or not
    assert api.requests_to("/give-up/0") == []  # a kill is not a give-up
    runs = RunStore(store)
    try:
        for n in fast:  # the poll's attempt numbering went on across the restart
            numbers = [row["attempt"] for row in runs.attempts(ids[n])]
            assert numbers == list(range(1, POLLS + 2)), numbers
    finally:
        runs.close()


async def test_sigterm_is_a_handover_no_on_give_up_and_the_job_goes_on(tmp_path, api):
    api.script("POST", "/submit/t", Reply(json={"ok": "t"}))
    api.script("GET", "/job/t", *[RUNNING] * 4, DONE)
    workflow, store, log = flow(tmp_path, api), tmp_path / "serve.sqlite3", tmp_path / "log"
    async with aiohttp.ClientSession() as session:
        async with server(workflow, store, log) as (process, url):
            ids = {"t": await submit(session, url, "t", "200ms")}
            await requests(api, ["/job/t"], 2)
            await quiet_moment(api, ["/job/t"], 0.2)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 10) == 0
        stopped_at = len(api.requests_to("/job/t"))
        assert api.requests_to("/give-up/t") == []  # stopping the server does not give up
        async with server(workflow, store, log) as (_process, url):
            jobs = await all_ended(session, url, ids)
    assert jobs["t"]["status"] == "completed" and jobs["t"]["result"]["polled"] == "done"
    assert 2 <= stopped_at < 5 and len(api.requests_to("/job/t")) == 5
    assert len(api.requests_to("/submit/t")) == 1 and api.requests_to("/give-up/t") == []


async def lamrunner(*args: str) -> tuple[int, dict[str, Any]]:
    """A `lamrunner` command beside the server: its exit code and its one JSON record."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lamrunner",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, json.loads(out)


async def test_lamrunner_cancel_of_a_served_job_is_carried_out_by_its_server(tmp_path, api):
    """`lamrunner cancel JOB_ID` on the server's store: the server stops the job (a poll in
    memory and a job waiting as a row alike), sends each onGiveUp once, and the job is
    canceled through the API too."""
    for n in ("near", "far"):
        api.script("POST", f"/submit/{n}", Reply(json={"ok": n}))
        api.script("GET", f"/job/{n}", *[RUNNING] * 40)
        api.script("POST", f"/give-up/{n}", Reply(json={}))
    workflow, store, log = flow(tmp_path, api), tmp_path / "serve.sqlite3", tmp_path / "log"
    async with aiohttp.ClientSession() as session, server(workflow, store, log) as (_p, url):
        ids = {"near": await submit(session, url, "near", "200ms")}
        ids["far"] = await submit(session, url, "far", "30s")  # a row until then
        await requests(api, ["/job/near", "/job/far"], 1)
        await quiet_moment(api, ["/job/near", "/job/far"], 0.2)  # answers in hand, none in flight
        for n in ("near", "far"):
            code, record = await lamrunner("cancel", ids[n], "--store", str(store))
            assert code == 0, record
            assert record["status"] == "FAILED" and record["error"]["type"] == "Cancelled"
        jobs = {n: await job(session, url, i) for n, i in ids.items()}
        polls = len(api.requests_to("/job/near"))
        await asyncio.sleep(0.5)  # two of its poll intervals: it polls no more
        assert len(api.requests_to("/job/near")) == polls
    for n in ("near", "far"):
        assert jobs[n]["status"] == "canceled" and "cancel" in jobs[n]["error"], jobs[n]
        assert len(api.requests_to(f"/give-up/{n}")) == 1
    assert len(api.requests_to("/job/far")) == 1


async def test_a_cancel_asked_while_no_server_runs_is_carried_out_when_one_starts(tmp_path, api):
    api.script("POST", "/submit/w", Reply(json={"ok": "w"}))
    api.script("GET", "/job/w", *[RUNNING] * 10)
    api.script("POST", "/give-up/w", Reply(json={}))
    workflow, store, log = flow(tmp_path, api), tmp_path / "serve.sqlite3", tmp_path / "log"
    async with aiohttp.ClientSession() as session:
        async with server(workflow, store, log) as (process, url):
            job_id = await submit(session, url, "w", "300ms")
            await requests(api, ["/job/w"], 1)
            await quiet_moment(api, ["/job/w"], 0.3)  # its answer checkpointed: a poll to end
            process.send_signal(signal.SIGKILL)
            await process.wait()
        code, record = await lamrunner("cancel", job_id, "--store", str(store))
        assert code == 1 and record["error"]["type"] == "CancelPending", record
        assert "no lamrunner serve is serving" in record["error"]["message"]
        assert api.requests_to("/give-up/w") == []  # the server's to send, not the CLI's
        polls = len(api.requests_to("/job/w"))
        async with server(workflow, store, log) as (_process, url):
            ended = await all_ended(session, url, {"w": job_id})
    assert ended["w"]["status"] == "canceled"
    assert len(api.requests_to("/give-up/w")) == 1
    assert len(api.requests_to("/job/w")) == polls  # canceled before it could poll again


async def test_lamrunner_resume_of_a_served_job_is_refused_naming_the_server_s_way(tmp_path, api):
    api.script("POST", "/submit/r", Reply(json={"ok": "r"}))
    api.script("GET", "/job/r", *[RUNNING] * 10)
    workflow, store, log = flow(tmp_path, api), tmp_path / "serve.sqlite3", tmp_path / "log"
    async with aiohttp.ClientSession() as session, server(workflow, store, log) as (_p, url):
        job_id = await submit(session, url, "r", "30s")
        await requests(api, ["/job/r"], 1)
        for args in (("resume", job_id), ("resume", "--redrive", job_id)):
            code, record = await lamrunner(*args, "--store", str(store))
            assert code == 2, record
            assert f"POST /jobs/{job_id}/resume" in record["error"]["message"]
    assert len(api.requests_to("/submit/r")) == 1 and len(api.requests_to("/job/r")) == 1
