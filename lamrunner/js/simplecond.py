"""A Python fast path for the conditions people write most: `ctx.response.status === 'done'`.

Parsing a response in QuickJS costs about 1.5× CPython's `json.loads`, and a hop into QuickJS
costs more than the comparison itself. So a condition made only of the small subset below is
compiled to a Python function over the ctx (with the response parsed by Python, once):

    ctx paths      ctx.response.a.b, ctx["status"], ctx.response.items[0], list .length
    literals       'text', "text", 12, 1.5, true, false, null, undefined
    operators      ===  !==  &&  ||  !  ( )   and  [lit, lit, …].includes(expr)
                   <  <=  >  >=  (of two numbers: `ctx.attempt >= 5`, `ctx.response.pct >= 100`)
    forms          EXPR,  (ctx) => EXPR,  ctx => EXPR

Anything else compiles to None, and the condition runs in QuickJS as before. At run time, any
case whose JS result this module cannot reproduce exactly (reading a property of null, a
prototype property, a number beyond 2^53, string length, `<` of anything but two numbers…)
raises Unsupported, and that one
evaluation goes to QuickJS, which then gives the real answer or the real exception. Tests hold
the two evaluators to the same answers.

Nothing QuickJS accepts may crash this module, so neither compiling nor evaluating recurses
without bound: nesting (parentheses, `includes(…)` arguments) deeper than _MAX_DEPTH compiles to
None, runs of `!` are parsed in a loop, and `&&` / `||` chains evaluate as flat lists.
"""

from __future__ import annotations

import contextlib
import operator
import re
import weakref
from collections.abc import Callable, Iterator
from typing import Any

UNDEFINED = object()
_MAX_SAFE = 2**53
_MAX_DEPTH = 32  # nested sub-expressions the fast path takes; real conditions nest 2 or 3 deep
_PROTO = frozenset(
    {
        "constructor",
        "__proto__",
        "toString",
        "toLocaleString",
        "valueOf",
        "hasOwnProperty",
        "isPrototypeOf",
        "propertyIsEnumerable",
        "__defineGetter__",
        "__defineSetter__",
        "__lookupGetter__",
        "__lookupSetter__",
    }
)
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?(?![\w.]))|(?P<str>'[^'\\\n]*'|\"[^\"\\\n]*\")"
    r"|(?P<op>===|!==|&&|\|\||=>|<=|>=|[.\[\]()!,<>])|(?P<name>[A-Za-z_$][\w$]*))"
)
_LITERALS = {"true": True, "false": False, "null": None, "undefined": UNDEFINED}
_RELATIONAL: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

Node = Callable[[dict[str, Any]], Any]


class Unsupported(Exception):
    """This evaluation needs QuickJS."""


def compile_condition(source: str) -> Callable[[dict[str, Any]], bool] | None:
    """A Python function ctx -> bool equivalent to the JS condition, or None."""
    tokens = _tokenize(source)
    if tokens is None:
        return None
    parser = _Parser(tokens)
    try:
        node = parser.condition()
    except _NoMatch:
        return None
    if node in _BOOLEAN:  # a comparison, `!`, `includes`: already true or false
        return node
    return lambda ctx: _truthy(node(ctx))


# Nodes known to return a bool (no `_truthy` around them) or a constant (a comparison with
# one checks its number once, when compiled). Conditions are compiled once per poll, and
# evaluated once per attempt: these save most of the evaluation.
_BOOLEAN: weakref.WeakSet[Node] = weakref.WeakSet()
_CONSTANT: weakref.WeakKeyDictionary[Node, Any] = weakref.WeakKeyDictionary()


def _boolean(node: Node) -> Node:
    _BOOLEAN.add(node)
    return node


def _constant(value: Any) -> Node:
    def node(ctx: dict[str, Any]) -> Any:
        return value

    _CONSTANT[node] = value
    return node


def compile_value(source: str) -> Callable[[dict[str, Any]], Any] | None:
    """A Python function ctx -> the JS expression's value (for `progress`), or None."""
    tokens = _tokenize(source)
    if tokens is None:
        return None
    try:
        return _Parser(tokens).condition()
    except _NoMatch:
        return None


class _NoMatch(Exception):
    pass


