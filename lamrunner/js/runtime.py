"""Run workflow JavaScript (handlers and loopUntil conditions) in QuickJS, safely.

This is the only module that imports the ``quickjs`` binding; every failure it raises is
translated here, once, into a one-line :class:`~lamrunner.errors.ScriptError`.

Why the design is what it is:

* **One thread per context.** A QuickJS context touched by two threads crashes the process, so
  every context is created, used and freed on exactly one thread. Handler calls run start to
  finish inside one job on one worker. Conditions run in per-thread realms kept in
  thread-locals, so neither a stray reference nor a traceback can carry a context to another
  thread (tracebacks are cut before an error leaves a worker).
* **Conditions share hardened realms.** A context costs ~175 KB, so one per polling loop would
  make 10,000 loops cost 1.75 GB. Instead each thread has one realm whose built-ins and global
  object are deep-frozen: a condition cannot leave anything behind (writes are ignored), so
  loops share it without seeing each other, and each source is compiled once. Small conditions
  run inline on the event loop (microseconds, no thread hop) under a 10 ms budget; one that
  overruns it moves to a worker for good, so a runaway holds no other loop back.
* **JSON in, JSON out.** The binding truncates big ints and merges null with undefined, so data
  goes in as JSON text parsed by JS, and results come out as JSON text made by the original
  ``JSON.stringify``, captured (with everything else the engine's JS uses) before user code
  runs, so a handler that redefines ``JSON.stringify``, ``Object.keys`` or ``Array.prototype.*``
  cannot fool the conversion. Anything that is not JSON (undefined, functions, symbols, BigInts,
  cycles, absurd nesting) is an error naming its path, not something silently dropped.
* **One hardened realm per worker for handlers.** Every handler call on a thread reuses that
  thread's context, built once with lodash and date-fns in it (parsing them costs ~10 ms, a
  call ~50 µs). Built-ins and the libraries are deep-frozen, each program runs in a scope of
  its own, the globals a call adds are deleted after it, and a realm that cannot be cleaned or
  ran out of memory is replaced: so globals, prototype pollution and exhausted memory never
  reach another call (see `_HandlerRealm` and lamrunner/js/preload.py).
* **Console is buffered.** The binding refuses to call into Python while a time limit is set,
  so ``console.*`` appends to a capped buffer inside JS that is handed to the caller's callback
  after the call, on the caller's thread, even when the call failed.
* **Limits.** QuickJS checks CPU time with C ``clock()``, which counts the whole process: when
  several workers are busy at once, a script can be stopped before it used its full share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import quickjs

from lamrunner import defaults
from lamrunner.errors import ScriptError
from lamrunner.js import preload
from lamrunner.units import format_size

T = TypeVar("T")


@dataclass(frozen=True)
class JsLimits:
    timeout: float  # seconds of CPU time per call (QuickJS measures with clock())
    memory: int  # bytes

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and self.memory > 0):  # QuickJS reads 0 or less as "no limit"
            raise ValueError(f"JS limits must be positive, got {self}")


HANDLER_LIMITS = JsLimits(timeout=defaults.HANDLER_TIMEOUT, memory=defaults.HANDLER_MEMORY)
CONDITION_LIMITS = JsLimits(timeout=defaults.CONDITION_TIMEOUT, memory=defaults.CONDITION_MEMORY)
_CHECK_LIMITS = JsLimits(timeout=0.5, memory=HANDLER_LIMITS.memory)  # compile-time checks

_THREAD_STACK = 8 * 1024 * 1024  # C stack of worker threads (the binding uses the same)
_JS_STACK = 1024 * 1024  # QuickJS stack limit, well inside the thread stack
_MAX_DEPTH = 500  # result nesting; deeper JSON would also trouble Python's json module
_MAX_LOGS = 1000
_MAX_LOG_CHARS = 1024 * 1024
_MAX_MESSAGE = 500  # characters of a JS error message we repeat


def _fill(js: str, values: dict[str, int]) -> str:
    """Put Python's constants into JS source (the JS keeps braces, so no str.format)."""
    for name, value in values.items():
        js = re.sub(rf"\b{name}\b", str(value), js)
    return js


