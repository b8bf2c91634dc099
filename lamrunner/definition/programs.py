"""Templates inside programs: `{{config.x}}` / `{{props.x}}` / `<<config.x>>` in a JavaScript or
JQ handler's source, filled with the run's config before the program runs, as Laminar does.

Laminar substitutes text; lamrunner substitutes *values*, so a value can never change what the
program means (a quote in an API key cannot end its string and inject code):

* inside a string literal (`"Bearer {{config.token}}"`, `'…'`, a JS template literal's text)
  the value's text is written escaped for that literal;
* a string literal that is exactly one template (`"{{config.apiKey}}"`) becomes the value as a
  literal of its own type, as everywhere else in lamrunner (`"{{config.n}}"` with n: 5 is `5`);
* in code (`const n = {{config.n}};`) the value is written as a parenthesized JSON literal;
* in a comment it is left alone; in a JavaScript regular-expression literal it is refused
  when the handler loads (build a `new RegExp("{{config.x}}")` instead).

Where the templates are is found once, when the handler loads (`find_sites`); what they say
is filled per call from that run's config (`fill`), since two runs can have two configs. The
compile check at load time uses `placeholder` (code sites become `(null)`), so `validate`
needs no config and sees no secret.

A secret a program was given (a config value under a secret-looking name) must not stay in
what it returns: that output is saved in the run store and in a cloud checkpoint. So
`retemplate` writes each such value in the output back as the template that gave it; the
request fields are rendered from the config when the request is sent, so the wire sees the
value, the store the template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lamrunner.definition.config import lookup, map_strings
from lamrunner.definition.templates import render_string, to_text
from lamrunner.errors import DefinitionError
from lamrunner.logs.masking import MIN_SECRET_LENGTH, SECRET_NAME

_TEMPLATE = re.compile(
    r"<<\s*(?:config|props)\.[\w-]+(?:\.[\w-]+)*\s*>>"
    r"|\{\{\s*(?:config|props)\.[\w-]+(?:\.[\w-]+)*\s*\}\}"
)
_KEY = re.compile(r"(?:config|props)\.([\w-]+(?:\.[\w-]+)*)")
# after one of these (or at the start), a `/` in JavaScript starts a regular expression
_BEFORE_REGEX = set("(,=:[!&|?{};+-*%<>~^")
_REGEX_WORDS = {"return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void"}
_REGEX_WORDS |= {"throw", "instanceof", "yield", "await"}


@dataclass(frozen=True)
class Site:
    """One template in a program: its span, what it says and how it is written there."""

    start: int
    end: int
    text: str  # the template, e.g. {{config.apiKey}}
    kind: str  # "code", "whole" (a whole string literal), "string" (in a quote), "template"
    quote: str  # the string literal's quote for "string"
    line: int

    @property
    def key(self) -> str:
        match = _KEY.search(self.text)
        assert match is not None
        return match.group(1)


def find_sites(source: str, language: str, where: str) -> tuple[Site, ...]:
    """Every template of a JavaScript or JQ program, in order; DefinitionError for one that
    cannot be filled safely (inside a JavaScript regular expression)."""
    if "{{" not in source and "<<" not in source:
        return ()
    scanner = _Scanner(source, language, where)
    scanner.code(0, closing=False)
    return tuple(scanner.sites)


def placeholder(source: str, sites: tuple[Site, ...]) -> str:
    """The program with every template in code written as `(null)`: what is compile-checked."""
    return _splice(source, sites, lambda site: "(null)" if site.kind == "code" else None)


def fill(source: str, sites: tuple[Site, ...], config: Mapping[str, Any], where: str) -> str:
    """The program with every template filled from `config` (TemplateError naming the file and
    line for a key the config lacks)."""

    def text(site: Site) -> str:
        value = render_string(site.text, config, f"{where}:{site.line}")
        return written(value, site)

    return _splice(source, sites, text)


def written(value: Any, site: Site) -> str:
    """How `value` is written at `site` (see the module docstring)."""
    if site.kind in ("code", "whole"):
        literal = json.dumps(value, ensure_ascii=True)
        return literal if site.kind == "whole" and isinstance(value, str) else f"({literal})"
    escaped = json.dumps(to_text(value), ensure_ascii=True)[1:-1]
    if site.kind == "template":
        return escaped.replace("`", "\\`").replace("${", "\\${")
    return escaped.replace("'", "\\'") if site.quote == "'" else escaped


def secret_templates(sites: tuple[Site, ...], config: Mapping[str, Any]) -> dict[str, str]:
    """{secret value: the template that gave it} for the program's templates whose key names
    a secret (any part of the dotted key: `auth.user` is one), as `Secrets.add_config` does."""
    found: dict[str, str] = {}
    for site in sites:
        if not any(SECRET_NAME.search(part) for part in site.key.split(".")):
            continue
        try:
            value = lookup(config, site.key)
        except KeyError:
            continue
        if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LENGTH:
            found.setdefault(value, site.text)
    return found


def retemplate(output: Any, secrets: Mapping[str, str]) -> Any:
    """`output` with each secret value in its strings written back as its template."""
    if not secrets:
        return output
    pattern = re.compile("|".join(map(re.escape, sorted(secrets, key=len, reverse=True))))

    def back(text: str, _where: str) -> str:
        return pattern.sub(lambda m: secrets[m.group(0)], text)

    return map_strings(output, "", back)


def _splice(source: str, sites: tuple[Site, ...], text: Any) -> str:
    parts, at = [], 0
    for site in sites:
        replacement = text(site)
        if replacement is None:
            continue
        parts += [source[at : site.start], replacement]
        at = site.end
    return "".join([*parts, source[at:]])


class _Scanner:
    """A small lexer: enough of JavaScript and JQ to tell code, strings and comments apart."""

    def __init__(self, source: str, language: str, where: str) -> None:
        self.src, self.js, self.where = source, language == "javascript", where
        self.sites: list[Site] = []

    def line(self, at: int) -> int:
        return self.src.count("\n", 0, at) + 1

    def code(self, i: int, *, closing: bool) -> int:
        """Scan code from `i`; with `closing`, up to the `}` (JS) or `)` (JQ) that ends an
        interpolation, returning the index after it."""
        src, depth, prev = self.src, 0, ""
        opener, closer = ("{", "}") if self.js else ("(", ")")
        while i < len(src):
            template = _TEMPLATE.match(src, i)
            if template:
                self._site(template.start(), template.end(), template.group(0), "code", "")
                i, prev = template.end(), ")"
                continue
            char = src[i]
            if (self.js and src.startswith("//", i)) or (not self.js and char == "#"):
                i = _end_of(src, "\n", i)
                continue
            if self.js and src.startswith("/*", i):
                i = _end_of(src, "*/", i + 2) + 1
                continue
            if char == '"' or (self.js and char == "'"):
                i, prev = self.string(i), ")"
                continue
            if self.js and char == "`":
                i, prev = self.template_literal(i), ")"
                continue
            if self.js and char == "/" and _regex_may_start(prev, src, i):
                i, prev = self.regex(i), ")"
                continue
            if char == opener:
                depth += 1
            elif char == closer:
                if closing and depth == 0:
                    return i + 1
                depth -= 1
            if not char.isspace():
                prev = _word_before(src, i + 1) if (char.isalnum() or char in "_$") else char
            i += 1
        return i

    def string(self, start: int) -> int:
        """A quoted string from `start`; returns the index after it. JQ's `\\(...)` inside
        one is code, and splits the string into chunks."""
        src, quote = self.src, self.src[start]
        i = chunk = start + 1
        interpolated = False
        while i < len(src) and src[i] != quote and (src[i] != "\n" or not self.js):
            if not self.js and src.startswith("\\(", i):  # JQ interpolation: code
                self._inside(chunk, i, "string", quote)
                i = chunk = self.code(i + 2, closing=True)
                interpolated = True
                continue
            i += 2 if src[i] == "\\" else 1
        end = min(i + 1, len(src))
        whole = None if interpolated else _TEMPLATE.fullmatch(src[start + 1 : i].strip())
        if whole:
            self._site(start, end, whole.group(0), "whole", quote)
        else:
            self._inside(chunk, min(i, len(src)), "string", quote)
        return end

    def template_literal(self, start: int) -> int:
        src, i, chunk = self.src, start + 1, start + 1
        while i < len(src) and src[i] != "`":
            if src[i] == "\\":
                i += 2
                continue
            if src.startswith("${", i):
                self._inside(chunk, i, "template", "`")
                i = chunk = self.code(i + 2, closing=True)
                continue
            i += 1
        self._inside(chunk, i, "template", "`")
        return min(i + 1, len(src))

    def regex(self, start: int) -> int:
        src, i, in_class = self.src, start + 1, False
        while i < len(src) and src[i] != "\n":
            char = src[i]
            if char == "\\":
                i += 2
                continue
            if char == "[":
                in_class = True
            elif char == "]":
                in_class = False
            elif char == "/" and not in_class:
                break
            i += 1
        found = _TEMPLATE.search(src, start, i)
        if found:
            raise DefinitionError(
                f"{self.where}: line {self.line(start)}: {found.group(0)} is inside a regular "
                f"expression literal, where it cannot be filled safely; build it from a string: "
                f'new RegExp("{found.group(0)}")'
            )
        return i + 1

    def _inside(self, start: int, end: int, kind: str, quote: str) -> None:
        for match in _TEMPLATE.finditer(self.src, start, end):
            self._site(match.start(), match.end(), match.group(0), kind, quote)

    def _site(self, start: int, end: int, text: str, kind: str, quote: str) -> None:
        self.sites.append(Site(start, end, text, kind, quote, self.line(start)))


def _end_of(src: str, token: str, i: int) -> int:
    found = src.find(token, i)
    return len(src) if found < 0 else found


def _word_before(src: str, end: int) -> str:
    start = end
    while start > 0 and (src[start - 1].isalnum() or src[start - 1] in "_$"):
        start -= 1
    return src[start:end]


def _regex_may_start(prev: str, src: str, i: int) -> bool:
    if src.startswith(("//", "/*"), i):
        return False
    return prev == "" or prev in _BEFORE_REGEX or prev in _REGEX_WORDS
