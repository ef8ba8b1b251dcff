"""A2N113: the amp module held as a value becomes a flag, so its None checks keep working."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.index import descendants
from apex2native.rules.base import Rule


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
        for ref, name in ctx.apex_refs():
            if name == "apex.amp" and isinstance(ref, cst.Attribute):
                ctx.handle(object(), ref)  # `self.amp` itself: a flag from now on
        for cls in descendants(ctx.module):
            if not isinstance(cls, cst.ClassDef) or not ctx.held_apex(cls):
                continue
            for node in descendants(cls):
                if not (isinstance(node, cst.Assign) and len(node.targets) == 1):
                    continue
                target = node.targets[0].target
                if not (
                    isinstance(target, cst.Attribute) and target.attr.value in ctx.held_apex(cls)
                ):
                    continue
                values = (
                    [node.value.body, node.value.orelse]
                    if isinstance(node.value, cst.IfExp)
                    else [node.value]
                )
                group = object()
                for value in values:
                    if isinstance(value, cst.Name) and ctx.apex_name(value) == "apex.amp":
                        ctx.edits.replace_node(group, value, lambda _u: cst.Name("True"))
                        ctx.handle(group, value)
                ctx.handle(group, target)
                ctx.note(
                    group,
                    node,
                    self.code,
                    f"{ctx.code(target)} holds a flag instead of the amp module",
                    SAFE,
                )
