"""The `workflows:` map: which file each Laminar workflow id names, checked when the file loads.

Laminar starts another workflow by its id (`{"lam.workflowId": 39, "lam.payload": {...}}`); a
lamrunner workflow file says what each id is with a `workflows:` map (`39: ./ship.yaml`, paths
relative to the file). Every file the map names is loaded and validated with its parent, once
(a workflow that names itself, directly or through others, is loaded once: the cycle is legal
Laminar and is bounded at run time by `limits.subWorkflowDepth`).

Handlers are code, so which ids they start is only known when they run; but most Laminar
handlers write the id as a literal, and those are checked here too: a handler file holding
`"lam.workflowId": 40` when the map has no 40 is refused at load, naming the file, the step and
the line, so `lamrunner validate` catches it before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamrunner.definition.handlers import Handler
from lamrunner.definition.validation import did_you_mean, expect_str, type_name
from lamrunner.errors import DefinitionError

# "lam.workflowId": 39 / 'lam.workflowId': "ship" (JS or Python source), the value a literal
_LITERAL_ID = re.compile(
    r"""["']lam\.workflowId["']\s*:\s*(?:(\d+)\b|"([^"\\\n]*)"|'([^'\\\n]*)')"""
)


def workflow_key(value: Any, where: str) -> str:
    """A workflow id as the map and the runner compare it: Laminar's ids are integers, names
    are also fine; `39` and `"39"` are the same id (YAML keys and JSON values differ so)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DefinitionError(
            f"{where}: a workflow id is a whole number or a name, got {type_name(value)}"
        )
    key = str(value).strip()
    if not key:
        raise DefinitionError(f"{where}: a workflow id cannot be empty")
    return key


def parse_workflows(raw: Any, path: Path) -> dict[str, Path]:
    """`workflows:` → {id: resolved file}; each file must exist (it is loaded next)."""
    where = f"{path}: workflows"
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise DefinitionError(
            f"{where}: expected a mapping of workflow ids to files "
            f"(39: ./ship.yaml), got {type_name(raw)}"
        )
    files: dict[str, Path] = {}
    for given, target in raw.items():
        key = workflow_key(given, f"{where}: key {given!r}")
        at = f"{where}.{key}"
        if key in files:
            raise DefinitionError(f"{at}: the id is given twice ({given!r} and another)")
        file = (path.parent / expect_str(target, at)).resolve()
        if not file.is_file():
            raise DefinitionError(f"{at}: no such workflow file {file}")
        files[key] = file
    return files


@dataclass(frozen=True)
class LiteralId:
    """A `lam.workflowId` written as a literal in a handler's source."""

    key: str
    line: int


def literal_ids(handler: Handler) -> Iterator[LiteralId]:
    """The workflow ids a handler's source names literally (its file, for a file handler)."""
    source = handler.source
    if source is None:
        file = Path(handler.location)
        if handler.language != "python" or not file.is_file():
            return
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return  # loading it already read it; nothing more to learn here
    for match in _LITERAL_ID.finditer(source):
        value = next(g for g in match.groups() if g is not None)
        yield LiteralId(value.strip(), source.count("\n", 0, match.start()) + 1)


def check_literal_ids(handler: Handler, known: Mapping[str, Path], where: str) -> None:
    """Refuse a handler that names, as a literal, a workflow id the map does not have."""
    for found in literal_ids(handler):
        if found.key and found.key not in known:
            raise DefinitionError(unknown_id_message(found.key, known, where, found.line))


def unknown_id_message(key: str, known: Mapping[str, Path], where: str, line: int = 0) -> str:
    """The one wording of "this id is not in the workflows: map", at load and at run time."""
    at = f" (line {line} of the handler)" if line else ""
    listed = ", ".join(known) if known else "none: the file has no workflows: map"
    return (
        f"{where}: lam.workflowId {key!r}{at} is not in the workflow file's workflows: map"
        f"{did_you_mean(key, known)}; known ids: {listed}"
    )
