"""Bad input raises only lamrunner's typed errors; good input still works (property-based).

Every edge that turns user data into definitions — durations and sizes, templates, directives
and request objects, workflow YAML, `--input`, `--set` and config files, and the command line
itself — is fed generated garbage and generated near-misses. The property each time: the call
either succeeds or raises a subclass of LamrunnerError (mostly DefinitionError, TemplateError,
ConditionError) whose message names the field; never a KeyError, TypeError, ValueError,
AttributeError, RecursionError, OverflowError or a yaml/json error leaking out. Alongside, the
matching good-input properties check that valid input still gives the documented result.

Unexpected exceptions are deliberately not caught: hypothesis then reports the exception
itself with the minimal input that provoked it (a RecursionError is re-raised as a one-line
AssertionError naming where it escaped, since pytest takes seconds to print its 1000 frames).
Several properties here fail until the bugs they found are fixed; each failure's message
carries hypothesis's minimal example.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import Phase, assume, example, given, settings
from hypothesis import strategies as st

from lamrunner.cli.main import parse_input
from lamrunner.definition.config import apply_set, build_config, lookup, parse_set
from lamrunner.definition.directives import (
    KNOWN_KEYS,
    METHODS,
    REQUEST_KEYS,
    ExitDirective,
    HttpDirective,
    PlainData,
    ResponseDirective,
    parse_directive,
)
from lamrunner.definition.policies import LOOP_KEYS, RETRY_KEYS
from lamrunner.definition.templates import render
from lamrunner.definition.workflow import (
    LIMIT_KEYS,
    STEP_KEYS,
    WORKFLOW_KEYS,
    Workflow,
    load_workflow,
)
from lamrunner.errors import (
    ConditionError,
    DefinitionError,
    LamrunnerError,
    ScriptError,
    TemplateError,
)
from lamrunner.http.request import RenderedRequest
from lamrunner.js.runtime import check_condition
from lamrunner.runner.rendering import render_request
from lamrunner.units import MAX_BYTES, MAX_SECONDS, parse_duration, parse_size

RESPONSE_KEYS = ("statusCode", "message", "data", "error")
# No "explain" phase: tracing every line of a deep-recursion failure takes minutes.
QUICK = settings(phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
DEPTHS = st.sampled_from([1, 2, 10, 100, 1000, 3000, 100_000])
HANDLER_JS = "(data) => ({ seen: data.input })\n"
_counter = itertools.count()


# ---------------------------------------------------------------- shared helpers


def typed(fn: Any, *args: Any, allowed: type | tuple[type, ...] = LamrunnerError) -> Any:
    """fn(*args), or the allowed typed error it raised (checked to carry a message).

    Anything else propagates, so hypothesis reports the leaking exception and its input.
    """
    try:
        return fn(*args)
    except allowed as exc:
        assert isinstance(exc, LamrunnerError)  # noqa: PT017 - either outcome may be right
        assert isinstance(exc.message, str) and exc.message.strip(), repr(exc)  # noqa: PT017
        return exc
    except RecursionError as exc:
        # Re-raised without its ~1000 frames, which pytest takes seconds to print; the last
        # lamrunner frame says where the recursion escaped from.
        ours = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if f"{os.sep}lamrunner{os.sep}" in f.filename
        ]
        where = (
            f" (escaped from {Path(ours[-1].filename).name}:{ours[-1].lineno} in {ours[-1].name})"
            if ours
            else ""
        )
        raise AssertionError(f"RecursionError leaked{where}: {exc}") from None


def checker(source: str, where: str) -> None:
    """What the engine passes parse_directive: compile the JS, report a ConditionError."""
    try:
        check_condition(source)
    except ScriptError as exc:
        raise ConditionError(f"{where}: {exc.message}") from None


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module: a good JS handler beside every generated workflow file."""
    path = tmp_path_factory.mktemp("bad_input")
    (path / "h.js").write_text(HANDLER_JS, encoding="utf-8")
    (path / "a_dir.js").mkdir()
    (path / "latin1.json").write_bytes(b'{"caf\xe9": 1}')
    (path / "a_folder").mkdir()
    return path


def write(folder: Path, content: str | bytes, suffix: str = ".yaml") -> Path:
    path = folder / f"gen_{next(_counter)}{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN/Infinity, which are not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------- value strategies

HUGE_INTS = st.sampled_from([10**400, -(10**400), 2**64, 2**1024, 10**21])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)


SHORT_TEXT = st.text(max_size=6)


def json_like(keys: st.SearchStrategy[Any] = SHORT_TEXT, max_leaves: int = 10) -> Any:
    """JSON-shaped values, including integers too large for a float (a Python handler's)."""
    return st.recursive(
        st.one_of(SCALARS, HUGE_INTS),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(keys, kids, max_size=3),
        max_leaves=max_leaves,
    )


ANY_JSON = json_like()
ODD_OBJECTS = st.one_of(
    st.binary(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
    HUGE_INTS,
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=2),
    st.builds(object),
    st.complex_numbers(allow_nan=True),
)

# ---------------------------------------------------------------- durations and sizes

NUMBER_TEXT = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 1e6).map(repr),
    st.sampled_from(
        [
            "1e400",
            "9" * 400,
            ".5",
            "1.",
            "nan",
            "inf",
            "infinity",
            "-1",
            "-0",
            "1_0",
            "0x10",
            "١٢",
            "１",
            "²",
            "½",
            "1e-400",
            "1.5.5",
            "",
        ]
    ),
)
UNIT_TEXT = st.sampled_from(
    [
        "ms",
        "s",
        "m",
        "h",
        "d",
        "",
        "MS",
        "S",
        "us",
        "w",
        "sec",
        "min",
        "mb",
        "kib",
        "GiB",
        "b",
        "kb",
        "B",
        "tb",
        "ns",
    ]
)
SEPARATOR = st.sampled_from(["", "", " ", "\t", "+", ",", "\n", "\x00", "-"])
MEASURE_TEXT = st.lists(st.tuples(SEPARATOR, NUMBER_TEXT, UNIT_TEXT), min_size=1, max_size=4).map(
    lambda parts: "".join(sep + num + unit for sep, num, unit in parts)
)
MEASURE_OBJECTS = st.one_of(
    MEASURE_TEXT, st.text(max_size=10), ODD_OBJECTS, ANY_JSON, st.integers(), st.floats()
)

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


@settings(QUICK, max_examples=150)
@given(MEASURE_OBJECTS)
def test_parse_duration_on_anything_returns_finite_seconds_or_definition_error(value):
    result = typed(parse_duration, value, "loopUntil.timeout", allowed=DefinitionError)
    if isinstance(result, DefinitionError):
        assert "loopUntil.timeout" in result.message
    else:
        assert type(result) is float and math.isfinite(result) and result >= 0


@settings(QUICK, max_examples=150)
@given(MEASURE_OBJECTS)
def test_parse_size_on_anything_returns_positive_bytes_or_definition_error(value):
    result = typed(parse_size, value, "limits.handlerMemory", allowed=DefinitionError)
    if isinstance(result, DefinitionError):
        assert "limits.handlerMemory" in result.message
    else:
        assert type(result) is int and result > 0


