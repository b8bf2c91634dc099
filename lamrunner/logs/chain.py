"""Logging: one structlog processor chain, configured once, always to stderr.

stdout belongs to the run record, so nothing here ever writes to it. In a terminal the lines
are readable (and a host may keep a status line below them: `set_status_line`, the CLI's live
poll line); elsewhere they are JSON lines. Masking secrets is one processor in the chain
(`masking.mask_processor`), with the secrets of the run a line belongs to: `run_logging` binds
a run's id, workflow and secrets for everything logged inside it, handlers' lines included.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any, Protocol, TextIO

import structlog

from lamrunner.logs.masking import Secrets, mask_processor, masked_with

LOGGER_NAME = "lamrunner"


class StatusLine(Protocol):
    """A line kept below the log (the CLI's live poll line): every log line is printed above it."""

    def print_above(self, message: str) -> None: ...


_LIVE: StatusLine | None = None  # the status line under the log, when a host set one
_TERMINAL: TextIO | None = None  # where a status line may be drawn (see status_stream)


def get_logger(**bound: Any) -> Any:
    if not structlog.is_configured():
        configure(capture_logging=False)  # embedded: the program's own logging stays its own
    return structlog.get_logger(LOGGER_NAME).bind(**bound)


def configure(
    fmt: str = "auto",
    verbosity: int = 0,
    stream: TextIO | None = None,
    *,
    capture_logging: bool = True,
) -> None:
    """Set up the chain. fmt: auto|console|json; verbosity: -1 quiet, 0 normal, 1 debug.

    `capture_logging` (the host's choice: the CLI makes it) also sends the standard library's
    `logging` through the chain, so a handler's `logging.getLogger(...).warning(...)` is masked,
    formatted and carries the run's context like every other line.
    """
    global _LIVE, _TERMINAL
    stream = _unwrap(stream or sys.stderr)
    tty = _isatty(stream)
    console = fmt == "console" or (fmt == "auto" and tty)
    _TERMINAL = stream if console and tty and verbosity >= 0 else None
    _LIVE = None
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if console:
        tail = [
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            _tidy_for_console,
            mask_processor,
            structlog.dev.ConsoleRenderer(colors=tty, pad_event_to=14, sort_keys=False),
        ]
    else:
        tail = [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_processor,
            structlog.processors.JSONRenderer(),
        ]
    structlog.configure(
        processors=shared + tail,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: _StreamLogger(stream),
        cache_logger_on_first_use=False,
    )
    detach_stdlib()
    if capture_logging:
        _attach_stdlib(_StdlibToChain(stream, shared, tail), level)


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


def status_stream() -> TextIO | None:
    """The terminal a status line may be drawn on: logs go to it readably and not quietly."""
    return _TERMINAL


def set_status_line(line: StatusLine | None) -> None:
    """Keep `line` below the log from now on (None: plain lines again). For hosts: the CLI."""
    global _LIVE
    _LIVE = line


@contextlib.contextmanager
def run_logging(run_id: str, workflow: str, secrets: Secrets) -> Iterator[None]:
    """Everything logged inside the block — handlers' prints and `logging` calls included, in
    their threads too — carries the run's id and workflow and is masked with its secrets."""
    with (
        structlog.contextvars.bound_contextvars(run_id=run_id, workflow=workflow),
        masked_with(secrets),
    ):
        yield


@contextlib.contextmanager
def step_logging(step: str) -> Iterator[None]:
    """Everything logged inside the block carries the step's name."""
    with structlog.contextvars.bound_contextvars(step=step):
        yield


@contextlib.contextmanager
def child_logging(parent_run: str) -> Iterator[None]:
    """A sub-workflow run's lines inside the block name their parent run (`parent_run`), and
    not the parent's step they would otherwise inherit; the step is bound again after."""
    step = structlog.contextvars.get_contextvars().get("step")
    structlog.contextvars.unbind_contextvars("step")
    try:
        with structlog.contextvars.bound_contextvars(parent_run=parent_run):
            yield
    finally:
        if step is not None:
            structlog.contextvars.bind_contextvars(step=step)


class _StreamLogger:
    """structlog logger that writes lines to a stream, keeping the status line below them."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        live = _LIVE
        if live is not None:
            live.print_above(message)
            return
        with WRITE_LOCK:
            self._stream.write(message + "\n")
            self._stream.flush()

    log = debug = info = warn = warning = error = critical = exception = msg


WRITE_LOCK = threading.Lock()
"""Held for every write to the log stream (a status line's redraw too), so lines never mix."""


# -- the standard library's logging -----------------------------------------------------------

_STDLIB: tuple[logging.Handler, int] | None = None  # our root handler, the root level it replaced


class _StdlibToChain(logging.Handler):
    """A root `logging` handler whose records go through the structlog chain (ProcessorFormatter):
    the run's context from contextvars, masking, the same renderer and the same stream."""

    def __init__(self, stream: TextIO, shared: list[Any], tail: list[Any]) -> None:
        super().__init__()
        self._out = _StreamLogger(stream)
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[
                    *shared,
                    structlog.stdlib.add_logger_name,
                    _exception_in_one_line,
                ],
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
            )
        )

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError, ValueError):  # the stream is gone (closed at exit)
            self._out.msg(self.format(record))


