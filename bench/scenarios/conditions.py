"""Scenario 3, conditions: the cost of one `loopUntil` condition evaluation, as the engine makes
it (`JsEngine().open_condition(...)`, then `await condition.evaluate(ctx_json)`), for job
payloads of about 200 B, 100 KB, 1 MB and 10 MB (a list of objects), against Python's
`json.loads` of the same body: any condition has to parse the body at least once.

Each figure is the median of many timed evaluations, after one untimed warm-up, with Python's
cyclic GC off while timing (as `timeit` does), so the baseline is json.loads' parse cost alone
and does not pay for collections that earlier sizes' garbage triggers. The limits are
a workflow's defaults (`limits.conditionTimeout` / `conditionMemory`); a body those limits
cannot take is measured again with more memory, and a note says so.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import Any

from .. import Row
from ..common import Bench, log, median

NAME = "conditions"
CONDITION = "(ctx) => ctx.response.status === 'completed'"
SIZES = [
    ("200 B", 200, 3000),
    ("100 KB", 100_000, 300),
    ("1 MB", 1_000_000, 40),
    ("10 MB", 10_000_000, 7),
]
SMOKE_SIZES = [("200 B", 200, 100), ("100 KB", 100_000, 10), ("1 MB", 1_000_000, 3)]
BIG_MEMORY = 1_000_000_000


def job_body(size: int) -> str:
    """A finished job's JSON of `size` bytes: a status, a list of result objects, a padding note."""
    job: dict[str, Any] = {"id": "job-1", "status": "completed", "progress": 100, "results": []}
    length = len(json.dumps(job)) + len(', "note": ""')
    for i in range(size):
        item = {
            "id": i,
            "name": f"item-{i:06d}",
            "score": round(i / 7, 3),
            "valid": True,
            "tags": ["a", "b"],
        }
        extra = len(json.dumps(item)) + (2 if i else 0)
        if length + extra > size:
            break
        job["results"].append(item)
        length += extra
    job["note"] = "x" * max(0, size - length)
    return json.dumps(job)


def ctx_json(body: str) -> str:
    return '{"response":' + body + ',"status":200,"headers":{},"attempt":1,"elapsedMs":0}'


async def _timed(condition: Any, ctx: str, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        await condition.evaluate(ctx)
        times.append(time.perf_counter() - started)
    return times


def _polled(body: str, reps: int) -> list[float]:
    """What a poll attempt does for this condition: parse the body once (Response.value) and,
    the condition being in the fast-path subset, evaluate it in Python (lamrunner.runner.calls)."""
    from lamrunner.http.transport import Response
    from lamrunner.js.simplecond import compile_condition

    fast = compile_condition(CONDITION)
    assert fast is not None
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        response = Response(200, {}, body, True, 0.0)
        fast(
            {"response": response.value, "status": 200, "headers": {}, "attempt": 1, "elapsedMs": 0}
        )
        times.append(time.perf_counter() - started)
    return times


def _loads(body: str, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        json.loads(body)
        times.append(time.perf_counter() - started)
    return times


async def _measure(smoke: bool) -> tuple[list[Row], dict[str, Any]]:
    from lamrunner.definition.workflow import Limits
    from lamrunner.errors import ScriptError
    from lamrunner.js.runtime import JsEngine, JsLimits

    defaults = JsLimits(Limits().condition_timeout, Limits().condition_memory)
    js = JsEngine()
    rows, raw = [], {}
    try:
        condition = await js.open_condition(CONDITION, defaults)
        for label, size, reps in SMOKE_SIZES if smoke else SIZES:
            body = job_body(size)
            ctx, used, note = ctx_json(body), condition, ""
            try:
                held = await condition.evaluate(ctx)  # warm-up, and the check
            except ScriptError as exc:
                note = (
                    f"{label}: with the default conditionMemory ({defaults.memory:,} B) the "
                    f"evaluation fails ({exc.message}); measured with {BIG_MEMORY:,} B"
                )
                used = await js.open_condition(CONDITION, JsLimits(defaults.timeout, BIG_MEMORY))
                held = await used.evaluate(ctx)
            if held is not True:
                raise RuntimeError(f"the condition did not hold for the {label} body")
            gc.collect()
            gc.disable()
            try:
                ours = median(await _timed(used, ctx, reps)) * 1e6
                polled = median(_polled(body, reps)) * 1e6
                base = median(_loads(body, reps)) * 1e6
            finally:
                gc.enable()
            raw[label] = {
                "bytes": len(body),
                "reps": reps,
                "us": ours,
                "polled_us": polled,
                "json_loads_us": base,
                "note": note,
            }
            log(
                f"{NAME}: {label} ({len(body):,} B): as polled {polled:.0f} µs, QuickJS "
                f"{ours:.0f} µs, json.loads {base:.0f} µs"
            )
            rows.append(
                Row(
                    NAME,
                    "condition as polled",
                    f"µs per evaluation, {label}",
                    polled,
                    base,
                    "<= 1.50x" if label == "1 MB" else "",
                )
            )
            rows.append(
                Row(
                    NAME,
                    "condition in QuickJS",
                    f"µs per evaluation, {label}",
                    ours,
                    base,
                    "",
                    note,
                )
            )
    finally:
        js.close()
    return rows, raw


def run(bench: Bench) -> list[Row]:
    rows, raw = asyncio.run(_measure(bench.smoke))
    bench.raw[NAME] = {"condition": CONDITION, "baseline": "json.loads", "sizes": raw}
    return rows
