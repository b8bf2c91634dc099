"""A run's progress as one plain, JSON-serializable value, and the run record made from it.

The engine advances a RunState and hands it to a checkpoint hook at every step boundary and
after every poll attempt. Everything needed to continue is in it — the GWO so far, the index of
the next step, and for a step in flight the handler's directive (so the handler is not called
again) with each request's poll state or result — so a run store can persist it and a later
process, or a later cloud-function invocation, can resume the run where it stopped.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

RUNNING, SUCCESS, FAILED = "RUNNING", "SUCCESS", "FAILED"


def new_run_id(now: float | None = None) -> str:
    """Sortable and readable: 20261122-104512-3fa9c1."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass
class RunState:
    run_id: str
    workflow: str
    gwo: dict[str, Any]
    next_step: int = 0  # index into workflow.steps of the step to run (or being run)
    pending: dict[str, Any] | None = None  # {"output": directive, "elements": [...]} in flight
    status: str = RUNNING
    result: Any = None
    error: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # free space for stores and adapters

    @classmethod
    def start(cls, workflow: str, input_data: Any, run_id: str | None = None) -> RunState:
        return cls(run_id=run_id or new_run_id(), workflow=workflow, gwo={"input": input_data})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(**data)

    @property
    def finished(self) -> bool:
        return self.status != RUNNING

    def record(self) -> dict[str, Any]:
        """The run record printed on stdout."""
        return {
            "runId": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "gwo": self.gwo,
        }


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
