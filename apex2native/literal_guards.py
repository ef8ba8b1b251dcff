"""Deciding an `if` test from the literal arguments of one call.

`run_nn(cfg, 'valid', model, loader)` never enters `if mode in ['train']:` of the def it
calls. The plan asks this to know that such a call needs no scaler. Only literals count,
only parameters the def never rebinds, and anything else leaves the test undecided.
"""

from __future__ import annotations

import ast
from typing import Any

UNKNOWN = object()


def literal_bindings(
    positional: list[str],
    args: list[str],
    keywords: dict[str, str],
    rebound: frozenset[str],
    defaults: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """The parameters a call binds to an immutable literal (`'valid'`, `0`, `None`,
    `('a', 'b')`): `args` fill the `positional` parameters in order, `keywords` name the
    def's own parameters, and a parameter left out takes its default."""
    given = dict(defaults)
    given.update(zip(positional, args))
    given.update(keywords)
    out = {}
    for name, code in given.items():
        if name in rebound:
            continue
        try:
            value = ast.literal_eval(code)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if _immutable(value):  # a list the def may extend before its test is no literal
            out[name] = value
    return out


def _immutable(value: Any) -> bool:
    if isinstance(value, (tuple, frozenset)):
        return all(_immutable(v) for v in value)
    return value is None or isinstance(value, (str, bytes, int, float, complex, bool))


def arm_skipped(test: str, taken: bool, bindings: dict[str, Any]) -> bool:
    """The call never runs the arm (`taken`: the body, else the `else`) of `if test:`."""
    try:
        tree = ast.parse(test, mode="eval")
    except SyntaxError:
        return False
    value = _value(tree.body, bindings)
    return value is not UNKNOWN and bool(value) != taken


def _value(node: ast.expr, bindings: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return bindings.get(node.id, UNKNOWN)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_value(e, bindings) for e in node.elts]
        if any(i is UNKNOWN for i in items):
            return UNKNOWN
        if isinstance(node, ast.List):
            return items
        if isinstance(node, ast.Tuple):
            return tuple(items)
        try:
            return set(items)
        except TypeError:
            return UNKNOWN
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _value(node.operand, bindings)
        return UNKNOWN if inner is UNKNOWN else not inner
    if isinstance(node, ast.BoolOp):
        return _bool_op(node, bindings)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left = _value(node.left, bindings)
        right = _value(node.comparators[0], bindings)
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        return _compare(node.ops[0], left, right)
    return UNKNOWN


def _bool_op(node: ast.BoolOp, bindings: dict[str, Any]) -> Any:
    """`and`/`or` as Python evaluates them: the value of the operand that decides (`None or
    "train"` is `"train"`), unknown once an operand before the decision is unknown."""
    value: Any = UNKNOWN
    for operand in node.values:
        value = _value(operand, bindings)
        if value is UNKNOWN:
            return UNKNOWN
        if bool(value) == isinstance(node.op, ast.Or):
            return value
    return value


def _compare(op: ast.cmpop, left: Any, right: Any) -> Any:
    try:
        if isinstance(op, ast.In):
            return left in right
        if isinstance(op, ast.NotIn):
            return left not in right
        if isinstance(op, ast.Eq):
            return left == right
        if isinstance(op, ast.NotEq):
            return left != right
        if isinstance(op, ast.Is):
            return left is right if left is None or right is None else UNKNOWN
        if isinstance(op, ast.IsNot):
            return left is not right if left is None or right is None else UNKNOWN
    except TypeError:
        return UNKNOWN
    return UNKNOWN
