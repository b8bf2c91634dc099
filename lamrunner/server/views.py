"""The runs page's JSON: what a person watching the server needs, made from the run store.

Read-only: every view is built from `store.pageviews` rows and the run's saved state. Times are
ISO 8601 (UTC, to the millisecond) and durations milliseconds; a run in progress has its
duration so far. Everything taken from a run's state (step results, the run's result and error)
is masked with the run's secrets, when the server knows them, and by key (a value under a
secret-looking name is `***`): attempt rows and errors were masked when they were made, but a
step's result is whatever its service answered. A large value is cut to VALUE_CHARS of JSON,
so a run with a 5 MB result still has a page that loads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from lamrunner.definition.workflow import Workflow
from lamrunner.errors import DefinitionError
from lamrunner.logs.masking import MASK, SECRET_NAME, Secrets
from lamrunner.runner.state import RunState
from lamrunner.store.pageviews import PageViews, RunDetail, RunRow

STATUSES = ("pending", "processing", "completed", "failed", "canceled", "expired")
LIVE = ("pending", "processing")  # the page keeps refreshing while a run is in one of these
CANCELABLE = LIVE
RESUMABLE = ("failed", "canceled")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
VALUE_CHARS = 20_000  # of a step result's JSON shown on the page
_HANDLED = ("onError.next", "onError.exit", "continueOnFailure")  # a step that failed, routed on

SecretsFor = Callable[[str], Secrets | None]  # workflow name -> its config's secrets


def runs_view(
    views: PageViews,
    query: Mapping[str, str],
    now: float,
    served: Collection[str] | None = None,
) -> dict[str, Any]:
    """The runs list for the page's query (status, workflow, before, limit). The workflow
    filter offers the `served` names; only a store read without a server asks the store
    (a scan of every job)."""
    status = _choice(query, "status", STATUSES)
    workflow = query.get("workflow") or None
    limit = _limit(query)
    before = _cursor(query.get("before"))
    rows, older = views.runs(workflow=workflow, status=status, limit=limit, before=before)
    listed = [_listed(row, now) for row in rows]
    return {
        "runs": listed,
        "older": None if older is None else f"{older[0]!r}~{older[1]}",
        "live": any(run["live"] for run in listed),
        "filters": {"status": status, "workflow": workflow},
        "statuses": list(STATUSES),
        "workflows": sorted(served) if served is not None else views.workflows(),
    }


def run_view(
    views: PageViews,
    job_id: str,
    now: float,
    secrets_for: SecretsFor | None = None,
    definitions: Mapping[str, Workflow] | None = None,
) -> dict[str, Any] | None:
    """A run's page: the run, its steps in order with their polls, its children; None when
    the store has no such run. `secrets_for(workflow)`: the secrets to mask its data with;
    `definitions` (served workflows by name): the run's steps that have not run are listed
    too, from its workflow's definition."""
    detail = views.run(job_id)
    if detail is None:
        return None
    mask = _masker(None if secrets_for is None else secrets_for(detail.row.workflow))
    run = _listed(detail.row, now)
    state = detail.state
    definition = None if definitions is None else definitions.get(detail.row.workflow)
    steps = _steps(detail, run, now, mask)
    if definition is not None:
        steps = _with_unrun(steps, definition)
    run.update(
        {
            "runStatus": detail.row.run_status,
            "result": _value(mask(state.result)) if state.finished else None,
            "error": mask(state.error),
            "canCancel": run["status"] in CANCELABLE,
            "canResume": run["status"] in RESUMABLE,
            "parent": detail.parent,
            "resumes": [
                {"at": r.get("at"), "fromStep": r.get("fromStep")}
                for r in state.meta.get("redrives", [])
                if isinstance(r, dict)
            ],
        }
    )
    return {
        "run": run,
        "steps": steps,
        "children": [{**child, "createdAt": _iso(child["createdAt"])} for child in detail.children],
    }


def _listed(row: RunRow, now: float) -> dict[str, Any]:
    live = row.status in LIVE
    return {
        "jobId": row.job_id,
        "workflow": row.workflow,
        "status": row.status,
        "createdAt": _iso(row.created_at),
        "updatedAt": _iso(row.updated_at),
        "durationMs": _ms((now if live else row.updated_at) - row.created_at),
        "attempts": row.attempts,
        "live": live,
    }


def _steps(
    detail: RunDetail, run: dict[str, Any], now: float, mask: Callable[[Any], Any]
) -> list[dict[str, Any]]:
    """Each step execution in order, then the step in flight (or the one the run failed in)."""
    state = detail.state
    polls = _polls(detail)
    steps: list[dict[str, Any]] = []
    began = detail.row.created_at
    last_of_key = {entry.key: i for i, entry in enumerate(state.route)}
    for i, entry in enumerate(state.route):
        ended = _epoch(entry.at, began)
        handled = entry.left in _HANDLED
        steps.append(
            {
                "key": entry.key,
                "name": entry.step,
                "status": "failed" if handled else "completed",
                "startedAt": _iso(began),
                "durationMs": _ms(ended - began),
                "left": entry.left,
                "to": entry.to,
                "result": _value(mask(state.gwo.get(entry.key))),
                "error": mask(entry.error),
                "polls": polls.pop(entry.key, []) if last_of_key[entry.key] == i else [],
            }
        )
        began = ended
    current = _current(state, run, polls)
    if current is not None:
        ended = now if run["live"] else detail.row.updated_at
        current.update({"startedAt": _iso(began), "durationMs": _ms(ended - began)})
        steps.append(current)
    return steps


