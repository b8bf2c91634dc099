"""A bare number of seconds that reads like milliseconds is legal, but warned about.

`initialDelay: 2000` is 33 minutes, not 2 seconds: `run` logs a warning naming the step and the
field (once per field per step), and `validate` lists the workflow file's own in `warnings`.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import Reply, WorkflowDir
from test_templated_fields import lamrunner

from lamrunner.definition.directives import parse_directive
from lamrunner.units import noting_durations, parse_duration

GET = {"method": "GET", "url": "http://api.test/x"}
DELAY_NOTE = (
    "step_1 lam.httpRequest.loopUntil.initialDelay: 2000 seconds (33m20s); "
    "write '2000ms' if you meant milliseconds"
)


@pytest.mark.parametrize(
    ("value", "warned"),
    [
        (2000, True),
        (1000, True),
        ("2000", True),
        (1500.5, True),
        (999, False),
        (30, False),
        ("5000ms", False),
        ("5s", False),
        ("2h", False),
        ("1000s", False),
        (0, False),
    ],
)
def test_only_a_bare_number_of_1000_seconds_or_more_is_suspicious(value, warned):
    with noting_durations() as notes:
        parse_duration(value, "retry.initialDelay")
    assert bool(notes) is warned, notes


def test_a_batch_of_alike_requests_warns_once_per_field():
    loop = {"condition": "true", "initialDelay": 2000, "maxDelay": 3000}
    directive = parse_directive({"lam.httpRequests": [dict(GET, loopUntil=loop)] * 3})
    assert directive.warnings == (
        "lam.httpRequests[0].loopUntil.initialDelay: 2000 seconds (33m20s); "
        "write '2000ms' if you meant milliseconds",
        "lam.httpRequests[0].loopUntil.maxDelay: 3000 seconds (50m); "
        "write '3000ms' if you meant milliseconds",
    )


def folder(tmp_path, name: str) -> WorkflowDir:
    (tmp_path / name).mkdir()
    return WorkflowDir(tmp_path / name)


async def test_run_warns_on_stderr_naming_step_and_field(api, tmp_path):
    api.script("GET", "/job", Reply(json={"done": True}))
    loud_dir, quiet_dir = folder(tmp_path, "loud"), folder(tmp_path, "quiet")
    loud = loud_dir.request_step(
        "loud",
        {
            "method": "GET",
            "url": f"{api.url}/job",
            "timeout": 5000,
            "loopUntil": {"condition": "ctx.response.done", "initialDelay": 2000},
        },
    )
    quiet = quiet_dir.request_step(
        "quiet",
        {
            "method": "GET",
            "url": f"{api.url}/job",
            "timeout": 30,
            "loopUntil": {
                "condition": "ctx.response.done",
                "initialDelay": "5000ms",
                "maxDelay": "5s",
            },
        },
    )
    (code, record, stderr), (quiet_code, _, quiet_stderr) = await asyncio.gather(
        lamrunner("run", loud_dir.workflow([loud]), "--no-store", cwd=tmp_path),
        lamrunner("run", quiet_dir.workflow([quiet]), "--no-store", cwd=tmp_path),
    )
    assert code == 0, record  # a warning, not a failure: the poll ran
    assert stderr.count(DELAY_NOTE) == 1, stderr
    assert (
        "step_1 lam.httpRequest.timeout: 5000 seconds (1h23m); write '5000ms' if you meant "
        "milliseconds"
    ) in stderr
    assert quiet_code == 0
    assert "duration.suspicious" not in quiet_stderr and "seconds (" not in quiet_stderr


async def test_validate_and_run_report_the_workflow_files_own_durations(tmp_path):
    loud_dir, ok_dir = folder(tmp_path, "loud"), folder(tmp_path, "ok")
    loud = loud_dir.workflow(
        [loud_dir.py_step("plain", "1")], limits={"handlerTimeout": 5000, "conditionTimeout": 30}
    )
    ok = ok_dir.workflow(
        [ok_dir.py_step("plain", "1")],
        limits={"handlerTimeout": "5000ms", "conditionTimeout": "5s"},
    )
    (
        (code, doc, stderr),
        (ok_code, ok_doc, ok_stderr),
        (run_code, _, run_stderr),
    ) = await asyncio.gather(
        lamrunner("validate", loud, cwd=tmp_path),
        lamrunner("validate", ok, cwd=tmp_path),
        lamrunner("run", loud, "--no-store", cwd=tmp_path),
    )
    note = (
        f"{loud}: limits.handlerTimeout: 5000 seconds (1h23m); "
        "write '5000ms' if you meant milliseconds"
    )
    assert (code, doc["valid"], doc["warnings"]) == (0, True, [note]), doc
    assert note in stderr
    assert (ok_code, ok_doc["warnings"]) == (0, []), ok_doc
    assert "duration.suspicious" not in ok_stderr
    assert run_code == 0 and run_stderr.count(note) == 1, run_stderr
