"""What a Python handler prints, writes to stderr or logs with `logging` ends up in the log.

Masked, formatted like every other line (JSON under --log-format json) and carrying the run's
context (run_id, workflow, step) — from the CLI and when a program embeds lamrunner, whose own
stdout must stay its own. Most tests run real subprocesses, since stdout, stderr and the
standard library's root logger are process-wide.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import structlog
from conftest import run_path

from lamrunner.logs import chain as logs

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-live-9f8e7d6c5b4a"
TRACEBACK = "Traceback (most recent call last)"


def env_for(tmp_path: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": str(ROOT),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LAMRUNNER_STORE": str(tmp_path / "runs.sqlite3"),
    }


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def flow(folder: Path, handler: str, name: str = "loud") -> Path:
    (folder / "loud.py").write_text(textwrap.dedent(handler).lstrip())
    doc = {
        "name": name,
        "config": {"apiKey": SECRET},
        "steps": [{"name": "talk", "handler": "loud.py"}],
    }
    path = folder / "wf.yaml"
    path.write_text(json.dumps(doc))
    return path


def cli_run(folder: Path, handler: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """`lamrunner run --log-format json` with the secret in the input: record, events, stderr."""
    flow(folder, handler)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lamrunner",
            "run",
            "wf.yaml",
            "--log-format",
            "json",
            "--input",
            json.dumps({"key": SECRET}),
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        env=env_for(folder),
    )
    assert TRACEBACK not in proc.stderr, proc.stderr
    assert SECRET not in proc.stderr, proc.stderr
    return json.loads(proc.stdout), json_lines(proc.stderr), proc.stderr


def assert_in_run(event: dict[str, Any], record: dict[str, Any]) -> None:
    assert event["run_id"] == record["runId"], event
    assert event["workflow"] == "loud" and event["step"] == "talk", event
    assert "timestamp" in event and "level" in event, event


STDLIB_HANDLER = """
    import logging
    import sys

    def transform(data):
        key = data["input"]["key"]
        logging.getLogger("mine").warning("key is %s", key)
        logging.getLogger("mine.sub").info("info from %s", "the handler")
        sys.stderr.write("stderr sees " + key + "\\n")
        try:
            raise ValueError("bad " + key)
        except ValueError:
            logging.getLogger("mine").exception("it failed")
        return {"ok": True}
"""


@pytest.mark.parametrize("kind", ["def", "async def"])
def test_stdlib_logging_and_stderr_go_through_the_chain(tmp_path: Path, kind: str) -> None:
    """Masked, JSON, with run_id/workflow/step — in the worker thread of a `def` handler too."""
    record, events, _ = cli_run(
        tmp_path, STDLIB_HANDLER.replace("def transform", f"{kind} transform")
    )
    assert record["status"] == "SUCCESS", record
    warning = next(e for e in events if e["event"] == "key is ***")
    assert warning["level"] == "warning" and warning["logger"] == "mine"
    assert_in_run(warning, record)
    info = next(e for e in events if e["event"] == "info from the handler")
    assert info["level"] == "info" and info["logger"] == "mine.sub"
    stderr = next(e for e in events if e["event"] == "handler.stderr")
    assert stderr["text"] == "stderr sees ***" and stderr["level"] == "warning"
    assert_in_run(stderr, record)
    failed = next(e for e in events if e["event"] == "it failed")
    assert failed["error"] == "ValueError: bad ***" and failed["level"] == "error"


def test_handler_print_carries_the_run_context_from_the_cli(tmp_path: Path) -> None:
    record, events, _ = cli_run(
        tmp_path,
        """
        def transform(data):
            print("printed", data["input"]["key"])
            print("no newline at the end", end="")
            return 1
    """,
    )
    prints = [e for e in events if e["event"] == "handler.print"]
    assert [e["text"] for e in prints] == ["printed ***", "no newline at the end"]
    for event in prints:
        assert_in_run(event, record)


EMBEDDER = """
    import asyncio, json, sys
    import lamrunner

    async def main():
        async def beside():  # the program's own output while the handler runs
            await asyncio.sleep(0.1)
            print("EMBEDDER-WHILE-HANDLER-RUNS")
        record, _ = await asyncio.gather(lamrunner.arun(sys.argv[1], {{"key": sys.argv[2]}}),
                                         beside())
        print("EMBEDDER-OWN-LINE", record["runId"])

    asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["def", "async def"])
