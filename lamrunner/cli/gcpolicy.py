"""Short garbage-collector pauses for processes that hold thousands of sleeping polls.

Each waiting poll keeps a hundred-odd long-lived objects, and CPython 3.11's full collection
walks all of them: with 10,000 loops that is a 300–600 ms pause, and every timer due meanwhile
fires late. `hold()` makes the long-lived objects permanent (`gc.freeze()`) every FREEZE_EVERY
seconds, after collecting the young generations, so full collections only see what is new.
Cyclic garbage that reaches the old generation would stay frozen, so every FULL_EVERY seconds
everything is unfrozen and collected once (one pause per ten minutes instead of several a
minute), and again when the last holder lets go.

It changes the collector for the whole process, so it is the host's choice, not the run
core's: the CLI holds it around every run, and embedders opt in by running their runs inside
`async with gcpolicy.hold():`.

`freeze_at_exit()` is for a process that ends when its runs do (the CLI): when the interpreter
exits, the garbage there is then is collected once (its finalizers run: the run store's
connection closes) and the survivors are frozen, so the interpreter's own closing full
collections, each walking every object again while modules are torn down, skip memory the
operating system takes back anyway. Objects are still freed by reference counting as before;
only cycles that form during that teardown are left to the operating system.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import time
from collections.abc import AsyncIterator

# Often enough that what one interval makes stays small: at 2 s, 10,000 polling loops still
# met 23 full collections in 70 s (3.2 s of pauses, the longest 271 ms, timer p99 117 ms);
# at 0.3 s, 2 (70 ms in all; p99 9 ms). Each freeze costs a young collection, well under 1 ms.
FREEZE_EVERY = 0.3
FULL_EVERY = 600.0
_holders = 0
_task: asyncio.Task[None] | None = None
_exit_freeze = False


@contextlib.asynccontextmanager
async def hold() -> AsyncIterator[None]:
    """Keep the policy on while the block runs (nested and concurrent holders share it)."""
    global _holders, _task
    _holders += 1
    if _task is None:
        _task = asyncio.get_running_loop().create_task(_keep_freezing())
    try:
        yield
    finally:
        _holders -= 1
        if _holders == 0 and _task is not None:
            _task.cancel()
            _task = None
            gc.unfreeze()


async def _keep_freezing() -> None:
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(FREEZE_EVERY)
        if time.monotonic() - last_full >= FULL_EVERY:
            gc.unfreeze()
            gc.collect()
            last_full = time.monotonic()
        gc.collect(1)  # young cyclic garbage dies here, before anything is frozen
        gc.freeze()


def freeze_at_exit() -> None:
    """When the interpreter exits: one full collection, then freeze what survived, before the
    interpreter's own last collections (registered once a process, however often called)."""
    global _exit_freeze
    if not _exit_freeze:
        _exit_freeze = True
        atexit.register(_collect_and_freeze)


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()
