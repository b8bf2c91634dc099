"""Issue 10, items 1, 5, 6 and 10: async request-reply followed (`followAsync`), fail-closed
states (`pendingWhen`), cheap conditional polls (ETag / Last-Modified, 304) and progress with
stalls (`progress`, `stallTimeout`). Pure decisions first, then real aiohttp servers on
127.0.0.1 with a FakeClock (no sleeping)."""

from __future__ import annotations

import io
import itertools
import json

import pytest
from conftest import Reply, run_path

from lamrunner.cli.live import LiveLine, LivePolls, PollProgress
from lamrunner.decide.polling import (
    Fail,
    Observation,
    PollState,
    Succeed,
    Wait,
    decide_poll,
    eta_seconds,
    note_progress,
)
from lamrunner.definition.directives import parse_directive
from lamrunner.definition.policies import (
    FOLLOW_DONE_CONDITION,
    FOLLOW_FAILED_CONDITION,
    Backoff,
    PollPolicy,
)
from lamrunner.errors import (
    DefinitionError,
    PollingError,
    PollingFailed,
    PollingStalled,
    UnexpectedResponse,
)
from lamrunner.http import transport
from lamrunner.js.runtime import CONDITION_LIMITS, JsEngine
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.observe import RunObserver

T0 = 1_700_000_000.0


def policy(**kwargs) -> PollPolicy:
    kwargs.setdefault("backoff", Backoff(strategy="fixed", initial_delay=1.0))
    kwargs.setdefault("condition", "ctx.response.state === 'done'")
    return PollPolicy(**kwargs)


def after(p: PollPolicy, attempt: int, **fields) -> PollState:
    state = PollState.start(p, T0)
    state.attempt = attempt
    for name, value in fields.items():
        setattr(state, name, value)
    return state


def poll(url: str, method: str = "GET", **loop) -> dict:
    loop.setdefault("condition", "(ctx) => ctx.response.state === 'done'")
    loop.setdefault("initialDelay", "1s")
    return {"method": method, "url": url, "loopUntil": loop}


_runs = itertools.count()


async def run_one(wf, request: dict, clock: FakeClock | None = None, **options) -> dict:
    # a new handler file each time: a handler module is loaded once per path
    path = wf.workflow([wf.request_step(f"p{next(_runs)}", request)])
    return await run_path(path, clock=clock or FakeClock(), **options)


def parse(request: dict):
    return parse_directive({"lam.httpRequest": request})


# -- item 5: pendingWhen, fail-closed ---------------------------------------------------------


def test_pending_when_waits_only_for_answers_it_names():
    p = policy(pending_when="ctx.response.state === 'running'", max_attempts=50)
    assert isinstance(decide_poll(p, after(p, 1), Observation(200, pending=True), T0), Wait)
    decision = decide_poll(p, after(p, 1, last_status=200), Observation(200), T0)
    assert isinstance(decision, Fail) and isinstance(decision.error, UnexpectedResponse)
    assert isinstance(decision.error, PollingError) and decision.error.attempts == 1
    assert "neither done (condition), failed (failWhen) nor pending" in decision.error.message
    assert isinstance(decide_poll(p, after(p, 1), Observation(200, condition=True), T0), Succeed)
    failed = decide_poll(p, after(p, 1), Observation(200, fail_when=True), T0)
    assert isinstance(failed, Fail) and isinstance(failed.error, PollingFailed)


def test_without_pending_when_an_unknown_answer_still_waits():
    p = policy(max_attempts=50)
    assert isinstance(decide_poll(p, after(p, 1), Observation(200), T0), Wait)


def test_pending_when_and_ignore_errors_a_transport_error_still_waits():
    p = policy(pending_when="true", ignore_errors=True)
    error = transport.TransportError("refused", kind="connection")
    assert isinstance(decide_poll(p, after(p, 1), Observation(error=error), T0), Wait)


