"""A2N103: `with amp.scale_loss(loss, opt) as s: s.backward()` becomes `scaler.scale(loss).backward()`."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext, Scaler
from apex2native.findings import NUMERICS, SAFE
from apex2native.index import callee_name
from apex2native.rules.base import Rule
from apex2native.scaler_options import normalize
from apex2native.syntax import PLAIN_READ, conjuncts, strip_not

SCALE_LOSS_PARAMS = (
    "loss",
    "optimizers",
    "loss_id",
    "model",
    "delay_unscale",
    "delay_overflow_check",
)


@dataclass
class BackwardSite:
    """One scaled backward: the transaction that the step, unscale and autocast rules extend.

    `with_node` is the statement that holds the backward: the `with amp.scale_loss(...)`
    block, or the one statement `optimizer.backward(loss)` of FP16_Optimizer (A2N117).
    """

    with_node: cst.With | cst.SimpleStatementLine
    call: cst.Call
    loss: cst.BaseExpression
    optimizers: list[str]
    scaler: Scaler
    top: cst.CSTNode  # the statement of its block that holds the site (the with, or its if)
    group: object = field(default_factory=object)
    steps: list[cst.Call] = field(default_factory=list)
    # `if <test>: <scaled> else: <plain backward>` kept as it is, the test not being the
    # scaler's switch: (the test, True when the scaled backward is its body). The step and
    # the unscale then run under the same test.
    arm: tuple[cst.BaseExpression, bool] | None = None
    # the other arms of the if/else that holds it, where a plain backward belongs
    plain_arms: list[cst.CSTNode] = field(default_factory=list)


def bind(call: cst.Call, wrapper: bool = False) -> dict[str, cst.BaseExpression] | None:
    """The arguments by name; `wrapper`: the old API's `opt.scale_loss(loss)`, whose
    optimizer is the receiver."""
    if wrapper:
        if len(call.args) != 1 or call.args[0].star or call.args[0].keyword:
            return None
        return {"loss": call.args[0].value, "optimizers": call.func.value}  # type: ignore
    out: dict[str, cst.BaseExpression] = {}
    for i, arg in enumerate(call.args):
        if arg.star:
            return None
        name = arg.keyword.value if arg.keyword else SCALE_LOSS_PARAMS[i]
        out[name] = arg.value
    return out if "loss" in out and "optimizers" in out else None


def optimizer_codes(ctx: FileContext, node: cst.BaseExpression) -> list[str]:
    if isinstance(node, (cst.List, cst.Tuple)):
        return [ctx.index.code(e.value) for e in node.elements]
    return [ctx.index.code(node)]


def backward_call(node: cst.CSTNode, receiver: str | None = None) -> cst.Call | None:
    """`x.backward(...)` as a whole statement, optionally for a given receiver code."""
    if isinstance(node, cst.SimpleStatementLine) and len(node.body) == 1:
        node = node.body[0]
    if not m.matches(node, m.Expr(value=m.Call(func=m.Attribute(attr=m.Name("backward"))))):
        return None
    call = node.value  # type: ignore[attr-defined]
    if receiver is not None:
        if cst.Module([]).code_for_node(call.func.value).strip() != receiver:
            return None
    return call


def _args_code(call: cst.Call) -> str:
    return "".join(cst.Module([]).code_for_node(a) for a in call.args).replace(" ", "")


def _kept_init_here(ctx: FileContext, call: cst.Call) -> bool:
    """An amp.initialize of this function stays apex: its optimizer may be this site's, and
    apex's amp must not run beside a GradScaler."""
    home = ctx.index.qualname(ctx.index.scope_of(call))
    return any(d.kind == "problem" and d.anchor[0] == home for d in ctx.facts.inits.values())


def _unreached(ctx: FileContext, call: cst.Call) -> str:
    """Why no scaler reaches a site: its own function's initialize is kept, or none is here."""
    home = ctx.index.qualname(ctx.index.scope_of(call))
    if _kept_init_here(ctx, call):
        return (
            "no GradScaler: this function's amp initialization is kept (see its A2N102 "
            "TODO); migrate it by hand, then use scaler.scale(loss)"
        )
    for func in ctx.index.ancestors(call):  # a closure reads the scaler of its maker
        home = ctx.index.qualname(func) if isinstance(func, cst.FunctionDef) else ""
        if home in ctx.facts.refusals:
            return (
                f"no GradScaler is passed to this function: {ctx.facts.refusals[home]}; "
                "pass the scaler in by hand and use scaler.scale(loss)"
            )
    return (
        "no GradScaler reaches this function (amp.initialize runs elsewhere); pass the "
        "scaler in and use scaler.scale(loss)"
    )


