"""Hostile JavaScript through the whole runner: workflow files with JS handlers, and loopUntil
conditions polling the scripted `api` server.

Every case either ends the run with a clear, one-line error of the right type (HandlerError for a
handler, ConditionError for a condition that breaks a limit, PollingExhausted quoting the
exception for a condition that merely throws), or is harmless and succeeds with the isolation
property intact. Limits are small so the file stays fast; every run is wrapped in
`asyncio.wait_for`, so a hang fails the test instead of blocking the suite.

The last section checks that, while a runaway handler or condition burns its whole budget,
other polling loops in the same process keep their schedule and the event loop stays live.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from conftest import Reply, ScriptedAPI, WorkflowDir, run_path

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.js.runtime import JsEngine
from lamrunner.runner.engine import Engine

LIMITS = {
    "handlerTimeout": "500ms",
    "conditionTimeout": "300ms",
    "handlerMemory": "32MB",
    "conditionMemory": "16MB",
}
BOUND = 20.0  # seconds: a run that takes longer than this is a hang, not a slow test

_names = itertools.count()  # Python handler modules are cached by path: keep names unique


# ---------------------------------------------------------------- helpers


async def bounded(awaitable: Awaitable[Any], bound: float = BOUND) -> Any:
    return await asyncio.wait_for(awaitable, bound)


def js_steps(wf: WorkflowDir, *sources: str) -> list[str]:
    return [wf.handler(f"js_{next(_names)}.js", source) for source in sources]


def poll_step(wf: WorkflowDir, url: str, condition: str, **loop: Any) -> str:
    loop = {"condition": condition, "maxAttempts": 2, "initialDelay": "10ms", **loop}
    return wf.request_step(f"poll_{next(_names)}", {"method": "GET", "url": url, "loopUntil": loop})


async def run_steps(
    wf: WorkflowDir,
    steps: list[str],
    limits: dict[str, Any] | None = None,
    input_data: Any = None,
    **engine_options: Any,
) -> dict[str, Any]:
    path = wf.workflow(steps, limits=LIMITS if limits is None else limits)
    return await bounded(run_path(path, input_data, **engine_options))


async def run_js(wf: WorkflowDir, *sources: str, **kw: Any) -> dict[str, Any]:
    return await run_steps(wf, js_steps(wf, *sources), **kw)


async def run_condition(
    api: ScriptedAPI, wf: WorkflowDir, condition: str, reply: Reply | None = None, **loop: Any
) -> dict[str, Any]:
    api.script("GET", "/job", reply or Reply(json={"state": "done"}))
    return await run_steps(wf, [poll_step(wf, api.url + "/job", condition, **loop)])


def failed(record: dict[str, Any], error_type: str, *needles: str) -> str:
    """Assert a clean failure of `error_type` whose one-line message holds every needle."""
    assert record["status"] == "FAILED", record
    error = record["error"]
    assert error["type"] == error_type, error
    message = error["message"]
    assert message and "\n" not in message and len(message) < 1000, message
    for needle in needles:
        assert needle in message, message
    return message


def succeeded(record: dict[str, Any]) -> Any:
    assert record["status"] == "SUCCESS", record["error"]
    return record["result"]


def exhausted_quoting(record: dict[str, Any], *needles: str) -> str:
    """A condition that throws counts as false; the final error quotes the last exception."""
    return failed(record, "PollingExhausted", "condition threw", *needles)


# ---------------------------------------------------------------- runaway CPU


async def test_runaway_loop_handler(wf):
    started = time.monotonic()
    record = await run_js(wf, "(data) => { while (true) {} }")
    failed(record, "HandlerError", "handlerTimeout", "0.5s")
    assert time.monotonic() - started < 3.0


async def test_runaway_loop_condition(api, wf):
    record = await run_condition(api, wf, "(ctx) => { while (true) {} }")
    failed(record, "ConditionError", "loopUntil.condition", "conditionTimeout", "0.3s")
    assert len(api.requests_to("/job")) == 1  # a limit fails the step at once


async def test_runaway_loop_in_fail_when(api, wf):
    api.script("GET", "/job", Reply(json={"state": "running"}))
    step = poll_step(
        wf, api.url + "/job", "ctx.response.state === 'done'", failWhen="(ctx) => { for (;;) {} }"
    )
    record = await run_steps(wf, [step])
    failed(record, "ConditionError", "loopUntil.failWhen", "conditionTimeout")


REDOS = "/(a+)+$/.test('a'.repeat(40) + 'b')"


async def test_catastrophic_regex_handler(wf):
    failed(await run_js(wf, f"() => {REDOS}"), "HandlerError", "handlerTimeout")


async def test_catastrophic_regex_condition(api, wf):
    record = await run_condition(api, wf, f"(ctx) => {REDOS}")
    failed(record, "ConditionError", "conditionTimeout")


async def test_runaway_async_loop_handler(wf):
    record = await run_js(wf, "async (data) => { while (true) await null }")
    failed(record, "HandlerError", "handlerTimeout")


async def test_never_settling_promise_handler(wf):
    started = time.monotonic()
    record = await run_js(wf, "(data) => new Promise(() => {})")
    failed(record, "HandlerError", "never settled")
    assert time.monotonic() - started < 2.0


async def test_runaway_to_json_during_result_conversion(wf):
    record = await run_js(wf, "() => ({ok: 1, toJSON() { for (;;) {} }})")
    failed(record, "HandlerError", "handlerTimeout")


async def test_runaway_top_level_code_is_refused_before_anything_runs(wf):
    wf.handler("top.js", "while (true) {}\n(data) => data\n")
    with pytest.raises(DefinitionError, match="time limit"):
        load_workflow(wf.workflow(["top.js"], limits=LIMITS), env={})


# ---------------------------------------------------------------- memory and stack

BOMBS = {
    "doubling-string": "let s = 'x'; while (true) s += s",
    "small-objects": "const a = []; for (let i = 0; i < 5e6; i++) a.push({i}); return a.length",
}


@pytest.mark.parametrize("bomb", list(BOMBS), ids=list(BOMBS))
async def test_memory_bomb_handler(wf, bomb):
    record = await run_js(
        wf, f"(data) => {{ {BOMBS[bomb]} }}", "(data) => 'the next step still runs'"
    )
    failed(record, "HandlerError", "handlerMemory", "memory limit")
    assert "step_2" not in record["gwo"]


@pytest.mark.parametrize("bomb", list(BOMBS), ids=list(BOMBS))
async def test_memory_bomb_condition(api, wf, bomb):
    record = await run_condition(api, wf, f"(ctx) => {{ {BOMBS[bomb]} }}")
    failed(record, "ConditionError", "conditionMemory", "memory limit")


async def test_fifty_megabyte_result_is_a_clean_memory_error(wf):
    record = await run_js(wf, "(data) => 'x'.repeat(50e6)")
    failed(record, "HandlerError", "handlerMemory")
    # Under the default (Laminar's) 100 MB limit too: the result and its JSON text do not fit.
    record = await run_js(wf, "(data) => 'x'.repeat(50e6)", limits={"handlerTimeout": "5s"})
    failed(record, "HandlerError", "handlerMemory")
    record = await run_js(wf, "(data) => 'x'.repeat(50e6).length", limits={})
    assert succeeded(record) == 50_000_000  # the string itself fits: it is the result that doesn't


async def test_fifty_megabyte_condition_string(api, wf):
    record = await run_condition(api, wf, "(ctx) => 'x'.repeat(50e6).length > 0")
    failed(record, "ConditionError", "conditionMemory")


async def test_deep_recursion_handler(wf):
    record = await run_js(wf, "function transform(d) { return transform(d) + 1 }")
    failed(record, "HandlerError", "maximum call stack")


async def test_deep_recursion_condition(api, wf):
    record = await run_condition(api, wf, "function f(n) { return f(n + 1) + 1 }\nreturn f(0)")
    failed(record, "ConditionError", "loopUntil.condition", "maximum call stack")


DEEP_OBJECT = "let o = {}; for (let i = 0; i < 100000; i++) o = {a: o};"
DEEP_ARRAY = "let o = []; for (let i = 0; i < 100000; i++) o = [o];"


async def test_stringify_of_a_100k_deep_object_handler(wf):
    record = await run_js(wf, f"() => {{ {DEEP_OBJECT} return JSON.stringify(o).length }}")
    failed(record, "HandlerError", "maximum call stack")


async def test_stringify_of_a_100k_deep_object_condition(api, wf):
    record = await run_condition(api, wf, f"(ctx) => {{ {DEEP_OBJECT} return JSON.stringify(o) }}")
    failed(record, "ConditionError", "maximum call stack")


async def test_returning_a_100k_deep_array_handler(wf):
    record = await run_js(wf, f"() => {{ {DEEP_ARRAY} return o }}")
    failed(record, "HandlerError", "not JSON", "nested more than")


async def test_returning_a_100k_deep_array_condition_is_just_truthy(api, wf):
    # A condition's value is only tested for truth, never converted: harmless.
    record = await run_condition(api, wf, f"(ctx) => {{ {DEEP_ARRAY} return o }}")
    assert succeeded(record) == {"state": "done"}


# ---------------------------------------------------------------- results that are not JSON


@pytest.mark.parametrize(
    ("source", "needles"),
    [
        ("() => ({run: () => 1})", ("result.run is a function",)),
        ("() => (x) => x", ("result is a function",)),
        ("() => { const o = {a: {}}; o.a.back = o; return o }", ("circular",)),
        ("() => undefined", ("undefined",)),
        ("() => { }", ("undefined",)),
        ("() => ({n: 10n})", ("result.n is a BigInt",)),
        ("() => [Symbol('s')]", ("result[0] is a symbol",)),
    ],
    ids=["function-inside", "function", "cycle", "undefined", "no-return", "bigint", "symbol"],
)
async def test_non_json_result_handler(wf, source, needles):
    failed(await run_js(wf, source), "HandlerError", "not JSON", *needles)


async def test_throwing_getter_during_conversion(wf):
    record = await run_js(wf, "() => ({get x() { throw new Error('gotcha') }})")
    failed(record, "HandlerError", "gotcha")


@pytest.mark.parametrize(
    "value",
    ["() => 1", "10n", "Symbol('s')", "(() => { const o = {}; o.o = o; return o })()"],
    ids=["function", "bigint", "symbol", "cycle"],
)
async def test_non_json_condition_values_are_only_tested_for_truth(api, wf, value):
    assert succeeded(await run_condition(api, wf, f"(ctx) => {value}")) == {"state": "done"}


async def test_condition_returning_undefined_is_false(api, wf):
    failed(await run_condition(api, wf, "(ctx) => undefined"), "PollingExhausted", "2 attempts")


# ---------------------------------------------------------------- thrown values


@pytest.mark.parametrize(
    ("throw", "shown"),
    [("42", "42"), ("{a: 1}", "[object Object]"), ("'plain'", "plain"), ("undefined", "undefined")],
)
async def test_throwing_non_errors_handler(wf, throw, shown):
    record = await run_js(wf, f"() => {{ throw {throw} }}")
    message = failed(record, "HandlerError", f"uncaught exception: {shown}")
    assert "limit" not in message


@pytest.mark.parametrize(
    ("throw", "shown"),
    [("42", "42"), ("{a: 1}", "[object Object]"), ("undefined", "undefined")],
)
async def test_throwing_non_errors_condition(api, wf, throw, shown):
    record = await run_condition(api, wf, f"(ctx) => {{ throw {throw} }}")
    exhausted_quoting(record, f"uncaught exception: {shown}")
    assert len(api.requests_to("/job")) == 2


async def test_throw_null_handler_is_reported_with_the_memory_ambiguity(wf):
    """QuickJS reports running out of memory as a bare `null`, even to a JS `catch`, so a
    script's own `throw null` cannot be told apart: the message names the limit and says so."""
    record = await run_js(wf, "() => { throw null }")
    message = failed(record, "HandlerError", "handlerMemory")
    assert "throws null looks the same" in message


