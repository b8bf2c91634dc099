"""Handlers: resolved and checked when the workflow loads, called through one helper.

Python handlers are the user's trusted code and run in-process: a sync one runs in a worker
thread so it cannot stall polls on the event loop; an async one is awaited. Both are bound by
limits.handlerTimeout in wall-clock time, and what they print or log goes to the log (`logs`). JavaScript handlers
run in QuickJS (`jsengine`), a fresh context per call. Either way the handler gets its own copy
of the GWO and must return JSON: the GWO is JSON end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import importlib.util
import inspect
import json
import os
import queue
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamrunner.definition.programs import (
    Site,
    fill,
    find_sites,
    placeholder,
    retemplate,
    secret_templates,
)
from lamrunner.errors import DefinitionError, HandlerError, ScriptError

_NOT_USER_CODE = tuple(
    {str(Path(__file__).parent), sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
)


@dataclass(frozen=True)
class Handler:
    spec: str  # as written in the workflow
    language: str  # "python" | "javascript" | "jq"
    location: str  # what errors call it: a path, or module:func
    func: Callable[[Any], Any] | None = None
    is_async: bool = False
    source: str | None = None
    templates: tuple[Site, ...] = ()  # config templates in `source`, filled per call (programs)


def load_handler(spec: str, base_dir: Path, where: str) -> Handler:
    """Resolve `file.js`, `file.py`, `file.py:func` or `package.module:func`."""
    if "\x00" in spec:  # the OS would refuse the path with a bare ValueError
        raise DefinitionError(f"{where}: a handler path cannot contain a NUL character")
    path_part, _, func_name = spec.partition(":") if not _is_windows_drive(spec) else (spec, "", "")
    if path_part.endswith(".js"):
        if func_name:
            raise DefinitionError(f"{where}: a JavaScript handler is a file, not file.js:func")
        return _load_js(base_dir / path_part, spec, where)
    if path_part.endswith(".jq"):
        if func_name:
            raise DefinitionError(f"{where}: a JQ handler is a file, not file.jq:func")
        return _load_jq(base_dir / path_part, spec, where)
    if path_part.endswith(".py"):
        return _load_python_file(base_dir / path_part, func_name or "transform", spec, where)
    if func_name and all(p.isidentifier() for p in path_part.split(".")):
        return _load_python_module(path_part, func_name, spec, base_dir, where)
    raise DefinitionError(
        f"{where}: {spec!r} is not a handler; use file.js, file.jq, file.py, file.py:func or "
        "package.module:func"
    )


def _load_js(path: Path, spec: str, where: str) -> Handler:
    from lamrunner.js import runtime as jsengine

    return _load_program(path, spec, where, "javascript", jsengine.check_handler)


def _load_jq(path: Path, spec: str, where: str) -> Handler:
    """A JQ program: compiled now (with placeholders for its templates) so a syntax error is
    reported at load time, with its line; needs the optional `jq` package."""
    try:
        from lamrunner.jq import runtime as jqengine
    except ImportError:
        raise DefinitionError(
            f"{where}: {path} is a JQ program, which needs the jq package: "
            "pip install 'lamrunner[jq]' (or pip install jq)"
        ) from None
    return _load_program(path, spec, where, "jq", jqengine.check_program, with_line=True)


def _load_program(
    path: Path,
    spec: str,
    where: str,
    language: str,
    check: Callable[[str], object],
    with_line: bool = False,
) -> Handler:
    """A program (JavaScript or JQ) compiled now, its templates as placeholders, so a syntax
    error is reported at load time; JQ's errors carry a line (`file.jq:3`)."""
    source = _read(path, where)
    sites = find_sites(source, language, f"{where}: {path}")
    try:
        check(placeholder(source, sites))
    except ScriptError as exc:
        at = f"{path}:{exc.line or 1}" if with_line else str(path)
        raise DefinitionError(f"{where}: {at}: {exc.message}") from None
    return Handler(spec, language, str(path), source=source, templates=sites)


def _load_python_file(path: Path, func_name: str, spec: str, where: str) -> Handler:
    _read(path, where)
    module_name = f"lamrunner_handler_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(module_name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.append(folder)  # lets a handler import helpers that sit beside it
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - any error in user code at import time
            raise DefinitionError(
                f"{where}: {path} failed to import: {_where_raised(exc)}"
            ) from None
        sys.modules[module_name] = module
    return _python_handler(module, func_name, spec, str(path), where)


