"""The Python fast path for simple conditions gives exactly QuickJS's answers, or steps aside."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from conftest import Reply, run_path
from hypothesis import given, settings
from hypothesis import strategies as st

from lamrunner.errors import ScriptError
from lamrunner.js import runtime as jsengine
from lamrunner.js.simplecond import Unsupported, compile_condition

CTX = {
    "response": {"status": "completed", "items": [1, 2], "n": 0, "a": {"b": None}},
    "status": 200,
    "headers": {"x-ready": "yes"},
    "attempt": 3,
    "elapsedMs": 12,
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("(ctx) => ctx.response.status === 'completed'", True),
        ('ctx => ctx.response.status !== "completed"', False),
        ("ctx.status === 200 && ctx.headers['x-ready'] === 'yes'", True),
        ("ctx.response.items.length === 2 || false", True),
        ("['failed', 'canceled', 'expired'].includes(ctx.response.status)", False),
        ("!ctx.response.n", True),
        ("ctx.response.a.b === null", True),
        ("ctx.response.missing === undefined", True),
        ("ctx.response.items[1] === 2", True),
        ("(ctx.attempt === 3)", True),
        ("(ctx) => ctx.attempt >= 3", True),
        ("ctx.elapsedMs < 12", False),
        ("ctx.response.items.length > 1 && ctx.status <= 200", True),
        ("ctx.attempt > 2 === true", True),  # `>` binds tighter than `===`, as in JS
    ],
)
def test_common_conditions_compile_and_agree_with_js(source, expected):
    fast = compile_condition(source)
    assert fast is not None
    assert fast(CTX) is expected
    assert (
        jsengine._evaluate_here(source, json.dumps(CTX), jsengine.CONDITION_LIMITS, 1.0) is expected
    )


@pytest.mark.parametrize(
    "source",
    [
        "function (ctx) { return ctx.status === 200 }",
        "return ctx.status === 200",
        "ctx.status == 200",
        "ctx.attempt < 4 < 5",  # compares a boolean with a number
        "ctx.attempt >> 1",
        "ctx.attempt >== 1",
        "ctx.response.status.startsWith('c')",
        "ctx.attempt + 1 === 4",
        "`${ctx.status}` === '200'",
        "ctx.status === -1",
        "x === 1",
        "ctx.a === 1 === true",
        "ctx.response['a\\'b']",
        "ctx.items[1.5]",
    ],
)
def test_everything_else_is_left_to_quickjs(source):
    assert compile_condition(source) is None


@pytest.mark.parametrize(
    "source",
    [
        "ctx.response.a.b.c === 1",  # reading a property of null: JS throws
        "ctx.response.status.length === 9",  # string length is UTF-16 in JS
        "ctx.response.toString === undefined",  # inherited from Object.prototype
        "ctx.response.items.map === undefined",  # an array method
        "ctx.response.status >= 'a'",  # strings compare by UTF-16 code units in JS
        "ctx.response.missing < 1",  # undefined converts to NaN
        "!ctx.response.n > 0",  # a boolean converts to a number
    ],
)
def test_cases_python_cannot_mirror_step_aside_at_run_time(source):
    fast = compile_condition(source)
    assert fast is not None
    with pytest.raises(Unsupported):
        fast(CTX)


KEYS = [
    "response",
    "status",
    "headers",
    "attempt",
    "a",
    "b",
    "items",
    "length",
    "0",
    "toString",
    "x y",
    "constructor",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([2**53 + 1, 1.5, 0.0])
    | st.sampled_from(["", "done", "0", "a"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


def _step(key: str) -> str:
    if key.isidentifier():
        return "." + key
    return f"[{key}]" if key.isdigit() else f"[{json.dumps(key)}]"


PATHS = st.lists(st.sampled_from(KEYS), max_size=4).map(lambda ks: "ctx" + "".join(map(_step, ks)))
LITERALS = st.sampled_from(
    ["true", "false", "null", "undefined", "0", "1", "2", "1.5", "''", "'done'", '"0"', "'a'"]
)
EXPRESSIONS = st.recursive(
    PATHS | LITERALS,
    lambda e: st.one_of(
        e.map(lambda x: f"!{x}"),
        st.tuples(e, st.sampled_from(["===", "!==", "&&", "||", "<", "<=", ">", ">="]), e).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(st.lists(LITERALS, max_size=3), e).map(
            lambda t: f"[{', '.join(t[0])}].includes({t[1]})"
        ),
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(EXPRESSIONS, JSON_VALUES, st.sampled_from(["", "(ctx) => ", "ctx => "]))
def test_python_and_quickjs_agree(expression, response, form):
    """Whenever the fast path answers, QuickJS gives the same answer (and does not throw)."""
    source = form + expression
    fast = compile_condition(source)
    assert fast is not None, source
    ctx = {**CTX, "response": response}
    try:
        answer = fast(ctx)
    except Unsupported:
        return
    try:
        expected = jsengine._evaluate_here(source, json.dumps(ctx), jsengine.CONDITION_LIMITS, 1.0)
    except ScriptError as exc:
        pytest.fail(f"{source}: Python said {answer}, QuickJS threw {exc.message}")
    assert answer is expected, source


async def test_runner_uses_the_fast_path_and_falls_back(api, wf):
    """A poll whose condition reads a property of null still counts it as a throw (JS rules)."""
    api.script("GET", "/job", Reply(json={"state": None}), Reply(json={"state": {"done": True}}))
    request = {
        "method": "GET",
        "url": api.url + "/job",
        "loopUntil": {"condition": "ctx.response.state.done === true", "initialDelay": "10ms"},
    }
    record = await run_path(wf.workflow([wf.request_step("p", request)]))
    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_1"]["http"]["attempts"] == 2


DEEP_PARENS = "(ctx) => " + "(" * 400 + "ctx.status === 200" + ")" * 400
MANY_NOTS = "(ctx) => " + "!" * 3000 + "(ctx.status === 200)"
LONG_CHAIN = " && ".join(["ctx.status === 200"] * 5000)


@pytest.mark.parametrize(
    "source",
    [
        DEEP_PARENS,
        MANY_NOTS,
        "!" * 3001 + "ctx.status",
        LONG_CHAIN,
        " || ".join(["ctx.status === 1"] * 5000),
        "(ctx) => " + "!(" * 200 + "ctx.response.n" + ")" * 200,
        "[1].includes(" * 100 + "ctx.status" + ")" * 100,
    ],
)
def test_deep_conditions_never_crash_the_fast_path(source):
    """Python's stack is no limit QuickJS has: too deep to mirror means QuickJS answers."""
    fast = compile_condition(source)
    if fast is None:
        return
    expected = jsengine._evaluate_here(source, json.dumps(CTX), jsengine.CONDITION_LIMITS, 1.0)
    assert fast(CTX) is expected