async def test_throw_null_condition_fails_like_a_memory_error(api, wf):
    """The same ambiguity in a condition: it fails the step (ConditionError) at once."""
    record = await run_condition(api, wf, "(ctx) => { throw null }")
    message = failed(record, "ConditionError", "conditionMemory")
    assert "throws null looks the same" in message
    assert len(api.requests_to("/job")) == 1


# ---------------------------------------------------------------- promises and async


async def test_condition_returning_a_promise(api, wf):
    record = await run_condition(api, wf, "(ctx) => Promise.resolve(true)")
    exhausted_quoting(record, "Promise")


async def test_async_condition_that_never_resolves(api, wf):
    record = await run_condition(api, wf, "async (ctx) => { await new Promise(() => {}) }")
    exhausted_quoting(record, "Promise")


# ---------------------------------------------------------------- sandbox surface

HOST_NAMES = [
    "require",
    "std",
    "os",
    "fetch",
    "XMLHttpRequest",
    "setTimeout",
    "setInterval",
    "process",
    "Deno",
    "scriptArgs",
    "print",
    "importScripts",
]


async def test_host_objects_are_undefined_in_handlers(wf):
    source = f"() => {json.dumps(HOST_NAMES)}.map((n) => [n, typeof globalThis[n]])"
    assert dict(succeeded(await run_js(wf, source))) == dict.fromkeys(HOST_NAMES, "undefined")


