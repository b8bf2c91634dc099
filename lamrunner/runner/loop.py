"""Running the event loop: uvloop when it is installed (`pip install lamrunner[fast]`).

uvloop makes every loopback request noticeably cheaper (see bench/README.md); it is optional
because it is a compiled extension. LAMRUNNER_LOOP=asyncio forces the standard loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory if it is installed and not switched off, else None (asyncio's)."""
    if os.environ.get("LAMRUNNER_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on the fastest loop available; Ctrl-C cancels `main` cleanly."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
