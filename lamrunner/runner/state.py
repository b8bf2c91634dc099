"""A run's progress as typed records with a versioned, JSON-serializable saved form, and the run
record made from it.

The engine advances a RunState and hands it to a checkpoint hook at every step boundary and
after every poll attempt. Everything needed to continue is in it — the GWO so far, the index of
the next step, and for a step in flight (`PendingStep`) the handler's directive (so the handler
is not called again) with each request's progress (`ElementState`: its poll state or its
result) — so a run store can persist it and a later process, or a later cloud-function
invocation, can resume the run where it stopped.

The saved form (`RunState.to_dict`) carries `"schema": SCHEMA`. `RunState.from_dict` reads every
schema from 1 (the layout before versioning, which has no `schema` key) to SCHEMA, refuses a
newer one, and refuses a damaged or foreign shape with a DefinitionError naming what is wrong.
Schema 2 is schema 1 plus the key and its validation, so a schema-1 state loads unchanged.
Two optional forms came later within schema 2, each written only when it happens (so every
state saved before them still loads, and reads the same): the status SUSPENDED (a run that
stopped at its budget, to be resumed when its earliest poll is due) and an element's
`{"error": {...}}` (a batch request that failed while others went on: its error, kept so the
resumed step settles as an uninterrupted one would). A third, `children` (the sub-workflow runs
a run started, `ChildRun`), is written only by a run that started one. A fourth, `route` (each
step execution so far, `StepRun`: how it was entered and left), is written once a step has
run; a state without it reads as a run whose steps went in order. A fifth is an element's
`{"fetch": {"response", "http"}}`: a request (or poll) that succeeded with a `followResultUrl`
pointer whose result is not fetched yet, so a resumed run fetches it without polling again.
`meta` is free space whose keys the engine reads or writes are: `giveUps`, `redrives`,
`endedBy` (the directive that ended the run: lam.exit, lam.response, lam.resolveThenExecute)
and `endAtStep` (a host's last step, 1-based: the run ends once that step has run).

    {"schema": 2, "run_id": str, "workflow": str, "gwo": {...}, "next_step": int >= 0,
     "pending": null | {"output": {directive}, "elements": [null | {"poll": {PollState}}
                                                           | {"result": {"response", "http"}}
                                                           | {"fetch": {"response", "http"}}
                                                           | {"error": {"type", "message",
                                                                        ...}}]},
     "status": "RUNNING" | "SUSPENDED" | "SUCCESS" | "FAILED", "result": any,
     "error": null | {...}, "meta": {...},
     "children": [{"runId", "workflowId", "step", "index", "mode", "status", "result"?,
                   "error"?}]},                     (only when the run started sub-workflows)
     "route": [{"step", "key", "entered", "left", "to", "at", "error"?, "url"?}]}
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lamrunner.decide.polling import PollState
from lamrunner.errors import DefinitionError

RUNNING, SUCCESS, FAILED = "RUNNING", "SUCCESS", "FAILED"
SUSPENDED = "SUSPENDED"  # stopped at its budget; resumable from its saved state at `resume_at`
SCHEMA = 2  # the saved form this code writes
OLDEST_SCHEMA = 1  # the oldest it reads (1: the layout before versioning, no "schema" key)
_STATUSES = (RUNNING, SUSPENDED, SUCCESS, FAILED)
_WHERE = "saved run state"


def new_run_id(now: float | None = None) -> str:
    """Sortable and readable: 20261122-104512-3fa9c1."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class ElementState:
    """One request of the step in flight: its poll's progress while it polls (`poll`), or,
    once it is done, its GWO entry (`result`: `{"response": ..., "http": {...}}`), or, for a
    batch request that failed, its error (`error`: `{"type", "message", "step"}` and the
    error's other attributes — `status`, `attempts`, `kind`, `last_status` — masked).

    While a request polls, the engine updates its record's `poll` in place after each attempt
    (it is a snapshot of the loop's state, not the loop's own), just before it hands the record
    to `save_element` again: an observer serializes the entry it is given (`to_dict`) in its
    hook, or keeps the object only as that element's latest progress (the run store does,
    until its next commit), never as the snapshot of one attempt."""

    poll: PollState | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    # followResultUrl: the success (`{"response", "http"}`, the pointer in it) whose result is
    # being fetched; a resumed run fetches it again and does not poll again
    fetch: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """Settled: it has its result or its error."""
        return self.result is not None or self.error is not None

    def to_dict(self) -> dict[str, Any]:
        if self.result is not None:
            return {"result": self.result}
        if self.error is not None:
            return {"error": self.error}
        if self.fetch is not None:
            return {"fetch": self.fetch}
        if self.poll is None:
            raise ValueError("an ElementState has a poll state, a result, an error or a fetch")
        return {"poll": self.poll.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, where: str = "element") -> ElementState:
        _check_object(data, where, required=(), allowed=("poll", "result", "error", "fetch"))
        if len(data) != 1:
            raise DefinitionError(
                f"{where}: expected one of poll, result, error or fetch, got {_keys(data)}"
            )
        if "poll" in data:
            return cls(poll=PollState.from_dict(data["poll"], f"{where}.poll"))
        if "error" in data:
            error = data["error"]
            _check_object(error, f"{where}.error", ("type", "message"), _ERROR_KEYS)
            for key in ("type", "message"):
                _check_type(error[key], str, "a string", f"{where}.error.{key}")
            return cls(error=error)
        key = "fetch" if "fetch" in data else "result"
        result = data[key]
        _check_object(result, f"{where}.{key}", required=("response", "http"))
        _check_type(result["http"], dict, "an object", f"{where}.{key}.http")
        return cls(fetch=result) if key == "fetch" else cls(result=result)


