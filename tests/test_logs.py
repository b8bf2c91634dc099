"""Logs as a user sees them: JSON lines off a terminal, a live poll line on one, secrets masked."""

from __future__ import annotations

import io
import json
import re

import pytest
import structlog
from conftest import Reply, run_path

from lamrunner.cli import live
from lamrunner.logs import chain as logs
from lamrunner.logs.masking import Secrets, masked_with
from lamrunner.runner.clock import FakeClock


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging():
    yield
    structlog.reset_defaults()
    logs._LIVE = None


def poll_flow(api, wf, **extra):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "x"}),
        Reply(json={"state": "x"}),
        Reply(json={"state": "done"}),
    )
    delay = extra.pop("delay", "2s")
    request = {
        "method": "GET",
        "url": api.url + "/job",
        **extra,
        "loopUntil": {
            "condition": "ctx.response.state === 'done'",
            "initialDelay": delay,
            "maxAttempts": 3,
        },
    }
    return wf.workflow(
        [{"name": "wait", "handler": wf.request_step("p", request)}],
        config={"apiKey": "key-abcdef-123"},
    )


async def test_terminal_shows_a_live_poll_line(api, wf, restore_logging):
    screen = FakeTerminal()
    logs.configure("auto", 0, screen)
    line = live.live_polls()  # the CLI's observer: logs go to a terminal, so there is one
    assert line is not None
    record = await run_path(poll_flow(api, wf), clock=FakeClock(), observers=[line])
    assert record["status"] == "SUCCESS"
    text = re.sub(r"\x1b\[[0-9;]*m", "", screen.getvalue())  # colours off, cursor codes kept
    assert "⟳ wait: attempt 1 of 3 · last status 200 · next poll in" in text
    assert "attempt 2 of 3" in text
    assert "poll.attempt" in text and "attempt=2/3" in text
    assert text.endswith("\n") or text.endswith("\x1b[K")  # the live line is cleared at the end


async def test_json_lines_off_a_terminal(api, wf, restore_logging):
    stream = io.StringIO()
    logs.configure("auto", 0, stream)
    await run_path(poll_flow(api, wf), clock=FakeClock())
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    attempts = [e for e in events if e["event"] == "poll.attempt"]
    assert [(e["attempt"], e["of"], e["status"]) for e in attempts] == [(1, 3, 200), (2, 3, 200)]
    assert attempts[0]["next_in"] == "2s"
    assert all("timestamp" in e and "level" in e for e in events)
    assert "\x1b" not in stream.getvalue()


async def test_a_fast_poll_logs_its_progress_at_most_every_five_seconds(api, wf, restore_logging):
    """Polls under a second apart log their first attempt at info, the rest at debug (-v)."""
    stream = io.StringIO()
    logs.configure("json", 0, stream)
    await run_path(poll_flow(api, wf, delay="50ms"))
    attempts = [
        json.loads(line) for line in stream.getvalue().splitlines() if '"poll.attempt"' in line
    ]
    assert [e["attempt"] for e in attempts] == [1]


async def test_secrets_are_masked_in_every_log_line(api, wf, restore_logging):
    stream = io.StringIO()
    logs.configure("json", 1, stream)  # debug: every request with its URL
    api.script("GET", "/job", Reply(json={"echo": "key-abcdef-123", "state": "done"}))
    request = {
        "method": "GET",
        "url": api.url + "/job?key=<<config.apiKey>>",
        "headers": {"X-Api-Key": "<<config.apiKey>>"},
    }
    wf.handler(
        "echo.py",
        "def transform(data):\n    print('got', data['step_1']['response'])\n    return 1\n",
    )
    path = wf.workflow(
        [wf.request_step("p", request), "echo.py"], config={"apiKey": "key-abcdef-123"}
    )
    with logs.stdout_to_log():
        await run_path(path)
    text = stream.getvalue()
    assert "handler.print" in text and "http.response" in text
    assert "key-abcdef-123" not in text
    assert "***" in text


async def test_quiet_keeps_only_warnings(api, wf, restore_logging):
    stream = io.StringIO()
    logs.configure("json", -1, stream)
    await run_path(poll_flow(api, wf))
    assert stream.getvalue() == ""


def test_writes_outside_a_handler_call_pass_through_untouched(restore_logging):
    """The stdout/stderr proxies are transparent to the program: only handler output is logged."""
    log, screen = io.StringIO(), io.StringIO()
    logs.configure("json", 0, log, capture_logging=False)
    proxy = logs.StreamProxy(screen, "handler.print", 20)
    proxy.write("the program's own line\n")
    with logs.handler_output():
        proxy.write("from the handler, in two ")
        proxy.write("writes\nand a tail")
    assert screen.getvalue() == "the program's own line\n"
    assert [json.loads(line)["text"] for line in log.getvalue().splitlines()] == [
        "from the handler, in two writes",
        "and a tail",
    ]


def test_configure_again_replaces_its_stdlib_handler(restore_logging):
    """The CLI (or a test) may configure twice: stdlib records are logged once, to the latest."""
    import logging

    secrets = Secrets()
    secrets.add("key-abcdef-123")
    first, second = io.StringIO(), io.StringIO()
    logs.configure("json", 0, first)
    logs.configure("json", 0, second)
    try:
        with masked_with(secrets):  # as inside a run: its lines are masked with its secrets
            logging.getLogger("elsewhere").warning("token is %s", "key-abcdef-123")
    finally:
        logs.detach_stdlib()
    assert first.getvalue() == ""
    [event] = [json.loads(line) for line in second.getvalue().splitlines()]
    assert event["event"] == "token is ***" and event["logger"] == "elsewhere"
