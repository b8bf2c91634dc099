"""The workflow model: a YAML file validated once into frozen objects.

Everything that can be checked before a run is checked here — keys, limits, durations,
environment variables, every handler resolved and every JS file compiled, every sub-workflow
of the `workflows:` map loaded the same way — so a broken file fails with exit 2 and a message
naming the file and the field, and nothing is sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamrunner import defaults
from lamrunner.definition.config import expand_env
from lamrunner.definition.handlers import Handler, load_handler
from lamrunner.definition.pollstep import PollStep, from_external_api, parse_poll
from lamrunner.definition.routing import ROUTE_KEYS, Route, check_routes, parse_route
from lamrunner.definition.subworkflows import (
    check_literal_ids,
    parse_workflows,
    unknown_id_message,
    workflow_key,
)
from lamrunner.definition.validation import (
    check_keys,
    expect_bool,
    expect_int,
    expect_mapping,
    expect_str,
)
from lamrunner.definition.yamlfile import load_yaml
from lamrunner.errors import DefinitionError
from lamrunner.units import noting_durations, parse_duration, parse_size

WORKFLOW_KEYS = ("name", "description", "config", "steps", "limits", "network", "workflows")
NETWORK_KEYS = ("allowLinkLocal",)
# a step is a handler or a declarative `poll:`, and may say where the run goes next
STEP_KEYS = ("name", "handler", "description", "poll", *ROUTE_KEYS)
POLL_LANGUAGE = "poll"  # a poll step's Handler: no code, the engine runs its `poll`
LIMIT_KEYS = (
    "handlerTimeout",
    "handlerMemory",
    "conditionTimeout",
    "conditionMemory",
    "concurrency",
    "maxResponseBytes",
    "subWorkflowDepth",
    "maxStepRuns",
)


@dataclass(frozen=True)
class Limits:
    handler_timeout: float = defaults.HANDLER_TIMEOUT
    handler_memory: int = defaults.HANDLER_MEMORY
    condition_timeout: float = defaults.CONDITION_TIMEOUT
    condition_memory: int = defaults.CONDITION_MEMORY
    concurrency: int = defaults.CONCURRENCY
    max_response_bytes: int = defaults.MAX_RESPONSE_BYTES
    subworkflow_depth: int = defaults.SUBWORKFLOW_DEPTH  # the root run's limit binds its tree
    max_step_runs: int = defaults.MAX_STEP_RUNS  # step executions in one run (route loops)


@dataclass(frozen=True)
class Network:
    allow_link_local: bool = (
        defaults.ALLOW_LINK_LOCAL
    )  # 169.254.0.0/16, fe80::/10, fd00:ec2::254 (see netpolicy)


@dataclass(frozen=True)
class Step:
    index: int  # 1-based
    name: str  # the label in logs and errors; defaults to the GWO key
    handler: Handler
    poll: PollStep | None = None  # a declarative poll step (its handler is a placeholder)
    description: str = ""
    route: Route = field(default_factory=Route)  # next / onError / continueOnFailure

    @property
    def key(self) -> str:
        """The step's key in the GWO: step_1, step_2, …"""
        return f"step_{self.index}"