def _load_python_module(
    module_path: str, func_name: str, spec: str, base_dir: Path, where: str
) -> Handler:
    folder = str(base_dir.resolve())
    if folder not in sys.path:
        sys.path.append(folder)
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        raise DefinitionError(f"{where}: cannot import module {module_path!r} ({exc})") from None
    except Exception as exc:  # noqa: BLE001
        raise DefinitionError(
            f"{where}: {module_path} failed to import: {_where_raised(exc)}"
        ) from None
    return _python_handler(module, func_name, spec, spec, where)


def _python_handler(module: Any, func_name: str, spec: str, location: str, where: str) -> Handler:
    func = getattr(module, func_name, None)
    if func is None:
        raise DefinitionError(f"{where}: {location} does not define {func_name}(data)")
    if not callable(func):
        raise DefinitionError(f"{where}: {location}: {func_name} is not a function")
    try:
        inspect.signature(func).bind(None)
    except TypeError:
        raise DefinitionError(
            f"{where}: {location}: {func_name} must take exactly one argument (data)"
        ) from None
    except ValueError:
        pass  # builtins without signatures: trust them
    return Handler(spec, "python", location, func=func, is_async=inspect.iscoroutinefunction(func))


async def call_handler(
    handler: Handler,
    gwo_json: str,
    *,
    js: Any,
    js_limits: Any,
    console: Callable[[str, str], None],
    timeout: float | None = None,
    config: Mapping[str, Any] | None = None,
) -> Any:
    """Run a handler on a private copy of the GWO (given as JSON text); return its JSON result.
    A program's templates are filled from `config`, the run's own (`programs`).

    `timeout` (limits.handlerTimeout) is wall-clock time for a Python handler; a JavaScript
    handler's limit is CPU time and travels in `js_limits`.
    """
    if handler.language == "javascript":
        source, secrets = _program(handler, config)
        try:
            result_json = await js.call_handler(source, gwo_json, js_limits, console)
        except ScriptError as exc:
            limit = {"timeout": " (limits.handlerTimeout)", "memory": " (limits.handlerMemory)"}
            raise HandlerError(
                f"{handler.location}: {exc.message}{limit.get(exc.kind, '')}"
            ) from None
        return retemplate(json.loads(result_json), secrets)
    if handler.language == "jq":
        return await _call_jq(handler, gwo_json, js_limits, config)
    return _as_json(await _call_python(handler, json.loads(gwo_json), timeout), handler)


async def _call_jq(
    handler: Handler, gwo_json: str, limits: Any, config: Mapping[str, Any] | None
) -> Any:
    """A JQ program's one value; its errors are HandlerErrors naming the file (and the line,
    which jq gives for compile errors only). Limits as a JavaScript handler's, but the time
    is wall-clock: the program runs in a process of its own, killed when it is over."""
    from lamrunner import defaults
    from lamrunner.jq.runtime import call_program

    source, secrets = _program(handler, config)
    timeout = defaults.HANDLER_TIMEOUT if limits is None else limits.timeout
    memory = defaults.HANDLER_MEMORY if limits is None else limits.memory
    try:
        result_json = await call_program(source, gwo_json, timeout, memory)
    except ScriptError as exc:
        limit = {"timeout": " (limits.handlerTimeout)", "memory": " (limits.handlerMemory)"}
        at = f":{exc.line}" if exc.line is not None else ""
        raise HandlerError(
            f"{handler.location}{at}: {exc.message}{limit.get(exc.kind, '')}"
        ) from None
    return retemplate(json.loads(result_json), secrets)


def _program(handler: Handler, config: Mapping[str, Any] | None) -> tuple[str, dict[str, str]]:
    """The program this call runs — its templates filled from this run's config — and the
    secrets it was given, which its output gets back as templates (`programs.retemplate`)."""
    assert handler.source is not None
    if not handler.templates:
        return handler.source, {}
    config = config or {}
    source = fill(handler.source, handler.templates, config, handler.location)
    return source, secret_templates(handler.templates, config)


async def _call_python(handler: Handler, data: Any, timeout: float | None) -> Any:
    """Await the handler under its deadline; its own errors become HandlerErrors naming where."""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            result = await _invoke(handler, data)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        if isinstance(exc, TimeoutError) and deadline.expired():
            raise HandlerError(_timed_out(handler, timeout)) from None
        raise HandlerError(_in_handler(handler.location, _where_raised(exc))) from None
    except SystemExit as exc:  # a handler cannot end the runner's process
        raise HandlerError(
            f"{handler.location}: the handler called sys.exit({exc.code!r}); "
            "return lam.exit or raise an exception instead"
        ) from None
    if deadline.expired():  # an async handler that swallowed its cancellation
        raise HandlerError(_timed_out(handler, timeout))
    return result


