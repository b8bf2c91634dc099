"""`pagination` on a request object: follow pages until a condition holds or a cap is hit.

    pagination:
      next: {queryParams: {cursor: "(ctx) => ctx.response.next_cursor"}}   # or headers, body
      stopCondition: "(ctx) => !ctx.response.has_more"                      # optional
      maxPages: 50                                                          # default 100

Each `next` value is JavaScript over the page just fetched — a function of `ctx` or a bare
expression, as `loopUntil.condition` — and gives that field's value for the next page (null
or undefined leaves the field out). They are compiled when the directive is parsed; they are
evaluated in the QuickJS sandbox, never as templates, so a cursor a server sends cannot fill
`{{config.…}}` into the next request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lamrunner import defaults
from lamrunner.definition.validation import check_keys, expect_int, expect_mapping, expect_str
from lamrunner.errors import DefinitionError

KEYS = ("next", "stopCondition", "maxPages")
NEXT_KEYS = ("queryParams", "headers", "body")
DEFAULT_MAX_PAGES = defaults.PAGINATION_MAX_PAGES
MAX_PAGES_LIMIT = defaults.PAGINATION_MAX_PAGES_LIMIT


@dataclass(frozen=True)
class PageSpec:
    """One request's `pagination`, validated: JS sources per field of the next request."""

    next_query: Mapping[str, str]
    next_headers: Mapping[str, str]
    next_body: Mapping[str, str]
    stop_condition: str | None
    max_pages: int
    where: str

    def sources(self) -> list[tuple[str, str, str]]:
        """(part, name, JS source) of every `next` value, in the order written."""
        return [
            (part, name, source)
            for part, values in (
                ("queryParams", self.next_query),
                ("headers", self.next_headers),
                ("body", self.next_body),
            )
            for name, source in values.items()
        ]


def parse_pagination(
    data: Any, where: str, check_script: Callable[[str, str], None] | None
) -> PageSpec:
    """Check `pagination`: its keys, at least one `next` value, JS that compiles, and
    1 <= maxPages <= MAX_PAGES_LIMIT."""
    data = expect_mapping(data, where)
    check_keys(data, KEYS, where, required=("next",))
    nexts = expect_mapping(data["next"], f"{where}.next")
    check_keys(nexts, NEXT_KEYS, f"{where}.next")
    parts: dict[str, dict[str, str]] = {}
    for part in NEXT_KEYS:
        values = expect_mapping(nexts.get(part) or {}, f"{where}.next.{part}")
        parts[part] = {
            str(name): expect_str(source, f"{where}.next.{part}.{name}")
            for name, source in values.items()
        }
    if not any(parts.values()):
        raise DefinitionError(
            f"{where}.next: give at least one value for the next page, e.g. "
            "queryParams: {cursor: '(ctx) => ctx.response.next_cursor'}"
        )
    stop = data.get("stopCondition")
    if stop is not None:
        stop = expect_str(stop, f"{where}.stopCondition")
    max_pages = expect_int(data.get("maxPages", DEFAULT_MAX_PAGES), f"{where}.maxPages", minimum=1)
    if max_pages > MAX_PAGES_LIMIT:
        raise DefinitionError(
            f"{where}.maxPages: {max_pages} is more than the {MAX_PAGES_LIMIT} pages a request "
            "may follow; fetch the rest in a later step"
        )
    spec = PageSpec(parts["queryParams"], parts["headers"], parts["body"], stop, max_pages, where)
    if check_script is not None:
        for part, name, source in spec.sources():
            check_script(source, f"{where}.next.{part}.{name}")
        if stop is not None:
            check_script(stop, f"{where}.stopCondition")
    return spec
