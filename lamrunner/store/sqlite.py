"""The run store: every run checkpointed in one SQLite file, so a killed run can be resumed.

    runs      one row a run: the RunState (GWO so far, next step, the step in flight), how it
              was invoked (workflow file, --config files, --set values), and the process that
              owns it while it runs; a sub-workflow's run also names its parent run, the
              parent's step that started it, its workflow id and how it was started (mode)
    elements  the progress of each request of the step in flight (poll state, or its result),
              written alone after every attempt so a batch of 10,000 polls does not rewrite
              the whole run 10,000 times
    attempts  poll history: one row per attempt, the one that settled the poll too (for
              `lamrunner runs show`; the rows are made, and masked, in `history`), bounded:
              a poll keeps the rows of its first and last attempts (`loopUntil.history`,
              5 and 50 by default), the row that leaves the window is deleted as the poll
              goes (the engine names it, `decide.history`), so 10,000 long polls stay small
    poll_counts  one row per polled request: its attempts and how many got each status,
              counted for every attempt, kept or not (`runs show` says how many were elided)
    cancels   `lamrunner cancel` of a run another process is running: the row is the request,
              which that process looks for every CANCEL_CHECK_INTERVAL and obeys

Writes happen on the event loop's thread (WAL, synchronous=NORMAL, so a commit reaches the OS
without an fsync). Step boundaries and results commit at once, and so does every poll attempt
whose next attempt is at least GROUP_WINDOW away: a run killed at any point keeps everything up
to its last completed attempt. Polls faster than that (a commit costs as much as a loopback
request) are committed together every GROUP_WINDOW; killed, they repeat at most that window's
attempts. A poll's last attempt is committed when the poll settles, whatever its pace. The file
is created readable by its owner only: GWOs and --set values may be private.

The file's layout has a version (`PRAGMA user_version`, STORE_VERSION): a store made by an older
lamrunner gets the columns it lacks when it is opened (its runs are all top-level ones), and one
made by a newer lamrunner is refused rather than misread.

States are written and read only through the records of `runner.state` (`RunState.to_dict`,
`ElementState.to_dict` and their `from_dict`), which version the saved form: a run's `state`
column carries its schema, and its element rows are in that schema. A process that takes a run
over (`begin`) rewrites its state in the current schema before it writes any element row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lamrunner.errors import DefinitionError
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import RUNNING, ChildRun, ElementState, RunState

ENV_VAR = "LAMRUNNER_STORE"
GROUP_WINDOW = 0.05  # seconds: polls faster than this share commits
INTERRUPTED = "INTERRUPTED"  # RUNNING in the store, but its process is gone
STORE_VERSION = 2  # 1: before sub-workflows (no parent columns); 0: a store from before that

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    pid INTEGER,
    invocation TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at);
CREATE TABLE IF NOT EXISTS elements (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (run_id, step, idx)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status INTEGER,  -- the HTTP status, or the error kind (text) when there was no response
    error TEXT,
    at REAL NOT NULL,
    next_due REAL,
    step_name TEXT,
    duration_ms INTEGER,
    delay_ms INTEGER,
    outcome TEXT,
    last_response TEXT,
    progress TEXT,  -- loopUntil.progress: {"percent", "etaMs"} as JSON
    PRIMARY KEY (run_id, step, idx, attempt)
);
CREATE TABLE IF NOT EXISTS cancels (
    run_id TEXT PRIMARY KEY,
    requested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS poll_counts (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    step_name TEXT,
    attempts INTEGER NOT NULL,
    keep_first INTEGER,
    keep_last INTEGER,
    statuses TEXT NOT NULL,  -- {"200": 9990, "503": 10}: attempts by status (or error kind)
    PRIMARY KEY (run_id, step, idx)
);
"""
# Columns added to `runs` for sub-workflows (store version 2); an older store gets them on open.
_RUN_COLUMNS = {
    "parent_id": "TEXT",
    "parent_step": "TEXT",
    "workflow_id": "TEXT",
    "call_mode": "TEXT",
}
# Columns added to `attempts` since its first version; a store made before gets them on open.
_ATTEMPT_COLUMNS = {
    "step_name": "TEXT",
    "duration_ms": "INTEGER",
    "delay_ms": "INTEGER",
    "outcome": "TEXT",
    "last_response": "TEXT",
    "progress": "TEXT",
}
_Rows = list[dict[str, Any]]  # (named here: in RunStore, `list` is its method)
_ATTEMPT_INSERT = (
    "INSERT OR REPLACE INTO attempts (run_id, step, idx, attempt, status, error, at, next_due,"
    " step_name, duration_ms, delay_ms, outcome, last_response, progress)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)  # REPLACE: an attempt re-sent after a resume overwrites the row of its lost first try
_ATTEMPT_DROP = "DELETE FROM attempts WHERE run_id = ? AND step = ? AND idx = ? AND attempt = ?"
_COUNT_UPSERT = (
    "INSERT INTO poll_counts (run_id, step, idx, step_name, attempts, keep_first, keep_last,"
    " statuses) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, json_object(?8, 1))"
    " ON CONFLICT (run_id, step, idx) DO UPDATE SET attempts = excluded.attempts,"
    " statuses = json_set(statuses, '$.\"' || ?8 || '\"',"
    " coalesce(json_extract(statuses, '$.\"' || ?8 || '\"'), 0) + 1)"
    " WHERE excluded.attempts > poll_counts.attempts"
)  # counted once per attempt: an attempt re-sent after a resume is not counted again


def default_path() -> Path:
    """$LAMRUNNER_STORE, else $XDG_STATE_HOME/lamrunner/runs.sqlite3 (~/.local/state/…)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "lamrunner" / "runs.sqlite3"


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    workflow: str
    status: str
    created_at: float
    updated_at: float
    steps_done: int  # the next step's index is the number of steps done

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
            "stepsDone": self.steps_done,
        }


def connect(path: Path) -> sqlite3.Connection:
    """A connection to a store file (autocommit, a 10 s busy wait), its folder made; a new
    file is readable by its owner only: GWOs, --set values and job results may be private."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists()
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    if fresh:
        os.chmod(path, 0o600)
    return db


class RunStore(RunObserver):
    """A run store file. Also the engine's checkpointer for the runs it owns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = connect(self.path)
            self._prepare()
        except (OSError, sqlite3.Error) as exc:
            raise DefinitionError(f"run store {self.path}: cannot open it ({exc})") from None
        self._grouped: dict[tuple[str, int, int], ElementState] = {}  # key -> latest entry
        self._attempts: list[tuple[Any, ...]] = []
        self._drops: list[tuple[Any, ...]] = []  # rows leaving a poll's bounded history
        self._counts: list[tuple[Any, ...]] = []
        self._flush_handle: asyncio.TimerHandle | None = None

    def _prepare(self, tries: int = 50) -> None:
        """WAL mode and the schema. Switching a new file to WAL can be refused at once
        ("database is locked", no busy wait) while another process does the same: retry."""
        for attempt in range(tries):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._create()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == tries - 1:
                    raise
                time.sleep(0.02 + 0.01 * attempt)

    def _create(self) -> None:
        """Create the tables, or add the columns a store from an older lamrunner lacks.

        One write transaction, so processes opening a new store at once cannot race.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > STORE_VERSION:
                raise DefinitionError(
                    f"run store {self.path}: made by a newer lamrunner (store version "
                    f"{version}; this one reads up to {STORE_VERSION})"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            for table, columns in (("runs", _RUN_COLUMNS), ("attempts", _ATTEMPT_COLUMNS)):
                have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            self._db.execute("CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_id)")
            self._db.execute(f"PRAGMA user_version = {STORE_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        self._db.close()

    # -- the checkpointer side ---------------------------------------------------------------

    def begin(self, state: RunState, invocation: dict[str, Any]) -> None:
        """Record a new run (or take over a resumed one) as owned by this process."""
        now = time.time()
        self._db.execute(
            "INSERT INTO runs (run_id, workflow, status, created_at, updated_at, pid, invocation,"
            " state) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET"
            " pid = excluded.pid, status = excluded.status, updated_at = excluded.updated_at,"
            " state = excluded.state",  # a resumed run's state, in the current schema
            (
                state.run_id,
                state.workflow,
                state.status,
                now,
                now,
                os.getpid(),
                json.dumps(invocation),
                json.dumps(state.to_dict()),
            ),
        )

    def child_run(self, parent: RunState, child: RunState, call: ChildRun, file: str) -> None:
        """A sub-workflow run starts or resumes: its row, linked to its parent and owned by
        this process; its invocation is the parent's with the child's workflow file (the same
        --config files and --set values)."""
        now = time.time()
        self._db.execute(
            "INSERT INTO runs (run_id, workflow, status, created_at, updated_at, pid, invocation,"
            " state, parent_id, parent_step, workflow_id, call_mode) VALUES (?, ?, ?, ?, ?, ?,"
            " json_set(coalesce((SELECT invocation FROM runs WHERE run_id = ?), '{}'),"
            " '$.workflow', ?), ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET"
            " pid = excluded.pid, status = excluded.status, updated_at = excluded.updated_at,"
            " state = excluded.state",
            (
                child.run_id,
                child.workflow,
                child.status,
                now,
                now,
                os.getpid(),
                parent.run_id,
                file,
                json.dumps(child.to_dict()),
                parent.run_id,
                call.step,
                str(call.workflow_id),
                call.mode,
            ),
        )

    def save_run(self, state: RunState) -> None:
        """A step boundary (or the end): the whole state; element rows of a finished step go."""
        self.flush()
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET state = ?, status = ?, updated_at = ?,"
                " pid = CASE WHEN ? = 'RUNNING' THEN pid ELSE NULL END WHERE run_id = ?",
                (
                    json.dumps(state.to_dict()),
                    state.status,
                    time.time(),
                    state.status,
                    state.run_id,
                ),
            )
            if state.pending is None:
                self._db.execute("DELETE FROM elements WHERE run_id = ?", (state.run_id,))

    def save_element(self, state: RunState, index: int, entry: ElementState) -> None:
        """After a poll attempt (or a request's end): that one element's progress.

        A grouped entry is kept as the record, and serialized when its group is committed:
        the engine refreshes a polling element's record in place only right before it hands
        it here again, so at the commit it is what this call saved (or a later call), and a
        fast poll pays for one serialization per commit instead of one per attempt."""
        poll = entry.poll
        self._grouped[(state.run_id, state.next_step, index)] = entry
        if poll is not None and poll.next_due - time.time() < GROUP_WINDOW:
            self._flush_soon()
        else:
            self.flush()

    def save_attempt(self, state: RunState, index: int, row: dict[str, Any]) -> None:
        """A poll attempt's history row. It shares the commit of the element progress that
        follows it; the last attempt of a poll (no delay after it) is committed at once, since
        nothing may follow for a long time (a batch's other elements may poll on).

        The row's `dropAttempt` (the engine's, from `loopUntil.history`) names the earlier
        attempt whose row leaves the poll's bounded history: it is deleted in the same commit.
        Every attempt is counted in `poll_counts`, kept or not."""
        last = row.get("lastResponse")
        run_id, step = state.run_id, state.next_step
        drop = row.get("dropAttempt")
        if drop is not None:
            self._drops.append((run_id, step, index, drop))
        window = row.get("history") or {}
        self._counts.append(
            (
                run_id,
                step,
                index,
                row.get("stepName"),
                row["attempt"],
                window.get("first"),
                window.get("last"),
                str(row["status"]),
            )
        )
        self._attempts.append(
            (
                run_id,
                step,
                index,
                row["attempt"],
                row["status"],
                row["error"],
                row["at"],
                row["nextDue"],
                row.get("stepName"),
                row["durationMs"],
                row["delayMs"],
                row["outcome"],
                None if last is None else json.dumps(last),
                None if row.get("progress") is None else json.dumps(row["progress"]),
            )
        )
        if row["delayMs"] is None:
            self.flush()
        else:
            self._flush_soon()

    def flush(self) -> None:
        """Commit the grouped element progress and history now (one transaction for all)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._grouped and not self._attempts:
            return
        grouped, self._grouped = self._grouped, {}
        attempts, self._attempts = self._attempts, []
        drops, self._drops = self._drops, []
        counts, self._counts = self._counts, []
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO elements (run_id, step, idx, entry) VALUES (?, ?, ?, ?)",
                [(*key, json.dumps(entry.to_dict())) for key, entry in grouped.items()],
            )
            self._db.executemany(_ATTEMPT_INSERT, attempts)
            if drops:
                self._db.executemany(_ATTEMPT_DROP, drops)
            self._db.executemany(_COUNT_UPSERT, counts)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One commit for several statements (the connection is in autocommit mode)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _flush_soon(self) -> None:
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop to flush later: flush now
                self.flush()
                return
            self._flush_handle = loop.call_later(GROUP_WINDOW, self.flush)

    # -- the reading side --------------------------------------------------------------------

    def load(self, run_id: str) -> tuple[RunState, dict[str, Any], str]:
        """(state with its element progress applied, invocation, status as listed)."""
        row = self._db.execute(
            "SELECT state, invocation, status, pid FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise DefinitionError(f"run {run_id!r} is not in the run store {self.path}")
        state = read_state(self._db, self.path, run_id, row[0])
        return state, json.loads(row[1]), listed_status(row[2], row[3])

    def saved_state(self, run_id: str) -> RunState | None:
        """A run's saved state (element progress applied), or None when the store has none:
        how a resumed parent finds the checkpoint of its unfinished sub-workflow."""
        exists = self._db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if exists is None else self.load(run_id)[0]

    def parent(self, run_id: str) -> dict[str, Any] | None:
        """For a sub-workflow's run: its parent's run id, the step that started it, its
        workflow id and mode; None for a top-level run."""
        row = self._db.execute(
            "SELECT parent_id, parent_step, workflow_id, call_mode FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return {"runId": row[0], "step": row[1], "workflowId": _id(row[2]), "mode": row[3]}

    def children(self, run_id: str) -> _Rows:
        """The sub-workflow runs under `run_id`, each with its own children: the run tree."""
        rows = self._db.execute(
            "SELECT run_id, workflow, status, pid, parent_step, workflow_id, call_mode,"
            " created_at FROM runs WHERE parent_id = ? ORDER BY created_at, rowid",
            (run_id,),
        ).fetchall()
        return [
            {
                "runId": r[0],
                "workflow": r[1],
                "workflowId": _id(r[5]),
                "step": r[4],
                "mode": r[6],
                "status": listed_status(r[2], r[3]),
                "createdAt": _iso(r[7]),
                "children": self.children(r[0]),
            }
            for r in rows
        ]

    def list(self, limit: int = 50) -> list[RunSummary]:
        """The newest top-level runs (a sub-workflow's run is shown under its parent, by
        `runs show PARENT`)."""
        rows = self._db.execute(
            "SELECT run_id, workflow, status, created_at, updated_at, pid,"
            " json_extract(state, '$.next_step') FROM runs"  # not the whole GWO of every run
            " WHERE parent_id IS NULL ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [RunSummary(r[0], r[1], listed_status(r[2], r[5]), r[3], r[4], r[6]) for r in rows]

    def attempts(self, run_id: str) -> _Rows:
        """The poll history of a run, in the order the attempts were sent."""
        rows = self._db.execute(
            "SELECT step, step_name, idx, attempt, at, status, error, duration_ms, delay_ms,"
            " next_due, outcome, last_response, progress FROM attempts"
            " WHERE run_id = ? ORDER BY at, step, idx, attempt",
            (run_id,),
        ).fetchall()
        return [attempt_row(r) for r in rows]

    def request_cancel(self, run_id: str) -> None:
        """Ask the process running `run_id` to cancel it (see `cancel_requested`)."""
        self._db.execute(
            "INSERT OR REPLACE INTO cancels (run_id, requested_at) VALUES (?, ?)",
            (run_id, time.time()),
        )

    def cancel_requested(self, run_id: str) -> bool:
        """Whether `lamrunner cancel` asked for this run to stop."""
        row = self._db.execute("SELECT 1 FROM cancels WHERE run_id = ?", (run_id,)).fetchone()
        return row is not None

    def redriven(self, run_id: str, step: int) -> None:
        """A FAILED run is redriven from `step` (its index): its old cancel request, element
        rows and the attempt rows of that step go (what it keeps of the step is in its state,
        saved when it failed; the error it cleared is in the state's `redrives`)."""
        with self._transaction():
            self._db.execute("DELETE FROM cancels WHERE run_id = ?", (run_id,))
            self._db.execute("DELETE FROM elements WHERE run_id = ?", (run_id,))
            self._db.execute("DELETE FROM attempts WHERE run_id = ? AND step = ?", (run_id, step))
            self._db.execute(
                "DELETE FROM poll_counts WHERE run_id = ? AND step = ?", (run_id, step)
            )

    def poll_counts(self, run_id: str) -> _Rows:
        """Per polled request: its attempts, how many rows of them are kept and how many were
        elided (the middle of a long poll, see `loopUntil.history`), attempts by status."""
        rows = self._db.execute(
            "SELECT c.step, c.step_name, c.idx, c.attempts, c.keep_first, c.keep_last,"
            " c.statuses, (SELECT count(*) FROM attempts a WHERE a.run_id = c.run_id"
            " AND a.step = c.step AND a.idx = c.idx) FROM poll_counts c"
            " WHERE c.run_id = ? ORDER BY c.step, c.idx",
            (run_id,),
        ).fetchall()
        return [
            {
                "step": f"step_{r[0] + 1}",
                "stepName": r[1],
                "element": r[2],
                "attempts": r[3],
                "rowsKept": r[7],
                "elided": max(0, r[3] - r[7]),
                "history": {"first": r[4], "last": r[5]},
                "statuses": json.loads(r[6]),
            }
            for r in rows
        ]

    def owner_alive(self, run_id: str) -> int | None:
        """The pid of a live process that is running this run, if any."""
        row = self._db.execute(
            "SELECT status, pid FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row and row[0] == RUNNING and row[1] and row[1] != os.getpid() and _alive(row[1]):
            return int(row[1])
        return None


def attempt_row(r: tuple[Any, ...]) -> dict[str, Any]:
    """One row of `runs show` (rows from an older store have None in the newer fields)."""
    row = {
        "step": f"step_{r[0] + 1}",
        "stepName": r[1],
        "element": r[2],
        "attempt": r[3],
        "at": _iso_ms(r[4]),
        "status": r[5],
        "error": r[6],
        "durationMs": r[7],
        "delayMs": r[8],
        "nextDue": None if r[9] is None else _iso_ms(r[9]),
        "outcome": r[10],
        "lastResponse": None if r[11] is None else json.loads(r[11]),
    }
    if r[12] is not None:  # a poll with loopUntil.progress
        row["progress"] = json.loads(r[12])
    return row


def _id(text: str | None) -> int | str | None:
    """A workflow id as the handler wrote it: Laminar's are numbers."""
    return int(text) if text is not None and text.isdigit() and str(int(text)) == text else text


def read_state(db: sqlite3.Connection, path: Path, run_id: str, text: str) -> RunState:
    """A run's saved state with its step's element progress (the elements rows) applied."""
    try:
        state = RunState.from_dict(_json(text, "state"))
        if state.pending is not None:
            elements = state.pending.elements
            for idx, entry in db.execute(
                "SELECT idx, entry FROM elements WHERE run_id = ? AND step = ?",
                (run_id, state.next_step),
            ):
                if idx < len(elements):
                    where = f"element row {idx} of step {state.next_step}"
                    elements[idx] = ElementState.from_dict(_json(entry, where), where)
    except DefinitionError as exc:
        raise DefinitionError(
            f"run store {path}: run {run_id} cannot be read: {exc.message}"
        ) from None
    return state


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DefinitionError(f"{what}: not JSON ({exc})") from None


def listed_status(status: str, pid: int | None) -> str:
    """As stored, but a RUNNING run whose process is gone is INTERRUPTED. A SUSPENDED run has
    no process (its pid is cleared when it is saved): it is listed SUSPENDED."""
    if status == RUNNING and not (pid and (pid == os.getpid() or _alive(pid))):
        return INTERRUPTED
    return status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _iso_ms(epoch: float) -> str:
    """ISO 8601 in UTC to the millisecond: attempts of a fast poll are milliseconds apart."""
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")
