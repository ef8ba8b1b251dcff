"""A2N111: forward passes of an initialized model outside training run under autocast too."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
from libcst.helpers import get_full_name_for_node

from apex2native.context import FileContext
from apex2native.findings import NUMERICS, SAFE
from apex2native.rules.autocast import assigned, reads
from apex2native.rules.base import Rule

HALF = m.Call(func=m.Attribute(attr=m.Name("half")), args=[])


class Evaluation(Rule):
    """Evaluation code that apex O1 patched globally gets its own autocast regions.

    Before (val.py, handed the model that main.py initialized):
        if config.TRAIN.OPT_LEVEL == "O2":
            images = images.half()
        output = model(images)
        loss = criterion(output, target)
    After:
        with torch.amp.autocast("cuda", dtype=torch.float16, enabled=scaler.is_enabled()):
            output = model(images)
            loss = criterion(output, target)

    The region runs on over the statements after the forward that compute from its
    outputs (an assignment, `total += ...`, a call such as `meter.update(output, target)`).

    apex patched torch for the whole process, so evaluation ran in mixed precision as well:
    functions handed the initialized model, and methods of the class that holds
    `self.scaler` that run `self.model` outside training (`evaluate`, `predict`).
    `.half()` casts that exist only for O2/O3 (guarded by the opt level or the fp16 flag)
    are removed: the model stays fp32 and autocast casts per op. Other `.half()` calls
    (storage casts) stay and are reported; a `.half()` of the model itself holds the unit
    back, since natively it would leave training with fp16 weights.
    """

    code = "A2N111"
    name = "evaluation"
    tier = NUMERICS
    summary = "forward passes in evaluation under autocast; O2 .half() casts removed"

    def apply(self, ctx: FileContext) -> None:
        defs = ctx.index.definitions()
        for qualname, (models, spec, switch) in ctx.facts.evaluation.items():
            func = defs.get(qualname)
            if not isinstance(func, cst.FunctionDef) or not spec.autocast:
                continue
            hints = (*spec.level_hints, *spec.conditions, "fp16", "half", '"O2"', '"O3"')
            self._half(ctx, func, set(models), hints, spec.unit)
            if not self._regions(ctx, func, set(models), switch, spec.unit) and spec.unit in {
                d.spec.unit
                for d in ctx.facts.inits.values()
                if d.spec and d.kind == "inference" and not d.companion
            }:
                ctx.refuse(
                    func,
                    self.code,
                    "inference only: no forward pass of the model in this function to run "
                    f"under {ctx.autocast_hint()}; do it where the model runs",
                    spec.unit,
                )

    def _half(
        self, ctx: FileContext, func: cst.FunctionDef, models: set[str], hints, unit: str
    ) -> None:
        removed: set[cst.CSTNode] = set()
        for node in ctx.index.within(func.body, cst.If):
            if node.orelse is not None:
                continue
            test = ctx.index.code(node.test).replace("'", '"')
            if not any(h and h.replace("'", '"') in test for h in hints):
                continue
            body = node.body.body
            if body and all(_is_half_cast(s) for s in body):
                group = object()
                ctx.tx.tag(group, unit)
                removed.add(node)
                ctx.tx.edits.replace_statement(group, node, lambda _u: [])
                ctx.tx.note(
                    group,
                    node,
                    self.code,
                    "O2/O3 .half() cast removed: autocast casts per op",
                    NUMERICS,
                )
        for node in ctx.index.calls_named("half", func.body):
            if not m.matches(node, HALF) or any(a in removed for a in ctx.index.ancestors(node)):
                continue
            if _names_model(node.func.value, models):  # type: ignore[attr-defined]
                ctx.refuse(
                    node,
                    self.code,
                    "`.half()` of the model training shares would turn the fp32 weights the "
                    "GradScaler steps into fp16 for the rest of training (under apex O2/O3 "
                    "they were fp16 already); drop it (autocast covers the forward) and "
                    "migrate by hand",
                    unit,
                )
                continue
            ctx.tx.note(
                object(), node, self.code, ".half() left as is: not an opt-level cast", SAFE
            )

    def _regions(
        self,
        ctx: FileContext,
        func: cst.FunctionDef,
        models: set[str],
        switch: str | None,
        unit: str,
    ) -> bool:
        """Autocast around the statements that run the model; False when there are none."""
        wrapped: set[int] = set()
        covered = False  # a forward already under autocast (a training region, a rerun)
        names = sorted({*(m.rsplit(".", 1)[-1] for m in models), "forward", "module"})
        calls = [c for name in names for c in ctx.index.calls_named(name, func.body)]
        for node in sorted(calls, key=ctx.index.order):
            if not _runs_model(node, models):
                continue
            stmt = ctx.index.statement_of(node)
            if ctx.in_autocast(stmt):
                covered = True
                continue
            if id(stmt) in wrapped or not isinstance(stmt, cst.SimpleStatementLine):
                continue
            block = ctx.index.siblings(stmt)
            start = block.index(stmt)
            produced = assigned(ctx.index, stmt)
            end = start
            for later in block[start + 1 :]:
                if not m.matches(later, CONSUMER):
                    break
                if not (reads(ctx.index, later) & produced) or not ctx.index.within(
                    later, cst.Call
                ):
                    break
                produced |= assigned(ctx.index, later)
                end += 1
            for s in block[start : end + 1]:
                wrapped.add(id(s))
            group = object()
            ctx.tx.tag(group, unit)
            code = ctx.gen.autocast(ctx.options.device_type, ctx.options.dtype, switch)
            template = ctx.gen.stmt(f"with {code}:\n    pass", ctx.index.indent_width(stmt))
            ctx.tx.edits.wrap(group, block[start], block[end], template)
            ctx.record_region(unit, switch, stmt, equivalent=True)
            ctx.mark_autocast(block[start : end + 1])
            ctx.needs_torch = True
            ctx.tx.note(group, stmt, self.code, "evaluation forward pass under autocast", NUMERICS)
        return bool(wrapped) or covered


# what may follow a forward into its region: a statement that computes from its outputs
# (`loss = criterion(out, y)`, `total += criterion(out, y).item()`, `meter.update(out, y)`);
# apex O1 ran those in mixed precision as well
CONSUMER = m.SimpleStatementLine(
    body=[m.Assign() | m.AugAssign() | m.AnnAssign(value=m.DoNotCare()) | m.Expr(value=m.Call())]
)


def _runs_model(call: cst.Call, models: set[str]) -> bool:
    """`model(x)`, `model.forward(x)` or `model.module(x)` for a model parameter (or an
    attribute of the method's instance, `self.model`)."""
    target = call.func
    if isinstance(target, cst.Attribute) and target.attr.value in ("forward", "module"):
        if get_full_name_for_node(target) not in models:
            target = target.value
    return get_full_name_for_node(target) in models


def _names_model(node: cst.BaseExpression, models: set[str]) -> bool:
    """`model` or `model.module` for a model parameter (or `self.model`)."""
    if isinstance(node, cst.Attribute) and node.attr.value == "module":
        if get_full_name_for_node(node) not in models:
            node = node.value
    return get_full_name_for_node(node) in models


def _is_half_cast(stmt: cst.CSTNode) -> bool:
    """`x = x.half()` or `model.half()` as a whole statement."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return False
    small = stmt.body[0]
    if isinstance(small, cst.Expr):
        return m.matches(small.value, HALF)
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        return m.matches(small.value, HALF)
    return False