def _with_unrun(steps: list[dict[str, Any]], workflow: Workflow) -> list[dict[str, Any]]:
    """`steps` (as they ran) with each step of `workflow` that has not run put in, `not
    started`, after the last one that ran before it in the definition; names from it too."""
    names = {f"step_{step.index}": step.name for step in workflow.steps}
    shown = [{**step, "name": names.get(step["key"], step["name"])} for step in steps]
    ran = {step["key"] for step in steps}
    for step in workflow.steps:
        key = f"step_{step.index}"
        if key in ran:
            continue
        at = max((i + 1 for i, s in enumerate(shown) if _number(s["key"]) < step.index), default=0)
        shown.insert(at, _unrun(key, step.name))
    return shown


def _unrun(key: str, name: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": name,
        "status": "not-started",
        "startedAt": None,
        "durationMs": None,
        "left": None,
        "to": None,
        "result": None,
        "error": None,
        "polls": [],
    }


def _number(key: str) -> int:
    """step_3 -> 3."""
    tail = key.rpartition("_")[2]
    return int(tail) if tail.isdigit() else 0


def _current(
    state: RunState, run: dict[str, Any], polls: dict[str, list[dict[str, Any]]]
) -> dict[str, Any] | None:
    """The step in flight, or the one a failed or canceled run stopped in."""
    if state.status == "SUCCESS" or (state.error is None and not run["live"]):
        return None
    key = f"step_{state.next_step + 1}"
    step_polls = polls.pop(key, [])
    name = (
        (state.error or {}).get("step")
        or (state.route[-1].to if state.route else None)
        or next((p["stepName"] for p in step_polls if p.get("stepName")), None)
    )
    return {
        "key": key,
        "name": name or key,
        "status": "running" if run["status"] == "processing" else run["status"],
        "left": None,
        "to": None,
        "result": None,
        "error": None,  # the run's error, shown once, with the run
        "polls": step_polls,
    }


def _polls(detail: RunDetail) -> dict[str, list[dict[str, Any]]]:
    """Per step key, its polled requests: counts, and the kept attempts as a timeline with
    a gap where the middle of a long poll was elided."""
    rows: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in detail.attempts:
        rows.setdefault((row["stepIndex"], row["element"]), []).append(row)
    by_key: dict[str, list[dict[str, Any]]] = {}
    for count in detail.poll_counts:
        where = (count["stepIndex"], count["element"])
        by_key.setdefault(f"step_{where[0] + 1}", []).append(
            {
                "element": count["element"],
                "stepName": count["stepName"],
                "attempts": count["attempts"],
                "elided": count["elided"],
                "statuses": count["statuses"],
                "timeline": _timeline(rows.get(where, [])),
            }
        )
    return by_key


def _timeline(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    timeline: list[dict[str, Any]] = []
    previous = 0
    for row in rows:
        if row["attempt"] > previous + 1:
            timeline.append({"elided": row["attempt"] - previous - 1})
        previous = row["attempt"]
        timeline.append(
            {
                "attempt": row["attempt"],
                "at": row["at"],
                "status": row["status"],
                "outcome": row["outcome"],
                "error": row["error"],
                "durationMs": row["durationMs"],
                "delayMs": row["delayMs"],
                "lastResponse": row["lastResponse"],
                "progress": row.get("progress"),
            }
        )
    return timeline


def _masker(secrets: Secrets | None) -> Callable[[Any], Any]:
    def mask(value: Any) -> Any:
        value = _mask_keys(value)
        return value if secrets is None else secrets.mask_data(value)

    return mask


def _mask_keys(value: Any) -> Any:
    """`***` for every plain value under a secret-looking key (`apiKey`, `authorization`…)."""
    if isinstance(value, dict):
        return {
            k: MASK
            if SECRET_NAME.search(str(k)) and not isinstance(v, dict | list) and v is not None
            else _mask_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_keys(v) for v in value]
    return value


def _value(value: Any) -> Any:
    """A value as shown: itself, or when its JSON is over VALUE_CHARS, that JSON cut."""
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= VALUE_CHARS:
        return value
    return {"truncated": True, "bytes": len(text.encode()), "start": text[:VALUE_CHARS]}


def _choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = query.get(name) or None
    if value is not None and value not in allowed:
        raise DefinitionError(f"query {name}: expected one of {', '.join(allowed)}")
    return value


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit") or str(PAGE_SIZE)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise DefinitionError(f"query limit: expected a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def _cursor(raw: str | None) -> tuple[float, str] | None:
    """The `older` link's cursor, `CREATED~ID`, as `runs_view` made it."""
    if not raw:
        return None
    created, sep, ident = raw.partition("~")
    try:
        moment = float(created)
    except ValueError:
        moment = math.nan
    if not (sep and ident and math.isfinite(moment)):
        raise DefinitionError("query before: not a cursor this page made (follow its older link)")
    return moment, ident


def _epoch(iso: str, default: float) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
