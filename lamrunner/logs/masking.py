"""Secrets are masked by value, wherever the value shows up.

Masking by key alone misses the token a server echoes back or the API key that ends up in a
URL; so every secret *value* is registered once (config values under secret-looking names,
values of credential headers) and the log chain and error messages replace each occurrence,
including its URL-encoded form, with `***`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words and numbers everywhere
SECRET_NAME = re.compile(
    r"key|token|secret|passw|pwd|credential|auth(?!ors?\b)|cookie|session|signature|private",
    re.IGNORECASE,
)
_SCHEME = re.compile(r"^(bearer|basic|token|digest|apikey)\s+", re.IGNORECASE)


class Secrets:
    """A growing set of secret values with one compiled pattern to mask them all."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: Any) -> None:
        if not isinstance(value, str):
            value = (
                str(value) if isinstance(value, int | float) and not isinstance(value, bool) else ""
            )
        candidates = {value.strip()}
        bare = _SCHEME.sub("", value.strip())
        candidates.add(bare)
        candidates |= {quote(c, safe="") for c in list(candidates)}
        candidates |= {
            _json_escaped(c, ascii_only) for c in list(candidates) for ascii_only in (True, False)
        }
        candidates |= {c.replace("/", "\\/") for c in list(candidates)}  # PHP-style JSON
        new = {c for c in candidates if len(c) >= MIN_SECRET_LENGTH} - self._values
        if new:
            with self._lock:
                self._values |= new
                alternatives = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, alternatives)))

    def add_config(self, config: Mapping[str, Any], secret: bool = False) -> None:
        """Register every value stored under a secret-looking key, at any depth."""
        for key, value in config.items():
            hidden = secret or bool(SECRET_NAME.search(str(key)))
            if isinstance(value, Mapping):
                self.add_config(value, hidden)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, Mapping):
                        self.add_config(item, hidden)
                    elif hidden:
                        self.add(item)
            elif hidden and value is not None:
                self.add(value)

    def add_headers(self, headers: Iterable[tuple[str, str]]) -> None:
        """Register values of credential headers (Authorization, Cookie, X-API-Key, …)."""
        for name, value in headers:
            if SECRET_NAME.search(name):
                self.add(value)

    def mask(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None and text else text

    def mask_data(self, value: Any) -> Any:
        """`value` with every string inside it masked (dict keys included)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, Mapping):
            return {self.mask_data(k): self.mask_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_data(v) for v in value]
        return value

    def __contains__(self, value: str) -> bool:
        return value in self._values


def _json_escaped(text: str, ascii_only: bool) -> str:
    """How `text` reads inside a JSON string (a server echoing it in a JSON error body)."""
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


SECRETS = Secrets()
"""The process-wide registry the log chain reads; runs add to it, nothing removes from it."""


def mask_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the one place log lines are masked."""
    return SECRETS.mask_data(event_dict)  # type: ignore[no-any-return]