@settings(QUICK)
@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(DURATION_UNITS))),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_parse_duration_of_unit_parts_is_their_sum(parts, upper):
    """...up to ten years; a longer duration is refused as a mistake."""
    text = "".join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * DURATION_UNITS[unit] for n, unit in parts)
    if expected > MAX_SECONDS:
        with pytest.raises(DefinitionError, match="longer than ten years"):
            parse_duration(text.upper() if upper else text, "timeout")
        return
    assert parse_duration(text.upper() if upper else text, "timeout") == pytest.approx(expected)


@settings(QUICK)
@given(
    st.integers(1, 10**9),
    st.sampled_from(sorted(SIZE_UNITS)),
    st.sampled_from(["", " "]),
    st.sampled_from([str.lower, str.upper]),
)
def test_parse_size_of_whole_units_is_exact(number, unit, space, case):
    """...up to 1 TiB; a larger size is refused as a mistake."""
    text = case(f"{number}{space}{unit}")
    if number * SIZE_UNITS[unit] > MAX_BYTES:
        with pytest.raises(DefinitionError, match="larger than"):
            parse_size(text, "limits.handlerMemory")
        return
    assert parse_size(text, "limits.handlerMemory") == number * SIZE_UNITS[unit]


# ---------------------------------------------------------------- templates

# Key segments as the template syntax reads them (\w is Unicode-aware: '²' and '١' are word
# characters), including digit-like ones that a list index lookup may try to read.
SEGMENT = st.text(alphabet="ab01_-²١ü", min_size=1, max_size=3)
CONFIG_KEYS = st.one_of(SEGMENT, st.integers(-2, 3))  # YAML config may have integer keys
CONFIG = st.dictionaries(CONFIG_KEYS, json_like(CONFIG_KEYS, max_leaves=8), max_size=4)
DOTTED = st.lists(SEGMENT, min_size=1, max_size=3).map(".".join)
TEMPLATE = st.builds(
    lambda spelling, ns, path, pad: spelling.format(ns=ns, path=path, pad=pad),
    st.sampled_from(["<<{pad}{ns}.{path}{pad}>>", "{{{{{pad}{ns}.{path}{pad}}}}}"]),
    st.sampled_from(["config", "props", "env", "Config", "x"]),
    DOTTED,
    st.sampled_from(["", " ", "  "]),
)
FRAGMENT = st.one_of(
    TEMPLATE,
    st.sampled_from(
        [
            "<<",
            ">>",
            "{{",
            "}}",
            "config.",
            ".",
            " ",
            "x",
            "<<config.>>",
            "{{config}}",
            "<<config..a>>",
            "{{ props.a }}",
            "{",
            "}",
            "\n",
        ]
    ),
    st.text(max_size=3),
)
TEMPLATED_TEXT = st.lists(FRAGMENT, min_size=1, max_size=5).map("".join)
TEMPLATED_VALUE = json_like(st.one_of(st.text(max_size=4), TEMPLATED_TEXT)).flatmap(
    lambda shape: st.one_of(
        st.just(shape),
        TEMPLATED_TEXT,
        st.lists(TEMPLATED_TEXT, max_size=3),
        st.dictionaries(st.text(max_size=4), TEMPLATED_TEXT, max_size=3),
    )
)


@settings(QUICK, max_examples=200)
@given(TEMPLATED_VALUE, CONFIG)
def test_render_arbitrary_templates_and_configs_only_raise_template_error(value, config):
    result = typed(render, value, config, "body", allowed=TemplateError)
    if isinstance(result, TemplateError):
        assert result.message.startswith("body")


@st.composite
def config_and_existing_path(draw: Any) -> tuple[dict[Any, Any], str, Any]:
    """A config and a dotted path that exists in it (through mappings and list indexes)."""
    config = draw(
        st.dictionaries(SEGMENT, json_like(SEGMENT, max_leaves=8), min_size=1, max_size=4)
    )
    key = draw(st.sampled_from(sorted(config)))
    node, path = config[key], [key]
    while draw(st.booleans()):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            node, path = node[key], [*path, key]
        elif isinstance(node, list) and node:
            index = draw(st.integers(0, len(node) - 1))
            node, path = node[index], [*path, str(index)]
        else:
            break
    return config, ".".join(path), node


@settings(QUICK)
@given(
    config_and_existing_path(),
    st.sampled_from(
        [
            "<<config.{}>>",
            "{{{{config.{}}}}}",
            "{{{{props.{}}}}}",
            "<< config.{} >>",
            " <<config.{}>> ",
        ]
    ),
)
def test_whole_string_template_over_an_existing_key_is_the_exact_value(case, spelling):
    config, path, value = case
    assert render(spelling.format(path), config, "body") is value


@st.composite
def config_with_text_at(draw: Any) -> tuple[dict[Any, Any], str, str]:
    """A config holding a plain string at a generated dotted path (among other keys)."""
    config = draw(st.dictionaries(SEGMENT, json_like(SEGMENT, max_leaves=6), max_size=3))
    path = draw(st.lists(SEGMENT, min_size=1, max_size=3))
    text = draw(st.text(max_size=6).filter(lambda t: "<<" not in t and "{{" not in t))
    node = config
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = text
    return config, ".".join(path), text


@settings(QUICK)
@given(config_with_text_at(), st.text(alphabet="ab /:=", max_size=4))
def test_template_inside_text_renders_the_string_value_in_place(case, prefix):
    config, path, value = case
    assert render(f"{prefix}x<<config.{path}>>!", config, "url") == f"{prefix}x{value}!"


@settings(QUICK, max_examples=150)
@given(
    st.lists(SCALARS, max_size=4),
    st.text(alphabet="0123456789²³¹١٣½ⅻ", min_size=1, max_size=3),
    st.sampled_from(["", "x="]),
)
def test_template_indexing_a_list_gives_the_element_or_a_template_error(items, index, prefix):
    """`<<config.items.N>>` reads element N of a list (N in ASCII digits); any other word
    (digits such as '²' or '١' are word characters too) is a key the config does not have."""
    result = typed(
        render, f"{prefix}<<config.items.{index}>>", {"items": items}, "url", allowed=TemplateError
    )
    is_index = index.isascii() and index.isdecimal() and int(index) < len(items)
    if is_index and not prefix:
        assert result is items[int(index)]
    elif not is_index:
        assert isinstance(result, TemplateError)


@settings(QUICK)
@given(CONFIG, SEGMENT, st.sampled_from(["<<config.{}>>", "{{{{config.{}}}}}", "a/<<config.{}>>"]))
def test_missing_config_key_is_a_template_error_naming_key_and_field(config, key, spelling):
    assume(key not in config)
    with pytest.raises(TemplateError) as info:
        render({"headers": {"X-Key": spelling.format(key)}}, config, "lam.httpRequest")
    assert "lam.httpRequest.headers.X-Key" in info.value.message
    assert repr(key) in info.value.message