class ScaleLoss(Rule):
    """`amp.scale_loss` becomes `scaler.scale(loss)`; the with-block is dissolved.

    Before:
        with amp.scale_loss(loss, optimizer) as scaled_loss:
            scaled_loss.backward()
    After:
        scaler.scale(loss).backward()

    Other statements of the block stay where they were (gradients are still scaled there,
    as under apex); any other use of the scaled loss keeps a name bound to `scaler.scale(loss)`.
    `delay_unscale` disappears (native never unscales before `step`/`unscale_`). An
    `if fp16: <scaled> else: loss.backward()` whose condition is the scaler's `enabled` flag
    collapses to the scaled form, since a disabled scaler returns the loss unchanged. One
    whose condition is another switch (`self.use_amp` of a trainer, beside a scaler made
    elsewhere) keeps both arms, as apex ran them; its step then scales under the same test.
    A plain backward of the same function anywhere else before the scaled optimizer's step
    (under an outer `if`, in an `except`, a regularizer's own backward) would reach that
    step unscaled: the function's sites stay apex with a TODO.
    The site is one transaction with its `step` (A2N104) and `unscale_` (A2N105).
    """

    code = "A2N103"
    name = "scale-loss"
    tier = SAFE
    summary = "with amp.scale_loss(...) as s: s.backward() -> scaler.scale(loss).backward()"

    def apply(self, ctx: FileContext) -> None:
        for call in ctx.names.calls_to("apex.amp.scale_loss"):
            self._site(ctx, call)
        self._stray_backwards(ctx)

    def _stray_backwards(self, ctx: FileContext) -> None:
        """A plain backward of the same function outside the arm beside a scaled one
        (under an outer `if`, in an `except`, a regularizer's own backward): its gradients
        reach the step that now goes through the scaler, which would unscale what was never
        scaled (apex set earlier gradients aside in `scale_loss`). The sites stay apex."""
        by_scope: dict[int, list[BackwardSite]] = {}
        for site in ctx.sites:
            if not ctx.tx.dropped(site.group):
                by_scope.setdefault(id(ctx.index.scope_of(site.with_node)), []).append(site)
        for sites in by_scope.values():
            scope = ctx.index.scope_of(sites[0].with_node)
            covered = [n for s in sites for n in (s.with_node, *s.plain_arms)]
            optimizers = {o for s in sites for o in s.optimizers}
            steps = [
                c
                for c in ctx.index.calls_named("step", scope)
                if isinstance(c.func, cst.Attribute) and ctx.index.code(c.func.value) in optimizers
            ]
            for call in ctx.index.calls_named("backward", scope):
                if ctx.index.scope_of(call) is not scope:
                    continue
                if not any(ctx.index.order(call) < ctx.index.order(st) for st in steps):
                    continue  # after the last step of the scaled optimizers (another one's)
                if any(ctx.index.contains(node, call) for node in covered):
                    continue
                if any(
                    isinstance(a, cst.With)
                    and any(ctx.names.call_name(i.item) == "apex.amp.scale_loss" for i in a.items)
                    for a in ctx.index.ancestors(call)
                ):
                    continue  # another scaled backward (refused on its own, or held)
                for site in sites:
                    ctx.tx.fail(
                        site.group,
                        call,
                        self.code,
                        "a plain backward of this function runs outside the arm beside the "
                        f"scaled one, and its gradients reach the step {site.scaler.access} "
                        "would unscale; apex set them aside; scale it too or step it apart "
                        "by hand",
                    )
                    if site in ctx.sites:
                        ctx.sites.remove(site)
                break
            self._backward_helpers(ctx, scope, [s for s in sites if s in ctx.sites], steps)

    def _backward_helpers(
        self, ctx: FileContext, scope: cst.CSTNode, sites: list[BackwardSite], steps: list
    ) -> None:
        """A call of a def that runs a plain backward of its own (`add_reg(model)`) adds
        gradients at full size where apex had unscaled: only a call after the scaled
        backward and before a step of the same block can be unscaled first (A2N105). One
        before the backward (apex set those gradients aside), one whose def also scales a
        loss (its plain backward lands among scaled gradients), or one a step boundary
        would move (it ran once per micro-step) keeps the sites apex."""
        helpers = ctx.facts.backward_helpers
        if not helpers or not sites:
            return
        index = ctx.index
        for call in index.within(scope, cst.Call):
            if index.scope_of(call) is not scope:
                continue
            scales = helpers.get(ctx.names.resolve_call(call) or "")
            if scales is None:
                continue
            if not any(index.order(call) < index.order(st) for st in steps):
                continue  # after the last step of the scaled optimizers
            stmt = index.statement_of(call)
            after = any(
                index.order(s.with_node) < index.order(call)
                and not index.contains(s.with_node, call)
                for s in sites
            )
            same_block = any(
                index.order(call) < index.order(st)
                and index.block_of(index.statement_of(st)) is index.block_of(stmt)
                for st in steps
            )
            if after and same_block and not scales:
                continue  # unscaled first, as apex had (A2N105)
            if not after and all(
                any(
                    index.order(call) < index.order(z) < index.order(s.with_node)
                    for z in index.calls_named("zero_grad", scope)
                )
                for s in sites
            ):
                continue  # its gradients are cleared before the scaled backward
            why = (
                "its def scales a loss of its own and also runs a plain backward"
                if scales
                else (
                    "it runs before the scaled backward, whose gradients apex set aside"
                    if not after
                    else "a step boundary would move it, and it ran on every micro-step"
                )
            )
            for site in sites:
                ctx.tx.fail(
                    site.group,
                    call,
                    self.code,
                    f"{index.code(call.func)}() runs a plain backward of its own: {why}, so "
                    f"its gradients would reach {site.scaler.access}.step at the wrong scale; "
                    "scale it too or step it apart by hand",
                )
                if site in ctx.sites:
                    ctx.sites.remove(site)
            return

    def _site(self, ctx: FileContext, call: cst.Call) -> None:
        item = ctx.index.parent(call)
        with_node = ctx.index.parent(item) if isinstance(item, cst.WithItem) else None
        if not isinstance(with_node, cst.With) or len(with_node.items) != 1:
            return ctx.refuse(call, self.code, "amp.scale_loss outside a one-item with statement")
        func = call.func
        wrapper = isinstance(func, cst.Attribute) and ctx.names.wrapped_optimizer(func.value)
        bound = bind(call, wrapper)
        if bound is None:
            return ctx.refuse(call, self.code, "amp.scale_loss arguments not understood")
        if item.asname is None or not isinstance(item.asname.name, cst.Name):
            return ctx.refuse(call, self.code, "amp.scale_loss without `as <name>`")
        optimizers = optimizer_codes(ctx, bound["optimizers"])
        scaler = ctx.reach.pick(call, set(optimizers))
        if scaler is None or _kept_init_here(ctx, call):
            return ctx.refuse(call, self.code, _unreached(ctx, call))
        site = BackwardSite(with_node, call, bound["loss"], optimizers, scaler, with_node)
        ctx.depend(scaler, site.group)
        if not self._dissolve(ctx, site, item.asname.name.value):
            return
        if not self.collapse_branch(ctx, site):
            return
        ctx.tx.handle(site.group, call.func)
        ctx.sites.append(site)
        ctx.tx.note(site.group, call, self.code, f"amp.scale_loss -> {scaler.access}.scale", SAFE)
        if "delay_unscale" in bound:
            ctx.tx.note(
                site.group, call, self.code, "delay_unscale dropped (native unscales at step)", SAFE
            )
        if "loss_id" in bound:
            ctx.tx.note(
                site.group, call, self.code, "loss_id dropped: one scaler for every loss", NUMERICS
            )
        if "delay_overflow_check" in bound:
            ctx.tx.note(
                site.group,
                call,
                self.code,
                "delay_overflow_check dropped: this backward now takes part in the inf check",
                NUMERICS,
            )

    def _dissolve(self, ctx: FileContext, site: BackwardSite, name: str) -> bool:
        body = site.with_node.body
        uses = [
            n
            for n in ctx.index.within(body, cst.Name)
            if n.value == name and not _is_attr_name(ctx, n)
        ]
        backward_uses = [n for n in uses if _backward_receiver(ctx, n)]
        scaled = f"{site.scaler.access}.scale({ctx.index.code(site.loss)})"
        if uses and len(uses) == len(backward_uses) == 1:
            ctx.tx.edits.replace_node(site.group, uses[0], lambda _u: cst.parse_expression(scaled))
            bind_stmt = []
        else:
            bind_stmt = [ctx.gen.stmt(f"{name} = {scaled}", ctx.index.indent_width(site.with_node))]
        ctx.tx.edits.replace_statement(
            site.group, site.with_node, lambda upd: [*bind_stmt, *_body_lines(upd.body)]
        )
        return True

    def collapse_branch(self, ctx: FileContext, site: BackwardSite) -> bool:
        """Check the if/else that chooses between the scaled and a plain backward (for every
        rule that makes backward sites).

        A plain backward in another arm is only right when the branch condition is the
        scaler's switch: `scaler.step` would otherwise unscale gradients that were never
        scaled. When both arms are just the backward, the branch collapses (a disabled
        scaler is a plain backward).
        """
        block = ctx.index.parent(site.with_node)
        branch = ctx.index.parent(block)
        if isinstance(branch, cst.Else):
            if_node, scaled_in_body = ctx.index.parent(branch), False
        elif isinstance(branch, cst.If) and branch.body is block:
            if_node, scaled_in_body = branch, True
        else:
            return True
        arms = _arms(ctx.index.statement_of(if_node))
        others = [arm for arm in arms if arm is not block]
        if not any(self._plain_backwards(ctx, arm) for arm in others):
            return True  # the `if` stays: the forward may sit in the arm, before the backward
        site.plain_arms = others
        site.top = ctx.index.statement_of(if_node)
        if len(arms) != 2:
            return self._refuse(
                ctx,
                site,
                if_node,
                "this backward is one arm of an if/elif chain whose other arms run their own "
                f"backward; the step after the chain cannot be {site.scaler.access}.step for "
                "all of them; split the step per arm by hand",
            )
        test, negated = strip_not(if_node.test)
        positive = _de_morgan(test)
        if positive is not None:
            test, negated = positive, not negated  # `if not fp16 or amp is None: plain`
        flipped = _opposite(test)
        if flipped is not None and self._matches(ctx, flipped, site.scaler):
            test, negated = flipped, not negated  # `if opt_level == "O0": plain else: scaled`
        given = _tests_given(test, site.scaler.optional)
        if given is not None:
            # `if opt is not None:` where `opt` now holds the scaler: the arms stay, the plain
            # one for callers that pass none (no step here: the optimizer only scaled)
            return (given != negated) == scaled_in_body or self._refuse(
                ctx,
                site,
                if_node,
                f"the scaled backward runs when `{site.scaler.optional}` is not given; "
                "migrate this branch by hand",
            )
        if negated == scaled_in_body and not self._always(ctx, test):
            return self._refuse(ctx, site, if_node)
        if not self._matches(ctx, test, site.scaler) and not self._always(ctx, test):
            return self._keep_arms(ctx, site, if_node, block, others[0], scaled_in_body)
        other_block = others[0]
        plain = None
        if len(block.body) == 1 and len(other_block.body) == 1:  # type: ignore[attr-defined]
            plain = backward_call(other_block.body[0], ctx.index.code(site.loss))
        scaled_backward = _only_backward(site.with_node)
        if (
            plain is None
            or scaled_backward is None
            or _args_code(plain) != _args_code(scaled_backward)
        ):
            return True

        def collapse(updated: cst.If) -> list[cst.BaseStatement]:
            arm = updated.body if scaled_in_body else updated.orelse.body  # type: ignore[union-attr]
            return list(arm.body)

        ctx.tx.edits.replace_statement(site.group, if_node, collapse)
        ctx.tx.note(
            site.group,
            if_node,
            self.code,
            "branch collapsed: a disabled scaler is a plain backward",
            SAFE,
        )
        return True

    def _keep_arms(
        self,
        ctx: FileContext,
        site: BackwardSite,
        if_node: cst.If,
        block: cst.BaseSuite,
        other: cst.BaseSuite,
        scaled_in_body: bool,
    ) -> bool:
        """`if self.use_amp: <scaled> else: loss.backward()` where `self.use_amp` is not the
        scaler's switch: apex ran the plain arm unscaled even when amp was initialized, so
        the arms stay, and the step (and any unscale) follows the same test. Only for a
        test that reads names the function does not assign, so that it is the same test
        at the step."""
        plain = backward_call(other.body[0]) if len(other.body) == 1 else None  # type: ignore[attr-defined]
        scaled = _only_backward(site.with_node)
        if (
            len(block.body) != 1  # type: ignore[attr-defined]
            or plain is None
            or scaled is None
            or ctx.index.code(plain.func.value) != ctx.index.code(site.loss)  # type: ignore[attr-defined]
            or _args_code(plain) != _args_code(scaled)
            or len(site.optimizers) != 1
        ):
            return self._refuse(ctx, site, if_node)
        scope = ctx.index.scope_of(if_node)
        others = [
            c
            for c in ctx.names.calls_to("apex.amp.scale_loss")
            if c is not site.call and ctx.index.scope_of(c) is scope
        ]
        if others:
            return self._refuse(
                ctx,
                site,
                if_node,
                f"`{ctx.index.code(if_node.test)}` is not the scaler's enabled flag, and another "
                "scaled backward in this function shares the scaler, whose one update must "
                "follow every step; make them agree",
            )
        if not _stable(ctx, if_node.test, scope):
            return self._refuse(
                ctx,
                site,
                if_node,
                f"`{ctx.index.code(if_node.test)}` is not the scaler's enabled flag, and it is "
                "not one name or attribute this function leaves alone, so the step cannot "
                "follow the same test; make them agree",
            )
        changer = _changed_elsewhere(ctx, strip_not(if_node.test)[0], scope)
        if changer is not None:
            return self._refuse(
                ctx,
                site,
                if_node,
                f"`{ctx.index.code(if_node.test)}` is not the scaler's enabled flag, and "
                f"{changer} can change it while this function runs, so the step might not "
                "follow the same test; make them agree",
            )
        level = _constant_opt_level(ctx, site.scaler.init_call)
        if level in ("O2", "O3"):
            return self._refuse(
                ctx,
                site,
                if_node,
                f"`{ctx.index.code(if_node.test)}` is not the scaler's enabled flag, and under "
                f"{level} apex's plain arm did not reach the fp32 master weights the optimizer "
                "steps (natively it would train them); make them agree",
            )
        site.arm = (if_node.test, scaled_in_body)
        ctx.tx.note(
            site.group,
            if_node,
            self.code,
            f"`{ctx.index.code(if_node.test)}` is not the scaler's switch: its plain arm stays "
            "unscaled, and the step follows the same test",
            SAFE,
        )
        return True

    def _plain_backwards(self, ctx: FileContext, arm: cst.CSTNode) -> list[cst.Call]:
        """`.backward()` calls in an arm that no `amp.scale_loss` block holds."""
        out = []
        for call in ctx.index.calls_named("backward", arm):
            holders = [
                a
                for a in ctx.index.ancestors(call)
                if isinstance(a, cst.With)
                and any(ctx.names.call_name(i.item) == "apex.amp.scale_loss" for i in a.items)
            ]
            if not holders:
                out.append(call)
        return out

    def _matches(self, ctx: FileContext, test: cst.BaseExpression, scaler: Scaler) -> bool:
        """The test is the scaler's switch, up to availability terms. `torch.cuda.is_available()`
        is part of every switch here: a CUDA GradScaler disables itself without CUDA."""
        parts = [
            p
            for p in conjuncts(test)
            if not ctx.names.is_availability_test(p) and not _cuda_available(ctx, p)
        ]
        if not parts:
            return True
        code = normalize(" and ".join(ctx.index.code(p) for p in parts))
        return code in scaler.conditions

    def _always(self, ctx: FileContext, test: cst.BaseExpression) -> bool:
        return all(ctx.names.is_availability_test(p) for p in conjuncts(test))

    def _refuse(
        self, ctx: FileContext, site: BackwardSite, if_node: cst.If, why: str | None = None
    ) -> bool:
        ctx.tx.fail(
            site.group,
            site.call,
            self.code,
            why
            or f"`{ctx.index.code(if_node.test)}` is not the scaler's enabled flag, so the "
            f"plain-backward arm would be unscaled by {site.scaler.access}.step; make them agree",
        )
        return False


