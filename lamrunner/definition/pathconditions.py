"""JSONPath conditions: `$.status == 'COMPLETED' || $.progress >= 100`, evaluated in Python.

A poll step's `successCondition` / `failureCondition` (and any `loopUntil` condition that
starts with `$`) is a small expression language over the response body, compiled once when the
workflow loads — a bad one is a DefinitionError naming the field and the column — and then
evaluated on the body Python has already parsed, without QuickJS:

    expr       or
    or         and ('||' and)*
    and        not ('&&' not)*
    not        '!' not | cmp
    cmp        operand (('==' | '!=' | '<' | '<=' | '>' | '>=') operand)?
    operand    QUERY | literal | '(' expr ')'
    literal    'text' | "text" | number | true | false | null

A QUERY is an RFC 9535 JSONPath query (`lamrunner.jsonpath`); `===` / `!==` are read as
`==` / `!=`. The meaning of a query, by where it stands:

- alone (`$.done`, `!$.error`): true when it selects a node whose value is truthy as in
  JavaScript (everything but false, null, 0 and ""); a query selecting several nodes holds
  when any of them is truthy, one selecting nothing does not hold;
- in a comparison it must be singular (`$.a.b`, `$.items[0]`, as RFC 9535 asks), and a query
  that selects nothing is *Nothing*: `==` holds only against another Nothing, `!=` against
  anything else, and `<` `<=` `>` `>=` never hold. Values compare as JSON: no type coercion
  (`1 == '1'` is false, `1 == 1.0` true), order only between two numbers or two strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lamrunner.errors import DefinitionError
from lamrunner.jsonpath import NOTHING, Query, compile_query

_LOOKS_LIKE_PATH = re.compile(r"^[\s(!]*\$")
_OPERATORS = ("===", "!==", "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")")
_COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_]\w*")
_WORDS = {"true": True, "false": False, "null": None}
_MAX_DEPTH = 64  # nesting of parentheses and `!`: real conditions nest 2 or 3 deep

Node = Callable[[Any], Any]


def is_path_condition(source: str) -> bool:
    """Whether a condition's text is JSONPath (`$…`, `!$…`, `($…`) rather than JavaScript."""
    return isinstance(source, str) and _LOOKS_LIKE_PATH.match(source) is not None


@dataclass(frozen=True)
class PathCondition:
    """A compiled condition; `holds(body)` says whether it is true of a response body."""

    text: str
    node: Node

    def holds(self, body: Any) -> bool:
        return truthy(self.node(body))


def compile_path_condition(text: str, where: str) -> PathCondition:
    """`text` compiled, or a DefinitionError naming `where`, the column and what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise DefinitionError(f"{where}: expected a condition, got {text!r}")
    tokens = _tokenize(text, where)
    parser = _Parser(text, tokens, where)
    node = parser.expression(0)
    if not parser.done:
        parser.fail("expected && or || or the end of the condition")
    return PathCondition(text, node)


def truthy(value: Any) -> bool:
    """JavaScript's truthiness over JSON values ([] and {} are true)."""
    if value is NOTHING or value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


@dataclass(frozen=True)
class _Token:
    kind: str  # query | literal | op | end
    text: str
    column: int  # 1-based
    value: Any = None