@settings(QUICK)
@given(json_like(st.text(alphabet="abc", max_size=3)), CONFIG)
def test_values_without_template_markers_render_unchanged(value, config):
    text = json.dumps(value)
    assume("<<" not in text and "{{" not in text)
    assert render(value, config, "body") == value


# ---------------------------------------------------------------- directives and requests

JS_PIECES = st.sampled_from(
    [
        "ctx.status === 200",
        "(ctx) => ctx.status >= 500",
        "ctx => ctx.response.done",
        "function (ctx) { return ctx.attempt > 3 }",
        "return ctx.response != null;",
        "async (ctx) => 1",
        "throw new Error('x')",
        "ctx.a.b.c",
        "let x = 1;",
        "x",
        "1",
        "(",
        ")",
        "{",
        "}",
        "=>",
        "'",
        '"',
        "`",
        "/*",
        "//",
        "\n",
        "\u2028",
        " ",
        ";",
        "\x00",
        "\ud800",
        "undefined",
        "ctx",
        "return",
        "function",
        "=== 'done'",
        "&&",
        "!",
        "0); (1",
        "}); (function(){",
        "class",
        "yield",
        "await",
        "import('x')",
    ]
)
JS_CONDITION = st.one_of(
    st.lists(JS_PIECES, min_size=1, max_size=4).map("".join), st.text(max_size=12)
)
GOOD_CONDITION = st.sampled_from(
    [
        "ctx.status === 200",
        "(ctx) => ctx.status === 200",
        "ctx => ctx.response && ctx.response.done",
        "function (ctx) { return ctx.attempt > 2 }",
        "return ctx.response != null",
        "ctx.response.state === 'done'",
    ]
)
DURATION_LIKE = st.one_of(MEASURE_TEXT, st.integers(-5, 100), st.floats(allow_nan=False), HUGE_INTS)
URL_PIECES = st.sampled_from(
    [
        "http://",
        "https://",
        "ftp://",
        "HTTP://",
        "http:/",
        "//",
        "http://[",
        "]",
        "[::1]",
        "h",
        "example.com",
        "127.0.0.1:8080",
        ":99999",
        ":port",
        "user@",
        "\uff03",
        "\u2100",
        "/",
        "/{id}",
        "/{{id}}",
        "/{ id }",
        "/x y",
        "?q=1",
        "&",
        "#frag",
        "%zz",
        "{",
        "}",
        "<<config.host>>",
        "{{config.host}}",
        "/<<config.path>>",
        "<<config.nope>>",
        "\n",
        "\t",
        "/{Id}",
        "?",
        "{{props.host}}",
    ]
)
URL_PARTS = st.builds(
    lambda scheme, host, rest: scheme + host + "".join(rest),
    st.sampled_from(["http://", "https://", "http://", "https://", "ftp://", "", "//"]),
    st.sampled_from(
        [
            "[",
            "[zz]",
            "\uff03",
            "[::1",
            "a\u2100b",
            "h",
            "example.com",
            "[::1]",
            "a]",
            "h:99999",
            "user@h",
            "<<config.host>>",
            "{{config.host}}",
            "",
            "a b",
            "h\x00",
        ]
    ),
    st.lists(st.sampled_from(["/", "/x", "?a=1", "#f", "/{id}", "%", " ", "\n"]), max_size=3),
)
URL = st.one_of(st.lists(URL_PIECES, min_size=1, max_size=6).map("".join), URL_PARTS, URL_PARTS)
PARAM_NAMES = st.one_of(
    st.sampled_from(["id", "Id", "ID", "other", "", "x y", "q"]), st.text(max_size=4)
)
HEADER_VALUES = st.one_of(SCALARS, st.sampled_from(["a\r\nb", "\n", "<<config.token>>", "é"]))


def with_extra_keys(base: st.SearchStrategy[dict[str, Any]], names: list[str]) -> Any:
    """`base`, sometimes with one extra key (a near-miss or a random one)."""
    extra = st.dictionaries(
        st.one_of(st.sampled_from(names), st.text(max_size=5)), ANY_JSON, max_size=1
    )
    return st.builds(lambda b, e: {**e, **b}, base, st.one_of(st.just({}), extra))


