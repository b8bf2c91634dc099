"""YAML loading that reports mistakes as DefinitionErrors with file, line and column.

Two departures from plain `yaml.safe_load`, both to avoid silent surprises: a key given twice
in one mapping is an error (PyYAML would keep the last), and dates stay strings (so every
value remains JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import DefinitionError


class _Loader(yaml.SafeLoader):
    """SafeLoader with duplicate-key detection and no implicit timestamps."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # keys merged in from an anchor may be overridden: that is the point
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", mark
            )
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML (or JSON) text; `source` names it in errors."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise DefinitionError(f"{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{source}: invalid YAML: {exc}") from exc


def load_yaml(path: Path, *, what: str) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is a DefinitionError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DefinitionError(f"{path}: {what} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{path}: cannot read {what}: {exc}") from exc
    return parse_yaml(text, str(path))
