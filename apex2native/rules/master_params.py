"""A2N108: `amp.master_params(opt)` becomes the optimizer's own parameters."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule


class MasterParams(Rule):
    """`amp.master_params(opt)` iterates the parameters the optimizer holds.

    Before:
        clip_grad_norm_(amp.master_params(optimizer), max_norm)
    After:
        clip_grad_norm_((p for group in optimizer.param_groups for p in group["params"]), max_norm)

    This is exactly what apex yields without master weights (O0, O1, O3), and the fp32
    parameters themselves where O2 used to keep copies. Reads of their gradients get
    `scaler.unscale_` first (A2N105).
    """

    code = "A2N108"
    name = "master-params"
    tier = SAFE
    summary = "amp.master_params(opt) -> the optimizer's parameters"

    def apply(self, ctx: FileContext) -> None:
        for call in ctx.names.calls_to("apex.amp.master_params"):
            args = [a for a in call.args if not a.star]
            if len(args) != 1 or len(call.args) != 1:
                ctx.refuse(call, self.code, "amp.master_params with unexpected arguments")
                continue
            opt = ctx.index.code(args[0].value)
            if not isinstance(args[0].value, (cst.Name, cst.Attribute, cst.Subscript)):
                opt = f"({opt})"
            q = ctx.gen.lit("params")
            code = f"(p for group in {opt}.param_groups for p in group[{q}])"
            group = object()
            ctx.tx.tag(group, ctx.needed_unit(call) or "")
            ctx.tx.edits.replace_node(group, call, lambda _u, c=code: cst.parse_expression(c))
            stmt = ctx.index.statement_of(call)
            width = ctx.index.indent_width(stmt)
            ctx.tx.edits.replace_statement(group, stmt, lambda u, w=width: [ctx.gen.relayout(u, w)])
            ctx.tx.handle(group, call.func)
            ctx.tx.note(group, call, self.code, "amp.master_params -> optimizer parameters", SAFE)
