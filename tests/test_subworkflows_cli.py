"""Sub-workflows through the real `lamrunner` command: the run tree in the store, and a parent
stopped by SIGTERM while a child polls, then resumed: the child that had finished is not run
again (its request is not re-sent) and the interrupted child goes on under its own run id.

The server is the corpus harness's (a real aiohttp server in a background thread); lamrunner is
a `python -m lamrunner` subprocess with its own store file in the test's folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_laminar_corpus import CaseServer, case_servers

ROOT = Path(__file__).resolve().parent.parent
TRACEBACK = "Traceback (most recent call last)"


@pytest.fixture
def serve() -> Iterator[Any]:
    yield from case_servers()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["LAMINAR_API"] = url
    return env


def lamrunner(folder: Path, url: str, *args: str) -> tuple[int, Any, str]:
    store = [] if args[0] == "validate" else ["--store", str(folder / "runs.db")]
    proc = subprocess.run(
        [sys.executable, "-m", "lamrunner", *args, *store],
        cwd=folder,
        env=env_for(url),
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert TRACEBACK not in proc.stdout + proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def tree_flow(folder: Path) -> Path:
    """Step 1 runs child 1 (one POST) then child 2 (a poll); step 2 reads both results."""
    write(
        folder,
        "parent.yaml",
        """
        name: parent
        config: {api: "${LAMINAR_API}"}
        workflows:
          1: ./charge.yaml
          2: ./wait.yaml
        steps:
          - handler: run.js
          - handler: done.js
        """,
    )
    write(
        folder,
        "run.js",
        """
        (data) => ({ "lam.execute": [
          { "lam.workflowId": 1, "lam.payload": { amount: 5 } },
          { "lam.workflowId": 2, "lam.payload": { job: "j-7" } },
        ] })
        """,
    )
    write(folder, "done.js", "(data) => data.step_1.executions.map((e) => e.result)\n")
    write(folder, "charge.yaml", "name: charge\nsteps: [charge.js]\n")
    write(
        folder,
        "charge.js",
        '(data) => ({ "lam.httpRequest": { method: "POST", url: "{{config.api}}/charge",'
        " body: data.input } })\n",
    )
    write(folder, "wait.yaml", "name: wait\nsteps: [wait.js]\n")
    write(
        folder,
        "wait.js",
        """
        (data) => ({ "lam.httpRequest": {
          method: "GET", url: "{{config.api}}/jobs/" + data.input.job,
          loopUntil: { condition: "ctx.response.done", maxAttempts: 500,
                       initialDelay: "50ms", maxDelay: "50ms" },
        } })
        """,
    )
    return folder / "parent.yaml"


def test_runs_show_the_tree_and_resume_keeps_the_finished_child(tmp_path: Path, serve: Any):
    server = CaseServer(
        {"POST /charge": [{"json": {"charged": 5}}], "GET /jobs/j-7": [{"json": {"done": False}}]}
    )
    url = serve(server)
    workflow = tree_flow(tmp_path)
    store = str(tmp_path / "runs.db")
    run = subprocess.Popen(
        [sys.executable, "-m", "lamrunner", "run", str(workflow), "--store", store],
        cwd=tmp_path,
        env=env_for(url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while sum(s.path == "/jobs/j-7" for s in server.seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130, err
    stopped = json.loads(out)
    assert stopped["status"] == "INTERRUPTED"
    parent_id = stopped["runId"]

    code, shown, _ = lamrunner(tmp_path, url, "runs", "show", parent_id)
    assert code == 0
    tree = shown["children"]
    assert [(c["workflow"], c["workflowId"], c["step"], c["mode"]) for c in tree] == [
        ("charge", 1, "step_1", "execute"),
        ("wait", 2, "step_1", "execute"),
    ]
    assert [c["status"] for c in tree] == ["SUCCESS", "INTERRUPTED"]
    code, child_shown, _ = lamrunner(tmp_path, url, "runs", "show", tree[1]["runId"])
    assert child_shown["parent"] == {
        "runId": parent_id,
        "step": "step_1",
        "workflowId": 2,
        "mode": "execute",
    }
    assert child_shown["run"]["gwo"]["input"] == {"job": "j-7"}  # the payload is its input
    code, listed, _ = lamrunner(tmp_path, url, "runs", "--json")
    assert [r["runId"] for r in listed] == [parent_id]  # children are shown under their parent

    code, refused, _ = lamrunner(tmp_path, url, "resume", tree[1]["runId"])
    assert code == 2 and f"lamrunner resume {parent_id}" in refused["error"]["message"]

    polls_before = sum(s.path == "/jobs/j-7" for s in server.seen)
    server.table["GET /jobs/j-7"] = [{"json": {"done": True, "rows": 3}}]
    server.served.clear()
    code, record, _ = lamrunner(tmp_path, url, "resume", parent_id)
    assert code == 0, record
    assert record["result"] == [{"charged": 5}, {"done": True, "rows": 3}]
    assert sum(s.path == "/charge" for s in server.seen) == 1  # the finished child: not again
    assert sum(s.path == "/jobs/j-7" for s in server.seen) == polls_before + 1
    assert [c["runId"] for c in record["subWorkflows"]] == [c["runId"] for c in tree]

    code, shown, _ = lamrunner(tmp_path, url, "runs", "show", parent_id)
    assert [c["status"] for c in shown["children"]] == ["SUCCESS", "SUCCESS"]
    waited = shown["children"][1]["runId"]
    code, child_shown, _ = lamrunner(tmp_path, url, "runs", "show", waited)
    attempts = [p["attempt"] for p in child_shown["polls"]]
    assert attempts == list(range(1, polls_before + 2))  # the poll went on where it stopped


def test_a_child_gets_the_parents_config_or_its_own_under_the_set_values(
    tmp_path: Path, serve: Any
):
    """A child without `config:` reads the parent's; one with its own gets --set over it."""
    server = CaseServer({"POST /echo": [{"echo": True}]})
    url = serve(server)
    write(
        tmp_path,
        "parent.yaml",
        """
        name: parent
        config: {api: "${LAMINAR_API}", who: parent, tone: calm}
        workflows: {inherits: ./inherits.yaml, own: ./own.yaml}
        steps: [run.js]
        """,
    )
    write(
        tmp_path,
        "run.js",
        '(data) => ({ "lam.execute": [{ "lam.workflowId": "inherits" },'
        ' { "lam.workflowId": "own" }] })\n',
    )
    write(tmp_path, "inherits.yaml", "name: inherits\nsteps: [send.js]\n")
    write(
        tmp_path,
        "own.yaml",
        'name: own\nconfig: {api: "${LAMINAR_API}", who: child}\nsteps: [send.js]\n',
    )
    write(
        tmp_path,
        "send.js",
        '(data) => ({ "lam.httpRequest": { method: "POST", url: "{{config.api}}/echo",'
        ' body: { who: "{{config.who}}", tone: "{{config.tone}}" } } })\n',
    )
    code, record, err = lamrunner(
        tmp_path, url, "run", str(tmp_path / "parent.yaml"), "--set", "tone=loud"
    )
    assert code == 0, err
    bodies = [json.loads(s.body) for s in server.seen]
    assert bodies == [{"who": "parent", "tone": "loud"}, {"who": "child", "tone": "loud"}]
    assert record["gwo"]["step_1"]["executions"][0]["result"]["json"] == bodies[0]


def test_validate_loads_every_child_and_lists_the_map(tmp_path: Path):
    write(tmp_path, "parent.yaml", "name: p\nworkflows: {39: ./c.yaml}\nsteps: [ok.js]\n")
    write(tmp_path, "ok.js", "(data) => ({})\n")
    write(tmp_path, "c.yaml", "name: c\nsteps: [missing.js]\n")
    code, doc, _ = lamrunner(tmp_path, "http://127.0.0.1:9", "validate", "parent.yaml")
    assert code == 2 and not doc["valid"]
    message = doc["error"]["message"]
    assert message.startswith("parent.yaml: workflows.39: ") and "missing.js" in message
    write(tmp_path, "missing.js", "(data) => ({})\n")
    code, doc, _ = lamrunner(tmp_path, "http://127.0.0.1:9", "validate", "parent.yaml")
    assert code == 0 and doc["workflows"] == {"39": str(tmp_path / "c.yaml")}