async def test_host_objects_are_undefined_in_conditions(api, wf):
    names = json.dumps(HOST_NAMES)
    condition = f"(ctx) => {names}.every((n) => typeof globalThis[n] === 'undefined')"
    assert succeeded(await run_condition(api, wf, condition)) == {"state": "done"}


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ("require('fs')", "require is not defined"),
        ("fetch('http://127.0.0.1/')", "fetch"),
        ("setTimeout(() => 1, 0)", "setTimeout"),
        ("new XMLHttpRequest()", "XMLHttpRequest"),
        ("std.loadFile('/etc/passwd')", "std"),
        ("os.exec(['id'])", "os"),
    ],
)
async def test_calling_host_functions_fails_cleanly(api, wf, call, needle):
    failed(await run_js(wf, f"() => {call}"), "HandlerError", "ReferenceError", needle)
    exhausted_quoting(await run_condition(api, wf, f"(ctx) => {call}"), "ReferenceError", needle)


@pytest.mark.parametrize("module", ["os", "std", "/etc/passwd", "./secrets.js"])
async def test_dynamic_import_fails_cleanly(api, wf, module):
    failed(await run_js(wf, f"() => import({module!r})"), "HandlerError", "could not load module")
    record = await run_js(wf, f"async () => {{ const m = await import({module!r}); return 1 }}")
    failed(record, "HandlerError", "could not load module")
    exhausted_quoting(await run_condition(api, wf, f"(ctx) => import({module!r})"), "Promise")


