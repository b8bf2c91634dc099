"""YAML loading: located syntax errors, duplicate keys refused, dates kept as strings."""

from __future__ import annotations

import re

import pytest

from lamrunner.definition.yamlfile import load_yaml, parse_yaml
from lamrunner.errors import DefinitionError


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [("a:\n\tb: 1\n", 2, 1), ("a: 1\n  b: 2\n", 2, 4), ("name: x\nsteps: [1, 2\nc: 3\n", 3, 2)],
)
def test_syntax_error_names_file_line_and_column(text, line, column):
    with pytest.raises(DefinitionError) as info:
        parse_yaml(text, "flows/wf.yaml")
    assert str(info.value).startswith(f"flows/wf.yaml:{line}:{column}:")


def test_syntax_error_from_file_names_the_path(tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text("name: x\nsteps:\n  - handler: a.py\n   name: b\n")
    with pytest.raises(DefinitionError) as info:
        load_yaml(path, what="workflow")
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", str(info.value))


def test_duplicate_key_is_an_error_with_its_location():
    with pytest.raises(DefinitionError) as info:
        parse_yaml("name: a\nconfig:\n  url: x\n  url: y\n", "wf.yaml")
    assert str(info.value).startswith("wf.yaml:4:3:")
    assert "'url'" in str(info.value)


def test_duplicate_top_level_key_is_an_error():
    with pytest.raises(DefinitionError, match="'name'"):
        parse_yaml("name: a\nname: b\n", "wf.yaml")


def test_same_key_in_different_mappings_is_fine():
    assert parse_yaml("a:\n  x: 1\nb:\n  x: 2\n", "wf.yaml") == {"a": {"x": 1}, "b": {"x": 2}}


def test_merge_key_may_be_overridden():
    """`<<: *base` then an explicit key is YAML's override idiom, not a duplicate."""
    text = "base: &b\n  a: 1\n  b: 2\nother:\n  <<: *b\n  b: 3\n"
    assert parse_yaml(text, "wf.yaml") == {"base": {"a": 1, "b": 2}, "other": {"a": 1, "b": 3}}


def test_dates_stay_strings():
    data = parse_yaml("d: 2024-01-01\nt: 2024-01-01T10:00:00Z\ns: 2024-01-01 10:00:00\n", "wf.yaml")
    assert data == {"d": "2024-01-01", "t": "2024-01-01T10:00:00Z", "s": "2024-01-01 10:00:00"}


def test_ordinary_scalars_keep_their_types():
    data = parse_yaml("i: 5\nf: 1.5\nb: true\nn: null\ns: '5'\n", "wf.yaml")
    assert data == {"i": 5, "f": 1.5, "b": True, "n": None, "s": "5"}


def test_json_is_accepted():
    assert parse_yaml('{"a": [1, {"b": null}]}', "c.json") == {"a": [1, {"b": None}]}


def test_unsafe_tags_are_refused():
    with pytest.raises(DefinitionError):
        parse_yaml("a: !!python/object/apply:os.system ['true']\n", "wf.yaml")


def test_missing_file(tmp_path):
    with pytest.raises(DefinitionError) as info:
        load_yaml(tmp_path / "nope.yaml", what="workflow")
    assert "nope.yaml" in str(info.value) and "not found" in str(info.value)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(DefinitionError, match=r"bad\.yaml"):
        load_yaml(path, what="workflow")
