"""Reading YAML and JSON that people write: every mistake is a DefinitionError naming where.

Departures from plain `yaml.safe_load`, all to avoid silent surprises: a key given twice in one
mapping is an error (PyYAML would keep the last); dates stay strings; and whatever is loaded
must be JSON (no `!!binary`, sets, NaN or infinities), because the GWO and config are JSON end
to end. JSON text is read as JSON (not as YAML, which reads `1e-05` as a string), also
refusing NaN and infinities. Nesting deep enough to exhaust the stack is an error too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from lamrunner.errors import DefinitionError


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
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a mapping key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", mark
            )
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML (or JSON) text into JSON values; `source` names it in errors."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise DefinitionError(f"{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{source}: invalid YAML: {exc}") from exc
    except RecursionError:
        raise DefinitionError(f"{source}: nested too deeply") from None
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # a tag PyYAML cannot build
        raise DefinitionError(
            f"{source}: a value cannot be read ({type(exc).__name__}: {exc}); check explicit !!tags"
        ) from None
    check_json(data, source)
    return data


def parse_json(text: str, source: str) -> Any:
    """Parse JSON text, refusing NaN, infinities and absurd nesting."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise DefinitionError(f"{source}: nested too deeply") from None
    except ValueError as exc:
        raise DefinitionError(f"{source}: not valid JSON ({exc})") from None


def load_json_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DefinitionError(f"{path}: cannot read it ({_reason(exc)})") from None
    return parse_json(text, str(path))


def check_json(value: Any, source: str) -> None:
    """Refuse values JSON cannot carry (bytes, sets, dates, NaN…) and self-references."""
    try:
        _check(value, source)
    except RecursionError:
        raise DefinitionError(f"{source}: nested too deeply (or refers to itself)") from None


def _check(value: Any, source: str) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _check(item, source)
    elif isinstance(value, list):
        for item in value:
            _check(item, source)
    elif isinstance(value, float) and not math.isfinite(value):
        raise DefinitionError(f"{source}: {value} is not a JSON number")
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise DefinitionError(
            f"{source}: a {type(value).__name__} value cannot be used (only JSON values: "
            "text, numbers, true/false, null, lists and mappings)"
        )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def load_yaml(path: Path, *, what: str) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is a DefinitionError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DefinitionError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DefinitionError(f"{path}: cannot read {what}: {_reason(exc)}") from None
    return parse_yaml(text, str(path))