@dataclass
class PendingStep:
    """The step in flight: what its handler returned (the directive, sent again on resume
    instead of calling the handler again) and one entry per request, None until it starts."""

    output: Any
    elements: list[ElementState | None]
    # per request, its Idempotency-Key (None: it sends none, or none is made yet); made and
    # saved before the request is first sent, so a resumed or replayed step sends the same one
    keys: list[str | None] | None = None

    @classmethod
    def start(cls, output: Any, requests: int) -> PendingStep:
        return cls(output, [None] * requests)

    @classmethod
    def begin(cls, output: Any) -> PendingStep:
        """A step whose handler a host has called (`Engine.call_handler`): resuming the run
        carries out `output` without calling the handler again; no request has started."""
        return cls(output, [])

    def to_dict(self) -> dict[str, Any]:
        saved = {"output": self.output, "elements": [_element_dict(e) for e in self.elements]}
        if self.keys is not None and any(k is not None for k in self.keys):
            saved["keys"] = list(self.keys)  # written only when a request has one
        return saved

    @classmethod
    def from_dict(cls, data: Any, where: str = "pending") -> PendingStep:
        _check_object(data, where, ("output", "elements"), ("output", "elements", "keys"))
        _check_type(data["output"], dict, "the handler's directive (an object)", f"{where}.output")
        elements = data["elements"]
        _check_type(elements, list, "a list", f"{where}.elements")
        keys = data.get("keys")
        if keys is not None and (
            not isinstance(keys, list) or not all(k is None or isinstance(k, str) for k in keys)
        ):
            raise DefinitionError(f"{where}.keys: expected a list of strings or nulls")
        return cls(
            data["output"],
            [
                None if e is None else ElementState.from_dict(e, f"{where}.elements[{i}]")
                for i, e in enumerate(elements)
            ],
            keys,
        )


CHILD_MODES = ("execute", "async", "resolve")  # see definition.directives.ExecuteDirective
STARTED = "STARTED"  # a GWO entry's status for a child that runs on after its step (async)