async def test_an_unknown_job_state_fails_at_once_instead_of_spinning(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "queued"}),
        Reply(json={"state": "running"}),
        Reply(json={"state": "PAUSED_BY_OPERATOR"}),
    )
    request = poll(
        api.url + "/job",
        maxAttempts=100,
        failWhen="ctx.response.state === 'failed'",
        pendingWhen="['queued', 'running'].includes(ctx.response.state)",
    )
    clock = FakeClock()
    record = await run_one(wf, request, clock)
    assert record["error"]["type"] == "UnexpectedResponse"
    assert "attempts: 3" in record["error"]["message"]
    assert "PAUSED_BY_OPERATOR" in record["error"]["message"]
    assert len(api.requests_to("/job")) == 3 and clock.sleeps == [1, 1]

    del request["loopUntil"]["pendingWhen"]  # the same poll without it spins to exhaustion
    api.script("GET", "/job")
    assert (await run_one(wf, request))["error"]["type"] == "PollingExhausted"


def test_pending_when_is_validated_like_the_other_fields():
    url = "http://127.0.0.1:1/x"
    with pytest.raises(
        DefinitionError, match=r"unknown key 'pendingWhn'.*did you mean 'pendingWhen'"
    ):
        parse({"method": "GET", "url": url, "loopUntil": {"condition": "true", "pendingWhn": "x"}})
    with pytest.raises(DefinitionError, match=r"loopUntil\.pendingWhen: expected a non-empty"):
        parse({"method": "GET", "url": url, "loopUntil": {"condition": "true", "pendingWhen": 1}})


async def test_a_pending_when_syntax_error_fails_before_anything_is_sent(api, wf):
    api.script("GET", "/job", Reply(json={"state": "done"}))
    record = await run_one(wf, poll(api.url + "/job", pendingWhen="ctx.response.state ==="))
    assert record["error"]["type"] in ("DefinitionError", "ConditionError")
    assert "pendingWhen" in record["error"]["message"]
    assert api.requests_to("/job") == []


# -- item 6: conditional polls ----------------------------------------------------------------


async def test_an_etag_makes_the_next_poll_conditional_and_a_304_reoffers_the_body(
    api, wf, monkeypatch
):
    parses = []
    real_parse = transport.Response._parse
    monkeypatch.setattr(
        transport.Response, "_parse", lambda self: parses.append(1) or real_parse(self)
    )
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "running", "n": 1}, headers={"ETag": '"v1"'}),
        Reply(status=304, headers={"ETag": '"v1"', "X-Poll": "2"}),
        Reply(status=304, headers={"ETag": '"v1"', "X-Poll": "3"}),
        Reply(json={"state": "done", "n": 2}, headers={"ETag": '"v2"'}),
    )
    request = poll(
        api.url + "/job",
        maxAttempts=10,
        # the 304s' headers update the stored answer's; its body is the first one's
        failWhen="ctx.notModified && !(ctx.response.n === 1 && ctx.headers['x-poll'] >= '2')",
    )
    record = await run_one(wf, request)
    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["response"] == {"state": "done", "n": 2}
    seen = api.requests_to("/job")
    assert [s.headers.get("If-None-Match") for s in seen] == [None, '"v1"', '"v1"', '"v1"']
    assert record["gwo"]["step_1"]["http"]["attempts"] == 4  # a 304 counts as an attempt
    assert len(parses) == 2  # the two full bodies; the 304s re-offered the parsed one


async def test_a_304_says_not_modified_to_the_condition_with_the_last_body(api, wf):
    date = "Tue, 14 Nov 2023 22:13:20 GMT"
    # A function body: QuickJS evaluates it (the Python fast path sees the same ctx).
    for condition in (
        "(ctx) => { return ctx.notModified && ctx.response.state === 'running'; }",
        "ctx.notModified === true && ctx.response.state === 'running'",
    ):
        api.seen.clear()
        api.replies.clear()
        api.script(
            "GET",
            "/job",
            Reply(json={"state": "running"}, headers={"Last-Modified": date}),
            Reply(status=304),
        )
        record = await run_one(wf, poll(api.url + "/job", condition=condition))
        assert record["status"] == "SUCCESS", record["error"]
        assert record["gwo"]["step_1"]["response"] == {"state": "running"}
        assert record["gwo"]["step_1"]["http"]["attempts"] == 2
        since = [s.headers.get("If-Modified-Since") for s in api.requests_to("/job")]
        assert since == [None, date]