def _tokenize(source: str) -> list[tuple[str, str]] | None:
    tokens: list[tuple[str, str]] = []
    position, text = 0, source.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            return None
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.i, self.depth = tokens, 0, 0

    @contextlib.contextmanager
    def nested(self) -> Iterator[None]:
        """One level of sub-expression; too deep for Python's stack means QuickJS decides."""
        if self.depth >= _MAX_DEPTH:
            raise _NoMatch
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token_kind, token = self.peek()
        if (value is not None and token != value) or (kind is not None and token_kind != kind):
            raise _NoMatch
        self.i += 1
        return token

    def condition(self) -> Node:
        if self.peek() == ("name", "ctx") and self.peek(1) == ("op", "=>"):
            self.i += 2
        elif (
            self.peek() == ("op", "(")
            and self.peek(1) == ("name", "ctx")
            and self.peek(2) == ("op", ")")
            and self.peek(3) == ("op", "=>")
        ):
            self.i += 4
        node = self.expression()
        if self.peek()[0] != "end":
            raise _NoMatch
        return node

    def expression(self) -> Node:
        with self.nested():
            operands = [self.conjunction()]
            while self.peek() == ("op", "||"):
                self.i += 1
                operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else _or(operands)

    def conjunction(self) -> Node:
        operands = [self.comparison()]
        while self.peek() == ("op", "&&"):
            self.i += 1
            operands.append(self.comparison())
        return operands[0] if len(operands) == 1 else _and(operands)

    def comparison(self) -> Node:
        node = self.relational()
        if self.peek() in (("op", "==="), ("op", "!==")):
            negate = self.take() == "!=="
            node = _equals(node, self.relational(), negate)
            if self.peek() in (("op", "==="), ("op", "!==")):
                raise _NoMatch  # chained equality: leave it to JS
        return node

    def relational(self) -> Node:
        """`a < b` and the like, which bind tighter than `===` (as in JS)."""
        node = self.unary()
        kind, token = self.peek()
        if kind == "op" and token in _RELATIONAL:
            self.i += 1
            node = _compare(node, self.unary(), _RELATIONAL[token])
            kind, token = self.peek()
            if kind == "op" and token in _RELATIONAL:
                raise _NoMatch  # `a < b < c` compares a boolean: leave it to JS
        return node

    def unary(self) -> Node:
        negations = 0
        while self.peek() == ("op", "!"):  # a loop: `!!!…x` may be thousands long
            self.i += 1
            negations += 1
        inner = self.primary()
        if negations == 0:
            return inner
        odd = negations % 2 == 1
        return _boolean(lambda ctx: _truthy(inner(ctx)) != odd)

    def primary(self) -> Node:
        kind, token = self.peek()
        if token == "(" and kind == "op":
            self.i += 1
            node = self.expression()
            self.take(")")
            return node
        if token == "[" and kind == "op":
            return self.includes()
        if kind == "name" and token == "ctx":
            self.i += 1
            return self.path()
        if kind == "name" and token in _LITERALS:
            self.i += 1
            return _constant(_LITERALS[token])
        if kind in ("num", "str"):
            self.i += 1
            return _constant(_literal(kind, token))
        raise _NoMatch

    def path(self) -> Node:
        steps: list[str | int] = []
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take() == ".":
                name = self.take(kind="name")
                if self.peek() == ("op", "("):
                    raise _NoMatch  # a method call
                steps.append(name)
            else:
                kind, token = self.peek()
                if kind not in ("num", "str") or (kind == "num" and "." in token):
                    raise _NoMatch
                self.i += 1
                steps.append(int(token) if kind == "num" else token[1:-1])
                self.take("]")
        if len(steps) == 1 and isinstance(steps[0], str):  # ctx.attempt: one key of a dict
            key = steps[0]
            return lambda ctx: ctx[key] if key in ctx else _walk(ctx, steps)
        return lambda ctx: _walk(ctx, steps)

    def includes(self) -> Node:
        self.take("[")
        items: list[Any] = []
        while self.peek() != ("op", "]"):
            kind, token = self.peek()
            if kind in ("num", "str"):
                items.append(_literal(kind, token))
            elif kind == "name" and token in _LITERALS:
                items.append(_LITERALS[token])
            else:
                raise _NoMatch
            self.i += 1
            if self.peek() == ("op", ","):
                self.i += 1
        self.take("]")
        self.take(".")
        self.take("includes")
        self.take("(")
        needle = self.expression()
        self.take(")")

        def evaluate(ctx: dict[str, Any]) -> bool:
            value = needle(ctx)  # JS evaluates the argument even when the list is empty
            return any(_same_value_zero(item, value) for item in items)

        return _boolean(evaluate)


