"""Small checks shared by everything that turns user data into typed definitions.

They raise DefinitionError naming the field (`where`) and, for a misspelled key, the closest
known one: most workflow mistakes are typos, and "did you mean" fixes them in one read.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from lamrunner.errors import DefinitionError


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name most like `name`, if any is close enough to be a likely typo."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return match[0] if match else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' or '' — ready to append to a message."""
    guess = closest(name, known)
    return f" (did you mean {guess!r}?)" if guess else ""


def check_keys(
    data: Mapping[str, Any], allowed: Iterable[str], where: str, *, required: Iterable[str] = ()
) -> None:
    """Refuse unknown keys (with a suggestion) and missing required ones."""
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            raise DefinitionError(
                f"{where}: unknown key {key!r}{did_you_mean(str(key), allowed)}; "
                f"allowed keys: {', '.join(allowed)}"
            )
    for key in required:
        if key not in data:
            raise DefinitionError(f"{where}: missing required key {key!r}")


def expect_mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DefinitionError(f"{where}: expected a mapping, got {type_name(value)}")
    return value


def expect_str(value: Any, where: str, *, non_empty: bool = True) -> str:
    if not isinstance(value, str) or (non_empty and not value.strip()):
        raise DefinitionError(f"{where}: expected a non-empty string, got {type_name(value)}")
    return value


def expect_int(value: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DefinitionError(f"{where}: expected a whole number >= {minimum}, got {value!r}")
    return value


def expect_number(value: Any, where: str, *, minimum: float = 0.0) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        number = float(value) if ok else math.nan
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and number >= minimum):
        shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
        raise DefinitionError(f"{where}: expected a number >= {minimum:g}, got {shown}")
    return number


def expect_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise DefinitionError(f"{where}: expected true or false, got {value!r}")
    return value


def type_name(value: Any) -> str:
    """JSON/YAML-flavoured type names: users write YAML and JS, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