def _stable(ctx: FileContext, test: cst.BaseExpression, scope: cst.CSTNode) -> bool:
    """`flag`, `self.use_amp`, or `not` either, that nothing in `scope` binds or assigns
    (an assignment, a `for`/`with`/`:=`/comprehension target, `del`, `global`)."""
    test, _ = strip_not(test)
    if not m.matches(test, PLAIN_READ):
        return False
    spelled = ctx.index.code(test)
    for target in _bound_targets(ctx, scope):
        for leaf in ctx.index.within(target, cst.Name, cst.Attribute):
            if isinstance(ctx.index.parent(leaf), cst.Attribute):
                continue  # the root or the name of a longer chain: its chain decides
            code = ctx.index.code(leaf)
            if spelled == code or spelled.startswith(code + "."):
                return False  # `use_amp = ...`, `self.use_amp = ...`, `self = ...`
    if isinstance(test, cst.Attribute) and _sets_attribute(ctx, test.attr.value, scope):
        return False  # `setattr(args, "use_amp", False)`, `vars(args).update(...)`
    return True


def _bound_targets(ctx: FileContext, scope: cst.CSTNode) -> list[cst.CSTNode]:
    targets: list[cst.CSTNode] = []
    for node in ctx.index.within(
        scope, cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor
    ):
        targets.append(node.target)
    targets += [n.name for n in ctx.index.within(scope, cst.AsName)]
    targets += [n.target for n in ctx.index.within(scope, cst.NamedExpr)]
    targets += [n.target for n in ctx.index.within(scope, cst.Del)]
    for node in ctx.index.within(scope, cst.Global, cst.Nonlocal):
        targets += [n.name for n in node.names]
    return targets


