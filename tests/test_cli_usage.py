"""Invoking `lamrunner` wrongly: usage for a bare command, "did you mean" for typos, -q with -v
refused, and --output / --store both creating a missing folder. Every answer keeps the CLI's
rule: one JSON record on stdout, a one-line reason, exit 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TRACEBACK = "Traceback (most recent call last)"


def lamrunner(*args: str, cwd: str | None = None) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "lamrunner", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=dict(os.environ),
    )
    assert TRACEBACK not in proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr  # exactly one JSON document


def refused(*args: str) -> tuple[str, str]:
    """Run an invocation that must be refused; returns (error message, stderr)."""
    code, record, err = lamrunner(*args)
    assert code == 2, err
    assert record["runId"] is None and record["status"] == "FAILED"
    assert record["error"]["type"] == "DefinitionError"
    return record["error"]["message"], err


@pytest.fixture
def flow(wf):
    return str(wf.workflow([wf.py_step("ok", "{'ok': True}")]))


def test_bare_lamrunner_prints_usage_to_stderr():
    message, err = refused()
    assert "no command given" in message
    assert err.startswith("usage: lamrunner")
    assert all(command in err for command in ("run", "validate", "resume", "runs"))


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (["run", "FLOW", "--inptu", "{}"], "'--input'"),
        (["run", "FLOW", "--inptu={}"], "'--input'"),
        (["run", "FLOW", "--no-stroe"], "'--no-store'"),
        (["validate", "FLOW", "--verbsoe"], "'--verbose'"),
        (["runs", "--jsno"], "'--json'"),
        (["rnu", "FLOW"], "'run'"),
        (["run", "FLOW", "--log-format", "jsno"], "'json'"),
    ],
)
def test_mistyped_options_and_commands_get_a_suggestion(flow, args, suggestion):
    message, _ = refused(*[flow if a == "FLOW" else a for a in args])
    assert f"(did you mean {suggestion}?)" in message


@pytest.mark.parametrize("command", ["run", "validate"])
def test_quiet_and_verbose_together_are_refused(flow, command):
    message, _ = refused(command, flow, "-q", "-v")
    assert "-v/--verbose: not allowed with argument -q/--quiet" in message


def test_output_and_store_both_create_a_missing_folder(flow, tmp_path):
    output = tmp_path / "new" / "records" / "run.json"
    store = tmp_path / "other" / "state" / "runs.sqlite3"

    code, record, err = lamrunner("run", flow, "--output", str(output), "--store", str(store))

    assert code == 0, err
    assert json.loads(output.read_text()) == record
    code, listed, _ = lamrunner("runs", "--json", "--store", str(store))
    assert [r["runId"] for r in listed] == [record["runId"]]


def test_output_and_store_both_refuse_a_folder_that_cannot_be_made(flow, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    message, _ = refused("run", flow, "--output", str(blocker / "run.json"))
    assert message.startswith(f"--output {blocker / 'run.json'}: cannot create its folder")
    message, _ = refused("run", flow, "--store", str(blocker / "runs.sqlite3"))
    assert message.startswith(f"run store {blocker / 'runs.sqlite3'}: cannot open it")


def test_run_loads_the_workflow_once(flow, monkeypatch):
    """The load that refuses a bad definition up front is the one the run uses."""
    import io

    from lamrunner.cli import launch, main

    loads = []

    def counted(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    real = launch.load_workflow
    monkeypatch.setattr(launch, "load_workflow", counted)
    stdout = io.StringIO()
    args = main.build_parser().parse_args(["run", flow, "--no-store"])
    assert main._run(args, stdout) == main.EXIT_OK
    assert json.loads(stdout.getvalue())["status"] == "SUCCESS"
    assert len(loads) == 1