@dataclass(slots=True)
class ChildRun:
    """A sub-workflow run that this run started: which call made it (`step`: the GWO key,
    `index`: the call's place in its directive), under which run id, and, once it ended, its
    status and result (or error). Saved in the parent's state before the child starts, so a
    resumed parent resumes that child rather than start another, and keeps a finished one's
    result rather than run it again."""

    run_id: str
    workflow_id: int | str
    step: str
    index: int
    mode: str
    status: str = RUNNING
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in (SUCCESS, FAILED)

    def to_dict(self) -> dict[str, Any]:
        saved: dict[str, Any] = {
            "runId": self.run_id,
            "workflowId": self.workflow_id,
            "step": self.step,
            "index": self.index,
            "mode": self.mode,
            "status": self.status,
        }
        if self.finished:
            saved["result"] = self.result
        if self.error is not None:
            saved["error"] = self.error
        return saved

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ChildRun:
        required = ("runId", "workflowId", "step", "index", "mode", "status")
        _check_object(data, where, required, (*required, "result", "error"))
        for key in ("runId", "step"):
            _check_type(data[key], str, "a string", f"{where}.{key}")
        if isinstance(data["workflowId"], bool) or not isinstance(data["workflowId"], int | str):
            raise DefinitionError(f"{where}.workflowId: expected a number or a name")
        if isinstance(data["index"], bool) or not isinstance(data["index"], int):
            raise DefinitionError(f"{where}.index: expected a whole number")
        if data["mode"] not in CHILD_MODES:
            raise DefinitionError(f"{where}.mode: expected one of {', '.join(CHILD_MODES)}")
        if data["status"] not in _STATUSES:
            raise DefinitionError(f"{where}.status: expected one of {', '.join(_STATUSES)}")
        if data.get("error") is not None:
            _check_type(data["error"], dict, "an object", f"{where}.error")
        return cls(
            data["runId"],
            data["workflowId"],
            data["step"],
            data["index"],
            data["mode"],
            data["status"],
            data.get("result"),
            data.get("error"),
        )

    def entry(self) -> dict[str, Any]:
        """As the calling step's GWO entry lists it (`executions`): what a handler reads."""
        shown: dict[str, Any] = {
            "workflowId": self.workflow_id,
            "runId": self.run_id,
            "status": self.status if self.finished else STARTED,
        }
        if self.finished:
            shown["result"] = self.result
        if self.error is not None:
            shown["error"] = self.error
        return shown

    def listed(self) -> dict[str, Any]:
        """As the run record's `subWorkflows` lists it."""
        return {"step": self.step, "mode": self.mode, **self.entry(), "status": self.status}


ROUTES = (  # how a step execution is entered and left (docs/declarative-steps.md)
    "start",
    "sequence",
    "next",
    "onError.next",
    "onError.exit",
    "continueOnFailure",
    "action.next",
    "action.exit",
    "action.url",
    "exit",
    "end",
)


@dataclass(slots=True)
class StepRun:
    """One step execution, once it has left: which step (`step`: its name, `key`: its GWO
    key), how the run came to it (`entered`: `start` or how the one before left) and how it
    left (`left`, one of ROUTES) to which step (`to`: None when the run ended), when; for
    an onError or continueOnFailure route the error it handled (`{type, message}`, masked),
    for action.url the URL it sent its request to."""

    step: str
    key: str
    entered: str
    left: str
    to: str | None
    at: str
    error: dict[str, Any] | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        saved: dict[str, Any] = {
            "step": self.step,
            "key": self.key,
            "entered": self.entered,
            "left": self.left,
            "to": self.to,
            "at": self.at,
        }
        if self.error is not None:
            saved["error"] = self.error
        if self.url is not None:
            saved["url"] = self.url
        return saved

    @classmethod
    def from_dict(cls, data: Any, where: str) -> StepRun:
        required = ("step", "key", "entered", "left", "to", "at")
        _check_object(data, where, required, (*required, "error", "url"))
        for key in ("step", "key", "entered", "left", "at"):
            _check_type(data[key], str, "a string", f"{where}.{key}")
        for key in ("entered", "left"):
            if data[key] not in ROUTES:
                raise DefinitionError(f"{where}.{key}: expected one of {', '.join(ROUTES)}")
        if data["to"] is not None:
            _check_type(data["to"], str, "a step name or null", f"{where}.to")
        if data.get("error") is not None:
            _check_type(data["error"], dict, "an object", f"{where}.error")
        return cls(
            data["step"],
            data["key"],
            data["entered"],
            data["left"],
            data["to"],
            data["at"],
            data.get("error"),
            data.get("url"),
        )


