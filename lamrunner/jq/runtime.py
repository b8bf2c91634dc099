"""Run JQ handler programs: the GWO in, one JSON value out.

This is the only module that imports the `jq` binding (an optional dependency: `pip install
'lamrunner[jq]'`); its errors are translated here into one-line ScriptErrors with the line and
column jq gives (compile errors have them; jq reports none for run-time errors). jq's messages
quote the program's source line under the error: that is dropped, as the source may hold a
config value a template filled.

A program yields a stream of values; a handler returns one, so a program that yields none or
more than one is an error that says how to collect them (`[ ... ]`). Reading stops at the
second value, so a program yielding without end (`repeat(.)`) fails at once.

Calls run in a child process (`worker`): jq holds the GIL while it runs, and a process, unlike
a thread, can be killed when the program runs past limits.handlerTimeout.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

import jq

from lamrunner.errors import ScriptError
from lamrunner.units import format_size

_WHERE = re.compile(
    r"^(?:jq: error: )?(.*?) at <(?:top-level|unknown)>, line (\d+)(?:, column (\d+))?:"
)
_MAX_MESSAGE = 500


def check_program(source: str) -> None:
    """Compile the program; ScriptError(kind="syntax") naming the line and column if it does not."""
    try:
        jq.compile(source)
    except ValueError as exc:
        raise _compile_error(exc) from None


def run_here(source: str, data_json: str) -> dict[str, Any]:
    """Compile and run in this process; the worker's answer (never raises for the program)."""
    try:
        program = jq.compile(source)
    except ValueError as exc:
        err = _compile_error(exc)
        return {"error": err.message, "kind": err.kind, "line": err.line, "column": err.column}
    try:
        outputs = iter(program.input_text(data_json))
        first = next(outputs, _NONE)
        second = next(outputs, _NONE) if first is not _NONE else _NONE
    except ValueError as exc:
        return {"error": f"jq error: {_head(str(exc))}", "kind": "exception"}
    except MemoryError:
        return {"error": "out of memory", "kind": "memory"}
    if first is _NONE:
        return {"error": "the program produced no value (empty)", "kind": "result"}
    if second is not _NONE:
        return {
            "error": "the program produced more than one value; collect them into an array "
            "with [ ... ] to return them all",
            "kind": "result",
        }
    try:
        return {"result": json.dumps(first, allow_nan=False)}
    except ValueError:
        return {"error": "the result is not JSON (NaN or infinity)", "kind": "result"}


_NONE: Any = object()


async def call_program(source: str, data_json: str, timeout: float, memory: int) -> str:
    """The program's one value as JSON text, run in a child process under the limits."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lamrunner.jq.worker",
        str(memory),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    request = json.dumps({"program": source, "data": data_json}).encode()
    try:
        out, _err = await asyncio.wait_for(proc.communicate(request), timeout)
    except TimeoutError:
        raise ScriptError(f"ran longer than its {timeout:g}s time limit", kind="timeout") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    try:
        answer = json.loads(out)
    except ValueError:  # killed by its memory cap, or jq aborted
        raise ScriptError(
            f"ran out of its {format_size(memory)} memory limit (or jq stopped: exit "
            f"{proc.returncode})",
            kind="memory",
        ) from None
    if "error" in answer:
        raise ScriptError(
            answer["error"],
            kind=answer["kind"],
            line=answer.get("line"),
            column=answer.get("column"),
        )
    text: str = answer["result"]
    return text


def _compile_error(exc: ValueError) -> ScriptError:
    text = str(exc)
    match = _WHERE.match(text)
    if match is None:
        return ScriptError(f"jq: {_head(text)}", kind="syntax")
    line, column = int(match.group(2)), match.group(3)
    where = f"line {line}" + (f", column {column}" if column else "")
    return ScriptError(
        f"jq: {match.group(1)} ({where})",
        kind="syntax",
        line=line,
        column=int(column) if column else None,
    )


def _head(text: str) -> str:
    head = text.partition("\n")[0].removeprefix("jq: error: ")
    return head if len(head) <= _MAX_MESSAGE else head[:_MAX_MESSAGE] + "…"
