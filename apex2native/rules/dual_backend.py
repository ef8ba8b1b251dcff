"""A2N112: where a native AMP branch already exists next to the apex one, the apex one goes."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m
from libcst.helpers import get_full_name_for_node

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule
from apex2native.syntax import PLAIN_READ, taken_arm

NATIVE_AMP = ("torch.cuda.amp.", "torch.amp.", "torch.autocast")
NATIVE_CALLS = {"GradScaler", "autocast"}
APEX = m.SimpleString(value=m.MatchIfTrue(lambda v: v[1:-1].lower() == "apex"))
STRING = m.SimpleString()
DISABLED = m.Arg(keyword=m.Name("enabled"), value=m.Name("False"))


@dataclass(frozen=True)
class Switch:
    """The one `add_argument` of this file whose choices hold "apex", by its destination."""

    dest: str
    call: cst.Call
    choices: cst.List | cst.Tuple


def _keyword(call: cst.Call, name: str) -> cst.BaseExpression | None:
    return next((a.value for a in call.args if a.keyword and a.keyword.value == name), None)


def _dest(call: cst.Call) -> str | None:
    """argparse's destination of an `add_argument` call (`--amp-impl` -> `amp_impl`)."""
    dest = _keyword(call, "dest")
    if dest is not None:
        return dest.evaluated_value if isinstance(dest, cst.SimpleString) else None
    flags = [a.value for a in call.args if a.keyword is None]
    if not flags or not all(isinstance(f, cst.SimpleString) for f in flags):
        return None
    names = [f.evaluated_value for f in flags]
    long = [n for n in names if n.startswith("--")]
    return (long[0] if long else names[0]).lstrip("-").replace("-", "_")


def _switches(ctx: FileContext) -> dict[str, Switch]:
    """Options that can never be "apex" once "apex" leaves their choices: declared once in
    this file, with literal choices, and a default that is not "apex" (a default run that
    used apex would change backend, and its apex-era checkpoints would meet the native
    loader)."""
    found: dict[str, list[cst.Call]] = {}
    for call in ctx.index.calls_named("add_argument"):
        dest = _dest(call) if isinstance(call.func, cst.Attribute) else None
        if dest is not None:
            found.setdefault(dest, []).append(call)
    switches = {}
    for dest, calls in found.items():
        choices = _keyword(calls[0], "choices")
        default = _keyword(calls[0], "default")
        if (
            len(calls) != 1
            or not isinstance(choices, (cst.List, cst.Tuple))
            or not all(m.matches(e, m.Element(value=STRING)) for e in choices.elements)
            or not any(m.matches(e.value, APEX) for e in choices.elements)
            or len(choices.elements) < 2
            or not (
                default is None
                or m.matches(default, m.Name("None"))
                or m.matches(default, STRING)
                and not m.matches(default, APEX)
            )
        ):
            continue
        switches[dest] = Switch(dest, calls[0], choices)
    return switches