async def test_conditional_false_and_a_post_poll_send_no_validators(api, wf):
    api.script("GET", "/job", Reply(json={"state": "running"}, headers={"ETag": '"v1"'}))
    api.script("POST", "/job", Reply(json={"state": "running"}, headers={"ETag": '"v1"'}))
    await run_one(wf, poll(api.url + "/job", maxAttempts=3, conditional=False))
    await run_one(wf, poll(api.url + "/job", method="POST", maxAttempts=3))
    assert all("If-None-Match" not in s.headers for s in api.seen)
    assert len(api.seen) == 6


def test_conditional_is_validated():
    request = {"method": "GET", "url": "http://127.0.0.1:1/x", "loopUntil": {"condition": "1"}}
    request["loopUntil"]["conditional"] = "no"
    with pytest.raises(DefinitionError, match=r"loopUntil\.conditional: expected true or false"):
        parse(request)


# -- item 1: async request-reply ----------------------------------------------------------------


async def test_follow_async_polls_the_location_with_its_retry_after_then_fetches_the_result(
    api, wf
):
    api.script(
        "POST",
        "/jobs",
        Reply(status=202, json={"id": 1}, headers={"Location": "/ops/1", "Retry-After": "3"}),
    )
    api.script(
        "GET",
        "/ops/1",
        Reply(status=202, json={"status": "Running"}, headers={"Retry-After": "2"}),
        Reply(status=200, json={"status": "Running"}, headers={"Retry-After": "5"}),
        Reply(json={"status": "Succeeded", "resourceLocation": "/results/1"}),
    )
    api.script("GET", "/results/1", Reply(json={"answer": 42}))
    request = {
        "method": "POST",
        "url": api.url + "/jobs",
        "headers": {"Authorization": "Bearer k", "Content-Type": "application/json"},
        "body": {"n": 1},
        "followAsync": True,
    }
    clock = FakeClock()
    record = await run_one(wf, request, clock)
    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["response"] == {"answer": 42}
    assert record["gwo"]["step_1"]["http"]["attempts"] == 5  # POST, 3 polls, the result
    assert clock.sleeps == [3, 2, 5]  # Retry-After on the 202s and on a 200
    assert len(api.requests_to("/jobs")) == 1
    polls = api.requests_to("/ops/1")
    assert [s.method for s in polls] == ["GET"] * 3
    assert polls[0].headers["Authorization"] == "Bearer k"  # same origin: credentials kept
    assert "Content-Type" not in polls[0].headers and polls[0].body == b""


async def test_operation_location_wins_and_a_303_is_fetched_as_the_result(api, wf):
    api.script(
        "POST",
        "/jobs",
        Reply(
            status=202,
            json={},
            headers={"Operation-Location": "/ops/2", "Location": "/elsewhere"},
        ),
    )
    api.script(
        "GET",
        "/ops/2",
        Reply(status=202, json={"status": "running"}),
        Reply(status=303, headers={"Location": "/results/2"}),
    )
    api.script("GET", "/results/2", Reply(json={"rows": 7}))
    request = {"method": "POST", "url": api.url + "/jobs", "followAsync": True}
    record = await run_one(wf, request)
    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["response"] == {"rows": 7}
    assert api.requests_to("/elsewhere") == []


async def test_a_failed_operation_fails_the_step_by_default(api, wf):
    api.script("POST", "/jobs", Reply(status=202, json={}, headers={"Location": "/ops/3"}))
    api.script(
        "GET",
        "/ops/3",
        Reply(json={"status": "in_progress"}),
        Reply(json={"status": "Failed", "error": "disk full"}),
    )
    record = await run_one(wf, {"method": "POST", "url": api.url + "/jobs", "followAsync": True})
    assert record["error"]["type"] == "PollingFailed"
    assert "disk full" in record["error"]["message"]


