"""`followResultUrl`: where in a request's final body a large result may stand as a pointer.

Async job APIs (seed 004's among them) answer a finished job with its result inline while it is
small, and with a pointer `{"is_url": true, "url": "..."}` once it is large (5 MB and up there).
A request object that says `followResultUrl: "$.result"` has that place checked once the request
(or its poll) succeeds; the runner fetches what a pointer names and puts it in the pointer's
place (`runner.resulturl`). Here the field is only validated: one JSONPath query naming one
place, compiled when the directive is parsed, so a bad one fails before anything is sent.
"""

from __future__ import annotations

from typing import Any

from lamrunner.errors import DefinitionError
from lamrunner.jsonpath import Query, compile_singular


def parse_follow_result(value: Any, where: str) -> Query:
    """`followResultUrl` as a compiled singular query (`$.result`, `$.data['output']`, `$`)."""
    at = f"{where}.followResultUrl"
    if not isinstance(value, str):
        raise DefinitionError(
            f"{at}: expected a JSONPath query naming where the result or its pointer is "
            f"(e.g. '$.result'), got {value!r}"
        )
    return compile_singular(value, at)
