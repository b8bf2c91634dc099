"""The JSONPath boundary: RFC 9535 queries compiled once with clear errors, applied, written."""

from __future__ import annotations

import pytest

from lamrunner.errors import DefinitionError
from lamrunner.jsonpath import NOTHING, compile_query, compile_singular, write

BODY = {"status": "COMPLETED", "jobs": [{"id": "a", "ok": True}, {"id": "b", "ok": False}]}


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("$.status", ["COMPLETED"]),
        ("$.jobs[*].id", ["a", "b"]),
        ("$.jobs[?@.ok == true].id", ["a"]),
        ("$..id", ["a", "b"]),
        ("$.jobs[-1].id", ["b"]),
        ("$.missing", []),
    ],
)
def test_a_query_selects_what_rfc_9535_says(text: str, values: list[object]) -> None:
    assert compile_query(text, "f").values(BODY) == values


def test_first_is_the_first_value_or_the_default() -> None:
    assert compile_query("$.jobs[*].id", "f").first(BODY) == "a"
    assert compile_query("$.nope", "f").first(BODY) is NOTHING
    assert compile_query("$.nope", "f").first(BODY, None) is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("$.a[", "unbalanced brackets"),
        ("status", "starting with $"),
        ("$.jobs[?@.ok ==]", "not a valid JSONPath query"),
    ],
)
def test_a_bad_query_names_the_field_and_the_text(text: str, fragment: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        compile_query(text, "steps[0].successCondition")
    assert caught.value.message.startswith("steps[0].successCondition: ")
    assert fragment in caught.value.message


def test_writing_makes_the_mappings_on_the_way() -> None:
    gwo: dict[str, object] = {"steps_output": {"kept": 1}}
    write(gwo, compile_singular("$.steps_output.final_job_result.data", "f"), {"rows": 3})
    assert gwo == {"steps_output": {"kept": 1, "final_job_result": {"data": {"rows": 3}}}}


def test_writing_needs_one_place() -> None:
    with pytest.raises(DefinitionError, match="must name one place"):
        compile_singular("$.steps_output[*]", "outputMappings")
    with pytest.raises(ValueError, match="no place"):
        write({"a": []}, compile_singular("$.a[3]", "f"), 1)
