"""`<<config.key>>` templates (and the Laminar spellings `{{config.key}}`, `{{props.key}}`).

A string that is exactly one template takes the value's own type (a number stays a number);
inside a longer string the value is written as text (objects as compact JSON). A key that the
config lacks is a TemplateError naming the key and the field, raised before anything is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from lamrunner.definition.config import lookup, map_strings
from lamrunner.errors import TemplateError

_TEMPLATE = re.compile(
    r"<<\s*([A-Za-z_]\w*)\.([\w-]+(?:\.[\w-]+)*)\s*>>"
    r"|\{\{\s*(config|props)\.([\w-]+(?:\.[\w-]+)*)\s*\}\}"
)
_NAMESPACES = ("config", "props")


def has_template(text: str) -> bool:
    return _TEMPLATE.search(text) is not None


def render(
    value: Any,
    config: Mapping[str, Any],
    where: str,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """`value` with every template in every string (recursively) filled from `config`, and
    `<<name.key>>` from `extra[name]` for the other namespaces given (onGiveUp's `last`)."""
    return map_strings(value, where, lambda text, at: render_string(text, config, at, extra))


def render_string(
    text: str,
    config: Mapping[str, Any],
    where: str,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    if "<<" not in text and "{{" not in text:
        return text
    whole = _TEMPLATE.fullmatch(text.strip())
    if whole:
        return _value(whole, config, where, extra)
    return _TEMPLATE.sub(lambda m: to_text(_value(m, config, where, extra)), text)


def to_text(value: Any) -> str:
    """How a value reads inside a longer string: JS-like scalars, compact JSON for the rest."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _value(
    match: re.Match[str],
    config: Mapping[str, Any],
    where: str,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    namespace = match.group(1) or match.group(3)
    key = match.group(2) or match.group(4)
    if extra is not None and namespace in extra:
        try:
            return lookup(extra[namespace], key)
        except KeyError as exc:
            raise TemplateError(
                f"{where}: {match.group(0)} names {exc.args[0]!r}, which {namespace} does not have"
            ) from None
    if namespace not in _NAMESPACES:
        raise TemplateError(
            f"{where}: {match.group(0)} is not a known template; "
            f"templates read the config, e.g. <<config.{key}>>"
        )
    try:
        return lookup(config, key)
    except KeyError as exc:
        missing = exc.args[0]
        known = ", ".join(sorted(str(k) for k in config)) or "none"
        raise TemplateError(
            f"{where}: {match.group(0)} needs config key {missing!r}, which is not set "
            f"(config keys: {known}; add it under config:, with --config FILE or --set {key}=...)"
        ) from None