def _changed_elsewhere(
    ctx: FileContext, test: cst.BaseExpression, scope: cst.CSTNode
) -> str | None:
    """Another function of the file that a call in `scope` may reach and that changes the
    switch: one that sets `.use_amp` on anything (or `setattr`s it) outside `__init__`, or
    declares `global flag`."""
    module = ctx.index.module
    functions = [f for f in ctx.index.within(module, cst.FunctionDef)]
    reached = _called_names(ctx, scope)
    pending = list(reached)
    while pending:  # what the functions of the file those calls name call in turn
        name = pending.pop()
        for func in functions:
            if func.name.value == name:  # type: ignore[attr-defined]
                for callee in _called_names(ctx, func) - reached:
                    reached.add(callee)
                    pending.append(callee)
    attr = test.attr.value if isinstance(test, cst.Attribute) else None
    for func in functions:
        if func is scope or ctx.index.contains(func, scope):
            continue
        name = func.name.value  # type: ignore[attr-defined]
        if name not in reached and name != attr:
            continue  # nothing this function runs calls it (`parse_args` set it before)
        if _changes(ctx, test, func):
            name = func.name.value  # type: ignore[attr-defined]
            if isinstance(test, cst.Attribute) and name == test.attr.value:
                return f"the property or method `{name}`"
            return f"`{name}`"
    return None


