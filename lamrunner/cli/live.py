"""The live poll line: one status line at the bottom of the terminal while polls wait.

It is the command line's, not the run core's: `LivePolls` is a run observer (see
`runner.observe`) that hears of every poll attempt and draws "attempt 3 of 20 · last status
200 · next poll in 4s" under the log lines, counting down between attempts. `live_polls()` gives
one when logs go to a terminal (`logs.chain.status_stream`), else None.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any, TextIO

from lamrunner.logs import chain
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import RunState
from lamrunner.units import format_duration


class LiveLine:
    """One status line at the bottom of the terminal, redrawn under each log line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._text = ""

    def show(self, text: str) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self._text = text[:width]
        with chain.WRITE_LOCK:
            self._stream.write("\r\x1b[K" + self._text)
            self._stream.flush()

    def clear(self) -> None:
        self._text = ""
        with chain.WRITE_LOCK:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def print_above(self, message: str) -> None:
        with chain.WRITE_LOCK:
            self._stream.write("\r\x1b[K" + message + "\n" + self._text)
            self._stream.flush()


class PollProgress:
    """What the live line shows: each running poll's attempt, last status, next poll in…"""

    def __init__(self, live: LiveLine) -> None:
        self._live = live
        self._polls: dict[str, tuple[str, int, int, int | None, float, str]] = {}

    def update(
        self,
        key: str,
        step: str,
        attempt: int,
        of: int,
        status: int | None,
        due_monotonic: float,
        percent: float | None = None,
        eta_seconds: float | None = None,
    ) -> None:
        shown = ""
        if percent is not None:
            shown = f" · {percent:g}%"
            if eta_seconds is not None:
                shown += f" (ETA {format_duration(round(eta_seconds))})"
        self._polls[key] = (step, attempt, of, status, due_monotonic, shown)
        self.redraw()

    def done(self, key: str) -> None:
        self._polls.pop(key, None)
        if not self._polls:
            self._live.clear()

    def redraw(self) -> None:
        if not self._polls:
            return
        step, attempt, of, status, due, progress = next(reversed(self._polls.values()))
        wait = max(0.0, due - time.monotonic())
        more = f" (+{len(self._polls) - 1} more polls)" if len(self._polls) > 1 else ""
        self._live.show(
            f"⟳ {step}: attempt {attempt} of {of} · last status {status}{progress} · "
            f"next poll in {format_duration(wait)}{more}"
        )

    async def tick(self, interval: float = 0.25) -> None:
        """Redraw the countdown until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.redraw()


class LivePolls(RunObserver):
    """The live line as a run observer: shown below the log while runs are going, ticking
    down to the next poll, and cleared (and let go of) when the last run finishes."""

    def __init__(self, stream: TextIO) -> None:
        self._live = LiveLine(stream)
        self._progress = PollProgress(self._live)
        self._runs = 0
        self._ticker: asyncio.Task[None] | None = None

    def run_started(self, state: RunState) -> None:
        self._runs += 1
        if self._ticker is None:
            chain.set_status_line(self._live)
            self._ticker = asyncio.get_running_loop().create_task(self._progress.tick())

    def poll_progress(
        self,
        key: str,
        step_name: str,
        attempt: int,
        max_attempts: int,
        last_status: int | None,
        due_in_seconds: float,
        percent: float | None = None,
        eta_seconds: float | None = None,
        **_more: Any,
    ) -> None:
        due = time.monotonic() + due_in_seconds
        self._progress.update(
            key, step_name, attempt, max_attempts, last_status, due, percent, eta_seconds
        )

    def poll_done(self, key: str) -> None:
        self._progress.done(key)

    def run_finished(self, state: RunState) -> None:
        self._runs -= 1
        if self._runs == 0 and self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
            self._live.clear()
            chain.set_status_line(None)


def live_polls() -> LivePolls | None:
    """A live poll line when logs go to a terminal (console format, not quiet), else None."""
    stream = chain.status_stream()
    return None if stream is None else LivePolls(stream)
