"""The durable function's workflow (`lamrunner.deployed`: loaded once per container) and its
event, `{"input": ..., "config": {...}}`."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lamrunner.definition.config import deep_merge
from lamrunner.definition.workflow import Workflow
from lamrunner.deployed import load_deployed, refuse_routing
from lamrunner.errors import DefinitionError
from lamrunner.logs.chain import configure

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
    _configure_logs()
    app = DeployedApp(*load_deployed(os.environ))
    refuse_routing(app.workflow, "AWS Lambda durable functions")
    return app


@functools.cache
def _configure_logs() -> None:
    configure("json", capture_logging=True)  # one JSON line per event: what CloudWatch reads


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
