"""The callbacks outbox: each job end that asked for a `callback_url`, until it is delivered.

    callbacks  one row per job end to deliver: the URL, the exact body (the final job
               document, masked), whether the job's workflow allows link-local addresses,
               the attempts made, when the next is due, and how it ended (pending,
               delivered, gave_up) with the last error

It lives in the run store's SQLite file (its own table, its own connection), so a server that
is killed and started again goes on delivering what it had not: the row is written when the job
ends, before the first attempt, and every attempt's outcome is committed before the next is
scheduled. A job that ends again (resumed after a failure) replaces its row: the receiver is
told of the new end.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from lamrunner.errors import DefinitionError
from lamrunner.store.sqlite import connect

PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "gave_up"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS callbacks (
    job_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    allow_link_local INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    due_at REAL NOT NULL,
    first_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (state, due_at)
"""


@dataclass(frozen=True)
class Delivery:
    """One callback to make (or made): `attempts` made so far, the next one due at `due_at`."""

    job_id: str
    url: str
    body: str
    allow_link_local: bool
    state: str
    attempts: int
    due_at: float
    first_at: float
    last_error: str | None


class CallbackOutbox:
    """The outbox table of a run store file. Writes happen on the event loop's thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = connect(self.path)  # as the run store: bodies carry job results
            self._db.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise DefinitionError(
                f"run store {self.path}: cannot open its outbox ({exc})"
            ) from None

    def close(self) -> None:
        self._db.close()

    def add(self, job_id: str, url: str, body: str, *, allow_link_local: bool, now: float) -> None:
        """A job ended: deliver `body` to `url`, first attempt due now."""
        self._db.execute(
            "INSERT OR REPLACE INTO callbacks (job_id, url, body, allow_link_local, state,"
            " attempts, due_at, first_at, updated_at, last_error)"
            " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, NULL)",
            (job_id, url, body, int(allow_link_local), PENDING, now, now, now),
        )

    def due(self, now: float, limit: int = 100) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, the longest-waiting first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM callbacks WHERE state = ? AND due_at <= ?"
            " ORDER BY due_at LIMIT ?",
            (PENDING, now, limit),
        ).fetchall()
        return [_delivery(row) for row in rows]

    def next_due(self) -> float | None:
        """When the earliest pending delivery is due (None: nothing to deliver)."""
        row = self._db.execute(
            "SELECT min(due_at) FROM callbacks WHERE state = ?", (PENDING,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def get(self, job_id: str) -> Delivery | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM callbacks WHERE job_id = ?", (job_id,)
        ).fetchone()
        return None if row is None else _delivery(row)

    def attempted(
        self, job_id: str, *, state: str, attempts: int, due_at: float, error: str | None
    ) -> None:
        """Record one attempt's outcome: delivered, gave up, or still pending until `due_at`."""
        self._db.execute(
            "UPDATE callbacks SET state = ?, attempts = ?, due_at = ?, updated_at = ?,"
            " last_error = ? WHERE job_id = ?",
            (state, attempts, due_at, time.time(), error, job_id),
        )


_COLUMNS = "job_id, url, body, allow_link_local, state, attempts, due_at, first_at, last_error"


def _delivery(row: tuple[object, ...]) -> Delivery:
    job_id, url, body, link_local, state, attempts, due_at, first_at, error = row
    return Delivery(
        str(job_id),
        str(url),
        str(body),
        bool(link_local),
        str(state),
        int(attempts),  # type: ignore[call-overload]
        float(due_at),  # type: ignore[arg-type]
        float(first_at),  # type: ignore[arg-type]
        None if error is None else str(error),
    )
