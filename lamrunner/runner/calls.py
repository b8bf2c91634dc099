"""Performing one request object: send, retry transient failures, poll until the condition holds.

Layering: `retry` wraps each send; `loopUntil` wraps the retried send, so a 503 inside a poll is
first retried by `retry` (when given) and only the final answer of that attempt is offered to the
condition. Decisions come from `polling`; this module only awaits I/O, JS and the clock, all
of them the run's (`RunContext`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from lamrunner import defaults
from lamrunner.decide.polling import (
    Decision,
    Fail,
    Observation,
    PollState,
    Succeed,
    Wait,
    deadline_error,
    decide_poll,
    decide_retry_wait,
    eta_seconds,
    is_throttle,
    note_progress,
)
from lamrunner.decide.schedules import DELAY_HEADERS, server_delay
from lamrunner.definition.auth import OAUTH2
from lamrunner.definition.directives import RequestSpec
from lamrunner.definition.pagination import PageSpec
from lamrunner.definition.pathconditions import (
    PathCondition,
    compile_path_condition,
    is_path_condition,
)
from lamrunner.definition.policies import HistoryWindow, PollPolicy, RetryPolicy
from lamrunner.errors import (
    AuthenticationError,
    ConditionError,
    HttpStatusError,
    LamrunnerError,
    PollingError,
    ResultFetchFailed,
    ScriptError,
    TransportError,
)
from lamrunner.http.request import RenderedRequest
from lamrunner.http.transport import Response, excerpt
from lamrunner.js.simplecond import UNDEFINED, Unsupported, compile_condition, compile_value
from lamrunner.runner.context import RunContext
from lamrunner.runner.history import attempt_row, failure_excerpt
from lamrunner.runner.rendering import OAuthClient, render_auth, render_request
from lamrunner.runner.resulturl import (
    fetch_result,
    find_pointer,
    put_result,
    register_url_secrets,
    result_request,
)
from lamrunner.runner.tokens import fetch_token
from lamrunner.units import format_duration


class Condition(Protocol):
    async def evaluate(self, ctx_json: str) -> Any: ...
    async def evaluate_value(self, ctx_json: str, value: bool = True) -> Any: ...
    async def aclose(self) -> None: ...


@dataclass
class CallResult:
    """The outcome the GWO records for one request object."""

    value: Any
    status: int
    headers: dict[str, str]
    attempts: int
    duration_ms: int
    throttled_ms: int = 0  # waiting out 429/503 + Retry-After (shown only when some)
    progress: dict[str, Any] | None = None  # loopUntil.progress: {"percent", "etaMs"}
    pagination: dict[str, Any] | None = None  # {"pages", "stoppedBy", "statuses"}
    polls: int = 1  # a poll's attempts (retries inside one attempt not counted): pollCount
    # followResultUrl followed a pointer: {"url" (masked), "status", "bytes", "attempts",
    # "durationMs"} of the result's fetch
    result_url: dict[str, Any] | None = None

    @classmethod
    def restored(cls, entry: dict[str, Any]) -> CallResult:
        """The result a GWO entry (`{"response", "http"}`) was made from (`http`)."""
        http = entry["http"]
        return cls(
            value=entry["response"],
            status=http["status"],
            headers=http["headers"],
            attempts=http["attempts"],
            duration_ms=http["durationMs"],
            throttled_ms=http.get("throttledMs", 0),
            progress=http.get("progress"),
            pagination=http.get("pagination"),
            result_url=http.get("resultUrl"),
        )

    def http(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "status": self.status,
            "headers": self.headers,
            "attempts": self.attempts,
            "durationMs": self.duration_ms,
        }
        if self.throttled_ms:
            entry["throttledMs"] = self.throttled_ms
        if self.progress is not None:
            entry["progress"] = self.progress
        if self.pagination is not None:
            entry["pagination"] = self.pagination
        if self.result_url is not None:
            entry["resultUrl"] = self.result_url
        return entry


ProgressHook = Callable[[PollState], None]
HistoryHook = Callable[[dict[str, Any]], None]  # one row per poll attempt (see history)
GiveUpHook = Callable[[dict[str, Any]], None]  # the outcome of a poll's onGiveUp request
# followResultUrl: the request (or poll) succeeded with a pointer; called before the fetch
PolledHook = Callable[["CallResult"], None]
# The reasons a poll gives up (and sends its onGiveUp): its errors, a signal, `lamrunner cancel`
INTERRUPTED, CANCELLED = "Interrupted", "Cancelled"
# A host that stops a run it (or its next process) continues from the checkpoint, as a server
# that shuts down: a task cancelled with this message stops without giving up (no onGiveUp)
HANDOVER = "Handover"


@dataclass(frozen=True)
class Element:
    """One request object as `perform` takes it: what to send, and where its progress goes.

    `on_attempt` hears of every poll attempt that is followed by another (to checkpoint the
    loop); `on_history` gets a row for every attempt, the one that settles the poll too;
    `on_polled` hears of a success whose `followResultUrl` names a pointer, before the fetch
    (to checkpoint it, so a resumed run fetches the result again rather than poll again)."""

    request: RenderedRequest
    spec: RequestSpec
    on_attempt: ProgressHook | None = None
    on_history: HistoryHook | None = None
    on_give_up: GiveUpHook | None = None
    on_polled: PolledHook | None = None


def perform(
    ctx: RunContext,
    element: Element,
    poll: PollState | None = None,
    polled: CallResult | None = None,
) -> Coroutine[Any, Any, CallResult]:
    """Run one request object to its result (resuming `poll` if given), or raise the error
    that ends it: await what this returns. It is the call's own coroutine, not one wrapping
    it, since every wake-up of a poll's send passes through each coroutine that awaits it.
    With `polled` (a success saved before its result pointer was fetched), only the fetch is
    made."""
    call = _Call(ctx, element)
    if polled is not None:
        return call.follow_result(polled)
    if element.spec.pagination is not None:
        return call.pages(element.spec.pagination)
    if element.spec.loop is None:
        return call.once()
    return call.poll(element.spec.loop, poll)


class _Call:
    """One request object being performed, in its run. Its parts are plain attributes: they
    are read several times in every attempt."""

    __slots__ = ("ctx", "debug", "element", "oauth", "on_history", "origin", "request", "spec")

    def __init__(self, ctx: RunContext, element: Element) -> None:
        self.ctx = ctx
        self.element = element
        self.request: RenderedRequest = element.request
        self.spec: RequestSpec = element.spec
        self.on_history: HistoryHook | None = element.on_history
        self.debug: bool = ctx.log.is_enabled_for(logging.DEBUG)  # else no per-send line made
        auth = element.spec.auth
        self.oauth: OAuthClient | None = (
            render_auth(auth, ctx.config).oauth
            if auth is not None and auth.type == OAUTH2
            else None
        )
        self.origin = _origin(element.request.url)  # the token goes to this origin alone

    async def once(self) -> CallResult:
        clock = self.ctx.clock
        started = clock.now()
        response, error, sent, throttled = await self._send(self.spec.retry, deadline=None)
        if error is not None:
            after = f" (after {sent} attempts)" if sent > 1 else ""
            raise error.replaced(attempts=sent, message=error.message + after) from None
        assert response is not None
        if response.status >= 400 and self.spec.fail_on_http_error:
            raise _status_error(self.request, response, sent)
        return await self.follow_result(_result(response, sent, clock.now() - started, throttled))

    async def follow_result(self, result: CallResult) -> CallResult:
        """`result` with the result its `followResultUrl` pointer names in place of the
        pointer (see `resulturl`); unchanged without one. Raises ResultFetchFailed."""
        query = self.spec.follow_result
        if query is None or result.status >= 300:  # a recorded failure has no result
            return result
        base = self.element.request
        pointer = find_pointer(result.value, query, base.url)
        if pointer is None:
            return result
        register_url_secrets(self.ctx.secrets, pointer.url)  # before it shows up anywhere
        if self.element.on_polled is not None:
            self.element.on_polled(result)
        self.ctx.log.info("result.fetch", where=self.spec.where, url=pointer.url)
        value, info = await fetch_result(
            pointer,
            result_request(base, pointer.url),
            self._send_result,
            self.ctx.secrets,
            self.ctx.clock.now,
        )
        self.ctx.log.info(
            "result.fetched", where=self.spec.where, bytes=info["bytes"], ms=info["durationMs"]
        )
        return replace(result, value=put_result(result.value, query, value), result_url=info)

    async def _send_result(
        self, request: RenderedRequest
    ) -> tuple[Response | None, TransportError | None, int]:
        """A result URL's GET, with the request's retry (no poll deadline: the poll is over)."""
        self.request = request
        response, error, sent, _ = await self._send(self.spec.retry, None, validate=False)
        return response, error, sent

    async def pages(self, paging: PageSpec) -> CallResult:
        """Page after page (each sent as `once` sends it: retried, failOnHttpError checked)
        until `stopCondition` holds for the page just fetched, no `next` value is left, or
        `maxPages` pages are in; the result's value is the list of page bodies."""
        started, walker = self.ctx.clock.now(), _Pages(self, paging)
        try:
            await walker.open()
            while True:
                page = await self.once()
                if await walker.last(page):
                    break
        finally:
            await walker.aclose()
        return walker.result(self.ctx.clock.now() - started)

    async def poll(self, policy: PollPolicy, state: PollState | None) -> CallResult:
        """The poll loop: one `Poller.attempt` after another, sleeping until each is due.

        With a budget (`ctx.budget_end`), a next attempt due after the budget's end is not
        waited for: `Suspended` says when it is due (the state was checkpointed after the
        attempt before it). A rolling `ctx.hold` does the same for an attempt due more than
        `hold` seconds after the moment the loop would start waiting for it."""
        state = state or PollState.start(policy, self.ctx.clock.now())
        end = _Horizon(self.ctx.budget_end, self.ctx.hold)
        poller = await Poller.open(self, policy)
        attempt, on_attempt = poller._attempt, self.element.on_attempt
        try:
            return await self._loop(policy, state, poller, attempt, on_attempt, end)
        except PollingError as exc:  # PollingFailed, PollingExhausted, DeadlineExceeded
            await self._give_up(exc.type_name, state, poller)
            last = poller._last  # the last answer, small and parsed, for a poll step's outputs
            raise exc.replaced(last_response=None if last is None else _kept(last)) from None
        except asyncio.CancelledError as exc:  # a signal, or `lamrunner cancel` (its message)
            why = exc.args[0] if exc.args else None
            if why != HANDOVER:  # a handover continues the poll later: it does not give up
                await self._give_up(CANCELLED if why == CANCELLED else INTERRUPTED, state, poller)
            raise
        finally:
            await poller.aclose()

    async def _loop(
        self,
        policy: PollPolicy,
        state: PollState,
        poller: Poller,
        attempt: Callable[
            [PollState, float], Coroutine[Any, Any, tuple[Decision, CallResult | None]]
        ],
        on_attempt: ProgressHook | None,
        end: _Horizon,
    ) -> CallResult:
        clock, log, debug = self.ctx.clock, self.ctx.log, self.debug
        last_info = float("-inf")
        while True:
            now = clock.now()
            if state.next_due > now:
                if end.beyond(state.next_due, now):
                    raise Suspended(state.next_due)
                await clock.sleep(state.next_due - now)
                now = clock.now()
            decision, result = await attempt(state, now)
            if type(decision) is not Wait:
                if isinstance(decision, Fail):
                    raise decision.error
                assert result is not None
                return result
            now = decision.until - decision.delay
            # Progress at info for polls worth watching; a fast poll logs at most every 5 s.
            loud = decision.delay >= 1.0 or now - last_info >= _QUIET_SECONDS
            if loud or debug:
                last_info = now if loud else last_info
                (log.info if loud else log.debug)(
                    "poll.attempt",
                    where=self.spec.where,
                    attempt=state.attempt,
                    of=policy.max_attempts,
                    status=state.last_status,
                    next_in=format_duration(decision.delay),
                    **({"throttled": state.throttled} if state.throttled else {}),
                )
            if on_attempt is not None:
                on_attempt(state)

    async def _give_up(self, reason: str, state: PollState, poller: Poller) -> None:
        """Send the poll's onGiveUp request, if it has one, and hand on its outcome."""
        if self.spec.on_give_up is None:
            return
        last = poller._last
        context = (
            {"response": last.value, "status": last.status}
            if last is not None and _parses(last)
            else {"response": state.last_response, "status": state.last_status}
        )
        outcome = await give_up(self.ctx, self.spec, reason, context)
        if self.element.on_give_up is not None:
            self.element.on_give_up(outcome)

    def _history(
        self,
        state: PollState,
        began: float,
        response: Response | None,
        problem: str | None,
        error: TransportError | None,
        decision: Decision,
        last: Response | None,
        window: HistoryWindow,
    ) -> None:
        """The attempt's history row, for `on_history` (call it only when there is one)."""
        assert self.on_history is not None
        ended = self.ctx.clock.now()
        row = attempt_row(
            state, began, ended, response, problem, error, decision, last, self.ctx.secrets, window
        )
        self.on_history(row)

    async def _decide(
        self,
        policy: PollPolicy,
        state: PollState,
        response: Response | None,
        error: TransportError | None,
        checks: _Checks,
        last: Response | None,
        not_modified: bool = False,
    ) -> tuple[Decision, str | None]:
        """The verdict on one attempt, and what went wrong in this attempt (for its row).

        `state.last_error` keeps the last problem seen in any attempt (the final error quotes
        it); the row wants only this attempt's. The failure excerpt parses the body, so it is
        made only when the poll fails, and the (pure) decision is taken again with it."""
        previous, state.last_error = state.last_error, None
        try:
            seen = await self._observe(response, error, state, checks, not_modified)
        except LamrunnerError as exc:  # a condition broke a limit: this attempt ends the poll
            state.last_error = previous
            return Fail(exc), exc.message
        problem = state.last_error
        state.last_error = problem or previous
        return self._decision(policy, state, seen, self.ctx.clock.now(), last), problem

    def _decision(
        self,
        policy: PollPolicy,
        state: PollState,
        seen: Observation,
        now: float,
        last: Response | None,
        decided: tuple[Decision, float] | None = None,
    ) -> Decision:
        """`decide_poll` (unless `decided` holds what it already said, and with which rand),
        and when the poll fails, again with the same rand and the last answer's failure
        excerpt in the state (it parses the body, so it is made only then)."""
        if decided is None:
            rand = self.ctx.rand()
            decision = decide_poll(policy, state, seen, now, rand)
        else:
            decision, rand = decided
        failed = isinstance(decision, Fail) and isinstance(decision.error, PollingError)
        if failed and last is not None:
            state.last_excerpt = failure_excerpt(last)
            decision = decide_poll(policy, state, seen, now, rand)
        return decision

    async def _observe(
        self,
        response: Response | None,
        error: TransportError | None,
        state: PollState,
        checks: _Checks,
        not_modified: bool = False,
    ) -> Observation:
        """Evaluate `condition`, then `failWhen`, then `pendingWhen` (each only when the one
        before did not hold), and `progress`; a 304 offers the last full `response` again."""
        if error is not None:
            state.last_error = error.message
            self.ctx.log.warning("poll.transport_error", where=self.spec.where, error=error.message)
            return Observation(error=error)
        assert response is not None
        spec = self.spec
        loop = spec.loop
        mode = None if loop is None or not_modified else loop.http_errors
        if mode is not None and not 200 <= response.status < 300:
            return self._http_error(response, state, mode)
        state.last_status = 304 if not_modified else response.status
        state.last_excerpt = excerpt(response.text)
        now = self.ctx.clock.now()
        condition, fail_when, pending_when, progress, next_delay = checks
        seen = _Seen(response, state, now, not_modified)
        pending = failed = False
        try:
            held = spec.action_from is not None and _has_action(spec, response)
            if not held:
                held = await self._evaluate(condition, seen)
            if not held and fail_when is not None:
                failed = await self._evaluate(fail_when, seen)
            if not held and not failed and pending_when is not None:
                pending = await self._evaluate(pending_when, seen)
            value = None if progress is None else await self._evaluate(progress, seen, True)
            wanted = None
            if next_delay is not None and not held and not failed:
                wanted = await self._next_delay(next_delay, response, state, now, not_modified)
        except TransportError as exc:  # the body was not the JSON it claimed to be
            state.last_error = exc.message
            return Observation(status=response.status, excerpt=state.last_excerpt, error=exc)
        if progress is not None or (loop is not None and loop.stall_timeout is not None):
            self._note_progress(state, now, response, value, progress is not None, not_modified)
        return Observation(
            state.last_status,
            state.last_excerpt,
            held,
            failed,
            None,
            server_delay(response.headers, now),
            wanted,
            pending,
            spec.action_from is not None and _rejects(spec, response) and not held,
        )

    @staticmethod
    def _note_progress(
        state: PollState,
        now: float,
        response: Response,
        value: Any,
        percent: bool,
        not_modified: bool,
    ) -> None:
        """Progress, and the digest a stall is judged on: of the progress value when there is
        one, else of the body (a 304 is the same body by definition)."""
        digest: str | None
        if percent:
            digest = _digest(json.dumps(value, sort_keys=True, default=str))
        else:
            digest = state.fingerprint if not_modified else _digest(response.text)
        note_progress(state, now, value, digest, percent)

    def _http_error(self, response: Response, state: PollState, mode: str) -> Observation:
        """A poll step's non-2xx answer, never offered to its conditions: with
        ignoreIntermediateFailures ("ignore") one more attempt; else ("fail") the step's
        HttpStatusError — but a rate limit (429/503 with Retry-After) is waited out."""
        state.last_status, state.last_excerpt = response.status, excerpt(response.text)
        asked = server_delay(response.headers, self.ctx.clock.now())
        if mode == "fail" and not is_throttle(response.status, asked):
            error = _status_error(self.request, response, state.requests)
            state.last_error = error.message
            return Observation(response.status, state.last_excerpt, error=error)
        state.last_error = f"answered {response.status}: {state.last_excerpt}"
        self.ctx.log.warning(
            "poll.http_error_ignored", where=self.spec.where, status=response.status
        )
        return Observation(response.status, state.last_excerpt, retry_after=asked)

    async def _next_delay(
        self,
        check: _Check,
        response: Response,
        state: PollState,
        now: float,
        not_modified: bool = False,
    ) -> float | None:
        """Seconds `nextDelay` asks for; None (the schedule) when it says null, throws or
        returns something that is not milliseconds >= 0 (logged, as a throwing condition)."""
        try:
            value = await check.js.evaluate(_ctx_json(response, state, now, not_modified))
        except ScriptError as exc:
            self._unless_thrown(exc, check.name, response)
            self._ignored_delay(f"nextDelay threw {exc.message}")
            return None
        if value is None:
            return None
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            self._ignored_delay(f"nextDelay returned {value!r}, not milliseconds >= 0")
            return None
        return float(value) / 1000

    def _ignored_delay(self, why: str) -> None:
        self.ctx.log.warning("poll.next_delay_ignored", where=self.spec.where, error=why)

    async def _evaluate(self, check: _Check, seen: _Seen, value: bool = False) -> Any:
        """The check's verdict (or with `value`, what it returns): in Python when it can say
        exactly, else in QuickJS. A value that throws is None."""
        if check.fast is not None:
            try:
                result = check.fast(seen.ctx())
                return None if result is UNDEFINED else result
            except Unsupported:
                pass
        response, name = seen.response, check.name
        try:
            ctx_json = _ctx_json(response, seen.state, seen.now, seen.not_modified)
            if value:
                return await check.js.evaluate_value(ctx_json)
            return await check.js.evaluate(ctx_json)
        except ScriptError as exc:
            self._unless_thrown(exc, name, response)
            seen.state.last_error = f"{name} threw {exc.message}"
            self.ctx.log.warning(
                "poll.condition_threw", where=self.spec.where, error=seen.state.last_error
            )
            return None if value else False

    def _unless_thrown(self, exc: ScriptError, name: str, response: Response) -> None:
        """Raise for a script failure that is not the script's own throw: bad JSON (Python's
        parse says what is wrong, and raises for it) or a broken limit (ConditionError)."""
        if exc.kind == "badjson":
            response.value  # noqa: B018
        if exc.kind != "exception":
            raise _condition_error(exc, name, self.spec) from None

    async def _open(self, source: str | None, name: str, value: bool = False) -> _Check:
        if name in _PATH_CHECKS and source is not None and is_path_condition(source):
            return _path_check(name, source, f"{self.spec.where}.loopUntil.{name}")
        js_engine = self.ctx.js
        opener = js_engine.open_function if name == "nextDelay" else js_engine.open_condition
        try:
            js = await opener(source or "", self.ctx.condition_limits)
        except ScriptError as exc:
            raise _condition_error(exc, name, self.spec) from None
        fast = (
            None
            if name == "nextDelay"
            else (compile_value if value else compile_condition)(source or "")
        )
        return _Check(name, js, fast)

    async def _send(
        self,
        retry: RetryPolicy | None,
        deadline: float | None,
        validate: bool = True,
        throttled_before: float = 0.0,
    ) -> tuple[Response | None, TransportError | None, int, float]:
        """Send with transient-failure retries; returns (response, error, requests sent,
        seconds waited throttled). Throttled tries (429/503 + Retry-After) do not count
        against `retry.maxAttempts`; with `throttled_before` (the poll's throttled time so
        far), their waits must fit in `retry.maxThrottleWait`.

        `validate` parses JSON bodies here; polls skip it, as the condition parses them anyway.
        """
        clock, request = self.ctx.clock, self.request
        tries = throttled_tries = 0
        throttled = 0.0
        while True:
            tries += 1
            timeout = request.timeout
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - clock.now()))
            response, error = await self._send_once(timeout, validate)
            if retry is None:
                return response, error, tries, throttled
            status = response.status if response is not None else None
            asked = server_delay(response.headers, clock.now()) if response is not None else None
            wait = decide_retry_wait(
                retry,
                tries - throttled_tries,
                status,
                error,
                asked,
                throttled_before + throttled,
                self.ctx.rand(),
            )
            if wait is None or (deadline is not None and clock.now() + wait.delay > deadline):
                return response, error, tries, throttled
            delay = wait.delay
            if wait.throttled:
                throttled_tries += 1
                throttled += delay
            self.ctx.log.info(
                "retry.wait",
                where=request.where,
                attempt=tries,
                of=retry.max_attempts,
                status=status,
                error=error.message if error else None,
                next_in=format_duration(delay),
                **({"throttled": True} if wait.throttled else {}),
            )
            await clock.sleep(delay)

    async def _send_once(
        self, timeout: float, validate: bool
    ) -> tuple[Response | None, TransportError | None]:
        request = self.request
        try:
            if self.oauth is not None and _origin(request.url) == self.origin:
                response = await self._send_authorized(self.oauth, request, timeout)
            else:
                response = await self.ctx.transport.send(request, timeout)
            if validate:
                response.value  # noqa: B018 - invalid JSON is a transport failure of this attempt
        except TransportError as exc:
            return None, self._failed(exc)
        if self.debug:
            self._received(response)
        return response, None

    def _failed(self, exc: TransportError) -> TransportError:
        """A send that failed, at debug (the attempt's outcome says the rest)."""
        self._sent("http.error", error=exc.message)
        return exc

    def _received(self, response: Response) -> None:
        self._sent("http.response", status=response.status, ms=round(response.elapsed * 1000))

    def _sent(self, event: str, **fields: Any) -> None:
        request = self.request
        self.ctx.log.debug(
            event, where=request.where, method=request.method, url=request.url, **fields
        )

    async def _send_authorized(
        self, client: OAuthClient, request: RenderedRequest, timeout: float
    ) -> Response:
        """Send with the client's bearer token (the run's cached one, or a fresh one); on a
        401, fetch a new token and send once more: whatever that answers is the answer."""
        token = await self._token(client, timeout)
        response = await self.ctx.transport.send(_with_token(request, token), timeout)
        if response.status != 401:
            return response
        self.ctx.tokens.forget(client, token)
        self.ctx.log.info("auth.refresh", where=self.spec.where, reason="401")
        token = await self._token(client, timeout)
        return await self.ctx.transport.send(_with_token(request, token), timeout)

    def _token(self, client: OAuthClient, timeout: float) -> Coroutine[Any, Any, str]:
        ctx = self.ctx

        def fetch(c: OAuthClient) -> Coroutine[Any, Any, Any]:
            return fetch_token(ctx.transport, c, timeout, ctx.clock.now, ctx.secrets, ctx.log)

        return ctx.tokens.token(client, fetch, ctx.clock.now)


