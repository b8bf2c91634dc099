"""The exact request to send: what rendering produces and the transport consumes.

It lives in the HTTP layer so that the transport knows nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderedRequest:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout: float
    where: str

    @property
    def header_values(self) -> tuple[str, ...]:
        return tuple(v for _, v in self.headers)
