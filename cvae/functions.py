"""Condition functions y = f(x0, x1) as configuration, parsed without `eval`.

A user writes e.g. ``cos(49*x0 + 42*x1)``. Python's `ast` parses the text and
only a whitelist of nodes is kept, as a tree that evaluates on torch tensors (so
the y-loss is differentiable on any device) and on numpy arrays. Functions of the
form g(a*x0 + b*x1 + c), g in {sin, cos}, are recognised so the metrics can
enumerate every exact solution.
"""

from __future__ import annotations

import ast
import math
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


class FunctionSyntaxError(UserError):
    """A condition function the parser does not accept."""


@dataclass(frozen=True)
class Trig:
    """g(a*x0 + b*x1 + c) with g in {sin, cos}: the family with exact solutions."""

    kind: str
    a: float
    b: float
    c: float


_NAMES = {"x0", "x1", "pi", *_CALLS}
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


def _parse(text: str):
    """The text as a tree of ("num" | "var" | "neg" | "call" | "bin", ...) tuples.

    Python's own parser reads it (`ast`, mode "eval"); nothing is evaluated, and only the nodes
    of this grammar are accepted: numbers, x0, x1, pi, + - * / **, signs and calls of _CALLS.
    """
    if len(text) > MAX_LENGTH:
        raise FunctionSyntaxError(
            f"function of {len(text)} characters starting {text[:30]!r}...; at most {MAX_LENGTH} are allowed"
        )
    if not text:
        raise FunctionSyntaxError("empty function; write e.g. 'cos(49*x0 + 42*x1)'")
    text = " ".join(text.split())  # one line: a newline inside the text is just space
    depth = level = 0
    for char in text:  # the parser's own limit is far deeper; refuse before parsing
        level += {"(": 1, ")": -1}.get(char, 0)
        depth = max(depth, level)
    if depth > MAX_DEPTH:
        raise FunctionSyntaxError(f"{text[:30]!r}... nests deeper than {MAX_DEPTH} levels; simplify it")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:  # offsets count from 1; 0 (or past the end) is the end of the text
        at, end = (err.offset or 0) - 1, max((err.end_offset or 0) - 1, (err.offset or 0))
        if not 0 <= at < len(text) or "never closed" in (err.msg or ""):
            raise FunctionSyntaxError(f"unexpected end of input at position {len(text)} in {text!r}") from None
        raise FunctionSyntaxError(f"unexpected token {text[at:end]!r} at position {at} in {text!r}") from None
    names = sorted((n.col_offset, n.id) for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in _NAMES)
    if names:  # the first unknown name, wherever it stands (os in os.system(1))
        at, name = names[0]
        raise FunctionSyntaxError(f"unknown name {name!r} at position {at} in {text!r}; allowed are {_ALLOWED}")
    return _node(tree, text, 0)


def _node(node, text: str, depth: int):
    """One checked node; `depth` counts nested calls, signs, powers and right operands."""
    if depth > MAX_DEPTH:
        raise FunctionSyntaxError(f"{text[:30]!r}... nests deeper than {MAX_DEPTH} levels; simplify it")
    where = f"at position {getattr(node, 'col_offset', 0)} in {text!r}"
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if not abs(node.value) <= MAX_CONSTANT:
            raise FunctionSyntaxError(
                f"number {ast.get_source_segment(text, node)} {where} is too large; constants are limited to "
                f"{MAX_CONSTANT:g} in magnitude"
            )
        return ("num", float(node.value))
    if isinstance(node, ast.Name):
        if node.id in ("x0", "x1"):
            return ("var", int(node.id[1]))
        if node.id == "pi":
            return ("num", math.pi)
        raise FunctionSyntaxError(f"unknown name {node.id!r} {where}; allowed are {_ALLOWED}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _node(node.operand, text, depth + 1)
        return ("neg", inner) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return ("bin", _BINARY[type(node.op)], _node(node.left, text, depth), _node(node.right, text, depth + 1))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in _CALLS:
            raise FunctionSyntaxError(f"unknown name {node.func.id!r} {where}; allowed are {_ALLOWED}")
        if len(node.args) == 1:
            return ("call", node.func.id, _node(node.args[0], text, depth + 1))
    part = ast.get_source_segment(text, node) or type(node).__name__
    raise FunctionSyntaxError(f"{part!r} {where} is not allowed; allowed are {_ALLOWED}")


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
        self.tree = _parse(self.text)
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

    @classmethod
    def of(cls, source) -> FunctionPair:
        """The pair itself, a Config's functions (anything with `.functions`), or the two texts."""
        if isinstance(source, cls):
            return source
        return cls(getattr(source, "functions", source))

    def continuum(self) -> str | None:
        """Why this sin/cos pair's solutions are a continuum rather than isolated branches (its arguments'
        linear parts are dependent), or None. Such a pair has no branches to enumerate or cover."""
        trigs = self.trig
        if trigs is None:
            return None
        (a1, b1), (a2, b2) = ((t.a, t.b) for t in trigs)
        if abs(a1 * b2 - b1 * a2) > 1e-12 * max(abs(a1) + abs(b1), 1.0) * max(abs(a2) + abs(b2), 1.0):
            return None
        return (
            f"the linear parts of {self.texts} are dependent ([[{a1:g}, {b1:g}], [{a2:g}, {b2:g}]] is singular), "
            "so the solution set is a continuum and has no branches to enumerate"
        )

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