async def test_a_get_poll_whose_first_answer_is_a_202_follows_it_unless_follow_async_is_false(
    api, wf
):
    api.script(
        "GET",
        "/jobs/4",
        Reply(status=202, json={"state": "queued"}, headers={"Location": "/ops/4"}),
    )
    api.script("GET", "/ops/4", Reply(json={"state": "done"}))
    record = await run_one(wf, poll(api.url + "/jobs/4"))
    assert record["status"] == "SUCCESS"
    assert [s.path for s in api.seen] == ["/jobs/4", "/ops/4"]

    api.seen.clear()
    request = {**poll(api.url + "/jobs/4", maxAttempts=3), "followAsync": False}
    record = await run_one(wf, request)
    assert record["error"]["type"] == "PollingExhausted"
    assert [s.path for s in api.seen] == ["/jobs/4"] * 3


async def test_a_polled_post_is_re_sent_as_laminar_does_unless_follow_async_is_true(api, wf):
    api.script(
        "POST", "/jobs", Reply(status=202, json={"state": "queued"}, headers={"Location": "/ops/7"})
    )
    api.script("GET", "/ops/7", Reply(json={"state": "done"}))
    record = await run_one(wf, poll(api.url + "/jobs", method="POST", maxAttempts=3))
    assert record["error"]["type"] == "PollingExhausted"
    assert [s.path for s in api.seen] == ["/jobs"] * 3  # Laminar's way: the POST re-sent

    api.seen.clear()
    request = {**poll(api.url + "/jobs", method="POST"), "followAsync": True}
    record = await run_one(wf, request)
    assert record["status"] == "SUCCESS"
    assert [s.path for s in api.seen] == ["/jobs", "/ops/7"]


async def test_a_202_later_in_a_plain_poll_is_not_followed(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "running"}),
        Reply(status=202, json={"state": "running"}, headers={"Location": "/ops/5"}),
        Reply(json={"state": "done"}),
    )
    record = await run_one(wf, poll(api.url + "/job"))
    assert record["status"] == "SUCCESS"
    assert api.requests_to("/ops/5") == []


async def test_the_whole_chain_stays_under_the_deadline(api, wf):
    api.script("POST", "/jobs", Reply(status=202, json={}, headers={"Location": "/ops/6"}))
    api.script("GET", "/ops/6", Reply(status=202, json={}, headers={"Retry-After": "60"}))
    request = {
        "method": "POST",
        "url": api.url + "/jobs",
        "followAsync": True,
        "loopUntil": {"timeout": "30s", "maxAttempts": 100},
    }
    clock = FakeClock()
    record = await run_one(wf, request, clock)
    assert record["error"]["type"] == "DeadlineExceeded"
    assert sum(clock.sleeps) <= 30
    assert len(api.requests_to("/ops/6")) == 1  # the next one would be due after the deadline


async def test_credentials_are_not_sent_to_another_origin(api, wf):
    other = api.url.replace("127.0.0.1", "localhost")
    api.script("POST", "/jobs", Reply(status=202, json={}, headers={"Location": other + "/ops/7"}))
    api.script("GET", "/ops/7", Reply(json={"status": "done"}))
    request = {
        "method": "POST",
        "url": api.url + "/jobs",
        "headers": {"Authorization": "Bearer k", "X-Trace": "t"},
        "followAsync": True,
    }
    record = await run_one(wf, request)
    assert record["status"] == "SUCCESS", record["error"]
    (followed,) = api.requests_to("/ops/7")
    assert "Authorization" not in followed.headers and followed.headers["X-Trace"] == "t"


