"""Performing one request object: send, retry transient failures, poll until the condition holds.

Layering: `retry` wraps each send; `loopUntil` wraps the retried send, so a 503 inside a poll is
first retried by `retry` (when given) and only the final answer of that attempt is offered to the
condition. Decisions come from `polling`; this module only awaits I/O, JS and the clock.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lamrunner.runner.clock import Clock
from lamrunner.definition.directives import RequestSpec
from lamrunner.errors import (
    ConditionError,
    HttpStatusError,
    LamrunnerError,
    PollingError,
    ScriptError,
    TransportError,
)
from lamrunner.runner.history import attempt_row, failure_excerpt
from lamrunner.definition.policies import PollPolicy, RetryPolicy, retry_after_seconds
from lamrunner.decide.polling import (
    Decision,
    Fail,
    Observation,
    PollState,
    Succeed,
    decide_poll,
    decide_retry,
    deadline_error,
)
from lamrunner.runner.rendering import RenderedRequest
from lamrunner.js.simplecond import Unsupported, compile_condition
from lamrunner.http.transport import Response, Transport, excerpt
from lamrunner.units import format_duration


class Condition(Protocol):
    async def evaluate(self, ctx_json: str) -> bool: ...
    async def aclose(self) -> None: ...


class ConditionEngine(Protocol):
    async def open_condition(self, source: str, limits: Any) -> Condition: ...


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


@dataclass
class Caller:
    """Everything a request needs from the run: transport, JS, clock, limits, logging."""

    transport: Transport
    conditions: ConditionEngine
    clock: Clock
    condition_limits: Any
    log: Any
    rand: Callable[[], float] = field(default=random.random)

    async def perform(
        self,
        request: RenderedRequest,
        spec: RequestSpec,
        state: PollState | None = None,
        on_attempt: ProgressHook | None = None,
        on_history: HistoryHook | None = None,
    ) -> CallResult:
        """Run one request object to its result, or raise the error that ends it.

        `on_attempt` hears of every poll attempt that is followed by another (to checkpoint the
        loop); `on_history` gets a row for every attempt, the one that settles the poll too."""
        if spec.loop is None:
            return await self._once(request, spec)
        return await self._poll(request, spec, spec.loop, state, on_attempt, on_history)

    async def _once(self, request: RenderedRequest, spec: RequestSpec) -> CallResult:
        started = self.clock.now()
        response, error, sent = await self._send(request, spec.retry, deadline=None)
        if error is not None:
            error.attempts = sent
            if sent > 1:
                error.message += f" (after {sent} attempts)"
                error.args = (error.message,)
            raise error
        assert response is not None
        if response.status >= 400 and spec.fail_on_http_error:
            raise _status_error(request, response, sent)
        return _result(response, sent, self.clock.now() - started)

    async def _poll(
        self,
        request: RenderedRequest,
        spec: RequestSpec,
        policy: PollPolicy,
        state: PollState | None,
        on_attempt: ProgressHook | None,
        on_history: HistoryHook | None = None,
    ) -> CallResult:
        state = state or PollState.start(policy, self.clock.now())
        last_info = float("-inf")
        debug = self.log.is_enabled_for(logging.DEBUG)
        condition = await self._open(policy.condition, "condition", spec)
        fail_when = (
            await self._open(policy.fail_when, "failWhen", spec) if policy.fail_when else None
        )
        last: Response | None = None  # the last response received, for a failure's history row
        try:
            while True:
                now = self.clock.now()
                if state.next_due > now:
                    await self.clock.sleep(state.next_due - now)
                    now = self.clock.now()
                if state.deadline is not None and now >= state.deadline:
                    raise deadline_error(policy, state)
                response, error, sent = await self._send(
                    request, spec.retry, state.deadline, validate=False
                )
                state.attempt += 1
                state.requests += sent
                last = response or last
                decision, problem = await self._decide(
                    policy, state, response, error, (condition, fail_when), spec, last
                )
                if on_history is not None:
                    on_history(
                        attempt_row(
                            state, now, self.clock.now(), response, problem, error, decision, last
                        )
                    )
                if isinstance(decision, Succeed):
                    assert response is not None
                    return _result(response, state.requests, self.clock.now() - state.started_at)
                if isinstance(decision, Fail):
                    raise decision.error
                state.next_due = decision.until
                now = decision.until - decision.delay
                # Progress at info for polls worth watching; a fast poll logs at most every 5 s.
                loud = decision.delay >= 1.0 or now - last_info >= _QUIET_SECONDS
                if loud or debug:
                    last_info = now if loud else last_info
                    (self.log.info if loud else self.log.debug)(
                        "poll.attempt",
                        where=spec.where,
                        attempt=state.attempt,
                        of=policy.max_attempts,
                        status=state.last_status,
                        next_in=format_duration(decision.delay),
                    )
                if on_attempt is not None:
                    on_attempt(state)
        finally:
            for check in (condition, fail_when):
                if check is not None:
                    await check.js.aclose()

    async def _decide(
        self,
        policy: PollPolicy,
        state: PollState,
        response: Response | None,
        error: TransportError | None,
        checks: tuple[_Check, _Check | None],
        spec: RequestSpec,
        last: Response | None,
    ) -> tuple[Decision, str | None]:
        """The verdict on one attempt, and what went wrong in this attempt (for its row).

        `state.last_error` keeps the last problem seen in any attempt (the final error quotes
        it); the row wants only this attempt's. The failure excerpt parses the body, so it is
        made only when the poll fails, and the (pure) decision is taken again with it."""
        previous, state.last_error = state.last_error, None
        try:
            seen = await self._observe(response, error, state, *checks, spec)
        except LamrunnerError as exc:  # a condition broke a limit: this attempt ends the poll
            state.last_error = previous
            return Fail(exc), exc.message
        problem = state.last_error
        state.last_error = problem or previous
        now, rand = self.clock.now(), self.rand()
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
        spec: RequestSpec,
    ) -> Observation:
        if error is not None:
            state.last_error = error.message
            self.log.warning("poll.transport_error", where=spec.where, error=error.message)
            return Observation(error=error)
        assert response is not None
        state.last_status = response.status
        state.last_excerpt = excerpt(response.text)
        now = self.clock.now()
        try:
            held = await self._evaluate(condition, response, state, spec, now)
            failed = not held and fail_when is not None
            if failed:
                assert fail_when is not None
                failed = await self._evaluate(fail_when, response, state, spec, now)
        except TransportError as exc:  # the body was not the JSON it claimed to be
            state.last_error = exc.message
            return Observation(status=response.status, excerpt=state.last_excerpt, error=exc)
        retry_after = retry_after_seconds(response.headers.get("retry-after"), now)
        return Observation(response.status, state.last_excerpt, held, failed, None, retry_after)

    async def _evaluate(
        self, check: _Check, response: Response, state: PollState, spec: RequestSpec, now: float
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
                self.log.warning("poll.condition_threw", where=spec.where, error=state.last_error)
                return False
            raise _condition_error(exc, name, spec) from None

    async def _open(self, source: str | None, name: str, spec: RequestSpec) -> _Check:
        try:
            js = await self.conditions.open_condition(source or "", self.condition_limits)
        except ScriptError as exc:
            raise _condition_error(exc, name, spec) from None
        return _Check(name, js, compile_condition(source or ""))

    async def _send(
        self,
        request: RenderedRequest,
        retry: RetryPolicy | None,
        deadline: float | None,
        validate: bool = True,
    ) -> tuple[Response | None, TransportError | None, int]:
        """Send with transient-failure retries; returns (response, error, requests sent).

        `validate` parses JSON bodies here; polls skip it, as the condition parses them anyway.
        """
        tries = 0
        while True:
            tries += 1
            timeout = request.timeout
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - self.clock.now()))
            response, error = await self._send_once(request, timeout, validate)
            if retry is None:
                return response, error, tries
            status = response.status if response is not None else None
            hint = response.headers.get("retry-after") if response is not None else None
            delay = decide_retry(
                retry,
                tries,
                status,
                error,
                retry_after_seconds(hint, self.clock.now()),
                self.rand(),
            )
            if delay is None or (deadline is not None and self.clock.now() + delay > deadline):
                return response, error, tries
            self.log.info(
                "retry.wait",
                where=request.where,
                attempt=tries,
                of=retry.max_attempts,
                status=status,
                error=error.message if error else None,
                next_in=format_duration(delay),
            )
            await self.clock.sleep(delay)

    async def _send_once(
        self, request: RenderedRequest, timeout: float, validate: bool
    ) -> tuple[Response | None, TransportError | None]:
        try:
            response = await self.transport.send(request, timeout)
            if validate:
                response.value  # noqa: B018 - invalid JSON is a transport failure of this attempt
        except TransportError as exc:
            self.log.debug(
                "http.error",
                where=request.where,
                method=request.method,
                url=request.url,
                error=exc.message,
            )
            return None, exc
        self.log.debug(
            "http.response",
            where=request.where,
            method=request.method,
            url=request.url,
            status=response.status,
            ms=round(response.elapsed * 1000),
        )
        return response, None


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
