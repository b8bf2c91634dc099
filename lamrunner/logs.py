"""Logging: one structlog processor chain, configured once, always to stderr.

stdout belongs to the run record, so nothing here ever writes to it. In a terminal the lines
are readable (and a live status line shows polls in progress); elsewhere they are JSON lines.
Masking secrets is one processor in the chain (`masking.mask_processor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

import structlog

from .masking import mask_processor
from .units import format_duration

LOGGER_NAME = "lamrunner"
_LIVE: LiveLine | None = None


def get_logger(**bound: Any) -> Any:
    if not structlog.is_configured():
        configure()
    return structlog.get_logger(LOGGER_NAME).bind(**bound)


def configure(fmt: str = "auto", verbosity: int = 0, stream: TextIO | None = None) -> None:
    """Set up the chain. fmt: auto|console|json; verbosity: -1 quiet, 0 normal, 1 debug."""
    global _LIVE
    stream = stream or sys.stderr
    tty = _isatty(stream)
    console = fmt == "console" or (fmt == "auto" and tty)
    _LIVE = LiveLine(stream) if console and tty and verbosity >= 0 else None
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if console:
        chain += [
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            _tidy_for_console,
            mask_processor,
            structlog.dev.ConsoleRenderer(colors=tty, pad_event_to=14, sort_keys=False),
        ]
    else:
        chain += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_processor,
            structlog.processors.JSONRenderer(),
        ]
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: _StreamLogger(stream, _LIVE),
        cache_logger_on_first_use=False,
    )


_RUN_EVENTS = ("run.start", "run.resume", "run.done")


def _tidy_for_console(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Shorter lines for people: run ids once per run, `attempt=3/20`, no empty fields."""
    if event.get("event") not in _RUN_EVENTS:
        event.pop("run_id", None)
        event.pop("workflow", None)
    if "of" in event and "attempt" in event:
        event["attempt"] = f"{event['attempt']}/{event.pop('of')}"
    if event.get("where") in ("lam.httpRequest", None):
        event.pop("where", None)
    return {k: v for k, v in event.items() if v is not None}


def live_line() -> LiveLine | None:
    """The terminal status line, when logs go to a terminal (else None)."""
    return _LIVE


class _StreamLogger:
    """structlog logger that writes lines to a stream, keeping the live line below them."""

    def __init__(self, stream: TextIO, live: LiveLine | None) -> None:
        self._stream = stream
        self._live = live

    def msg(self, message: str) -> None:
        if self._live is not None:
            self._live.print_above(message)
            return
        with _WRITE_LOCK:
            self._stream.write(message + "\n")
            self._stream.flush()

    log = debug = info = warn = warning = error = critical = exception = msg


_WRITE_LOCK = threading.Lock()


class LiveLine:
    """One status line at the bottom of the terminal, redrawn under each log line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._text = ""

    def show(self, text: str) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self._text = text[:width]
        with _WRITE_LOCK:
            self._stream.write("\r\x1b[K" + self._text)
            self._stream.flush()

    def clear(self) -> None:
        self._text = ""
        with _WRITE_LOCK:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def print_above(self, message: str) -> None:
        with _WRITE_LOCK:
            self._stream.write("\r\x1b[K" + message + "\n" + self._text)
            self._stream.flush()


class PollProgress:
    """What the live line shows: each running poll's attempt, last status, next poll in…"""

    def __init__(self, live: LiveLine) -> None:
        self._live = live
        self._polls: dict[str, tuple[str, int, int, int | None, float]] = {}

    def update(self, key: str, step: str, attempt: int, of: int, status: int | None,
               due_monotonic: float) -> None:  # fmt: skip
        self._polls[key] = (step, attempt, of, status, due_monotonic)
        self.redraw()

    def done(self, key: str) -> None:
        self._polls.pop(key, None)
        if not self._polls:
            self._live.clear()

    def redraw(self) -> None:
        if not self._polls:
            return
        step, attempt, of, status, due = next(reversed(self._polls.values()))
        wait = max(0.0, due - time.monotonic())
        more = f" (+{len(self._polls) - 1} more polls)" if len(self._polls) > 1 else ""
        self._live.show(
            f"⟳ {step}: attempt {attempt} of {of} · last status {status} · "
            f"next poll in {format_duration(wait)}{more}"
        )

    async def tick(self, interval: float = 0.25) -> None:
        """Redraw the countdown until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.redraw()


class PrintToLog(io.TextIOBase):
    """Stands in for sys.stdout while handlers run: `print` becomes a log line."""

    def __init__(self) -> None:
        self._buffer = ""
        self._log = structlog.get_logger(LOGGER_NAME)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._log.info("handler.print", text=line)  # masked by the chain
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._log.info("handler.print", text=line)


@contextlib.contextmanager
def stdout_to_log() -> Iterator[TextIO]:
    """Route `print` to the log for the block; yields the real stdout for the run record."""
    real = sys.stdout
    sys.stdout = PrintToLog()  # type: ignore[assignment]
    try:
        yield real
    finally:
        sys.stdout.flush()
        sys.stdout = real


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
