"""Secrets are masked by value wherever they show up."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from lamrunner.logs import masking
from lamrunner.logs.masking import MASK, Secrets, mask_processor


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


def test_nothing_registered_changes_nothing(secrets):
    assert secrets.mask("anything at all") == "anything at all"
    assert secrets.mask_data({"a": ["b"]}) == {"a": ["b"]}


@pytest.mark.parametrize(
    "key",
    [
        "apiKey",
        "processorApiKey",
        "API_KEY",
        "token",
        "accessToken",
        "clientSecret",
        "password",
        "dbPassword",
        "Authorization",
    ],
)
def test_config_values_under_secret_names_are_masked(secrets, key):
    secrets.add_config({key: "value-1234"})
    assert secrets.mask("got value-1234 back") == f"got {MASK} back"


def test_config_secrets_at_any_depth(secrets):
    secrets.add_config(
        {
            "services": {"db": {"password": "hunter22"}},
            "clients": [{"token": "tok-aaaa"}, {"name": "public-x"}],
        }
    )
    assert secrets.mask("hunter22 tok-aaaa public-x") == f"{MASK} {MASK} public-x"


def test_everything_below_a_secret_name_is_secret(secrets):
    secrets.add_config({"credentials": {"user": "alice-admin", "pass": "p4ssw0rd"}})
    assert secrets.mask("alice-admin p4ssw0rd") == f"{MASK} {MASK}"


def test_list_of_values_under_a_secret_name(secrets):
    secrets.add_config({"apiKeys": ["first-key1", "second-key2"]})
    assert secrets.mask("first-key1,second-key2") == f"{MASK},{MASK}"


def test_other_config_values_are_not_masked(secrets):
    secrets.add_config(
        {
            "dataProcessorUrl": "http://127.0.0.1:8765",
            "name": "process-dataset",
            "timeout": 3000,
            "region": "eu-west-1",
            "author": "someone-x",
        }
    )
    text = "http://127.0.0.1:8765 process-dataset 3000 eu-west-1 someone-x"
    assert secrets.mask(text) == text


def test_numeric_secret_is_masked(secrets):
    secrets.add_config({"pin_secret": 98765432})
    assert secrets.mask("code 98765432") == f"code {MASK}"


@pytest.mark.parametrize(
    "name",
    ["Authorization", "authorization", "Cookie", "X-API-Key", "x-api-key", "Proxy-Authorization"],
)
def test_credential_headers_are_masked(secrets, name):
    secrets.add_headers([(name, "cred-value-77")])
    assert secrets.mask("echo cred-value-77") == f"echo {MASK}"


@pytest.mark.parametrize("name", ["Content-Type", "Accept", "User-Agent", "X-Request-Id"])
def test_ordinary_headers_are_not_masked(secrets, name):
    secrets.add_headers([(name, "plain-value-1")])
    assert secrets.mask("plain-value-1") == "plain-value-1"


def test_bearer_header_masks_full_value_and_bare_token(secrets):
    secrets.add_headers([("Authorization", "Bearer abc123")])
    assert secrets.mask("Authorization: Bearer abc123") == f"Authorization: {MASK}"
    assert "abc123" not in secrets.mask('{"echo": "abc123"}')
    assert secrets.mask("token=abc123&x=1") == f"token={MASK}&x=1"


def test_scheme_prefixed_value_also_registers_the_bare_token(secrets):
    secrets.add("Bearer abc123")
    assert secrets.mask("Bearer abc123 / abc123") == f"{MASK} / {MASK}"


def test_basic_header_masks_credentials(secrets):
    secrets.add_headers([("Authorization", "Basic dXNlcjpwYXNz")])
    assert secrets.mask("creds dXNlcjpwYXNz") == f"creds {MASK}"


def test_url_encoded_form_is_masked(secrets):
    value = "s3cr/t+key=="
    secrets.add_config({"apiKey": value})
    url = f"http://api.test/x?key={quote(value, safe='')}"
    assert secrets.mask(url) == f"http://api.test/x?key={MASK}"
    assert secrets.mask(value) == MASK


def test_regex_characters_in_secret_are_literal(secrets):
    secrets.add_config({"password": "p.ss*w(rd"})
    assert secrets.mask("p.ss*w(rd") == MASK
    assert secrets.mask("pXssswwrd") == "pXssswwrd"


def test_longer_secret_masked_whole_when_it_contains_a_shorter_one(secrets):
    secrets.add_config({"token": "abcd", "secret": "abcdefgh"})
    assert secrets.mask("abcdefgh") == MASK


@pytest.mark.parametrize("value", ["abc", "ab", "1", ""])
def test_values_shorter_than_four_chars_are_not_masked(secrets, value):
    secrets.add_config({"token": value})
    assert secrets.mask("abc ab 1 x") == "abc ab 1 x"


def test_four_char_value_is_masked(secrets):
    secrets.add_config({"token": "abcd"})
    assert secrets.mask("x abcd y") == f"x {MASK} y"


def test_mask_data_recurses_into_dicts_lists_and_keys(secrets):
    secrets.add_config({"token": "tok-1234"})
    data = {"a": ["x tok-1234", {"tok-1234": 5}], "n": 1, "b": None, "t": ("tok-1234",)}
    assert secrets.mask_data(data) == {
        "a": [f"x {MASK}", {MASK: 5}],
        "n": 1,
        "b": None,
        "t": [MASK],
    }


def test_mask_processor_masks_an_event_dict():
    registry = Secrets()
    registry.add_headers([("Authorization", "Bearer zz-top-secret")])
    event = {
        "event": "sent Bearer zz-top-secret",
        "response": {"echo": "zz-top-secret"},
        "attempt": 2,
    }
    assert mask_processor(None, "info", dict(event)) == event  # outside a run: no secrets
    with masking.masked_with(registry):
        masked = mask_processor(None, "info", event)
    assert masked == {
        "event": f"sent {MASK}",
        "response": {"echo": MASK},
        "attempt": 2,
    }