def _called_names(ctx: FileContext, node: cst.CSTNode) -> set[str]:
    """The last names of what `node` calls (`watch` for `self.watch(...)`)."""
    return {callee_name(c) for c in ctx.index.within(node, cst.Call)} - {None}  # type: ignore[return-value]


def _changes(ctx: FileContext, test: cst.BaseExpression, func: cst.CSTNode) -> bool:
    if isinstance(test, cst.Name):
        return any(
            n.name.value == test.value
            for g in ctx.index.within(func, cst.Global, cst.Nonlocal)
            for n in g.names  # type: ignore[attr-defined]
        )
    attr = test.attr.value  # type: ignore[attr-defined]
    if func.name.value == attr:  # type: ignore[attr-defined]
        return True  # a property (or method) of that name computes it
    if func.name.value == "__init__":  # type: ignore[attr-defined]
        return False  # it runs before the object can train
    return _sets_attribute(ctx, attr, func)


def _sets_attribute(ctx: FileContext, attr: str, func: cst.CSTNode) -> bool:
    """`func` assigns `.attr` on something, `setattr`s it (`object.__setattr__` too), or
    writes an object's `vars()` or `__dict__`."""
    for target in _bound_targets(ctx, func):
        if any(a.attr.value == attr for a in ctx.index.within(target, cst.Attribute)):
            return True
    for call in ctx.index.calls_named("setattr", func):
        name = call.args[1].value if len(call.args) > 1 else None
        if not isinstance(name, cst.SimpleString) or name.evaluated_value == attr:
            return True
    if ctx.index.calls_named("vars", func) or ctx.index.calls_named("__setattr__", func):
        return True
    return any(a.attr.value == "__dict__" for a in ctx.index.within(func, cst.Attribute))


