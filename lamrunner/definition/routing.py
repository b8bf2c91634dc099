"""Routing between steps: `next`, `onError`, `continueOnFailure`, checked when the file loads.

Steps run in order unless one says otherwise. Every target names a step of the same file (a
typo is a DefinitionError naming the step and field, with the closest name), and a loop in
the route graph must be one the run can leave: following each step's success route (its
`next:`, else the step after it) from any step, the cycle reached must hold a step that can
leave it on data — see `may_leave`. Anything else would run until `limits.maxStepRuns`.
The engine takes the routes (runner/routes.py); this module only describes and checks them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lamrunner.definition.handlers import Handler
from lamrunner.definition.validation import check_keys, did_you_mean, expect_bool, expect_str
from lamrunner.errors import DefinitionError

ROUTE_KEYS = ("next", "onError", "continueOnFailure")
ON_ERROR_KEYS = ("next", "exit", "result", "action")
ACTION_KEYS = ("next", "exit", "result")
# what a program must mention to be able to end a run or route it on data (may_leave)
_LEAVING_WORDS = re.compile(r"lam\.exit|lam\.response|lam\.resolveThenExecute|actionFrom")


@dataclass(frozen=True)
class ErrorRoute:
    """`onError`: continue at `next`, or (`exit`) end the run SUCCESS with `result`."""

    next: str | None = None
    exit: bool = False
    result: Any = None  # `<<config.…>>` templates filled when the run takes the route


@dataclass(frozen=True)
class Route:
    """How a step leaves: where success goes (`next`; None: the step after it) and what a
    failure does (`on_error`, or `continue_on_failure`; neither: the run fails)."""

    next: str | None = None
    on_error: ErrorRoute | None = None
    continue_on_failure: bool = False

    @property
    def routed(self) -> bool:
        return self.next is not None or self.on_error is not None or self.continue_on_failure


class RoutedStep(Protocol):
    """What the checks read of a step (definition.workflow.Step)."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def handler(self) -> Handler: ...
    @property
    def route(self) -> Route: ...


def parse_route(item: Mapping[str, Any], where: str) -> Route:
    """A step's `next`, `onError` and `continueOnFailure` (targets checked later, once every
    step's name is known)."""
    target = None
    if "next" in item:
        target = expect_str(item["next"], f"{where}.next")
    on_error = _on_error(item["onError"], f"{where}.onError") if "onError" in item else None
    go_on = expect_bool(item.get("continueOnFailure", False), f"{where}.continueOnFailure")
    if go_on and on_error is not None:
        raise DefinitionError(
            f"{where}: onError and continueOnFailure both say what a failure does; keep one"
        )
    return Route(target, on_error, go_on)


def _on_error(raw: Any, where: str) -> ErrorRoute:
    """`{next: step}` or `{exit: true, result: data}`; seed 001's `{action: {...}}` alike."""
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"{where}: expected {{next: <step>}} or {{exit: true, result: …}}")
    check_keys(raw, ON_ERROR_KEYS, where)
    if "action" in raw:
        if len(raw) != 1:
            raise DefinitionError(f"{where}: action stands alone (it holds next or exit)")
        where = f"{where}.action"
        raw = raw["action"]
        if not isinstance(raw, Mapping):
            raise DefinitionError(f"{where}: expected {{next: <step>}} or {{exit: true, …}}")
        check_keys(raw, ACTION_KEYS, where)
    exits = expect_bool(raw.get("exit", False), f"{where}.exit")
    if exits == ("next" in raw):
        raise DefinitionError(
            f"{where}: expected either next: <step> or exit: true (with an optional result)"
        )
    if "result" in raw and not exits:
        raise DefinitionError(f"{where}.result: only an exit has a result; add exit: true")
    if exits:
        return ErrorRoute(exit=True, result=raw.get("result"))
    return ErrorRoute(next=expect_str(raw["next"], f"{where}.next"))


def check_routes(steps: Sequence[RoutedStep], where: str) -> None:
    """Every target exists; no route loop is one the run can never leave."""
    names = [step.name for step in steps]
    for step in steps:
        at = f"{where}: steps[{step.index - 1}] ({step.name})"
        if step.route.next is not None:
            target_index(names, step.route.next, f"{at}.next")
        if step.route.on_error is not None and step.route.on_error.next is not None:
            target_index(names, step.route.on_error.next, f"{at}.onError.next")
    for cycle in _success_cycles(steps, names):
        if not any(_leaves(steps[i], cycle, names) for i in cycle):
            shown = " -> ".join(steps[i].name for i in (*cycle, cycle[0]))
            raise DefinitionError(
                f"{where}: steps: the route loop {shown} can never end: none of its steps can "
                "leave it on data (a Python handler, a program that returns lam.exit, "
                "lam.response or a request with actionFrom, or an onError that leads out of "
                "the loop); give one of them such a way out, or break the loop"
            )


def target_index(names: Sequence[str], target: str, where: str) -> int:
    """The index of the step called `target`, or a DefinitionError naming `where` and the
    closest name."""
    if target in names:
        return names.index(target)
    raise DefinitionError(
        f"{where}: no step is called {target!r}{did_you_mean(target, names)}; "
        f"the steps are {', '.join(names)}"
    )


def success_index(steps: Sequence[RoutedStep], step: RoutedStep) -> int:
    """Where a step that succeeded goes: its `next`, else the step after it (len: the end)."""
    if step.route.next is None:
        return step.index
    return target_index([s.name for s in steps], step.route.next, f"{step.name}.next")


def may_leave(handler: Handler) -> bool:
    """Can this step's handler end the run or route it on data? A Python handler can do
    anything (its code is not read); a JavaScript or JQ program can when it mentions
    lam.exit, lam.response, lam.resolveThenExecute or actionFrom."""
    if handler.language == "python" or handler.source is None:
        return True
    return _LEAVING_WORDS.search(handler.source) is not None


def _leaves(step: RoutedStep, cycle: tuple[int, ...], names: Sequence[str]) -> bool:
    on_error = step.route.on_error
    if on_error is not None and (on_error.exit or names.index(str(on_error.next)) not in cycle):
        return True
    return may_leave(step.handler)


def _success_cycles(steps: Sequence[RoutedStep], names: Sequence[str]) -> list[tuple[int, ...]]:
    """The cycles of the success routes (each step has one: a functional graph), each once."""
    after = [
        names.index(s.route.next) if s.route.next is not None else s.index for s in steps
    ]  # len(steps): the run ends
    seen: set[int] = set()
    cycles: list[tuple[int, ...]] = []
    for start in range(len(steps)):
        path: list[int] = []
        at = start
        while at < len(steps) and at not in seen and at not in path:
            path.append(at)
            at = after[at]
        if at < len(steps) and at in path:
            cycles.append(tuple(path[path.index(at) :]))
        seen.update(path)
    return cycles
