"""Templates in the settings of a request object: timeout, failOnHttpError, retry, loopUntil.

Poll settings are set per environment with --config / --set, so `maxAttempts: "<<config.n>>"`
must poll exactly n times, and a value that renders to nonsense must fail with the same clear
error as a literal one, naming the field, before anything is sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Reply, run_path
from hypothesis import given, settings
from hypothesis import strategies as st

from lamrunner.definition.directives import parse_directive
from lamrunner.definition.policies import LOOP_KEYS, RETRY_KEYS
from lamrunner.errors import DefinitionError, TemplateError

ROOT = Path(__file__).resolve().parent.parent
GET = {"method": "GET", "url": "http://api.test/x"}
NEVER = "(ctx) => ctx.response.done === true"


async def lamrunner(*args: Any, cwd: Path) -> tuple[int, dict[str, Any], str]:
    """`python -m lamrunner ARGS` as a user runs it; the test's own server keeps serving."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lamrunner",
        *map(str, args),
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert b"Traceback" not in err, err.decode()
    return proc.returncode or 0, json.loads(out), err.decode()


def request(**fields: Any) -> dict[str, Any]:
    return {"lam.httpRequest": {**GET, **fields}}


# -- end to end: the attempts made are the configured ones ------------------------------------


async def test_cli_set_values_drive_timeout_and_poll_settings(api, wf):
    api.script("GET", "/job", Reply(json={"done": False}))
    handler = wf.handler(
        "poll.js",
        """
        (data) => ({"lam.httpRequest": {
          method: "GET", url: "<<config.url>>/job", timeout: "<<config.t>>",
          loopUntil: {condition: "(ctx) => ctx.response.done === true",
                      maxAttempts: "<<config.polls>>", initialDelay: "<<config.delay>>"},
        }});
    """,
    )
    path = wf.workflow([handler], config={"url": api.url, "polls": 30, "delay": "1m", "t": "x"})
    code, record, _ = await lamrunner(
        "run",
        path,
        "--no-store",
        "--set",
        "polls=4",
        "--set",
        "delay=20ms",
        "--set",
        "t=5",
        cwd=wf.root,
    )
    assert code == 1, record
    assert record["error"]["type"] == "PollingExhausted", record["error"]
    assert "4 attempts" in record["error"]["message"]
    seen = api.requests_to("/job")
    assert len(seen) == 4
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
    assert all(0.015 <= gap < 5 for gap in gaps), gaps  # 20ms from --set, not the 1m default


async def test_templated_poll_succeeds_on_the_attempt_the_config_allows(api, wf):
    api.script(
        "GET",
        "/job",
        Reply(json={"done": False}),
        Reply(json={"done": False}),
        Reply(json={"done": True}),
    )
    loop = {
        "condition": NEVER,
        "maxAttempts": "<<config.polls>>",
        "initialDelay": "<<config.delay>>",
        "strategy": "<<config.strategy>>",
    }
    step = wf.request_step("poll", {"method": "GET", "url": f"{api.url}/job", "loopUntil": loop})
    record = await run_path(wf.workflow([step]), sets=("polls=3", "delay=0", "strategy=fixed"))
    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["http"]["attempts"] == 3


async def test_templated_timeout_is_the_per_attempt_timeout(api, wf):
    api.script("GET", "/slow", Reply(json={}, delay=2))
    step = wf.request_step(
        "slow", {"method": "GET", "url": f"{api.url}/slow", "timeout": "<<config.t>>"}
    )
    record = await run_path(wf.workflow([step]), sets=("t=0.1",))
    assert record["error"]["type"] == "TransportError", record["error"]
    assert "100ms" in record["error"]["message"] or "0.1" in record["error"]["message"]


async def test_templated_retry_makes_the_configured_attempts(api, wf):
    api.script("GET", "/flaky", Reply(status=503, json={}))
    retry = {
        "maxAttempts": "<<config.retry.n>>",
        "initialDelay": "<<config.retry.d>>",
        "retryableStatusCodes": ["<<config.retry.code>>"],
    }
    step = wf.request_step(
        "flaky",
        {
            "method": "GET",
            "url": f"{api.url}/flaky",
            "retry": retry,
            "failOnHttpError": "<<config.strict>>",
        },
    )
    record = await run_path(
        wf.workflow([step]), sets=("retry.n=3", "retry.d=1ms", "retry.code=503", "strict=false")
    )
    assert record["status"] == "SUCCESS", record["error"]  # strict=false: a final 503 is kept
    assert record["gwo"]["step_1"]["http"] == {
        **record["gwo"]["step_1"]["http"],
        "status": 503,
        "attempts": 3,
    }
    assert len(api.requests_to("/flaky")) == 3


