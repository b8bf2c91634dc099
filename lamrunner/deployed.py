"""A workflow deployed as a cloud function: the environment contract both hosts share.

`lamrunner package` writes `LAMRUNNER_WORKFLOW` (the workflow's path relative to the function's
code root, its working directory; default `workflow.yaml`) and `LAMRUNNER_CONFIG` (config
files, `:`-separated) into what it builds. The workflow is loaded (handlers resolved,
JavaScript compiled, config files read) once per (workflow, config files) and kept between
requests, because that is what a cold start costs; a failed load is not kept, so the next
request reports the problem again.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import Workflow, load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.logs.chain import handler_output

WORKFLOW = "LAMRUNNER_WORKFLOW"
CONFIG = "LAMRUNNER_CONFIG"
DEFAULT_WORKFLOW = "workflow.yaml"


def workflow_path(env: Mapping[str, str]) -> str:
    return env.get(WORKFLOW) or DEFAULT_WORKFLOW


def config_files(env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(f for f in env.get(CONFIG, "").split(":") if f)


def refuse_subworkflows(workflow: Workflow) -> None:
    """A DefinitionError for a workflow with a `workflows:` map (see the module docstring)."""
    if workflow.has_subworkflows:
        ids = ", ".join(workflow.workflows)
        raise DefinitionError(
            f"{workflow.path}: workflows ({ids}): sub-workflows (lam.execute, "
            f"lam.asyncExecute, lam.resolveThenExecute) are not supported in a cloud function "
            f"yet; run this workflow with `lamrunner run` (see docs/deploy.md#sub-workflows)"
        )


def refuse_routing(workflow: Workflow, host: str) -> None:
    """A DefinitionError for a routed workflow on a host whose checkpoints are one per step
    index (AWS durable functions: a step run twice would replay its first result)."""
    routed = [step.name for step in workflow.steps if step.route.routed]
    if routed:
        raise DefinitionError(
            f"{workflow.path}: steps {', '.join(routed)}: routing between steps (next, "
            f"onError, continueOnFailure) is not supported on {host} yet; run this workflow "
            "with `lamrunner run` or on GCP (see docs/declarative-steps.md#hosts)"
        )


def load_deployed(env: Mapping[str, str]) -> tuple[Workflow, dict[str, Any]]:
    """The deployed workflow and its config (its `config:` under the config files)."""
    return _loaded(workflow_path(env), config_files(env))


@functools.lru_cache(maxsize=8)
def _loaded(workflow: str, files: tuple[str, ...]) -> tuple[Workflow, dict[str, Any]]:
    env = dict(os.environ)
    with handler_output():  # a handler module that prints on import: a log line, not output
        loaded = load_workflow(workflow, env)
    refuse_subworkflows(loaded)
    return loaded, build_config(loaded.config, files, (), env)
