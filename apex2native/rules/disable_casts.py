"""A2N109: `with amp.disable_casts():` becomes `torch.amp.autocast(..., enabled=False)`."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext
from apex2native.findings import NUMERICS
from apex2native.rules.base import Rule


class DisableCasts(Rule):
    """A region where apex stopped casting becomes a region where autocast is off.

    Before:
        with amp.disable_casts():
            out = custom_op(x)
    After:
        with torch.amp.autocast("cuda", enabled=False):
            out = custom_op(x)

    Tensors made in fp16 before the region stay fp16 inside it, as with apex; cast them
    with `.float()` where the region needs fp32. The region goes with the migration unit
    that brings autocast in: where no unit of the file is known (apex initialized in a way
    the plan cannot follow), it stays apex with a TODO.
    """

    code = "A2N109"
    name = "disable-casts"
    tier = NUMERICS
    summary = "amp.disable_casts() -> torch.amp.autocast(enabled=False)"

    def apply(self, ctx: FileContext) -> None:
        for call in ctx.names.calls_to("apex.amp.disable_casts"):
            if call.args:
                ctx.tx.todo(call, self.code, "amp.disable_casts with arguments")
                continue
            unit = ctx.unit_for(call)
            if not unit:
                ctx.tx.todo(
                    call,
                    self.code,
                    "amp.disable_casts: no amp.initialize migrated with it is in reach, so "
                    "apex's casts stay on here; migrate it with the initialize",
                )
                continue
            code = ctx.gen.autocast(ctx.options.device_type, enabled="False")
            group = object()
            ctx.tx.tag(group, unit)
            ctx.tx.edits.replace_node(group, call, lambda _u, c=code: cst.parse_expression(c))
            ctx.tx.handle(group, call.func)
            ctx.needs_torch = True
            ctx.tx.note(
                group, call, self.code, "amp.disable_casts -> autocast(enabled=False)", NUMERICS
            )