# Runs before the handler program and returns the engine's entry point, kept by Python only.
# Frames of functions named $lam_* are ours; error locations skip them. Text handed back is
# always made by stringify: the binding cannot read the rope strings concatenation makes.
_PENDING, _BAD_RESULT = 0, 1  # the handler prelude's answers that are not JSON text
_HANDLER_PRELUDE = _fill(
    """((load) => {
  "use strict";
  const stringify = JSON.stringify, parse = JSON.parse, keys = Object.keys,
    isArray = Array.isArray, create = Object.create, setProto = Object.setPrototypeOf,
    apply = Reflect.apply, NativePromise = Promise, Str = String;
  const list = () => setProto([], null);
  const logs = list();
  let nLogs = 0, logChars = 0, dropped = 0, transform;
  const $lam_register = (fn) => { transform = fn; };
  const $lam_show = (v) => {
    if (typeof v === "string") return v;
    try { const s = stringify(v); if (typeof s === "string") return s; } catch (e) {}
    try { return Str(v); } catch (e) { return "[unprintable]"; }
  };
  const logger = (level) => function $lam_log(...args) {
    let text = "";
    for (let i = 0; i < args.length; i++) text += (i === 0 ? "" : " ") + $lam_show(args[i]);
    if (nLogs >= 2 * MAX_LOGS || logChars + text.length > MAX_LOG_CHARS) { dropped++; return; }
    logs[nLogs++] = level; logs[nLogs++] = text; logChars += text.length;
  };
  globalThis.console = { log: logger("info"), info: logger("info"), warn: logger("warning"),
                         error: logger("error"), debug: logger("debug") };

  // One stringify pass whose replacer rejects non-JSON values and nesting deeper than
  // MAX_DEPTH (it tracks the holders on the current path); only on failure does a slower walk
  // find the path to report. Neither calls a method a handler could have replaced.
  const holders = list(), path = list(), seen = list(), BAD = create(null);
  let top = 0, badWhat = "", badDepth = 0, report = null;
  const $lam_replacer = function (key, v) {
    while (top > 0 && holders[top - 1] !== this) top--;
    if (typeof v === "object" && v !== null) {
      if (top >= MAX_DEPTH) throw BAD;
      holders[top++] = v;
    } else if (typeof v === "function" || typeof v === "symbol" || typeof v === "bigint") {
      throw BAD;
    }
    return v;
  };
  const fail = (what, depth) => { badWhat = what; badDepth = depth; throw BAD; };
  const $lam_find = (v, depth) => {
    if ((typeof v === "object" && v !== null) || typeof v === "bigint") {
      const toJSON = v.toJSON;
      if (typeof toJSON === "function") {
        v = apply(toJSON, v, [depth === 0 ? "" : Str(path[depth - 1])]);
      }
    }
    switch (typeof v) {
      case "undefined": return depth === 0 ? fail("undefined", 0) : undefined;
      case "function": return fail("a function", depth);
      case "symbol": return fail("a symbol", depth);
      case "bigint": return fail("a BigInt", depth);
      case "object": if (v !== null) break;
      default: return;
    }
    if (depth >= MAX_DEPTH) fail("too deep", depth);
    for (let i = 0; i < depth; i++) if (seen[i] === v) fail("a circular reference", depth);
    seen[depth] = v;
    const array = isArray(v), ks = array ? null : keys(v), n = array ? v.length : ks.length;
    for (let i = 0; i < n; i++) {
      const k = array ? i : ks[i];
      path[depth] = k;
      $lam_find(v[k], depth + 1);
    }
    seen[depth] = null;
  };
  const $lam_convert = (v) => {  // JSON text, or BAD_RESULT with the report kept for Python
    let failure = BAD;
    try {
      top = 0;
      const text = stringify(v, $lam_replacer);
      if (typeof text === "string") return text;
    } catch (e) {
      failure = e;
    }
    try {
      badWhat = "unstable"; badDepth = 0;
      $lam_find(v, 0);
      throw failure;  // the walk found nothing: values that change when read twice
    } catch (e) {
      if (e !== BAD) throw e;
      const where = list();
      for (let i = 0; i < badDepth; i++) where[i] = path[i];
      report = list(); report[0] = badWhat; report[1] = where;
      return BAD_RESULT;
    }
  };

  let state = 0, settledValue, settledReason;
  const $lam_call = (fn, dataJson) => {
    const r = fn(parse(dataJson));
    if (!(r instanceof NativePromise)) return $lam_convert(r);
    (async function $lam_await() {
      try { settledValue = await r; state = 1; } catch (e) { settledReason = e; state = 2; }
    })();
    return PENDING;
  };
  const $lam_settle = () => {
    if (state === 2) throw settledReason;
    return state === 1 ? $lam_convert(settledValue) : PENDING;
  };
  // The program's value and its `transform`, evaluated in a scope of its own (see LOADER).
  const $lam_load = (source) => {
    transform = undefined;
    const v = load(source, $lam_register), fn = typeof v === "function" ? v : transform;
    transform = undefined;
    if (typeof fn === "function") return fn.length > 1 ? +fn.length : fn;
    if (v === undefined || v === null) return "";
    return isArray(v) ? "array" : typeof v;
  };
  const $lam_reset = () => {  // what one call left in the engine, gone before the next
    nLogs = logChars = dropped = top = state = 0;
    logs.length = holders.length = path.length = seen.length = 0;
    settledValue = settledReason = undefined;
    report = null;
  };
  const $lam_logs = () => {
    const out = list(); out[0] = dropped;
    for (let i = 0; i < nLogs; i++) out[i + 1] = logs[i];
    return stringify(out);
  };
  return function $lam_engine(op, a, b) {
    return op === "load" ? $lam_load(a) : op === "call" ? $lam_call(a, b)
      : op === "settle" ? $lam_settle() : op === "report" ? stringify(report)
      : op === "reset" ? $lam_reset() : $lam_logs();
  };
})""",
    {
        "MAX_LOGS": _MAX_LOGS,
        "MAX_LOG_CHARS": _MAX_LOG_CHARS,
        "MAX_DEPTH": _MAX_DEPTH,
        "PENDING": _PENDING,
        "BAD_RESULT": _BAD_RESULT,
    },
)

