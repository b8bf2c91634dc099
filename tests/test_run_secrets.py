"""Secrets belong to a run: 10,000 runs in one process each mask their own, never another's,
and the cost of registering and masking them does not grow with the runs the process has seen.

One Engine runs them all, 100 at a time, on a transport double (no HTTP) and a clock that
never waits. Each run sends its own `X-Api-Key: key-<i>-<random>`; the double answers 500 with
a body that quotes that key and the previous run's, so the run's error (in its record and in
its `run.done` log line) shows the other run's key in clear — this run never learned it — and
its own key masked.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets as random_tokens
import time
from typing import Any

import pytest
import structlog

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.http.transport import Response
from lamrunner.js.runtime import JsEngine
from lamrunner.logs import chain as logs
from lamrunner.logs import masking
from lamrunner.logs.masking import MASK, Secrets
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver

RUNS = 10_000
AT_ONCE = 100
WINDOW = 1_000  # the first and the last WINDOW runs are compared


class EchoingTransport:
    """Answers every request 500, quoting the key it was sent and the one sent before it."""

    def __init__(self) -> None:
        self.previous = "key-none-0000"

    async def send(self, request: Any, timeout: float) -> Response:
        key = dict(request.headers)["X-Api-Key"]
        body = json.dumps({"error": f"bad key {key}", "message": f"last key {self.previous}"})
        self.previous = key
        return Response(500, {"content-type": "application/json"}, body, True, 0.0)


class NoWaitClock:
    def now(self) -> float:
        return 1_700_000_000.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class RunSecrets(RunObserver):
    """Keeps each run's own registry (the one its log lines are masked with)."""

    def __init__(self) -> None:
        self.by_run: dict[str, Secrets] = {}

    def run_started(self, state: Any) -> None:
        registry = masking.current()
        assert registry is not None
        self.by_run[state.run_id] = registry


class MaskingTimer:
    """Time spent registering and masking secrets, summed over the outermost calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.total = 0.0
        self._depth = 0
        for name in ("add", "add_config", "add_headers", "mask", "mask_data"):
            monkeypatch.setattr(Secrets, name, self._timed(getattr(Secrets, name)))

    def _timed(self, method: Any) -> Any:
        def timed(registry: Secrets, *args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            started = time.perf_counter()
            try:
                return method(registry, *args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.total += time.perf_counter() - started

        return timed


@pytest.fixture
def json_log():
    stream = io.StringIO()
    logs.configure("json", 0, stream, capture_logging=False)
    yield stream
    structlog.reset_defaults()


HANDLER = """
def transform(data):
    return {"lam.httpRequest": {
        "method": "GET", "url": "http://echo.invalid/check",
        "headers": {"X-Api-Key": data["input"]["key"]},
    }}
"""


async def test_ten_thousand_runs_each_mask_only_their_own_secret(wf, json_log, monkeypatch):
    wf.handler("send.py", HANDLER)
    workflow = load_workflow(wf.workflow(["send.py"]), env={})
    kept, js = RunSecrets(), JsEngine(workers=1)
    engine = Engine(
        workflow,
        build_config(workflow.config, (), (), {}),
        transport=EchoingTransport(),
        js=js,
        clock=NoWaitClock(),
        observers=[kept],
    )
    keys = [f"key-{i}-{random_tokens.token_hex(6)}" for i in range(RUNS)]
    timer, spent = MaskingTimer(monkeypatch), []
    try:
        for start in range(0, RUNS, AT_ONCE):
            before = timer.total
            runs = range(start, start + AT_ONCE)
            batch = await asyncio.gather(*(engine.run({"key": keys[i]}, f"run-{i}") for i in runs))
            spent.append(timer.total - before)
            for offset, record in enumerate(batch):
                check_record(record, start + offset, keys)
    finally:
        js.close()
    check_log(json_log.getvalue(), keys)
    check_registries(kept, keys)
    per_batch = WINDOW // AT_ONCE
    first, last = sum(spent[:per_batch]), sum(spent[-per_batch:])
    assert last / first < 3, f"masking the last {WINDOW} runs took {last:.3f}s, first {first:.3f}s"


def check_record(record: dict[str, Any], i: int, keys: list[str]) -> None:
    """The error masks this run's key; the key this run never sent stays as it was."""
    assert record["status"] == "FAILED" and record["error"]["type"] == "HttpStatusError"
    message = record["error"]["message"]
    assert keys[i] not in json.dumps(record["error"]) and f"bad key {MASK}" in message
    if i > 0:  # 100 runs at once: the previous send was some other run's, never this one's
        assert "last key key-" in message


def check_log(text: str, keys: list[str]) -> None:
    """Each run's run.done line (at error level, with its error) masks that run's key only."""
    done = [json.loads(line) for line in text.splitlines() if '"run.done"' in line]
    assert len(done) == RUNS
    for event in done:
        i = int(event["run_id"].removeprefix("run-"))
        assert keys[i] not in event["error"] and f"bad key {MASK}" in event["error"]
    assert sum("last key key-" in event["error"] for event in done) >= RUNS - 1


def check_registries(kept: RunSecrets, keys: list[str]) -> None:
    """Each run's registry holds its own key (and that key's encoded forms), nothing else."""
    assert len(kept.by_run) == RUNS
    for run_id, registry in kept.by_run.items():
        i = int(run_id.removeprefix("run-"))
        assert keys[i] in registry and len(registry) <= 4, sorted(registry._values)
        assert i == 0 or keys[i - 1] not in registry
