"""Condition functions y = f(x0, x1) as configuration, parsed without `eval`.

A user writes e.g. ``cos(49*x0 + 42*x1)``. The text is parsed by a small
recursive-descent parser into a tree that evaluates on torch tensors (so the
y-loss is differentiable on any device) and on numpy arrays. Functions of the
form g(a*x0 + b*x1 + c), g in {sin, cos}, are recognised so the metrics can
enumerate every exact solution.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UserError

OFFICIAL_FUNCTIONS = ("cos(49*x0 + 42*x1)", "cos(56*x0 + 63*x1)")

_CALLS = {
    "sin": (torch.sin, np.sin),
    "cos": (torch.cos, np.cos),
    "tan": (torch.tan, np.tan),
    "exp": (torch.exp, np.exp),
    "log": (torch.log, np.log),
    "sqrt": (torch.sqrt, np.sqrt),
    "tanh": (torch.tanh, np.tanh),
    "abs": (torch.abs, np.abs),
}
_ALLOWED = "numbers, x0, x1, pi, + - * / **, parentheses and " + " ".join(_CALLS)
# Limits on a function's text: a search file or a flag is configuration, not a program.
MAX_LENGTH = 500  # characters
MAX_DEPTH = 50  # nested parentheses, calls, signs and powers
MAX_CONSTANT = 1e9  # magnitude of a number written in the text
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|(\*\*|[-+*/()])|([A-Za-z_]\w*)|(\S))")


class FunctionSyntaxError(UserError):
    """A condition function the parser does not accept."""


@dataclass(frozen=True)
class Trig:
    """g(a*x0 + b*x1 + c) with g in {sin, cos}: the family with exact solutions."""

    kind: str
    a: float
    b: float
    c: float


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    text = text.rstrip()
    if len(text) > MAX_LENGTH:
        raise FunctionSyntaxError(
            f"function of {len(text)} characters starting {text[:30]!r}...; at most {MAX_LENGTH} are allowed"
        )
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        number, op, name, bad = m.groups()
        start = m.start(m.lastindex)
        if bad is not None:
            raise FunctionSyntaxError(
                f"unexpected character {bad!r} at position {start} in {text!r}; allowed are {_ALLOWED}"
            )
        if name is not None and name not in _CALLS and name not in ("x0", "x1", "pi"):
            raise FunctionSyntaxError(f"unknown name {name!r} at position {start} in {text!r}; allowed are {_ALLOWED}")
        kind = "num" if number is not None else "op" if op is not None else "name"
        if number is not None and not abs(float(number)) <= MAX_CONSTANT:
            raise FunctionSyntaxError(
                f"number {number} at position {start} in {text!r} is too large; constants are limited to "
                f"{MAX_CONSTANT:g} in magnitude"
            )
        tokens.append((kind, number or op or name, start))
        pos = m.end()
    return tokens


class _Parser:
    """expr := term (+|- term)*; term := unary (*|/ unary)*; unary := -unary | power;
    power := atom [** unary]; atom := number | x0 | x1 | pi | call(expr) | (expr)."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def _peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.text))

    def _fail(self, token):
        what = "end of input" if token[0] == "end" else f"token {token[1]!r}"
        raise FunctionSyntaxError(f"unexpected {what} at position {token[2]} in {self.text!r}")

    def _expect(self, value):
        token = self._peek()
        if token[1] != value or token[0] == "end":
            self._fail(token)
        self.i += 1

    def parse(self):
        if not self.tokens:
            raise FunctionSyntaxError("empty function; write e.g. 'cos(49*x0 + 42*x1)'")
        tree = self._expr()
        if self.i != len(self.tokens):
            self._fail(self._peek())
        return tree

    def _expr(self):
        node = self._term()
        while self._peek()[1] in ("+", "-") and self._peek()[0] == "op":
            op = self._peek()[1]
            self.i += 1
            node = ("bin", op, node, self._term())
        return node

    def _term(self):
        node = self._unary()
        while self._peek()[1] in ("*", "/") and self._peek()[0] == "op":
            op = self._peek()[1]
            self.i += 1
            node = ("bin", op, node, self._unary())
        return node

    def _unary(self):
        token = self._peek()
        self.depth += 1  # every nested part (parentheses, call, sign, power) passes here
        if self.depth > MAX_DEPTH:
            raise FunctionSyntaxError(
                f"{self.text[:30]!r}... nests deeper than {MAX_DEPTH} levels (at position {token[2]}); simplify it"
            )
        try:
            if token[0] == "op" and token[1] in ("-", "+"):
                self.i += 1
                inner = self._unary()
                return ("neg", inner) if token[1] == "-" else inner
            return self._power()
        finally:
            self.depth -= 1

    def _power(self):
        node = self._atom()
        if self._peek()[1] == "**" and self._peek()[0] == "op":
            self.i += 1
            node = ("bin", "**", node, self._unary())
        return node

    def _atom(self):
        token = self._peek()
        kind, value, _ = token
        self.i += 1
        if kind == "num":
            return ("num", float(value))
        if kind == "name" and value in ("x0", "x1"):
            return ("var", int(value[1]))
        if kind == "name" and value == "pi":
            return ("num", math.pi)
        if kind == "name":
            self._expect("(")
            arg = self._expr()
            self._expect(")")
            return ("call", value, arg)
        if value == "(":
            node = self._expr()
            self._expect(")")
            return node
        self.i -= 1
        self._fail(token)