class _Pages:
    """A paginated request's walk: its scripts (`stopCondition`, the `next` values), the
    pages so far, and the next page's request made from the last page."""

    def __init__(self, call: _Call, paging: PageSpec) -> None:
        self.call, self.paging = call, paging
        self.scripts: list[tuple[str, str, Condition]] = []
        self.stop: Condition | None = None
        self.bodies: list[Any] = []
        self.statuses: list[int] = []
        self.attempts = 0
        self.throttled_ms = 0
        self.final: CallResult | None = None
        self.stopped_by = ""
        # what the engine added after rendering (an Idempotency-Key): kept on every page
        first = render_request(call.spec, call.ctx.config)
        self.added = call.request.headers[len(first.headers) :]

    async def open(self) -> None:
        js, limits = self.call.ctx.js, self.call.ctx.condition_limits
        paging = self.paging
        if paging.stop_condition is not None:
            self.stop = await self._opened(
                js.open_condition, paging.stop_condition, "stopCondition", limits
            )
        for part, name, source in paging.sources():
            script = await self._opened(js.open_condition, source, f"next.{part}.{name}", limits)
            self.scripts.append((part, name, script))

    async def _opened(self, opener: Any, source: str, name: str, limits: Any) -> Condition:
        try:
            return await opener(source, limits)  # type: ignore[no-any-return]
        except ScriptError as exc:
            raise self._error(exc, name) from None

    async def last(self, page: CallResult) -> bool:
        """Take in the page just fetched; True when it is the last one, else the call's
        request becomes the next page's."""
        self.bodies.append(page.value)
        self.statuses.append(page.status)
        self.attempts += page.attempts
        self.throttled_ms += page.throttled_ms
        self.final = page
        number = len(self.bodies)
        if number >= self.paging.max_pages:
            return self._stopped("maxPages")
        ctx_json = json.dumps(
            {"response": page.value, "status": page.status, "headers": page.headers, "page": number}
        )
        if self.stop is not None and await self._run(self.stop, ctx_json, "stopCondition", False):
            return self._stopped("stopCondition")
        over: dict[str, dict[str, Any]] = {}
        for part, name, script in self.scripts:
            value = await self._run(script, ctx_json, f"next.{part}.{name}", True)
            over.setdefault(part, {})[name] = value
        if all(v is None for values in over.values() for v in values.values()):
            return self._stopped("noNext")
        call = self.call
        request = render_request(call.spec, call.ctx.config, overrides=over)
        call.request = replace(request, headers=request.headers + self.added)
        call.ctx.log.debug("page.next", where=call.spec.where, page=number + 1)
        return False

    async def _run(self, script: Condition, ctx_json: str, name: str, value: bool) -> Any:
        try:
            if value:
                got = await script.evaluate_value(ctx_json)
                return None if got is UNDEFINED else got
            return await script.evaluate(ctx_json)
        except ScriptError as exc:
            raise self._error(exc, name) from None

    def _error(self, exc: ScriptError, name: str) -> ConditionError:
        limit = {"timeout": " (limits.conditionTimeout)", "memory": " (limits.conditionMemory)"}
        return ConditionError(
            f"{self.paging.where}.{name}: {exc.message}{limit.get(exc.kind, '')} "
            f"(on page {len(self.bodies)})"
        )

    def _stopped(self, why: str) -> bool:
        self.stopped_by = why
        self.call.ctx.log.info(
            "page.done", where=self.call.spec.where, pages=len(self.bodies), stopped_by=why
        )
        return True

    def result(self, elapsed: float) -> CallResult:
        last = self.final
        assert last is not None
        return CallResult(
            value=self.bodies,
            status=last.status,
            headers=last.headers,
            attempts=self.attempts,
            duration_ms=max(0, round(elapsed * 1000)),
            throttled_ms=self.throttled_ms,
            pagination={
                "pages": len(self.bodies),
                "stoppedBy": self.stopped_by,
                "statuses": self.statuses,
            },
        )

    async def aclose(self) -> None:
        for script in [self.stop, *(s for _, _, s in self.scripts)]:
            if script is not None:
                await script.aclose()