async def test_a_resumed_poll_goes_on_polling_where_the_202_sent_it(api, wf):
    from lamrunner.definition.config import build_config
    from lamrunner.definition.workflow import load_workflow
    from lamrunner.runner.engine import Engine

    api.script("POST", "/jobs", Reply(status=202, json={}, headers={"Location": "/ops/8"}))
    api.script("GET", "/ops/8", Reply(json={"status": "completed"}))
    workflow = load_workflow(wf.workflow([wf.py_step("noop", "1")]), env={})
    engine = Engine(workflow, build_config(workflow.config, (), (), {}), clock=FakeClock())
    output = {"method": "POST", "url": api.url + "/jobs", "followAsync": True}
    async with engine.poller(output) as poller:
        state = poller.start()
        first = await poller.attempt(state)
        assert isinstance(first.decision, Wait)
        saved = json.loads(json.dumps(state.to_dict()))
    assert saved["follow_url"] == api.url + "/ops/8"
    async with engine.poller(output) as poller:  # another process, from the checkpoint
        outcome = await poller.attempt(PollState.from_dict(saved))
    assert isinstance(outcome.decision, Succeed)
    assert [s.path for s in api.seen] == ["/jobs", "/ops/8"]


@pytest.mark.parametrize(
    ("status", "body", "done", "failed"),
    [
        (202, {"status": "succeeded"}, False, False),
        (200, {"status": "Succeeded"}, True, False),
        (200, {"state": "COMPLETED"}, True, False),
        (200, {"status": "in-progress"}, False, False),
        (200, {"status": "Cancelled"}, False, True),
        (200, {"id": 3}, True, False),  # a final answer without a status field
        (200, None, True, False),
        (200, {"status": 200}, True, False),
    ],
)
async def test_what_done_means(status, body, done, failed):
    ctx = json.dumps(
        {"response": body, "status": status, "headers": {}, "attempt": 1, "elapsedMs": 0}
    )
    engine = JsEngine(workers=1)
    try:
        held = await (
            await engine.open_condition(FOLLOW_DONE_CONDITION, CONDITION_LIMITS)
        ).evaluate(ctx)
        fail = await (
            await engine.open_condition(FOLLOW_FAILED_CONDITION, CONDITION_LIMITS)
        ).evaluate(ctx)
    finally:
        engine.close()
    assert (held, fail) == (done, failed)


def test_follow_async_is_validated():
    url = "http://127.0.0.1:1/x"
    with pytest.raises(
        DefinitionError, match=r"lam\.httpRequest\.followAsync: expected true or false"
    ):
        parse({"method": "POST", "url": url, "followAsync": "yes"})
    with pytest.raises(
        DefinitionError, match=r"unknown key 'followAsynk'.*did you mean 'followAsync'"
    ):
        parse({"method": "POST", "url": url, "followAsynk": True})
    with pytest.raises(DefinitionError, match=r"missing required key 'condition'"):
        parse({"method": "POST", "url": url, "loopUntil": {"maxAttempts": 3}})
    spec = parse({"method": "POST", "url": url, "followAsync": True}).requests[0]
    assert spec.loop is not None and spec.loop.condition == FOLLOW_DONE_CONDITION
    spec = parse(
        {"method": "POST", "url": url, "followAsync": True, "loopUntil": {"failWhen": "false"}}
    ).requests[0]
    assert spec.loop is not None and spec.loop.fail_when == "false"


# -- item 10: progress and stalls ---------------------------------------------------------------


def test_eta_follows_the_rate_since_the_progress_was_first_seen():
    state = PollState(started_at=T0)
    note_progress(state, T0, 10, "a", True)
    assert eta_seconds(state, T0) is None  # no rate yet
    note_progress(state, T0 + 20, 30, "b", True)  # 20 points in 20 s
    assert eta_seconds(state, T0 + 20) == pytest.approx(70.0)
    note_progress(state, T0 + 30, "n/a", "b", True)  # not a number: the last one stays
    assert state.progress == 30


def test_stall_timeout_fails_when_nothing_changed_for_that_long():
    p = policy(stall_timeout=10.0, max_attempts=100)
    state = after(p, 4, fingerprint="x", changed_at=T0)
    assert isinstance(decide_poll(p, state, Observation(200), T0 + 9.9), Wait)
    decision = decide_poll(p, state, Observation(200), T0 + 10)
    assert isinstance(decision, Fail) and isinstance(decision.error, PollingStalled)
    assert "did not change for 10s (stallTimeout 10s)" in decision.error.message


