"""`lamrunner serve` as a command: the listening line, serving, SIGTERM, refusals as one JSON
record (exit 2, no traceback), folders, the access log without the key, a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Reply

KEY = "cli-key-91c2e0aa"


def flows(root: Path, poll_url: str = "http://127.0.0.1:9/none") -> Path:
    folder = root / "flows"
    folder.mkdir(exist_ok=True)
    (folder / "echo.py").write_text("def transform(data):\n    return {'got': data['input']}\n")
    (folder / "poll.py").write_text(
        "def transform(data):\n    return {'lam.httpRequest': {'method': 'GET', 'url': "
        f"{poll_url!r}, 'loopUntil': {{'condition': 'ctx.response.done === true', "
        "'maxAttempts': 500, 'initialDelay': '100ms'}}}\n"
    )
    (folder / "echo.json").write_text(
        json.dumps({"name": "echo", "steps": [{"handler": "echo.py"}]})
    )
    (folder / "poll.yaml").write_text("name: poll\nsteps:\n  - handler: poll.py\n")
    return folder


class Running:
    def __init__(self, process: asyncio.subprocess.Process, announce: dict, log: Path) -> None:
        self.process, self.announce, self.log = process, announce, log
        self.url = announce["listening"]

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 15)


async def launch(tmp_path: Path, *args: str, env: dict | None = None) -> Running:
    log = tmp_path / f"server-{time.monotonic_ns()}.log"
    with log.open("w") as stderr:  # a file, not a pipe: nothing can block on it
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lamrunner",
            "serve",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line, log.read_text()
    return Running(process, json.loads(line), log)


async def refused(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[int, dict, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lamrunner",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, json.loads(out), err.decode()


async def test_it_announces_serves_and_exits_0_on_sigterm(tmp_path):
    store = tmp_path / "store.sqlite3"
    server = await launch(tmp_path, str(flows(tmp_path)), "--port", "0", "--store", str(store))
    assert server.announce["workflows"] == ["echo", "poll"]
    assert server.announce["store"] == str(store)
    assert server.url.startswith("http://127.0.0.1:")
    async with (
        aiohttp.ClientSession() as client,
        client.post(f"{server.url}/workflow/execute/echo", json={"hi": 1}) as answer,
    ):
        assert answer.status == 200
        assert await answer.json() == {"got": {"hi": 1}}
    assert await server.stop() == 0
    assert store.exists()
    assert "Traceback" not in server.log.read_text()


async def test_the_access_log_never_shows_the_key(tmp_path):
    server = await launch(
        tmp_path,
        str(flows(tmp_path)),
        "--port",
        "0",
        "--api-key-env",
        "CLI_KEY",
        "--log-format",
        "json",
        env={"CLI_KEY": KEY},
    )
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{server.url}/jobs", params={"api_key": KEY}) as answer:
            assert answer.status == 200
        async with client.get(f"{server.url}/jobs", headers={"X-API-KEY": KEY}) as answer:
            assert answer.status == 200
        async with client.get(f"{server.url}/jobs", headers={"X-API-KEY": "wrong"}) as answer:
            assert answer.status == 401
        hook = "http://127.0.0.1:9/hook?token=tok-secret-123"
        async with client.post(
            f"{server.url}/workflow/execute/echo/async",
            params={"callback_url": hook},
            headers={"X-API-KEY": KEY},
        ) as answer:
            assert answer.status == 202
        await asyncio.sleep(0.3)  # its first delivery attempt fails (nobody on port 9)
    assert await server.stop() == 0
    log = server.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["event"] == "http.request"]
    assert len(requests) == 4
    assert requests[0]["path"] == "/jobs?api_key=%2A%2A%2A"
    assert requests[3]["path"].endswith("callback_url=http%3A%2F%2F127.0.0.1%3A9%2Fhook")
    assert [r["status"] for r in requests] == [200, 200, 401, 202]
    assert any(line["event"] == "callback.retry" for line in lines)
    assert KEY not in log
    assert "tok-secret-123" not in log


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--host", "0.0.0.0"], {}, "refusing to listen beyond loopback"),
        (["--api-key-env", "CLI_UNSET_KEY_VAR"], {}, "CLI_UNSET_KEY_VAR"),
        (["--api-key-env", "CLI_EMPTY"], {"CLI_EMPTY": ""}, "CLI_EMPTY is empty"),
        (["--port", "99999"], {}, "not a port"),
        (["--retention", "soon"], {}, "--retention"),
        (["--max-body", "lots"], {}, "--max-body"),
        (["--config", "missing.yaml"], {}, "--config missing.yaml"),
    ],
)
async def test_bad_invocations_are_one_record_and_exit_2(tmp_path, args, env, expected):
    code, record, stderr = await refused(
        tmp_path, str(flows(tmp_path)), "--port", "0", *args, env=env
    )
    assert code == 2
    assert record["status"] == "FAILED"
    assert expected in record["error"]["message"]
    assert "Traceback" not in stderr


async def test_two_workflows_with_one_name_name_both_files(tmp_path):
    folder = flows(tmp_path)
    twin = tmp_path / "twin.json"
    twin.write_text(json.dumps({"name": "echo", "steps": [{"handler": "flows/echo.py"}]}))
    code, record, _ = await refused(tmp_path, str(folder), str(twin), "--port", "0")
    assert code == 2
    message = record["error"]["message"]
    assert "'echo'" in message
    assert str(twin) in message
    assert "echo.json" in message


async def test_a_folder_skips_what_is_not_a_workflow_and_says_why(tmp_path):
    folder = flows(tmp_path)
    (folder / "notes.yaml").write_text("just: some notes\n")
    (folder / "README.md").write_text("# not even yaml\n")
    server = await launch(tmp_path, str(folder), "--port", "0", "--log-format", "json")
    assert server.announce["workflows"] == ["echo", "poll"]
    assert await server.stop() == 0
    skipped = [
        json.loads(line)
        for line in server.log.read_text().splitlines()
        if '"serve.skipped"' in line
    ]
    assert [Path(s["file"]).name for s in skipped] == ["notes.yaml"]
    assert "just" in skipped[0]["reason"]


async def test_a_missing_path_is_refused(tmp_path):
    code, record, _ = await refused(tmp_path, str(tmp_path / "nowhere"), "--port", "0")
    assert code == 2
    assert "nowhere" in record["error"]["message"]


async def test_a_polling_job_goes_on_after_sigterm_and_a_restart(tmp_path, api):
    api.script("GET", "/job", Reply(200, json={"done": False}))
    folder = flows(tmp_path, f"{api.url}/job")
    store = tmp_path / "store.sqlite3"
    args = (str(folder), "--port", "0", "--store", str(store))
    first = await launch(tmp_path, *args)
    async with aiohttp.ClientSession() as client:
        async with client.post(f"{first.url}/workflow/execute/poll/async") as answer:
            job_id = (await answer.json())["job_id"]
        await _until(lambda: len(api.requests_to("/job")) >= 3)
    assert await first.stop() == 0
    before = len(api.requests_to("/job"))
    api.script("GET", "/job", Reply(200, json={"done": True}))
    api.replies[("GET", "/job")].popleft()  # the next poll sees the job done
    second = await launch(tmp_path, *args)
    async with aiohttp.ClientSession() as client:
        deadline = time.monotonic() + 15
        while True:
            async with client.get(f"{second.url}/jobs/{job_id}") as answer:
                job = await answer.json()
            if job["status"] == "completed":
                break
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.1)
    assert await second.stop() == 0
    assert job["result"] == {"done": True}
    assert len(api.requests_to("/job")) == before + 1  # it polled on, once, and ended


async def _until(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_a_port_in_use_is_refused_naming_it(tmp_path):
    first = await launch(tmp_path, str(flows(tmp_path)), "--port", "0")
    port = first.url.rsplit(":", 1)[1]
    try:
        code, record, stderr = await refused(
            tmp_path, str(flows(tmp_path)), "--port", port, "--store", str(tmp_path / "b.db")
        )
    finally:
        assert await first.stop() == 0
    assert code == 2
    assert f"--port {port}: cannot listen" in record["error"]["message"]
    assert "Traceback" not in stderr


async def test_a_second_server_on_one_store_is_refused_until_the_first_is_gone(tmp_path):
    """Two servers on one store would wake the same jobs and run them twice."""
    store = str(tmp_path / "one.db")
    first = await launch(tmp_path, str(flows(tmp_path)), "--port", "0", "--store", store)
    code, record, stderr = await refused(
        tmp_path, str(flows(tmp_path)), "--port", "0", "--store", store
    )
    assert code == 2 and "Traceback" not in stderr
    message = record["error"]["message"]
    assert f"another lamrunner serve (pid {first.process.pid}) is serving it" in message
    first.process.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel drops it
    await first.process.wait()
    second = await launch(tmp_path, str(flows(tmp_path)), "--port", "0", "--store", store)
    assert await second.stop() == 0


async def test_a_callback_not_yet_delivered_is_delivered_after_a_sigkill(tmp_path, api):
    api.script("POST", "/hook", Reply(503))
    store = tmp_path / "store.sqlite3"
    args = (str(flows(tmp_path)), "--port", "0", "--store", str(store))
    first = await launch(tmp_path, *args)
    async with aiohttp.ClientSession() as client:
        async with client.post(
            f"{first.url}/workflow/execute/echo/async",
            params={"callback_url": f"{api.url}/hook"},
            json={"k": 1},
        ) as answer:
            job_id = (await answer.json())["job_id"]
        await _until(lambda: len(api.requests_to("/hook")) >= 1)
    first.process.kill()  # SIGKILL: no cleanup at all
    await first.process.wait()
    api.script("POST", "/hook", Reply(204))
    api.replies[("POST", "/hook")].popleft()  # the receiver is back
    second = await launch(tmp_path, *args)
    try:
        await _until(lambda: len(api.requests_to("/hook")) >= 2)
        await asyncio.sleep(0.5)
    finally:
        assert await second.stop() == 0
    hooks = api.requests_to("/hook")
    assert len(hooks) == 2  # the failed one, then the one after the restart: delivered
    document = json.loads(hooks[-1].body)
    assert document["job_id"] == job_id
    assert document["status"] == "completed"
    assert document["result"] == {"got": {"k": 1}}
