"""decide_poll / decide_retry: the pure "what next?" after one attempt, with no sleeping."""

from __future__ import annotations

import json

import pytest

from lamrunner.decide.polling import (
    Fail,
    Observation,
    PollState,
    Succeed,
    Wait,
    decide_poll,
    decide_retry,
)
from lamrunner.definition.policies import Backoff, PollPolicy, RetryPolicy
from lamrunner.errors import (
    DeadlineExceeded,
    PollingExhausted,
    PollingFailed,
    TransportError,
)

T0 = 1_700_000_000.0


def poll_policy(**kwargs) -> PollPolicy:
    kwargs.setdefault("backoff", Backoff(strategy="fixed", initial_delay=2.0))
    return PollPolicy(condition="ctx.status === 200", **kwargs)


def state_after(policy: PollPolicy, attempt: int, now: float = T0, **fields) -> PollState:
    state = PollState.start(policy, now)
    state.attempt = attempt
    for name, value in fields.items():
        setattr(state, name, value)
    return state


def transport_error() -> TransportError:
    return TransportError("connection refused", kind="connection")


# --- decide_poll ----------------------------------------------------------------------------


def test_condition_holding_succeeds():
    policy = poll_policy()
    assert (
        decide_poll(policy, state_after(policy, 1), Observation(200, condition=True), T0)
        == Succeed()
    )


def test_condition_holding_on_the_last_attempt_succeeds():
    policy = poll_policy(max_attempts=3)
    assert isinstance(
        decide_poll(policy, state_after(policy, 3), Observation(200, condition=True), T0), Succeed
    )


def test_condition_wins_over_fail_when():
    policy = poll_policy(fail_when="true")
    seen = Observation(200, condition=True, fail_when=True)
    assert isinstance(decide_poll(policy, state_after(policy, 1), seen, T0), Succeed)


def test_fail_when_fails_at_once():
    policy = poll_policy(fail_when="ctx.response.state === 'FAILED'", max_attempts=10)
    state = state_after(policy, 2, last_status=200, last_excerpt='{"state":"FAILED"}')
    decision = decide_poll(policy, state, Observation(200, fail_when=True), T0)
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, PollingFailed)
    assert decision.error.attempts == 2
    assert decision.error.last_status == 200


def test_not_yet_waits_the_scheduled_delay():
    policy = poll_policy()
    decision = decide_poll(policy, state_after(policy, 1), Observation(202), T0 + 5)
    assert decision == Wait(until=T0 + 7, delay=2.0)


def test_exponential_waits_follow_the_schedule():
    policy = poll_policy(backoff=Backoff("exponential", 1, 5, 2), max_attempts=10)
    delays = [
        decide_poll(policy, state_after(policy, n), Observation(202), T0).delay for n in range(1, 7)
    ]
    assert delays == [1, 2, 4, 5, 5, 5]


def test_jitter_uses_injected_rand():
    policy = poll_policy(backoff=Backoff("fixed", 4, 30, 2, "full"))
    decision = decide_poll(policy, state_after(policy, 1), Observation(202), T0, rand=0.25)
    assert decision == Wait(until=T0 + 1, delay=1.0)


def test_exhausted_at_max_attempts_reports_count_status_and_excerpt():
    policy = poll_policy(max_attempts=3)
    state = state_after(policy, 3, last_status=202, last_excerpt='{"state":"RUNNING"}')
    decision = decide_poll(policy, state, Observation(202, excerpt='{"state":"RUNNING"}'), T0)
    assert isinstance(decision, Fail)
    error = decision.error
    assert isinstance(error, PollingExhausted)
    assert error.attempts == 3
    assert error.last_status == 202
    assert "3" in error.message
    assert "202" in error.message
    assert '{"state":"RUNNING"}' in error.message


def test_one_attempt_before_max_still_waits():
    policy = poll_policy(max_attempts=3)
    assert isinstance(decide_poll(policy, state_after(policy, 2), Observation(202), T0), Wait)


def test_exhausted_message_quotes_the_last_error():
    policy = poll_policy(max_attempts=2, ignore_errors=True)
    state = state_after(policy, 2, last_error="connection refused")
    decision = decide_poll(policy, state, Observation(error=transport_error()), T0)
    assert isinstance(decision.error, PollingExhausted)
    assert "connection refused" in decision.error.message


def test_deadline_that_next_attempt_would_pass_fails_immediately():
    policy = poll_policy(timeout=5.0)  # fixed 2s delays
    state = state_after(policy, 2, last_status=202)
    decision = decide_poll(policy, state, Observation(202), T0 + 3.5)
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, DeadlineExceeded)
    assert decision.error.attempts == 2
    assert decision.error.last_status == 202


def test_next_attempt_exactly_at_deadline_still_waits():
    policy = poll_policy(timeout=5.0)
    assert decide_poll(policy, state_after(policy, 1), Observation(202), T0 + 3) == Wait(
        T0 + 5, 2.0
    )


def test_no_wait_ever_ends_past_the_deadline():
    policy = poll_policy(backoff=Backoff("exponential", 0.3, 10, 2), timeout=7.0, max_attempts=100)
    state = PollState.start(policy, T0)
    now = T0
    while True:
        state.attempt += 1
        decision = decide_poll(policy, state, Observation(202), now)
        if isinstance(decision, Fail):
            assert isinstance(decision.error, DeadlineExceeded)
            break
        assert decision.until <= state.deadline
        now = decision.until


def test_deadline_comes_from_policy_timeout():
    policy = poll_policy(timeout=30.0)
    assert PollState.start(policy, T0).deadline == T0 + 30
    assert PollState.start(poll_policy(), T0).deadline is None


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_on_429_or_503_lengthens_the_next_delay(status):
    policy = poll_policy()
    decision = decide_poll(
        policy, state_after(policy, 1), Observation(status, retry_after=10.0), T0
    )
    assert decision == Wait(until=T0 + 10, delay=10.0, throttled=True)


def test_retry_after_shorter_than_schedule_does_not_shorten():
    policy = poll_policy()
    decision = decide_poll(policy, state_after(policy, 1), Observation(429, retry_after=0.5), T0)
    assert decision.delay == 2.0


@pytest.mark.parametrize("status", [200, 202, 404])
def test_retry_after_on_other_statuses_sets_the_delay_but_is_not_throttling(status):
    policy = poll_policy()  # fixed 2s, maxDelay 30s
    decision = decide_poll(
        policy, state_after(policy, 1), Observation(status, retry_after=10.0), T0
    )
    assert decision == Wait(until=T0 + 10, delay=10.0, throttled=False)


def test_retry_after_past_the_deadline_fails_immediately():
    policy = poll_policy(timeout=5.0)
    decision = decide_poll(policy, state_after(policy, 1), Observation(429, retry_after=60.0), T0)
    assert isinstance(decision.error, DeadlineExceeded)


def test_transport_error_fails_at_once_without_ignore_errors():
    policy = poll_policy(max_attempts=10)
    error = transport_error()
    decision = decide_poll(policy, state_after(policy, 1), Observation(error=error), T0)
    assert decision == Fail(error)


def test_transport_error_with_ignore_errors_waits_and_counts_as_attempt():
    policy = poll_policy(max_attempts=3, ignore_errors=True)
    seen = Observation(error=transport_error())
    assert isinstance(decide_poll(policy, state_after(policy, 1), seen, T0), Wait)
    last = decide_poll(policy, state_after(policy, 3), seen, T0)
    assert isinstance(last, Fail) and isinstance(last.error, PollingExhausted)
    assert last.error.attempts == 3


def test_poll_state_round_trips_through_json():
    policy = poll_policy(timeout=60.0)
    state = state_after(
        policy,
        4,
        requests=6,
        next_due=T0 + 8,
        last_status=202,
        last_excerpt='{"a": "é"}',
        last_error="timed out",
    )
    restored = PollState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state


def test_fresh_poll_state_round_trips_through_json():
    state = PollState.start(poll_policy(), T0)
    assert PollState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


# --- decide_retry ---------------------------------------------------------------------------


def retry_policy(**kwargs) -> RetryPolicy:
    kwargs.setdefault("backoff", Backoff(strategy="exponential", initial_delay=1, max_delay=30))
    kwargs.setdefault("max_attempts", 4)
    return RetryPolicy(**kwargs)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_status_retries_after_the_schedule(status):
    assert decide_retry(retry_policy(), 1, status, None, None) == 1.0
    assert decide_retry(retry_policy(), 2, status, None, None) == 2.0
    assert decide_retry(retry_policy(), 3, status, None, None) == 4.0


@pytest.mark.parametrize("status", [200, 201, 400, 401, 404, 501])
def test_non_retryable_status_stops(status):
    assert decide_retry(retry_policy(), 1, status, None, None) is None


def test_custom_retryable_statuses():
    policy = retry_policy(retryable_statuses=frozenset({409}))
    assert decide_retry(policy, 1, 409, None, None) == 1.0
    assert decide_retry(policy, 1, 503, None, None) is None


def test_max_attempts_stops_retrying():
    assert decide_retry(retry_policy(max_attempts=3), 3, 503, None, None) is None
    assert decide_retry(retry_policy(max_attempts=1), 1, 503, None, None) is None


@pytest.mark.parametrize("kind", ["timeout", "connection"])
def test_retryable_exception_kinds_retry(kind):
    error = TransportError("x", kind=kind)
    assert decide_retry(retry_policy(), 1, None, error, None) == 1.0


def test_exception_kind_not_listed_stops():
    error = TransportError("bad response", kind="protocol")
    assert decide_retry(retry_policy(), 1, None, error, None) is None
    policy = retry_policy(retryable_exceptions=frozenset({"protocol"}))
    assert decide_retry(policy, 1, None, error, None) == 1.0


def test_retry_after_lengthens_the_retry_delay():
    assert decide_retry(retry_policy(), 1, 503, None, 12.0) == 12.0
    assert decide_retry(retry_policy(), 1, 429, None, 0.2) == 1.0


def test_retry_after_does_not_make_a_non_retryable_status_retry():
    assert decide_retry(retry_policy(), 1, 404, None, 5.0) is None


def test_retry_jitter_uses_injected_rand():
    policy = retry_policy(backoff=Backoff("exponential", 2, 30, 2, "equal"))
    assert decide_retry(policy, 1, 503, None, None, rand=0.5) == pytest.approx(1.5)
