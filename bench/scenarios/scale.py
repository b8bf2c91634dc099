"""Scenario 2, scale: LOOPS polling loops in one process, started uniformly over STAGGER
seconds, each polling every INTERVAL seconds, ATTEMPTS times (10,000 × every 10 s × 7 attempts:
about 1,000 requests/s for 70 s). Measures how late timers fire (every sleep's actual minus
intended wake time), peak RSS, runs that did not succeed and the request rate. Each contender
runs in its own process:

    python -m bench.scenarios.scale CONTENDER URL LOOPS INTERVAL ATTEMPTS STAGGER

lamrunner: one Engine (one AiohttpTransport, one JsEngine) running LOOPS `engine.run()`s of a
one-step workflow whose Python handler returns one `lam.httpRequest` with `loopUntil`; its clock
records the lateness of every sleep. bare: one aiohttp session, `asyncio.sleep` loops, a Python
condition.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import Row
from ..common import PYTHON, Bench, log, percentile, run_child

NAME = "scale"

HANDLER = """def transform(data):
    cfg = data["input"]
    return {"lam.httpRequest": {"method": "GET", "url": cfg["url"], "loopUntil": {
        "condition": f"(ctx) => ctx.attempt >= {cfg['attempts']}",
        "maxAttempts": cfg["attempts"], "initialDelay": f"{cfg['interval']}s",
        "strategy": "fixed"}}}