def _with_token(request: RenderedRequest, token: str) -> RenderedRequest:
    return replace(request, headers=(*request.headers, ("Authorization", f"Bearer {token}")))


def register(secrets: Any, request: RenderedRequest) -> None:
    """Add a rendered request's credentials to the run's masking set: its credential
    headers and the values its `authentication` rendered into it."""
    secrets.add_headers(request.headers)
    for value in request.secrets:
        secrets.add(value)


@dataclass(frozen=True, slots=True)
class _Horizon:
    """How far ahead a run waits in memory: until its budget's end (epoch seconds), and at
    most `hold` seconds past now; None for either is no limit."""

    end: float | None
    hold: float | None

    def beyond(self, due: float, now: float) -> bool:
        """Whether an attempt due at `due` is too far ahead to wait for: the run suspends."""
        if self.end is not None and due > self.end:
            return True
        return self.hold is not None and due - now > self.hold


class Suspended(Exception):  # a state, not an error: the run suspends
    """A poll's next attempt is due after the run's budget ends (`until`, epoch seconds)."""

    def __init__(self, until: float) -> None:
        super().__init__(until)
        self.until = until


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one poll attempt did: the poll's `state` (the one given, updated in place: its
    attempt and request counts, last status, and on `Wait` its `next_due`), the `decision`
    (`Succeed`, `Wait(until, delay)` or `Fail(error)`), and on `Succeed` the `result`."""

    state: PollState
    decision: Decision
    result: CallResult | None = None


class Poller:
    """One polled request, opened (its `condition` and `failWhen` ready): `attempt` makes one
    attempt — send (with the request's `retry` inside it, bounded by the poll's deadline),
    evaluate, decide — and never sleeps before it; whoever calls it owns the waiting. The
    engine's poll loop is `attempt` and a sleep until `decision.until`, so a host that waits
    by other means (a durable timer, a task queue) gets the same attempts. Close it with
    `aclose` (or `async with`)."""

    __slots__ = (
        "_base",
        "_cached",
        "_call",
        "_checks",
        "_direct",
        "_excerpted",
        "_followed",
        "_last",
        "_pending",
        "_plain",
        "_unplain",
        "policy",
    )

    def __init__(self, call: _Call, policy: PollPolicy, checks: _Checks):
        self._call = call
        self.policy = policy
        self._checks = checks
        self._last: Response | None = None  # the last response received, for a failure's row
        self._base = call.request  # the request as the handler asked for it
        self._cached: tuple[str, Response] | None = None  # (url, answer with an ETag/date)
        self._followed: tuple[str, RenderedRequest] | None = None  # a 202's Location, as GET
        self._direct = call.spec.retry is None and call.oauth is None  # each attempt one send
        condition, *others = checks
        # a poll whose answers `_plainly` may decide: one send, one condition in Python
        self._plain = (
            self._direct
            and condition.fast is not None
            and all(check is None for check in others)
            and policy.stall_timeout is None
            and call.spec.action_from is None
        )
        self._pending: dict[int, Observation] = {}  # a plain answer's, by status
        # (a small body, its excerpt): the last one made; None for a body too long to keep
        self._excerpted: tuple[str | None, str] = (None, "")
        # the headers that make an answer not plain: a delay asked for, validators
        self._unplain = DELAY_HEADERS | (_VALIDATORS if policy.conditional else frozenset())

    @classmethod
    async def open(cls, call: _Call, policy: PollPolicy) -> Poller:
        opened: list[_Check] = []
        try:
            opened.append(await call._open(policy.condition, "condition"))
            checks: list[_Check | None] = [opened[0]]
            for name, source, value in (
                ("failWhen", policy.fail_when, False),
                ("pendingWhen", policy.pending_when, False),
                ("progress", policy.progress, True),
                ("nextDelay", policy.next_delay, False),
            ):
                check = None if source is None else await call._open(source, name, value)
                if check is not None:
                    opened.append(check)
                checks.append(check)
        except BaseException:
            for check in opened:
                await check.js.aclose()
            raise
        return cls(call, policy, (opened[0], checks[1], checks[2], checks[3], checks[4]))

    def start(self) -> PollState:
        """A new poll's state: its first attempt due now, its deadline `timeout` from now."""
        return PollState.start(self.policy, self._call.ctx.clock.now())

    async def attempt(self, state: PollState) -> AttemptOutcome:
        """Attempt number `state.attempt + 1`, now (call it at or after `state.next_due`)."""
        decision, result = await self._attempt(state, self._call.ctx.clock.now())
        return AttemptOutcome(state, decision, result)

    async def _attempt(self, state: PollState, now: float) -> tuple[Decision, CallResult | None]:
        """`attempt` as the engine's poll loop makes it, `now` being the time it starts: the
        decision, and on `Succeed` the result (no AttemptOutcome made in the loop)."""
        call, policy = self._call, self.policy
        if state.deadline is not None and now >= state.deadline:
            return Fail(deadline_error(policy, state)), None
        request = call.request = (
            self._base
            if state.follow_url is None and self._cached is None
            else self._request(state)
        )
        if self._direct:  # no retry, no token: one send, without _send's two frames
            timeout = request.timeout
            if state.deadline is not None:
                timeout = max(0.001, min(timeout, state.deadline - now))
            try:
                response, error = await call.ctx.transport.send(request, timeout), None
            except TransportError as exc:
                response, error = None, call._failed(exc)
            if call.debug and response is not None:
                call._received(response)
            state.requests += 1
        else:
            response, error, sent, throttled = await call._send(
                call.spec.retry, state.deadline, False, state.throttled_s
            )
            state.requests += sent
            state.throttled_s += throttled
        state.attempt += 1
        if self._plain and response is not None:
            decision = self._plainly(state, now, response)
            if type(decision) is Wait:  # most attempts: no coroutine for the conclusion
                state.next_due = decision.until
                return decision, None
            if decision is not None:
                return await self._concluded(state, decision, response)
        offered, not_modified = response, False
        if response is not None:
            cached = self._cached
            if response.status == 304 and cached is not None and cached[0] == call.request.url:
                offered, not_modified = _refreshed(cached[1], response), True
                self._cached = (cached[0], offered)
            elif cached is not None or (policy.conditional and _validated(response)):
                self._remember(call.request.url, response)  # keep it, or drop the old one
            if response.status == 202:
                self._follow(state, response)
        last = self._last = offered or self._last
        decision, problem = await call._decide(
            policy, state, offered, error, self._checks, last, not_modified
        )
        if offered is not None and call.spec.on_give_up is not None:
            state.last_response = _kept(offered)
        if call.on_history is not None:
            call._history(state, now, response, problem, error, decision, last, policy.history)
        return await self._concluded(state, decision, offered)

    def _plainly(self, state: PollState, began: float, response: Response) -> Decision | None:
        """The decision on the common answer, taken without the general path's machinery, or
        None for an answer that needs it: the plain answer is a 2xx other than 202, with no
        delay asked in its headers and no validators for a conditional poll, to a poll with
        only a condition that Python evaluates (`_plain`), neither cached nor followed. The
        rules applied are the general path's: the same Observation, the same decide_poll."""
        status = response.status
        if not 200 <= status < 300 or status == 202 or self._cached is not None:
            return None
        if state.follow_url is not None or not self._unplain.isdisjoint(response.headers):
            return None
        call = self._call
        now = call.ctx.clock.now()
        fast = self._checks[0].fast
        assert fast is not None
        try:
            held = fast(_py_ctx(response, state, now, False))
        except (Unsupported, TransportError):  # JS must decide, or the body is not JSON
            return None
        text = response.text
        if text != self._excerpted[0]:  # polls mostly see the same body again
            self._excerpted = (text if len(text) <= _MEMO_CHARS else None, excerpt(text))
        state.last_status, state.last_excerpt = status, self._excerpted[1]
        if held is True:
            seen = Observation(status, state.last_excerpt, True)
        else:  # the same every attempt for a status (decide_poll reads no excerpt): kept
            seen = self._pending.get(status) or self._pending.setdefault(
                status, Observation(status)
            )
        rand = call.ctx.rand()
        decision = decide_poll(self.policy, state, seen, now, rand)
        if type(decision) is Fail:  # again, with the failure excerpt
            decision = call._decision(self.policy, state, seen, now, response, (decision, rand))
        self._last = response
        if call.spec.on_give_up is not None:
            state.last_response = _kept(response)
        if call.on_history is not None:
            call._history(
                state, began, response, None, None, decision, response, self.policy.history
            )
        return decision

    async def _concluded(
        self, state: PollState, decision: Decision, offered: Response | None
    ) -> tuple[Decision, CallResult | None]:
        """An attempt's decision carried out on the state; a success's result made."""
        if isinstance(decision, Wait):
            state.next_due = decision.until
            if decision.throttled:  # waiting out a rate limit: not one of maxAttempts
                state.throttled += 1
                state.throttled_s += decision.delay
            return decision, None
        if isinstance(decision, Succeed):
            assert offered is not None
            follow = state.follow_url is not None or self._call.spec.follow_async is True
            located = offered.value if follow else None
            if isinstance(located, dict) and isinstance(located.get("resourceLocation"), str):
                where = located["resourceLocation"]
                decision, result = await self._fetch_result(state, where, decision, offered)
            else:
                result = self._result(state, offered)
            return await self._with_result(decision, result)
        return decision, None

    async def _with_result(
        self, decision: Decision, result: CallResult | None
    ) -> tuple[Decision, CallResult | None]:
        """A successful poll's result with its `followResultUrl` pointer followed; a failed
        fetch turns the success into a `Fail`."""
        if result is None or not isinstance(decision, Succeed):
            return decision, result
        try:
            return decision, await self._call.follow_result(result)
        except ResultFetchFailed as exc:
            return Fail(exc), None

    def _result(self, state: PollState, response: Response) -> CallResult:
        now = self._call.ctx.clock.now()
        result = _result(response, state.requests, now - state.started_at, state.throttled_s)
        result.polls = state.attempt
        if self.policy.progress is not None:
            eta = eta_seconds(state, now)
            result.progress = {
                "percent": state.progress,
                "etaMs": None if eta is None else round(eta * 1000),
            }
        return result

    async def _fetch_result(
        self, state: PollState, location: str, decision: Succeed, done: Response
    ) -> tuple[Decision, CallResult | None]:
        """The operation is done and its body names the result (`resourceLocation`): GET it,
        with the request's retry, under the poll's deadline."""
        call = self._call
        url = urljoin(call.request.url, location)
        if urlsplit(url).scheme not in ("http", "https"):
            return decision, self._result(state, done)
        call.request = self._get(url)
        response, error, sent, throttled = await call._send(
            call.spec.retry, state.deadline, throttled_before=state.throttled_s
        )
        state.requests += sent
        state.throttled_s += throttled
        if error is not None:
            return Fail(error.replaced(attempts=state.requests)), None
        assert response is not None
        if response.status >= 400 and call.spec.fail_on_http_error:
            return Fail(_status_error(call.request, response, sent)), None
        return decision, self._result(state, response)

    def _request(self, state: PollState) -> RenderedRequest:
        """This attempt's request: the handler's, or a GET of where a 202 sent the poll, made
        conditional when the last answer from that URL had an ETag or a Last-Modified."""
        request = self._base
        if state.follow_url is None and self._cached is None:
            return request  # the common poll: neither followed nor conditional
        if state.follow_url is not None:
            followed = self._followed
            if followed is None or followed[0] != state.follow_url:
                followed = self._followed = (state.follow_url, self._get(state.follow_url))
            request = followed[1]
        cached = self._cached
        if (
            not self.policy.conditional
            or cached is None
            or cached[0] != request.url
            or request.method not in ("GET", "HEAD")
        ):
            return request
        names = {name.lower() for name, _ in request.headers}
        extra = []
        etag = cached[1].headers.get("etag")
        modified = cached[1].headers.get("last-modified")
        if etag and "if-none-match" not in names:
            extra.append(("If-None-Match", etag))
        if modified and "if-modified-since" not in names:
            extra.append(("If-Modified-Since", modified))
        return replace(request, headers=request.headers + tuple(extra)) if extra else request

    def _get(self, url: str) -> RenderedRequest:
        """A GET of `url` with the request's headers (less its body's; less its credentials
        when `url` is on another origin)."""
        base = self._base
        same = _origin(url) == _origin(base.url)
        drop = _BODY_HEADERS if same else _BODY_HEADERS | _CREDENTIAL_HEADERS
        headers = tuple((k, v) for k, v in base.headers if k.lower() not in drop)
        return RenderedRequest("GET", url, headers, None, base.timeout, base.where)

    def _remember(self, url: str, response: Response) -> None:
        """Keep a 2xx answer with an ETag or Last-Modified, for conditional polls of `url`."""
        keep = self.policy.conditional and 200 <= response.status < 300 and _validated(response)
        self._cached = (url, response) if keep else None

    def _follow(self, state: PollState, response: Response) -> None:
        """A 202 with Operation-Location or Location sends the poll there (as a GET): with
        `followAsync: true` always; by default when it is the first answer of a GET or HEAD
        poll (or the poll already follows one), since a polled POST is Laminar's way of
        re-sending it (its condition reads the POST's answers); never with `false`."""
        mode = self._call.spec.follow_async
        if response.status != 202 or mode is False:
            return
        implicit = state.attempt == 1 and self._base.method in ("GET", "HEAD")
        if mode is None and state.follow_url is None and not implicit:
            return
        headers = response.headers
        location = next(
            (headers[h] for h in defaults.FOLLOW_LOCATION_HEADERS if headers.get(h)), None
        )
        if location is None:
            return
        url = urljoin(self._call.request.url, location.strip())
        if urlsplit(url).scheme in ("http", "https") and url != state.follow_url:
            state.follow_url = url
            self._call.ctx.log.info("poll.follow", where=self._call.spec.where, url=url)

    async def aclose(self) -> None:
        for check in self._checks:
            if check is not None:
                await check.js.aclose()

    async def __aenter__(self) -> Poller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def give_up(
    ctx: RunContext, spec: RequestSpec, reason: str, last: dict[str, Any]
) -> dict[str, Any]:
    """Send `spec`'s onGiveUp request once (templates filled from the config, `<<last.…>>`
    from `last`: the poll's last `response` body and `status`); its outcome, masked. It never
    raises for a failed send: the poll's own end is what the run reports."""
    target = spec.on_give_up
    assert target is not None
    outcome: dict[str, Any] = {"where": target.where, "reason": reason}
    try:
        notes: list[str] = []
        request = render_request(target, ctx.config, {"last": last}, warnings=notes)
        for note in notes:
            ctx.log.warning("request.path_param_unused", note=note)
    except LamrunnerError as exc:
        outcome.update(sent=False, status=None, error=exc.message)
        ctx.log.warning("poll.give_up_failed", where=target.where, error=exc.message)
        return ctx.secrets.mask_data(outcome)  # type: ignore[no-any-return]
    register(ctx.secrets, request)
    outcome.update(method=request.method, url=request.url, sent=True)
    timeout = min(request.timeout, defaults.GIVE_UP_TIMEOUT)
    try:
        if target.auth is not None and target.auth.type == OAUTH2:
            client = render_auth(target.auth, ctx.config).oauth
            assert client is not None
            token = await ctx.tokens.token(
                client,
                lambda c: fetch_token(
                    ctx.transport, c, timeout, ctx.clock.now, ctx.secrets, ctx.log
                ),
                ctx.clock.now,
            )
            request = _with_token(request, token)
        response = await ctx.transport.send(request, timeout)
    except AuthenticationError as exc:
        outcome.update(status=None, error=exc.message)
    except TransportError as exc:
        outcome.update(status=None, error=exc.message)
    else:
        outcome["status"] = response.status
        if response.status >= 400:
            outcome["error"] = f"answered {response.status}: {excerpt(response.text)}"
    log = ctx.log.warning if "error" in outcome else ctx.log.info
    log("poll.give_up", where=target.where, reason=reason, status=outcome["status"])
    return ctx.secrets.mask_data(outcome)  # type: ignore[no-any-return]