# W(ctx) is the compiled condition; a function-valued result is itself called with ctx.
_CONDITION_PRELUDE = """(() => {
  "use strict";
  const parse = JSON.parse, NativePromise = Promise;
  return (W) => typeof W !== "function" ? null : function $lam_condition(ctxJson) {
    let c;
    try { c = parse(ctxJson); }
    catch (e) { if (e instanceof SyntaxError) return "badjson"; throw e; }  // only the body can be bad
    let r = W(c);
    if (typeof r === "function") r = r(c);
    return r instanceof NativePromise ? "async" : !!r;
  };
})()"""

# The same, for a value (`progress`): "v" + JSON of [the value] (undefined as null).
_VALUE_PRELUDE = _CONDITION_PRELUDE.replace(
    '"async" : !!r;', '"async" : "v" + JSON.stringify([r === undefined ? null : r]);'
)

# Tried in order: an expression or function over ctx, then a statement body.
_CONDITION_FORMS = (("(function(ctx){ return (", "\n); })"), ("(function(ctx){ ", "\n})"))

# Deep-freezes everything reachable from the global object, the global object included, so a
# condition cannot leave a trace for the next one (SES-style hardening, without the library).
# In sloppy mode writes to frozen things are ignored, so a condition that tries still runs.
# Returns `harden` for the compiled conditions themselves (no state on `arguments.callee`).
_HARDEN = (
    """(() => {
  "use strict";
  const freeze = Object.freeze, ownKeys = Reflect.ownKeys, proto = Object.getPrototypeOf,
    describe = Object.getOwnPropertyDescriptor;
"""
    + preload.HARDEN_FUNCTION
    + """  harden(globalThis);
  return harden;
})()"""
)
INLINE_BUDGET = 0.010  # seconds of CPU a condition may take on the event-loop thread
INLINE_MAX_CHARS = 64 * 1024  # bigger ctx JSON is parsed on a worker (about 1 ms per 64 KB)
_MAX_COMPILED = 1024  # condition sources kept compiled per realm

_FRAME = re.compile(r"at (?:(\S+) \()?<input>:(\d+):(\d+)")
_BARE_WHERE = re.compile(r"^\s*at <input>:\d+:\d+\s*$")  # a parse error, not a runtime frame
_OUR_FRAME = re.compile(r"^\s*at \$lam_\S* \(")
_ERROR_NAME = re.compile(r"^[A-Z][A-Za-z]*Error\b")
_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_MEMORY_HEADS = ("null", "InternalError: out of memory", "InternalError: string too long")


# ---------------------------------------------------------------- translating failures


def _timeout(limits: JsLimits) -> str:
    return f"ran longer than its {limits.timeout:g}s time limit"


def _translate(
    exc: quickjs.JSException,
    limits: JsLimits,
    *,
    compiling: bool = False,
    shift: int = 0,
) -> ScriptError:
    """Turn a binding exception into a one-line ScriptError (the module's only boundary).

    OOM often reaches us as a bare ``null`` (QuickJS could not even allocate the error). A
    script's own ``throw null`` looks the same, at the boundary and even to a JS ``catch``;
    we report both as the memory limit, the only likely cause, and say so in the message.
    """
    head, _, stack = str(exc).partition("\n")
    head = head if len(head) <= _MAX_MESSAGE else head[:_MAX_MESSAGE] + "…"
    line = column = None
    for name, line_text, column_text in _FRAME.findall(stack):
        if not name.startswith("$lam_") and int(line_text) <= preload.LIBRARY_LINE:
            line, column = int(line_text), int(column_text)
            if line == 1:  # the condition wrapper's prefix sits on line 1
                column = max(1, column - shift)
            break
    where = f" (line {line}, column {column})" if line is not None else ""
    if isinstance(exc, quickjs.StackOverflow):
        kind, text = "stack", "exceeded the maximum call stack depth"
    elif head == "InternalError: interrupted":
        kind, text = "timeout", _timeout(limits)
    elif head in _MEMORY_HEADS or head.startswith("(Failed obtaining"):
        kind, text = "memory", f"ran out of its {format_size(limits.memory)} memory limit"
        if head == "null":
            text += " (QuickJS reports this as `null`; a script that throws null looks the same)"
    elif compiling and head.startswith("SyntaxError") and _parse_error(stack):
        kind, text = "syntax", head
    elif stack.strip() in ("", "undefined") and not _ERROR_NAME.match(head):  # thrown non-Error
        kind, text = "exception", f"uncaught exception: {head}"
    else:
        kind, text = "exception", head
    return ScriptError(text + where, kind=kind, line=line, column=column)