async def _invoke(handler: Handler, data: Any) -> Any:
    from lamrunner.logs.chain import handler_output

    assert handler.func is not None
    if not handler.is_async:
        return await _THREADS.call(handler.func, data)
    with handler_output():
        return await handler.func(data)


def _timed_out(handler: Handler, timeout: float | None) -> str:
    name = getattr(handler.func, "__name__", "the handler")
    message = (
        f"{handler.location}: {name}() ran longer than its {timeout:g}s time limit "
        "(limits.handlerTimeout, wall-clock time for a Python handler)"
    )
    if handler.is_async:
        return message + "; it was cancelled"
    return message + "; it runs on in a background thread and its result is discarded"


class _HandlerThreads:
    """Worker threads for sync handlers that never hold up the process at exit.

    A Python thread cannot be killed, so a sync handler past its handlerTimeout runs on until
    it returns. `asyncio.to_thread` (and any concurrent.futures pool) joins its threads at
    interpreter exit, so such a handler would hang the CLI after the run failed. These workers
    are daemon threads, started on demand up to a cap (10,000 runs in one process share them,
    as they would the default pool); a call that times out *abandons* its thread: that thread
    stops counting towards the cap, so stuck handlers cannot starve the others, and it ends
    once the handler returns, its result dropped.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._live = 0
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()

    async def call(self, func: Callable[[Any], Any], data: Any) -> Any:
        """`func(data)` in a worker, in a copy of this context (run_id, step, handler output)."""
        job = _Job(func, data, contextvars.copy_context(), asyncio.get_running_loop())
        self._submit(job)
        try:
            return await job.future
        finally:
            self._abandon(job)

    def _submit(self, job: _Job) -> None:
        self._jobs.put(job)
        if self._idle.acquire(blocking=False):
            return  # an idle worker takes it
        with self._lock:
            if self._live < self._size:
                self._live += 1
                threading.Thread(target=self._work, name="lamrunner-handler", daemon=True).start()

    def _abandon(self, job: _Job) -> None:
        """The awaiting task is gone (done, timed out, cancelled): a job still waiting is
        dropped; a job still running keeps its thread, which leaves the pool."""
        with self._lock:
            if job.state == "running":
                self._live -= 1
                job.state = "abandoned"
            elif job.state == "queued":
                job.state = "dropped"

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            with self._lock:
                if job.state == "dropped":
                    continue  # timed out while it waited for a thread
                job.state = "running"
            outcome = job.run()
            with self._lock:
                abandoned = job.state == "abandoned"
                job.state = "done"
            job.deliver(*outcome)
            if abandoned:
                return  # its place went to another thread when it timed out
            self._idle.release()


class _Job:
    def __init__(
        self,
        func: Callable[[Any], Any],
        data: Any,
        ctx: contextvars.Context,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.func, self.data, self.ctx, self.loop = func, data, ctx, loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.state = "queued"  # running, done; abandoned (running, nobody waits); dropped

    def run(self) -> tuple[Any, BaseException | None]:
        try:
            return self.ctx.run(self._call), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task as it is
            return None, exc

    def deliver(self, result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it any more
            self.loop.call_soon_threadsafe(_settle, self.future, result, error)

    def _call(self) -> Any:
        from lamrunner.logs.chain import handler_output

        with handler_output():
            return self.func(self.data)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled: timed out, or the run was interrupted
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_THREADS = _HandlerThreads(min(32, (os.cpu_count() or 1) + 4))


def _as_json(result: Any, handler: Handler) -> Any:
    try:
        return json.loads(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise HandlerError(
            f"{handler.location}: the handler returned something that is not JSON ({exc})"
        ) from None


def _in_handler(location: str, where: str) -> str:
    """`handlers/x.py:12 in transform: ...`: the handler's own path once, not twice."""
    path = os.path.abspath(location)
    if where.startswith(path + ":"):
        return os.path.normpath(location) + where[len(path) :]
    return f"{os.path.normpath(location)}: {where}"


def _where_raised(exc: BaseException) -> str:
    """`file.py:12 in transform: ValueError: msg` for the innermost frame of user code."""
    stack = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in stack if not f.filename.startswith(_NOT_USER_CODE)] or list(stack)
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}"
    if not frames:
        return message
    last = frames[-1]
    return f"{os.path.normpath(last.filename)}:{last.lineno} in {last.name}: {message}"


def _read(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DefinitionError(f"{where}: handler file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{where}: cannot read handler {path}: {exc}") from None


def _is_windows_drive(spec: str) -> bool:
    return len(spec) > 2 and spec[1] == ":" and spec[0].isalpha() and spec[2] in "\\/"