def _has_action(spec: RequestSpec, response: Response) -> bool:
    """A 2xx/3xx answer whose body has an object where `actionFrom` points: the poll is done
    (seed 001), whatever its condition says. A body that is not JSON has none."""
    if spec.action_from is None or response.status >= 400 or not response.is_json:
        return False
    return isinstance(spec.action_from.first(response.value, None), dict)


def _rejects(spec: RequestSpec, response: Response) -> bool:
    """An error answer (>= 400) to a poll with `actionFrom`: seed 001 runs the poll's onError
    at one, rather than poll on (a 429/503 with Retry-After is still waited out)."""
    return spec.action_from is not None and response.status >= 400


def _parses(response: Response) -> bool:
    try:
        response.value  # noqa: B018
    except TransportError:
        return False
    return True


def _kept(response: Response) -> Any:
    """The body a poll with onGiveUp keeps in its state: small enough, and parsed."""
    if len(response.text) > defaults.GIVE_UP_RESPONSE_BYTES or not _parses(response):
        return None
    return response.value


def open_poller(ctx: RunContext, element: Element) -> Coroutine[Any, Any, Poller]:
    """A `Poller` for `element` (which must have a `loopUntil`) in the run `ctx`."""
    if element.spec.loop is None:
        raise ValueError(f"{element.spec.where}: not a poll (no loopUntil)")
    return Poller.open(_Call(ctx, element), element.spec.loop)


