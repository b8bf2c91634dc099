"""The configuration store: environment expansion, --config layers and --set."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamrunner.definition.config import build_config, deep_merge, expand_env, parse_set
from lamrunner.errors import DefinitionError

ENV = {"HOST": "api.test", "KEY": "s3cret", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("${HOST}", "api.test"),
        ("http://${HOST}:80/${KEY}", "http://api.test:80/s3cret"),
        ("${MISSING:-dev-key}", "dev-key"),
        ("${HOST:-other}", "api.test"),
        ("${MISSING:-}", ""),
        ("$${HOST}", "${HOST}"),
        ("cost $5 {x} $HOST", "cost $5 {x} $HOST"),
        ("a$${b}c", "a${b}c"),
    ],
)
def test_expand_env_strings(text, expanded):
    assert expand_env(text, ENV, "config.x") == expanded


def test_expand_env_default_used_for_empty_variable():
    """`${VAR:-default}` is the shell/compose spelling for "unset or empty"."""
    assert expand_env("${EMPTY:-fallback}", ENV, "config.x") == "fallback"


def test_expand_env_recurses_and_leaves_non_strings():
    value = {"a": ["${HOST}", 1, None], "b": {"c": "${KEY}", "d": True}}
    assert expand_env(value, ENV, "config") == {
        "a": ["api.test", 1, None],
        "b": {"c": "s3cret", "d": True},
    }


def test_expand_env_missing_variable_names_variable_and_field():
    with pytest.raises(DefinitionError) as info:
        expand_env({"api": {"key": "${PROCESSOR_API_KEY}"}}, {}, "config")
    message = str(info.value)
    assert "PROCESSOR_API_KEY" in message
    assert "config.api.key" in message


def test_expand_env_missing_variable_in_list_names_position():
    with pytest.raises(DefinitionError, match=r"config\.hosts\[1\]"):
        expand_env({"hosts": ["a", "${NOPE}"]}, {}, "config")


def test_deep_merge_merges_mappings_and_override_wins():
    base = {"api": {"url": "u", "timeout": 5, "h": {"a": 1}}, "list": [1, 2], "keep": 1}
    override = {"api": {"timeout": 10, "h": {"b": 2}}, "list": [3]}
    assert deep_merge(base, override) == {
        "api": {"url": "u", "timeout": 10, "h": {"a": 1, "b": 2}},
        "list": [3],
        "keep": 1,
    }


def test_deep_merge_scalar_replaces_mapping_and_back():
    assert deep_merge({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    assert deep_merge({"a": 5}, {"a": {"b": 1}}) == {"a": {"b": 1}}


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1}}
    override = {"a": {"c": 2}}
    deep_merge(base, override)
    assert base == {"a": {"b": 1}} and override == {"a": {"c": 2}}


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("a.b=5", ["a", "b"], 5),
        ("x=true", ["x"], True),
        ("x=false", ["x"], False),
        ("x=null", ["x"], None),
        ("f=1.5", ["f"], 1.5),
        ("s=hello", ["s"], "hello"),
        ('s="5"', ["s"], "5"),
        ('j={"a":1}', ["j"], {"a": 1}),
        ("l=[1,2]", ["l"], [1, 2]),
        ("u=http://h/x?a=b", ["u"], "http://h/x?a=b"),
        ("e=", ["e"], ""),
        ("k=a=b", ["k"], "a=b"),
        ("my-key_1.sub=v", ["my-key_1", "sub"], "v"),
    ],
)
def test_parse_set_typed_values(text, path, value):
    assert parse_set(text) == (path, value)


@pytest.mark.parametrize("text", ["=1", "noequals", "", "a..b=1", ".a=1", "a.=1", "a b=1"])
def test_parse_set_bad_forms(text):
    with pytest.raises(DefinitionError):
        parse_set(text)


@given(st.text())
def test_parse_set_only_raises_definition_error(text):
    try:
        path, _ = parse_set(text)
    except DefinitionError:
        return
    assert path and all(path)


@given(st.text(alphabet='ab.=[]{}"0123456789,:tn-'))
def test_parse_set_json_like_text_only_raises_definition_error(text):
    with contextlib.suppress(DefinitionError):
        parse_set(text)


def test_build_config_layers_in_order(tmp_path):
    first = tmp_path / "first.yaml"
    first.write_text("api:\n  url: http://first\n  timeout: 5\nfromFirst: 1\n")
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"api": {"url": "http://second"}, "fromSecond": 2}))
    base = {"api": {"url": "http://base", "timeout": 1, "retries": 3}, "name": "wf"}
    config = build_config(base, [str(first), str(second)], ["api.timeout=9", "extra.flag=true"])
    assert config == {
        "api": {"url": "http://second", "timeout": 9, "retries": 3},
        "name": "wf",
        "fromFirst": 1,
        "fromSecond": 2,
        "extra": {"flag": True},
    }


def test_build_config_later_set_wins():
    assert build_config({}, (), ["a=1", "a=2"]) == {"a": 2}


def test_build_config_does_not_mutate_base(tmp_path):
    base = {"a": {"b": 1}}
    build_config(base, (), ["a.c=2"])
    assert base == {"a": {"b": 1}}


def test_build_config_expands_env_in_config_files(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("key: ${KEY}\nhost: ${NOPE:-local}\n")
    assert build_config({}, [str(path)], env=ENV) == {"key": "s3cret", "host": "local"}


def test_build_config_missing_env_in_file_names_file_and_var(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("key: ${NOPE}\n")
    with pytest.raises(DefinitionError) as info:
        build_config({}, [str(path)], env={})
    assert "NOPE" in str(info.value) and "c.yaml" in str(info.value)


def test_build_config_empty_file_is_empty_layer(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert build_config({"a": 1}, [str(path)]) == {"a": 1}


def test_build_config_missing_file(tmp_path):
    with pytest.raises(DefinitionError, match=r"nope\.yaml"):
        build_config({}, [str(tmp_path / "nope.yaml")])


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just text\n", "5\n"])
def test_build_config_file_must_hold_a_mapping(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(DefinitionError, match=r"c\.yaml"):
        build_config({}, [str(path)])


def test_build_config_bad_yaml_in_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: [1\n")
    with pytest.raises(DefinitionError, match=r"c\.yaml"):
        build_config({}, [str(path)])


def test_a_laminar_configuration_store_export_is_a_config_layer(tmp_path):
    store = tmp_path / "store.json"
    store.write_text(
        json.dumps(
            {
                "name": "Production Store",
                "workspaceId": 123,
                "properties": [
                    {"key": "apiVersion", "value": "2.1"},
                    {"key": "baseUrl", "value": "${STORE_URL}"},
                    {"key": "limits.pageSize", "value": 50},
                ],
                "flowCredentialPairs": [{"flowId": 456, "sourceAuthCredentialId": 789}],
            }
        )
    )
    config = build_config({"apiVersion": "1.0"}, files=[str(store)], env={"STORE_URL": "http://x"})
    assert config == {"apiVersion": "2.1", "baseUrl": "http://x", "limits": {"pageSize": 50}}


def test_a_config_mapping_with_its_own_properties_key_is_left_as_it_is(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("properties:\n  - {key: a, value: 1}\nregion: eu\n")
    assert build_config({}, files=[str(plain)]) == {
        "properties": [{"key": "a", "value": 1}],
        "region": "eu",
    }


def test_a_laminar_store_property_with_a_bad_key_names_it(tmp_path):
    store = tmp_path / "store.json"
    store.write_text(json.dumps({"name": "s", "properties": [{"key": "a b", "value": 1}]}))
    with pytest.raises(DefinitionError, match=r"store.json: properties\[0\].key"):
        build_config({}, files=[str(store)])
