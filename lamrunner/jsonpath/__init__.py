"""JSONPath queries (RFC 9535) over JSON data: the one home of `jsonpath_rfc9535`.

A query is compiled once, when the workflow loads (a bad one is a DefinitionError naming the
field, the text and the column), and is then only applied. Comparisons and `&&` / `||` / `!`
over queries are not JSONPath's business: they live with the conditions that use them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import jsonpath_rfc9535 as _jp

from lamrunner.errors import DefinitionError

NOTHING: Any = object()  # what `first` gives when the query selects no node


@dataclass(frozen=True)
class Query:
    """A compiled query; `text` is what the user wrote."""

    text: str
    compiled: Any

    def values(self, data: Any) -> list[Any]:
        """Every value the query selects, in document order."""
        return [node.value for node in self.compiled.finditer(data)]

    def first(self, data: Any, default: Any = NOTHING) -> Any:
        """The first value selected, or `default` when there is none."""
        node = self.compiled.find_one(data)
        return default if node is None else node.value

    @property
    def singular(self) -> bool:
        """True when the query names at most one node (`$.a.b[0]`), so it can be written to."""
        return bool(self.compiled.singular_query())

    def location(self) -> tuple[str | int, ...]:
        """The names and indexes of a singular query, from the root (`$.a[2]` → ('a', 2))."""
        if not self.singular:
            raise ValueError(f"{self.text!r} is not a singular query")
        steps: list[str | int] = []
        for segment in self.compiled.segments:
            (selector,) = segment.selectors
            name = getattr(selector, "name", None)
            steps.append(name if name is not None else int(selector.index))
        return tuple(steps)


def compile_query(text: str, where: str) -> Query:
    """`text` compiled, or a DefinitionError naming `where` and what is wrong in the text."""
    if not isinstance(text, str) or not text.strip().startswith("$"):
        raise DefinitionError(f"{where}: expected a JSONPath query starting with $, got {text!r}")
    try:
        return Query(text, _jp.compile(text.strip()))
    except _jp.JSONPathError as exc:
        raise DefinitionError(f"{where}: {text!r} is not a valid JSONPath query: {exc}") from None


def compile_singular(text: str, where: str) -> Query:
    """A query that names one place (an output mapping's target), or a DefinitionError."""
    query = compile_query(text, where)
    if not query.singular:
        raise DefinitionError(
            f"{where}: {text!r} must name one place ($.a.b or $.a['b'][0]): no wildcards, "
            "slices, filters or descendants"
        )
    return query


def write(data: MutableMapping[str, Any], query: Query, value: Any) -> None:
    """Put `value` at a singular query's place in `data`, making mappings on the way; an index
    must already exist (a list is never grown by a write)."""
    steps = query.location()
    if not steps:
        raise ValueError("cannot write to the root $")
    node: Any = data
    for step, following in itertools.pairwise(steps):
        node = _child(node, step, query.text, make=not isinstance(following, int))
    last = steps[-1]
    in_mapping = isinstance(node, MutableMapping) and isinstance(last, str)
    in_list = isinstance(node, list) and isinstance(last, int) and -len(node) <= last < len(node)
    if not (in_mapping or in_list):
        raise ValueError(f"{query.text!r}: there is no place {last!r} to write to")
    node[last] = value


def _child(node: Any, step: str | int, text: str, make: bool) -> Any:
    if isinstance(node, MutableMapping) and isinstance(step, str):
        child = node.get(step)
        if not isinstance(child, Mapping | list):
            if not make:
                raise ValueError(f"{text!r}: {step!r} is not a list to index")
            child = node[step] = {}
        return child
    if isinstance(node, list) and isinstance(step, int) and -len(node) <= step < len(node):
        return node[step]
    raise ValueError(f"{text!r}: there is no place {step!r} to write to")