def _evaluate(node, x0, x1, backend: int):
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        return x1 if node[1] else x0
    if kind == "neg":
        return -_evaluate(node[1], x0, x1, backend)
    if kind == "call":
        return _CALLS[node[1]][backend](_as_array(_evaluate(node[2], x0, x1, backend), x0))
    left, right = (_evaluate(n, x0, x1, backend) for n in node[2:])
    op = node[1]
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        return left / right
    return left**right


def _as_array(value, like):
    """Constants (e.g. sqrt(2)) become arrays of x's type so the call works on them."""
    if isinstance(value, float):
        return torch.full_like(like, value) if isinstance(like, torch.Tensor) else np.full_like(like, value)
    return value


def _linear(node):
    """(a, b, c) if the tree is a*x0 + b*x1 + c, else None."""
    kind = node[0]
    if kind == "num":
        return (0.0, 0.0, node[1])
    if kind == "var":
        return (0.0, 1.0, 0.0) if node[1] else (1.0, 0.0, 0.0)
    if kind == "neg":
        inner = _linear(node[1])
        return None if inner is None else tuple(-v for v in inner)
    if kind == "call":
        inner = _linear(node[2])
        if inner is None or inner[:2] != (0.0, 0.0):
            return None
        return (0.0, 0.0, float(_CALLS[node[1]][1](inner[2])))
    left, right = _linear(node[2]), _linear(node[3])
    if left is None or right is None:
        return None
    op = node[1]
    if op in "+-":
        sign = 1.0 if op == "+" else -1.0
        return tuple(lv + sign * rv for lv, rv in zip(left, right))
    if op == "*" and left[:2] == (0.0, 0.0):
        return tuple(left[2] * rv for rv in right)
    if op == "*" and right[:2] == (0.0, 0.0):
        return tuple(lv * right[2] for lv in left)
    if op == "/" and right[:2] == (0.0, 0.0):
        return tuple(lv / right[2] for lv in left)
    if op == "**" and left[:2] == right[:2] == (0.0, 0.0):
        return (0.0, 0.0, left[2] ** right[2])
    return None


class Function:
    """One parsed condition function; call it with x0, x1 (torch or numpy)."""

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise FunctionSyntaxError(f"a function must be text like 'cos(49*x0 + 42*x1)', got {text!r}")
        self.text = text.strip()
        self.tree = _Parser(self.text).parse()
        self._probe()
        self.trig = self._recognise_trig()

    def _probe(self) -> None:
        """Evaluate once on a few points: constant parts that overflow or divide by zero fail here, in one line."""
        x = np.linspace(0.0, 1.0, 5)
        try:
            with np.errstate(all="ignore"):
                self(x, x)
        except (OverflowError, ZeroDivisionError) as err:
            reason = "overflows" if isinstance(err, OverflowError) else "divides by zero"
            raise FunctionSyntaxError(
                f"function {self.text!r}: a constant part {reason}; keep constants and powers small"
            ) from None

    def _recognise_trig(self) -> Trig | None:
        if self.tree[0] != "call" or self.tree[1] not in ("sin", "cos"):
            return None
        linear = _linear(self.tree[2])
        if linear is None or linear[:2] == (0.0, 0.0):
            return None
        return Trig(self.tree[1], *linear)

    def __call__(self, x0, x1):
        backend = 0 if isinstance(x0, torch.Tensor) else 1
        return _as_array(_evaluate(self.tree, x0, x1, backend), x0)

    def __repr__(self):
        return f"Function({self.text!r})"


class FunctionPair:
    """The two conditions: maps lines x (..., P, 2) to y (..., P, 2)."""

    def __init__(self, texts=OFFICIAL_FUNCTIONS):
        texts = tuple(texts)
        if len(texts) != 2:
            raise FunctionSyntaxError(f"expected exactly two functions, got {len(texts)}: {texts!r}")
        self.functions = tuple(Function(t) for t in texts)
        self.texts = tuple(f.text for f in self.functions)

    @property
    def trig(self) -> tuple[Trig, Trig] | None:
        """Both functions' g(a*x0 + b*x1 + c) forms, or None if either is outside the family."""
        forms = tuple(f.trig for f in self.functions)
        return None if None in forms else forms

    def __call__(self, x):
        x0, x1 = x[..., 0], x[..., 1]
        parts = [f(x0, x1) for f in self.functions]
        return torch.stack(parts, dim=-1) if isinstance(x, torch.Tensor) else np.stack(parts, axis=-1)

    def __repr__(self):
        return f"FunctionPair({self.texts!r})"