"""
WORKFLOW = "name: bench-scale\nsteps:\n  - name: poll\n    handler: poll.py\n"


async def lamrunner_(
    url: str, loops: int, interval: float, attempts: int, stagger: float
) -> dict[str, Any]:
    from lamrunner.cli import gcpolicy
    from lamrunner.definition.config import build_config
    from lamrunner.definition.workflow import load_workflow
    from lamrunner.http.transport import AiohttpTransport
    from lamrunner.js.runtime import JsEngine
    from lamrunner.runner.clock import SystemClock
    from lamrunner.runner.engine import Engine

    class LatenessClock(SystemClock):
        def __init__(self) -> None:
            self.lateness: list[float] = []

        async def sleep(self, seconds: float) -> None:
            loop = asyncio.get_running_loop()
            due = loop.time() + seconds
            await super().sleep(seconds)
            if seconds > 0:
                self.lateness.append(loop.time() - due)

    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    (folder / "poll.py").write_text(HANDLER)
    (folder / "workflow.yaml").write_text(WORKFLOW)
    workflow = load_workflow(folder / "workflow.yaml")
    config = build_config(workflow.config, (), (), os.environ)
    clock, js = LatenessClock(), JsEngine()
    payload = {"url": url, "attempts": attempts, "interval": interval}
    loop = asyncio.get_running_loop()
    try:
        async with AiohttpTransport() as transport, gcpolicy.hold():
            engine = Engine(workflow, config, transport=transport, js=js, clock=clock)

            async def one(i: int) -> dict[str, Any]:
                await asyncio.sleep(i * stagger / loops)
                return await engine.run(payload)

            started = loop.time()
            records = await asyncio.gather(*(one(i) for i in range(loops)))
            seconds = loop.time() - started
    finally:
        js.close()
    done = [r for r in records if r["status"] == "SUCCESS"]
    return {
        "lateness": clock.lateness,
        "failed": loops - len(done),
        "seconds": seconds,
        "requests": sum(r["gwo"]["step_1"]["http"]["attempts"] for r in done),
    }


async def bare(
    url: str, loops: int, interval: float, attempts: int, stagger: float
) -> dict[str, Any]:
    import aiohttp

    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    count = 0

    async def one(i: int, session: aiohttp.ClientSession) -> bool:
        nonlocal count
        await asyncio.sleep(i * stagger / loops)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                due = loop.time() + interval
                await asyncio.sleep(interval)
                lateness.append(loop.time() - due)
            async with session.get(url) as resp:
                await resp.json()
            count += 1
            if attempt >= attempts:
                return True
        return False

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        started = loop.time()
        outcomes = await asyncio.gather(
            *(one(i, session) for i in range(loops)), return_exceptions=True
        )
        seconds = loop.time() - started
    failed = sum(outcome is not True for outcome in outcomes)
    return {"lateness": lateness, "failed": failed, "seconds": seconds, "requests": count}


def _watch_gc() -> list[float]:
    """Pauses of the cyclic GC's full (generation 2) collections, in seconds."""
    pauses: list[float] = []
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif info["generation"] == 2:
            pauses.append(time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    return pauses


def child_main() -> None:
    name, url, loops, interval, attempts, stagger = sys.argv[1:]
    contender = {"lamrunner": lamrunner_, "bare": bare}[name]
    pauses = _watch_gc()
    result = asyncio.run(contender(url, int(loops), float(interval), int(attempts), float(stagger)))
    late = sorted(result.pop("lateness"))
    result["lateness_ms"] = {
        "p50": percentile(late, 0.5) * 1000,
        "p99": percentile(late, 0.99) * 1000,
        "max": late[-1] * 1000 if late else None,
        "n": len(late),
    }
    result["gc_full_ms"] = {
        "count": len(pauses),
        "max": max(pauses, default=0) * 1000,
        "total": sum(pauses) * 1000,
    }
    print(json.dumps(result))


def run(bench: Bench) -> list[Row]:
    loops, interval, attempts, stagger = (200, 1, 3, 1) if bench.smoke else (10_000, 10, 7, 10)
    timeout = stagger + interval * (attempts - 1) + 120
    results: dict[str, dict[str, Any]] = {}
    for name in ("bare", "lamrunner"):
        log(
            f"{NAME}: {name}, {loops} loops × {attempts} attempts every {interval} s "
            f"(about {stagger + interval * (attempts - 1)} s)"
        )
        before = bench.server.stats()
        cmd = [
            PYTHON,
            "-m",
            "bench.scenarios.scale",
            name,
            bench.server.url + "/poll",
            str(loops),
            str(interval),
            str(attempts),
            str(stagger),
        ]
        child = run_child(cmd, timeout=timeout, stderr=bench.tmp / f"scale-{name}.stderr")
        after = bench.server.stats()
        result = child.result()
        result.update(rss_mb=child.rss_mb, cpu=child.cpu, served=after[0] - before[0])
        result["rate"] = result["served"] / result["seconds"]
        if result["served"] != result["requests"]:
            raise RuntimeError(
                f"{name}: the server saw {result['served']} requests, "
                f"the client counted {result['requests']}"
            )
        results[name] = result
        log(
            f"{NAME}: {name}: p99 {result['lateness_ms']['p99']:.1f} ms, "
            f"{child.rss_mb:.0f} MB, {result['failed']} failed"
        )
    bench.raw[NAME] = {
        "loops": loops,
        "interval": interval,
        "attempts": attempts,
        "stagger": stagger,
        "results": results,
    }
    ours, base = results["lamrunner"], results["bare"]
    who = f"lamrunner Engine ({loops})"

    def row(figure: str, get: Any, goal: str = "") -> Row:
        return Row(NAME, who, figure, get(ours), get(base), goal)

    return [
        row("peak RSS (MB)", lambda r: r["rss_mb"], "<= 300"),
        row("timer lateness p50 (ms)", lambda r: r["lateness_ms"]["p50"]),
        row("timer lateness p99 (ms)", lambda r: r["lateness_ms"]["p99"], "<= 50"),
        row("timer lateness max (ms)", lambda r: r["lateness_ms"]["max"]),
        row("longest full-GC pause (ms)", lambda r: r["gc_full_ms"]["max"]),
        row("failed runs", lambda r: r["failed"], "<= 0"),
        row("requests/s", lambda r: r["rate"]),
        row("CPU (% of one core)", lambda r: 100 * r["cpu"] / r["seconds"]),
    ]


if __name__ == "__main__":
    child_main()