def _literal(kind: str, token: str) -> Any:
    if kind == "str":
        return token[1:-1]
    number = float(token) if "." in token else int(token)
    if abs(number) >= _MAX_SAFE:
        raise _NoMatch
    return number


def _walk(value: Any, steps: list[str | int]) -> Any:
    for step in steps:
        if isinstance(value, dict):
            key = str(step)
            if key in value:
                value = value[key]
            elif key in _PROTO:
                raise Unsupported
            else:
                value = UNDEFINED
        elif isinstance(value, list):
            if step == "length":
                value = len(value)
            elif isinstance(step, int) or (
                step.isascii() and step.isdigit() and step == str(int(step))
            ):
                index = int(step)
                value = value[index] if index < len(value) else UNDEFINED
            else:
                raise Unsupported  # array methods and the like
        else:
            raise Unsupported  # properties of strings, numbers, null, undefined: JS decides
    return value


def _strict_equal(a: Any, b: Any) -> bool:
    """JS `===` on JSON values (plus undefined); objects compare by identity."""
    for value in (a, b):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _MAX_SAFE:
            raise Unsupported  # JS would have rounded it
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return a is b
    return a is b  # None, UNDEFINED


def _same_value_zero(a: Any, b: Any) -> bool:
    """`includes` compares like `===` (NaN aside, which JSON cannot produce)."""
    return _strict_equal(a, b)


def _truthy(value: Any) -> bool:
    if value is None or value is UNDEFINED or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and value == value
    if isinstance(value, str):
        return value != ""
    return True


def _number(value: Any) -> float | int:
    """An operand of `<` and the like: a number JS holds exactly, else Unsupported (strings
    compare by UTF-16 code units there, and anything else is converted first). JSON makes
    only exact ints and floats (a bool is not a number here)."""
    kind = type(value)
    if kind is float or (kind is int and -_MAX_SAFE < value < _MAX_SAFE):
        return value  # type: ignore[no-any-return]
    raise Unsupported  # not a number, or one JS would have rounded


def _compare(left: Node, right: Node, test: Callable[[Any, Any], bool]) -> Node:
    """JS evaluates both operands, left first, then compares the two numbers. A constant
    operand (`ctx.attempt >= 200`) is checked once, here."""
    if right in _CONSTANT:
        try:
            limit = _number(_CONSTANT[right])
        except Unsupported:
            return _boolean(lambda ctx: test(_number(left(ctx)), _number(right(ctx))))

        def against(ctx: dict[str, Any]) -> bool:  # `_number` inlined: once per attempt
            value = left(ctx)
            kind = type(value)
            if kind is float or (kind is int and -_MAX_SAFE < value < _MAX_SAFE):
                return test(value, limit)
            raise Unsupported

        return _boolean(against)
    return _boolean(lambda ctx: test(_number(left(ctx)), _number(right(ctx))))


def _equals(left: Node, right: Node, negate: bool) -> Node:
    constant = _CONSTANT.get(right, UNDEFINED)
    if type(constant) is str:  # `ctx.response.state === 'done'`: a string, and that one
        return _boolean(
            lambda ctx: (type(value := left(ctx)) is str and value == constant) != negate
        )
    return _boolean(lambda ctx: _strict_equal(left(ctx), right(ctx)) != negate)


def _and(operands: list[Node]) -> Node:
    """`a && b && c` as one flat loop (a chain of thousands must not recurse): JS's value."""

    def evaluate(ctx: dict[str, Any]) -> Any:
        for operand in operands:
            value = operand(ctx)
            if not _truthy(value):
                return value
        return value

    return evaluate


def _or(operands: list[Node]) -> Node:
    """`a || b || c` as one flat loop: the first truthy operand, else the last."""

    def evaluate(ctx: dict[str, Any]) -> Any:
        for operand in operands:
            value = operand(ctx)
            if _truthy(value):
                return value
        return value

    return evaluate