# -- what each field renders to ---------------------------------------------------------------


def parsed(config: dict[str, Any], **fields: Any) -> Any:
    [spec] = parse_directive(request(**fields), None, config).requests
    return spec


def test_every_setting_takes_the_type_of_its_template():
    config = {
        "n": 5,
        "s": "exponential",
        "d": "250ms",
        "m": 3,
        "j": "full",
        "f": False,
        "codes": [502],
        "kinds": ["protocol"],
        "cond": "ctx.status === 200",
        "t": 7,
    }
    loop = {
        k: f"<<config.{v}>>"
        for k, v in {
            "condition": "cond",
            "failWhen": "cond",
            "maxAttempts": "n",
            "strategy": "s",
            "initialDelay": "d",
            "maxDelay": "t",
            "multiplier": "m",
            "jitter": "j",
            "timeout": "t",
            "ignoreErrors": "f",
        }.items()
    }
    retry = {
        "maxAttempts": "<<config.n>>",
        "retryableStatusCodes": "<<config.codes>>",
        "retryableExceptions": "<<config.kinds>>",
        "maxDelay": "{{config.d}}",
    }
    spec = parsed(
        config, timeout="<<config.t>>", failOnHttpError="<<config.f>>", loopUntil=loop, retry=retry
    )
    assert (spec.timeout, spec.fail_on_http_error) == (7.0, False)
    assert (spec.loop.condition, spec.loop.fail_when) == ("ctx.status === 200",) * 2
    assert (spec.loop.max_attempts, spec.loop.timeout, spec.loop.ignore_errors) == (5, 7.0, False)
    backoff = spec.loop.backoff
    assert (
        backoff.strategy,
        backoff.initial_delay,
        backoff.max_delay,
        backoff.multiplier,
        backoff.jitter,
    ) == ("exponential", 0.25, 7.0, 3.0, "full")
    assert spec.retry.max_attempts == 5 and spec.retry.backoff.max_delay == 0.25
    assert spec.retry.retryable_statuses == {502}
    assert spec.retry.retryable_exceptions == {"protocol"}


def test_template_inside_a_longer_string_gives_a_string():
    spec = parsed(
        {"n": 2, "who": "done"},
        timeout="<<config.n>>s",
        loopUntil={"condition": "ctx.response.state === '<<config.who>>'"},
    )
    assert spec.timeout == 2.0
    assert spec.loop.condition == "ctx.response.state === 'done'"


def test_method_may_be_a_template_too():
    assert parsed({"m": "post"}, method="<<config.m>>").method == "POST"


@pytest.mark.parametrize(
    ("fields", "config", "where", "says"),
    [
        (
            {"loopUntil": {"condition": "c", "maxAttempts": "<<config.n>>"}},
            {"n": "abc"},
            "lam.httpRequest.loopUntil.maxAttempts",
            "expected a whole number >= 1, got 'abc'",
        ),
        (
            {"loopUntil": {"condition": "c", "initialDelay": "<<config.d>>"}},
            {"d": "soon"},
            "lam.httpRequest.loopUntil.initialDelay",
            "'soon' is not a duration",
        ),
        (
            {"loopUntil": {"condition": "c", "strategy": "<<config.s>>"}},
            {"s": "linear"},
            "lam.httpRequest.loopUntil.strategy",
            "'linear' is not one of fixed, exponential",
        ),
        (
            {"loopUntil": {"condition": "<<config.c>>"}},
            {"c": 5},
            "lam.httpRequest.loopUntil.condition",
            "expected a non-empty string",
        ),
        ({"timeout": "<<config.t>>"}, {"t": -1}, "lam.httpRequest.timeout", "not a duration"),
        (
            {"failOnHttpError": "<<config.f>>"},
            {"f": "yes"},
            "lam.httpRequest.failOnHttpError",
            "expected true or false, got 'yes'",
        ),
        (
            {"retry": {"maxAttempts": "<<config.n>>"}},
            {"n": 0},
            "lam.httpRequest.retry.maxAttempts",
            "expected a whole number >= 1, got 0",
        ),
        (
            {"retry": {"maxAttempts": 2, "retryableStatusCodes": ["<<config.c>>"]}},
            {"c": "5xx"},
            "lam.httpRequest.retry.retryableStatusCodes",
            "expected a list of HTTP status codes",
        ),
        (
            {"retry": "<<config.retry>>"},
            {"retry": {"maxAttempt": 2}},
            "lam.httpRequest.retry",
            "unknown key 'maxAttempt' (did you mean 'maxAttempts'?)",
        ),
    ],
)
def test_bad_rendered_value_is_a_definition_error_naming_the_field(fields, config, where, says):
    with pytest.raises(DefinitionError) as info:
        parse_directive(request(**fields), None, config)
    assert info.value.message.startswith(f"{where}: "), info.value.message
    assert says in info.value.message
    assert "(from '<<config." in info.value.message  # which template gave the bad value


