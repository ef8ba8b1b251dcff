"""A2N113: the amp module held as a value becomes a flag, so its None checks keep working."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule
from apex2native.syntax import module_values


class AmpValue(Rule):
    """`self.amp = amp if fp16 else None` keeps its meaning once apex is gone.

    Before:
        self.amp = amp if fp16 else None
        if self.amp is not None:
            self.model, self.optimizer = self.amp.initialize(self.model, self.optimizer)
    After:
        self.amp = True if fp16 else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp is not None)

    Uses through the attribute (`self.amp.scale_loss(...)`) are resolved to apex.amp and
    rewritten like direct uses; the stored module becomes `True`, so every `is None` /
    truthiness test of the attribute behaves as before. amp passed through parameters or
    returned by factories in other files is reported instead.
    """

    code = "A2N113"
    name = "amp-as-value"
    tier = SAFE
    summary = "self.amp = amp -> a flag; self.amp.* rewritten like amp.*"

    def apply(self, ctx: FileContext) -> None:
        for cls in ctx.index.within(ctx.module, cst.ClassDef):
            held = ctx.names.held(cls)
            if held:
                self._class(ctx, cls, held)

    def _class(self, ctx: FileContext, cls: cst.ClassDef, held: set[str]) -> None:
        unit = self.unit(ctx, cls)
        for ref, name in ctx.names.refs():
            if (
                name == "apex.amp"
                and isinstance(ref, cst.Attribute)
                and ctx.index.contains(cls, ref)
            ):
                group = object()  # `self.amp` itself: a flag from now on
                ctx.tx.tag(group, unit)
                ctx.tx.handle(group, ref)
        for node in ctx.index.within(cls, cst.Assign):
            if len(node.targets) != 1:
                continue
            target = node.targets[0].target
            if not (isinstance(target, cst.Attribute) and target.attr.value in held):
                continue
            group = object()
            ctx.tx.tag(group, unit)
            ctx.unit_facts.flags[target.attr.value] = unit
            for value in module_values(node.value):
                if isinstance(value, cst.Name) and ctx.names.apex_name(value) == "apex.amp":
                    ctx.tx.edits.replace_node(group, value, lambda _u: cst.Name("True"))
                    ctx.tx.handle(group, value)
            ctx.tx.handle(group, target)
            ctx.tx.note(
                group,
                node,
                self.code,
                f"{ctx.index.code(target)} holds a flag instead of the amp module",
                SAFE,
            )

    @staticmethod
    def unit(ctx: FileContext, cls: cst.ClassDef) -> str:
        """The unit of the class's own initialize, else a unit for the held module itself."""
        qualname = ctx.index.qualname(cls)
        units = {
            d.spec.unit
            for d in ctx.facts.inits.values()
            if d.spec is not None and d.home == qualname
        }
        if len(units) == 1:
            return units.pop()
        return f"{qualname}:amp"