@dataclass
class RunState:
    run_id: str
    workflow: str
    gwo: dict[str, Any]
    next_step: int = 0  # index into workflow.steps of the step to run (or being run)
    pending: PendingStep | None = None  # the step in flight
    status: str = RUNNING
    result: Any = None
    error: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # free space for stores and adapters
    children: list[ChildRun] = field(default_factory=list)  # sub-workflow runs, as started
    route: list[StepRun] = field(default_factory=list)  # each step execution, once it left

    @property
    def entered(self) -> str:
        """How the step to run (or being run) was entered: how the one before it left."""
        return self.route[-1].left if self.route else "start"

    @property
    def routed(self) -> bool:
        """Some step left other than in order (the record then shows the route)."""
        return any(run.left not in ("sequence", "end", "exit") for run in self.route)

    @classmethod
    def start(cls, workflow: str, input_data: Any, run_id: str | None = None) -> RunState:
        return cls(run_id=run_id or new_run_id(), workflow=workflow, gwo={"input": input_data})

    def to_dict(self) -> dict[str, Any]:
        """The saved form (schema SCHEMA). It shares the GWO, result, error and meta with this
        state rather than copying them: serialize it before the run goes on."""
        saved = self._to_dict()
        if self.children:  # written only by a run that started sub-workflows
            saved["children"] = [child.to_dict() for child in self.children]
        if self.route:  # written once a step has run
            saved["route"] = [run.to_dict() for run in self.route]
        return saved

    def _to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "workflow": self.workflow,
            "gwo": self.gwo,
            "next_step": self.next_step,
            "pending": None if self.pending is None else self.pending.to_dict(),
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunState:
        """A saved state of any schema from OLDEST_SCHEMA to SCHEMA; a DefinitionError for a
        newer schema or a shape that is not a saved run state."""
        _check_type(data, dict, "an object", _WHERE)
        schema = data.get("schema", 1)
        if isinstance(schema, bool) or not isinstance(schema, int) or schema < OLDEST_SCHEMA:
            raise DefinitionError(f"{_WHERE}: schema: expected a version number, got {schema!r}")
        if schema > SCHEMA:
            raise DefinitionError(
                f"{_WHERE}: saved by a newer lamrunner: schema {schema}; this one reads "
                f"{OLDEST_SCHEMA}–{SCHEMA}"
            )
        for upgrade in _UPGRADES[schema - OLDEST_SCHEMA :]:
            data = upgrade(data)
        where = f"{_WHERE} (schema {schema})"
        _check_object(data, where, required=_REQUIRED, allowed=_ALLOWED)
        for key, kind, what in _TYPES:
            _check_type(data[key], kind, what, f"{where}: {key}")
        if isinstance(data["next_step"], bool) or data["next_step"] < 0:
            raise DefinitionError(f"{where}: next_step: expected a step index >= 0")
        if data["status"] not in _STATUSES:
            raise DefinitionError(
                f"{where}: status: expected one of {', '.join(_STATUSES)}, got {data['status']!r}"
            )
        if data["error"] is not None:
            _check_type(data["error"], dict, "an object or null", f"{where}: error")
        pending = data["pending"]
        children = data.get("children") or []
        _check_type(children, list, "a list", f"{where}: children")
        route = data.get("route") or []
        _check_type(route, list, "a list", f"{where}: route")
        return cls(
            run_id=data["run_id"],
            workflow=data["workflow"],
            gwo=data["gwo"],
            next_step=data["next_step"],
            pending=None
            if pending is None
            else PendingStep.from_dict(pending, f"{where}: pending"),
            status=data["status"],
            result=data["result"],
            error=data["error"],
            meta=data["meta"],
            children=[
                ChildRun.from_dict(c, f"{where}: children[{i}]") for i, c in enumerate(children)
            ],
            route=[StepRun.from_dict(r, f"{where}: route[{i}]") for i, r in enumerate(route)],
        )

    def child(self, step: str, index: int) -> ChildRun | None:
        """The child run the call `index` of `step` started, if it started one."""
        return next((c for c in self.children if c.step == step and c.index == index), None)

    @property
    def finished(self) -> bool:
        """SUCCESS or FAILED: nothing left to run (a SUSPENDED run is not finished)."""
        return self.status in (SUCCESS, FAILED)

    @property
    def resume_at(self) -> float | None:
        """When a suspended run has work again: the earliest `next_due` (epoch seconds) of the
        polls of its step in flight that have not settled; None for a run that is not waiting."""
        if self.pending is None:
            return None
        due = [
            e.poll.next_due
            for e in self.pending.elements
            if e is not None and e.poll is not None and not e.done
        ]
        return min(due) if due else None

    def redrive(self, now: float | None = None) -> None:
        """Make a FAILED run runnable again from the step that failed (`lamrunner resume
        --redrive`): completed steps stay; of a failed step's requests, those that succeeded
        keep their results and the others start afresh (a poll from its first attempt, with a
        new Idempotency-Key); its handler is called again only if it had not returned. The
        redrive is added to `meta["redrives"]` (when, which step, the error it clears)."""
        if self.status != FAILED:
            raise DefinitionError(
                f"run {self.run_id} is {self.status}; only a FAILED run can be redriven"
            )
        at = time.time() if now is None else now
        redrives = self.meta.setdefault("redrives", [])
        redrives.append({"at": iso_ms(at), "fromStep": self.next_step + 1, "error": self.error})
        failed_step = f"step_{self.next_step + 1}"
        self.gwo.pop(failed_step, None)  # what the failed step left
        self.children = [  # a child that succeeded is kept, one that failed runs again
            c for c in self.children if c.step != failed_step or c.status == SUCCESS
        ]
        if self.pending is not None:
            keep = [
                e if e is not None and e.result is not None else None for e in self.pending.elements
            ]
            keys = self.pending.keys
            if keys is not None:
                keys = [
                    k if i < len(keep) and keep[i] is not None else None for i, k in enumerate(keys)
                ]
            self.pending = PendingStep(self.pending.output, keep, keys)
        self.status, self.error, self.result = RUNNING, None, None

    def record(self) -> dict[str, Any]:
        """The run record printed on stdout; a SUSPENDED one also has `resumeAt`; a run that
        sent onGiveUp requests has `giveUps`, a redriven one `redrives`, one that started
        sub-workflows `subWorkflows` (each child's step, mode, workflowId, runId, status and,
        once it ended, result or error), one whose steps did not all go in order `route` (every
        step execution: StepRun)."""
        record = {
            "runId": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "gwo": self.gwo,
        }
        if self.status == SUSPENDED:
            at = self.resume_at
            record["resumeAt"] = None if at is None else {"epoch": at, "iso": iso_ms(at)}
        for key in ("giveUps", "redrives"):  # not endedBy: the record's keys stay as they were
            if self.meta.get(key):
                record[key] = self.meta[key]
        if self.children:
            record["subWorkflows"] = [child.listed() for child in self.children]
        if self.routed:
            record["route"] = [run.to_dict() for run in self.route]
        return record


