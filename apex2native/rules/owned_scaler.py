"""A2N120: a class whose scaled backward runs under its own switch makes its own scaler."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext
from apex2native.findings import NUMERICS
from apex2native.rules.base import Rule


class OwnedScaler(Rule):
    """A class that picks the scaled backward by a switch it carries gets its own scaler.

    Before (trainer.py; `initialize_optimizer` in another module runs `amp.initialize`):
        def __init__(self, model, optimizer, use_amp=None):
            self.use_amp = use_amp
        def backward_propagate(self, loss):
            if self.use_amp:
                with amp.scale_loss(loss, self.optimizer) as scaled_loss:
                    scaled_loss.backward()
    After:
        def __init__(self, model, optimizer, use_amp=None):
            self.use_amp = use_amp
            self.scaler = torch.amp.GradScaler(
                "cuda", enabled=bool(self.use_amp and self.use_amp != "O0")
            )
        def backward_propagate(self, loss):
            if self.use_amp:
                self.scaler.scale(loss).backward()

    The plan chooses this only where no scaler can be passed to the scaled method (its
    class has subclasses that call it, its callers are outside the repository), the switch
    is set from a constructor parameter at the top of `__init__` and nowhere else, and
    every amp.initialize of the program migrates with it, with default options and no amp
    state saved. A switch that may hold an opt level is off for "O0", as apex's O0 was fp32.
    """

    code = "A2N120"
    name = "owned-scaler"
    tier = NUMERICS
    summary = "a class with its own AMP switch makes its own GradScaler"

    def apply(self, ctx: FileContext) -> None:
        owned = ctx.facts.owned if ctx.facts else {}
        if not owned:
            return
        defs = ctx.index.definitions()
        for cls_name, (switch, access, enabled, unit) in owned.items():
            init = defs.get(f"{cls_name}.__init__")
            if not isinstance(init, cst.FunctionDef):
                continue
            anchor = _top_assignment(init, "self", switch)
            if anchor is None or _top_assignment(init, *access.split(".", 1)):
                continue  # a second run finds the scaler made
            creation = ctx.gen.stmt(
                f"{access} = {ctx.gen.grad_scaler(ctx.options.device_type, [('enabled', enabled)])}",
                ctx.index.indent_width(anchor),
            )
            group = object()
            ctx.tx.tag(group, unit)
            ctx.tx.register_init(unit, anchor, self.code, f"{cls_name} keeps apex's scaling")
            ctx.tx.edits.insert_after(group, anchor, creation)
            ctx.needs_torch = True
            ctx.tx.note(
                group,
                anchor,
                self.code,
                f"{cls_name} makes {access}, enabled by `self.{switch}` like its scaled "
                "backward: the options of the program's amp.initialize (its opt level "
                "included) no longer reach this object, and a run whose amp.initialize "
                f"was on while `self.{switch}` was off now runs in fp32",
                NUMERICS,
            )


def _top_assignment(init: cst.FunctionDef, owner: str, attr: str) -> cst.CSTNode | None:
    """The statement of `__init__`'s own body that is `<owner>.<attr> = ...`."""
    target = m.Attribute(value=m.Name(owner), attr=m.Name(attr))
    pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(target=target)])])
    return next((stmt for stmt in init.body.body if m.matches(stmt, pattern)), None)