def test_every_nesting_depth_compiles_or_steps_aside():
    """At each depth the fast path either answers like QuickJS or leaves it to QuickJS."""
    for depth in range(1, 80, 3):
        source = "(" * depth + "!ctx.response.n && ctx.status === 200" + ")" * depth
        fast = compile_condition(source)
        assert fast is None or fast(CTX) is True, depth
    assert compile_condition("(" * 3 + "ctx.status === 200" + ")" * 3) is not None


async def _cli(*args: str) -> tuple[int, dict, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lamrunner",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert "Traceback" not in err.decode()
    return proc.returncode, json.loads(out), err.decode()  # exactly one JSON document


def _poll_steps(wf, url, conditions):
    steps = []
    for i, condition in enumerate(conditions):
        request = {
            "method": "GET",
            "url": url,
            "loopUntil": {"condition": condition, "maxAttempts": 3, "initialDelay": "10ms"},
        }
        steps.append({"name": f"poll{i}", "handler": wf.request_step(f"poll{i}", request)})
    return str(wf.workflow(steps))


async def test_cli_runs_deep_conditions_quickjs_accepts(api, wf):
    api.script("GET", "/job", Reply(json={"state": "done"}))
    flow = _poll_steps(wf, api.url + "/job", [DEEP_PARENS, MANY_NOTS, LONG_CHAIN])
    code, record, err = await _cli("run", flow)
    assert (code, record["status"]) == (0, "SUCCESS"), err
    assert [record["gwo"][f"step_{k}"]["http"]["attempts"] for k in (1, 2, 3)] == [1, 1, 1]


async def test_cli_fails_cleanly_on_a_condition_quickjs_refuses(api, wf):
    api.script("GET", "/job", Reply(json={"state": "done"}))
    too_deep = "(ctx) => " + "(" * 5000 + "ctx.status === 200" + ")" * 5000
    code, record, err = await _cli("run", _poll_steps(wf, api.url + "/job", [too_deep]))
    assert code == 1, err
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "ConditionError"
    assert "stack" in record["error"]["message"]
    assert api.requests_to("/job") == []  # refused before the first request


NUMBERS = st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(NUMBERS, NUMBERS, st.sampled_from(["<", "<=", ">", ">="]), st.booleans())
def test_number_comparisons_agree_with_quickjs(left, right, op, literal):
    """`<`, `<=`, `>`, `>=` of two numbers (read from ctx, or a literal on the right) give
    QuickJS's answer, at the edges of exact integers and for fractions and negative zero."""
    shown = json.dumps(right)
    literal = literal and "e" not in shown and "-" not in shown  # the literals the fast path takes
    source = f"ctx.response.a {op} " + (shown if literal else "ctx.response.b")
    fast = compile_condition(source)
    if literal and abs(right) >= 2**53:  # a literal past exact integers: left to QuickJS
        assert fast is None, source
        return
    assert fast is not None, source
    ctx = {**CTX, "response": {"a": left, "b": right}}
    expected = jsengine._evaluate_here(source, json.dumps(ctx), jsengine.CONDITION_LIMITS, 1.0)
    assert fast(ctx) is expected, source
