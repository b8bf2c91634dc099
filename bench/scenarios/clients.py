"""The throughput contenders that run as Python children, each in a fresh process:

    python -m bench.scenarios.clients CONTENDER URL LOOPS ATTEMPTS [WORKFLOW]

CONTENDER: bare, bare-uvloop, tenacity, api (`await lamrunner.arun()` under asyncio.run) or run
(`lamrunner.run()`, on the loop lamrunner picks).

LOOPS concurrent polling loops, each ATTEMPTS GETs with zero delay, parsing the JSON answer and
checking a condition that holds only at the last attempt. Prints one JSON line: the requests
the client made and the seconds the polling part took.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any


async def bare(url: str, loops: int, attempts: int) -> int:
    import aiohttp

    count = 0

    async def loop(session: aiohttp.ClientSession) -> None:
        nonlocal count
        for attempt in range(1, attempts + 1):
            async with session.get(url) as resp:
                await resp.json()
            count += 1
            if attempt >= attempts:
                break

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(loop(session) for _ in range(loops)))
    return count


async def tenacity_(url: str, loops: int, attempts: int) -> int:
    import aiohttp
    from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_none

    count = 0

    async def loop(session: aiohttp.ClientSession) -> None:
        attempt = 0

        async def poll() -> bool:
            nonlocal count, attempt
            async with session.get(url) as resp:
                await resp.json()
            count += 1
            attempt += 1
            return attempt >= attempts

        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_none(),
            retry=retry_if_result(lambda done: not done),
        )
        assert await retrying(poll)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(loop(session) for _ in range(loops)))
    return count


POLLING: list[float] = []  # seconds of the polling part of a lamrunner run (from its record)


async def api(url: str, loops: int, attempts: int, workflow: str) -> int:
    import lamrunner

    return _count(await lamrunner.arun(workflow, _input(url, loops, attempts)))


def run(url: str, loops: int, attempts: int, workflow: str) -> int:
    """The blocking entry point, on the event loop lamrunner picks (uvloop when installed)."""
    import lamrunner

    return _count(lamrunner.run(workflow, _input(url, loops, attempts)))


def _input(url: str, loops: int, attempts: int) -> dict[str, object]:
    return {"url": url, "loops": loops, "attempts": attempts}


def _count(record: dict[str, Any]) -> int:
    if record["status"] != "SUCCESS":
        raise SystemExit(f"run failed: {record['error']}")
    http = record["gwo"]["step_1"]["http"]
    POLLING.append(max(h["durationMs"] for h in http) / 1000)  # loops start together
    return sum(h["attempts"] for h in http)


def _on_uvloop(contender: Callable[..., Any]) -> Callable[..., int]:
    def blocking(*args: Any) -> int:
        import uvloop

        return uvloop.run(contender(*args))  # type: ignore[no-any-return]

    return blocking


BLOCKING = {
    "bare": lambda *a: asyncio.run(bare(*a)),
    "bare-uvloop": _on_uvloop(bare),
    "tenacity": lambda *a: asyncio.run(tenacity_(*a)),
    "api": lambda *a: asyncio.run(api(*a)),
    "run": run,
}
# Imported before the clock starts: loading code is the startup scenario's business.
LAMRUNNER = ["aiohttp", "lamrunner.api", "lamrunner.js.runtime", "lamrunner.http.transport"]
MODULES = {
    "bare": ["aiohttp"],
    "bare-uvloop": ["aiohttp", "uvloop"],
    "tenacity": ["aiohttp", "tenacity"],
    "api": LAMRUNNER,
    "run": LAMRUNNER,
}


def main() -> None:
    name, url, loops, attempts, *rest = sys.argv[1:]
    for module in MODULES[name]:
        importlib.import_module(module)
    started = time.perf_counter()
    count = BLOCKING[name](url, int(loops), int(attempts), *rest)
    seconds = time.perf_counter() - started
    loop = "uvloop" if "uvloop" in sys.modules else "asyncio"  # lamrunner imports it to use it
    result = {"requests": count, "seconds": seconds, "loop": loop}
    if POLLING:  # lamrunner: the polling part, without loading the workflow and its handler
        result["polling_seconds"] = POLLING[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