async def test_static_import_is_refused_at_load(wf):
    wf.handler("imp.js", "import * as os from 'os';\n(data) => os.getcwd()\n")
    with pytest.raises(DefinitionError, match="SyntaxError"):
        load_workflow(wf.workflow(["imp.js"], limits=LIMITS), env={})


async def test_eval_and_new_function_work_but_stay_confined(api, wf):
    api.script("GET", "/job", Reply(json={"state": "done"}))
    step_1 = """(data) => {
        eval('globalThis.fromEval = 1');
        const g = new Function('return this')();
        g.fromFunction = 2;
        const add = new Function('a', 'b', 'return a + b');
        return {sum: add(2, 3), evaled: eval('6 * 7'), seen: [fromEval, fromFunction],
                host: [typeof g.std, typeof g.os, typeof g.fetch]};
    }"""
    step_2 = "() => [typeof fromEval, typeof fromFunction]"
    condition = (
        "(ctx) => new Function('c', 'return c.status === 200')(ctx)"
        " && eval('typeof fromEval + typeof std') === 'undefinedundefined'"
    )
    steps = [*js_steps(wf, step_1, step_2), poll_step(wf, api.url + "/job", condition)]
    record = await run_steps(wf, steps)
    assert succeeded(record) == {"state": "done"}
    assert record["gwo"]["step_1"]["data"] == {
        "sum": 5,
        "evaled": 42,
        "seen": [1, 2],
        "host": ["undefined"] * 3,
    }
    assert record["gwo"]["step_2"]["data"] == ["undefined", "undefined"]


async def test_date_and_math_random_are_available(api, wf):
    source = "() => ({now: Date.now(), iso: new Date(0).toISOString(), r: Math.random()})"
    result = succeeded(await run_js(wf, source))
    assert abs(result["now"] / 1000 - time.time()) < 60
    assert result["iso"] == "1970-01-01T00:00:00.000Z" and 0 <= result["r"] < 1
    condition = "(ctx) => Date.now() > 0 && Math.random() < 1 && !isNaN(new Date().getTime())"
    assert succeeded(await run_condition(api, wf, condition)) == {"state": "done"}


# ---------------------------------------------------------------- isolation between contexts

