"""OAuth2 client-credentials tokens: fetched once, shared, kept until shortly before expiry.

A run has one `TokenCache` (in its RunContext; never a module global, so two runs never share
a token or learn each other's). Tokens are keyed by (tokenUrl, clientId, scope, audience): every
request of the run with the same client reuses one token — the requests of a batch, the
attempts of a poll, the pages of a paginated request. Concurrent requests that find no fresh
token share one fetch. A token is fetched again `min(30 s, 10% of its lifetime)` before its
`expires_in` runs out (by the run's clock, so tests use FakeClock), and once after a 401
(`forget`, then `token`). Every token fetched is added to the run's masking set.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from lamrunner import defaults
from lamrunner.errors import AuthenticationError, TransportError
from lamrunner.http.request import RenderedRequest
from lamrunner.http.transport import Transport, excerpt
from lamrunner.logs.masking import Secrets
from lamrunner.runner.rendering import FORM, OAuthClient

Key = tuple[str, str, str | None, str | None]


@dataclass(frozen=True)
class Token:
    value: str
    refresh_at: float  # epoch seconds (run clock): fetch a new one from then on

    def __repr__(self) -> str:
        return f"Token(refresh_at={self.refresh_at!r})"


@dataclass
class TokenCache:
    """One run's tokens, and the fetches in flight (so N requests make one fetch)."""

    _tokens: dict[Key, Token] = field(default_factory=dict)
    _fetching: dict[Key, asyncio.Future[Token]] = field(default_factory=dict)
    fetches: int = 0  # how many token requests this run has made (for the log and tests)

    async def token(
        self,
        client: OAuthClient,
        fetch: Callable[[OAuthClient], Awaitable[Token]],
        now: Callable[[], float],
    ) -> str:
        """A fresh token for `client`: the cached one, or the one a fetch in flight gets, or
        the one a new fetch gets (its error, AuthenticationError or TransportError, raised
        to every request that waited for it)."""
        key = client.key
        cached = self._tokens.get(key)
        if cached is not None and now() < cached.refresh_at:
            return cached.value
        pending = self._fetching.get(key)
        if pending is None:
            self.fetches += 1
            pending = asyncio.ensure_future(fetch(client))
            self._fetching[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        got = await asyncio.shield(pending)  # one waiter cancelled: the others still get it
        return got.value

    def forget(self, client: OAuthClient, value: str) -> None:
        """The server refused `value` (a 401): the next `token` fetches a new one, unless
        another request already replaced it."""
        cached = self._tokens.get(client.key)
        if cached is not None and cached.value == value:
            del self._tokens[client.key]

    def _settled(self, key: Key, done: asyncio.Future[Token]) -> None:
        if self._fetching.get(key) is done:
            del self._fetching[key]
        if done.cancelled():
            return
        if done.exception() is None:  # marks an error retrieved, though every waiter left
            self._tokens[key] = done.result()


async def fetch_token(
    transport: Transport,
    client: OAuthClient,
    timeout: float,
    now: Callable[[], float],
    secrets: Secrets,
    log: Any,
) -> Token:
    """POST the client-credentials grant to `tokenUrl` (RFC 6749 §4.4) and read the answer.

    A token endpoint that cannot be reached raises TransportError (a request's `retry`
    retries it like any failed send); one that refuses, or answers without an
    `access_token`, raises AuthenticationError. Neither names the secret or a token."""
    secrets.add(client.client_secret)
    request = _token_request(client, min(timeout, defaults.OAUTH_TOKEN_TIMEOUT))
    secrets.add_headers(request.headers)
    started = now()
    at = f"{client.where}: the oauth2 token request to {client.token_url}"
    try:
        response = await transport.send(request, request.timeout)
        body = response.value
    except TransportError as exc:
        raise exc.replaced(message=f"{at} failed: {exc.message}") from None
    if response.status >= 400:
        raise AuthenticationError(
            f"{at} was refused: it answered {response.status}: {excerpt(response.text)} "
            "(check clientId, clientSecret and scope)",
            status=response.status,
        )
    value = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise AuthenticationError(
            f"{at} answered {response.status} without an access_token "
            f"(body starts: {excerpt(response.text, 120)})",
            status=response.status,
        )
    secrets.add(value)
    lifetime = _lifetime(body.get("expires_in"))
    early = min(defaults.OAUTH_REFRESH_EARLY, defaults.OAUTH_REFRESH_SHARE * lifetime)
    log.info(
        "auth.token",
        where=client.where,
        url=client.token_url,
        expires_in=None if math.isinf(lifetime) else lifetime,
    )
    return Token(value, started + lifetime - early)


def _token_request(client: OAuthClient, timeout: float) -> RenderedRequest:
    form = [("grant_type", "client_credentials")]
    form += [(k, v) for k, v in (("scope", client.scope), ("audience", client.audience)) if v]
    headers = [("Content-Type", FORM), ("Accept", "application/json")]
    if client.client_auth == "basic":  # RFC 6749 §2.3.1: each part form-encoded first
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        headers.append(("Authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
    else:
        form += [("client_id", client.client_id), ("client_secret", client.client_secret)]
    return RenderedRequest(
        "POST",
        client.token_url,
        tuple(headers),
        urlencode(form).encode("ascii"),
        timeout,
        f"{client.where}.tokenUrl",
    )


def _lifetime(expires_in: Any) -> float:
    """Seconds the token lives: `expires_in` (a number, or a numeric string as some servers
    send); without one, until a 401 says otherwise."""
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in)
        except ValueError:
            return math.inf
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return math.inf
    return float(expires_in) if math.isfinite(expires_in) and expires_in > 0 else math.inf