def _constant_opt_level(ctx: FileContext, init_call: cst.CSTNode | None) -> str | None:
    """The literal `opt_level` of the `amp.initialize` call that made the scaler, if any."""
    if not isinstance(init_call, cst.Call):
        return None
    for arg in init_call.args:
        if arg.keyword is not None and arg.keyword.value == "opt_level":
            if isinstance(arg.value, cst.SimpleString):
                return str(arg.value.evaluated_value)
    return None


def _cuda_available(ctx: FileContext, node: cst.BaseExpression) -> bool:
    return (
        isinstance(node, cst.Call)
        and not node.args
        and ctx.names.resolve_name(node.func) == "torch.cuda.is_available"
    )


def _is_attr_name(ctx: FileContext, node: cst.Name) -> bool:
    parent = ctx.index.parent(node)
    return isinstance(parent, cst.Attribute) and parent.attr is node


def _backward_receiver(ctx: FileContext, node: cst.Name) -> bool:
    attr = ctx.index.parent(node)
    call = ctx.index.parent(attr) if attr is not None else None
    return (
        isinstance(attr, cst.Attribute)
        and attr.value is node
        and attr.attr.value == "backward"
        and isinstance(call, cst.Call)
        and call.func is attr
    )


def _only_backward(with_node: cst.CSTNode) -> cst.Call | None:
    """The backward of `scaled_loss` when it is all the block does. A one-statement site
    (`optimizer.backward(loss)`) has no block: its if/else arms are kept as they are."""
    if not isinstance(with_node, cst.With):
        return None
    body = with_node.body
    stmts = body.body
    if len(stmts) != 1:
        return None
    name = with_node.items[0].asname.name.value  # type: ignore[union-attr]
    return backward_call(stmts[0], name)


