"""Durations and sizes: the one parser every timeout, delay and limit goes through."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamrunner.errors import DefinitionError
from lamrunner.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (0, 0.0),
        (2.5, 2.5),
        ("5", 5.0),
        ("0.25", 0.25),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h1m1s", 3661.0),
        (" 2M ", 120.0),
        ("1m 30s", 90.0),
    ],
)
def test_parse_duration_accepts_numbers_and_unit_strings(value, seconds):
    assert parse_duration(value, "timeout") == pytest.approx(seconds)


def test_parse_duration_returns_float_for_int():
    assert isinstance(parse_duration(3, "timeout"), float)


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.5,
        "-1s",
        "-5",
        float("nan"),
        float("inf"),
        "nan",
        "inf",
        True,
        False,
        None,
        "abc",
        "",
        "   ",
        "1x",
        "s",
        "1s2",
        "ms500",
        [1],
        {"s": 1},
    ],
)
def test_parse_duration_rejects_bad_values_naming_the_field(value):
    with pytest.raises(DefinitionError) as info:
        parse_duration(value, "loopUntil.initialDelay")
    assert "loopUntil.initialDelay" in str(info.value)


def test_parse_duration_error_shows_the_bad_value_and_examples():
    with pytest.raises(DefinitionError) as info:
        parse_duration("1x", "timeout")
    assert "'1x'" in str(info.value)
    assert "500ms" in str(info.value)


def test_parse_duration_huge_integer_is_a_definition_error():
    """An integer too large for a float is a bad duration, not an OverflowError crash."""
    with pytest.raises(DefinitionError):
        parse_duration(10**400, "timeout")


_objects = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.msdh -+eE"),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(_objects)
def test_parse_duration_only_raises_definition_error_or_returns_finite_non_negative(value):
    try:
        seconds = parse_duration(value, "field")
    except DefinitionError:
        return
    assert isinstance(seconds, float)
    assert math.isfinite(seconds)
    assert seconds >= 0


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (300, 300),
        ("300", 300),
        ("64MB", 64_000_000),
        ("64mb", 64_000_000),
        ("64 MB", 64_000_000),
        ("512KiB", 512 * 1024),
        ("1.5GB", 1_500_000_000),
        ("2KB", 2000),
        ("1MiB", 1024**2),
        ("10B", 10),
    ],
)
def test_parse_size_accepts_bytes_and_unit_strings(value, size):
    assert parse_size(value, "limits.handlerMemory") == size


@pytest.mark.parametrize("value", [0, -1, True, None, "abc", "", "64XB", "-5MB", 1.5, "0MB"])
def test_parse_size_rejects_bad_values_naming_the_field(value):
    with pytest.raises(DefinitionError) as info:
        parse_size(value, "limits.handlerMemory")
    assert "limits.handlerMemory" in str(info.value)


@given(st.one_of(st.text(), st.text(alphabet="0123456789.kmgib "), st.integers(), st.none()))
def test_parse_size_only_raises_definition_error_or_returns_positive_int(value):
    try:
        size = parse_size(value, "field")
    except DefinitionError:
        return
    assert isinstance(size, int) and size > 0


def test_parse_size_huge_number_is_a_definition_error():
    """A size string too large for a float is refused, not an OverflowError crash."""
    with pytest.raises(DefinitionError):
        parse_size("9" * 400, "limits.maxResponseBytes")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250ms"),
        (0, "0ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (120, "2m"),
        (90, "1m30s"),
        (3600, "1h"),
        (5400, "1h30m"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["250ms", "1.5s", "2m", "1m30s", "1h"])
def test_format_duration_round_trips_through_parse_duration(text):
    assert format_duration(parse_duration(text, "x")) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (300, "300 B"),
        (0, "0 B"),
        (512_000, "512 KB"),
        (50_000_000, "50 MB"),
        (1_500_000_000, "1.5 GB"),
    ],
)
def test_format_size(size, text):
    assert format_size(size) == text