def iso_ms(epoch: float) -> str:
    """ISO 8601 in UTC to the millisecond: `2026-11-22T10:45:13.250Z`."""
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def failed_record(workflow: str | None, error: dict[str, Any]) -> dict[str, Any]:
    """The record for an invocation that was refused before anything ran (exit 2)."""
    return {
        "runId": None,
        "workflow": workflow,
        "status": FAILED,
        "result": None,
        "error": error,
        "gwo": None,
    }


# -- the saved form's versions -----------------------------------------------------------------


def _from_schema_1(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 (no "schema" key) has schema 2's layout: nothing to convert."""
    return data


# _UPGRADES[n - 1] turns a schema-n dict into a schema-(n + 1) one; a new schema appends its
# converter here (and bumps SCHEMA), so every saved state that ever was keeps a meaning.
_UPGRADES: tuple[Callable[[dict[str, Any]], dict[str, Any]], ...] = (_from_schema_1,)
assert len(_UPGRADES) == SCHEMA - OLDEST_SCHEMA

_REQUIRED = (
    "run_id",
    "workflow",
    "gwo",
    "next_step",
    "pending",
    "status",
    "result",
    "error",
    "meta",
)  # schema 1 (dataclasses.asdict of the RunState of its day) always wrote every one
_ALLOWED = (*_REQUIRED, "schema", "children", "route")
# A failed element's error: LamrunnerError.to_dict() and the attributes its types carry.
_ERROR_KEYS = ("type", "message", "step", "status", "attempts", "kind", "last_status")
_TYPES: tuple[tuple[str, type, str], ...] = (
    ("run_id", str, "a string"),
    ("workflow", str, "a string"),
    ("gwo", dict, "an object"),
    ("next_step", int, "a step index >= 0"),
    ("status", str, "a string"),
    ("meta", dict, "an object"),
)


def _check_object(
    data: Any, where: str, required: tuple[str, ...], allowed: tuple[str, ...] | None = None
) -> None:
    """`data` is a dict with every `required` key and (when `allowed` is given) no other."""
    _check_type(data, dict, "an object", where)
    missing = [key for key in required if key not in data]
    if missing:
        raise DefinitionError(f"{where}: missing {', '.join(missing)}")
    allowed = required if allowed is None else allowed
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise DefinitionError(f"{where}: unknown {', '.join(unknown)}")


def _check_type(value: Any, kind: type, what: str, where: str) -> None:
    if not isinstance(value, kind):
        raise DefinitionError(f"{where}: expected {what}, got {_kind(value)}")


def _kind(value: Any) -> str:
    """A JSON type name for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    name = names.get(type(value), type(value).__name__)
    if not isinstance(value, str | int | float):
        return name
    shown = repr(value)
    return f"{name} ({shown if len(shown) <= 40 else shown[:37] + '...'})"


def _keys(data: dict[str, Any]) -> str:
    return ", ".join(sorted(str(k) for k in data)) or "an empty object"


def _element_dict(entry: ElementState | None) -> dict[str, Any] | None:
    return None if entry is None else entry.to_dict()