def _body_lines(body: cst.BaseSuite) -> list[cst.BaseStatement]:
    if isinstance(body, cst.SimpleStatementSuite):
        return [
            cst.SimpleStatementLine(
                body=[s.with_changes(semicolon=cst.MaybeSentinel.DEFAULT) for s in body.body]
            )
        ]
    return list(body.body)  # type: ignore[attr-defined]


def _arms(stmt: cst.CSTNode) -> list[cst.BaseSuite]:
    """The blocks of an if/elif/else chain, in order."""
    arms: list[cst.BaseSuite] = []
    node = stmt
    while isinstance(node, cst.If):
        arms.append(node.body)
        node = node.orelse
    if isinstance(node, cst.Else):
        arms.append(node.body)
    return arms


def _opposite(test: cst.BaseExpression) -> cst.BaseExpression | None:
    """`a == b` as `a != b` (and `is`/`is not`): the switch spelled as its negation."""
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return None
    target = test.comparisons[0]
    flips = {
        cst.Equal: cst.NotEqual(),
        cst.NotEqual: cst.Equal(),
        cst.Is: cst.IsNot(),
        cst.IsNot: cst.Is(),
    }
    op = flips.get(type(target.operator))
    if op is None:
        return None
    return test.with_changes(comparisons=[target.with_changes(operator=op)])


def _de_morgan(test: cst.BaseExpression) -> cst.BaseExpression | None:
    """`not a or b is None or not c` as `a and b is not None and c` (the test negated), or
    None when a disjunct has no plain negation."""
    if not (
        isinstance(test, cst.BooleanOperation)
        and isinstance(test.operator, cst.Or)
        and not test.lpar
    ):
        return None
    parts: list[cst.BaseExpression] = []
    for side in (test.left, test.right):
        negated = _de_morgan(side)
        if negated is None:
            inner, was_not = strip_not(side)
            negated = inner if was_not else _opposite(side)
        if negated is None:
            return None
        parts.append(negated)
    return cst.BooleanOperation(left=parts[0], operator=cst.And(), right=parts[1])


def _tests_given(test: cst.BaseExpression, name: str) -> bool | None:
    """Whether `test` is true when the parameter `name` holds something: `name` and
    `name is not None` are, `name is None` is not; None for any other test."""
    if not name:
        return None
    if m.matches(test, m.Name(name)):
        return True
    if m.matches(
        test,
        m.Comparison(
            left=m.Name(name),
            comparisons=[m.ComparisonTarget(m.Is() | m.IsNot(), m.Name("None"))],
        ),
    ):
        return isinstance(test.comparisons[0].operator, cst.IsNot)  # type: ignore[attr-defined]
    return None