_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _validated(response: Response) -> bool:
    """The answer has a validator (ETag, Last-Modified) a conditional poll can send back."""
    return "etag" in response.headers or "last-modified" in response.headers


_VALIDATORS = frozenset({"etag", "last-modified"})


def _refreshed(stored: Response, not_modified: Response) -> Response:
    """The stored answer with the 304's headers over its own (as an HTTP cache updates a
    stored response), its body and its parsed value reused: nothing is parsed again."""
    fresh = Response(
        stored.status,
        {**stored.headers, **not_modified.headers},
        stored.text,
        stored.is_json,
        not_modified.elapsed,
    )
    fresh._value = stored._value
    return fresh


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@dataclass
class _Check:
    """A condition as the poll loop holds it: its QuickJS form, and a Python one if it has one."""

    name: str  # condition | failWhen
    js: Condition
    fast: Callable[[dict[str, Any]], Any] | None


_PATH_CHECKS = frozenset({"condition", "failWhen", "pendingWhen"})


class _PathScript:
    """A JSONPath condition in the place of a QuickJS one: it reads the body from the ctx
    JSON (the poll loop uses its `fast` form, on the body Python already parsed)."""

    def __init__(self, condition: PathCondition) -> None:
        self.condition = condition

    async def evaluate(self, ctx_json: str) -> Any:
        return self.condition.holds(json.loads(ctx_json).get("response"))

    async def evaluate_value(self, ctx_json: str, value: bool = True) -> Any:
        return await self.evaluate(ctx_json)

    async def aclose(self) -> None:
        return None