POLLUTE = """(data) => {
    Object.prototype.x = 1;
    Object.prototype.state = 'polluted';
    Array.prototype.map = function () { return ['hijacked'] };
    Array.prototype.includes = () => true;
    globalThis.leak = 'secret';
    JSON.parse = () => ({state: 'fake'});
    return 'polluted';
}"""
PROBE = """(data) => ({
    x: ({}).x === undefined,
    map: [1, 2].map((n) => n * 2),
    includes: [1].includes(5),
    leak: typeof leak,
    parse: JSON.parse('{"a":1}'),
})"""
CLEAN = {"x": True, "map": [2, 4], "includes": False, "leak": "undefined", "parse": {"a": 1}}
CLEAN_EXPRESSION = (
    "({}).x === undefined && typeof leak === 'undefined' "
    "&& [1, 2].map((n) => n * 2)[1] === 4 && ![1].includes(5) "
    "&& ctx.response.state === 'done' && JSON.parse('{\"a\":1}').a === 1"
)
CLEAN_CONDITION = f"(ctx) => {CLEAN_EXPRESSION}"


async def test_pollution_in_one_step_is_invisible_to_the_next_and_to_conditions(api, wf):
    api.script("GET", "/job", Reply(json={"state": "done"}))
    steps = [
        *js_steps(wf, POLLUTE, PROBE),
        poll_step(wf, api.url + "/job", CLEAN_CONDITION),
        *js_steps(wf, PROBE),
    ]
    record = await run_steps(wf, steps)
    assert succeeded(record) == CLEAN
    assert record["gwo"]["step_2"]["data"] == CLEAN
    assert record["gwo"]["step_3"]["http"]["attempts"] == 1


async def test_condition_pollution_is_ignored(api, wf):
    """Conditions run in a hardened (deep-frozen) realm: their writes to globals and built-ins
    are ignored, so nothing reaches other loops, later handlers, or their own next attempt."""
    api.script("GET", "/a", Reply(json={"state": "done"}))
    api.script("GET", "/b", Reply(json={"state": "done"}))
    polluting = (
        "globalThis.n = (globalThis.n || 0) + 1; Object.prototype.x = 1; "
        "globalThis.leak = 1; Array.prototype.map = null; "
        "return globalThis.n === undefined && ctx.attempt >= 3"
    )
    steps = [
        poll_step(wf, api.url + "/a", polluting, maxAttempts=5),
        poll_step(wf, api.url + "/b", "typeof n === 'undefined' && " + CLEAN_EXPRESSION),
        *js_steps(wf, PROBE),
    ]
    record = await run_steps(wf, steps)
    assert succeeded(record) == CLEAN
    assert record["gwo"]["step_1"]["http"]["attempts"] == 3
    assert record["gwo"]["step_2"]["http"]["attempts"] == 1


async def test_condition_mutating_ctx_is_harmless(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "running"}),
        Reply(json={"state": "running"}),
        Reply(json={"state": "done", "rows": 3}),
    )
    condition = """(ctx) => {
        const done = ctx.response.state === 'done' && ctx.attempt === 3;
        ctx.response.state = 'failed'; ctx.status = 500; ctx.attempt = 99; delete ctx.headers;
        Object.freeze(ctx);
        return done;
    }"""
    fail_when = "(ctx) => ctx.response.state === 'failed' || ctx.status !== 200 || !ctx.headers"
    step = poll_step(wf, api.url + "/job", condition, maxAttempts=5, failWhen=fail_when)
    record = await run_steps(wf, [step, *js_steps(wf, "(d) => d.step_1.response")])
    assert succeeded(record) == {"state": "done", "rows": 3}
    assert record["gwo"]["step_1"]["http"]["status"] == 200


async def test_replaced_builtins_do_not_break_result_conversion(wf):
    source = """(data) => {
        JSON.stringify = () => '"hijacked"';
        JSON.parse = () => ({});
        Object.keys = () => [];
        Object.entries = () => [];
        Array.isArray = () => false;
        Array.prototype.map = () => [];
        Array.prototype.forEach = () => {};
        Array.prototype.push = () => 0;
        Array.prototype[Symbol.iterator] = function* () {};
        return {list: [1, 2, 3], nested: {ok: true, deep: [{a: 'b'}]}, input: data.input};
    }"""
    # Built-ins are frozen (one realm per worker serves every call): these sloppy-mode writes
    # are ignored, and the result converts as if nothing happened.
    record = await run_js(wf, source, PROBE, input_data={"n": 1})
    assert record["gwo"]["step_1"]["data"] == {
        "list": [1, 2, 3],
        "nested": {"ok": True, "deep": [{"a": "b"}]},
        "input": {"n": 1},
    }
    assert succeeded(record) == CLEAN


async def test_redefining_a_builtin_fails_the_step_and_leaves_the_next_clean(wf):
    source = """(data) => {
        Object.defineProperty(Object.prototype, 'toJSON', {value: undefined, writable: true});
        return 1;
    }"""
    record = await run_js(wf, source, PROBE)
    assert record["status"] == "FAILED"
    assert "TypeError" in record["error"]["message"]
    record = await run_js(wf, POLLUTE, PROBE)
    assert succeeded(record) == CLEAN