def test_missing_config_key_is_a_template_error_naming_key_and_field():
    with pytest.raises(TemplateError) as info:
        parse_directive(
            request(loopUntil={"condition": "c", "maxAttempts": "<<config.polls>>"}),
            None,
            {"other": 1},
        )
    message = info.value.message
    assert message.startswith("lam.httpRequest.loopUntil.maxAttempts: ")
    assert "'polls'" in message


def test_batch_element_errors_name_the_element():
    items = [GET, {**GET, "timeout": "<<config.t>>"}]
    with pytest.raises(DefinitionError, match=r"^lam\.httpRequests\[1\]\.timeout: "):
        parse_directive({"lam.httpRequests": items}, None, {"t": "later"})


async def test_bad_rendered_value_fails_the_run_before_anything_is_sent(api, wf):
    api.script("GET", "/job", Reply(json={"done": True}))
    first = wf.request_step("first", {"method": "GET", "url": f"{api.url}/job"})
    loop = {"condition": NEVER, "maxAttempts": "<<config.n>>"}
    second = wf.handler(
        "second.py",
        f"""
        def transform(data):
            return {{"lam.httpRequests": [
                {{"method": "GET", "url": "{api.url}/job"}},
                {{"method": "GET", "url": "{api.url}/job", "loopUntil": {loop!r}}},
            ]}}
    """,
    )
    record = await run_path(wf.workflow([first, second]), sets=("n=abc",))
    assert record["error"]["type"] == "DefinitionError"
    assert record["error"]["step"] == "step_2"
    assert "lam.httpRequests[1].loopUntil.maxAttempts" in record["error"]["message"]
    assert len(api.requests_to("/job")) == 1  # only step 1's: none of the batch was sent


async def test_a_secret_rendered_into_a_bad_setting_is_masked(api, wf):
    step = wf.request_step(
        "s", {"method": "GET", "url": f"{api.url}/x", "timeout": "<<config.apiKey>>"}
    )
    record = await run_path(wf.workflow([step], config={"apiKey": "sk-live-123456"}))
    assert record["error"]["type"] == "DefinitionError"
    assert "lam.httpRequest.timeout" in record["error"]["message"]
    assert "sk-live-123456" not in json.dumps(record)
    assert api.seen == []


# -- any settings, any config: only typed errors, naming where ---------------------------------

_KEYS = st.sampled_from(["n", "d", "s", "a.b", "missing"])
_TEMPLATED = st.one_of(
    _KEYS.map("<<config.{}>>".format),
    _KEYS.map("{{{{config.{}}}}}s".format),
    st.integers(-2, 2000),
    st.sampled_from(["1s", "fixed", "full", True, "x", None]),
)
_LOOP = st.dictionaries(st.sampled_from(LOOP_KEYS), _TEMPLATED, max_size=4).map(
    lambda d: {"condition": "ctx.status === 200", **d}
)
_RETRY = st.dictionaries(
    st.sampled_from(RETRY_KEYS), _TEMPLATED | st.lists(_TEMPLATED, max_size=2), max_size=4
)
_CONFIG = st.dictionaries(
    st.sampled_from(["n", "d", "s", "a"]),
    st.one_of(
        st.integers(-5, 5000),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.booleans(),
        st.none(),
        st.just({"b": "2s"}),
        st.lists(st.integers(0, 600), max_size=2),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "timeout": _TEMPLATED,
            "failOnHttpError": _TEMPLATED,
            "loopUntil": _LOOP,
            "retry": _RETRY,
        },
    ),
    _CONFIG,
)
def test_templated_settings_parse_or_raise_a_typed_error_naming_the_field(fields, config):
    try:
        parse_directive(request(**fields), None, config)
    except (DefinitionError, TemplateError) as exc:
        assert exc.message.startswith("lam.httpRequest."), exc.message  # noqa: PT017 - or none