def _path_check(name: str, source: str, where: str) -> _Check:
    """A JSONPath condition (`$.status == 'done'`), compiled (it was checked at load time),
    evaluated in Python on the response body."""
    condition = compile_path_condition(source, where)
    return _Check(name, _PathScript(condition), lambda ctx: condition.holds(ctx["response"]))


# condition, failWhen, pendingWhen, progress, nextDelay
_Checks = tuple[_Check, _Check | None, _Check | None, _Check | None, _Check | None]


class _Seen:
    """One attempt's answer as its checks see it; `ctx()` is the Python checks' `ctx`, made
    once for all of them (when one needs it)."""

    __slots__ = ("_ctx", "not_modified", "now", "response", "state")

    def __init__(self, response: Response, state: PollState, now: float, not_modified: bool):
        self.response, self.state, self.now, self.not_modified = response, state, now, not_modified
        self._ctx: dict[str, Any] | None = None

    def ctx(self) -> dict[str, Any]:
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = _py_ctx(self.response, self.state, self.now, self.not_modified)
        return ctx


def _py_ctx(response: Response, state: PollState, now: float, not_modified: bool) -> dict[str, Any]:
    """The `ctx` a Python-evaluated check reads (`_ctx_json` is the same for QuickJS)."""
    return {
        "response": response.value,
        "status": response.status,
        "headers": response.headers,
        "attempt": state.attempt,
        "elapsedMs": _elapsed_ms(state, now),
        "notModified": not_modified,
    }