def mixed(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(good, good, ANY_JSON)


RETRY = with_extra_keys(
    st.fixed_dictionaries(
        {"maxAttempts": mixed(st.integers(-1, 5) | HUGE_INTS)},
        optional={
            "strategy": mixed(st.sampled_from(["exponential", "fixed", "linear", "Fixed"])),
            "initialDelay": mixed(DURATION_LIKE),
            "maxDelay": mixed(DURATION_LIKE),
            "multiplier": mixed(st.integers(-1, 10) | st.floats() | HUGE_INTS),
            "jitter": mixed(st.sampled_from(["none", "full", "equal", "half"])),
            "retryableStatusCodes": mixed(st.lists(st.integers(0, 1000), max_size=3)),
            "retryableExceptions": mixed(
                st.lists(st.sampled_from(["timeout", "connection", "protocol", "dns"]), max_size=3)
            ),
        },
    ),
    ["maxAttempt", "initialdelay", "retryableStatusCode", "backoff"],
)
LOOP = with_extra_keys(
    st.fixed_dictionaries(
        {"condition": mixed(JS_CONDITION)},
        optional={
            "failWhen": mixed(JS_CONDITION),
            "maxAttempts": mixed(st.integers(-1, 5) | HUGE_INTS),
            "strategy": mixed(st.sampled_from(["exponential", "fixed", "linear"])),
            "initialDelay": mixed(DURATION_LIKE),
            "maxDelay": mixed(DURATION_LIKE),
            "multiplier": mixed(st.integers(-1, 10) | st.floats() | HUGE_INTS),
            "timeout": mixed(DURATION_LIKE),
            "jitter": mixed(st.sampled_from(["none", "full", "equal", "half"])),
            "ignoreErrors": mixed(st.booleans()),
        },
    ),
    ["conditon", "failwhen", "interval", "maxAttempt"],
)
REQUEST = with_extra_keys(
    st.fixed_dictionaries(
        {
            "method": mixed(st.sampled_from([*METHODS, "get", "Post", "FETCH", "GET ", ""])),
            "url": mixed(URL),
        },
        optional={
            "pathParams": mixed(st.dictionaries(PARAM_NAMES, ANY_JSON, max_size=3)),
            "queryParams": mixed(st.dictionaries(st.text(max_size=4), ANY_JSON, max_size=3)),
            "headers": mixed(st.dictionaries(st.text(max_size=6), HEADER_VALUES, max_size=3)),
            "body": st.one_of(ANY_JSON, TEMPLATED_VALUE),
            "timeout": mixed(DURATION_LIKE),
            "failOnHttpError": mixed(st.booleans()),
            "retry": mixed(RETRY),
            "loopUntil": mixed(LOOP),
        },
    ),
    ["methd", "URL", "header", "query", "pathParam", "loop", "retries", "lam.exit"],
)
DIRECTIVE_KEYS = st.one_of(
    st.sampled_from(
        [
            *KNOWN_KEYS,
            "lam.",
            "lam.exitt",
            "lam.httprequest",
            "lam.HttpRequests",
            "Lam.exit",
            "data",
            "statusCode",
            "message",
        ]
    ),
    st.text(max_size=6),
    st.text(max_size=6).map("lam.".__add__),
)
DIRECTIVE = st.one_of(
    json_like(DIRECTIVE_KEYS),
    st.builds(lambda r: {"lam.httpRequest": r}, st.one_of(REQUEST, ANY_JSON)),
    st.builds(
        lambda rs: {"lam.httpRequests": rs}, st.one_of(st.lists(REQUEST, max_size=3), ANY_JSON)
    ),
    with_extra_keys(st.fixed_dictionaries({"lam.httpRequest": REQUEST}), ["data", "lam.exit"]),
    with_extra_keys(
        st.fixed_dictionaries({"lam.exit": mixed(st.booleans())}, optional={"data": ANY_JSON}),
        ["data", "lam.response"],
    ),
    st.builds(
        lambda r: {"lam.response": r},
        mixed(
            st.fixed_dictionaries(
                {"statusCode": mixed(st.integers(0, 700) | HUGE_INTS), "message": mixed(st.text())},
                optional={"data": ANY_JSON, "error": ANY_JSON},
            )
        ),
    ),
)
# String keys only here: integer config keys have a property of their own (above) and would
# otherwise hide every other finding behind the same TemplateError crash.
HOST_CONFIG = st.fixed_dictionaries(
    {"host": mixed(st.sampled_from(["example.com", "h:80", "[::1]", "a b", "\uff03", ""]))},
    optional={"path": ANY_JSON, "token": ANY_JSON},
)
RENDER_CONFIG = st.one_of(
    HOST_CONFIG, st.dictionaries(SEGMENT, json_like(SEGMENT, max_leaves=8), max_size=4)
)
DIRECTIVE_TYPES = (PlainData, HttpDirective, ExitDirective, ResponseDirective)


@settings(QUICK, max_examples=150, deadline=None)
@given(DIRECTIVE)
def test_parse_directive_on_anything_only_raises_definition_or_condition_error(value):
    result = typed(parse_directive, value, checker, allowed=(DefinitionError, ConditionError))
    assert isinstance(result, (DefinitionError, ConditionError, *DIRECTIVE_TYPES))


@settings(QUICK, max_examples=100, deadline=None)
@given(st.one_of(REQUEST, st.lists(REQUEST, min_size=1, max_size=3)), RENDER_CONFIG)
def test_parsed_requests_render_or_raise_only_typed_errors(requests, config):
    value = (
        {"lam.httpRequests": requests}
        if isinstance(requests, list)
        else {"lam.httpRequest": requests}
    )
    directive = typed(parse_directive, value, checker, allowed=(DefinitionError, ConditionError))
    if isinstance(directive, LamrunnerError):
        return
    for spec in directive.requests:
        rendered = typed(render_request, spec, config, allowed=(TemplateError, DefinitionError))
        if isinstance(rendered, LamrunnerError):
            assert rendered.message.startswith(spec.where)
        else:
            assert isinstance(rendered, RenderedRequest)
            assert rendered.url.startswith(("http://", "https://", "HTTP://"))


VALID_REQUEST = {
    "method": "GET",
    "url": "http://api.test/items/{id}",
    "pathParams": {"id": 7},
    "queryParams": {"q": ["a", "b"]},
    "headers": {"X-A": "1"},
    "body": {"a": "<<config.host>>"},
    "timeout": "5s",
    "failOnHttpError": True,
    "retry": {"maxAttempts": 3},
    "loopUntil": {"condition": "ctx.status === 200"},
}
VALID_RETRY = {
    "maxAttempts": 3,
    "strategy": "exponential",
    "initialDelay": "1s",
    "maxDelay": "30s",
    "multiplier": 2,
    "jitter": "full",
    "retryableStatusCodes": [503],
    "retryableExceptions": ["timeout"],
}
VALID_LOOP = {
    "condition": "ctx.status === 200",
    "failWhen": "ctx.status >= 500",
    "maxAttempts": 5,
    "strategy": "fixed",
    "initialDelay": "1s",
    "maxDelay": "30s",
    "multiplier": 2,
    "timeout": "1m",
    "jitter": "none",
    "ignoreErrors": False,
}
COUNTS = st.integers(-1, 5) | HUGE_INTS
FIELD_VALUES = {
    "method": st.sampled_from([*METHODS, "get", "FETCH", "GET ", ""]),
    "url": URL_PARTS,
    "pathParams": st.dictionaries(PARAM_NAMES, ANY_JSON, max_size=3),
    "queryParams": st.dictionaries(st.text(max_size=4), ANY_JSON, max_size=3),
    "headers": st.dictionaries(st.text(max_size=6), HEADER_VALUES, max_size=3),
    "body": TEMPLATED_VALUE,
    "timeout": DURATION_LIKE,
    "failOnHttpError": st.booleans(),
    "retry": RETRY,
    "loopUntil": LOOP,
    "maxAttempts": COUNTS,
    "strategy": st.sampled_from(["exponential", "fixed", "linear", "Fixed"]),
    "initialDelay": DURATION_LIKE,
    "maxDelay": DURATION_LIKE,
    "multiplier": HUGE_INTS | st.integers(-1, 10) | st.floats(),
    "jitter": st.sampled_from(["none", "full", "equal", "half"]),
    "retryableStatusCodes": st.lists(st.integers(0, 1000), max_size=3),
    "retryableExceptions": st.lists(st.sampled_from(["timeout", "connection", "dns"]), max_size=3),
    "condition": JS_CONDITION,
    "failWhen": JS_CONDITION,
    "ignoreErrors": st.booleans(),
}


ONE_FIELD_CASES = [
    (part, field)
    for part, base in (
        ("request", VALID_REQUEST),
        ("retry", VALID_RETRY),
        ("loopUntil", VALID_LOOP),
    )
    for field in base
]


@pytest.mark.parametrize(
    ("part", "field"), ONE_FIELD_CASES, ids=[f"{p}.{f}" for p, f in ONE_FIELD_CASES]
)
@settings(QUICK, max_examples=40, deadline=None)
@given(data=st.data())
def test_valid_request_with_one_field_replaced_raises_only_typed_errors(part, field, data):
    """Everything valid but one field: the error (if any) is typed and names where it is."""
    base = {"request": VALID_REQUEST, "retry": VALID_RETRY, "loopUntil": VALID_LOOP}[part]
    value = data.draw(st.one_of(FIELD_VALUES[field], FIELD_VALUES[field], ANY_JSON), label="value")
    request = dict(VALID_REQUEST)
    if part == "request":
        request[field] = value
        if field == "url":
            del request["pathParams"]  # else an unused pathParam hides what the URL does
    else:
        request[part] = {**base, field: value}
    where = "lam.httpRequest" if part == "request" else f"lam.httpRequest.{part}"
    config = data.draw(HOST_CONFIG, label="config")
    directive = typed(
        parse_directive,
        {"lam.httpRequest": request},
        checker,
        allowed=(DefinitionError, ConditionError),
    )
    if isinstance(directive, LamrunnerError):
        assert directive.message.startswith(where), directive.message
        return
    [spec] = directive.requests
    rendered = typed(render_request, spec, config, allowed=(TemplateError, DefinitionError))
    if isinstance(rendered, LamrunnerError):
        assert rendered.message.startswith("lam.httpRequest"), rendered.message


@settings(QUICK)
@given(
    st.dictionaries(
        st.text(max_size=4).filter(lambda k: not k.startswith("lam.")), ANY_JSON, max_size=3
    ),
    st.text(min_size=1, max_size=12).map("lam.".__add__).filter(lambda k: k not in KNOWN_KEYS),
    ANY_JSON,
)
def test_unknown_lam_key_is_a_definition_error_naming_it(plain, key, value):
    with pytest.raises(DefinitionError) as info:
        parse_directive({**plain, key: value}, checker)
    assert repr(key) in info.value.message


@settings(QUICK, deadline=None)
@given(
    st.sampled_from(METHODS).map(lambda m: m.lower() if len(m) % 2 else m),
    st.sampled_from(
        [
            "http://api.test/jobs",
            "https://api.test/jobs/{id}?x=1",
            "http://127.0.0.1:8080/a/{{id}}",
            "<<config.base>>/{id}",
        ]
    ),
    st.integers(0, 10**6) | st.text(alphabet="abc/ é?&", min_size=1, max_size=5),
    st.one_of(st.none(), st.sampled_from(["250ms", "1.5s", "2m", "1m30s"]), st.integers(0, 60)),
    st.one_of(st.none(), GOOD_CONDITION),
)
def test_valid_request_objects_parse_and_render(method, url, ident, timeout, condition):
    request: dict[str, Any] = {
        "method": method,
        "url": url,
        "pathParams": {"id": ident},
        "retry": {"maxAttempts": 3},
    }
    if "{" not in url:
        del request["pathParams"]
    if timeout is not None:
        request["timeout"] = timeout
    if condition is not None:
        request["loopUntil"] = {"condition": condition, "maxAttempts": 5, "strategy": "exponential"}
    directive = parse_directive({"lam.httpRequest": request}, checker)
    [spec] = directive.requests
    assert spec.method == method.upper()
    assert spec.timeout == (30.0 if timeout is None else parse_duration(timeout, "t"))
    assert (spec.loop is None) == (condition is None)
    rendered = render_request(spec, {"base": "http://api.test"})
    assert rendered.url.startswith(("http://api.test/", "https://api.test/", "http://127.0.0.1"))
    assert "{" not in rendered.url and "<<" not in rendered.url


# ---------------------------------------------------------------- "did you mean"


def one_edit_typos(key: str) -> set[str]:
    """Every one-letter deletion, adjacent transposition and case change of `key`."""
    typos = set()
    for i in range(len(key)):
        typos.add(key[:i] + key[i + 1 :])
        typos.add(key[:i] + key[i].swapcase() + key[i + 1 :])
        typos.add(key[:i] + key[i + 1 : i + 2] + key[i] + key[i + 2 :])
    return typos - {key, ""}


def typo_error(kind: str, typo: str, folder: Path) -> str:
    """The message lamrunner gives for `typo` used where a `kind` key belongs."""
    get = {"method": "GET", "url": "http://api.test/x"}
    if kind in ("workflow", "step", "limits"):
        doc: dict[str, Any] = {"name": "w", "steps": ["h.js"]}
        if kind == "workflow":
            doc[typo] = 1
        elif kind == "step":
            doc["steps"] = [{"handler": "h.js", typo: "x"}]
        else:
            doc["limits"] = {typo: 1}
        path = write(folder, json.dumps(doc))  # JSON is YAML, and quotes every key
        with pytest.raises(DefinitionError) as info:
            load_workflow(path, env={})
        return info.value.message
    value: dict[str, Any] = {
        "directive": {typo: {}},
        "request": {"lam.httpRequest": {**get, typo: 1}},
        "retry": {"lam.httpRequest": {**get, "retry": {"maxAttempts": 2, typo: 1}}},
        "loopUntil": {"lam.httpRequest": {**get, "loopUntil": {"condition": "true", typo: 1}}},
        "lam.response": {"lam.response": {"statusCode": 200, "message": "m", typo: 1}},
    }[kind]
    with pytest.raises(DefinitionError) as info:
        parse_directive(value, checker)
    return info.value.message


KEY_SETS = {
    "request": REQUEST_KEYS,
    "loopUntil": LOOP_KEYS,
    "retry": RETRY_KEYS,
    "workflow": WORKFLOW_KEYS,
    "step": STEP_KEYS,
    "limits": LIMIT_KEYS,
    "directive": KNOWN_KEYS,
    "lam.response": RESPONSE_KEYS,
}


@pytest.mark.parametrize("kind", sorted(KEY_SETS))
@settings(QUICK, max_examples=40, deadline=None)
@given(data=st.data())
def test_one_letter_typo_of_a_known_key_suggests_that_key(kind, data, folder):
    keys = KEY_SETS[kind]
    key = data.draw(st.sampled_from(keys), label="key")
    typo = data.draw(st.sampled_from(sorted(one_edit_typos(key))), label="typo")
    assume(typo not in keys)
    # A typo one edit (deletion, insertion, transposition, case) from another real key too
    # (lam.httpRequets, lam.httpRequesst) is honestly ambiguous.
    assume(
        not any(
            typo in one_edit_typos(other) or other in one_edit_typos(typo)
            for other in keys
            if other != key
        )
    )
    if kind == "directive":
        assume(typo.startswith("lam."))  # without the prefix it is plain data, not a directive
    message = typo_error(kind, typo, folder)
    assert f"did you mean {key!r}" in message, message


# ---------------------------------------------------------------- workflow YAML

YAML_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="[]{}:?-,&*!|>'\"#%@` \n\tab1.~", max_size=30),
)
NASTY_YAML = st.sampled_from(
    [
        "? [a]\n: 1\n",
        "{[a]: 1}\n",
        "{{a: 1}: 2}\n",
        "? {a: 1}\n: 2\n",
        "a: &l [*l]\n",
        "a: &m {b: *m}\n",
        "&r [*r]\n",
        "a: !!binary aGVsbG8=\n",
        "a: !!timestamp 2020-01-01\n",
        "a: !!set {x, y}\n",
        "a: !!python/object/apply:os.system [echo]\n",
        "<<: 5\n",
        "a: 1\na: 2\n",
        "a: *nope\n",
        "\t- x\n",
        "%YAML 9.9\n---\na\n",
        "--- 1\n--- 2\n",
        "a: '\n",
        "\x00\n",
        "\ufeffname: x\n",
        "a: \x7f\n",
        "!<tag:yaml.org,2002:int> x\n",
        "name: [\n",
        "steps: !!omap [a: 1]\n",
        "? !!binary aGk=\n: x\n",
        "a: !!int x\n",
        "a: !!float x\n",
        "a: !!bool x\n",
    ]
)
# PyYAML's scanner is quadratic in flow depth: stay small (1000 is past the recursion limit).
DEEP_YAML_LISTS = st.sampled_from([10, 1000]).map(lambda n: "[" * n + "]" * n)
DEEP_YAML_MAPS = st.sampled_from([10, 1000]).map(lambda n: "{a: " * n + "}" * n)
HANDLER_SPECS = st.sampled_from(
    [
        "h.js",
        "nope.js",
        "h.js:f",
        "nope.py",
        "nope.py:f",
        "zz_no_such_mod:f",
        "json:nope",
        ":",
        "",
        "  ",
        "h",
        "C:\\x.js",
        "../h.js",
        "a\x00.js",
        "a\x00.py",
        "zz.mod\x00:f",
        "sub/",
        ".js",
        "h.JS",
        "a_dir.js",
        "x" * 300 + ".js",
        "h.js\n",
        "é.py:f",
    ]
)
ENV_TEXT = st.lists(
    st.sampled_from(
        [
            "${A}",
            "${A:-x}",
            "${A:-}",
            "$${A}",
            "${",
            "${1A}",
            "${A",
            "}",
            "$",
            "${A:-${B}}",
            "text",
            " ",
            "${ A }",
            "${A:=x}",
        ]
    ),
    min_size=1,
    max_size=4,
).map("".join)
LIMIT_VALUES = st.one_of(
    MEASURE_TEXT,
    st.integers(-2, 10**6),
    HUGE_INTS,
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)
STEP = st.one_of(
    HANDLER_SPECS,
    with_extra_keys(
        st.fixed_dictionaries(
            {},
            optional={
                "name": mixed(st.text(max_size=5)),
                "handler": mixed(HANDLER_SPECS),
                "description": ANY_JSON,
            },
        ),
        ["hander", "Name", "desc"],
    ),
    ANY_JSON,
)
WORKFLOW_DOC = with_extra_keys(
    st.fixed_dictionaries(
        {},
        optional={
            "name": mixed(st.text(max_size=6)),
            "description": ANY_JSON,
            "config": mixed(
                st.dictionaries(st.text(max_size=4), st.one_of(ENV_TEXT, ANY_JSON), max_size=3)
            ),
            "steps": mixed(st.lists(STEP, max_size=3)),
            "limits": mixed(
                st.dictionaries(
                    st.sampled_from([*LIMIT_KEYS, "handlerTimout"]), LIMIT_VALUES, max_size=3
                )
            ),
        },
    ),
    ["Name", "step", "limit", "configs", "descripton"],
)


