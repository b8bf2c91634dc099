"""Scenario 1, throughput: LOOPS concurrent polling loops × ATTEMPTS zero-delay GETs each, a
condition false until the last attempt. Every contender runs in its own fresh process; its
figure is requests / seconds of the polling part, and its peak RSS. The server counts the
requests each contender made, and every one of them must have been made.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from .. import Row
from ..common import PYTHON, Bench, log, median, run_child

NAME = "throughput"
HERE = Path(__file__).resolve().parent

HANDLER = """(data) => ({
  "lam.httpRequests": Array.from({ length: data.input.loops }, () => ({
    method: "GET",
    url: "{{config.url}}/poll",
    loopUntil: {
      condition: "(ctx) => ctx.attempt >= " + data.input.attempts,
      maxAttempts: data.input.attempts,
      initialDelay: 0,
    },
  })),
})
"""
WORKFLOW = """name: bench-throughput
config:
  url: {url}
steps:
  - name: poll
    handler: poll.js
limits:
  concurrency: {loops}
"""


def _workflow(bench: Bench, loops: int) -> Path:
    folder = bench.tmp / "throughput"
    folder.mkdir(exist_ok=True)
    (folder / "poll.js").write_text(HANDLER)
    path = folder / "workflow.yaml"
    path.write_text(WORKFLOW.format(url=bench.server.url, loops=loops))
    return path


def _python(name: str, bench: Bench, loops: int, attempts: int, timeout: float) -> dict[str, Any]:
    extra = [str(_workflow(bench, loops))] if name in ("api", "run") else []
    cmd = [
        PYTHON,
        "-m",
        "bench.scenarios.clients",
        name,
        bench.server.url + "/poll",
        str(loops),
        str(attempts),
        *extra,
    ]
    child = run_child(cmd, timeout=timeout, stderr=bench.tmp / f"throughput-{name}.stderr")
    result = child.result()
    return {**result, "rss_mb": child.rss_mb, "cpu": child.cpu, "wall": child.wall}


def _cli(bench: Bench, loops: int, attempts: int, timeout: float, run: int) -> dict[str, Any]:
    payload = json.dumps({"loops": loops, "attempts": attempts})
    cmd = [
        PYTHON,
        "-m",
        "lamrunner",
        "run",
        str(_workflow(bench, loops)),
        "--input",
        payload,
        "--store",
        str(bench.tmp / f"runs-{run}.sqlite3"),
    ]
    child = run_child(cmd, timeout=timeout, stderr=bench.tmp / "throughput-cli.stderr")
    if child.returncode != 0:
        child.result()  # raises, quoting the end of the run's log
    record = json.loads(child.stdout)
    if record["status"] != "SUCCESS":
        raise RuntimeError(f"the lamrunner CLI run failed: {record['error']}")
    http = record["gwo"]["step_1"]["http"]
    polling = max(h["durationMs"] for h in http) / 1000
    return {
        "requests": sum(h["attempts"] for h in http),
        "seconds": child.wall,
        "polling_seconds": polling,
        "rss_mb": child.rss_mb,
        "cpu": child.cpu,
        "wall": child.wall,
        "loop": "uvloop" if _has_uvloop() else "asyncio",
    }


def _has_uvloop() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def _node(bench: Bench, loops: int, attempts: int, timeout: float) -> dict[str, Any]:
    assert bench.node is not None
    url = bench.server.url + "/poll"
    cmd = [bench.node, str(HERE / "poll.mjs"), url, str(loops), str(attempts)]
    child = run_child(cmd, timeout=timeout, stderr=bench.tmp / "throughput-node.stderr")
    return {**child.result(), "rss_mb": child.rss_mb, "cpu": child.cpu, "wall": child.wall}


BARE, BARE_UV, TENACITY, API = "bare aiohttp", "bare aiohttp (uvloop)", "tenacity", "lamrunner API"
RUN, CLI, NODE = "lamrunner.run", "lamrunner CLI", "node fetch"


def _contenders(bench: Bench, loops: int, attempts: int, timeout: float) -> dict[str, Any]:
    """label -> (run number -> result), or a string saying why the contender is missing."""

    def python(name: str) -> Any:
        return lambda run: _python(name, bench, loops, attempts, timeout)

    uvloop = importlib.util.find_spec("uvloop") is not None
    missing = "not installed: skipped"
    return {
        BARE: python("bare"),
        BARE_UV: python("bare-uvloop") if uvloop else f"uvloop {missing}",
        TENACITY: python("tenacity") if importlib.util.find_spec("tenacity") else missing,
        API: python("api"),
        RUN: python("run") if uvloop else "without uvloop it is the API row's figure",
        CLI: lambda run: _cli(bench, loops, attempts, timeout, run),
        NODE: (lambda run: _node(bench, loops, attempts, timeout)) if bench.node else missing,
    }


def run(bench: Bench) -> list[Row]:
    loops, attempts, rounds = (10, 20, 1) if bench.smoke else (50, 200, 5)
    expected, timeout = loops * attempts, 60 if bench.smoke else 300
    contenders = _contenders(bench, loops, attempts, timeout)
    skipped = {name: why for name, why in contenders.items() if isinstance(why, str)}
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in contenders if n not in skipped}
    for run_number in range(rounds):  # rounds interleave the contenders, so drift hits all
        for name, done in results.items():
            before = bench.server.stats()
            result = contenders[name](run_number)
            after = bench.server.stats()
            served = after[0] - before[0]
            if served != expected or result["requests"] != expected:
                raise RuntimeError(
                    f"{name}: {result['requests']} requests counted by the client, "
                    f"{served} by the server; expected {expected}"
                )
            result["server_cpu"] = after[1] - before[1]
            result["rate"] = expected / result["seconds"]
            if "polling_seconds" in result:
                result["polling_rate"] = expected / result["polling_seconds"]
            done.append(result)
            log(
                f"{NAME}: {name} round {run_number + 1}: {result['rate']:.0f} requests/s, "
                f"{result['rss_mb']:.0f} MB"
            )
    bench.raw[NAME] = {
        "loops": loops,
        "attempts": attempts,
        "rounds": rounds,
        "results": results,
        "skipped": skipped,
    }
    return _rows(results, skipped)


def _rows(results: dict[str, list[dict[str, Any]]], skipped: dict[str, str]) -> list[Row]:
    def med(name: str, key: str = "rate") -> float | None:
        return median([r[key] for r in results[name]]) if name in results else None

    def row(name: str, figure: str, value: Any, baseline: Any = None, goal: str = "") -> None:
        rows.append(Row(NAME, name, figure, value, baseline, goal))

    # lamrunner.run and the CLI run on the loop lamrunner picks: compare them with bare on it.
    loop = results[RUN][0]["loop"] if RUN in results else "asyncio"
    bare, api = med(BARE), med(API)
    same_loop = med(BARE_UV) if loop == "uvloop" else bare
    polling = [r["polling_rate"] for r in results[CLI]]
    shown = {RUN: f"{RUN} ({loop})", CLI: f"{CLI} ({loop})"}
    rows: list[Row] = []
    row(BARE, "requests/s", bare)
    for name in (BARE_UV, TENACITY):
        if name in results:
            row(name, "requests/s", med(name), bare)
    # The goal is on the polling part: loading the workflow and calling its handler (about
    # 0.1-0.3 s of a 2.5 s run) is start-up, which the startup scenario measures.
    row(API, "polling req/s", med(API, "polling_rate"), bare, ">= 0.90x")
    row(API, "whole-call req/s", api, bare)
    if RUN in results:
        row(
            shown[RUN],
            f"polling req/s vs bare ({loop})",
            med(RUN, "polling_rate"),
            same_loop,
            ">= 0.90x",
        )
        row(shown[RUN], f"whole-call req/s vs bare ({loop})", med(RUN), same_loop)
    row(shown[CLI], f"polling req/s vs bare ({loop})", median(polling), same_loop)
    row(shown[CLI], f"command req/s vs bare ({loop})", med(CLI), same_loop)
    if NODE in results:
        row(NODE, "requests/s", med(NODE), bare)
    if TENACITY in results:
        row(API, "whole-call req/s vs tenacity", api, med(TENACITY))
    if NODE in results:
        row(API, "whole-call req/s vs node", api, med(NODE), ">= 1.50x")
    for name in results:
        base_rss = None if name == BARE else med(BARE, "rss_mb")
        row(shown.get(name, name), "peak RSS (MB)", med(name, "rss_mb"), base_rss)
    # The server's side: CPU per request during the bare runs, as capacity on one core,
    # against the fastest client. Far above 1x: the clients, not the server, set the pace.
    cost = median([r["server_cpu"] / r["requests"] for r in results[BARE]])
    fastest = max(med(name) or 0 for name in results if name != CLI)
    row("bench server", "CPU µs per request", cost * 1e6)
    row("bench server", "capacity req/s per core", 1 / cost if cost else None, fastest, ">= 3.00x")
    for name, why in skipped.items():
        rows.append(Row(NAME, name, "requests/s", None, note=f"{name}: {why}"))
    return rows