async def test_progress_is_in_the_record_and_reaches_observers_with_an_eta(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"state": "running", "percent": 10}),
        Reply(json={"state": "running", "percent": 20}),
        Reply(json={"state": "running", "percent": 40}),
        Reply(json={"state": "done", "percent": 100}),
    )
    heard = []

    class Watcher(RunObserver):
        def poll_progress(self, key, step, attempt, of, status, due, **progress):
            heard.append(progress)

    request = poll(api.url + "/job", initialDelay="10s", progress="(ctx) => ctx.response.percent")
    record = await run_one(wf, request, observers=[Watcher()])
    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["http"]["progress"] == {"percent": 100.0, "etaMs": 0}
    assert heard == [
        {"percent": 10.0, "eta_seconds": None},
        {"percent": 20.0, "eta_seconds": 80.0},  # 10 points in 10 s, 80 to go
        {"percent": 40.0, "eta_seconds": 40.0},  # 30 points in 20 s, 60 to go
    ]


async def test_progress_the_python_fast_path_cannot_read_runs_in_quickjs(api, wf):
    api.script("GET", "/job", Reply(json={"state": "done", "done": 3, "total": 4}))
    request = poll(
        api.url + "/job", progress="(ctx) => ctx.response.done / ctx.response.total * 100"
    )
    record = await run_one(wf, request)
    assert record["gwo"]["step_1"]["http"]["progress"]["percent"] == 75.0


async def test_runs_show_keeps_each_attempts_progress(api, wf, tmp_path):
    from lamrunner.store.sqlite import RunStore

    api.script(
        "GET",
        "/job",
        Reply(json={"state": "running", "percent": 50}),
        Reply(json={"state": "done", "percent": 100}),
    )
    store = RunStore(tmp_path / "runs.sqlite3")
    try:
        request = poll(api.url + "/job", progress="ctx.response.percent")
        record = await run_one(wf, request, observers=[store])
        rows = store.attempts(record["runId"])
    finally:
        store.close()
    assert [row["progress"]["percent"] for row in rows] == [50.0, 100.0]


def test_the_live_line_shows_the_progress_and_its_eta():
    stream = io.StringIO()
    progress = PollProgress(LiveLine(stream))
    progress._live.show = lambda text: shown.append(text)  # type: ignore[method-assign]
    shown: list[str] = []
    progress.update("step_1[0]", "wait", 3, 10, 200, 0.0, 40.0, 90.0)
    assert "· 40% (ETA 1m30s) ·" in shown[-1]
    progress.update("step_1[0]", "wait", 3, 10, 200, 0.0)
    assert "%" not in shown[-1]


async def test_stall_timeout_without_progress_watches_the_body(api, wf):
    api.script("GET", "/job", Reply(json={"state": "running", "step": "copying"}))
    clock = FakeClock()
    request = poll(api.url + "/job", maxAttempts=100, stallTimeout="5s")
    record = await run_one(wf, request, clock)
    assert record["error"]["type"] == "PollingStalled"
    assert "the response did not change for 5s" in record["error"]["message"]
    assert len(api.requests_to("/job")) == 6  # at 0 s .. 5 s

    replies = [Reply(json={"state": "running", "tick": i}) for i in range(8)]
    api.script("GET", "/moving", *replies)  # a changing body never stalls
    record = await run_one(
        wf,
        {
            **request,
            "url": api.url + "/moving",
            "loopUntil": {**request["loopUntil"], "maxAttempts": 8},
        },
    )
    assert record["error"]["type"] == "PollingExhausted"