def check_loads_or_definition_error(folder: Path, content: str | bytes) -> Any:
    path = write(folder, content)
    result = typed(load_workflow, path, {}, allowed=DefinitionError)
    if isinstance(result, DefinitionError):
        assert str(path) in result.message
    else:
        assert isinstance(result, Workflow)
    return result


@settings(QUICK, max_examples=150, deadline=None)
@given(st.one_of(YAML_TEXT, NASTY_YAML))
def test_load_workflow_on_arbitrary_text_only_raises_definition_error(folder, text):
    check_loads_or_definition_error(folder, text)


@settings(QUICK, max_examples=8, deadline=None)
@given(DEEP_YAML_LISTS)
def test_load_workflow_on_deeply_nested_yaml_only_raises_definition_error(folder, text):
    check_loads_or_definition_error(folder, "name: w\nsteps: [h.js]\nconfig:\n  x: " + text)


@settings(QUICK, max_examples=100, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=40),
        st.binary(max_size=20).map(lambda b: b"name: \xff" + b),
        st.sampled_from(
            [
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\xf8\x88\x80\x80\x80",
                b"\xfe\xff\x00n",
                b"\xef\xbb\xbf\xff",
            ]
        ),
    )
)
def test_load_workflow_on_byte_soup_only_raises_definition_error(folder, data):
    check_loads_or_definition_error(folder, data)


