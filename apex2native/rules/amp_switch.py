"""A2N116: a test of `amp` that is None when amp is off becomes a test of the scaler."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule

NONE_TEST = m.Comparison(comparisons=[m.ComparisonTarget(m.Is() | m.IsNot(), m.Name("None"))])


class AmpSwitch(Rule):
    """`if amp:` where `amp` is None when amp is switched off tests the scaler instead.

    Before (train.py; main.py passes `amp`, or None when --fp16 is off):
        params = amp.master_params(optimizer) if amp else model.parameters()
        save(state, amp_state=amp.state_dict() if amp is not None else None)
    After:
        params = (...) if scaler.is_enabled() else model.parameters()
        save(state, amp_state=scaler.state_dict() if scaler.is_enabled() else None)

    Unlike an availability test (`amp = None` when apex is not installed, which the
    migration makes always true), the None here is the switch: the fp32 run must keep its
    own arm. The scaler is enabled exactly when amp was on, except under opt level O0,
    where apex ran pure fp32 and the fp32 arm is the one that matches.
    """

    code = "A2N116"
    name = "amp-switch"
    tier = SAFE
    summary = "tests of an amp that is None when off -> scaler.is_enabled()"

    def apply(self, ctx: FileContext) -> None:
        for ref, name in ctx.names.refs():
            if name != "apex.amp" or not isinstance(ref, cst.Name):
                continue
            if not ctx.names.switch_held(ref):
                continue
            if any(s.optional == ref.value for s in ctx.reach.reachable(ref)):
                continue  # an optimizer that only scaled: `opt is not None` asks if one was given
            parent = ctx.index.parent(ref)
            negate = False
            target: cst.CSTNode = ref
            if m.matches(parent, NONE_TEST):
                negate = isinstance(parent.comparisons[0].operator, cst.Is)  # type: ignore[union-attr]
                target = parent  # type: ignore[assignment]
            elif not _truth_position(ctx, ref):
                continue  # a value use (`log(amp or "off")`): a bool would change it
            self._replace(ctx, ref, target, negate)

    def _replace(self, ctx: FileContext, ref: cst.Name, target: cst.CSTNode, negate: bool):
        group = object()
        scalers = ctx.reach.reachable(ref)
        units = {s.unit for s in scalers}
        if len(units) != 1:
            ctx.tx.handle(group, ref)
            ctx.refuse(
                ref,
                self.code,
                f"`{ctx.index.code(target)}` tests whether amp is on; no single scaler "
                "reaches here to test instead",
            )
            return
        scaler = scalers[0]
        ctx.tx.tag(group, scaler.unit)
        code = f"{'not ' if negate else ''}{scaler.access}.is_enabled()"
        ctx.tx.edits.replace_node(group, target, lambda _u: cst.parse_expression(code))
        stmt = ctx.index.statement_of(ref)
        if isinstance(stmt, cst.SimpleStatementLine):
            width = ctx.index.indent_width(stmt)
            ctx.tx.edits.replace_statement(group, stmt, lambda u: [ctx.gen.relayout(u, width)])
        ctx.tx.handle(group, ref)
        ctx.tx.note(
            group, ref, self.code, f"`{ctx.index.code(target)}` -> `{code}` (the amp switch)", SAFE
        )


def _truth_position(ctx: FileContext, node: cst.CSTNode) -> bool:
    """Only the truth of `node` matters: an `if`/`while`/`assert` test, through `and`,
    `or` and `not` (`if amp and x:`), but not `amp or "off"` used as a value."""
    current = node
    while True:
        parent = ctx.index.parent(current)
        if isinstance(parent, cst.UnaryOperation):
            return isinstance(parent.operator, cst.Not)
        if isinstance(parent, cst.BooleanOperation):
            current = parent
            continue
        if isinstance(parent, (cst.If, cst.IfExp, cst.While, cst.Assert)):
            return parent.test is current
        return isinstance(parent, cst.CompIf)
