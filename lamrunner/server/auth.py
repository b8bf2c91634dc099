"""Who may call the server: one API key, Laminar's two ways of giving it, loopback otherwise.

The key is taken from the `X-API-KEY` header or the `api_key` query parameter (as Laminar
does), or from the runs page's cookie, and compared with `hmac.compare_digest` so the time an
answer takes says nothing about how much of a guess was right. A wrong key and a missing one
get the same 401. Without a key the server only listens on loopback: anyone who can reach it
could run its workflows with its config's secrets.

The runs page is opened in a browser as `/?api_key=KEY`: the answer sets the key as a cookie
(HttpOnly, so the page's scripts never see it; SameSite=Strict, so no other site's form can use
it) and redirects to `/`, so the key does not stay in the address bar or the history.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from lamrunner.errors import DefinitionError

HEADER = "X-API-KEY"
QUERY = "api_key"
COOKIE = "lamrunner_api_key"
LOOPBACK_NAMES = ("localhost",)
UNAUTHENTICATED = ("/health",)  # a load balancer's probe needs no key
UNAUTHORIZED_MESSAGE = (
    "missing or wrong API key: send it in the X-API-KEY header or the api_key query parameter"
)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: the addresses only this machine can reach."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key(env_name: str | None, env: Mapping[str, str]) -> str | None:
    """The key --api-key-env names (None without the option); unset or empty is an error."""
    if env_name is None:
        return None
    value = env.get(env_name, "")
    if not value.strip():
        raise DefinitionError(
            f"--api-key-env {env_name}: the environment variable {env_name} is "
            f"{'empty' if env_name in env else 'not set'}; export the API key in it"
        )
    return value


def check_bind(host: str, key: str | None) -> None:
    """Refuse to listen beyond loopback without a key."""
    if key is None and not is_loopback(host):
        raise DefinitionError(
            f"--host {host}: refusing to listen beyond loopback without an API key; "
            "give --api-key-env NAME (an environment variable holding the key), or "
            "listen on 127.0.0.1"
        )


@dataclass(frozen=True)
class ApiKey:
    """The server's key (repr hides it: it must never reach a log)."""

    value: str

    def __repr__(self) -> str:
        return "ApiKey(***)"

    def matches(self, given: str | None) -> bool:
        if given is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.value.encode())


def given_key(
    headers: Mapping[str, str], query: Mapping[str, str], cookies: Mapping[str, str]
) -> str | None:
    """The key a request carries: header first, then the query, then the page's cookie."""
    for source, name in ((headers, HEADER), (query, QUERY), (cookies, COOKIE)):
        value = source.get(name)
        if value is not None:
            return value
    return None