def _parse_error(stack: str) -> bool:
    """A compile error's stack: a bare location, then only our own frames (the loader's)."""
    first, *rest = stack.strip().splitlines() or [""]
    return bool(_BARE_WHERE.match(first)) and all(_OUR_FRAME.match(f) for f in rest)


def _path_text(path: list[Any]) -> str:
    parts = ["result"]
    for key in path:
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            parts.append(f".{key}" if _IDENT.match(key) else f"[{json.dumps(key)}]")
    text = "".join(parts)
    return text if len(text) <= 200 else text[:100] + "…" + text[-90:]


_KINDS = {
    "array": "an array",
    "object": "an object",
    "number": "a number",
    "string": "a string",
    "boolean": "a boolean",
    "bigint": "a BigInt",
    "symbol": "a symbol",
}


def _describe(picked: str | int) -> str:
    """What a handler program evaluated to (the engine's `typeof`, or an arity), for the shape
    error."""
    if isinstance(picked, int):
        return f"a function of {picked} arguments"
    return _KINDS.get(picked, picked) if picked else "nothing (undefined or null)"


def _result_error(report: str) -> ScriptError:
    what, path = json.loads(report)
    if what == "undefined":
        text = "the handler returned undefined (did it forget to `return`?)"
    elif what == "unstable":
        text = "it changed while it was being converted (getters or proxies?)"
    elif what == "too deep":
        text = f"it is nested more than {_MAX_DEPTH} levels deep"
    else:
        text = f"{_path_text(path)} is {what}"
    return ScriptError(f"the result is not JSON: {text}", kind="result")


def _detach(exc: BaseException) -> BaseException:
    """Cut the tracebacks of exc and its causes: their frames hold contexts, which must be freed
    on the thread that made them, not wherever the exception ends up."""
    if not isinstance(exc, ScriptError):
        exc.add_note("".join(traceback.format_exception(exc)))
    link: BaseException | None = exc
    seen: set[int] = set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


def _call_detached(fn: Callable[..., T], *args: Any) -> tuple[T | None, BaseException | None]:
    """Run fn here and hand back (value, None) or (None, detached error), never raising."""
    try:
        return fn(*args), None
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller, on its thread
        return None, _detach(exc)


