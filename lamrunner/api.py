"""The two calls most users need: `run` (blocking) and `arun` (async).

Embedded, lamrunner leaves the program's own output and logging alone: whatever a handler
prints or writes to stderr — at import time too — becomes a log line on lamrunner's structlog
chain (`logs.StreamProxy`), and everything else the program writes passes through untouched.
The standard library's `logging` is the program's to configure; call `lamrunner.logs.chain.configure()`
to send it through lamrunner's chain as the CLI does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import Workflow, load_workflow
from lamrunner.logs.chain import handler_output
from lamrunner.runner import loop as aio
from lamrunner.runner.engine import Engine


async def arun(
    workflow: str | Path | Workflow,
    input: Any = None,  # noqa: A002 - the GWO calls it input
    *,
    config_files: Sequence[str] = (),
    sets: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run a workflow and return its run record. Definition problems raise DefinitionError."""
    env = os.environ if env is None else env
    if not isinstance(workflow, Workflow):
        with handler_output():  # a handler module that prints on import: its output, too
            workflow = load_workflow(workflow, env)
    config = build_config(workflow.config, config_files, sets, env)
    return await Engine(workflow, config).run(input)


def run(workflow: str | Path | Workflow, input: Any = None, **options: Any) -> dict[str, Any]:  # noqa: A002
    """Blocking `arun` (on uvloop when it is installed)."""
    return aio.run(arun(workflow, input, **options))
