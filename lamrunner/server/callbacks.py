"""Callbacks: POST the final job document to the job's `callback_url`, durably, signed.

A job that ends puts one row in the outbox (`lamrunner.store.callbacks`); the sender delivers
the due rows and commits each attempt's outcome, so a restarted server goes on where it was.
2xx is delivered; 408, 429, 5xx and no answer are retried on `CallbackPolicy`'s schedule (1 s,
2 s, 4 s … about an hour in all); any other 4xx, or an address the network policy refuses, is
given up at once (the receiver said no, or never can be reached).

The signature lets a receiver check the body came from this server and is recent:
`X-Lamrunner-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, f"{t}.{body}")>`, made
afresh for every attempt. The request goes through lamrunner's HTTP layer with the same
link-local policy as the job's workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lamrunner import __version__
from lamrunner.decide.schedules import base_delay, server_delay
from lamrunner.definition.policies import Backoff
from lamrunner.errors import TransportError
from lamrunner.http.request import RenderedRequest
from lamrunner.http.transport import AiohttpTransport, Response, Transport
from lamrunner.logs.chain import get_logger
from lamrunner.runner.clock import Clock, SystemClock
from lamrunner.store.callbacks import DELIVERED, GAVE_UP, PENDING, CallbackOutbox, Delivery

SIGNATURE_HEADER = "X-Lamrunner-Signature"
DELIVERY_HEADER = "X-Lamrunner-Job-Id"
ANSWER_BYTES = 1 << 20  # of a receiver's answer: only its status is used
MAX_CONCURRENT = 16  # deliveries in flight at once: a burst of job ends must not flood anyone


@dataclass(frozen=True)
class CallbackPolicy:
    """How often a callback is tried: the first attempt at once, then the backoff's delays
    (1, 2, 4 … capped at 15 min: 14 attempts span about an hour)."""

    max_attempts: int = 14
    backoff: Backoff = field(
        default_factory=lambda: Backoff("exponential", 1.0, 900.0, 2.0, "none")
    )
    timeout: float = 10.0  # seconds for one attempt, the answer's body included


def delay_before(policy: CallbackPolicy, attempt: int) -> float | None:
    """Seconds before attempt `attempt` (1-based; the first is at once), None past the last."""
    if attempt < 1 or attempt > policy.max_attempts:
        return None
    return base_delay(policy.backoff, attempt)


def outcome(status: int | None) -> str:
    """What an attempt's answer means: delivered, pending (try again) or gave_up.
    `status` None: no answer (timeout, connection refused)."""
    if status is not None and 200 <= status < 300:
        return DELIVERED
    if status is None or status in (408, 429) or status >= 500:
        return PENDING
    return GAVE_UP


def signature(key: str, timestamp: int, body: str) -> str:
    """The header's value: t=<timestamp>,v1=<hex HMAC-SHA256(key, f"{t}.{body}")>."""
    mac = hmac.new(key.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(key: str, header: str, body: str) -> bool:
    """What a receiver does (and the tests): recompute the HMAC, compare in constant time."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        expected = signature(key, int(parts.get("t", "")), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, header)


def shown_url(url: str) -> str:
    """A callback URL for a log line: no query or credentials (they may carry a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


TransportFactory = Callable[[bool], Any]  # allow_link_local -> an async-context Transport


class CallbackSender:
    """Delivers the outbox's due rows until closed; `add` wakes it for a new one."""

    def __init__(
        self,
        outbox: CallbackOutbox,
        *,
        key: str | None,
        policy: CallbackPolicy | None = None,
        clock: Clock | None = None,
        transports: TransportFactory | None = None,
    ) -> None:
        self.outbox = outbox
        self.key = key
        self.policy = policy or CallbackPolicy()
        self.clock = clock or SystemClock()
        self._factory = transports or _transport
        self._transports: dict[bool, Transport] = {}
        self._stack = contextlib.AsyncExitStack()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        self._log = get_logger(component="callbacks")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lamrunner-callbacks")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stack.aclose()
        self._transports.clear()

    def add(self, job_id: str, url: str, body: str, *, allow_link_local: bool) -> None:
        """A job ended with a callback_url: queue its document (durably) and wake the sender."""
        if self.key is None and not self._warned:
            self._warned = True
            self._log.warning(
                "callback.unsigned",
                hint="no --signing-key-env and no --api-key-env: callbacks carry no signature",
            )
        self.outbox.add(job_id, url, body, allow_link_local=allow_link_local, now=self.clock.now())
        self._wake.set()

    async def _run(self) -> None:
        limit = asyncio.Semaphore(MAX_CONCURRENT)
        pending: set[asyncio.Task[None]] = set()
        while True:
            self._wake.clear()
            for delivery in self.outbox.due(self.clock.now(), limit=MAX_CONCURRENT * 4):
                if any(t.get_name() == delivery.job_id for t in pending):
                    continue  # its attempt is still in flight
                task = asyncio.create_task(self._guarded(limit, delivery), name=delivery.job_id)
                pending.add(task)
                task.add_done_callback(pending.discard)
            await self._idle(pending)

    async def _idle(self, pending: set[asyncio.Task[None]]) -> None:
        """Until the next row is due, a new row is added, or an attempt in flight ends."""
        next_due = self.outbox.next_due()
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if next_due is not None and not pending:
            waits.append(asyncio.ensure_future(self.clock.sleep(next_due - self.clock.now())))
        waits.extend(asyncio.ensure_future(asyncio.shield(t)) for t in pending)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _guarded(self, limit: asyncio.Semaphore, delivery: Delivery) -> None:
        async with limit:
            try:
                await self._attempt(delivery)
            except Exception as exc:  # noqa: BLE001 - a bug must not stop every other delivery
                self._log.error("callback.internal_error", job_id=delivery.job_id, error=repr(exc))
                self._record(delivery, GAVE_UP, f"internal error ({type(exc).__name__})")

    async def _attempt(self, delivery: Delivery) -> None:
        transport = await self._transport(delivery.allow_link_local)
        status, error, asked = None, None, None
        try:
            response = await transport.send(self._request(delivery), self.policy.timeout)
            status = response.status
            asked = _asked_delay(response, self.clock.now())
        except TransportError as exc:
            error = exc.message
            if exc.kind == "blocked":
                self._record(delivery, GAVE_UP, error)
                return
        state = outcome(status)
        if error is None and state != DELIVERED:
            error = f"the receiver answered {status}"
        self._record(delivery, state, error, asked)

    def _record(
        self, delivery: Delivery, state: str, error: str | None, asked: float | None = None
    ) -> None:
        attempts = delivery.attempts + 1
        delay = delay_before(self.policy, attempts + 1) if state == PENDING else 0.0
        if delay is None:
            state = GAVE_UP
            delay = 0.0
        elif asked is not None:  # Retry-After: as long as it asks, within the policy's cap
            delay = max(delay, min(asked, self.policy.backoff.max_delay))
        self.outbox.attempted(
            delivery.job_id,
            state=state,
            attempts=attempts,
            due_at=self.clock.now() + delay,
            error=None if state == DELIVERED else error,
        )
        event = {DELIVERED: "callback.delivered", GAVE_UP: "callback.gave_up"}
        log = self._log.info if state == DELIVERED else self._log.warning
        log(
            event.get(state, "callback.retry"),
            job_id=delivery.job_id,
            url=shown_url(delivery.url),
            attempt=attempts,
            error=None if state == DELIVERED else error,
            retry_in=delay if state == PENDING else None,
        )

    def _request(self, delivery: Delivery) -> RenderedRequest:
        headers = [
            ("Content-Type", "application/json"),
            ("User-Agent", f"lamrunner/{__version__}"),
            (DELIVERY_HEADER, delivery.job_id),
        ]
        if self.key is not None:
            stamp = int(self.clock.now())
            headers.append((SIGNATURE_HEADER, signature(self.key, stamp, delivery.body)))
        return RenderedRequest(
            "POST",
            delivery.url,
            tuple(headers),
            delivery.body.encode(),
            self.policy.timeout,
            f"callback of job {delivery.job_id}",
        )

    async def _transport(self, allow_link_local: bool) -> Transport:
        if allow_link_local not in self._transports:
            made = await self._stack.enter_async_context(self._factory(allow_link_local))
            self._transports[allow_link_local] = made
        return self._transports[allow_link_local]


def _transport(allow_link_local: bool) -> AiohttpTransport:
    """Only the status matters: a receiver's answer is read up to ANSWER_BYTES."""
    return AiohttpTransport(max_response_bytes=ANSWER_BYTES, allow_link_local=allow_link_local)


def _asked_delay(response: Response, now: float) -> float | None:
    if response.status not in (429, 503):
        return None
    return server_delay(response.headers, now)