async def test_replaced_builtins_in_a_condition_do_not_break_later_attempts(api, wf):
    api.script("GET", "/job", Reply(json={"state": "running"}), Reply(json={"state": "done"}))
    condition = """(ctx) => {
        const done = ctx.response.state === 'done';
        JSON.parse = () => ({response: {state: 'done'}});
        Object.keys = () => { throw new Error('hijacked') };
        Boolean = () => true;
        return done;
    }"""
    record = await run_condition(api, wf, condition, maxAttempts=3)
    assert succeeded(record) == {"state": "done"}
    assert record["gwo"]["step_1"]["http"]["attempts"] == 2


def engine_for(path: Path, **options: Any) -> Engine:
    workflow = load_workflow(path, env={})
    return Engine(workflow, build_config(workflow.config, (), (), {}), **options)


@pytest.mark.parametrize("sharing", ["separate", "shared-1-worker", "shared-4-workers"])
async def test_pollution_does_not_cross_concurrent_runs(api, tmp_path, sharing):
    """Two Engine runs at once, one polluting (handler and condition), one checking."""
    api.script("GET", "/slow", Reply(json={"state": "running"}))
    api.script("GET", "/check", Reply(json={"state": "done"}))
    polluter_dir, checker_dir = WorkflowDir(tmp_path / "p"), WorkflowDir(tmp_path / "c")
    for d in (polluter_dir, checker_dir):
        d.root.mkdir()
    busy = "const end = Date.now() + 150; while (Date.now() < end) {}"
    pollute_and_wait = POLLUTE.replace("return 'polluted';", busy + " return 'polluted';")
    polluting_condition = (
        "Object.prototype.x = 1; globalThis.leak = 1; "
        "Array.prototype.map = () => []; return ctx.attempt >= 6"
    )
    polluter = polluter_dir.workflow(
        [
            *js_steps(polluter_dir, pollute_and_wait),
            poll_step(polluter_dir, api.url + "/slow", polluting_condition, maxAttempts=6),
            *js_steps(polluter_dir, pollute_and_wait),
        ],
        limits={**LIMITS, "handlerTimeout": "2s"},
    )
    checker = checker_dir.workflow(
        [
            *js_steps(checker_dir, *[PROBE] * 4),
            poll_step(checker_dir, api.url + "/check", CLEAN_CONDITION),
            *js_steps(checker_dir, *[PROBE] * 4),
        ],
        limits=LIMITS,
    )
    shared = None if sharing == "separate" else JsEngine(workers=1 if "1" in sharing else 4)
    try:
        options = {} if shared is None else {"js": shared}
        engines = [engine_for(polluter, **options), engine_for(checker, **options)]
        checks = []
        for _ in range(3):  # checker rounds while the polluter is still going
            first, second = await bounded(asyncio.gather(engines[0].run(), engines[1].run()))
            assert succeeded(first) == "polluted"
            assert succeeded(second) == CLEAN
            checks.append(second)
    finally:
        if shared is not None:
            shared.close()
    for record in checks:
        for key in ("step_1", "step_2", "step_3", "step_4", "step_6", "step_7", "step_8"):
            assert record["gwo"][key]["data"] == CLEAN, key


async def test_the_process_is_fine_after_every_kind_of_abuse(api, wf):
    """After bombs, runaways and stack overflows in one engine, the same engine runs clean code."""
    shared = JsEngine(workers=2)
    try:
        for source in [
            f"() => {{ {BOMBS['doubling-string']} }}",
            "() => { while (true) {} }",
            "function transform(d) { return transform(d) }",
            "() => { throw null }",
        ]:
            record = await run_js(wf, source, js=shared)
            assert record["status"] == "FAILED"
        assert succeeded(await run_js(wf, PROBE, js=shared)) == CLEAN
    finally:
        shared.close()


# ---------------------------------------------------------------- limits named as configured


async def test_memory_limit_is_named_as_the_workflow_wrote_it(wf, api):
    """`handlerMemory: 32MB` is 32,000,000 bytes, and the error names it the same way."""
    record = await run_js(wf, f"() => {{ {BOMBS['doubling-string']} }}")
    failed(record, "HandlerError", "32 MB memory limit")
    record = await run_condition(api, wf, f"(ctx) => {{ {BOMBS['doubling-string']} }}")
    failed(record, "ConditionError", "16 MB memory limit")