def _js_text(text: str) -> str:
    """JSON text the binding can pass on: lone surrogates cannot cross as UTF-8, escape them."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(json.loads(text))
    return text


def _new_context(limits: JsLimits) -> quickjs.Context:
    ctx = quickjs.Context()
    ctx.set_memory_limit(limits.memory)
    ctx.set_max_stack_size(_JS_STACK)
    ctx.set_time_limit(limits.timeout)
    return ctx


def _eval_source(ctx: quickjs.Context, source: str) -> Any:
    try:
        return ctx.eval(source)
    except ValueError as exc:  # NUL characters or lone surrogates in the source
        raise ScriptError(f"the script cannot be compiled: {exc}", kind="syntax") from exc


# ---------------------------------------------------------------- handlers


_REALM_SETUP = JsLimits(timeout=30.0, memory=256 * 1024 * 1024)  # our own code, generous
_GC_SLACK = 8 * 1024 * 1024  # garbage a call may leave before the realm collects it at once
_GC_CHECK_AFTER = 0.001  # seconds of CPU: a quicker call cannot have left much garbage


class _HandlerRealm:
    """A worker thread's context for handler calls, made once and reused by every call.

    Building a context with lodash in it costs ~10 ms (parsing 73 KB), so a context per call is
    out; instead each thread keeps one, hardened (preload.HARDEN): built-ins and the preloaded
    libraries are deep-frozen, each program runs in a scope of its own (preload.LOADER), the
    globals a call adds are deleted after it, and the engine's buffers are reset before the
    next. A realm that cannot be cleaned, or that ran out of memory, is dropped and the next call
    on the thread builds a new one. Memory limits count from the realm's own size, so
    `handlerMemory` is what the handler itself may use.
    """

    def __init__(self, libraries: tuple[str, ...] | None = None) -> None:
        """`libraries`: the preloaded programs (the bench passes none for its baseline)."""
        self.ctx = _new_context(_REALM_SETUP)
        try:
            loader = self.ctx.eval(preload.LOADER)(self.ctx.eval("eval"))
            self.engine = self.ctx.eval(_HANDLER_PRELUDE)(loader)
            for source in preload.library_sources() if libraries is None else libraries:
                self.ctx.eval(source)
            self.clean = self.ctx.eval(preload.HARDEN)
        except quickjs.JSException as exc:  # pragma: no cover - our own scripts
            raise _translate(exc, _REALM_SETUP) from exc
        self.base = int(self.ctx.memory()["malloc_size"])
        self.usable = True

    def tidy(self, spent: float) -> None:
        """After a call: delete its globals; collect its garbage if it may have left much."""
        self.ctx.set_time_limit(1.0)
        try:
            self.usable = self.usable and bool(self.clean())
            if (
                self.usable
                and spent > _GC_CHECK_AFTER
                and int(self.ctx.memory()["malloc_size"]) > self.base + _GC_SLACK
            ):
                self.ctx.gc()
        except quickjs.JSException:
            self.usable = False


class _HandlerRun:
    """One handler call in this thread's realm, with one CPU budget for everything it runs."""

    def __init__(self, realm: _HandlerRealm, limits: JsLimits) -> None:
        self.realm, self.limits, self.ctx, self.engine = realm, limits, realm.ctx, realm.engine
        self.ctx.set_memory_limit(realm.base + limits.memory)
        self.started = time.process_time()
        self._js(self.engine, "reset")

    def _js(self, fn: Callable[..., Any], *args: Any, compiling: bool = False) -> Any:
        """Enter JS with what is left of the budget (the binding restarts its clock per entry)."""
        left = self.limits.timeout - (time.process_time() - self.started)
        if left <= 0:
            raise ScriptError(_timeout(self.limits), kind="timeout")
        self.ctx.set_time_limit(left)
        try:
            return fn(*args)
        except quickjs.JSException as exc:
            raise _translate(exc, self.limits, compiling=compiling) from exc

    def load(self, source: str) -> quickjs.Object:
        """Evaluate the program and return its handler function, without calling it."""
        try:
            picked = self._js(self.engine, "load", source, compiling=True)
        except (ValueError, UnicodeError) as exc:  # lone surrogates cannot cross as UTF-8
            raise ScriptError(f"the script cannot be compiled: {exc}", kind="syntax") from exc
        if isinstance(picked, quickjs.Object):
            return picked
        raise ScriptError(
            "the handler must be a one-argument function such as `(data) => {...}` or define "
            f"`function transform(data)`; the program evaluated to {_describe(picked)}",
            kind="shape",
        )

    def call(self, source: str, data_json: str) -> str:
        out = self._js(self.engine, "call", self.load(source), _js_text(data_json))
        while out == _PENDING:  # an async handler: run its jobs until its promise settles
            out = self._js(self.engine, "settle")
            if out == _PENDING and not self._js(self.ctx.execute_pending_job):
                raise ScriptError("the handler's promise never settled", kind="result")
        if out == _BAD_RESULT:
            raise _result_error(self._js(self.engine, "report"))
        text: str = out  # the prelude's "call"/"settle" answer JSON text (the binding is untyped)
        return text

    def drain(self) -> None:
        """Run the promise jobs the call left queued (they would otherwise run in the next
        call), within its budget; a realm whose jobs cannot finish is not reused."""
        try:
            while self._js(self.ctx.execute_pending_job):
                pass
        except ScriptError as err:
            if err.kind in ("timeout", "memory", "stack"):
                self.realm.usable = False

    def logs(self) -> list[tuple[str, str]]:
        """The buffered console lines; best effort, as a context out of memory cannot answer."""
        try:
            self.ctx.set_time_limit(1.0)
            dropped, *flat = json.loads(self.engine("logs"))
        except quickjs.JSException:
            return []
        lines = list(zip(flat[::2], flat[1::2], strict=True))
        if dropped:
            lines.append(("warning", f"{dropped} more console messages were dropped"))
        return lines

    def finish(self, err: ScriptError | None) -> list[tuple[str, str]]:
        """After the call, failed or not: its queued jobs, its logs, then the realm tidied."""
        if err is not None and err.kind == "memory":  # a context out of memory may stay full
            self.realm.usable = False
        if self.realm.usable:
            self.drain()
        lines = self.logs()
        if self.realm.usable:
            self.realm.tidy(time.process_time() - self.started)
        if not self.realm.usable and _local.__dict__.get("handler_realm") is self.realm:
            del _local.handler_realm
        return lines


