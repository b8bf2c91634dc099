"""Performing one request object: send, retry transient failures, poll until the condition holds.

Layering: `retry` wraps each send; `loopUntil` wraps the retried send, so a 503 inside a poll is
first retried by `retry` (when given) and only the final answer of that attempt is offered to the
condition. Decisions come from `polling`; this module only awaits I/O, JS and the clock, all
of them the run's (`RunContext`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from lamrunner.decide.polling import (
    Decision,
    Fail,
    Observation,
    PollState,
    Succeed,
    Wait,
    deadline_error,
    decide_poll,
    decide_retry,
)
from lamrunner.definition.directives import RequestSpec
from lamrunner.definition.policies import (
    HistoryWindow,
    PollPolicy,
    RetryPolicy,
    retry_after_seconds,
)
from lamrunner.errors import (
    ConditionError,
    HttpStatusError,
    LamrunnerError,
    PollingError,
    ScriptError,
    TransportError,
)
from lamrunner.http.request import RenderedRequest
from lamrunner.http.transport import Response, excerpt
from lamrunner.js.simplecond import Unsupported, compile_condition
from lamrunner.runner.context import RunContext
from lamrunner.runner.history import attempt_row, failure_excerpt
from lamrunner.units import format_duration


class Condition(Protocol):
    async def evaluate(self, ctx_json: str) -> bool: ...
    async def aclose(self) -> None: ...


@dataclass
class CallResult:
    """The outcome the GWO records for one request object."""

    value: Any
    status: int
    headers: dict[str, str]
    attempts: int
    duration_ms: int

    def http(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "headers": self.headers,
            "attempts": self.attempts,
            "durationMs": self.duration_ms,
        }


ProgressHook = Callable[[PollState], None]
HistoryHook = Callable[[dict[str, Any]], None]  # one row per poll attempt (see history)


@dataclass(frozen=True)
class Element:
    """One request object as `perform` takes it: what to send, and where its progress goes.

    `on_attempt` hears of every poll attempt that is followed by another (to checkpoint the
    loop); `on_history` gets a row for every attempt, the one that settles the poll too."""

    request: RenderedRequest
    spec: RequestSpec
    on_attempt: ProgressHook | None = None
    on_history: HistoryHook | None = None


async def perform(ctx: RunContext, element: Element, poll: PollState | None = None) -> CallResult:
    """Run one request object to its result (resuming `poll` if given), or raise the error
    that ends it."""
    call = _Call(ctx, element)
    if element.spec.loop is None:
        return await call.once()
    return await call.poll(element.spec.loop, poll)


class _Call:
    """One request object being performed, in its run. Its parts are plain attributes: they
    are read several times in every attempt."""

    __slots__ = ("ctx", "debug", "element", "on_history", "request", "spec")

    def __init__(self, ctx: RunContext, element: Element) -> None:
        self.ctx = ctx
        self.element = element
        self.request: RenderedRequest = element.request
        self.spec: RequestSpec = element.spec
        self.on_history: HistoryHook | None = element.on_history
        self.debug: bool = ctx.log.is_enabled_for(logging.DEBUG)  # else no per-send line made

    async def once(self) -> CallResult:
        clock = self.ctx.clock
        started = clock.now()
        response, error, sent = await self._send(self.spec.retry, deadline=None)
        if error is not None:
            after = f" (after {sent} attempts)" if sent > 1 else ""
            raise error.replaced(attempts=sent, message=error.message + after) from None
        assert response is not None
        if response.status >= 400 and self.spec.fail_on_http_error:
            raise _status_error(self.request, response, sent)
        return _result(response, sent, clock.now() - started)

    async def poll(self, policy: PollPolicy, state: PollState | None) -> CallResult:
        """The poll loop: one `Poller.attempt` after another, sleeping until each is due.

        With a budget (`ctx.budget_end`), a next attempt due after the budget's end is not
        waited for: `Suspended` says when it is due (the state was checkpointed after the
        attempt before it)."""
        clock, log = self.ctx.clock, self.ctx.log
        state = state or PollState.start(policy, clock.now())
        end = self.ctx.budget_end
        last_info = float("-inf")
        debug = self.debug
        poller = await Poller.open(self, policy)
        attempt, on_attempt = poller._attempt, self.element.on_attempt
        try:
            while True:
                now = clock.now()
                if state.next_due > now:
                    if end is not None and state.next_due > end:
                        raise Suspended(state.next_due)
                    await clock.sleep(state.next_due - now)
                    now = clock.now()
                decision, result = await attempt(state, now)
                if isinstance(decision, Succeed):
                    assert result is not None
                    return result
                if isinstance(decision, Fail):
                    raise decision.error
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
                    )
                if on_attempt is not None:
                    on_attempt(state)
        finally:
            await poller.aclose()

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
        checks: tuple[_Check, _Check | None],
        last: Response | None,
    ) -> tuple[Decision, str | None]:
        """The verdict on one attempt, and what went wrong in this attempt (for its row).

        `state.last_error` keeps the last problem seen in any attempt (the final error quotes
        it); the row wants only this attempt's. The failure excerpt parses the body, so it is
        made only when the poll fails, and the (pure) decision is taken again with it."""
        previous, state.last_error = state.last_error, None
        try:
            seen = await self._observe(response, error, state, *checks)
        except LamrunnerError as exc:  # a condition broke a limit: this attempt ends the poll
            state.last_error = previous
            return Fail(exc), exc.message
        problem = state.last_error
        state.last_error = problem or previous
        now, rand = self.ctx.clock.now(), self.ctx.rand()
        decision = decide_poll(policy, state, seen, now, rand)
        failed = isinstance(decision, Fail) and isinstance(decision.error, PollingError)
        if failed and last is not None:
            state.last_excerpt = failure_excerpt(last)
            decision = decide_poll(policy, state, seen, now, rand)
        return decision, problem

    async def _observe(
        self,
        response: Response | None,
        error: TransportError | None,
        state: PollState,
        condition: _Check,
        fail_when: _Check | None,
    ) -> Observation:
        where = self.spec.where
        if error is not None:
            state.last_error = error.message
            self.ctx.log.warning("poll.transport_error", where=where, error=error.message)
            return Observation(error=error)
        assert response is not None
        state.last_status = response.status
        state.last_excerpt = excerpt(response.text)
        now = self.ctx.clock.now()
        try:
            held = await self._evaluate(condition, response, state, now)
            failed = not held and fail_when is not None
            if failed:
                assert fail_when is not None
                failed = await self._evaluate(fail_when, response, state, now)
        except TransportError as exc:  # the body was not the JSON it claimed to be
            state.last_error = exc.message
            return Observation(status=response.status, excerpt=state.last_excerpt, error=exc)
        retry_after = retry_after_seconds(response.headers.get("retry-after"), now)
        return Observation(response.status, state.last_excerpt, held, failed, None, retry_after)

    async def _evaluate(
        self, check: _Check, response: Response, state: PollState, now: float
    ) -> bool:
        """The condition's verdict: in Python when it can say exactly, else in QuickJS."""
        name = check.name
        if check.fast is not None:
            try:
                return check.fast(
                    {
                        "response": response.value,
                        "status": response.status,
                        "headers": response.headers,
                        "attempt": state.attempt,
                        "elapsedMs": _elapsed_ms(state, now),
                    }
                )
            except Unsupported:
                pass
        try:
            return await check.js.evaluate(_ctx_json(response, state, now))
        except ScriptError as exc:
            if exc.kind == "badjson":  # Python's parse says what is wrong, and raises for it
                response.value  # noqa: B018
            if exc.kind == "exception":
                state.last_error = f"{name} threw {exc.message}"
                self.ctx.log.warning(
                    "poll.condition_threw", where=self.spec.where, error=state.last_error
                )
                return False
            raise _condition_error(exc, name, self.spec) from None

    async def _open(self, source: str | None, name: str) -> _Check:
        try:
            js = await self.ctx.js.open_condition(source or "", self.ctx.condition_limits)
        except ScriptError as exc:
            raise _condition_error(exc, name, self.spec) from None
        return _Check(name, js, compile_condition(source or ""))

    async def _send(
        self, retry: RetryPolicy | None, deadline: float | None, validate: bool = True
    ) -> tuple[Response | None, TransportError | None, int]:
        """Send with transient-failure retries; returns (response, error, requests sent).

        `validate` parses JSON bodies here; polls skip it, as the condition parses them anyway.
        """
        clock, request = self.ctx.clock, self.request
        tries = 0
        while True:
            tries += 1
            timeout = request.timeout
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - clock.now()))
            response, error = await self._send_once(timeout, validate)
            if retry is None:
                return response, error, tries
            status = response.status if response is not None else None
            hint = response.headers.get("retry-after") if response is not None else None
            delay = decide_retry(
                retry,
                tries,
                status,
                error,
                retry_after_seconds(hint, clock.now()),
                self.ctx.rand(),
            )
            if delay is None or (deadline is not None and clock.now() + delay > deadline):
                return response, error, tries
            self.ctx.log.info(
                "retry.wait",
                where=request.where,
                attempt=tries,
                of=retry.max_attempts,
                status=status,
                error=error.message if error else None,
                next_in=format_duration(delay),
            )
            await clock.sleep(delay)

    async def _send_once(
        self, timeout: float, validate: bool
    ) -> tuple[Response | None, TransportError | None]:
        request, log = self.request, self.ctx.log
        try:
            response = await self.ctx.transport.send(request, timeout)
            if validate:
                response.value  # noqa: B018 - invalid JSON is a transport failure of this attempt
        except TransportError as exc:
            log.debug(
                "http.error",
                where=request.where,
                method=request.method,
                url=request.url,
                error=exc.message,
            )
            return None, exc
        if self.debug:
            log.debug(
                "http.response",
                where=request.where,
                method=request.method,
                url=request.url,
                status=response.status,
                ms=round(response.elapsed * 1000),
            )
        return response, None


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

    __slots__ = ("_call", "_checks", "_last", "policy")

    def __init__(self, call: _Call, policy: PollPolicy, checks: tuple[_Check, _Check | None]):
        self._call = call
        self.policy = policy
        self._checks = checks
        self._last: Response | None = None  # the last response received, for a failure's row

    @classmethod
    async def open(cls, call: _Call, policy: PollPolicy) -> Poller:
        condition = await call._open(policy.condition, "condition")
        try:
            fail_when = await call._open(policy.fail_when, "failWhen") if policy.fail_when else None
        except BaseException:
            await condition.js.aclose()
            raise
        return cls(call, policy, (condition, fail_when))

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
        response, error, sent = await call._send(call.spec.retry, state.deadline, validate=False)
        state.attempt += 1
        state.requests += sent
        last = self._last = response or self._last
        decision, problem = await call._decide(policy, state, response, error, self._checks, last)
        if call.on_history is not None:
            call._history(state, now, response, problem, error, decision, last, policy.history)
        if isinstance(decision, Wait):
            state.next_due = decision.until
            return decision, None
        if isinstance(decision, Succeed):
            assert response is not None
            elapsed = call.ctx.clock.now() - state.started_at
            return decision, _result(response, state.requests, elapsed)
        return decision, None

    async def aclose(self) -> None:
        for check in self._checks:
            if check is not None:
                await check.js.aclose()

    async def __aenter__(self) -> Poller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def open_poller(ctx: RunContext, element: Element) -> Coroutine[Any, Any, Poller]:
    """A `Poller` for `element` (which must have a `loopUntil`) in the run `ctx`."""
    if element.spec.loop is None:
        raise ValueError(f"{element.spec.where}: not a poll (no loopUntil)")
    return Poller.open(_Call(ctx, element), element.spec.loop)


@dataclass
class _Check:
    """A condition as the poll loop holds it: its QuickJS form, and a Python one if it has one."""

    name: str  # condition | failWhen
    js: Condition
    fast: Callable[[dict[str, Any]], bool] | None


def _elapsed_ms(state: PollState, now: float) -> int:
    return max(0, round((now - state.started_at) * 1000))


def _ctx_json(response: Response, state: PollState, now: float) -> str:
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
        + "}"
    )


_QUIET_SECONDS = 5.0


def _result(response: Response, attempts: int, elapsed: float) -> CallResult:
    return CallResult(
        value=response.value,
        status=response.status,
        headers=response.headers,
        attempts=attempts,
        duration_ms=max(0, round(elapsed * 1000)),
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