def _tokenize(text: str, where: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char == "$":
            end = _query_end(text, i)
            query = compile_query(text[i:end], f"{where} (column {i + 1})")
            tokens.append(_Token("query", text[i:end], i + 1, query))
            i = end
        elif char in "'\"":
            end, value = _string(text, i, where)
            tokens.append(_Token("literal", text[i:end], i + 1, value))
            i = end
        elif match := _NUMBER.match(text, i):
            tokens.append(_Token("literal", match.group(), i + 1, _number(match.group())))
            i = match.end()
        elif match := _WORD.match(text, i):
            word = match.group()
            if word not in _WORDS:
                raise DefinitionError(
                    f"{where}: column {i + 1}: unknown word {word!r} in {text!r}; a condition "
                    "compares JSONPath queries ($.a.b) with 'text', numbers, true, false or null"
                )
            tokens.append(_Token("literal", word, i + 1, _WORDS[word]))
            i = match.end()
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None:
                raise DefinitionError(
                    f"{where}: column {i + 1}: unexpected {char!r} in {text!r}; the operators "
                    "are == != < <= > >= && || ! and parentheses"
                )
            tokens.append(_Token("op", {"===": "==", "!==": "!="}.get(op, op), i + 1))
            i += len(op)
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _query_end(text: str, start: int) -> int:
    """The end of the JSONPath query at `start`: the first space or operator outside its
    brackets and strings (a filter's own `==` and `&&` stay inside its brackets)."""
    depth, quote, i = 0, "", start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            if depth == 0:
                return i
            depth -= 1
        elif depth == 0 and (char.isspace() or char in "=!<>&|"):
            return i
        i += 1
    return i


def _string(text: str, start: int, where: str) -> tuple[int, str]:
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append({"n": "\n", "t": "\t"}.get(text[i + 1], text[i + 1]))
            i += 2
            continue
        if char == quote:
            return i + 1, "".join(out)
        out.append(char)
        i += 1
    raise DefinitionError(f"{where}: column {start + 1}: the string is never closed in {text!r}")


def _number(text: str) -> int | float:
    if "." in text or "e" in text.lower():
        return float(text)
    return int(text)


class _Parser:
    def __init__(self, text: str, tokens: list[_Token], where: str) -> None:
        self.text, self.tokens, self.where, self.at = text, tokens, where, 0

    @property
    def done(self) -> bool:
        return self.tokens[self.at].kind == "end"

    def fail(self, what: str) -> None:
        token = self.tokens[self.at]
        got = "the end" if token.kind == "end" else repr(token.text)
        raise DefinitionError(
            f"{self.where}: column {token.column}: {what}, got {got} in {self.text!r}"
        )

    def _take(self, op: str) -> bool:
        token = self.tokens[self.at]
        if token.kind == "op" and token.text == op:
            self.at += 1
            return True
        return False

    def expression(self, depth: int) -> Node:
        if depth > _MAX_DEPTH:
            self.fail(f"nested more than {_MAX_DEPTH} levels deep")
        parts = [self._and(depth)]
        while self._take("||"):
            parts.append(self._and(depth))
        if len(parts) == 1:
            return parts[0]
        return lambda body: next((v for p in parts if truthy(v := p(body))), False)

    def _and(self, depth: int) -> Node:
        parts = [self._not(depth)]
        while self._take("&&"):
            parts.append(self._not(depth))
        if len(parts) == 1:
            return parts[0]
        return lambda body: all(truthy(p(body)) for p in parts)

    def _not(self, depth: int) -> Node:
        count = 0
        while self._take("!"):
            count += 1
            if count > _MAX_DEPTH:
                self.fail(f"more than {_MAX_DEPTH} ! in a row")
        node = self._comparison(depth)
        if count == 0:
            return node
        odd = count % 2 == 1
        return lambda body: truthy(node(body)) != odd

    def _comparison(self, depth: int) -> Node:
        left, left_query = self._operand(depth)
        token = self.tokens[self.at]
        if token.kind != "op" or token.text not in _COMPARISONS:
            if left_query is not None:
                alone = left_query
                return lambda body: any(truthy(v) for v in alone.values(body))
            return left
        self.at += 1
        right, right_query = self._operand(depth)
        for side_query, side in ((left_query, "left"), (right_query, "right")):
            if side_query is not None and not side_query.singular:
                raise DefinitionError(
                    f"{self.where}: column {token.column}: the {side} side of {token.text} "
                    f"({side_query.text!r}) may select several nodes; a comparison takes a singular "
                    f"query ($.a.b, $.items[0]) — test several with a filter, e.g. "
                    f"$.items[?@.status == 'done'], in {self.text!r}"
                )
        compare = _COMPARE[token.text]
        return lambda body: compare(left(body), right(body))

    def _operand(self, depth: int) -> tuple[Node, Query | None]:
        token = self.tokens[self.at]
        if token.kind == "query":
            self.at += 1
            query: Query = token.value
            return (lambda body: query.first(body)), query
        if token.kind == "literal":
            self.at += 1
            value = token.value
            return (lambda _body: value), None
        if self._take("("):
            inner = self.expression(depth + 1)
            if not self._take(")"):
                self.fail("expected )")
            return inner, None
        self.fail("expected a JSONPath query ($.a.b), a literal or (")
        raise AssertionError  # fail raised


def _equal(a: Any, b: Any) -> bool:
    if a is NOTHING or b is NOTHING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b) and not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _ordered(a: Any, b: Any) -> bool:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return numbers or (isinstance(a, str) and isinstance(b, str))


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": lambda a, b: _ordered(a, b) and a < b,
    "<=": lambda a, b: _ordered(a, b) and (a < b or _equal(a, b)),
    ">": lambda a, b: _ordered(a, b) and a > b,
    ">=": lambda a, b: _ordered(a, b) and (a > b or _equal(a, b)),
}
