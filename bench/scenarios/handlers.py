"""Scenario 5, handlers: what preloading lodash and date-fns costs a JavaScript handler call.

Every handler call on a worker thread runs in that thread's realm, built once with lodash (73 KB)
and date-fns' `format` / `parseISO` in it (lamrunner/js/runtime.py, `_HandlerRealm`). The figure
is µs per call of a small handler (`(data) => ({id: data.id, n: data.items.length})`), called
in a loop on one thread as a worker calls it, against the same realm built without the
libraries, measured in the same run: the ratio is what preloading costs each call. Also shown:
a handler that uses lodash and date-fns, and the two ways that were not taken — a new realm per
call without the libraries, and a new realm per call that evaluates them each time (the cost a
context per call with the libraries would have). Medians of rounds, the contenders interleaved, GC off while timing.
"""

from __future__ import annotations

import gc
import json
import time
from typing import Any

from .. import Row
from ..common import Bench, log, median

NAME = "handlers"
SMALL = "(data) => ({id: data.id, n: data.items.length})"
USES_LIBRARIES = (
    "(data) => ({id: data.id, byKind: _.countBy(data.items, 'kind'), "
    "day: format(parseISO(data.at), 'yyyy-MM-dd')})"
)
DATA = json.dumps(
    {"id": "job-1", "at": "2024-03-04T05:06:07Z", "items": [{"kind": k} for k in "abcab"]}
)


def _per_call(call: Any, reps: int) -> float:
    """µs per call: the median of 5 rounds of `reps` calls."""
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(reps):
            call()
        rounds.append((time.perf_counter() - started) / reps * 1e6)
    return median(rounds)


def run(bench: Bench) -> list[Row]:
    from lamrunner.js import runtime

    limits = runtime.HANDLER_LIMITS
    preloaded, bare = runtime._HandlerRealm(), runtime._HandlerRealm(libraries=())

    def call(source: str, realm: Any) -> None:
        result, _, err = runtime._run_handler(source, DATA, limits, realm)
        if err is not None or result is None:
            raise RuntimeError(f"the bench handler failed: {err}")

    def fresh(libraries: tuple[str, ...] | None) -> None:
        call(SMALL, runtime._HandlerRealm(libraries))

    reps, slow_reps = (50, 2) if bench.smoke else (1000, 10)
    contenders = {
        "preloaded": lambda: call(SMALL, preloaded),
        "bare": lambda: call(SMALL, bare),
        "libraries used": lambda: call(USES_LIBRARIES, preloaded),
    }
    for fn in contenders.values():
        fn()  # warm-up
    gc.collect()
    gc.disable()
    try:
        figures: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(3):  # interleaved, so drift on the machine hits all of them
            for name, fn in contenders.items():
                figures[name].append(_per_call(fn, reps))
        per_call = {name: median(values) for name, values in figures.items()}
        per_call["new context"] = _per_call(lambda: fresh(()), slow_reps)
        per_call["new context + libraries"] = _per_call(lambda: fresh(None), slow_reps)
    finally:
        gc.enable()
    bench.raw[NAME] = {"us_per_call": per_call, "reps": reps, "handler": SMALL}
    log(f"{NAME}: " + ", ".join(f"{k} {v:.0f} µs" for k, v in per_call.items()))
    base = per_call["bare"]
    return [
        Row(NAME, "realm without libraries", "µs per call (baseline)", base),
        Row(
            NAME,
            "preloaded (_ + date-fns)",
            "µs per call",
            per_call["preloaded"],
            base,
            "<= 1.10x",
        ),
        Row(NAME, "using _ and format", "µs per call", per_call["libraries used"], base),
        Row(NAME, "new realm per call", "µs per call, no libraries", per_call["new context"], base),
        Row(
            NAME,
            "new context + libraries",
            "µs per call",
            per_call["new context + libraries"],
            base,
        ),
    ]