def _elapsed_ms(state: PollState, now: float) -> int:
    return max(0, round((now - state.started_at) * 1000))


def _ctx_json(response: Response, state: PollState, now: float, not_modified: bool = False) -> str:
    """The condition's `ctx` as JSON text, reusing the body text instead of re-encoding it."""
    elapsed_ms = _elapsed_ms(state, now)
    return (
        '{"response":'
        + response.json_text
        + ',"status":'
        + str(response.status)
        + ',"headers":'
        + json.dumps(response.headers)
        + ',"attempt":'
        + str(state.attempt)
        + ',"elapsedMs":'
        + str(elapsed_ms)
        + (',"notModified":true}' if not_modified else ',"notModified":false}')
    )


_QUIET_SECONDS = 5.0
_MEMO_CHARS = 4096  # bodies up to this long have their excerpt kept for the next attempt


def _result(
    response: Response, attempts: int, elapsed: float, throttled: float = 0.0
) -> CallResult:
    return CallResult(
        value=response.value,
        status=response.status,
        headers=response.headers,
        attempts=attempts,
        duration_ms=max(0, round(elapsed * 1000)),
        throttled_ms=max(0, round(throttled * 1000)),
    )


def _status_error(request: RenderedRequest, response: Response, attempts: int) -> HttpStatusError:
    after = f" after {attempts} attempts" if attempts > 1 else ""
    return HttpStatusError(
        f"{request.method} {request.url} answered {response.status}{after}: "
        f"{failure_excerpt(response)} (set failOnHttpError: false to record it and go on)",
        status=response.status,
        attempts=attempts,
    )


def _condition_error(exc: ScriptError, name: str, spec: RequestSpec) -> ConditionError:
    limit = {"timeout": " (limits.conditionTimeout)", "memory": " (limits.conditionMemory)"}
    return ConditionError(f"{spec.where}.loopUntil.{name}: {exc.message}{limit.get(exc.kind, '')}")
