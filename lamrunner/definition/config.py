"""The configuration store: `config:` in the workflow, then `--config FILE`s, then `--set`s.

Layers are deep-merged (later wins). `${VAR}` and `${VAR:-default}` in any string are expanded
from the environment when a layer is loaded, so a missing variable is reported before anything
runs; `$${` stands for a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lamrunner.definition.yamlfile import load_json_file, load_yaml, parse_json
from lamrunner.errors import DefinitionError

_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def expand_env(value: Any, env: Mapping[str, str], where: str) -> Any:
    """Expand ${VAR} / ${VAR:-default} in every string inside `value`."""
    try:
        return _expand(value, env, where)
    except RecursionError:
        raise DefinitionError(f"{where}: nested too deeply (or refers to itself)") from None


def map_strings(value: Any, where: str, fn: Callable[[str, str], Any]) -> Any:
    """`value` with `fn(text, where)` applied to every string in it, `where` naming the field
    (`a.b[2]`): the one walker `${VAR}` expansion and template rendering share."""
    if isinstance(value, str):
        return fn(value, where)
    if isinstance(value, Mapping):
        return {k: map_strings(v, f"{where}.{k}", fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, f"{where}[{i}]", fn) for i, v in enumerate(value)]
    return value


def _expand(value: Any, env: Mapping[str, str], where: str) -> Any:
    return map_strings(value, where, lambda text, at: _expand_string(text, env, at))


def _expand_string(text: str, env: Mapping[str, str], where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if (value and default is not None) or (value is not None and default is None):
            return value
        if default is not None:
            return default  # shell semantics: `:-` also covers a variable set but empty
        raise DefinitionError(
            f"{where}: environment variable {name} is not set "
            f"(set it, or write ${{{name}:-default}})"
        )

    return _ENV.sub(substitute, text)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A new mapping: `override` wins, mappings merge key by key, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def load_config_file(path: str | Path, env: Mapping[str, str]) -> dict[str, Any]:
    """One `--config FILE` layer (YAML, or JSON for *.json), environment-expanded."""
    path = Path(path)
    data = (
        load_json_file(path)
        if path.suffix.lower() == ".json"
        else load_yaml(path, what="config file")
    )
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise DefinitionError(f"{path}: a config file must hold a mapping at the top level")
    if is_laminar_store(data):
        data = laminar_store_properties(data, str(path))
    expanded: dict[str, Any] = expand_env(data, env, str(path))  # a mapping stays a dict
    return expanded


# What Laminar's configuration-store export holds besides its properties; a file with any other
# top-level key is an ordinary config mapping (which may well have its own `properties`).
_STORE_FIELDS = frozenset(
    {
        "id",
        "name",
        "description",
        "workspaceId",
        "properties",
        "flowCredentialPairs",
        "createdAt",
        "updatedAt",
    }
)


def is_laminar_store(data: Mapping[str, Any]) -> bool:
    """A Laminar configuration store: `properties` is a list of `{key, value}` objects and the
    other top-level keys are the store's own (name, workspaceId, ...)."""
    properties = data.get("properties")
    return (
        isinstance(properties, list)
        and set(data) <= _STORE_FIELDS
        and all(isinstance(p, Mapping) and "key" in p for p in properties)
    )


def laminar_store_properties(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The store's properties as a config mapping: `{"key": "a.b", "value": 1}` is `a.b`, so
    `{{props.a.b}}` and `{{config.a.b}}` read it (a dotted key nests, as `--set a.b=1` does)."""
    config: dict[str, Any] = {}
    for index, prop in enumerate(data["properties"]):
        key = prop["key"]
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise DefinitionError(
                f"{where}: properties[{index}].key must be a name like apiVersion or api.url, "
                f"got {key!r}"
            )
        config = apply_set(config, key.split("."), prop.get("value"))
    return config


def parse_set(text: str) -> tuple[list[str], Any]:
    """`key.path=value` → (['key', 'path'], value). Values are JSON when they parse, else text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise DefinitionError(
            f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set api.timeout=30"
        )
    try:
        value = parse_json(raw, f"--set {key}")
    except DefinitionError as exc:
        if "nested too deeply" in exc.message:
            raise
        value = raw  # not JSON: the text itself
    return key.split("."), value


def apply_set(config: Mapping[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A new config with `value` placed at `path`, creating mappings on the way."""
    nested: Any = value
    for part in reversed(path):
        nested = {part: nested}
    return deep_merge(config, nested)


def build_config(
    base: Mapping[str, Any],
    files: Sequence[str] = (),
    sets: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """All layers merged, in the documented order."""
    for name, given in (("files", files), ("sets", sets)):
        if isinstance(given, str):  # a str is a Sequence[str] too: one letter per layer
            raise TypeError(f"build_config: {name} is a list of strings, not one string")
    env = env if env is not None else {}
    config = dict(base)
    for path in files:
        config = deep_merge(config, load_config_file(path, env))
    for text in sets:
        config = apply_set(config, *parse_set(text))
    return config


_MISSING = object()


def lookup(config: Mapping[str, Any], dotted: str) -> Any:
    """The value at `a.b.c`, or raise KeyError naming the first part that is missing."""
    node: Any = config
    walked: list[str] = []
    for part in dotted.split("."):
        value = node.get(part, _MISSING) if isinstance(node, Mapping) else _MISSING
        if value is _MISSING and isinstance(node, list) and part.isascii() and part.isdigit():
            value = node[int(part)] if int(part) < len(node) else _MISSING
        if value is _MISSING:
            raise KeyError(".".join([*walked, part]))
        walked.append(part)
        node = value
    return node
