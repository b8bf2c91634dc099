"""JSONPath conditions (`definition.pathconditions`): their semantics, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from lamrunner.definition.pathconditions import compile_path_condition, is_path_condition
from lamrunner.errors import DefinitionError

BODY = {
    "status": "COMPLETED",
    "progress": 100,
    "ratio": 0.5,
    "done": True,
    "zero": 0,
    "empty": "",
    "none": None,
    "list": [],
    "obj": {},
    "items": [{"s": "ok"}, {"s": "failed"}],
    "tags": ["a", "b"],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$.status == 'COMPLETED'", True),
        ('$.status == "COMPLETED"', True),
        ("$.status === 'COMPLETED'", True),
        ("$.status != 'COMPLETED'", False),
        ("$.status == 'FAILED' || $.status == 'COMPLETED'", True),
        ("$.status == 'FAILED' || $.status == 'CANCELLED'", False),
        ("$.progress >= 100", True),
        ("$.progress > 100", False),
        ("$.ratio < 1 && $.ratio > -1", True),
        ("$.progress == 100.0", True),
        ("$.progress == '100'", False),  # no coercion
        ("$.done == 1", False),
        ("$.done == true", True),
        ("$.done", True),
        ("!$.done", False),
        ("!!$.done", True),
        ("$.zero", False),
        ("$.empty", False),
        ("$.none", False),
        ("$.list", True),  # as in JavaScript
        ("$.obj", True),
        ("$.missing", False),
        ("!$.missing", True),
        ("$.missing == null", False),  # Nothing is not null
        ("$.none == null", True),
        ("$.missing != 'x'", True),
        ("$.missing < 1", False),
        ("$.missing >= 1", False),
        ("$.status < 'D'", True),  # strings order by code point
        ("$.status < 1", False),  # no order between a string and a number
        ("$.items[?@.s == 'failed']", True),  # several nodes: any truthy
        ("$.items[?@.s == 'nope']", False),
        ("$.items[0].s == 'ok'", True),
        ("$.tags == $.tags", True),
        ("($.status == 'X' || $.done) && !($.zero)", True),
        ("$.done && $.zero || $.progress == 100", True),  # && binds tighter than ||
        ("$['status'] == 'COMPLETED'", True),
    ],
)
def test_condition_semantics(text: str, expected: bool) -> None:
    assert compile_path_condition(text, "c").holds(BODY) is expected


@pytest.mark.parametrize("body", [None, "text", 42, []])
def test_a_body_that_is_not_an_object_selects_nothing(body: Any) -> None:
    assert compile_path_condition("$.status == 'x'", "c").holds(body) is False


@pytest.mark.parametrize(
    ("text", "is_path"),
    [
        ("$.status == 'x'", True),
        ("!$.error", True),
        ("  ($.a || $.b)", True),
        ("(ctx) => ctx.response.done", False),
        ("ctx.response.done", False),
        ("function (ctx) { return true; }", False),
        ("!ctx.response.error", False),
    ],
)
def test_jsonpath_is_told_from_javascript_by_its_first_characters(text: str, is_path: bool) -> None:
    assert is_path_condition(text) is is_path


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("$.a == ", 8),
        ("$.a ==== 1", 8),
        ("$.a == 1 $.b", 10),
        ("$.a && foo", 8),
        ("$.a == 'open", 8),
        ("$.a # 1", 5),
    ],
)
def test_errors_name_the_field_and_the_column(text: str, column: int) -> None:
    with pytest.raises(DefinitionError) as caught:
        compile_path_condition(text, "steps[1] (wait).poll.successCondition")
    assert caught.value.message.startswith(
        f"steps[1] (wait).poll.successCondition: column {column}"
    )


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(DefinitionError, match="nested more than"):
        compile_path_condition("(" * 200 + "$.a" + ")" * 200, "c")
    with pytest.raises(DefinitionError, match="! in a row"):
        compile_path_condition("!" * 200 + "$.a", "c")