def _apex_choice(test: cst.BaseExpression, switches: dict[str, Switch]) -> tuple[str, bool] | None:
    """(destination, True for ==) when the test is `<receiver>.<dest> ==/!= "apex"`."""
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return None
    target = test.comparisons[0]
    if not isinstance(target.operator, (cst.Equal, cst.NotEqual)):
        return None
    equal = isinstance(target.operator, cst.Equal)
    for read, other in ((test.left, target.comparator), (target.comparator, test.left)):
        if (
            m.matches(other, APEX)
            and isinstance(read, cst.Attribute)
            and m.matches(read.value, PLAIN_READ)
            and read.attr.value in switches
        ):
            return read.attr.value, equal
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
    copy of it. The switch must be an argparse option of this file, declared once, whose
    literal choices hold "apex" and whose default is not "apex"; once "apex" leaves the
    choices no run can take an apex arm, so every `if`, `elif` and conditional expression
    testing `<x>.<option> ==/!= "apex"` takes its native arm, and every other reading of the
    option sees the values it saw before. It applies only where some `if` on the option has
    an apex arm that uses apex beside an arm that calls native AMP (`torch.cuda.amp`,
    `torch.amp`, GradScaler, autocast that is not `enabled=False`, a scaler's method):
    `if args.sync_bn == "apex":` alone, or beside an arm that does something else, has no
    native branch to keep (removing it would drop sync batch norm), so its apex code is
    migrated like any other. A default of "apex" (the default run would change backend,
    and its apex-era checkpoints meet the native loader) and switches read from configs
    are left to the other rules.
    """

    code = "A2N112"
    name = "dual-backend"
    tier = SAFE
    summary = "drop the apex branch where a native AMP branch already exists"

    def apply(self, ctx: FileContext) -> None:
        switches = _switches(ctx)
        if not switches:
            return
        tests: dict[str, list[tuple[cst.If | cst.IfExp, bool]]] = {}
        for node in ctx.index.within(ctx.module, cst.If, cst.IfExp):
            choice = _apex_choice(node.test, switches)
            if choice is not None:
                tests.setdefault(choice[0], []).append((node, choice[1]))
        for dest, nodes in tests.items():
            if not any(
                isinstance(node, cst.If) and self._beside_native_amp(ctx, node, equal)
                for node, equal in nodes
            ):
                continue
            removed: list[cst.CSTNode] = []
            for node, equal in nodes:
                if any(ctx.index.contains(arm, node) for arm in removed):
                    continue  # its whole arm goes with an outer test
                apex_arm = node.body if equal else node.orelse
                if apex_arm is not None:
                    removed.append(apex_arm)
                    ctx.names.remove(apex_arm)
                group = object()
                self._take_native(ctx, group, node, equal)
                ctx.tx.note(
                    group, node, self.code, f"apex branch of `{dest}` removed; native kept", SAFE
                )
            self._choices(ctx, switches[dest])

    def _take_native(
        self, ctx: FileContext, group: object, node: cst.If | cst.IfExp, equal: bool
    ) -> None:
        """Replace the test's `if`/`elif`/conditional expression by its native arm."""
        if isinstance(node, cst.IfExp):
            ctx.tx.edits.replace_node(group, node, lambda u, e=equal: _arm_of(u, e))
            return
        parent = ctx.index.parent(node)
        if isinstance(parent, cst.If) and parent.orelse is node:  # an elif
            ctx.tx.edits.replace_node(group, node, lambda u, e=equal: _elif_arm(u, e))
            return
        ctx.tx.edits.replace_statement(group, node, lambda u, k=not equal: taken_arm(u, k))

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
    def _native_amp(arm: cst.CSTNode) -> bool:
        """The arm calls native AMP (`torch.cuda.amp.GradScaler()`, `autocast(...)` that is
        not `enabled=False`, `torch.amp....`) or a scaler's method (`scaler.scale(loss)`);
        names alone (`scaler = None`, `args.autocast = False`) are not AMP."""
        for call in m.findall(arm, m.Call()):
            name = get_full_name_for_node(call.func) or ""
            if any(m.matches(arg, DISABLED) for arg in call.args):
                continue
            if name.startswith(NATIVE_AMP) or name.rsplit(".", 1)[-1] in NATIVE_CALLS:
                return True
            owner = name.rsplit(".", 2)[-2] if name.count(".") else ""
            if "scaler" in owner.lower():
                return True
        return False

    def _mentions_apex(self, ctx: FileContext, node: cst.CSTNode) -> bool:
        return any(ctx.names.apex_name(n) for n in ctx.index.within(node, cst.Name, cst.Attribute))

    def _choices(self, ctx: FileContext, switch: Switch) -> None:
        """The option loses "apex" from its choices: `--amp-impl apex` is now refused by
        argparse, so no run reaches the removed arms (or mixes backends)."""
        kept = [e for e in switch.choices.elements if not m.matches(e.value, APEX)]
        kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        group = object()
        ctx.tx.edits.replace_node(
            group, switch.choices, lambda u, k=kept: u.with_changes(elements=k)
        )
        ctx.tx.note(group, switch.call, self.code, '"apex" removed from the choices', SAFE)


def _arm_of(node: cst.IfExp, equal: bool) -> cst.BaseExpression:
    """The native arm of `a if <switch> == "apex" else b`, in the expression's parentheses."""
    arm = node.orelse if equal else node.body
    if node.lpar and not arm.lpar:
        arm = arm.with_changes(lpar=node.lpar, rpar=node.rpar)
    return arm


def _elif_arm(node: cst.If, equal: bool) -> cst.If | cst.Else | cst.RemovalSentinel:
    """What replaces `elif <switch> ==/!= "apex":` in its chain."""
    if not equal:
        return cst.Else(body=node.body)
    return node.orelse if node.orelse is not None else cst.RemoveFromParent()