def test_embedded_handler_prints_go_to_the_log_not_the_programs_stdout(
    tmp_path: Path, kind: str
) -> None:
    path = flow(
        tmp_path,
        f"""
        import time, asyncio

        print("IMPORT-PRINT")

        {kind} transform(data):
            print("HANDLER-PRINT", data["input"]["key"])
            {"await asyncio.sleep(0.4)" if kind == "async def" else "time.sleep(0.4)"}
            return 1
    """,
    )
    (tmp_path / "embed.py").write_text(textwrap.dedent(EMBEDDER.format()))
    proc = subprocess.run(
        [sys.executable, "embed.py", str(path), SECRET],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env=env_for(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "EMBEDDER-WHILE-HANDLER-RUNS", proc.stdout
    assert lines[1].startswith("EMBEDDER-OWN-LINE ") and len(lines) == 2, proc.stdout
    run_id = lines[1].split()[1]
    printed = [e for e in json_lines(proc.stderr) if e["event"] == "handler.print"]
    assert [e["text"] for e in printed] == ["IMPORT-PRINT", "HANDLER-PRINT ***"], proc.stderr
    assert printed[1]["run_id"] == run_id and printed[1]["workflow"] == "loud", printed
    assert SECRET not in proc.stderr


# -- in-process: concurrent runs, JavaScript console -----------------------------------------


@pytest.fixture
def json_log():
    stream = io.StringIO()
    logs.configure("json", 0, stream)
    yield stream
    logs.detach_stdlib()
    structlog.reset_defaults()
    logs._LIVE = None


async def test_concurrent_runs_keep_their_own_run_id(wf, json_log):
    """Two runs in one process at once: each handler line carries its own run's id."""
    wf.handler(
        "tagged.py",
        """
        import asyncio, logging, time

        def transform(data):
            for _ in range(3):
                print("print", data["input"]["tag"])
                logging.getLogger("mine").warning("log %s", data["input"]["tag"])
                time.sleep(0.02)
            return data["input"]["tag"]
    """,
    )
    path = wf.workflow(["tagged.py"])
    records = await asyncio.gather(*(run_path(path, {"tag": tag}) for tag in ("a", "b", "c")))
    run_of = {r["result"]: r["runId"] for r in records}
    events = json_lines(json_log.getvalue())
    said = [
        e
        for e in events
        if e["event"].startswith(("print ", "log ")) or e["event"] == "handler.print"
    ]
    assert len(said) == 18, said
    for event in said:
        tag = (event.get("text") or event["event"]).split()[-1]
        assert event["run_id"] == run_of[tag], event


async def test_javascript_console_lines_carry_the_run_context(wf, json_log):
    wf.handler("talk.js", "(data) => { console.log('hello from js'); return 1; }\n")
    record = await run_path(wf.workflow([{"name": "talk", "handler": "talk.js"}], name="loud"))
    event = next(e for e in json_lines(json_log.getvalue()) if e["event"] == "handler.console")
    assert event["text"] == "hello from js"
    assert_in_run(event, record)


def test_a_handler_cannot_reach_stdout_through_its_bytes_buffer(tmp_path: Path) -> None:
    record, _, _ = cli_run(
        tmp_path,
        """
        import sys

        def transform(data):
            sys.stdout.buffer.write(b"RAW BYTES")
            return 1
    """,
    )
    assert record["status"] == "FAILED"  # and stdout stayed one JSON document (parsed above)
    assert "write text, not bytes" in record["error"]["message"]