# ---------------------------------------------------------------- the event loop and other polls

HEALTHY_RUNS = 10
HEALTHY_ATTEMPTS = 10
DELAY = 0.050
MAX_LAG = 0.100  # for 95% of the ticks: the loop stays live
MAX_STALL = 0.400  # for every tick: no JS ever holds the loop for its 1 s budget (a single
# tick may be late by a descheduling of the whole process on a busy 2-core machine)
GAP_RANGE = (0.045, 0.045 + 0.150)
MAX_FIRST = 0.250  # "the first request is sent at once" (engine start-up included)
LONG_LIMITS = {**LIMITS, "handlerTimeout": "1s", "conditionTimeout": "1s"}  # spans the window


def script_healthy(api: ScriptedAPI, i: int) -> dict[str, Any]:
    """/healthy/i answers 'running' HEALTHY_ATTEMPTS - 1 times, then 'done'; its poll request."""
    api.script(
        "GET",
        f"/healthy/{i}",
        *[Reply(json={"state": "running"})] * (HEALTHY_ATTEMPTS - 1),
        Reply(json={"state": "done"}),
    )
    return {
        "method": "GET",
        "url": f"{api.url}/healthy/{i}",
        "loopUntil": {
            "condition": "(ctx) => ctx.response.state === 'done'",
            "maxAttempts": HEALTHY_ATTEMPTS,
            "initialDelay": f"{round(DELAY * 1000)}ms",
        },
    }


def healthy_timing(api: ScriptedAPI, started: float) -> tuple[float, list[float]]:
    """(latest first poll after `started`, gaps between consecutive polls of each healthy loop)
    in seconds, from the arrival times at the server."""
    gaps: list[float] = []
    first = 0.0
    for i in range(HEALTHY_RUNS):
        arrivals = [s.at for s in api.requests_to(f"/healthy/{i}")]
        assert len(arrivals) == HEALTHY_ATTEMPTS
        first = max(first, arrivals[0] - started)
        gaps += [b - a for a, b in itertools.pairwise(arrivals)]
    return first, gaps