@dataclass(frozen=True)
class Workflow:
    name: str
    path: Path
    steps: tuple[Step, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = Limits()
    network: Network = Network()
    description: str = ""
    warnings: tuple[str, ...] = ()  # suspicious durations, e.g. `handlerTimeout: 5000` (seconds)
    workflows: Mapping[str, Path] = field(default_factory=dict)  # workflow id -> its file
    # every workflow loaded with this one (its sub-workflows, theirs, …), by file: shared, so a
    # workflow that names itself is loaded once; filled while loading, never changed after
    library: Mapping[Path, Workflow] = field(default_factory=dict, compare=False, repr=False)

    def child(self, workflow_id: int | str, where: str) -> Workflow:
        """The workflow `workflow_id` names in this file's `workflows:` map (a DefinitionError
        naming `where` and the known ids when it names none)."""
        key = workflow_key(workflow_id, where)
        file = self.workflows.get(key)
        if file is None or file not in self.library:
            raise DefinitionError(unknown_id_message(key, self.workflows, where))
        return self.library[file]

    @property
    def has_subworkflows(self) -> bool:
        return bool(self.workflows)

    @property
    def routed(self) -> bool:
        """A step has `next`, `onError` or `continueOnFailure`."""
        return any(step.route.routed for step in self.steps)


def load_workflow(path: str | Path, env: Mapping[str, str] | None = None) -> Workflow:
    """Read, validate and resolve a workflow file and every workflow its `workflows:` map
    names (theirs too, each file once); raise DefinitionError on any mistake."""
    env = os.environ if env is None else env
    library: dict[Path, Workflow] = {}
    root = _load_one(Path(path), env, library)
    todo = list(root.workflows.items())
    parents = {file: root.path for _key, file in todo}
    while todo:
        key, file = todo.pop(0)
        if file in library:
            continue
        try:
            child = _load_one(file, env, library, file)
        except DefinitionError as exc:
            raise exc.replaced(message=f"{parents[file]}: workflows.{key}: {exc.message}") from None
        for item in child.workflows.items():
            parents.setdefault(item[1], file)
            todo.append(item)
    return root


def _load_one(
    path: Path, env: Mapping[str, str], library: dict[Path, Workflow], key: Path | None = None
) -> Workflow:
    """One file, added to `library` (under its resolved path) before its children load."""
    workflow = _parse(path, env, library)
    library[key or path.resolve()] = workflow
    return workflow


def _parse(path: Path, env: Mapping[str, str], library: Mapping[Path, Workflow]) -> Workflow:
    data = load_yaml(path, what="workflow file")
    where = str(path)
    if not isinstance(data, Mapping):
        raise DefinitionError(f"{where}: a workflow file must be a mapping with name and steps")
    check_keys(data, WORKFLOW_KEYS, where, required=("name", "steps"))
    name = expect_str(data["name"], f"{where}: name")
    config = expand_env(
        expect_mapping(data.get("config") or {}, f"{where}: config"), env, f"{where}: config"
    )
    with noting_durations() as notes:
        limits = _limits(data.get("limits") or {}, f"{where}: limits")
    workflows = parse_workflows(data.get("workflows"), path)
    return Workflow(
        name=name,
        path=path,
        steps=_steps(data["steps"], path, workflows),
        config=config,
        limits=limits,
        network=_network(data.get("network") or {}, f"{where}: network"),
        description=str(data.get("description") or ""),
        warnings=tuple(notes),
        workflows=workflows,
        library=library,
    )


def _steps(raw: Any, path: Path, workflows: Mapping[str, Path]) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        raise DefinitionError(f"{path}: steps must be a non-empty list")
    steps: list[Step] = []
    names: set[str] = set()
    for index, item in enumerate(raw, start=1):
        where = f"{path}: steps[{index - 1}]"
        if isinstance(item, str):
            item = {"handler": item}
        item = expect_mapping(item, where)
        if "stepType" in item:  # seed 000's POLL_EXTERNAL_API object, as it is written
            item = from_external_api(item, where)
        check_keys(item, STEP_KEYS, where)
        name = expect_str(item.get("name", f"step_{index}"), f"{where}.name")
        if name in names:
            raise DefinitionError(f"{where}.name: another step is already called {name!r}")
        names.add(name)
        steps.append(_step(item, index, name, path, workflows, where))
    check_routes(steps, str(path))
    return tuple(steps)


def _step(
    item: Mapping[str, Any],
    index: int,
    name: str,
    path: Path,
    workflows: Mapping[str, Path],
    where: str,
) -> Step:
    """One step: a handler, or a `poll:` (exactly one of them)."""
    if ("handler" in item) == ("poll" in item):
        both = "both handler and poll" if "handler" in item else "neither handler nor poll"
        raise DefinitionError(
            f"{where}: a step has a handler (code) or a poll (declarative), got {both}"
        )
    description = str(item.get("description") or "")
    route = parse_route(item, where)
    if "poll" in item:
        poll = parse_poll(item["poll"], f"{where} ({name}).poll")
        handler = Handler("poll", POLL_LANGUAGE, f"{path}: steps[{index - 1}] ({name}).poll")
        return Step(index, name, handler, poll, description, route)
    spec = expect_str(item["handler"], f"{where}.handler")
    handler = load_handler(spec.strip(), path.parent, f"{where}.handler")
    check_literal_ids(handler, workflows, f"{where} ({name}).handler {spec.strip()}")
    return Step(index, name, handler, None, description, route)


def _limits(raw: Any, where: str) -> Limits:
    raw = expect_mapping(raw, where)
    check_keys(raw, LIMIT_KEYS, where)
    base = Limits()
    return Limits(
        handler_timeout=_positive(raw, "handlerTimeout", base.handler_timeout, where),
        handler_memory=_size(raw, "handlerMemory", base.handler_memory, where),
        condition_timeout=_positive(raw, "conditionTimeout", base.condition_timeout, where),
        condition_memory=_size(raw, "conditionMemory", base.condition_memory, where),
        concurrency=expect_int(
            raw.get("concurrency", base.concurrency), f"{where}.concurrency", minimum=1
        ),
        max_response_bytes=_size(raw, "maxResponseBytes", base.max_response_bytes, where),
        subworkflow_depth=expect_int(
            raw.get("subWorkflowDepth", base.subworkflow_depth),
            f"{where}.subWorkflowDepth",
            minimum=1,
        ),
        max_step_runs=expect_int(
            raw.get("maxStepRuns", base.max_step_runs), f"{where}.maxStepRuns", minimum=1
        ),
    )


def _network(raw: Any, where: str) -> Network:
    raw = expect_mapping(raw, where)
    check_keys(raw, NETWORK_KEYS, where)
    return Network(
        expect_bool(raw.get("allowLinkLocal", defaults.ALLOW_LINK_LOCAL), f"{where}.allowLinkLocal")
    )


def _positive(raw: Mapping[str, Any], key: str, default: float, where: str) -> float:
    seconds = parse_duration(raw.get(key, default), f"{where}.{key}")
    if seconds <= 0:
        raise DefinitionError(f"{where}.{key}: must be longer than zero")
    return seconds


def _size(raw: Mapping[str, Any], key: str, default: int, where: str) -> int:
    return parse_size(raw.get(key, default), f"{where}.{key}")