def _handler_realm() -> _HandlerRealm:
    """This thread's realm for handler calls, made on first use (and after one was dropped)."""
    realm: _HandlerRealm | None = _local.__dict__.get("handler_realm")
    if realm is None:
        realm = _local.handler_realm = _HandlerRealm()
    return realm


def _run_handler(
    source: str, data_json: str | None, limits: JsLimits, realm: _HandlerRealm | None = None
) -> tuple[str | None, list[tuple[str, str]], ScriptError | None]:
    """Load the program (and call it, given data), then leave the realm ready for the next.
    `realm`: this thread's unless given (the bench's baseline)."""
    run = _HandlerRun(realm or _handler_realm(), limits)
    result, err = None, None
    try:
        if data_json is None:
            run.load(source)
        else:
            result = run.call(source, data_json)
    except ScriptError as exc:
        err = exc
    return result, run.finish(err), err


def _warm_up() -> None:
    with contextlib.suppress(ScriptError):  # pragma: no cover - our own scripts
        _handler_realm()


def _handler_job(
    source: str, data_json: str, limits: JsLimits
) -> tuple[str | None, list[tuple[str, str]], BaseException | None]:
    result, logs, err = _run_handler(source, data_json, limits)
    return result, logs, None if err is None else _detach(err)


# ---------------------------------------------------------------- conditions


def _compile_condition(ctx: quickjs.Context, source: str, limits: JsLimits) -> tuple[Any, int]:
    """Compile the condition as W(ctx); returns W and its column shift on line 1."""
    if not source.strip():  # would compile as an empty body: a condition that never holds
        raise ScriptError("the condition is empty", kind="syntax")
    failures: list[tuple[ScriptError, BaseException]] = []
    for head, tail in _CONDITION_FORMS:
        try:
            return _eval_source(ctx, head + source + tail), len(head)
        except quickjs.JSException as exc:
            err = _translate(exc, limits, compiling=True, shift=len(head))
            if err.kind != "syntax":
                raise err from exc
            # No traceback: it would tie this frame (and ctx) into a cycle freed by any thread.
            failures.append((_past_the_end(err, source), exc.with_traceback(None)))
    # Report the reading under which the parser got furthest.
    err, cause = max(failures, key=lambda f: (f[0].line or 0, f[0].column or 0))
    raise err from cause


def _past_the_end(err: ScriptError, source: str) -> ScriptError:
    """A parse error in our wrapper's closing tokens means the condition ended too early."""
    lines = source.split("\n")
    if err.line is None or err.line <= len(lines):
        return err
    line, column = len(lines), len(lines[-1]) + 1
    text = f"SyntaxError: unexpected end of the condition (line {line}, column {column})"
    return ScriptError(text, kind="syntax", line=line, column=column)


class _Realm:
    """One hardened context for conditions, on one thread, shared by every loop on it.

    Deep-frozen built-ins and global object, strict mode: a condition cannot leave anything
    behind (no global, no prototype change), so loops can share a realm without seeing each
    other, and ten thousand loops cost one context per thread, not one each (~175 KB apiece).
    Conditions are compiled once per source and kept.
    """

    def __init__(self, memory: int) -> None:
        self.limits = JsLimits(CONDITION_LIMITS.timeout, memory)
        self.ctx = _new_context(self.limits)
        try:
            self.maker = self.ctx.eval(_CONDITION_PRELUDE)
            self.value_maker = self.ctx.eval(_VALUE_PRELUDE)
            self.harden = self.ctx.eval(_HARDEN)
        except quickjs.JSException as exc:  # pragma: no cover - our own scripts
            raise _translate(exc, self.limits) from exc
        self.compiled: dict[tuple[str, bool], tuple[Any, int]] = {}

    def evaluator(self, source: str, value: bool = False) -> tuple[Any, int]:
        found = self.compiled.get((source, value))
        if found is None:
            if len(self.compiled) >= _MAX_COMPILED:
                self.compiled.clear()
            compiled, shift = _compile_condition(self.ctx, source, self.limits)
            evaluator = (self.value_maker if value else self.maker)(compiled)
            self.harden(compiled)
            if evaluator is None:
                raise ScriptError(
                    "the condition must be an expression over ctx, a function of ctx, "
                    "or a function body that returns a value",
                    kind="syntax",
                )
            found = self.compiled[(source, value)] = (evaluator, shift)
        return found

    def evaluate(
        self, source: str, ctx_json: str, limits: JsLimits, budget: float, value: bool = False
    ) -> Any:
        """The condition's truthiness; with `value`, what the function returns, as JSON data."""
        evaluator, shift = self.evaluator(source, value)
        self.ctx.set_time_limit(budget)
        try:
            result = evaluator(_js_text(ctx_json))
        except quickjs.JSException as exc:
            err = _translate(exc, limits, shift=shift)
            if err.kind == "timeout" and budget < limits.timeout:
                err = ScriptError("over the inline budget", kind="budget")
            raise err from exc
        if result == "async":
            raise ScriptError(
                "a condition must return a value, not a Promise (async is not supported)",
                kind="exception",
            )
        if result == "badjson":
            raise ScriptError("the response says it is JSON but is not", kind="badjson")
        if value:
            return json.loads(result[1:])[0]
        return bool(result)


