"""`lamrunner validate`: `pathParams` entries that a request's url does not use, read off the source.

A handler's requests are only known when it runs, so `validate` reads the request objects
written as literals in the handler's source: a Python dict literal (`ast`) or a JavaScript
object literal (a scan for `pathParams: {...}` and the `url: "..."` beside it), each with a
url written as one literal string. What is built at run time is not guessed; the run warns
about it (`request.path_param_unused`). Warnings only: Laminar ignores such an entry.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from lamrunner.cli.explain import _balanced
from lamrunner.definition.workflow import Step, Workflow

_PATH_PARAM = re.compile(r"\{\{\s*([A-Za-z_][\w-]*)\s*\}\}|\{([A-Za-z_][\w-]*)\}")
_JS_PARAMS = re.compile(r"""(?:^|[{,\s])["']?pathParams["']?\s*:\s*\{""")
_JS_URL = re.compile(r"""(?:^|[{,\s])["']?url["']?\s*:\s*(["'`])((?:\\.|(?!\1).)*)\1""", re.S)
_JS_KEY = re.compile(r"""(?:^|[{,])\s*(?:["']([^"']+)["']|([A-Za-z_$][\w$]*))\s*(?=[:,}])""")


def unused_path_params(workflow: Workflow) -> list[str]:
    """One warning per literal pathParams entry its literal url does not use, naming the
    file and line, the step and the key."""
    warnings: list[str] = []
    for step in workflow.steps:
        source, path = _source(step)
        if source is None:
            continue
        found = _python(source) if step.handler.language == "python" else _javascript(source)
        for line, url, names in found:
            used = {m.group(1) or m.group(2) for m in _PATH_PARAM.finditer(url)}
            warnings.extend(
                f"{path}:{line}: step {step.name!r}: pathParams {name!r} is not used in the "
                f"url {url!r} and is ignored (write {{{name}}} where it belongs, or drop it)"
                for name in names
                if name not in used
            )
    return warnings


def _source(step: Step) -> tuple[str | None, str]:
    handler = step.handler
    if handler.source is not None:
        return handler.source, handler.location
    path = Path(str(handler.location).split(":")[0])
    if path.suffix != ".py":
        return None, str(path)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError):
        return None, str(path)


def _python(source: str) -> Iterator[tuple[int, str, list[str]]]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        fields = {
            k.value: v
            for k, v in zip(node.keys, node.values, strict=True)
            if isinstance(k, ast.Constant) and isinstance(k.value, str)
        }
        url, params = fields.get("url"), fields.get("pathParams")
        if not (isinstance(url, ast.Constant) and isinstance(url.value, str)):
            continue
        if isinstance(params, ast.Dict):
            names = [
                k.value
                for k in params.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            ]
            yield params.lineno, url.value, names


def _javascript(source: str) -> Iterator[tuple[int, str, list[str]]]:
    for match in _JS_PARAMS.finditer(source):
        start = match.end() - 1
        params = _balanced(source, start)
        outer_start = _enclosing(source, match.start())
        outer = None if outer_start is None else _balanced(source, outer_start)
        if params is None or outer is None:
            continue
        url = _JS_URL.search(_flat(outer))
        if url is None or (url.group(1) == "`" and "${" in url.group(2)):
            continue  # a url built at run time: the run warns
        names = [m.group(1) or m.group(2) for m in _JS_KEY.finditer(_flat(params))]
        yield source.count("\n", 0, start) + 1, url.group(2), names


def _enclosing(source: str, at: int) -> int | None:
    """The `{` that opens the object literal around `at` (strings are not told apart: a
    brace inside one can mislead it, and the check then finds nothing to warn about)."""
    depth = 0
    for i in range(at - 1, -1, -1):
        if source[i] == "}":
            depth += 1
        elif source[i] == "{":
            if depth == 0:
                return i
            depth -= 1
    return None


def _flat(obj: str) -> str:
    """The object literal's own level: nested `{...}` and `[...]` blanked out, its own string
    literals kept as they are (a url's `{id}` is not nesting)."""
    out, depth, i, body = [], 0, 0, obj[1:-1]
    while i < len(body):
        char = body[i]
        if char in "\"'`":
            end = _string_end(body, i)
            out.append(body[i:end] if depth == 0 else " " * (end - i))
            i = end
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        out.append(char if depth == 0 and char not in "}]" else " ")
        i += 1
    return "{" + "".join(out) + "}"


def _string_end(text: str, start: int) -> int:
    """Just past the string literal opening at `start` (or the end of the text)."""
    quote, i = text[start], start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return len(text)
