"""Small shape helpers for LibCST trees that several rules need."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

# calls that print or log a message (`print`, `logger.info`, `warnings.warn`)
MESSAGE_CALLS = frozenset({"print", "info", "warning", "warn", "debug", "error"})
# calls a message may make without effects: `str(e)`, `"{}".format(e)`
FORMATTING = m.Call(
    func=m.Name("str") | m.Name("repr") | m.Name("type") | m.Attribute(attr=m.Name("format"))
)

# `if __name__ == "__main__":` (either quote)
MAIN_GUARD = m.If(
    test=m.Comparison(
        left=m.Name("__name__"),
        comparisons=[
            m.ComparisonTarget(
                m.Equal(), m.SimpleString('"__main__"') | m.SimpleString("'__main__'")
            )
        ],
    )
)

# `args.size`, `self.args.size`, `size`: reads with no side effect, the same value twice
PLAIN_READ = m.Name() | m.Attribute(value=m.Name()) | m.Attribute(value=m.Attribute(value=m.Name()))


def module_values(value: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The expressions an assignment may store as is: `x`, or either arm of `x if c else y`."""
    if isinstance(value, cst.IfExp):
        return [value.body, value.orelse]
    return [value]


def is_self_method(func: cst.BaseExpression) -> bool:
    """`self.<name>` as a callee."""
    return (
        isinstance(func, cst.Attribute)
        and isinstance(func.value, cst.Name)
        and func.value.value == "self"
    )


def conjuncts(test: cst.BaseExpression) -> list[cst.BaseExpression]:
    """`a and b and c` as [a, b, c]; anything else as [itself]."""
    if (
        isinstance(test, cst.BooleanOperation)
        and isinstance(test.operator, cst.And)
        and not test.lpar
    ):
        return conjuncts(test.left) + conjuncts(test.right)
    return [test]


def taken_arm(updated: cst.If, take_body: bool) -> list[cst.BaseStatement]:
    """The statements of the arm an `if` takes when its test is known."""
    if take_body:
        return list(updated.body.body)
    if updated.orelse is None:
        return []
    if isinstance(updated.orelse, cst.If):
        return [updated.orelse]
    return list(updated.orelse.body.body)


def with_appended(items: list, new: cst.CSTNode) -> list:
    """`items` (args or elements) plus `new` at the end, with a comma before it."""
    items = list(items)
    if items and items[-1].comma == cst.MaybeSentinel.DEFAULT:
        items[-1] = items[-1].with_changes(
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        )
    return [*items, new]


def strip_not(test: cst.BaseExpression) -> tuple[cst.BaseExpression, bool]:
    """`not x` as (x, True); anything else as (itself, False)."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return test.expression, True
    return test, False


def is_call_statement(stmt: cst.CSTNode, call: cst.Call) -> bool:
    """`stmt` is a line holding only `call` as an expression statement."""
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and stmt.body[0].value is call
    )


def apex_message(stmt: cst.CSTNode) -> bool:
    """`print("... install apex ...")`, `logger.info("apex is available.")`: a statement that
    only prints or logs a message naming apex, which no longer applies without it."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return False
    expr = stmt.body[0]
    if not isinstance(expr, cst.Expr) or not isinstance(expr.value, cst.Call):
        return False
    func = expr.value.func
    name = func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", "")
    if name not in MESSAGE_CALLS or any(
        not m.matches(call, FORMATTING)
        for arg in expr.value.args
        for call in m.findall(arg, m.Call())
    ):
        return False  # `logger.info(f"{setup()} apex")`: the message runs code too
    return "apex" in cst.Module([]).code_for_node(expr.value).lower()