_local = threading.local()  # per thread: {memory limit: _Realm}, and its _HandlerRealm


def _evaluate_here(
    source: str, ctx_json: str, limits: JsLimits, budget: float, value: bool = False
) -> Any:
    """Evaluate in this thread's realm; a realm that ran out of memory is replaced."""
    try:
        return _realm(limits.memory).evaluate(source, ctx_json, limits, budget, value)
    except ScriptError as err:
        if err.kind == "memory":  # a context that ran out of memory may stay full
            _local.realms.pop(limits.memory, None)
        raise


def _realm(memory: int) -> _Realm:
    """This thread's realm for conditions with this memory limit, made on first use."""
    realms: dict[int, _Realm] = _local.__dict__.setdefault("realms", {})
    realm = realms.get(memory)
    if realm is None:
        realm = realms[memory] = _Realm(memory)
    return realm


def _evaluate_job(source: str, ctx_json: str, limits: JsLimits, value: bool = False) -> Any:
    return _evaluate_here(source, ctx_json, limits, limits.timeout, value)


def _free_all_job() -> None:
    _local.__dict__.pop("realms", None)
    _local.__dict__.pop("handler_realm", None)


# ---------------------------------------------------------------- public API


def _check_handler_here(source: str) -> None:
    _, _, err = _run_handler(source, None, _CHECK_LIMITS)
    if err is not None:
        raise err


def _check_condition_here(source: str) -> None:
    _evaluate_check(source, CONDITION_LIMITS)


def check_handler(source: str) -> None:
    """Evaluate a handler program on this thread and check its shape, without calling it.

    Top-level code does run (that is how the program yields its function), under a short limit.
    """
    _, err = _call_detached(_check_handler_here, source)
    if err is not None:
        raise err


def check_condition(source: str) -> None:
    """Raise ScriptError(kind="syntax") unless the condition compiles; does not evaluate it."""
    _, err = _call_detached(_check_condition_here, source)
    if err is not None:
        raise err


class _Worker:
    """A single-thread executor; the thread is the only one to touch its contexts."""

    def __init__(self, index: int) -> None:
        old = threading.stack_size()
        try:
            threading.stack_size(_THREAD_STACK)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"lamrunner-js-{index}")
            self._pool.submit(int).result()  # start the thread now, with the large stack
        finally:
            threading.stack_size(old)
        self._pool.submit(_warm_up)  # its handler realm (~50 ms), before the first call if idle
        self.pending = 0  # jobs submitted and not yet done (event-loop side)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            job = self._pool.submit(_call_detached, fn, *args)
        except RuntimeError:
            raise RuntimeError("the JsEngine is closed") from None
        self.pending += 1
        try:
            value, err = await asyncio.wrap_future(job)
        finally:
            self.pending -= 1
        if err is not None:
            raise err
        return value  # type: ignore[return-value]

    def shutdown(self) -> None:
        """Free every context here once running jobs end; does not wait for them."""
        with contextlib.suppress(RuntimeError):
            self._pool.submit(_free_all_job)
        self._pool.shutdown(wait=False)


_ON_WORKER: Any = object()  # Condition._inline: this evaluation goes to a worker thread


