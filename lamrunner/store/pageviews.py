"""Read-only queries of the run store for the runs page of `lamrunner serve`.

The page reads what the store already keeps (runs, attempts, poll_counts and, once the server
has made it, jobs) through its own read-only connection, so a page left open in a browser never
takes a write lock from the runs it shows, and a bug here cannot change a run. A store without
a `jobs` table (one filled by `lamrunner run`) lists its top-level runs instead: their status is
the run's, as `lamrunner runs` lists it.

Paging is by a cursor (the last row's creation time and id), not an offset: newest first, and
a page stays right while new runs arrive above it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamrunner.errors import DefinitionError
from lamrunner.runner.state import RunState
from lamrunner.store.sqlite import attempt_row, listed_status, read_state

_Rows = list[dict[str, Any]]
_ERROR_TYPE = "json_extract(r.state, '$.error.type')"
# Without a jobs table, a job status filter selects runs by their stored status: a run that
# `lamrunner cancel` stopped is FAILED with a Cancelled error.
_RUN_STATUS_FILTER = {
    "processing": "r.status IN ('RUNNING', 'SUSPENDED')",
    "completed": "r.status = 'SUCCESS'",
    "failed": f"r.status = 'FAILED' AND coalesce({_ERROR_TYPE}, '') != 'Cancelled'",
    "canceled": f"r.status = 'FAILED' AND {_ERROR_TYPE} = 'Cancelled'",
}
_RUN_STATUSES = {"RUNNING": "processing", "SUSPENDED": "processing", "SUCCESS": "completed"}
_ATTEMPTS_SO_FAR = (
    "(SELECT coalesce(sum(c.attempts), 0) FROM poll_counts c WHERE c.run_id = r.run_id)"
)
_RUN = (
    "SELECT r.run_id, r.workflow, NULL, r.status, r.pid, r.created_at, r.updated_at,"
    f" {_ATTEMPTS_SO_FAR}, {_ERROR_TYPE}, r.state FROM runs r WHERE r.run_id = ?"
)
_RUN_WITH_JOB = (
    "SELECT r.run_id, coalesce(j.workflow, r.workflow), j.status, r.status, r.pid,"
    " coalesce(j.created_at, r.created_at), coalesce(j.updated_at, r.updated_at),"
    f" {_ATTEMPTS_SO_FAR}, {_ERROR_TYPE}, r.state FROM runs r LEFT JOIN jobs j ON j.job_id = r.run_id"
    " WHERE r.run_id = ?"
)


@dataclass(frozen=True)
class RunRow:
    """One line of the runs list. `job_status` is the jobs table's status (None for a run
    without a job row); `run_status` the run's own, as `lamrunner runs` lists it."""

    job_id: str
    workflow: str
    job_status: str | None
    run_status: str
    created_at: float
    updated_at: float
    attempts: int
    error_type: str | None = None

    @property
    def status(self) -> str:
        """The job's status; for a run without a job row, the run's in the job's terms
        (a RUNNING run whose process is gone is `interrupted`)."""
        if self.job_status is not None:
            return self.job_status
        if self.run_status == "FAILED":
            return "canceled" if self.error_type == "Cancelled" else "failed"
        return _RUN_STATUSES.get(self.run_status, self.run_status.lower())


@dataclass(frozen=True)
class RunDetail:
    """What a run's page shows, as stored (masking of the GWO is the caller's: attempts and
    errors are masked when they are made)."""

    row: RunRow
    state: RunState
    attempts: _Rows
    poll_counts: _Rows
    children: _Rows
    parent: dict[str, Any] | None


class PageViews:
    """A read-only connection to the run store at `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10
            )
            self._db.execute("SELECT 1 FROM runs LIMIT 1")
        except sqlite3.Error as exc:
            raise DefinitionError(f"run store {self.path}: cannot read it ({exc})") from None

    def close(self) -> None:
        self._db.close()

    def has_jobs(self) -> bool:
        """Whether the server's `jobs` table exists (looked up each time: it may appear)."""
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
        ).fetchone()
        return row is not None

    def runs(
        self,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: tuple[float, str] | None = None,
    ) -> tuple[list[RunRow], tuple[float, str] | None]:
        """Newest first: up to `limit` rows created before the cursor `before`, and the cursor
        of the next (older) page, or None when there is none. `status` filters on the job's
        status (or, without a jobs table, on the run's as stored: RUNNING, SUCCESS...)."""
        jobs = self.has_jobs()
        where: list[str] = []
        args: list[Any] = []
        if not jobs:
            where.append("r.parent_id IS NULL")
        if workflow:
            where.append("j.workflow = ?" if jobs else "r.workflow = ?")
            args.append(workflow)
        if status and jobs:
            where.append("j.status = ?")
            args.append(status)
        elif status:
            where.append(_RUN_STATUS_FILTER.get(status, "0"))
        created = "j.created_at" if jobs else "r.created_at"
        ident = "j.job_id" if jobs else "r.run_id"
        if before is not None:
            where.append(f"({created} < ? OR ({created} = ? AND {ident} < ?))")
            args.extend([before[0], before[0], before[1]])
        source = "jobs j LEFT JOIN runs r ON r.run_id = j.job_id" if jobs else "runs r"
        columns = (
            f"{ident}, {'j.workflow' if jobs else 'r.workflow'}, {'j.status' if jobs else 'NULL'},"
            f" r.status, r.pid, {created}, {'j.updated_at' if jobs else 'r.updated_at'},"
            f" (SELECT coalesce(sum(c.attempts), 0) FROM poll_counts c WHERE c.run_id = {ident}),"
            f" {_ERROR_TYPE}"
        )
        sql = f"SELECT {columns} FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {created} DESC, {ident} DESC LIMIT ?"
        rows = [_row(r) for r in self._db.execute(sql, [*args, limit + 1]).fetchall()]
        older = (rows[limit - 1].created_at, rows[limit - 1].job_id) if len(rows) > limit else None
        return rows[:limit], older

    def workflows(self) -> list[str]:
        """The workflow names the store has runs of (for the page's filter)."""
        table = "jobs" if self.has_jobs() else "runs WHERE parent_id IS NULL"
        rows = self._db.execute(f"SELECT DISTINCT workflow FROM {table} ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def run(self, job_id: str) -> RunDetail | None:
        """A run with its poll history, or None when the store has no such run."""
        row = self._db.execute(_RUN_WITH_JOB if self.has_jobs() else _RUN, (job_id,)).fetchone()
        if row is None:
            return None
        return RunDetail(
            _row(row[:9]),
            read_state(self._db, self.path, job_id, row[9]),
            self._attempts(job_id),
            self._poll_counts(job_id),
            self._children(job_id),
            self._parent(job_id),
        )

    def _attempts(self, run_id: str) -> _Rows:
        rows = self._db.execute(
            "SELECT step, step_name, idx, attempt, at, status, error, duration_ms, delay_ms,"
            " next_due, outcome, last_response, progress FROM attempts"
            " WHERE run_id = ? ORDER BY step, idx, attempt",
            (run_id,),
        ).fetchall()
        return [{**attempt_row(r), "stepIndex": r[0]} for r in rows]

    def _poll_counts(self, run_id: str) -> _Rows:
        rows = self._db.execute(
            "SELECT c.step, c.step_name, c.idx, c.attempts, c.statuses, (SELECT count(*)"
            " FROM attempts a WHERE a.run_id = c.run_id AND a.step = c.step AND a.idx = c.idx)"
            " FROM poll_counts c WHERE c.run_id = ? ORDER BY c.step, c.idx",
            (run_id,),
        ).fetchall()
        return [
            {
                "stepIndex": r[0],
                "stepName": r[1],
                "element": r[2],
                "attempts": r[3],
                "statuses": json.loads(r[4]),
                "elided": max(0, r[3] - r[5]),
            }
            for r in rows
        ]

    def _children(self, run_id: str) -> _Rows:
        rows = self._db.execute(
            "SELECT run_id, workflow, status, pid, parent_step, call_mode, created_at"
            " FROM runs WHERE parent_id = ? ORDER BY created_at, rowid",
            (run_id,),
        ).fetchall()
        return [
            {
                "runId": r[0],
                "workflow": r[1],
                "status": listed_status(r[2], r[3]),
                "step": r[4],
                "mode": r[5],
                "createdAt": r[6],
            }
            for r in rows
        ]

    def _parent(self, run_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT parent_id, parent_step FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None or row[0] is None else {"runId": row[0], "step": row[1]}


def _row(r: tuple[Any, ...]) -> RunRow:
    run_status = "UNKNOWN" if r[3] is None else listed_status(r[3], r[4])
    return RunRow(r[0], r[1], r[2], run_status, _epoch(r[5]), _epoch(r[6]), int(r[7] or 0), r[8])


def _epoch(value: Any) -> float:
    """A time column as epoch seconds: the runs table keeps REAL seconds; an ISO 8601 text
    (as a jobs table may keep) is read too."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()
