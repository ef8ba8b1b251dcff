"""A2N119: an apex backend function whose native twin already exists becomes a call of it."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext
from apex2native.findings import NUMERICS
from apex2native.native_twins import Twin
from apex2native.rules.base import Rule


class NativeTwin(Rule):
    """`step_apex(...)` hands its work to `step_amp(..., scaler)` beside it, with a GradScaler.

    Before:
        def supervised_training_step_apex(model, optimizer, loss_fn, device=None):
            from apex import amp as apex_amp
            def update(engine, batch):
                ...
                with apex_amp.scale_loss(loss, optimizer) as scaled_loss:
                    scaled_loss.backward()
                optimizer.step()
            return update
    After:
        def supervised_training_step_apex(model, optimizer, loss_fn, device=None):
            return supervised_training_step_amp(
                model=model, optimizer=optimizer, loss_fn=loss_fn, device=device,
                scaler=torch.amp.GradScaler("cuda"),
            )

    A library that offers apex as one backend keeps a factory per backend, and the apex one
    is public API: its callers cannot be handed a scaler, and a second native copy of the
    training step would drift from the first. The apex def keeps its name and signature and
    routes to the native code the project already has (the scaler is made where the twin
    expects it, once per factory call). The twin must be proven: a module-level def named
    like the apex one with `amp`, `native` or `torch` for `apex`, taking the same parameters
    plus one scaler, whose body is the apex body once apex's `scale_loss` block reads as a
    plain backward and the twin's autocast blocks and `if scaler:` test are taken out. Its
    autocast must be apex's: float16 on CUDA, always on. Any other difference (a clip, a
    step the other lacks, bfloat16, `loss_id=` or `delay_unscale=`, another use of apex)
    leaves the def to the other rules.

    Only a factory is routed (the apex def returns the closure that scales), so the scaler
    lives as long as the training. The routing belongs to every migration unit of its
    program: it happens only when all of them migrate, when no `amp.initialize` that scales
    nothing of its own may leave amp off (`enabled=flag`, an O0 or run-time opt level: the
    twin's scaler is always on), and when no amp state is saved or loaded (the checkpoint
    would hold another scaler than the twin's). Otherwise the apex def is threaded or
    refused like any other.

    Numerics: the apex callers' `amp.initialize` options no longer reach the step. It runs
    as O1 with default options does (autocast, dynamic loss scaling); O2/O3's fp16 weights
    and a static `loss_scale` are gone.
    """

    code = "A2N119"
    name = "native-twin"
    tier = NUMERICS
    summary = "an apex backend function delegates to its native twin"

    def apply(self, ctx: FileContext) -> None:
        routed = ctx.facts.routed if ctx.facts else {}
        for func in ctx.module.body:
            if isinstance(func, cst.FunctionDef) and func.name.value in routed:
                unit, twin = routed[func.name.value]
                self._route(ctx, func, twin, unit)

    def _route(self, ctx: FileContext, func: cst.FunctionDef, twin: Twin, unit: str) -> None:
        body = list(func.body.body)
        docstring = body[:1] if body and _is_docstring(body[0]) else []
        for stmt in body[len(docstring) :]:
            ctx.names.remove(stmt)
        arguments = [*twin.positional, *(f"{p}={p}" for p in twin.keywords)]
        arguments.append(f"{twin.scaler}={ctx.gen.grad_scaler('cuda')}")
        call = f"return {twin.native}({', '.join(arguments)})"
        width = ctx.index.indent_width(body[-1])
        routed = ctx.gen.stmt(call, width)
        group = object()
        ctx.tx.tag(group, unit)
        ctx.tx.register_init(unit, func, self.code, f"{twin.apex} stays apex")

        def replace(updated: cst.CSTNode) -> cst.CSTNode:
            return updated.with_changes(body=[*updated.body[: len(docstring)], routed])

        ctx.tx.edits.replace_node(group, func.body, replace)
        ctx.needs_torch = True
        ctx.tx.note(
            group,
            func,
            self.code,
            f"{twin.apex} runs {twin.native}, the native path beside it, with a GradScaler: "
            "its callers' amp.initialize options no longer apply (it runs as O1 with "
            "dynamic loss scaling does)",
            NUMERICS,
        )


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )
