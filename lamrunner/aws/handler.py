"""The Lambda entry point: the SDK's `@durable_execution` around lamrunner's durable run."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution

from lamrunner.aws.durable import run_durable
from lamrunner.aws.function import deployed_app, parse_event
from lamrunner.errors import LamrunnerError
from lamrunner.runner.state import failed_record


@durable_execution
def durable_handler(event: Any, context: DurableContext) -> dict[str, Any]:
    """`{"input": ..., "config": {...}}` → the run record (as `lamrunner run` prints it); a
    workflow or event that is wrong is a FAILED record naming what is wrong, never a crash."""
    try:
        app = deployed_app()
        input_data, overrides = parse_event(event)
    except LamrunnerError as exc:
        return failed_record(None, exc.to_dict())
    return run_durable(context, app, input_data, overrides)
