"""The Lambda entry point: the SDK's `@durable_execution` around lamrunner's durable run.

A run that ends SUCCESS is the execution's result. A run that ends FAILED fails the execution,
so the service's status, metrics and alarms say what happened: its error is lamrunner's error
message, and the run record rides along as the error's data (`ErrorData`, the same JSON).
"""

from __future__ import annotations

import json
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.exceptions import DurableOperationError

from lamrunner.aws.durable import execution_name, run_durable
from lamrunner.aws.function import deployed_app, parse_event
from lamrunner.errors import LamrunnerError
from lamrunner.runner.state import FAILED, failed_record


class RunFailed(DurableOperationError):
    """The run ended FAILED: `message` is its error's, `data` its run record as JSON."""

    def __init__(self, record: dict[str, Any]) -> None:
        error = record.get("error") or {}
        where = f"step {error['step']}: " if error.get("step") else ""
        super().__init__(
            message=f"{error.get('type', 'LamrunnerError')}: {where}{error.get('message', '')}",
            data=json.dumps(record),
        )


@durable_execution
def durable_handler(event: Any, context: DurableContext) -> dict[str, Any]:
    """`{"input": ..., "config": {...}}` → the run record (as `lamrunner run` prints it); a
    workflow or event that is wrong is a FAILED run naming what is wrong, never a crash."""
    app = None
    try:
        app = deployed_app()
        input_data, overrides = parse_event(event)
    except LamrunnerError as exc:
        record = failed_record(app.workflow.name if app else None, exc.to_dict())
        record["runId"] = execution_name(context)
    else:
        record = run_durable(context, app, input_data, overrides)
    if record["status"] == FAILED:
        raise RunFailed(record) from None
    return record
