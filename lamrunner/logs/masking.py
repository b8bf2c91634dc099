"""Secrets are masked by value, wherever the value shows up.

Masking by key alone misses the token a server echoes back or the API key that ends up in a
URL; so every secret *value* is registered once (config values under secret-looking names,
values of credential headers) and the log chain and error messages replace each occurrence,
including its URL-encoded form, with `***`.

Secrets belong to a run: each run has its own `Secrets`, so a process that has run thousands of
workflows masks each line with the handful of values of the run it belongs to, and two runs
never learn each other's values. The log chain finds the run's registry in a contextvar
(`masked_with`), which asyncio tasks and lamrunner's handler threads inherit.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
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
    """One run's growing set of secret values, masked with one pattern of them all.

    The pattern is compiled on the first mask after an add, not by the add: a run registers its
    values in bursts (the config, then each step's headers), so adding stays proportional to the
    value's length and a burst costs one compile of the run's own few values."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None  # None: compile on the next mask
        self._lock = threading.Lock()

    @classmethod
    def of_config(cls, config: Mapping[str, Any]) -> Secrets:
        """A registry holding the config's secret values (see `add_config`)."""
        secrets = cls()
        secrets.add_config(config)
        return secrets

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
                self._pattern = None

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
        if not text or not self._values:
            return text
        return self._compiled().sub(MASK, text)

    def mask_data(self, value: Any) -> Any:
        """`value` with every string inside it masked (dict keys included)."""
        if not self._values:
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

    def __len__(self) -> int:
        """How many values (each secret with its encoded forms) are registered."""
        return len(self._values)

    def _compiled(self) -> re.Pattern[str]:
        pattern = self._pattern
        if pattern is None:
            with self._lock:  # longest first: a secret containing another is masked whole
                alternatives = sorted(self._values, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(map(re.escape, alternatives)))
        return pattern


def _json_escaped(text: str, ascii_only: bool) -> str:
    """How `text` reads inside a JSON string (a server echoing it in a JSON error body)."""
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


_CURRENT: contextvars.ContextVar[Secrets | None] = contextvars.ContextVar(
    "lamrunner_secrets", default=None
)


@contextlib.contextmanager
def masked_with(secrets: Secrets | None) -> Iterator[None]:
    """Inside the block, log lines are masked with `secrets` (a run's own registry)."""
    token = _CURRENT.set(secrets)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> Secrets | None:
    """The registry log lines are masked with here (the run's), or None outside any run."""
    return _CURRENT.get()


def mask_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the one place log lines are masked, with the secrets of the run
    the line belongs to (a line outside any run has none to mask)."""
    secrets = _CURRENT.get()
    return event_dict if secrets is None else secrets.mask_data(event_dict)
