"""Retry and polling policies (defaults, validation) and their delay schedules, pure functions
(`lamrunner.decide.schedules`)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from lamrunner.decide.schedules import base_delay, delay_before, retry_after_seconds
from lamrunner.definition.policies import Backoff, parse_loop_until, parse_retry
from lamrunner.errors import DefinitionError


def schedule(backoff: Backoff, attempts: int, rand: float = 0.5) -> list[float]:
    return [delay_before(backoff, n, rand) for n in range(1, attempts + 1)]


# --- the schedule ---------------------------------------------------------------------------


def test_first_attempt_has_no_delay():
    for backoff in (Backoff(), Backoff(strategy="exponential"), Backoff(jitter="full")):
        assert delay_before(backoff, 1, 0.9) == 0


def test_fixed_schedule_repeats_initial_delay():
    assert schedule(Backoff(strategy="fixed", initial_delay=2.0), 5) == [0, 2, 2, 2, 2]


def test_fixed_schedule_ignores_max_delay():
    assert schedule(Backoff(strategy="fixed", initial_delay=5, max_delay=1), 3) == [0, 5, 5]


def test_exponential_schedule_doubles_then_caps_at_max_delay():
    backoff = Backoff(strategy="exponential", initial_delay=1, max_delay=30, multiplier=2)
    assert schedule(backoff, 8) == [0, 1, 2, 4, 8, 16, 30, 30]


def test_exponential_schedule_with_other_multiplier_and_initial_delay():
    backoff = Backoff(strategy="exponential", initial_delay=0.5, max_delay=100, multiplier=3)
    assert schedule(backoff, 5) == pytest.approx([0, 0.5, 1.5, 4.5, 13.5])


def test_exponential_multiplier_one_is_constant():
    backoff = Backoff(strategy="exponential", initial_delay=3, max_delay=30, multiplier=1)
    assert schedule(backoff, 4) == [0, 3, 3, 3]


def test_exponential_cap_below_initial_delay_caps_every_delay():
    backoff = Backoff(strategy="exponential", initial_delay=10, max_delay=4, multiplier=2)
    assert schedule(backoff, 3) == [0, 4, 4]


@pytest.mark.parametrize("multiplier", [1, 1.0001, 2, 10, 1e6])
def test_huge_attempt_numbers_do_not_overflow(multiplier):
    backoff = Backoff(strategy="exponential", initial_delay=1, max_delay=30, multiplier=multiplier)
    delay = delay_before(backoff, 10**6)
    assert delay == (1 if multiplier == 1 else 30)


def test_huge_attempt_number_fixed():
    assert delay_before(Backoff(strategy="fixed", initial_delay=2), 10**6) == 2


def test_base_delay_matches_formula():
    backoff = Backoff(strategy="exponential", initial_delay=1.5, max_delay=60, multiplier=2.5)
    for n in range(2, 12):
        assert base_delay(backoff, n) == pytest.approx(min(1.5 * 2.5 ** (n - 2), 60))


def test_no_jitter_ignores_rand():
    backoff = Backoff(strategy="fixed", initial_delay=4, jitter="none")
    assert delay_before(backoff, 2, 0.0) == delay_before(backoff, 2, 0.99) == 4


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 0.0), (0.25, 1.0), (0.5, 2.0), (0.99, 3.96)])
def test_full_jitter_is_delay_times_rand(rand, expected):
    backoff = Backoff(strategy="fixed", initial_delay=4, jitter="full")
    assert delay_before(backoff, 2, rand) == pytest.approx(expected)


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 2.0), (0.5, 3.0), (0.99, 3.98)])
def test_equal_jitter_is_half_plus_random_half(rand, expected):
    backoff = Backoff(strategy="fixed", initial_delay=4, jitter="equal")
    assert delay_before(backoff, 2, rand) == pytest.approx(expected)


def test_jitter_never_exceeds_the_cap():
    backoff = Backoff(strategy="exponential", initial_delay=1, max_delay=10, jitter="full")
    assert all(delay_before(backoff, n, 0.999) <= 10 for n in range(1, 50))


# --- Retry-After ----------------------------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 5 ", 5.0), ("0", 0.0)])
def test_retry_after_delta_seconds(value, seconds):
    assert retry_after_seconds(value, NOW) == seconds


def test_retry_after_http_date_is_relative_to_now():
    when = datetime(2024, 5, 1, 12, 0, 45, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(when, usegmt=True), NOW) == pytest.approx(45)


def test_retry_after_past_date_is_zero():
    when = datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(when, usegmt=True), NOW) == 0


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "soon", "nan", "inf", "Wed, 99 Foo 2015", "Mon, 32 Oct 2015 07:28:00 GMT"],
)
def test_retry_after_garbage_is_none(value):
    assert retry_after_seconds(value, NOW) is None


# --- parse_retry / parse_loop_until ---------------------------------------------------------


def test_loop_until_defaults():
    policy = parse_loop_until({"condition": "ctx.status === 200"}, "loopUntil")
    assert policy.condition == "ctx.status === 200"
    assert policy.max_attempts == 10
    assert policy.backoff == Backoff(
        strategy="fixed", initial_delay=1.0, max_delay=30.0, multiplier=2.0, jitter="none"
    )
    assert policy.ignore_errors is False
    assert policy.fail_when is None
    assert policy.timeout is None


def test_loop_until_all_fields():
    policy = parse_loop_until(
        {
            "condition": "c",
            "maxAttempts": 5,
            "strategy": "exponential",
            "initialDelay": "500ms",
            "maxDelay": "1m",
            "multiplier": 3,
            "failWhen": "f",
            "timeout": "1m30s",
            "jitter": "full",
            "ignoreErrors": True,
        },
        "loopUntil",
    )
    assert policy.max_attempts == 5
    assert policy.backoff == Backoff("exponential", 0.5, 60.0, 3.0, "full")
    assert policy.fail_when == "f"
    assert policy.timeout == 90.0
    assert policy.ignore_errors is True


def test_retry_defaults():
    policy = parse_retry({"maxAttempts": 3}, "retry")
    assert policy.max_attempts == 3
    assert policy.backoff == Backoff(
        strategy="exponential", initial_delay=1.0, max_delay=30.0, multiplier=2.0, jitter="none"
    )
    assert set(policy.retryable_statuses) == {429, 500, 502, 503, 504}
    assert set(policy.retryable_exceptions) == {"timeout", "connection"}


def test_retry_custom_lists():
    policy = parse_retry(
        {"maxAttempts": 2, "retryableStatusCodes": [409], "retryableExceptions": ["protocol"]},
        "retry",
    )
    assert set(policy.retryable_statuses) == {409}
    assert set(policy.retryable_exceptions) == {"protocol"}


def test_retry_max_attempts_is_required():
    with pytest.raises(DefinitionError, match="maxAttempts"):
        parse_retry({"initialDelay": "1s"}, "retry")


def test_loop_until_condition_is_required():
    with pytest.raises(DefinitionError, match="condition"):
        parse_loop_until({"maxAttempts": 3}, "loopUntil")


@pytest.mark.parametrize(
    ("parse", "data", "typo", "suggestion"),
    [
        (parse_retry, {"maxAttempts": 3, "maxAttempt": 3}, "maxAttempt", "maxAttempts"),
        (parse_loop_until, {"condition": "c", "maxAttempt": 3}, "maxAttempt", "maxAttempts"),
        (parse_retry, {"maxAttempts": 3, "intialDelay": "1s"}, "intialDelay", "initialDelay"),
        (parse_loop_until, {"condition": "c", "intialDelay": 1}, "intialDelay", "initialDelay"),
        (parse_loop_until, {"condition": "c", "failwhen": "x"}, "failwhen", "failWhen"),
    ],
)
def test_unknown_key_names_it_and_suggests_the_known_one(parse, data, typo, suggestion):
    with pytest.raises(DefinitionError) as info:
        parse(data, "policy")
    message = str(info.value)
    assert repr(typo) in message
    assert f"did you mean {suggestion!r}" in message


def test_retry_only_key_is_unknown_in_loop_until():
    with pytest.raises(DefinitionError, match="retryableStatusCodes"):
        parse_loop_until({"condition": "c", "retryableStatusCodes": [500]}, "loopUntil")


@pytest.mark.parametrize("parse", [parse_retry, parse_loop_until])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("strategy", "linear"),
        ("jitter", "half"),
        ("initialDelay", "abc"),
        ("initialDelay", -1),
        ("maxDelay", "1x"),
        ("multiplier", 0.5),
        ("multiplier", "2"),
        ("maxAttempts", 0),
        ("maxAttempts", True),
        ("maxAttempts", "3"),
    ],
)
def test_bad_values_name_the_field(parse, field, value):
    data = {"condition": "c", "maxAttempts": 3} if parse is parse_loop_until else {"maxAttempts": 3}
    data[field] = value
    with pytest.raises(DefinitionError) as info:
        parse(data, "lam.httpRequest.policy")
    assert f"lam.httpRequest.policy.{field}" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", "soon"),
        ("timeout", -5),
        ("ignoreErrors", "yes"),
        ("condition", ""),
        ("condition", 5),
        ("failWhen", 5),
    ],
)
def test_bad_loop_only_fields_name_the_field(field, value):
    data = {"condition": "c", field: value}
    with pytest.raises(DefinitionError) as info:
        parse_loop_until(data, "loopUntil")
    assert f"loopUntil.{field}" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retryableStatusCodes", [700]),
        ("retryableStatusCodes", "500"),
        ("retryableStatusCodes", [True]),
        ("retryableExceptions", ["dns"]),
        ("retryableExceptions", "timeout"),
    ],
)
def test_bad_retry_lists_name_the_field(field, value):
    with pytest.raises(DefinitionError) as info:
        parse_retry({"maxAttempts": 3, field: value}, "retry")
    assert f"retry.{field}" in str(info.value)


@pytest.mark.parametrize("data", [None, [], "3", 3])
def test_policy_must_be_a_mapping(data):
    with pytest.raises(DefinitionError):
        parse_retry(data, "retry")
    with pytest.raises(DefinitionError):
        parse_loop_until(data, "loopUntil")
