"""What a deployed workflow reads from its function: the environment contract and the event.

`LAMRUNNER_WORKFLOW` (default `workflow.yaml`, relative to the function's code root) names the
workflow, `LAMRUNNER_CONFIG` (`a.yaml:b.yaml`) its config files; `lamrunner package` writes both.
They are loaded once per container: a warm invocation pays nothing for them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamrunner.definition.config import build_config, deep_merge
from lamrunner.definition.workflow import Workflow, load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.logs.chain import configure, handler_output

DEFAULT_WORKFLOW = "workflow.yaml"
_EVENT_KEYS = ("input", "config")


@dataclass(frozen=True)
class DeployedApp:
    """A workflow as deployed: its definition and its config, resolved once."""

    workflow: Workflow
    config: Mapping[str, Any]

    def config_for(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The run's config: the event's overrides deep-merged over the deployed config."""
        return deep_merge(self.config, overrides)


def deployed_app() -> DeployedApp:
    """The function's workflow and config, from its environment (once per container)."""
    env = os.environ
    return _load(env.get("LAMRUNNER_WORKFLOW") or DEFAULT_WORKFLOW, env.get("LAMRUNNER_CONFIG", ""))


@functools.cache
def _load(workflow: str, config_files: str) -> DeployedApp:
    configure("json", capture_logging=True)  # one JSON line per event: what CloudWatch reads
    env = dict(os.environ)
    with handler_output():
        loaded = load_workflow(Path(workflow), env)
    files = [f for f in config_files.split(":") if f]
    return DeployedApp(loaded, build_config(loaded.config, files, (), env))


def parse_event(event: Any) -> tuple[Any, dict[str, Any]]:
    """`{"input": ..., "config": {...}}`, both optional → (input, config overrides)."""
    if event is None:
        return None, {}
    if not isinstance(event, Mapping):
        raise DefinitionError(
            f"event: expected an object with `input` and/or `config`, got {_kind(event)}"
        )
    unknown = sorted(str(k) for k in event if k not in _EVENT_KEYS)
    if unknown:
        raise DefinitionError(
            f"event: unknown key(s) {', '.join(unknown)}; expected `input` and/or `config`"
        )
    overrides = event.get("config") or {}
    if not isinstance(overrides, Mapping):
        raise DefinitionError(
            f"event.config: expected an object of overrides, got {_kind(overrides)}"
        )
    return event.get("input"), dict(overrides)


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
