"""A2N112: where a native AMP branch already exists next to the apex one, the apex one goes."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m
from libcst.helpers import get_full_name_for_node

from apex2native.context import FileContext
from apex2native.findings import NUMERICS, SAFE
from apex2native.rules.base import Rule
from apex2native.rules.registrations import REGISTRATIONS, registers_lowered_op
from apex2native.rules.state_dict import load_converting
from apex2native.syntax import PLAIN_READ, conjuncts, is_call_statement, taken_arm

NATIVE_AMP = ("torch.cuda.amp.", "torch.amp.", "torch.autocast")
NATIVE_CALLS = {"GradScaler", "autocast"}
APEX = m.SimpleString(value=m.MatchIfTrue(lambda v: v[1:-1].lower() == "apex"))
STRING = m.SimpleString()
DISABLED = m.Arg(keyword=m.Name("enabled"), value=m.Name("False"))


@dataclass(frozen=True)
class Switch:
    """The one `add_argument` of this file whose choices hold "apex", by its destination.

    `native`: when the default is "apex", the one other choice, which becomes the default.
    """

    dest: str
    call: cst.Call
    choices: cst.List | cst.Tuple
    native: cst.SimpleString | None = None


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
    this file, with literal choices. A default of "apex" moves to the one other choice (with
    several others, which of them is the native one is not known)."""
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
            or not (default is None or m.matches(default, m.Name("None") | STRING))
        ):
            continue
        others = [e.value for e in choices.elements if not m.matches(e.value, APEX)]
        native = None
        if default is not None and m.matches(default, APEX):
            if len(others) != 1:
                continue
            native = others[0]
        switches[dest] = Switch(dest, calls[0], choices, native)  # type: ignore[arg-type]
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
    `torch.amp`, GradScaler, autocast that is not `enabled=False`, a scaler's method), in
    its other arm or an earlier arm of its `elif` chain: `if args.sync_bn == "apex":` alone,
    or beside an arm that does something else, has no native branch to keep (removing it
    would drop sync batch norm), so its apex code is migrated like any other. An `if`
    whose test is an `and` with an `== "apex"` term (`fp16 and amp == "apex" and "apex"
    not in sys.modules: raise ...`) can no longer be true, and goes.

    A default of "apex" moves to the one other choice (with several, which one is native
    is not known, and the option is left to the other rules): runs that used apex by
    default now take the native path, so the native arm's `scaler.load_state_dict(state)`
    beside apex's `amp.load_state_dict` converts apex's `{"loss_scaler0": ...}` inline and
    their checkpoints resume. Registrations that served the apex runs only
    (`amp.register_half_function(torch, "einsum")`, of ops autocast already casts so) go,
    with an `if "apex" in sys.modules:` that holds nothing else. Switches read from configs
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
            if choice is None and isinstance(node, cst.If):
                choice = _apex_conjunct(node.test, switches)  # `fp16 and amp == "apex"`
            if choice is not None:
                tests.setdefault(choice[0], []).append((node, choice[1]))
        collapsed = False
        for dest, nodes in tests.items():
            if not any(
                isinstance(node, cst.If)
                and _apex_choice(node.test, switches) is not None
                and self._beside_native_amp(ctx, node, equal)
                for node, equal in nodes
            ):
                continue
            if switches[dest].native is not None and not self._same_state(ctx, nodes):
                continue  # default runs saved apex state where the native arm does not look
            removed: list[cst.CSTNode] = []
            for node, equal in nodes:
                if any(ctx.index.contains(arm, node) for arm in removed):
                    continue  # its whole arm goes with an outer test
                apex_arm = node.body if equal else node.orelse
                group = object()
                if apex_arm is not None:
                    for arm in self._other_arms(ctx, node, equal):
                        self._convert_loads(ctx, group, apex_arm, arm)
                if apex_arm is not None:
                    removed.append(apex_arm)
                    ctx.names.remove(apex_arm)
                self._take_native(ctx, group, node, equal)
                ctx.tx.note(
                    group, node, self.code, f"apex branch of `{dest}` removed; native kept", SAFE
                )
            self._choices(ctx, switches[dest])
            collapsed = True
        if collapsed:
            self._registrations(ctx)

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
        """The `if` has an apex arm that uses apex and a native arm that uses native AMP:
        its other arm, or an earlier arm of its chain (`if amp == "pytorch": ... elif amp
        == "apex": ...`)."""
        apex_arm = node.body if equal else node.orelse
        return (
            apex_arm is not None
            and self._mentions_apex(ctx, apex_arm)
            and any(self._native_amp(arm) for arm in self._other_arms(ctx, node, equal))
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

    def _other_arms(self, ctx: FileContext, node: cst.If | cst.IfExp, equal: bool) -> list:
        """The arms that stay beside the apex arm: its `else`, and the earlier arms of an
        `elif` chain."""
        if isinstance(node, cst.IfExp):
            return []
        native_arm = node.orelse if equal else node.body
        others = [native_arm] if native_arm is not None else []
        head, parent = node, ctx.index.parent(node)
        while equal and isinstance(parent, cst.If) and parent.orelse is head:
            others.append(parent.body)
            head, parent = parent, ctx.index.parent(parent)
        return others

    def _same_state(self, ctx: FileContext, nodes: list) -> bool:
        """Each `amp.load_state_dict(x)` / `amp.state_dict()` arm sits beside a native arm
        that loads the same `x` / stores under the same target: a run that used apex by
        default finds its checkpoint where the native path now looks."""
        for node, equal in nodes:
            apex_arm = node.body if equal else node.orelse
            if apex_arm is None:
                continue
            if isinstance(node, cst.IfExp):
                names = {ctx.names.call_name(c) for c in ctx.index.within(apex_arm, cst.Call)}
                if names & {"apex.amp.load_state_dict", "apex.amp.state_dict"}:
                    return False  # `amp.load_state_dict(...) if apex else ...`: not followed
                continue
            native = " ".join(ctx.index.code(a) for a in self._other_arms(ctx, node, equal))
            for call in ctx.index.within(apex_arm, cst.Call):
                name = ctx.names.call_name(call)
                if name == "apex.amp.load_state_dict":
                    wanted = [ctx.index.code(a.value) for a in call.args]
                    if len(wanted) != 1 or f"load_state_dict({wanted[0]})" not in native:
                        return False
                elif name == "apex.amp.state_dict":
                    stmt = ctx.index.statement_of(call)
                    small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) else None
                    if not isinstance(small, cst.Assign) or len(small.targets) != 1:
                        return False
                    target = ctx.index.code(small.targets[0].target)
                    if f"{target} =" not in native:
                        return False
        return True

    def _convert_loads(
        self, ctx: FileContext, group: object, apex_arm: cst.CSTNode, native_arm: cst.CSTNode
    ) -> None:
        """The native arm's `scaler.load_state_dict(state)` beside apex's
        `amp.load_state_dict(...)` reads checkpoints that runs with apex saved: it converts
        apex's `{"loss_scaler0": ...}` inline, or they would stop the resume with a KeyError."""
        if not any(
            ctx.names.call_name(c) == "apex.amp.load_state_dict"
            for c in ctx.index.within(apex_arm, cst.Call)
        ):
            return
        loads = [
            c
            for c in ctx.index.calls_named("load_state_dict", native_arm)
            if isinstance(c.func, cst.Attribute)
            and m.matches(c.func.value, PLAIN_READ)
            and len(c.args) == 1
            and c.args[0].keyword is None
            and not c.args[0].star
        ]
        if len(loads) != 1:
            return
        access = ctx.index.code(loads[0].func.value)  # type: ignore[attr-defined]
        if load_converting(ctx, group, loads[0], access):
            return
        ctx.tx.note(
            group,
            loads[0],
            self.code,
            f"{access}.load_state_dict converts the amp state of checkpoints saved with apex "
            "(they resume with apex's loss scale)",
            SAFE,
        )

    def _registrations(self, ctx: FileContext) -> None:
        """`amp.register_half_function(torch, "einsum")` served the apex runs only; native
        autocast already runs the op in that precision (A2N114's table). An `if` holding only
        the registration (`if "apex" in sys.modules:`) goes with it."""
        for qualified, (ops, precision) in REGISTRATIONS.items():
            for call in ctx.names.calls_to(qualified):
                stmt = ctx.index.statement_of(call)
                if not registers_lowered_op(ctx, call, ops) or not is_call_statement(stmt, call):
                    continue
                if ctx.unit_for(call):
                    continue  # A2N114 removes it with its unit
                target: cst.CSTNode = stmt
                block = ctx.index.parent(stmt)
                owner = ctx.index.parent(block) if block is not None else None
                if (
                    isinstance(owner, cst.If)
                    and owner.orelse is None
                    and len(owner.body.body) == 1  # type: ignore[union-attr]
                    and not (
                        isinstance(ctx.index.parent(owner), cst.If)
                        and ctx.index.parent(owner).orelse is owner  # type: ignore[union-attr]
                    )
                ):
                    target = owner
                group = object()
                ctx.tx.edits.replace_statement(group, target, lambda _u: [])
                ctx.tx.handle(group, call.func)
                ctx.tx.note(
                    group,
                    call,
                    self.code,
                    f"registration for the apex runs removed: native autocast already runs "
                    f"the op in {precision}",
                    SAFE,
                )

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
        if switch.native is None:
            return
        default = _keyword(switch.call, "default")
        native = switch.native
        ctx.tx.edits.replace_node(group, default, lambda _u, n=native: n)  # type: ignore[arg-type]
        ctx.tx.note(
            group,
            switch.call,
            self.code,
            f'the default was "apex": runs without `--{switch.dest}` now take '
            f"{native.value}, the native path (autocast with fp32 weights where apex's O2/O3 "
            "kept fp16 ones)",
            NUMERICS,
        )


def _apex_conjunct(
    test: cst.BaseExpression, switches: dict[str, Switch]
) -> tuple[str, bool] | None:
    """(destination, True) when the test is an `and` with a `<x>.<dest> == "apex"` term:
    always false once "apex" leaves the choices, like the whole `== "apex"` test."""
    parts = conjuncts(test)
    if len(parts) < 2:
        return None
    for part in parts:
        choice = _apex_choice(part, switches)
        if choice is not None and choice[1]:
            return choice
    return None


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