async def test_stall_timeout_with_progress_ignores_the_rest_of_the_body(api, wf):
    replies = [Reply(json={"state": "running", "percent": 40, "at": i}) for i in range(20)]
    api.script("GET", "/job", Reply(json={"state": "running", "percent": 30}), *replies)
    request = poll(
        api.url + "/job", maxAttempts=100, stallTimeout="3s", progress="ctx.response.percent"
    )
    record = await run_one(wf, request)
    assert record["error"]["type"] == "PollingStalled"
    assert "the progress did not change for 3s" in record["error"]["message"]
    assert len(api.requests_to("/job")) == 5  # 30 at 0 s; 40 from 1 s; stalled at 4 s


def test_progress_and_stall_timeout_are_validated():
    loop = {"condition": "true"}
    request = {"method": "GET", "url": "http://127.0.0.1:1/x", "loopUntil": loop}
    for field, value, message in (
        ("stallTimeout", "0s", r"loopUntil\.stallTimeout: expected a duration above zero"),
        ("stallTimeout", "soon", r"loopUntil\.stallTimeout"),
        ("progress", 5, r"loopUntil\.progress: expected a non-empty string"),
        ("progres", "x", r"unknown key 'progres'.*did you mean 'progress'"),
    ):
        with pytest.raises(DefinitionError, match=message):
            parse({**request, "loopUntil": {**loop, field: value}})


async def test_the_stall_clock_and_the_eta_survive_a_checkpoint(api, wf):
    from lamrunner.definition.config import build_config
    from lamrunner.definition.workflow import load_workflow
    from lamrunner.runner.engine import Engine

    api.script(
        "GET",
        "/job",
        Reply(json={"state": "running", "percent": 10}),
        Reply(json={"state": "running", "percent": 20}),
    )
    clock = FakeClock()
    workflow = load_workflow(wf.workflow([wf.py_step("noop", "1")]), env={})
    engine = Engine(workflow, build_config(workflow.config, (), (), {}), clock=clock)
    request = poll(
        api.url + "/job", maxAttempts=50, stallTimeout="30s", progress="ctx.response.percent"
    )
    async with engine.poller(request) as poller:
        state = poller.start()
        await poller.attempt(state)
        clock.advance(10)
        await poller.attempt(state)
        saved = json.loads(json.dumps(state.to_dict()))
    assert saved["progress"] == 20.0 and saved["changed_at"] == clock.now()
    restored = PollState.from_dict(saved)
    assert eta_seconds(restored, clock.now()) == pytest.approx(80.0)  # 10 points per 10 s
    clock.advance(30)  # 30 s since the progress last moved: the next attempt ends the poll
    async with engine.poller(request) as poller:
        outcome = await poller.attempt(restored)
    assert isinstance(outcome.decision, Fail)
    assert isinstance(outcome.decision.error, PollingStalled)


def test_the_new_settings_take_templates_like_the_others():
    request = {
        "method": "POST",
        "url": "http://127.0.0.1:1/x",
        "followAsync": "<<config.follow>>",
        "loopUntil": {"stallTimeout": "<<config.stall>>", "pendingWhen": "<<config.pending>>"},
    }
    config = {"follow": True, "stall": "2m", "pending": "ctx.status === 202"}
    spec = parse_directive({"lam.httpRequest": request}, config=config).requests[0]
    assert spec.follow_async is True
    assert spec.loop is not None and spec.loop.stall_timeout == 120.0
    assert spec.loop.pending_when == "ctx.status === 202"
    with pytest.raises(
        DefinitionError, match=r"followAsync: expected true or false.*from '<<config"
    ):
        parse_directive({"lam.httpRequest": request}, config={**config, "follow": "maybe"})


def test_the_live_observer_passes_the_engines_progress_keywords_on():
    live = LivePolls(io.StringIO())
    shown: list[str] = []
    live._live.show = shown.append  # type: ignore[method-assign]
    live.poll_progress("step_1[0]", "wait", 2, 10, 200, 5.0, percent=12.5, eta_seconds=None)
    assert "· 12.5% ·" in shown[-1]
    live.poll_progress("step_1[0]", "wait", 3, 10, 200, 5.0, percent=25, eta_seconds=3600)
    assert "· 25% (ETA 1h) ·" in shown[-1]
