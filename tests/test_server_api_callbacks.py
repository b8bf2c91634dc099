"""Callbacks of `lamrunner serve`: the schedule, the signature, durable delivery to a real
receiver on 127.0.0.1 that fails before it succeeds, give-up rules, a restart mid-delivery."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import time

import aioresponses.core as aioresponses_core
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses

from lamrunner.definition.policies import Backoff
from lamrunner.runner.clock import FakeClock
from lamrunner.server.callbacks import (
    SIGNATURE_HEADER,
    CallbackPolicy,
    CallbackSender,
    delay_before,
    outcome,
    shown_url,
    signature,
    verify,
)
from lamrunner.store.callbacks import DELIVERED, GAVE_UP, PENDING, CallbackOutbox
from tests.conftest import Reply

FAST = CallbackPolicy(
    max_attempts=5,
    backoff=Backoff("exponential", 0.05, 0.2, 2.0, "none"),
    timeout=2.0,
)
BODY = json.dumps({"job_id": "j1", "status": "completed", "result": {"n": 1}})


def test_default_schedule_doubles_from_one_second_and_spans_about_an_hour():
    policy = CallbackPolicy()
    delays = [delay_before(policy, n) for n in range(1, policy.max_attempts + 1)]
    assert delays[:6] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(delays) == 900.0  # capped at 15 minutes
    assert 3000 <= sum(d for d in delays if d is not None) <= 4500  # about an hour in all
    assert delay_before(policy, policy.max_attempts + 1) is None  # no attempt past the last


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, DELIVERED),
        (204, DELIVERED),
        (408, PENDING),
        (429, PENDING),
        (500, PENDING),
        (503, PENDING),
        (None, PENDING),
        (400, GAVE_UP),
        (404, GAVE_UP),
        (410, GAVE_UP),
        (301, GAVE_UP),
    ],
)
def test_what_an_answer_means(status, expected):
    assert outcome(status) == expected


def test_signature_verifies_and_a_changed_body_or_key_does_not():
    header = signature("k3y-secret", 1_700_000_000, BODY)
    assert header.startswith("t=1700000000,v1=")
    assert verify("k3y-secret", header, BODY)
    assert not verify("k3y-secret", header, BODY.replace("1", "2"))
    assert not verify("other-key", header, BODY)
    assert not verify("k3y-secret", "t=abc,v1=00", BODY)


def test_log_lines_show_the_url_without_its_query_or_credentials():
    assert shown_url("https://u:pw@hooks.example:8443/in?token=s3cret") == (
        "https://hooks.example:8443/in"
    )


async def _until(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_receiver_that_fails_twice_gets_the_signed_body_on_the_third_try(api, tmp_path):
    api.script("POST", "/hook", Reply(503), Reply(500), Reply(200, json={"ok": True}))
    outbox = CallbackOutbox(tmp_path / "runs.sqlite3")
    sender = CallbackSender(outbox, key="sign-me", policy=FAST)
    await sender.start()
    try:
        sender.add("j1", f"{api.url}/hook?token=abc", BODY, allow_link_local=False)
        await _until(lambda: outbox.get("j1").state == DELIVERED)
    finally:
        await sender.close()
    seen = api.requests_to("/hook")
    assert len(seen) == 3
    assert [s.body.decode() for s in seen] == [BODY] * 3
    for request in seen:
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Lamrunner-Job-Id"] == "j1"
        assert verify("sign-me", request.headers[SIGNATURE_HEADER], BODY)
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09  # 0.05 s, then 0.1 s: the backoff
    assert outbox.get("j1").attempts == 3


async def test_a_4xx_other_than_408_429_is_given_up_at_once(api, tmp_path):
    api.script("POST", "/hook", Reply(404))
    outbox = CallbackOutbox(tmp_path / "runs.sqlite3")
    sender = CallbackSender(outbox, key=None, policy=FAST)
    await sender.start()
    try:
        sender.add("j2", f"{api.url}/hook", BODY, allow_link_local=False)
        await _until(lambda: outbox.get("j2").state == GAVE_UP)
        await asyncio.sleep(0.3)  # longer than every retry delay: none comes
    finally:
        await sender.close()
    assert len(api.requests_to("/hook")) == 1
    assert SIGNATURE_HEADER not in api.requests_to("/hook")[0].headers  # no key: unsigned
    assert "404" in outbox.get("j2").last_error


async def test_attempts_stop_after_the_policys_last(api, tmp_path):
    api.script("POST", "/hook", Reply(500))
    outbox = CallbackOutbox(tmp_path / "runs.sqlite3")
    sender = CallbackSender(outbox, key="k", policy=FAST)
    await sender.start()
    try:
        sender.add("j3", f"{api.url}/hook", BODY, allow_link_local=False)
        await _until(lambda: outbox.get("j3").state == GAVE_UP)
    finally:
        await sender.close()
    assert len(api.requests_to("/hook")) == FAST.max_attempts


async def test_a_link_local_receiver_is_refused_unless_the_workflow_allows_it(tmp_path):
    outbox = CallbackOutbox(tmp_path / "runs.sqlite3")
    sender = CallbackSender(outbox, key="k", policy=FAST)
    await sender.start()
    try:
        sender.add("j4", "http://169.254.169.254/latest/meta-data", BODY, allow_link_local=False)
        await _until(lambda: outbox.get("j4").state == GAVE_UP)
    finally:
        await sender.close()
    delivery = outbox.get("j4")
    assert delivery.attempts == 1
    assert "link-local" in delivery.last_error


async def test_an_unreachable_receiver_is_retried_on_the_schedule_with_a_fake_clock(tmp_path):
    clock = FakeClock()
    outbox = CallbackOutbox(tmp_path / "runs.sqlite3")
    policy = CallbackPolicy(max_attempts=4, timeout=1.0)
    sender = CallbackSender(outbox, key="k", policy=policy, clock=clock)
    await sender.start()
    try:
        sender.add("j5", "http://127.0.0.1:9/nobody", BODY, allow_link_local=False)
        await _until(lambda: outbox.get("j5").state == GAVE_UP)
    finally:
        await sender.close()
    assert outbox.get("j5").attempts == 4
    assert [round(s, 3) for s in clock.sleeps if s > 0][:3] == [1.0, 2.0, 4.0]


async def test_a_restart_goes_on_delivering_what_the_outbox_holds(api, tmp_path):
    """Stopped after a failed attempt, a new sender on the same store delivers the rest."""
    api.script("POST", "/hook", Reply(500), Reply(204))
    store = tmp_path / "runs.sqlite3"
    outbox = CallbackOutbox(store)
    first = CallbackSender(outbox, key="k", policy=FAST)
    await first.start()
    first.add("j6", f"{api.url}/hook", BODY, allow_link_local=False)
    await _until(lambda: outbox.get("j6").attempts == 1)
    await first.close()  # the server stopped between attempts
    outbox.close()
    reopened = CallbackOutbox(store)
    assert reopened.get("j6").state == PENDING
    second = CallbackSender(reopened, key="k", policy=FAST)
    await second.start()
    try:
        await _until(lambda: reopened.get("j6").state == DELIVERED)
    finally:
        await second.close()
    assert reopened.get("j6").attempts == 2
    assert len(api.requests_to("/hook")) == 2


class _SentBody:
    output_size = 0


class _CompatResponse(ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14's required `stream_writer`; supply one (as
    tests/test_request_shape.py does)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream_writer", _SentBody())
        super().__init__(*args, **kwargs)


async def test_the_request_shape_seen_through_aioresponses(tmp_path, monkeypatch):
    if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
        monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    outbox = CallbackOutbox(tmp_path / "runs.sqlite3")
    clock = FakeClock(start=1_764_670_512.0)
    sender = CallbackSender(outbox, key="shape-key", policy=FAST, clock=clock)
    url = "https://hooks.example.com/in?source=lamrunner"
    with aioresponses() as mocked:
        mocked.post(url, status=202)
        await sender.start()
        try:
            sender.add("j7", url, BODY, allow_link_local=False)
            await _until(lambda: outbox.get("j7").state == DELIVERED)
        finally:
            await sender.close()
        [(key, calls)] = mocked.requests.items()
    assert key[0] == "POST"
    assert str(key[1]) == url
    [sent] = calls
    headers = dict(sent.kwargs["headers"])
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Lamrunner-Job-Id"] == "j7"
    assert headers[SIGNATURE_HEADER] == signature("shape-key", 1_764_670_512, BODY)
    assert sent.kwargs["data"] == BODY.encode()