class Condition:
    """A loopUntil condition: evaluated inline when cheap, on a free worker when not.

    Small ctx (under INLINE_MAX_CHARS of JSON) is evaluated on the calling (event-loop) thread
    within an INLINE_BUDGET of CPU: typical conditions take microseconds, and a hop to a
    thread would cost a hundred times that. One that runs past the budget is evaluated again
    on the least busy worker with its full limit (a hardened realm holds no state, so running
    it twice is safe) and goes to workers from then on. So a runaway condition stalls the
    event loop for at most INLINE_BUDGET, once, and never holds up another loop's condition.
    """

    def __init__(
        self, engine: JsEngine, source: str, limits: JsLimits, value: bool = False
    ) -> None:
        self._engine, self._source, self._limits = engine, source, limits
        self._value = value
        self._slow = self._closed = False

    async def evaluate(self, ctx_json: str) -> Any:
        """The condition's truthiness for this ctx (JSON text); for a value function
        (`open_function`: `nextDelay`), its number or None (null, undefined: no opinion)."""
        value = self._value
        result = self._inline(ctx_json, value)
        if result is _ON_WORKER:
            result = await self._on_worker(ctx_json, value)
        if not value:
            return bool(result)
        if result is None or (isinstance(result, int | float) and not isinstance(result, bool)):
            return result
        kind = {str: "string", bool: "boolean"}.get(type(result), "object")
        raise ScriptError(f"expected a number of milliseconds, got a {kind}", kind="exception")

    async def evaluate_value(self, ctx_json: str, value: bool = True) -> Any:
        """What the function returns for this ctx, as JSON data (`progress`); with `value`
        false, its truthiness."""
        result = self._inline(ctx_json, value)
        if result is _ON_WORKER:
            result = await self._on_worker(ctx_json, value)
        return result

    def _inline(self, ctx_json: str, value: bool) -> Any:
        """The evaluation on this thread when it is small and quick enough, else _ON_WORKER.

        Plain code, not a coroutine: the inline path is every poll attempt's, and `evaluate`
        awaits nothing on it (a coroutine per call would cost more than the condition)."""
        if self._closed or self._engine._closed:
            raise RuntimeError(
                "the condition is closed" if self._closed else "the JsEngine is closed"
            )
        if self._slow or len(ctx_json) > INLINE_MAX_CHARS:
            return _ON_WORKER
        budget = min(INLINE_BUDGET, self._limits.timeout)
        try:  # this thread's own realm: no traceback detaching needed
            return _evaluate_here(self._source, ctx_json, self._limits, budget, value)
        except ScriptError as err:
            if err.kind != "budget":
                raise
        self._slow = True
        return _ON_WORKER

    def _on_worker(self, ctx_json: str, value: bool) -> Coroutine[Any, Any, Any]:
        worker = self._engine._pick()
        return worker.run(_evaluate_job, self._source, ctx_json, self._limits, value)

    async def aclose(self) -> None:
        """Nothing to free (realms belong to threads, not to loops); later evaluations fail."""
        self._closed = True


class JsEngine:
    """Worker threads for handler calls and for conditions too slow to run inline."""

    def __init__(self, workers: int = 4) -> None:
        if workers < 1:
            raise ValueError("JsEngine needs at least one worker")
        self._size = workers
        self._workers: list[_Worker] = []
        self._closed = False

    def _pick(self) -> _Worker:
        """The least busy worker, starting a new thread while every existing one is busy."""
        if self._closed:
            raise RuntimeError("the JsEngine is closed")
        best = min(self._workers, key=lambda w: w.pending, default=None)
        if best is None or (len(self._workers) < self._size and best.pending):
            best = _Worker(len(self._workers))
            self._workers.append(best)
        return best

    async def call_handler(
        self,
        source: str,
        data_json: str,
        limits: JsLimits,
        console: Callable[[str, str], None],
    ) -> str:
        """Call the handler with the data in a fresh context; the result as JSON text.

        Console lines are buffered in JS and passed to `console` here, after the call (also
        when it failed): the binding cannot call Python while a time limit is set.
        """
        result, logs, err = await self._pick().run(_handler_job, source, data_json, limits)
        for level, text in logs:
            console(level, text)
        if err is not None:
            raise err
        assert result is not None
        return result

    async def open_condition(self, source: str, limits: JsLimits) -> Condition:
        """Compile-check the condition (inline: it is cheap) and return its handle."""
        if self._closed:
            raise RuntimeError("the JsEngine is closed")
        _, err = _call_detached(_evaluate_check, source, limits)
        if err is not None:
            raise err
        return Condition(self, source, limits)

    async def open_function(self, source: str, limits: JsLimits) -> Condition:
        """As `open_condition`, for a function of ctx whose number is kept (`nextDelay`):
        `evaluate` returns it (None for null or undefined; a ScriptError of kind
        "exception" for anything else)."""
        if self._closed:
            raise RuntimeError("the JsEngine is closed")
        _, err = _call_detached(_evaluate_check, source, limits, True)
        if err is not None:
            raise err
        return Condition(self, source, limits, value=True)

    def close(self) -> None:
        """Stop the workers (running jobs finish, then contexts are freed); idempotent."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            worker.shutdown()


def _evaluate_check(source: str, limits: JsLimits, value: bool = False) -> None:
    """Compile the condition into this thread's realm (cached for the evaluations to come)."""
    _realm(limits.memory).evaluator(source, value)