class LagMeter:
    """A ticker sleeping 10 ms; records how late each wake-up was."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            expected = loop.time() + 0.010
            await asyncio.sleep(0.010)
            self.lags.append(loop.time() - expected)

    def start(self) -> None:
        gc.collect()  # start clean: a full collection of earlier tests' garbage is not JS lag
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> float:
        self._stop.set()
        assert self._task is not None
        await self._task
        assert len(self.lags) > 20
        return max(self.lags)

    def p95(self) -> float:
        return sorted(self.lags)[int(len(self.lags) * 0.95)]


FIGURES: dict[str, dict[str, float]] = {}  # label -> measured figures (shown with -s)


def report(label: str, max_lag: float, first: float, gaps: list[float]) -> None:
    FIGURES[label] = {
        "max_lag_ms": round(max_lag * 1000, 1),
        "first_poll_ms": round(first * 1000, 1),
        "min_gap_ms": round(min(gaps) * 1000, 1),
        "max_gap_ms": round(max(gaps) * 1000, 1),
    }
    print(f"\n[lag] {label}: {FIGURES[label]}")


def assert_schedule_kept(max_lag: float, first: float, gaps: list[float]) -> None:
    low, high = GAP_RANGE
    assert max_lag < MAX_STALL, f"event loop stalled {max_lag * 1000:.1f} ms"
    assert first < MAX_FIRST, f"a healthy loop's first request came {first * 1000:.1f} ms late"
    assert low <= min(gaps) and max(gaps) <= high, (
        f"healthy poll gaps {min(gaps) * 1000:.1f}..{max(gaps) * 1000:.1f} ms, "
        f"want {low * 1000:.0f}..{high * 1000:.0f} ms"
    )


HOSTILE = {
    "runaway handler": (
        "handler",
        "(data) => { while (true) {} }",
        "HandlerError",
        "handlerTimeout",
    ),
    "runaway condition": (
        "condition",
        "(ctx) => { while (true) {} }",
        "ConditionError",
        "conditionTimeout",
    ),
    "runaway regex condition": (
        "condition",
        "(ctx) => /(a+)+$/.test('a'.repeat(60) + 'b')",
        "ConditionError",
        "conditionTimeout",
    ),
}


@pytest.mark.parametrize("sharing", ["own JsEngine per run", "one JsEngine for all runs"])
@pytest.mark.parametrize("hostile", list(HOSTILE))
async def test_hostile_js_does_not_delay_other_runs_polls(api, tmp_path, hostile, sharing):
    """HEALTHY_RUNS polling runs (fixed 50 ms, 10 attempts) next to one run whose JS burns its
    whole 1 s budget: the event loop stays live and every healthy poll keeps its schedule.

    Both with an engine per run (the default) and with one JsEngine shared by all runs: no
    condition is tied to a busy thread, so nothing waits for the runaway to be interrupted.
    """
    kind, source, error_type, limit = HOSTILE[hostile]
    shared = JsEngine() if sharing.startswith("one") else None
    options = {} if shared is None else {"js": shared}
    d = WorkflowDir(tmp_path / "hostile")
    d.root.mkdir()
    if kind == "handler":
        steps = js_steps(d, source)
    else:
        api.script("GET", "/hostile", Reply(json={"state": "running"}))
        steps = [poll_step(d, api.url + "/hostile", source)]
    hostile_engine = engine_for(d.workflow(steps, limits=LONG_LIMITS), **options)
    healthy_engines = []
    for i in range(HEALTHY_RUNS):
        h = WorkflowDir(tmp_path / f"healthy{i}")
        h.root.mkdir()
        step = h.request_step(f"healthy_{next(_names)}", script_healthy(api, i))
        healthy_engines.append(engine_for(h.workflow([step], limits=LIMITS), **options))

    loop = asyncio.get_running_loop()
    meter = LagMeter()
    meter.start()
    try:
        hostile_task = asyncio.create_task(hostile_engine.run())
        await asyncio.sleep(0.02)  # the hostile JS is burning its budget now
        healthy_started = loop.time()
        healthy = await bounded(asyncio.gather(*(e.run() for e in healthy_engines)))
        healthy_ended = loop.time()
        record = await bounded(hostile_task)
        hostile_ended = loop.time()
    finally:
        max_lag = await meter.stop()
        p95_lag = meter.p95()
        if shared is not None:
            shared.close()

    failed(record, error_type, limit)
    for r in healthy:
        assert succeeded(r) == {"state": "done"}
        assert r["gwo"]["step_1"]["http"]["attempts"] == HEALTHY_ATTEMPTS
    assert hostile_ended >= healthy_ended - 0.05  # the hostile JS ran through the whole window
    first, gaps = healthy_timing(api, healthy_started)
    report(f"{hostile}, {sharing}", max_lag, first, gaps)
    assert p95_lag < MAX_LAG, f"event loop lag p95 {p95_lag * 1000:.1f} ms"
    assert_schedule_kept(max_lag, first, gaps)


async def test_runaway_condition_does_not_delay_its_batch_siblings(api, wf):
    """One run, lam.httpRequests = one runaway condition + HEALTHY_RUNS healthy polls: the
    siblings keep their 50 ms schedule while the runaway burns its 1 s conditionTimeout on a
    worker (it overran the 10 ms inline budget once, then moved off the event loop)."""
    api.script("GET", "/hostile", Reply(json={"state": "running"}))
    requests = [
        {
            "method": "GET",
            "url": api.url + "/hostile",
            "loopUntil": {"condition": "(ctx) => { while (true) {} }", "maxAttempts": 2},
        }
    ]
    requests += [script_healthy(api, i) for i in range(HEALTHY_RUNS)]
    literal = json.dumps({"lam.httpRequests": requests})
    step = wf.handler(
        "batch.py", f"import json\n\ndef transform(data):\n    return json.loads({literal!r})\n"
    )
    path = wf.workflow([step], limits={**LONG_LIMITS, "concurrency": HEALTHY_RUNS + 1})
    meter = LagMeter()
    meter.start()
    started = asyncio.get_running_loop().time()
    try:
        record = await bounded(run_path(path))
    finally:
        max_lag = await meter.stop()
        p95_lag = meter.p95()
    failed(record, "ConditionError", "lam.httpRequests[0]", "conditionTimeout")
    assert record["gwo"]["step_1"]["response"][1:] == [{"state": "done"}] * HEALTHY_RUNS
    first, gaps = healthy_timing(api, started)
    report("runaway condition, batch siblings in the same run", max_lag, first, gaps)
    assert p95_lag < MAX_LAG, f"event loop lag p95 {p95_lag * 1000:.1f} ms"
    assert_schedule_kept(max_lag, first, gaps)
