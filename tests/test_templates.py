"""`<<config.*>>` templates and the Laminar spellings `{{config.*}}` / `{{props.*}}`."""

from __future__ import annotations

import pytest

from lamrunner.definition.templates import render
from lamrunner.errors import TemplateError

CONFIG = {
    "baseUrl": "http://api.test",
    "port": 8080,
    "ratio": 0.5,
    "enabled": True,
    "off": False,
    "nothing": None,
    "api": {"key": "k-123", "version": 2, "nested": {"deep": "d"}},
    "tags": ["a", "b"],
}


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("<<config.baseUrl>>", "http://api.test"),
        ("<<config.api.key>>", "k-123"),
        ("<<config.api.nested.deep>>", "d"),
        ("{{config.baseUrl}}", "http://api.test"),
        ("{{props.baseUrl}}", "http://api.test"),
        ("{{props.api.key}}", "k-123"),
        ("<< config.port >>", 8080),
        ("{{ config.port }}", 8080),
    ],
)
def test_template_spellings(template, value):
    assert render(template, CONFIG, "body") == value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("port", 8080),
        ("ratio", 0.5),
        ("enabled", True),
        ("off", False),
        ("nothing", None),
        ("api", CONFIG["api"]),
        ("tags", ["a", "b"]),
    ],
)
def test_whole_string_template_keeps_the_value_type(key, value):
    result = render(f"<<config.{key}>>", CONFIG, "body")
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("<<config.baseUrl>>/jobs", "http://api.test/jobs"),
        ("port=<<config.port>>", "port=8080"),
        ("on=<<config.enabled>>", "on=true"),
        ("v<<config.api.version>>-<<config.api.key>>", "v2-k-123"),
        ("tags=<<config.tags>>", 'tags=["a","b"]'),
        ("api=<<config.api.nested>>", 'api={"deep":"d"}'),
        ("Bearer {{config.api.key}}", "Bearer k-123"),
    ],
)
def test_template_inside_longer_string_becomes_text(text, rendered):
    assert render(text, CONFIG, "url") == rendered


def test_render_recurses_through_dicts_and_lists():
    value = {"a": ["<<config.port>>", {"b": "x-<<config.api.key>>"}], "n": 1, "z": None}
    assert render(value, CONFIG, "body") == {"a": [8080, {"b": "x-k-123"}], "n": 1, "z": None}


def test_strings_without_templates_are_unchanged():
    value = {"a": "plain", "b": "{{id}}", "c": "a < b >> c", "d": "{x}"}
    assert render(value, CONFIG, "body") == value


def test_rendered_values_are_not_rendered_again():
    config = {"evil": "<<config.secret>>", "secret": "s3cret"}
    assert render("x=<<config.evil>>", config, "body") == "x=<<config.secret>>"


def test_missing_key_names_the_key_and_the_field():
    with pytest.raises(TemplateError) as info:
        render({"Authorization": "Bearer <<config.token>>"}, CONFIG, "headers")
    message = str(info.value)
    assert "headers.Authorization" in message
    assert "token" in message


def test_missing_nested_key_names_the_dotted_key_and_list_position():
    with pytest.raises(TemplateError) as info:
        render({"items": ["ok", "<<config.api.missing>>"]}, CONFIG, "body")
    message = str(info.value)
    assert "api.missing" in message
    assert "body.items[1]" in message


def test_missing_key_in_laminar_spelling():
    with pytest.raises(TemplateError, match="nope"):
        render("{{props.nope}}", CONFIG, "url")


def test_key_below_a_scalar_is_missing():
    with pytest.raises(TemplateError, match="port"):
        render("<<config.port.value>>", CONFIG, "url")


@pytest.mark.parametrize("text", ["<<secrets.x>>", "Bearer <<env.TOKEN>>"])
def test_unknown_namespace_is_an_error(text):
    with pytest.raises(TemplateError) as info:
        render({"Authorization": text}, CONFIG, "headers")
    assert "headers.Authorization" in str(info.value)
