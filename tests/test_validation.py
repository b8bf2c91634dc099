"""closest / did_you_mean / check_keys: the "did you mean" behind every typo message."""

from __future__ import annotations

import pytest

from lamrunner.definition.validation import check_keys, closest, did_you_mean
from lamrunner.errors import DefinitionError

KEYS = ("maxAttempts", "initialDelay", "maxDelay", "condition", "failWhen")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("maxAttempt", "maxAttempts"),
        ("intialDelay", "initialDelay"),
        ("MAXATTEMPTS", "maxAttempts"),
        ("failwhen", "failWhen"),
        ("conditon", "condition"),
        ("maxAttempts", "maxAttempts"),
    ],
)
def test_closest_finds_the_likely_typo(name, expected):
    assert closest(name, KEYS) == expected


@pytest.mark.parametrize("name", ["zzz", "", "somethingElseEntirely"])
def test_closest_none_when_nothing_is_close(name):
    assert closest(name, KEYS) is None


def test_closest_with_no_known_names():
    assert closest("x", []) is None


def test_did_you_mean_text():
    assert did_you_mean("maxAttempt", KEYS) == " (did you mean 'maxAttempts'?)"
    assert did_you_mean("zzz", KEYS) == ""


def test_check_keys_accepts_known_and_present_required():
    check_keys({"maxAttempts": 1, "condition": "c"}, KEYS, "loopUntil", required=("condition",))


def test_check_keys_unknown_key_names_key_where_and_suggestion():
    with pytest.raises(DefinitionError) as info:
        check_keys({"condition": "c", "maxAttempt": 3}, KEYS, "lam.httpRequest.loopUntil")
    message = str(info.value)
    assert message.startswith("lam.httpRequest.loopUntil:")
    assert "'maxAttempt'" in message
    assert "did you mean 'maxAttempts'" in message


def test_check_keys_unknown_key_without_close_match_lists_allowed():
    with pytest.raises(DefinitionError) as info:
        check_keys({"zzz": 1}, KEYS, "retry")
    assert "did you mean" not in str(info.value)
    assert "maxAttempts" in str(info.value)


def test_check_keys_non_string_key():
    with pytest.raises(DefinitionError, match="5"):
        check_keys({5: 1}, KEYS, "retry")


def test_check_keys_missing_required_names_it():
    with pytest.raises(DefinitionError) as info:
        check_keys({"maxDelay": 1}, KEYS, "loopUntil", required=("condition",))
    assert "loopUntil" in str(info.value) and "'condition'" in str(info.value)