def _exception_in_one_line(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """`logger.exception(...)` logs `error="ValueError: msg"`: no traceback reaches a user."""
    info = event.pop("exc_info", None)
    event.pop("stack_info", None)
    if isinstance(info, tuple) and info[1] is not None:
        event["error"] = f"{type(info[1]).__name__}: {info[1]}"
    return event


def _attach_stdlib(handler: logging.Handler, level: int) -> None:
    global _STDLIB
    root = logging.getLogger()
    _STDLIB = (handler, root.level)
    root.addHandler(handler)
    root.setLevel(level)


def detach_stdlib() -> None:
    """Give the standard library's root logger back as `configure` found it (idempotent)."""
    global _STDLIB
    if _STDLIB is not None:
        handler, level = _STDLIB
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)
        _STDLIB = None


# -- what handlers write to stdout and stderr ---------------------------------------------------


class _HandlerCall:
    """One handler call's partial output lines, per stream (a line is logged when it ends)."""

    def __init__(self) -> None:
        self.partial: dict[str, str] = {}


_IN_HANDLER: contextvars.ContextVar[_HandlerCall | None] = contextvars.ContextVar(
    "lamrunner_in_handler", default=None
)


class StreamProxy:
    """Stands in for sys.stdout / sys.stderr: a write made inside a handler call is a log line.

    Why a proxy and not `sys.stdout = <log>` for the run: an embedding program keeps printing
    while runs go on (other threads, other tasks), and swapping the process's stdout under it
    would swallow its output. The proxy decides per write: a write from inside a handler call
    (the `_IN_HANDLER` contextvar, set by `handler_output` and inherited by the handler's worker
    thread and by tasks it starts) becomes a `handler.print` / `handler.stderr` event, with the
    run's context (run_id, workflow, step) from structlog's contextvars; every other write goes
    to the real stream untouched. Installed once, it stays: it is transparent to everyone else.
    `capture_all` is for the CLI, whose stdout belongs to the run record alone.
    """

    def __init__(self, real: TextIO, event: str, level: int) -> None:
        self.real = real
        self.capture_all = False
        self._event, self._level = event, level
        self._loose = _HandlerCall()  # capture_all lines outside any handler call
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        call = _IN_HANDLER.get()
        if call is None and not self.capture_all:
            return self.real.write(text)
        with self._lock:
            pending = (call or self._loose).partial.pop(self._event, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                (call or self._loose).partial[self._event] = rest
        for line in lines:
            self._log(line)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _IN_HANDLER.get() is None and not self.capture_all:
            self.real.flush()

    def finish(self, call: _HandlerCall) -> None:
        """Log what is left of a line without its newline."""
        rest = call.partial.pop(self._event, "")
        if rest:
            self._log(rest)

    def _log(self, line: str) -> None:
        if not structlog.is_configured():  # structlog's default would print to stdout: us
            configure(capture_logging=False)
        structlog.get_logger(LOGGER_NAME).log(self._level, self._event, text=line)  # masked

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty, …
        if name == "buffer" and (self.capture_all or _IN_HANDLER.get() is not None):
            raise AttributeError("a handler's output goes to the log: write text, not bytes")
        return getattr(self.real, name)


def _proxies() -> tuple[StreamProxy, StreamProxy]:
    """Install the stdout and stderr proxies (once; again if someone replaced them)."""
    with _PROXY_LOCK:
        if not isinstance(sys.stdout, StreamProxy):
            sys.stdout = StreamProxy(sys.stdout, "handler.print", logging.INFO)
        if not isinstance(sys.stderr, StreamProxy):
            sys.stderr = StreamProxy(sys.stderr, "handler.stderr", logging.WARNING)
        return sys.stdout, sys.stderr


_PROXY_LOCK = threading.Lock()


@contextlib.contextmanager
def handler_output() -> Iterator[None]:
    """Inside the block (one handler call), print and sys.stderr writes become log lines."""
    proxies = _proxies()
    call = _HandlerCall()
    token = _IN_HANDLER.set(call)
    try:
        yield
    finally:
        _IN_HANDLER.reset(token)
        for proxy in proxies:
            proxy.finish(call)


@contextlib.contextmanager
def stdout_to_log() -> Iterator[TextIO]:
    """For the CLI: every `print` goes to the log (handlers print at import time too); yields
    the real stdout for the run record."""
    stdout, _ = _proxies()
    stdout.capture_all = True
    try:
        yield stdout.real
    finally:
        stdout.capture_all = False
        stdout.finish(stdout._loose)


def _unwrap(stream: TextIO) -> TextIO:
    """The real stream behind a proxy: log lines must never loop back into the proxy."""
    while isinstance(stream, StreamProxy):
        stream = stream.real
    return stream


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
