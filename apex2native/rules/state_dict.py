"""A2N107: `amp.state_dict()` / `amp.load_state_dict(x)` become the scaler's."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext
from apex2native.findings import MANUAL, SAFE
from apex2native.rules.base import Rule


class StateDict(Rule):
    """The amp state in checkpoints becomes the GradScaler's state.

    Before:
        checkpoint["amp"] = amp.state_dict()
        amp.load_state_dict(checkpoint["amp"])
    After:
        checkpoint["amp"] = scaler.state_dict()
        scaler.load_state_dict(checkpoint["amp"])

    The checkpoint key stays, so the rest of the checkpoint code is unchanged. Checkpoints
    written by apex hold `{"loss_scaler0": {...}}`, which GradScaler cannot load: the report
    says so, and `apex2native convert-checkpoint` converts them.
    """

    code = "A2N107"
    name = "state-dict"
    tier = SAFE
    summary = "amp.state_dict / amp.load_state_dict -> scaler.state_dict / load_state_dict"

    def apply(self, ctx: FileContext) -> None:
        for qualified, method in (
            ("apex.amp.state_dict", "state_dict"),
            ("apex.amp.load_state_dict", "load_state_dict"),
        ):
            for call in ctx.names.calls_to(qualified):
                self._site(ctx, call, method)

    def _site(self, ctx: FileContext, call: cst.Call, method: str) -> None:
        reachable = ctx.reach.reachable(call)
        if len(reachable) != 1:
            why = "no GradScaler reaches it" if not reachable else "several scalers reach it"
            ctx.refuse(call, self.code, f"amp.{method}: {why}; use the scaler's {method}")
            return
        scaler = reachable[0]
        group = object()
        ctx.depend(scaler, group)
        new = cst.parse_expression(f"{scaler.access}.{method}")
        ctx.tx.edits.replace_node(group, call.func, lambda _u: new)
        ctx.tx.handle(group, call.func)
        ctx.tx.note(group, call, self.code, f"amp.{method} -> {scaler.access}.{method}", SAFE)
        if method == "load_state_dict":
            ctx.tx.note(
                group,
                call,
                self.code,
                "checkpoints saved by apex need `apex2native convert-checkpoint` first",
                MANUAL,
            )
