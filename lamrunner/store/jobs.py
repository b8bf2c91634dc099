"""The job table of `lamrunner serve`: one row per job, in the run store's own SQLite file.

    jobs      job_id (== the run's `runs.run_id`), the served workflow's name, the job's status
              (pending, processing, completed, failed, canceled, expired), when it was made,
              changed and finished, `due_at` (epoch seconds: when the server's waker must
              start or resume it; NULL while a process runs it in memory, and once it ended),
              how it was asked for (configuration, start/end step, callback_url), and once it
              ended its outcome: `ended_by`, the masked result or error as JSON, `result_bytes`

The run itself (GWO, step in flight, poll progress, attempts) is the run store's (`sqlite`):
this table only says what the server does with it next, so `lamrunner runs show JOB_ID` works
on a server's store. `due_at` is indexed: the waker reads the due rows in order, a batch at a
time, and the number of waiting jobs is bounded by the disk, not by memory.

The table's layout has its own version (JOBS_VERSION, in the `store_parts` table), apart from
the run store's `PRAGMA user_version`: a store made by an older lamrunner (no jobs table) gets
it when a server opens it, the CLI's own tables are untouched, and a jobs table made by a newer
lamrunner is refused rather than misread. Writes are single statements in autocommit mode (or
one short transaction), on the event loop's thread, like the run store's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamrunner.errors import DefinitionError
from lamrunner.store.sqlite import connect

JOBS_VERSION = 1
PENDING, PROCESSING, COMPLETED, FAILED = "pending", "processing", "completed", "failed"
CANCELED, EXPIRED = "canceled", "expired"
ENDED = (COMPLETED, FAILED, CANCELED)  # ended by its run; EXPIRED is ENDED after retention
FINISHED = (*ENDED, EXPIRED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_parts (
    part TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    due_at REAL,
    configuration TEXT,
    start_step INTEGER,
    end_step INTEGER,
    callback_url TEXT,
    ended_by TEXT,
    result TEXT,
    error TEXT,
    result_bytes INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_due ON jobs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (finished_at) WHERE finished_at IS NOT NULL
"""
_COLUMNS = (
    "j.job_id, j.workflow, j.status, j.created_at, j.updated_at, j.finished_at, j.due_at,"
    " j.configuration, j.start_step, j.end_step, j.callback_url, j.ended_by, j.error,"
    " j.result_bytes, (SELECT coalesce(sum(c.attempts), 0) FROM poll_counts c"
    " WHERE c.run_id = j.job_id)"
)


@dataclass(frozen=True)
class JobRow:
    """One job as stored (its result apart: `JobStore.result_text`, as it may be megabytes)."""

    job_id: str
    workflow: str
    status: str
    created_at: float
    updated_at: float
    finished_at: float | None
    due_at: float | None
    configuration: str | None
    start_step: int | None
    end_step: int | None
    callback_url: str | None
    ended_by: str | None
    error: dict[str, Any] | None
    result_bytes: int | None
    attempts: int  # poll attempts so far, summed over the run's poll_counts

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> JobRow:
        return cls(
            job_id=row[0],
            workflow=row[1],
            status=row[2],
            created_at=row[3],
            updated_at=row[4],
            finished_at=row[5],
            due_at=row[6],
            configuration=row[7],
            start_step=row[8],
            end_step=row[9],
            callback_url=row[10],
            ended_by=row[11],
            error=None if row[12] is None else json.loads(row[12]),
            result_bytes=row[13],
            attempts=int(row[14]),
        )


_Rows = list[JobRow]  # (named here: in JobStore, `list` is its method)
_Ids = list[str]


