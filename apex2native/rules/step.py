"""A2N104: the optimizer step after a scaled backward becomes `scaler.step(opt)` + `scaler.update()`."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule
from apex2native.rules.scale_loss import BackwardSite

LOOPS = (cst.For, cst.While)


def step_calls(ctx: FileContext, scope: cst.CSTNode) -> list[cst.Call]:
    """`<x>.step(...)` calls in `scope` itself, not in functions nested inside it."""
    return [
        call
        for call in ctx.index.calls_named("step", scope)
        if isinstance(call.func, cst.Attribute) and ctx.index.scope_of(call) is scope
    ]


def _shares_loop(ctx: FileContext, a: cst.CSTNode, b: cst.CSTNode, scope: cst.CSTNode) -> bool:
    loops_a = [n for n in ctx.index.ancestors(a) if isinstance(n, LOOPS)]
    if not loops_a:
        return False
    for anc in ctx.index.ancestors(b):
        if anc is scope:
            return False
        if anc in loops_a:
            return True
    return False


class Step(Rule):
    """`opt.step()` after the scaled backward becomes `scaler.step(opt)`; one `update()` follows.

    Before:
        optimizer.step()
    After:
        scaler.step(optimizer)
        scaler.update()

    `update()` goes after the last step of each block that steps (the accumulation boundary,
    or after the last of several optimizers), so it runs once per iteration. A step that
    cannot be found in the same function leaves the whole site as it was, with a TODO:
    stepping on scaled gradients would be silently wrong.
    """

    code = "A2N104"
    name = "step-update"
    tier = SAFE
    summary = "optimizer.step() -> scaler.step(optimizer); scaler.update()"

    def apply(self, ctx: FileContext) -> None:
        stepped: dict[cst.Call, str] = {}
        for site in list(ctx.sites):
            if ctx.tx.dropped(site.group):
                continue
            if not self._site(ctx, site, stepped):
                ctx.sites.remove(site)

    def finalize(self, ctx: FileContext) -> None:
        self._updates(ctx)

    def _site(self, ctx: FileContext, site: BackwardSite, stepped: dict[cst.Call, str]) -> bool:
        scope = ctx.index.scope_of(site.with_node)
        calls = step_calls(ctx, scope)
        for opt in site.optimizers:
            found = [
                c
                for c in calls
                if ctx.index.code(c.func.value) == opt  # type: ignore[attr-defined]
                and (
                    ctx.index.after(c, site.with_node)
                    or _shares_loop(ctx, c, site.with_node, scope)
                )
                and not ctx.index.exclusive(c, site.with_node)
            ]
            if not found:
                ctx.tx.fail(
                    site.group,
                    site.call,
                    self.code,
                    f"no {opt}.step() follows this backward in the same function; call "
                    f"{site.scaler.access}.step({opt}) and {site.scaler.access}.update() where it steps",
                )
                return False
            for call in found:
                if call.args:
                    ctx.tx.fail(
                        site.group,
                        call,
                        self.code,
                        f"{opt}.step(...) takes arguments (a closure?), which GradScaler.step refuses",
                    )
                    return False
                if stepped.get(call, site.scaler.access) != site.scaler.access:
                    ctx.tx.fail(site.group, call, self.code, f"{opt} is stepped by two scalers")
                    return False
                stepped[call] = site.scaler.access
                access = site.scaler.access
                ctx.tx.edits.replace_node(
                    site.group,
                    call,
                    lambda _u, a=access, o=opt: cst.parse_expression(f"{a}.step({o})"),
                )
                site.steps.append(call)
        return True

    def _updates(self, ctx: FileContext) -> None:
        """One `update()` after the last step of each (scaler, block)."""
        last: dict[tuple[str, int], tuple[cst.CSTNode, BackwardSite]] = {}
        for site in ctx.sites:
            if ctx.tx.dropped(site.group):
                continue
            for call in site.steps:
                stmt = ctx.index.statement_of(call)
                key = (site.scaler.access, id(ctx.index.block_of(stmt)))
                if key not in last or ctx.index.order(stmt) > ctx.index.order(last[key][0]):
                    last[key] = (stmt, site)
        for stmt, site in last.values():
            scaler = site.scaler
            if scaler.unreachable_update or (
                scaler.update_scope is not None
                and not ctx.index.contains(scaler.update_scope, stmt)
            ):
                ctx.tx.fail(
                    site.group,
                    stmt,
                    self.code,
                    f"{scaler.access}.update({scaler.update_args}) reads names of the scope that "
                    "makes the scaler, not visible here; pass the loss scale choice in by hand",
                )
                continue
            ctx.tx.edits.insert_after(
                site.group,
                stmt,
                ctx.gen.stmt(
                    f"{scaler.access}.update({scaler.update_args})", ctx.index.indent_width(stmt)
                ),
            )
            ctx.tx.note(
                site.group, stmt, self.code, f"step -> {scaler.access}.step + update()", SAFE
            )
