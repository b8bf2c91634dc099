"""Delays the server or the body decide, throttled waits, and the explicit `delays` schedule.

The rules are pure (decide.polling.choose_delay / decide_poll / decide_retry_wait,
decide.schedules.server_delay / base_delay) and tested here without sleeping; the engine's use
of them runs against a real aiohttp server on 127.0.0.1, on a FakeClock (no sleeping) and, for one
case each, on the real clock with short delays.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import Reply, run_path

from lamrunner import defaults
from lamrunner.decide.polling import (
    Fail,
    Observation,
    PollState,
    Wait,
    choose_delay,
    clamp_delay,
    decide_poll,
    decide_retry_wait,
)
from lamrunner.decide.schedules import base_delay, delay_before, server_delay
from lamrunner.definition.directives import parse_directive
from lamrunner.definition.policies import (
    Backoff,
    PollPolicy,
    RetryPolicy,
    parse_loop_until,
    parse_retry,
)
from lamrunner.errors import ConditionError, DeadlineExceeded, DefinitionError, PollingExhausted
from lamrunner.js.runtime import CONDITION_LIMITS, JsEngine
from lamrunner.runner.clock import FakeClock

T0 = 1_700_000_000.0
FIXED_2S = Backoff(strategy="fixed", initial_delay=2.0, max_delay=30.0)


def policy(**kwargs) -> PollPolicy:
    kwargs.setdefault("backoff", FIXED_2S)
    return PollPolicy(condition="ctx.status === 200", **kwargs)


def after(p: PollPolicy, attempt: int, **fields) -> PollState:
    state = PollState.start(p, T0)
    state.attempt = attempt
    for name, value in fields.items():
        setattr(state, name, value)
    return state


# --- the explicit schedule: delays ------------------------------------------------------------


def test_delays_is_the_schedule_and_its_last_one_repeats():
    backoff = Backoff(delays=(1.0, 5.0, 30.0, 120.0))
    assert [base_delay(backoff, n) for n in range(1, 8)] == [0, 1, 5, 30, 120, 120, 120]


def test_jitter_goes_on_top_of_delays():
    full = Backoff(delays=(4.0, 8.0), jitter="full")
    equal = Backoff(delays=(4.0, 8.0), jitter="equal")
    assert delay_before(full, 2, rand=0.25) == 1.0
    assert delay_before(full, 3, rand=0.5) == 4.0
    assert delay_before(equal, 2, rand=0.5) == 3.0


def test_a_poll_follows_its_delays():
    p = policy(backoff=Backoff(delays=(1.0, 5.0, 30.0)), max_attempts=10)
    waits = [decide_poll(p, after(p, n), Observation(202), T0).delay for n in range(1, 6)]
    assert waits == [1, 5, 30, 30, 30]


def test_a_retry_follows_its_delays():
    retry = RetryPolicy(max_attempts=5, backoff=Backoff(delays=(0.5, 2.0)))
    waits = [decide_retry_wait(retry, n, 503, None, None) for n in range(1, 5)]
    assert [w.delay for w in waits if w is not None] == [0.5, 2.0, 2.0, 2.0]
    assert decide_retry_wait(retry, 5, 503, None, None) is None


def test_delays_parse_as_durations_for_loop_until_and_retry():
    loop = parse_loop_until({"condition": "true", "delays": ["1s", 5, "30s", "2m"]}, "loopUntil")
    assert loop.backoff.delays == (1.0, 5.0, 30.0, 120.0)
    retry = parse_retry({"maxAttempts": 3, "delays": ["250ms"], "jitter": "full"}, "retry")
    assert retry.backoff.delays == (0.25,) and retry.backoff.jitter == "full"


@pytest.mark.parametrize(
    ("delays", "message"),
    [
        (
            [],
            r"^step_1 lam\.httpRequest\.loopUntil\.delays: expected a non-empty list of durations, got a list$",
        ),
        (
            "1s",
            r"^step_1 lam\.httpRequest\.loopUntil\.delays: expected a non-empty list of durations, got a string$",
        ),
        (["1s", "soon"], r"^step_1 lam\.httpRequest\.loopUntil\.delays\[1\]: "),
        (["1s", -2], r"^step_1 lam\.httpRequest\.loopUntil\.delays\[1\]: "),
    ],
)
def test_bad_delays_name_the_field(delays, message):
    with pytest.raises(DefinitionError, match=message):
        parse_loop_until(
            {"condition": "true", "delays": delays}, "step_1 lam.httpRequest.loopUntil"
        )


@pytest.mark.parametrize("other", ["strategy", "initialDelay", "maxDelay", "multiplier"])
def test_delays_is_the_whole_schedule(other):
    value = {"strategy": "fixed", "initialDelay": "1s", "maxDelay": "5s", "multiplier": 3}[other]
    with pytest.raises(DefinitionError, match=rf"^retry: delays and {other} together"):
        parse_retry({"maxAttempts": 2, "delays": ["1s"], other: value}, "retry")


# --- delays the server asks for -------------------------------------------------------------


def test_server_delay_reads_every_header_and_takes_the_longest():
    assert server_delay({"retry-after": "3"}, T0) == 3
    assert server_delay({"x-poll-interval": "2.5"}, T0) == 2.5
    assert server_delay({"retry-after": "3", "x-poll-interval": "10"}, T0) == 10
    reset = {"ratelimit-remaining": "0", "ratelimit-reset": "42"}
    assert server_delay(reset, T0) == 42
    assert server_delay({"retry-after": "Tue, 14 Nov 2023 22:13:32 GMT"}, T0) == 12


def test_ratelimit_reset_counts_only_when_the_quota_is_used_up():
    assert server_delay({"ratelimit-remaining": "5", "ratelimit-reset": "42"}, T0) is None
    assert server_delay({"ratelimit-reset": "42"}, T0) is None


@pytest.mark.parametrize("value", ["", "soon", "-3", "nan", "inf"])
def test_server_delay_ignores_what_is_not_seconds(value):
    assert server_delay({"x-poll-interval": value}, T0) is None
    assert server_delay({"ratelimit-remaining": "0", "ratelimit-reset": value}, T0) is None


# --- the clamp rule -------------------------------------------------------------------------


def test_clamp_keeps_asked_delays_within_initial_and_max_delay():
    backoff = Backoff("exponential", initial_delay=1.0, max_delay=30.0)
    assert clamp_delay(0.01, backoff) == 1.0
    assert clamp_delay(12.0, backoff) == 12.0
    assert clamp_delay(3600.0, backoff) == 30.0


def test_clamp_with_delays_is_their_shortest_and_longest():
    backoff = Backoff(delays=(5.0, 1.0, 120.0))
    assert (clamp_delay(0.0, backoff), clamp_delay(600.0, backoff)) == (1.0, 120.0)


def test_a_fixed_delay_over_max_delay_is_its_own_ceiling():
    backoff = Backoff("fixed", initial_delay=60.0, max_delay=30.0)
    assert clamp_delay(90.0, backoff) == 60.0


def test_choose_delay_order_of_rules():
    backoff = Backoff("fixed", initial_delay=2.0, max_delay=30.0, jitter="full")
    # nothing asked: the schedule, jittered
    assert choose_delay(backoff, 2, 200, None, None, rand=0.5) == (1.0, False)
    # the headers, on any status: clamped, no jitter
    assert choose_delay(backoff, 2, 200, 10.0, None, rand=0.5) == (10.0, False)
    assert choose_delay(backoff, 2, 202, 0.1, None, rand=0.5) == (2.0, False)
    assert choose_delay(backoff, 2, 200, 3600.0, None, rand=0.5) == (30.0, False)
    # nextDelay, and the longest of it and the headers
    assert choose_delay(backoff, 2, 200, None, 7.0, rand=0.5) == (7.0, False)
    assert choose_delay(backoff, 2, 200, 9.0, 7.0, rand=0.5) == (9.0, False)
    assert choose_delay(backoff, 2, 200, None, 500.0, rand=0.5) == (30.0, False)
    # a rate limit: throttled, the scheduled delay or what it asks when longer, unclamped
    assert choose_delay(backoff, 2, 429, 120.0, None, rand=0.5) == (120.0, True)
    assert choose_delay(backoff, 2, 503, 0.1, None, rand=0.5) == (1.0, True)


def test_a_poll_honours_headers_and_next_delay_on_any_status():
    p = policy()
    assert decide_poll(p, after(p, 1), Observation(200, retry_after=5.0), T0) == Wait(T0 + 5, 5.0)
    seen = Observation(202, next_delay=12.0)
    assert decide_poll(p, after(p, 1), seen, T0) == Wait(T0 + 12, 12.0)
    seen = Observation(202, next_delay=1e6)
    assert decide_poll(p, after(p, 1), seen, T0) == Wait(T0 + 30, 30.0)


def test_the_deadline_stays_the_hard_bound_for_asked_delays():
    p = policy(timeout=10.0)
    decision = decide_poll(p, after(p, 1), Observation(200, next_delay=20.0), T0)
    assert isinstance(decision, Fail) and isinstance(decision.error, DeadlineExceeded)
    decision = decide_poll(p, after(p, 1), Observation(429, retry_after=20.0), T0)
    assert isinstance(decision, Fail) and isinstance(decision.error, DeadlineExceeded)


# --- throttled waits ------------------------------------------------------------------------


def test_throttled_attempts_do_not_count_against_max_attempts():
    p = policy(max_attempts=2)
    state = after(p, 1)
    now = T0
    for status in (429, 429, 503):  # three throttled attempts, then two that count
        decision = decide_poll(p, state, Observation(status, retry_after=4.0), now)
        assert decision == Wait(now + 4, 4.0, throttled=True)
        state.throttled += 1
        state.throttled_s += 4.0
        state.attempt += 1
        now += 4
    assert isinstance(decide_poll(p, state, Observation(202), now), Wait)  # counted: 1 of 2
    state.attempt += 1
    last = decide_poll(p, state, Observation(202), now)
    assert isinstance(last, Fail) and isinstance(last.error, PollingExhausted)
    assert last.error.attempts == 5


def test_a_429_without_retry_after_is_an_ordinary_attempt():
    p = policy(max_attempts=1)
    decision = decide_poll(p, after(p, 1), Observation(429), T0)
    assert isinstance(decision, Fail) and isinstance(decision.error, PollingExhausted)


def test_max_throttle_wait_bounds_the_throttled_time():
    p = policy(max_throttle_wait=60.0)
    ok = decide_poll(
        p, after(p, 3, throttled=2, throttled_s=50.0), Observation(429, retry_after=10.0), T0
    )
    assert ok == Wait(T0 + 10, 10.0, throttled=True)
    over = decide_poll(
        p, after(p, 3, throttled=2, throttled_s=50.0), Observation(429, retry_after=11.0), T0
    )
    assert isinstance(over, Fail) and isinstance(over.error, DeadlineExceeded)
    assert "maxThrottleWait (1m)" in over.error.message
    assert "throttled (429/503 with Retry-After) for 50s" in over.error.message


def test_throttled_retries_do_not_count_against_retry_max_attempts():
    retry = RetryPolicy(max_attempts=1, backoff=Backoff(initial_delay=1.0))
    wait = decide_retry_wait(retry, 1, 429, None, 3.0)
    assert wait == Wait(3.0, 3.0, throttled=True)
    assert decide_retry_wait(retry, 1, 500, None, None) is None  # one attempt: no retry
    assert decide_retry_wait(retry, 1, 500, None, 3.0) is None  # a 500 is not a rate limit


def test_retry_max_throttle_wait():
    retry = RetryPolicy(max_attempts=3, backoff=Backoff(initial_delay=1.0), max_throttle_wait=5.0)
    assert decide_retry_wait(retry, 1, 503, None, 5.0, throttled_s=0.0) is not None
    assert decide_retry_wait(retry, 1, 503, None, 5.0, throttled_s=0.5) is None


def test_a_retry_of_a_non_rate_limit_with_retry_after_is_clamped_and_counted():
    retry = RetryPolicy(max_attempts=2, backoff=Backoff(initial_delay=1.0, max_delay=4.0))
    assert decide_retry_wait(retry, 1, 500, None, 60.0) == Wait(4.0, 4.0, throttled=False)


# --- the saved state ------------------------------------------------------------------------


def test_a_poll_state_saved_before_throttling_existed_loads():
    old = {
        "started_at": T0,
        "deadline": None,
        "attempt": 3,
        "requests": 3,
        "next_due": T0 + 2,
        "last_status": 202,
        "last_excerpt": None,
        "last_error": None,
    }
    state = PollState.from_dict(old)
    assert (state.throttled, state.throttled_s) == (0, 0.0)
    assert state.to_dict() == old  # and saves the same again


def test_throttled_counts_are_saved_and_checked():
    state = PollState(started_at=T0, attempt=4, throttled=2, throttled_s=7.5)
    saved = json.loads(json.dumps(state.to_dict()))
    assert saved["throttled"] == 2 and saved["throttled_s"] == 7.5
    assert PollState.from_dict(saved) == state
    with pytest.raises(DefinitionError, match=r"^poll state: throttled_s: expected seconds >= 0"):
        PollState.from_dict({**saved, "throttled_s": -1})
    with pytest.raises(DefinitionError, match=r"^poll state: throttled: expected a whole number"):
        PollState.from_dict({**saved, "throttled": "2"})


# --- validation of the new fields -----------------------------------------------------------


def parse(loop=None, retry=None):
    request = {"method": "GET", "url": "http://x/"}
    if loop is not None:
        request["loopUntil"] = {"condition": "true", **loop}
    if retry is not None:
        request["retry"] = {"maxAttempts": 2, **retry}
    return parse_directive({"lam.httpRequest": request}, _check)


def _check(source: str, where: str) -> None:
    from lamrunner.errors import ScriptError
    from lamrunner.js.runtime import check_condition

    try:
        check_condition(source)
    except ScriptError as exc:
        raise ConditionError(f"{where}: {exc.message}") from None


@pytest.mark.parametrize(
    ("loop", "retry", "message"),
    [
        ({"nextDelays": "1000"}, None, r"unknown key 'nextDelays' \(did you mean 'nextDelay'\?\)"),
        ({"maxThrotleWait": "1m"}, None, r"did you mean 'maxThrottleWait'\?"),
        ({"delay": ["1s"]}, None, r"did you mean 'delays'\?"),
        (None, {"maxThrottleWiat": "1m"}, r"did you mean 'maxThrottleWait'\?"),
        (
            {"nextDelay": 1000},
            None,
            r"lam\.httpRequest\.loopUntil\.nextDelay: expected a non-empty string, got a number",
        ),
        ({"maxThrottleWait": "forever"}, None, r"lam\.httpRequest\.loopUntil\.maxThrottleWait: "),
        (None, {"maxThrottleWait": True}, r"lam\.httpRequest\.retry\.maxThrottleWait: "),
    ],
)
def test_the_new_fields_are_checked_like_the_rest(loop, retry, message):
    with pytest.raises(DefinitionError, match=message):
        parse(loop, retry)


def test_a_next_delay_that_does_not_compile_fails_before_anything_is_sent():
    with pytest.raises(ConditionError, match=r"lam\.httpRequest\.loopUntil\.nextDelay: "):
        parse({"nextDelay": "(ctx) => ctx.response.eta *"})


def test_the_new_fields_default():
    spec = parse({}, {}).requests[0]
    assert spec.loop.next_delay is None and spec.loop.backoff.delays == ()
    assert spec.loop.max_throttle_wait == defaults.MAX_THROTTLE_WAIT
    assert spec.retry.max_throttle_wait == defaults.MAX_THROTTLE_WAIT


# --- nextDelay in QuickJS -------------------------------------------------------------------


async def test_next_delay_evaluates_to_its_number_in_quickjs():
    engine = JsEngine(workers=1)
    try:
        ctx = json.dumps({"response": {"etaSeconds": 4}, "status": 200})
        fn = await engine.open_function("(ctx) => ctx.response.etaSeconds * 1000", CONDITION_LIMITS)
        assert await fn.evaluate(ctx) == 4000
        bare = await engine.open_function(
            "ctx.response.etaSeconds > 3 ? 250.5 : null", CONDITION_LIMITS
        )
        assert await bare.evaluate(ctx) == 250.5
        none = await engine.open_function("(ctx) => undefined", CONDITION_LIMITS)
        assert await none.evaluate(ctx) is None
        # the condition of the same source is still a boolean: the two are compiled apart
        cond = await engine.open_condition(
            "(ctx) => ctx.response.etaSeconds * 1000", CONDITION_LIMITS
        )
        assert await cond.evaluate(ctx) is True
    finally:
        engine.close()


# --- in the engine, against a real server ----------------------------------------------------


def poll(url: str, **loop) -> dict:
    loop.setdefault("condition", "(ctx) => ctx.response.state === 'done'")
    return {"method": "GET", "url": url, "loopUntil": loop}


async def test_x_poll_interval_and_retry_after_on_200_set_the_delay(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "running"}, headers={"X-Poll-Interval": "7"}),
        Reply(json={"state": "running"}, headers={"Retry-After": "0.1"}),  # under initialDelay
        Reply(json={"state": "running"}, headers={"Retry-After": "3600"}),  # over maxDelay
        Reply(json={"state": "running"}),
        Reply(json={"state": "done"}),
    )
    clock = FakeClock()
    request = poll(api.url + "/job", initialDelay="2s", maxDelay="1m", maxAttempts=10)
    record = await run_path(wf.workflow([wf.request_step("p", request)]), clock=clock)
    assert record["status"] == "SUCCESS", record["error"]
    assert clock.sleeps == [7, 2, 60, 2]


async def test_ratelimit_reset_when_the_quota_is_used_up(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(
            json={"state": "running"}, headers={"RateLimit-Remaining": "3", "RateLimit-Reset": "20"}
        ),
        Reply(
            json={"state": "running"}, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "20"}
        ),
        Reply(json={"state": "done"}),
    )
    clock = FakeClock()
    request = poll(api.url + "/job", initialDelay="1s", maxDelay="1m")
    record = await run_path(wf.workflow([wf.request_step("p", request)]), clock=clock)
    assert record["status"] == "SUCCESS", record["error"]
    assert clock.sleeps == [1, 20]


async def test_next_delay_from_the_body_sets_the_delay(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "running", "etaSeconds": 12}),
        Reply(json={"state": "running", "etaSeconds": 0}),  # clamped up to initialDelay
        Reply(json={"state": "running"}),  # NaN: ignored, the schedule
        Reply(json={"state": "done"}),
    )
    clock = FakeClock()
    request = poll(
        api.url + "/job",
        nextDelay="(ctx) => ctx.response.etaSeconds * 1000",
        strategy="exponential",
        initialDelay="1s",
        maxDelay="30s",
    )
    record = await run_path(wf.workflow([wf.request_step("p", request)]), clock=clock)
    assert record["status"] == "SUCCESS", record["error"]
    assert clock.sleeps == [12, 1, 4]


async def test_a_next_delay_that_throws_or_returns_a_string_falls_back_to_the_schedule(api, wf):
    for source in ("(ctx) => ctx.response.missing.deep", "(ctx) => 'soon'"):
        api.replies.clear()
        api.script("GET", "/job", Reply(json={"state": "running"}), Reply(json={"state": "done"}))
        clock = FakeClock()
        request = poll(api.url + "/job", nextDelay=source, initialDelay="3s")
        record = await run_path(wf.workflow([wf.request_step("p", request)]), clock=clock)
        assert record["status"] == "SUCCESS", record["error"]
        assert clock.sleeps == [3]


async def test_delays_schedule_in_a_poll_and_a_retry(api, wf):
    api.script("GET", "/job", Reply(json={"state": "running"}))
    clock = FakeClock()
    request = poll(api.url + "/job", delays=["1s", "5s", "30s", "2m"], maxAttempts=6)
    record = await run_path(wf.workflow([wf.request_step("p", request)]), clock=clock)
    assert record["error"]["type"] == "PollingExhausted"
    assert clock.sleeps == [1, 5, 30, 120, 120]

    api.script("GET", "/flaky", Reply(status=500, json={}))
    clock = FakeClock()
    request = {
        "method": "GET",
        "url": api.url + "/flaky",
        "retry": {"maxAttempts": 4, "delays": ["250ms", "2s"]},
    }
    record = await run_path(wf.workflow([wf.request_step("r", request)]), clock=clock)
    assert record["error"]["type"] == "HttpStatusError"
    assert clock.sleeps == [0.25, 2, 2]


async def test_a_poll_waits_out_a_rate_limit_without_using_its_attempts(api, wf):
    limited = Reply(status=429, json={"error": "slow down"}, headers={"Retry-After": "5"})
    api.script(
        "GET",
        "/job",
        limited,
        limited,
        limited,
        Reply(json={"state": "running"}),
        Reply(json={"state": "done"}),
    )
    clock = FakeClock()
    request = poll(api.url + "/job", maxAttempts=2, initialDelay="1s")
    record = await run_path(wf.workflow([wf.request_step("p", request)]), clock=clock)
    assert record["status"] == "SUCCESS", record["error"]
    assert clock.sleeps == [5, 5, 5, 1]
    http = record["gwo"]["step_1"]["http"]
    assert http["attempts"] == 5
    assert http["throttledMs"] == 15_000


async def test_max_throttle_wait_fails_a_poll_that_stays_rate_limited(api, wf):
    api.script("GET", "/job", Reply(status=503, json={}, headers={"Retry-After": "30"}))
    clock = FakeClock()
    request = poll(api.url + "/job", maxAttempts=2, maxThrottleWait="2m")
    record = await run_path(wf.workflow([wf.request_step("p", request)]), clock=clock)
    assert record["error"]["type"] == "DeadlineExceeded"
    assert "maxThrottleWait (2m)" in record["error"]["message"]
    assert "attempts: 5; throttled: 4 attempts, 2m waited" in record["error"]["message"]
    assert clock.sleeps == [30, 30, 30, 30]
    assert len(api.requests_to("/job")) == 5


async def test_a_retry_waits_out_a_rate_limit_without_using_its_attempts(api, wf):
    limited = Reply(status=429, json={}, headers={"Retry-After": "2"})
    api.script("GET", "/r", limited, limited, limited, Reply(json={"ok": True}))
    clock = FakeClock()
    request = {"method": "GET", "url": api.url + "/r", "retry": {"maxAttempts": 1}}
    record = await run_path(wf.workflow([wf.request_step("r", request)]), clock=clock)
    assert record["status"] == "SUCCESS", record["error"]
    assert clock.sleeps == [2, 2, 2]
    assert record["gwo"]["step_1"]["http"] == {
        **record["gwo"]["step_1"]["http"],
        "attempts": 4,
        "throttledMs": 6000,
    }


async def test_no_throttled_time_no_throttled_ms(api, wf):
    api.script("GET", "/r", Reply(json={"ok": True}))
    request = {"method": "GET", "url": api.url + "/r", "retry": {"maxAttempts": 2}}
    record = await run_path(wf.workflow([wf.request_step("r", request)]), clock=FakeClock())
    assert "throttledMs" not in record["gwo"]["step_1"]["http"]


async def test_retry_throttled_time_in_a_poll_counts_for_the_poll(api, wf):
    limited = Reply(status=429, json={}, headers={"Retry-After": "4"})
    api.script(
        "GET",
        "/job",
        limited,
        Reply(json={"state": "running"}),
        limited,
        Reply(json={"state": "done"}),
    )
    clock = FakeClock()
    request = {
        **poll(api.url + "/job", maxAttempts=2, initialDelay="1s"),
        "retry": {"maxAttempts": 1},
    }
    record = await run_path(wf.workflow([wf.request_step("p", request)]), clock=clock)
    assert record["status"] == "SUCCESS", record["error"]
    assert clock.sleeps == [4, 1, 4]
    assert record["gwo"]["step_1"]["http"]["throttledMs"] == 8000


async def test_a_real_clock_poll_follows_x_poll_interval(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "running"}, headers={"X-Poll-Interval": "0.3"}),
        Reply(json={"state": "done"}),
    )
    request = poll(api.url + "/job", initialDelay="10ms", maxDelay="1s")
    record = await run_path(wf.workflow([wf.request_step("p", request)]))
    assert record["status"] == "SUCCESS", record["error"]
    first, second = api.requests_to("/job")
    assert 0.28 <= second.at - first.at < 0.9


async def test_a_real_clock_retry_waits_out_a_rate_limit(api, wf):
    limited = Reply(status=503, json={}, headers={"Retry-After": "0.2"})
    api.script("GET", "/r", limited, limited, Reply(json={"ok": 1}))
    request = {
        "method": "GET",
        "url": api.url + "/r",
        "retry": {"maxAttempts": 1, "initialDelay": "10ms"},
    }
    loop = asyncio.get_running_loop()
    started = loop.time()
    record = await run_path(wf.workflow([wf.request_step("r", request)]))
    assert record["status"] == "SUCCESS", record["error"]
    assert loop.time() - started >= 0.38
    assert record["gwo"]["step_1"]["http"]["throttledMs"] == 400


async def test_runs_show_marks_throttled_attempts(api, wf):
    from lamrunner.runner.observe import RunObserver

    rows: list[dict] = []
    progress: list[tuple[int, int]] = []

    class Keep(RunObserver):
        def save_attempt(self, state, index, row):
            rows.append(row)

        def poll_progress(self, key, name, attempt, of, status, due):
            progress.append((attempt, of))

    limited = Reply(status=429, json={}, headers={"Retry-After": "3"})
    api.script(
        "GET", "/job", Reply(json={"state": "running"}), limited, Reply(json={"state": "done"})
    )
    request = poll(api.url + "/job", maxAttempts=2, initialDelay="1s")
    record = await run_path(
        wf.workflow([wf.request_step("p", request)]), clock=FakeClock(), observers=[Keep()]
    )
    assert record["status"] == "SUCCESS", record["error"]
    assert [r["outcome"] for r in rows] == ["wait", "throttled", "success"]
    assert progress == [(1, 2), (1, 2)]  # the live line counts attempts of maxAttempts


def test_bare_thousands_in_the_new_durations_warn_as_seconds():
    directive = parse_directive(
        {
            "lam.httpRequest": {
                "method": "GET",
                "url": "http://x/",
                "loopUntil": {"condition": "true", "delays": ["1s", 2000], "maxThrottleWait": 5000},
            }
        }
    )
    assert directive.warnings == (
        "lam.httpRequest.loopUntil.delays[1]: 2000 seconds (33m20s); "
        "write '2000ms' if you meant milliseconds",
        "lam.httpRequest.loopUntil.maxThrottleWait: 5000 seconds (1h23m); "
        "write '5000ms' if you meant milliseconds",
    )
