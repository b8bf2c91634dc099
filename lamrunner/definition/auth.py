"""`authentication` on a request object: which credentials to send, and how.

Laminar's shape, `{type: basic | bearer | apikey | oauth2, ...}`, with Laminar's field names
(basic: username, password; bearer: token; apikey: apiKey; oauth2 client credentials:
tokenUrl, clientId, clientSecret). The fields are checked here, when the directive is parsed;
their values (usually `{{config.…}}` templates) are filled only when the request is rendered,
so the spec a step keeps holds no secret, and a resumed run fills them from its config again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lamrunner.definition.validation import check_keys, did_you_mean, expect_mapping, type_name
from lamrunner.errors import DefinitionError

BASIC, BEARER, APIKEY, OAUTH2 = "basic", "bearer", "apikey", "oauth2"
TYPES = (BASIC, BEARER, APIKEY, OAUTH2)
# per type: (allowed keys, required keys) besides `type`
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    BASIC: (("username", "password"), ("username", "password")),
    BEARER: (("token",), ("token",)),
    APIKEY: (("apiKey", "in", "name"), ("apiKey",)),
    OAUTH2: (
        ("tokenUrl", "clientId", "clientSecret", "scope", "audience", "clientAuth"),
        ("tokenUrl", "clientId", "clientSecret"),
    ),
}
APIKEY_IN = ("header", "query")
DEFAULT_APIKEY_HEADER = "X-API-Key"
DEFAULT_APIKEY_QUERY = "api_key"  # Laminar's own API takes its key so (docs.laminar.run)
CLIENT_AUTH = ("body", "basic")


@dataclass(frozen=True)
class AuthSpec:
    """One request's `authentication`, validated, its values still templates."""

    type: str
    fields: Mapping[str, Any]  # the type's fields as written (templates unfilled)
    where: str  # e.g. "lam.httpRequest.authentication"

    @property
    def location(self) -> str:
        """apikey: where the key goes, header or query."""
        return str(self.fields.get("in", "header"))

    @property
    def key_name(self) -> str:
        """apikey: the header or query parameter that carries the key."""
        default = DEFAULT_APIKEY_HEADER if self.location == "header" else DEFAULT_APIKEY_QUERY
        return str(self.fields.get("name", default))

    @property
    def client_auth(self) -> str:
        """oauth2: how the client authenticates to the token endpoint, body or basic."""
        return str(self.fields.get("clientAuth", "body"))

    def __repr__(self) -> str:  # the fields may hold literal credentials: never shown
        return f"AuthSpec(type={self.type!r}, where={self.where!r})"


def parse_authentication(data: Any, where: str) -> AuthSpec:
    """Check `authentication`: a known type, its keys (a typo gets a suggestion), the
    required ones present, literal values strings; `in` and `clientAuth` among their choices."""
    data = expect_mapping(data, where)
    if "type" not in data:
        raise DefinitionError(f"{where}: missing required key 'type' (one of {', '.join(TYPES)})")
    raw = data["type"]
    kind = raw.lower() if isinstance(raw, str) else raw
    if kind not in TYPES:
        raise DefinitionError(
            f"{where}.type: {raw!r} is not one of {', '.join(TYPES)}{did_you_mean(str(raw), TYPES)}"
        )
    allowed, required = _FIELDS[kind]
    fields = {k: v for k, v in data.items() if k != "type"}
    check_keys(fields, allowed, f"{where} (type {kind})", required=required)
    for key, value in fields.items():
        if not isinstance(value, str) or not value.strip():
            # the value itself is never quoted: it may be a credential
            raise DefinitionError(
                f"{where}.{key}: expected a non-empty string, got {type_name(value)}"
            )
    _choice(fields, "in", APIKEY_IN, where)
    _choice(fields, "clientAuth", CLIENT_AUTH, where)
    return AuthSpec(kind, fields, where)


def _choice(fields: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str) -> None:
    value = fields.get(key)
    if value is not None and value not in choices:
        raise DefinitionError(
            f"{where}.{key}: {value!r} is not one of {', '.join(choices)}"
            f"{did_you_mean(str(value), choices)}"
        )
