"""A2N112: where a native AMP branch already exists next to the apex one, the apex one goes."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
from libcst.helpers import get_full_name_for_node

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule
from apex2native.syntax import taken_arm

NATIVE_AMP = ("torch.cuda.amp", "torch.amp", "torch.autocast")
NATIVE_WORDS = {"gradscaler", "autocast"}
APEX = m.SimpleString(value=m.MatchIfTrue(lambda v: v[1:-1].lower() == "apex"))


def _apex_choice(test: cst.BaseExpression) -> tuple[str, bool] | None:
    """(`args.amp_impl` code, True for ==) when the test picks the apex backend by name."""
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return None
    target = test.comparisons[0]
    if not isinstance(target.operator, (cst.Equal, cst.NotEqual)):
        return None
    equal = isinstance(target.operator, cst.Equal)
    if m.matches(target.comparator, APEX):
        return cst.Module([]).code_for_node(test.left), equal
    if m.matches(test.left, APEX):
        return cst.Module([]).code_for_node(target.comparator), equal
    return None


class DualBackend(Rule):
    """Files with a backend switch (`--amp-impl apex|native`) keep only the native branch.

    Before:
        parser.add_argument("--amp-impl", default="native", choices=["native", "apex"])
        if args.amp_impl == "apex":
            with amp.scale_loss(loss, optimizer) as scaled_loss:
                scaled_loss.backward()
        else:
            scaler.scale(loss).backward()
    After:
        parser.add_argument("--amp-impl", default="native", choices=["native"])
        scaler.scale(loss).backward()

    The native branch already works; translating the apex branch would only make a second
    copy of it. Only branches chosen by comparing against the string "apex" are touched,
    and only where the other arm of the `if` uses native AMP (`torch.cuda.amp`, `torch.amp`,
    a GradScaler, autocast, a scaler). `if args.sync_bn == "apex":` alone, or with an arm
    that does something else, has no native branch to keep (removing it would drop sync
    batch norm), so its apex code is migrated like any other. Once one `if` on a switch
    qualifies, every `if` on that switch takes its native arm (also one whose apex arm is
    a plain `optimizer.step()`), so no run mixes the two backends; an `elif` chain on the
    switch leaves all of them to a person.
    """

    code = "A2N112"
    name = "dual-backend"
    tier = SAFE
    summary = "drop the apex branch where a native AMP branch already exists"

    def apply(self, ctx: FileContext) -> None:
        by_switch: dict[str, list[tuple[cst.If, bool]]] = {}
        for node in ctx.index.within(ctx.module, cst.If):
            choice = _apex_choice(node.test)
            if choice is not None:
                by_switch.setdefault(choice[0], []).append((node, choice[1]))
        for switch, ifs in by_switch.items():
            if not any(self._beside_native_amp(ctx, node, equal) for node, equal in ifs):
                continue
            if any(self._chained(ctx, node) for node, _ in ifs):
                continue  # an elif chain on the switch: leave it to a person
            # every `if` on the switch takes its native arm, so the choice stays one choice
            for node, equal in ifs:
                group = object()
                ctx.tx.edits.replace_statement(group, node, lambda u, k=not equal: taken_arm(u, k))
                apex_arm = node.body if equal else node.orelse
                if apex_arm is not None:
                    ctx.names.remove(apex_arm)
                ctx.tx.note(
                    group,
                    node,
                    self.code,
                    f"apex branch of `{switch}` removed; native branch kept",
                    SAFE,
                )
            self._choices(ctx, {switch})

    def _beside_native_amp(self, ctx: FileContext, node: cst.If, equal: bool) -> bool:
        """The `if` has an apex arm that uses apex and a native arm that uses native AMP."""
        apex_arm, native_arm = (node.body, node.orelse) if equal else (node.orelse, node.body)
        return (
            apex_arm is not None
            and native_arm is not None
            and self._mentions_apex(ctx, apex_arm)
            and self._native_amp(native_arm)
        )

    @staticmethod
    def _chained(ctx: FileContext, node: cst.If) -> bool:
        parent = ctx.index.parent(node)
        return isinstance(node.orelse, cst.If) or (
            isinstance(parent, cst.If) and parent.orelse is node
        )

    @staticmethod
    def _native_amp(arm: cst.CSTNode) -> bool:
        """The arm uses native AMP: `torch.cuda.amp`, `torch.amp`, GradScaler, autocast, or a
        method of a scaler (`scaler.scale(loss)`); `scaler = None` alone is not AMP."""
        for node in m.findall(arm, m.Name() | m.Attribute()):
            name = get_full_name_for_node(node) or ""
            if name.startswith(NATIVE_AMP) or NATIVE_WORDS & set(name.lower().split(".")):
                return True
        for call in m.findall(arm, m.Call(func=m.Attribute())):
            owner = get_full_name_for_node(call.func.value) or ""
            if "scaler" in owner.rsplit(".", 1)[-1].lower():
                return True
        return False

    def _mentions_apex(self, ctx: FileContext, node: cst.CSTNode) -> bool:
        return any(ctx.names.apex_name(n) for n in ctx.index.within(node, cst.Name, cst.Attribute))

    def _choices(self, ctx: FileContext, switches: set[str]) -> None:
        """`choices=[..., "apex"]` of the option behind a removed switch loses "apex"."""
        dests = {s.rsplit(".", 1)[-1] for s in switches}
        for node in ctx.index.calls_named("add_argument"):
            if not isinstance(node.func, cst.Attribute):
                continue
            flags = [
                a.value.evaluated_value for a in node.args if isinstance(a.value, cst.SimpleString)
            ]
            if not any(
                f.lstrip("-").replace("-", "_") in dests for f in flags if isinstance(f, str)
            ):
                continue
            for arg in node.args:
                if (
                    arg.keyword is not None
                    and arg.keyword.value == "choices"
                    and isinstance(arg.value, (cst.List, cst.Tuple))
                ):
                    kept = [e for e in arg.value.elements if not m.matches(e.value, APEX)]
                    if kept and len(kept) < len(arg.value.elements):
                        kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                        group = object()
                        ctx.tx.edits.replace_node(
                            group, arg.value, lambda u, k=kept: u.with_changes(elements=k)
                        )
                        ctx.tx.note(group, node, self.code, '"apex" removed from the choices', SAFE)