class JobStore:
    """The jobs table of a run store file (opened beside the file's `RunStore`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = connect(self.path)
            self._create()
        except (OSError, sqlite3.Error) as exc:
            raise DefinitionError(f"run store {self.path}: cannot open its jobs ({exc})") from None

    def _create(self) -> None:
        """The table (and its version row) in one write transaction; a newer one is refused."""
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction("BEGIN IMMEDIATE"):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT version FROM store_parts WHERE part = 'jobs'").fetchone()
            if row is not None and row[0] > JOBS_VERSION:
                raise DefinitionError(
                    f"run store {self.path}: its jobs were made by a newer lamrunner (jobs "
                    f"version {row[0]}; this one reads up to {JOBS_VERSION})"
                )
            self._db.execute(
                "INSERT OR REPLACE INTO store_parts (part, version) VALUES ('jobs', ?)",
                (JOBS_VERSION,),
            )

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[None]:
        self._db.execute(begin)
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------

    def add(
        self,
        job_id: str,
        workflow: str,
        now: float,
        *,
        configuration: str | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        callback_url: str | None = None,
        due: bool = True,
    ) -> None:
        """A new job, pending: due at once, or (`due=False`) about to be run by this process
        (a process that dies first leaves it to `recover`, like any job it ran)."""
        self._db.execute(
            "INSERT INTO jobs (job_id, workflow, status, created_at, updated_at, due_at,"
            " configuration, start_step, end_step, callback_url)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, workflow, PENDING, now, now, now if due else None, configuration,
             start_step, end_step, callback_url),
        )  # fmt: skip

    def running(self, job_id: str, now: float) -> None:
        """A process runs the job in memory now: processing, no longer due."""
        self._db.execute(
            "UPDATE jobs SET due_at = NULL, updated_at = CASE WHEN status = ? THEN ?"
            " ELSE updated_at END, status = ? WHERE job_id = ?",
            (PENDING, now, PROCESSING, job_id),
        )

    def waiting(self, job_id: str, due_at: float) -> None:
        """The job's run suspended: a row until `due_at`, when the waker resumes it."""
        self._db.execute(
            "UPDATE jobs SET due_at = ? WHERE job_id = ? AND status IN (?, ?)",
            (due_at, job_id, PENDING, PROCESSING),
        )

    def requeue(self, job_id: str, now: float) -> None:
        """A failed or canceled job is run on (a redrive): processing, due now, outcome gone."""
        self._db.execute(
            "UPDATE jobs SET status = ?, updated_at = ?, due_at = ?, finished_at = NULL,"
            " ended_by = NULL, result = NULL, error = NULL, result_bytes = NULL"
            " WHERE job_id = ?",
            (PROCESSING, now, now, job_id),
        )

    def finish(
        self,
        job_id: str,
        status: str,
        now: float,
        *,
        result: str | None = None,
        error: dict[str, Any] | None = None,
        ended_by: str | None = None,
    ) -> bool:
        """The job ended (completed, failed or canceled) with its masked outcome; False when
        it had already (a second ending is not one: listeners hear of the first only)."""
        cursor = self._db.execute(
            "UPDATE jobs SET status = ?, updated_at = ?, finished_at = ?, due_at = NULL,"
            " result = ?, error = ?, ended_by = ?, result_bytes = ?"
            " WHERE job_id = ? AND status IN (?, ?)",
            (
                status,
                now,
                now,
                result,
                None if error is None else json.dumps(error),
                ended_by,
                None if result is None else len(result.encode()),
                job_id,
                PENDING,
                PROCESSING,
            ),
        )
        return cursor.rowcount == 1

    def recover(self, now: float) -> int:
        """After a process died: each job it ran in memory (pending or processing, not due) is
        due now, so the waker resumes it from its checkpoint. Returns how many."""
        cursor = self._db.execute(
            "UPDATE jobs SET due_at = ? WHERE due_at IS NULL AND status IN (?, ?)",
            (now, PENDING, PROCESSING),
        )
        return cursor.rowcount

    def expire(self, cutoff: float, now: float, stub: str, limit: int = 500) -> _Ids:
        """Jobs that ended before `cutoff` become EXPIRED with the `stub` result (JSON), and
        their runs leave the run store (state, element, attempt and count rows, sub-workflow
        runs too); at most `limit` at a time. Returns their ids."""
        ids = [
            r[0]
            for r in self._db.execute(
                "SELECT job_id FROM jobs WHERE finished_at < ? AND status IN (?, ?, ?) LIMIT ?",
                (cutoff, *ENDED, limit),
            )
        ]
        if not ids:
            return []
        with self._transaction():
            for job_id in ids:
                self._db.execute(
                    "UPDATE jobs SET status = ?, updated_at = ?, result = ?, error = NULL,"
                    " result_bytes = ? WHERE job_id = ?",
                    (EXPIRED, now, stub, len(stub.encode()), job_id),
                )
                self._purge_run(job_id)
        return ids

    def _purge_run(self, run_id: str) -> None:
        """A run's rows and its sub-workflows' (the run tree), from every run store table."""
        tree = [
            r[0]
            for r in self._db.execute(
                "WITH RECURSIVE tree(id) AS (SELECT ? UNION SELECT runs.run_id FROM runs, tree"
                " WHERE runs.parent_id = tree.id) SELECT id FROM tree",
                (run_id,),
            )
        ]
        for table in ("elements", "attempts", "poll_counts", "cancels", "runs"):
            self._db.executemany(f"DELETE FROM {table} WHERE run_id = ?", [(i,) for i in tree])

    # -- reading -----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRow | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs j WHERE j.job_id = ?", (job_id,))
        found = row.fetchone()
        return None if found is None else JobRow.of(found)

    def result_text(self, job_id: str) -> str | None:
        """The job's result as the JSON text it was stored as; None when it has none."""
        row = self._db.execute("SELECT result FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> _Rows:
        """Newest first; `before` (a job id) pages on from that job (exclusive)."""
        where, args = ["1"], []
        if workflow is not None:
            where.append("j.workflow = ?")
            args.append(workflow)
        if status is not None:
            where.append("j.status = ?")
            args.append(status)
        if before is not None:
            where.append(
                "(j.created_at, j.job_id) < (SELECT created_at, job_id FROM jobs WHERE job_id = ?)"
            )
            args.append(before)
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs j WHERE {' AND '.join(where)}"
            " ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?",
            (*args, limit),
        )
        return [JobRow.of(r) for r in rows]

    def due(self, until: float, limit: int, workflows: tuple[str, ...]) -> _Rows:
        """The jobs of `workflows` due by `until`, earliest first, at most `limit` (a job of a
        workflow the server no longer serves waits, untouched, until one serves it again)."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs j WHERE j.due_at IS NOT NULL AND j.due_at <= ?"
            f" AND j.workflow IN ({_marks(workflows)}) ORDER BY j.due_at LIMIT ?",
            (until, *workflows, limit),
        )
        return [JobRow.of(r) for r in rows]

    def next_due(self, workflows: tuple[str, ...]) -> float | None:
        """The earliest due_at of the jobs of `workflows`, or None when none waits."""
        row = self._db.execute(
            "SELECT min(due_at) FROM jobs WHERE due_at IS NOT NULL"
            f" AND workflow IN ({_marks(workflows)})",
            workflows,
        )
        found = row.fetchone()
        return None if found is None or found[0] is None else float(found[0])

    def take(self, job_id: str) -> None:
        """No longer due (a process is about to act on it, as a cancel of a waiting job)."""
        self._db.execute("UPDATE jobs SET due_at = NULL WHERE job_id = ?", (job_id,))

    def unserved(self, workflows: tuple[str, ...]) -> int:
        """How many unfinished jobs belong to none of `workflows` (they wait)."""
        row = self._db.execute(
            f"SELECT count(*) FROM jobs WHERE status IN (?, ?) AND workflow NOT IN"
            f" ({_marks(workflows)})",
            (PENDING, PROCESSING, *workflows),
        )
        return int(row.fetchone()[0])

    def cancel_requests(self, workflows: tuple[str, ...]) -> _Ids:
        """The unfinished jobs of `workflows` a cancel was asked for (`POST /jobs/ID/cancel`
        or `lamrunner cancel`), recorded in the run store's cancels table before it is acted
        on: a cancel a server did not finish (killed mid-way, or not running) is not lost."""
        rows = self._db.execute(
            "SELECT j.job_id FROM cancels c JOIN jobs j ON j.job_id = c.run_id"
            f" WHERE j.status IN (?, ?) AND j.workflow IN ({_marks(workflows)})",
            (PENDING, PROCESSING, *workflows),
        )
        return [r[0] for r in rows]

    def count(self, status: str) -> int:
        return int(
            self._db.execute("SELECT count(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0]
        )


def _marks(values: tuple[str, ...]) -> str:
    """The `?, ?, ?` of an IN list (an empty list matches nothing)."""
    return ", ".join("?" * len(values)) if values else "NULL"


def job_of(path: Path, run_id: str) -> JobRow | None:
    """The job row of a run, when the store's run is a `lamrunner serve` job (the CLI's
    question: it must leave a server's jobs to the server); a store with no jobs table has
    none, and is not given one."""
    db = connect(path)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone() is None:
            return None
        found = db.execute(f"SELECT {_COLUMNS} FROM jobs j WHERE j.job_id = ?", (run_id,))
        row = found.fetchone()
        return None if row is None else JobRow.of(row)
    except sqlite3.Error as exc:
        raise DefinitionError(f"run store {path}: cannot read its jobs ({exc})") from None
    finally:
        db.close()


def lock_path(store: Path) -> Path:
    return store.with_name(store.name + ".serve-lock")


class ServeLock:
    """One `lamrunner serve` per store file. Two would both wake the same due jobs and run
    them twice; the lock is an exclusive `flock` on a file beside the store, which the kernel
    releases however the holder dies (SIGKILL too), so a restart never finds a stale one."""

    def __init__(self, store: Path) -> None:
        self.store = Path(store)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.store.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(self.store), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DefinitionError(
                f"run store {self.store}: another lamrunner serve (pid {holder}) is serving it; "
                "one server per store (two would run the same jobs twice): stop that one, or "
                "give this one its own --store"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def server_pid(store: Path) -> int | None:
    """The pid of the `lamrunner serve` serving this store now, or None when none is."""
    try:
        fd = os.open(lock_path(Path(store)), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