@settings(QUICK, max_examples=120, deadline=None)
@given(WORKFLOW_DOC)
@example(doc={"name": "0", "steps": ["a\x00.js"]})  # found by this property: a bare ValueError
@example(doc={"name": "0", "steps": ["a\x00.py:f"]})
def test_load_workflow_on_wrong_but_well_formed_documents_only_raises_definition_error(folder, doc):
    check_loads_or_definition_error(folder, yaml.safe_dump(doc, allow_unicode=True))


CONFIG_YAML = st.sampled_from(
    [
        "{k: !!binary aGVsbG8=}",
        "{k: !!timestamp 2020-01-01}",
        "{k: !!set {x, y}}",
        "{k: !!omap [a: 1]}",
        "{k: !!pairs [a: 1]}",
        "{1: x, b: y}",
        "{k: !!float .nan}",
        "{k: .inf}",
        "{k: 1000000000000000000000000000000000000000}",
        "{k: '${NOPE:-x}'}",
        "{k: {1: x, b: y}}",
        "{k: !!binary aGVsbG8=, b: [!!binary aGk=]}",
        "{k: [2020-01-01]}",
        "{k: 2020-01-01 10:00:00}",
    ]
)


@settings(QUICK, max_examples=60, deadline=None)
@given(CONFIG_YAML, st.sampled_from(["k", "a", "b", "missing", "k.0", "k.x"]))
def test_config_from_yaml_loads_and_renders_or_raises_only_typed_errors(folder, config, key):
    """Whatever a config: section holds once loaded, templates over it fill or TemplateError."""
    workflow = check_loads_or_definition_error(
        folder, f"name: w\nsteps: [h.js]\nconfig: {config}\n"
    )
    if isinstance(workflow, DefinitionError):
        return
    typed(render, f"x-<<config.{key}>>", workflow.config, "url", allowed=TemplateError)
    template = f"<<config.{key}>>"
    request = {
        "method": "POST",
        "url": f"http://api.test/{template}",
        "headers": {"X-K": template},
        "body": {"v": template},
    }
    [spec] = parse_directive({"lam.httpRequest": request}, checker).requests
    typed(render_request, spec, workflow.config, allowed=(TemplateError, DefinitionError))


@settings(QUICK, max_examples=10, deadline=None)
@given(
    st.sampled_from(
        [
            "{a: &l [*l]}",
            "{a: &l [1, [*l]]}",
            "{a: {b: &l [{c: *l}]}}",
            "&m {b: *m}",
            "{a: &m {b: *m}}",
        ]
    )
)
def test_recursive_yaml_anchor_in_config_only_raises_definition_error(folder, config):
    check_loads_or_definition_error(folder, f"name: w\nsteps: [h.js]\nconfig: {config}\n")


