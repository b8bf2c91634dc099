"""The waker: a waiting job is a row, not a coroutine; this loop starts the ones that are due.

It reads the due rows (`due_at <= now + lead`, earliest first, a batch at a time, no more than
there is room for in memory), hands each to `launch`, then sleeps until the earliest `due_at`
is `lead` seconds ahead, or until it is poked (a new job, a run that suspended or ended, a
cancel). A job woken `lead` early is resumed by the engine, which waits out the rest itself, so
its poll is sent on time. Time is the injected Clock's, so tests run on a fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from lamrunner.runner.clock import Clock

LEAD = 1.0  # seconds: a job is woken this long before its poll is due
BATCH = 500  # due rows read per query


class Waker:
    """The loop that launches due jobs. `due(until, limit)` reads due rows, `launch(row)` takes
    one over (it must stop being due: its `due_at` cleared), `room()` says how many more may
    run in memory, `next_due()` is the earliest due time of any row."""

    def __init__(
        self,
        clock: Clock,
        due: Callable[[float, int], list[Any]],
        launch: Callable[[Any], None],
        room: Callable[[], int],
        next_due: Callable[[], float | None],
        lead: float = LEAD,
    ) -> None:
        self._clock, self._due, self._launch = clock, due, launch
        self._room, self._next_due, self.lead = room, next_due, lead
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Look at the rows again now (something became due, or room was made)."""
        self._poked.set()

    def wake_due(self) -> int:
        """Launch every job due within `lead`, as far as there is room; how many were."""
        launched = 0
        while (room := self._room()) > 0:
            rows = self._due(self._clock.now() + self.lead, min(room, BATCH))
            for row in rows:
                self._launch(row)
            launched += len(rows)
            if len(rows) < min(room, BATCH):
                break
        return launched

    async def run(self) -> None:
        """Forever: wake the due jobs, then sleep until the next is due or a poke."""
        while True:
            self._poked.clear()
            self.wake_due()
            await self._sleep(self._pause())

    def _pause(self) -> float | None:
        """Seconds until the next row is due within `lead`; None: until poked (no row waits,
        or no room: a run that ends makes room and pokes)."""
        if self._room() <= 0:
            return None
        at = self._next_due()
        return None if at is None else max(0.0, at - self.lead - self._clock.now())

    async def _sleep(self, seconds: float | None) -> None:
        poked = asyncio.ensure_future(self._poked.wait())
        waits: list[asyncio.Future[Any]] = [poked]
        if seconds is not None:
            waits.append(asyncio.ensure_future(self._clock.sleep(seconds)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            for wait in waits:
                with contextlib.suppress(asyncio.CancelledError):
                    await wait
