"""The exact request to send: what rendering produces and the transport consumes.

It lives in the HTTP layer so that the transport knows nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RenderedRequest:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout: float
    where: str
    # credential values rendered into it (an `authentication`'s password, key, client
    # secret): the run masks each one wherever it shows up, a key in the URL included
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def header_values(self) -> tuple[str, ...]:
        return tuple(v for _, v in self.headers)