@settings(QUICK, deadline=None)
@given(
    st.text(alphabet="abc XYZ-_é", min_size=1, max_size=8).filter(str.strip),
    # Without "$": `${VAR}` is expanded and `$${` means a literal `${` (tested on their own).
    st.dictionaries(
        st.text(alphabet="abcd", min_size=1, max_size=3),
        SCALARS.filter(lambda v: not (isinstance(v, str) and "$" in v)),
        max_size=3,
    ),
    st.lists(st.text(alphabet="abc_", min_size=1, max_size=4), min_size=1, max_size=3, unique=True),
)
def test_valid_workflows_load_with_their_config_and_named_steps(folder, name, config, step_names):
    doc = {
        "name": name,
        "config": config,
        "limits": {"handlerTimeout": "2s", "concurrency": 3},
        "steps": [{"name": s, "handler": "h.js"} for s in step_names],
    }
    # Not allow_unicode: PyYAML would write a raw NEL, which reads back as a line break.
    workflow = load_workflow(write(folder, yaml.safe_dump(doc)), env={})
    assert workflow.name == name
    assert workflow.config == config
    assert [s.name for s in workflow.steps] == step_names
    assert workflow.limits.handler_timeout == 2.0 and workflow.limits.concurrency == 3


# ---------------------------------------------------------------- --input, --set, config files

JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=10,
)
DEEP_JSON = st.builds(
    lambda n, pair: pair[0] * n + pair[1] * n,
    DEPTHS,
    st.sampled_from([("[", "]"), ('{"a":', "}"), ("[", "")]),
)
JSON_TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet='[]{}:,"\\0123456789.eE+-tnrufalse ', max_size=20),
    JSON_VALUES.map(json.dumps),
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "[NaN]",
            '{"a": Infinity}',
            '"\\ud800"',
            "1e999",
            "",
            " ",
            "\ufeff{}",
            "{'a': 1}",
            "[1,]",
            "0x10",
            "01",
        ]
    ),
)
INPUT_PATHS = st.one_of(
    st.sampled_from(
        [
            "missing.json",
            "a_folder",
            "latin1.json",
            "",
            ".",
            "a\x00b.json",
            "x" * 300,
            "missing/deeper.json",
        ]
    ),
    st.text(alphabet="abc.\x00é ", max_size=8),
)


@settings(QUICK, max_examples=150, deadline=None)
@given(st.one_of(JSON_TEXT, INPUT_PATHS.map(lambda p: "@<folder>/" + p)))
def test_parse_input_only_raises_definition_error(folder, raw):
    assume(raw != "-")  # '-' reads standard input
    raw = raw.replace("<folder>", str(folder))
    result = typed(parse_input, raw, allowed=DefinitionError)
    if isinstance(result, DefinitionError):
        assert result.message.startswith("--input")


@settings(QUICK, max_examples=15)
@given(DEEP_JSON)
def test_parse_input_of_deeply_nested_json_only_raises_definition_error(raw):
    typed(parse_input, raw, allowed=DefinitionError)


@settings(QUICK, max_examples=15)
@given(DEEP_JSON)
def test_parse_set_of_deeply_nested_json_only_raises_definition_error(raw):
    typed(parse_set, "a.b=" + raw, allowed=DefinitionError)


@settings(QUICK, max_examples=4, deadline=None)
@given(DEEP_YAML_MAPS)
def test_config_file_with_deeply_nested_yaml_only_raises_definition_error(folder, text):
    path = write(folder, "x: " + text)
    typed(build_config, {}, [str(path)], [], {}, allowed=DefinitionError)


@settings(QUICK, max_examples=100)
@given(JSON_TEXT)
def test_parse_input_accepts_only_json(raw):
    """What --input accepts is JSON: NaN/Infinity are not, and the run record could not carry
    them (stdout must be one JSON document)."""
    assume(raw != "-")  # '-' reads standard input
    result = typed(parse_input, raw, allowed=DefinitionError)
    if not isinstance(result, DefinitionError):
        json.dumps(result, allow_nan=False)


@settings(QUICK, deadline=None)
@given(JSON_VALUES)
def test_parse_input_of_json_text_and_json_file_is_the_value(folder, value):
    text = json.dumps(value, ensure_ascii=False)
    assert parse_input(text) == value
    assert parse_input("@" + str(write(folder, text, ".json"))) == value


SET_KEYS = st.one_of(
    st.lists(st.text(alphabet="ab1_-", min_size=1, max_size=3), min_size=1, max_size=3).map(
        ".".join
    ),
    st.text(alphabet="ab. =é[]$", max_size=5),
)
SET_TEXT = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", SET_KEYS, JSON_TEXT),
    st.text(max_size=15),
)


@settings(QUICK, max_examples=150)
@given(SET_TEXT, CONFIG)
def test_parse_set_and_apply_set_only_raise_definition_error(text, config):
    parsed = typed(parse_set, text, allowed=DefinitionError)
    if isinstance(parsed, DefinitionError):
        assert "--set" in parsed.message
        return
    path, value = parsed
    merged = apply_set(config, path, value)
    placed = lookup(merged, ".".join(path))
    if isinstance(value, dict):  # a mapping merges into one already there (deep merge)
        assert set(value) <= set(placed)
    else:
        assert placed == value or (isinstance(value, float) and math.isnan(value))


@settings(QUICK)
@given(
    st.lists(st.text(alphabet="ab1_-", min_size=1, max_size=3), min_size=1, max_size=3),
    JSON_VALUES,
    CONFIG,
)
def test_set_with_json_value_places_that_value_at_the_dotted_key(path, value, config):
    key = ".".join(path)
    assert parse_set(f"{key}={json.dumps(value)}") == (path, value)
    merged = apply_set(config, path, value)
    placed = lookup(merged, key)
    if isinstance(value, dict):  # a mapping merges into what is there (deep merge)
        assert all(placed[k] == v for k, v in value.items() if not isinstance(v, dict))
    else:
        assert placed == value
    untouched = [k for k in config if k != path[0]]
    assert all(merged[k] == config[k] for k in untouched)


CONFIG_FILE_TEXT = st.one_of(
    YAML_TEXT,
    NASTY_YAML,
    st.dictionaries(st.text(max_size=4), st.one_of(ENV_TEXT, ANY_JSON), max_size=3).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True)
    ),
    st.binary(max_size=10).map(lambda b: b"\xff" + b),
)


@settings(QUICK, max_examples=60, deadline=None)
@given(
    CONFIG,
    st.lists(NASTY_YAML | CONFIG_FILE_TEXT, max_size=2),
    st.lists(SET_TEXT, max_size=2),
    st.sampled_from([{}, {"A": "1"}, {"A": ""}]),
)
def test_build_config_only_raises_definition_error(folder, base, files, sets, env):
    paths = [str(write(folder, text)) for text in files]
    result = typed(build_config, base, paths, sets, env, allowed=DefinitionError)
    assert isinstance(result, (dict, DefinitionError))


