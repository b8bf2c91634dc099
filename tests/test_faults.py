"""Network faults × ways of calling, against a real misbehaving server (tests/faultserver.py).

Every fault the server can produce (refused connection, reset in the headers or in the body, stall,
drip-fed body, oversized body with and without Content-Length, invalid JSON, bursts of 5xx and
429, a redirect loop) runs in five modes: a single request, a request with `retry`, a `loopUntil`
poll, a poll with `ignoreErrors: true`, and a `lam.httpRequests` batch where the faulty element
sits between two healthy (slow) ones. Each case asserts the outcome type the spec and README give,
that the message names the cause on one line without a traceback, how many requests reached the
server, that the run ended within its timeout or deadline plus slack (a hang fails the case, it
does not block the suite), and that no connection is left open once the run is over.
`pytest -v tests/test_faults.py` prints the matrix as `<fault>-<mode>`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import run_path
from faultserver import DONE, FaultServer, closed_port_url

REQUEST_TIMEOUT = 0.3  # per attempt
RETRY = {"maxAttempts": 3, "initialDelay": "50ms", "maxDelay": "200ms"}  # waits 50 ms, 100 ms
RETRY_TIME = 3 * REQUEST_TIMEOUT + 0.05 + 0.1  # the longest a retried transport failure may take
LOOP = {
    "condition": "(ctx) => ctx.response.state === 'done'",
    "maxAttempts": 10,
    "initialDelay": "50ms",
}
LOOP_TIMEOUT = 1.5  # loopUntil.timeout, the deadline of a poll
OK_DELAY = 0.5  # the healthy batch elements answer after this; longer than REQUEST_TIMEOUT
SLACK = 1.0  # scheduling slack added to every time bound
HANG_GUARD = 15.0  # beyond any bound: a run still going then is a hang

MODES = ("single", "retry", "poll", "poll-ignore", "batch")
SUCCESS = "SUCCESS"
TE, HSE = "TransportError", "HttpStatusError"
EXHAUSTED, DEADLINE = "PollingExhausted", "DeadlineExceeded"


@dataclass(frozen=True)
class Fault:
    name: str
    path: str  # path and query on the fault server; "" for the refused connection
    cause: str  # a regex the error message must match (case-insensitive)
    outcome: dict[str, str]  # mode -> error type or SUCCESS
    hits: dict[str, int | None]  # mode -> requests the server must see (None: not exact)
    extra_time: float = 0.0  # time the fault itself asks for (Retry-After), beyond the policies
    loop_timeout: float = LOOP_TIMEOUT
    retry_after: bool = False  # the server answers 429 + Retry-After once: check the gap
    retried: bool = True  # `retry` (default retryableExceptions) tries this fault again

    @property
    def hit_path(self) -> str:
        return self.path.split("?")[0]


def transport(
    cause: str,
    *,
    retried: bool,
    ignored: str = EXHAUSTED,
    per_request: int = 1,
    ignored_hits: int | None = None,
) -> dict[str, Any]:
    """Outcome and hit tables of a transport fault (no usable response)."""
    n = per_request
    return {
        "cause": cause,
        "retried": retried,
        "outcome": {"single": TE, "retry": TE, "poll": TE, "poll-ignore": ignored, "batch": TE},
        "hits": {
            "single": n,
            "retry": 3 * n if retried else n,
            "poll": n,
            "poll-ignore": ignored_hits,
            "batch": n,
        },
    }


def answered(status: str, *, first_hits: int, total_hits: int) -> dict[str, Any]:
    """Outcome and hit tables of a fault that answers `status` a few times, then 200."""
    return {
        "cause": status,
        "outcome": {
            "single": HSE,
            "retry": SUCCESS,
            "poll": SUCCESS,
            "poll-ignore": SUCCESS,
            "batch": HSE,
        },
        "hits": {
            "single": first_hits,
            "retry": total_hits,
            "poll": total_hits,
            "poll-ignore": total_hits,
            "batch": first_hits,
        },
    }


FAULTS = [
    Fault("refuse", "", **transport("could not connect", retried=True)),
    # aiohttp may resend an idempotent request once after a reset: see
    # test_one_attempt_is_one_request_after_a_reset; the matrix only checks the outcome here.
    Fault("reset", "/reset", **transport(r"reset|disconnect", retried=True, ignored_hits=10)),
    # a reset after the headers, in the body: a reset all the same, so `retry` retries it
    Fault("reset-body", "/reset-body", **transport(r"reset", retried=True, ignored_hits=10)),
    Fault("stall", "/stall", **transport("timeout", retried=True, ignored=DEADLINE)),
    Fault("drip", "/drip", **transport("timeout", retried=True, ignored=DEADLINE)),
    Fault("huge", "/huge", **transport("larger than", retried=False, ignored_hits=10)),
    Fault(
        "huge-chunked", "/huge-chunked", **transport("larger than", retried=False, ignored_hits=10)
    ),
    Fault("badjson", "/badjson", **transport("JSON", retried=False, ignored_hits=10)),
    Fault(
        "redirect-loop",
        "/redirect-loop",
        **transport("redirect", retried=False, per_request=11, ignored_hits=110),
    ),  # 1 + 10 followed
    Fault("burst5xx", "/burst5xx?n=2", **answered("503", first_hits=1, total_hits=3)),
    Fault(
        "429s",
        "/429s?n=1",
        **answered("429", first_hits=1, total_hits=2),
        extra_time=1.0,
        loop_timeout=2.5,
        retry_after=True,
    ),
    Fault(
        "429date",
        "/429date?n=1",
        **answered("429", first_hits=1, total_hits=2),
        extra_time=2.0,
        loop_timeout=2.5,
        retry_after=True,
    ),
]
CASES = [pytest.param(f, mode, id=f"{f.name}-{mode}") for f in FAULTS for mode in MODES]


@pytest.fixture
async def faults():
    async with FaultServer() as server:
        yield server


def fault_url(server: FaultServer, fault: Fault) -> str:
    return closed_port_url() if not fault.path else server.url(fault.path)


def request_for(url: str, fault: Fault, mode: str) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "GET", "url": url, "timeout": f"{REQUEST_TIMEOUT}s"}
    if mode == "retry":
        request["retry"] = dict(RETRY)
    elif mode in ("poll", "poll-ignore"):
        request["loopUntil"] = {
            **LOOP,
            "timeout": f"{fault.loop_timeout}s",
            "ignoreErrors": mode == "poll-ignore",
        }
    return request


def time_budget(fault: Fault, mode: str) -> float:
    """The timeout or deadline the case runs under (before slack)."""
    if mode == "single":
        return REQUEST_TIMEOUT
    if mode == "retry":
        return RETRY_TIME + fault.extra_time
    if mode in ("poll", "poll-ignore"):
        return fault.loop_timeout
    return max(OK_DELAY, REQUEST_TIMEOUT)


def workflow_for(wf: Any, server: FaultServer, fault: Fault, mode: str) -> Any:
    url = fault_url(server, fault)
    limits = {"maxResponseBytes": "1MB"}
    if mode != "batch":
        step = {"name": "call", "handler": wf.request_step("call", request_for(url, fault, mode))}
        return wf.workflow([step], limits=limits)
    healthy = {"method": "GET", "url": server.url(f"/ok?delay={OK_DELAY}"), "timeout": "5s"}
    requests = [healthy, request_for(url, fault, mode), healthy]
    literal = json.dumps(requests)
    wf.handler(
        "batch.py",
        f"import json\n\ndef transform(data):\n"
        f"    return {{'lam.httpRequests': json.loads({literal!r})}}\n",
    )
    return wf.workflow([{"name": "call", "handler": "batch.py"}], limits=limits)


def check_message(message: str, fault: Fault) -> None:
    assert "Traceback" not in message, message
    assert len(message.splitlines()) == 1 and len(message) < 1500, message
    assert re.search(fault.cause, message, re.IGNORECASE), (fault.cause, message)


@pytest.mark.parametrize(("fault", "mode"), CASES)
async def test_fault(faults, wf, fault: Fault, mode: str) -> None:
    path = workflow_for(wf, faults, fault, mode)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        record = await asyncio.wait_for(run_path(path), HANG_GUARD)
    except TimeoutError:
        pytest.fail(f"{fault.name}-{mode}: the run was still going after {HANG_GUARD}s (a hang)")
    elapsed = loop.time() - started
    expected = fault.outcome[mode]

    budget = time_budget(fault, mode)
    assert elapsed <= budget + SLACK, f"took {elapsed:.2f}s, budget {budget:.2f}s + {SLACK}s"

    if expected == SUCCESS:
        assert record["status"] == "SUCCESS", record["error"]
        assert record["error"] is None
        assert record["result"] == DONE
        assert record["gwo"]["step_1"]["http"]["attempts"] == fault.hits[mode]
    else:
        error = record["error"]
        assert record["status"] == "FAILED"
        assert error is not None and error["type"] == expected, error
        assert error["step"] == "call"
        check_message(error["message"], fault)
        if mode == "retry" and fault.retried:
            assert "after 3 attempts" in error["message"], error["message"]

    if mode == "batch":
        step = record["gwo"]["step_1"]
        assert error["message"].startswith("lam.httpRequests[1]: "), error["message"]
        assert step["response"] == [DONE, None, DONE]  # the healthy ones are kept
        assert [step["http"][i]["status"] for i in (0, 2)] == [200, 200]
        assert step["http"][1]["error"]["type"] == expected
        check_message(step["http"][1]["error"]["message"], fault)
        assert elapsed >= OK_DELAY * 0.9  # the run waited for the healthy elements
        assert faults.hits("/ok") == 2

    if fault.retry_after and mode in ("retry", "poll", "poll-ignore"):
        (gap,) = faults.gaps(fault.hit_path)
        assert 0.9 <= gap <= 2.0 + SLACK / 2, f"Retry-After not honoured: next request {gap:.3f}s"

    left = await faults.settle(1.0)
    assert left == 0, f"{left} connection(s) still open after the run ended"

    if fault.path:
        want = fault.hits[mode]
        got = faults.hits(fault.hit_path)
        if want is None:  # a deadline cut the poll: some attempts, at least two
            assert got >= 2
        elif fault.name == "reset":
            assert got >= want
        else:
            assert got == want, f"the server saw {got} requests, expected {want}"


# -- request counts, redirects, and the server itself ---------------------------------------


@pytest.mark.parametrize(
    ("mode", "attempts"), [("single", 1), ("retry", 3)], ids=["reset-single", "reset-retry"]
)
async def test_one_attempt_is_one_request_after_a_reset(faults, wf, mode, attempts):
    """README: `attempts` counts every HTTP request sent, and `retry.maxAttempts` is the total.

    A connection reset must not be resent behind the runner's back (aiohttp's session resends
    an idempotent request once after ClientOSError/ServerDisconnectedError by default), or a
    user's `maxAttempts: 3` means 6 requests at a server that is already struggling.
    """
    fault = next(f for f in FAULTS if f.name == "reset")
    path = workflow_for(wf, faults, fault, mode)
    record = await asyncio.wait_for(run_path(path), HANG_GUARD)
    assert record["error"]["type"] == TE
    if attempts > 1:
        assert f"after {attempts} attempts" in record["error"]["message"]
    assert faults.hits("/reset") == attempts, (
        f"{attempts} attempt(s) reported, {faults.hits('/reset')} requests reached the server"
    )


async def test_a_chain_of_ten_redirects_is_followed(faults, wf):
    """README: redirects are followed, at most 10; ten is within the limit."""
    request = {"method": "GET", "url": faults.url("/redirect-chain?n=10"), "timeout": "2s"}
    record = await run_path(wf.workflow([wf.request_step("r", request)]))
    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"] == DONE
    assert faults.hits("/redirect-chain") == 11


async def test_an_eleventh_redirect_is_a_transport_error(faults, wf):
    request = {"method": "GET", "url": faults.url("/redirect-chain?n=11"), "timeout": "2s"}
    record = await run_path(wf.workflow([wf.request_step("r", request)]))
    assert record["error"]["type"] == TE
    assert "redirect" in record["error"]["message"]


async def _raw_get(server: FaultServer, target: str, read_timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", int(server.base.rsplit(":", 1)[1]))
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), read_timeout)
    finally:
        writer.close()


async def test_server_reset_sends_partial_headers_then_rst(faults):
    reader, writer = await asyncio.open_connection("127.0.0.1", int(faults.base.rsplit(":", 1)[1]))
    writer.write(b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    received = bytearray()

    async def read_to_the_end() -> None:
        while chunk := await asyncio.wait_for(reader.read(4096), 2):
            received.extend(chunk)

    with pytest.raises(ConnectionResetError):
        await read_to_the_end()
    writer.close()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\n\r\n" not in received


async def test_server_burst_counts_per_path_and_resets(faults):
    statuses = [(await _raw_get(faults, "/burst5xx?n=2"))[9:12] for _ in range(3)]
    assert statuses == [b"503", b"503", b"200"]
    assert faults.hits("/burst5xx") == 3
    faults.reset()
    assert faults.hits("/burst5xx") == 0
    assert (await _raw_get(faults, "/burst5xx?n=1&status=500"))[9:12] == b"500"


async def test_server_stall_sends_nothing(faults):
    with pytest.raises(TimeoutError):
        await _raw_get(faults, "/stall", read_timeout=0.2)
    assert faults.hits("/stall") == 1


async def test_closed_port_refuses():
    host_port = closed_port_url().split("/")[2]
    host, port = host_port.split(":")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, int(port))
