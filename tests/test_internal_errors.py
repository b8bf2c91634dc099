"""The last line of defence: a bug inside lamrunner still ends with one JSON record, exit 1, an
InternalError that says how to report it, the run FAILED in the store, and no traceback unless
-v asks for the log.

Each test injects a fault into a real `lamrunner` subprocess: a `-c` wrapper replaces one
internal function with one that raises, then calls the CLI's main as the console script does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from lamrunner.runner.state import RunState
from lamrunner.store.sqlite import RunStore

TRACEBACK = "Traceback (most recent call last)"
SECRET = "hunter2-secret-value"


def lamrunner_with_fault(target: str, *args: str, env: dict | None = None):
    """Run `lamrunner ARGS` with `module:attr.path` replaced by something that raises."""
    module, attr = target.split(":")
    owner, _, name = attr.rpartition(".")
    wrapper = (
        "import importlib, sys\n"
        f"mod = importlib.import_module({module!r})\n"
        f"owner = eval({owner!r}, vars(mod)) if {owner!r} else mod\n"
        "def boom(*a, **k):\n"
        f"    raise RuntimeError('injected fault near ' + {SECRET!r})\n"
        f"setattr(owner, {name!r}, boom)\n"
        "from lamrunner.cli.main import main\n"
        "sys.exit(main())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", wrapper, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def store_status(path: str, run_id: str) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]


def assert_internal_error(proc: subprocess.CompletedProcess, command: str) -> dict:
    assert proc.returncode == 1, proc.stderr
    record = json.loads(proc.stdout)  # exactly one JSON document
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "InternalError"
    message = record["error"]["message"]
    assert "bug in lamrunner" in message and "issue tracker" in message
    assert f"lamrunner {command} ... -v" in message
    assert TRACEBACK not in proc.stderr and "injected fault" not in proc.stderr
    assert SECRET not in proc.stdout
    assert "internal.error" in proc.stderr  # one log line says what happened
    return record


@pytest.fixture
def flow(wf):
    steps = [{"name": "only", "handler": wf.py_step("ok", "{'ok': 1}")}]
    return str(wf.workflow(steps, config={"apiKey": SECRET}))  # a secret the log must mask


def test_a_bug_during_a_run_fails_the_run_with_an_internal_error(flow, tmp_path):
    store = str(tmp_path / "runs.sqlite3")
    proc = lamrunner_with_fault("lamrunner.runner.engine:_run_step", "run", flow, "--store", store)
    record = assert_internal_error(proc, "run")
    assert record["runId"] and record["error"]["step"] == "only"
    assert store_status(store, record["runId"]) == "FAILED"  # not RUNNING, so not INTERRUPTED


def test_the_traceback_is_in_the_verbose_log_only_and_masked(flow):
    proc = lamrunner_with_fault("lamrunner.runner.engine:_run_step", "run", flow, "-v")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["type"] == "InternalError"
    assert TRACEBACK in proc.stderr and "injected fault near ***" in proc.stderr
    assert SECRET not in proc.stderr


def test_a_bug_before_the_run_starts_still_gives_one_record(flow):
    proc = lamrunner_with_fault("lamrunner.cli.main:parse_input", "run", flow)
    record = assert_internal_error(proc, "run")
    assert record["runId"] is None


def test_a_bug_in_validate(flow):
    assert_internal_error(
        lamrunner_with_fault("lamrunner.definition.workflow:load_workflow", "validate", flow),
        "validate",
    )


def test_a_bug_during_resume_fails_the_run(flow, tmp_path):
    store_path = str(tmp_path / "runs.sqlite3")
    store = RunStore(store_path)
    state = RunState.start("test-flow", {}, run_id="r-crashed")
    store.begin(state, {"workflow": flow, "configFiles": [], "sets": []})
    store.close()
    with sqlite3.connect(store_path) as db:  # its process is gone: the run is resumable
        db.execute("UPDATE runs SET pid = 999999999 WHERE run_id = 'r-crashed'")

    proc = lamrunner_with_fault(
        "lamrunner.runner.engine:_run_step", "resume", "r-crashed", "--store", store_path
    )

    record = assert_internal_error(proc, "resume")
    assert record["runId"] == "r-crashed"
    assert store_status(store_path, "r-crashed") == "FAILED"