@settings(QUICK, deadline=None)
@given(
    st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=2), JSON_VALUES, max_size=3),
    st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=2), JSON_VALUES, max_size=3),
    st.text(alphabet="abc", min_size=1, max_size=2),
    JSON_VALUES,
)
def test_build_config_layers_config_file_then_set(folder, base, layer, key, value):
    assume(not isinstance(value, dict))  # a mapping would merge into the layer's (deep merge)
    path = write(folder, yaml.safe_dump(layer))  # escaped: PyYAML folds a raw NEL to a space
    config = build_config(base, [str(path)], [f"{key}={json.dumps(value)}"], {})
    assert config[key] == value  # --set wins over every layer
    for k in set(base) | set(layer):
        if k == key:
            continue
        if k not in layer:
            assert config[k] == base[k]
        elif not (isinstance(base.get(k), dict) and isinstance(layer[k], dict)):
            assert config[k] == layer[k]  # the file wins over the workflow's config:
        else:
            assert set(config[k]) == set(base[k]) | set(layer[k])  # mappings merge


@settings(QUICK, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 9), st.integers(-30, 30)),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_json_config_file_numbers_load_as_numbers(folder, numbers):
    """A --config FILE may be JSON, as json.dumps writes it: 1e-05 and 1e+16 are numbers."""
    path = write(folder, json.dumps({"v": numbers}), ".json")
    assert build_config({}, [str(path)], [], {}) == {"v": numbers}


@settings(QUICK, deadline=None)
@given(st.text(max_size=5))
def test_json_config_file_text_loads_as_that_text(folder, text):
    """json.dumps escapes a non-BMP character as a surrogate pair ("\\ud83d\\ude00"); a JSON
    --config FILE must load it as the character, not as two lone surrogates. (`$` is left
    out: `${VAR}` expands and `$${` is the escape for a literal `${`, as documented.)"""
    assume("$" not in text)
    path = write(folder, json.dumps({"v": text}), ".json")
    assert build_config({}, [str(path)], [], {}) == {"v": text}


# ---------------------------------------------------------------- the command line


def loads_cleanly(path: Path) -> bool:
    try:
        load_workflow(path, env={})
    except Exception:  # noqa: BLE001 - only the CLI's answer is under test here
        return False
    return True


def lamrunner(folder: Path, *args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "lamrunner", *args],
        check=False,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        cwd=folder,
        timeout=60,
        env={**os.environ, "LAMRUNNER_STORE": str(folder / "runs.db")},
    )
    return proc.returncode, proc.stdout, proc.stderr


def one_json_document(stdout: str) -> Any:
    """stdout is exactly one strict JSON document."""
    return strict_json(stdout)


BAD_WORKFLOW_TEXT = st.one_of(
    NASTY_YAML,
    st.builds(
        lambda key, value: yaml.safe_dump({"name": "w", "steps": ["h.js"], key: value}),
        st.sampled_from(["limits", "config", "steps", "name", "stepz", "Limits"]),
        st.sampled_from(
            [
                5,
                "x",
                [],
                ["nope.js"],
                [{"hander": "h.js"}],
                {"handlerTimout": 1},
                {"concurrency": 0},
                {"handlerTimeout": "-1s"},
                {"handlerMemory": "1XB"},
                {"a": "${NOPE}"},
                ["h.js:f"],
                [""],
                ["a\x00.js"],
            ]
        ),
    ),
    st.sampled_from(
        [
            "name: w\nsteps: [h.js]\nconfig: {a: &l [*l]}\n",
            "[" * 1000 + "]" * 1000,
            "name: w\nsteps: [h.js]\nlimits: {handlerTimeout: !!float x}\n",
        ]
    ),
    st.binary(max_size=8).map(lambda b: b"\xff" + b),
)


@settings(QUICK, max_examples=8, deadline=None, report_multiple_bugs=False)
@given(BAD_WORKFLOW_TEXT)
def test_cli_validate_refuses_bad_workflows_with_exit_2_and_one_json_document(folder, text):
    path = write(folder, text)
    assume(not loads_cleanly(path))  # a generated document that happens to be valid
    code, stdout, stderr = lamrunner(folder, "validate", path.name)
    assert "Traceback" not in stderr, stderr
    assert code == 2, (code, stdout)
    record = one_json_document(stdout)
    assert record["valid"] is False and record["error"]["type"] == "DefinitionError"


BAD_RUN_ARGS = st.one_of(
    st.sampled_from(
        [
            ("--input", "NaN"),
            ("--input", "@latin1.json"),
            ("--input", "[" * 100_000),
            ("--set", "a=" + "[" * 100_000),
            ("--input", "[1e999]"),
            ("--input", "{"),
            ("--input", "'a'"),
            ("--input", "@missing.json"),
            ("--input", "@a_folder"),
            ("--input", ""),
            ("--set", "noequals"),
            ("--set", "a..b=1"),
            ("--set", "é=1"),
            ("--config", "missing.yaml"),
            ("--config", "latin1.json"),
            ("--output", "latin1.json/out.json"),  # under a file: a missing folder is made
        ]
    ),
    st.tuples(
        st.just("--input"),
        st.text(alphabet='[]{}":,ab ', min_size=1, max_size=6).filter(lambda t: _not_json(t)),
    ),
)


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # hypothesis's own notice
@settings(QUICK, max_examples=12, deadline=None, report_multiple_bugs=False)
@given(BAD_RUN_ARGS)
def test_cli_run_refuses_bad_invocations_with_exit_2_and_one_json_document(folder, option):
    workflow = write(folder, "name: w\nsteps: [h.js]\n")
    code, stdout, stderr = lamrunner(folder, "run", workflow.name, *option)
    assert "Traceback" not in stderr, stderr[-2000:]
    assert code == 2, (code, stdout[-2000:])
    record = one_json_document(stdout)
    assert record["status"] == "FAILED" and record["error"]["type"] == "DefinitionError"


@settings(QUICK, max_examples=5, deadline=None, report_multiple_bugs=False)
@given(
    st.one_of(
        st.tuples(
            st.just("input"), st.sampled_from(['"\\ud800"', '{"\\udfff": 1}', '["a\\ud83d"]'])
        ),
        st.tuples(
            st.just("limits"),
            st.sampled_from(
                [
                    "{handlerMemory: 1000000000000000000000}",
                    "{handlerMemory: 100000000000000GB}",
                    "{maxResponseBytes: 1000000000000000000000}",
                    "{concurrency: 1000000000000000000000}",
                ]
            ),
        ),
    )
)
def test_cli_run_never_prints_a_traceback_and_stdout_stays_one_json_document(folder, case):
    """Inputs that are odd rather than malformed: refused (2) or run (0/1), never a crash."""
    what, value = case
    limits = f"limits: {value}\n" if what == "limits" else ""
    workflow = write(folder, f"name: w\n{limits}steps: [h.js]\n")
    args = ["--input", value] if what == "input" else []
    code, stdout, stderr = lamrunner(folder, "run", workflow.name, *args)
    assert "Traceback" not in stderr, stderr[-2000:]
    assert code in (0, 1, 2), code
    record = one_json_document(stdout)
    assert record["status"] in ("SUCCESS", "FAILED")
