"""A2N105: `scaler.unscale_(opt)` once before gradients are read between backward and step."""

from __future__ import annotations

import re

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext
from apex2native.findings import NUMERICS, SAFE
from apex2native.index import callee_name
from apex2native.rules.base import Rule
from apex2native.rules.scale_loss import BackwardSite
from apex2native.scopes import COMPREHENSION
from apex2native.summary import GRAD_CLIPS, is_clip_name
from apex2native.syntax import strip_not

# A helper whose body the plan cannot see (another package, an object's attribute) but whose
# name says it clips: apex had unscaled before it, so `unscale_` goes before it too (early
# unscaling of a helper that reads nothing changes no number).
CLIPS_BY_NAME = re.compile(r"clip\w*grad|grad\w*clip|rescale_grad", re.IGNORECASE)


def grad_reads(ctx: FileContext, scope: cst.CSTNode) -> list[cst.CSTNode]:
    """Nodes that read gradients: clipping calls, `amp.master_params(...)`, `.grad`."""
    index = ctx.index
    out: list[cst.CSTNode] = [
        call
        for call in index.calls_named("master_params", scope)
        if ctx.names.call_name(call) == "apex.amp.master_params"
    ]
    out += [
        a
        for a in index.within(scope, cst.Attribute)
        if a.attr.value == "grad" and _parameter(ctx, a.value)
    ]
    out += [
        call
        for call in index.within(scope, cst.Call)
        if _names_clip(ctx, call.func)
        or ctx.names.resolve_call(call) in ctx.facts.clippers
        or CLIPS_BY_NAME.search(callee_name(call) or "")
        or _runs_local_grad_code(ctx, call)
    ]
    found = [n for n in out if index.scope_of(n) is scope and not _inside_lambda(index, n, scope)]
    outermost = [n for n in found if not any(index.contains(o, n) and o is not n for o in found)]
    return sorted(outermost, key=index.order)


def _runs_local_grad_code(ctx: FileContext, call: cst.Call) -> bool:
    """The call runs a def or lambda of this file that reads gradients: called by name
    (`clip_all()`, `report()` for `report = lambda: log_grads(model)`), or handed on as a
    value that the callee calls (`model.apply(fix_grads)`)."""
    targets = [call.func, *(a.value for a in call.args)]
    return any(_touches_grads(ctx, _local_code(ctx, t)) for t in targets)


def _local_code(ctx: FileContext, node: cst.CSTNode) -> cst.CSTNode | None:
    """The def a name is bound to (by `def` alone), or the lambda one assignment gave it."""
    if not isinstance(node, cst.Name):
        return None
    bindings = ctx.index.bindings(node)
    if not bindings:
        return None
    if all(b.kind == "def" for b in bindings):
        binder = ctx.index.binder_of(node)
        defs = (
            [
                d
                for d in ctx.index.within(binder, cst.FunctionDef)
                if d.name.value == node.value
                and d is not binder
                and ctx.index.scope_of(d) is binder
            ]
            if binder is not None
            else []
        )
        return defs[0] if len(defs) == 1 else None
    value = _alias_value(ctx, node)
    return value if isinstance(value, cst.Lambda) else None


def _touches_grads(ctx: FileContext, code: cst.CSTNode | None, depth: int = 0) -> bool:
    """A def or lambda whose body reads or changes `.grad`, clips, or calls one that does."""
    if code is None or depth > 3:
        return False
    index = ctx.index
    if any(
        a.attr.value == "grad" and not _names_autograd(a.value)
        for a in index.within(code, cst.Attribute)
    ):
        return True
    for call in index.within(code, cst.Call):
        if _names_clip(ctx, call.func) or ctx.names.resolve_call(call) in ctx.facts.clippers:
            return True
        if _touches_grads(ctx, _local_code(ctx, call.func), depth + 1):
            return True
    return False


def _names_autograd(node: cst.BaseExpression) -> bool:
    """`autograd` or `torch.autograd`: `autograd.grad(...)` is not a read of `.grad`."""
    return m.matches(node, m.Name("autograd") | m.Attribute(attr=m.Name("autograd")))


def _names_clip(ctx: FileContext, node: cst.CSTNode, depth: int = 0) -> bool:
    """`node` is one of torch's clipping functions under any name the file gives it:
    `clip_grad_norm_`, `from torch.nn.utils import clip_grad_norm_ as clip`, a name bound
    once to one (`clip_fn = torch.nn.utils.clip_grad_norm_`), or a `functools.partial`
    of one. A renamed clip reads the gradients as much as the spelled one."""
    if isinstance(node, (cst.Name, cst.Attribute)):
        word = node.value if isinstance(node, cst.Name) else node.attr.value
        if word in GRAD_CLIPS or any(is_clip_name(n) for n in ctx.index.imported_names(node)):
            return True
    if depth > 3:
        return False
    if isinstance(node, cst.Call) and node.args:
        partial = "functools.partial" in ctx.index.imported_names(node.func)
        return partial and _names_clip(ctx, node.args[0].value, depth + 1)
    value = _alias_value(ctx, node)
    return value is not None and _names_clip(ctx, value, depth + 1)


def _alias_value(ctx: FileContext, node: cst.CSTNode) -> cst.BaseExpression | None:
    """What `name = <value>` gave a name that one assignment alone binds, else None."""
    index = ctx.index
    if not isinstance(node, cst.Name):
        return None
    bindings = index.bindings(node)
    binder = index.binder_of(node)
    if binder is None or len(bindings) != 1 or bindings[0].kind != "assign":
        return None
    assigns = [
        a
        for a in index.within(binder, cst.Assign)
        if index.scope_of(a) is binder
        and any(isinstance(t.target, cst.Name) and t.target.value == node.value for t in a.targets)
    ]
    if len(assigns) != 1 or len(assigns[0].targets) != 1:
        return None
    return assigns[0].value


def _parameter(ctx: FileContext, node: cst.CSTNode) -> bool:
    """`p.grad` reads a parameter's gradient: `model.fc.weight.grad`, or `p` bound by a loop.

    apex unscales the gradients its optimizers hold; `x.grad` of an input tensor (an
    adversarial perturbation, marked `x.requires_grad = True` or `x.requires_grad_()`) stays
    scaled under apex too, so it needs no `unscale_`, and neither does a plain local name.
    """
    if isinstance(node, cst.Attribute):
        return True
    if not isinstance(node, cst.Name) or _marked_input(ctx, node):
        return False
    if _bound_per_item(ctx, node):
        return True
    return any(
        isinstance(anc, cst.For)
        and node.value in {n.value for n in ctx.index.within(anc.target, cst.Name)}
        for anc in ctx.index.ancestors(node)
    )


def _bound_per_item(ctx: FileContext, node: cst.Name) -> bool:
    """`p` of `(p.grad for p in params)` or of `key=lambda p: p.grad.norm()`: a name a
    comprehension or a lambda binds walks the items it is given, as a loop variable does."""
    scope = ctx.index.read_scope(node)
    binder = scope.resolve(node.value) if scope is not None else None
    return binder is not None and (
        binder.kind == COMPREHENSION or isinstance(binder.owner, cst.Lambda)
    )


def _marked_input(ctx: FileContext, node: cst.Name) -> bool:
    scope = ctx.index.scope_of(node)
    return any(
        isinstance(a.value, cst.Name)
        and a.value.value == node.value
        and a.attr.value in ("requires_grad", "requires_grad_")
        for a in ctx.index.within(scope, cst.Attribute)
    )


def _inside_lambda(index, node: cst.CSTNode, scope: cst.CSTNode) -> bool:
    """`node` sits in a class body or in a lambda kept for later (`hook = lambda: ...`);
    a lambda handed to a call (`max(params, key=lambda p: p.grad.norm())`) runs in place."""
    for anc in index.ancestors(node):
        if anc is scope:
            return False
        if isinstance(anc, cst.ClassDef):
            return True
        if isinstance(anc, cst.Lambda) and not _argument(index, anc):
            return True
    return False


def _argument(index, node: cst.CSTNode) -> bool:
    """`node` is an argument of a call."""
    parent = index.parent(node)
    return isinstance(parent, cst.Arg) and isinstance(index.parent(parent), cst.Call)


class Unscale(Rule):
    """Gradients read between backward and step are unscaled first, once per optimizer.

    Before:
        torch.nn.utils.clip_grad_norm_(amp.master_params(optimizer), 1.0)
        optimizer.step()
    After:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(
            (p for group in optimizer.param_groups for p in group["params"]), 1.0
        )
        scaler.step(optimizer)

    apex unscaled on leaving `scale_loss`; native gradients stay scaled until `unscale_`.
    Clipping done on every micro-step while stepping every N moves to the step boundary
    (a second `unscale_` before `update()` raises), which clips the accumulated gradient
    instead of partial sums: reported as a numerics change.
    """

    code = "A2N105"
    name = "unscale"
    tier = SAFE
    summary = "scaler.unscale_(opt) before clip_grad_norm_ / gradient reads"

    def apply(self, ctx: FileContext) -> None:
        done: set[tuple[str, str, int]] = set()
        for site in list(ctx.sites):
            if ctx.tx.dropped(site.group):
                continue
            if not self._site(ctx, site, done):
                ctx.sites.remove(site)

    def _site(self, ctx: FileContext, site: BackwardSite, done: set) -> bool:
        index = ctx.index
        scope = index.scope_of(site.with_node)
        inside = [r for r in grad_reads(ctx, scope) if index.contains(site.with_node, r)]
        if inside and self._accumulates(ctx, site):
            ctx.tx.fail(
                site.group,
                inside[0],
                self.code,
                "gradients are read inside the amp.scale_loss block under gradient "
                "accumulation: apex showed only this backward's gradients there (earlier ones "
                "set aside) and still scaled; no native form reads the same values; move the "
                "read after the block (unscaled gradients) by hand if that is what was meant",
            )
            return False
        reads = [
            r
            for r in grad_reads(ctx, scope)
            if index.after(r, site.with_node) and not index.exclusive(r, site.with_node)
        ]
        for step in site.steps:
            before = [
                r
                for r in reads
                if index.order(r) < index.order(step) and not index.exclusive(r, step)
            ]
            if site.arm is not None:
                kept = self._scaled_side(ctx, site, before)
                if kept is None:
                    return False
                before = kept
            if not before:
                continue
            opt = index.code(step.func.value)  # type: ignore[attr-defined]
            step_stmt = index.statement_of(step)
            first = before[0]
            read_top, step_top = _tops(ctx, first, step_stmt)
            if step_top is not step_stmt and site.arm is not None:
                ctx.tx.fail(
                    site.group,
                    first,
                    self.code,
                    "gradients are read in another block than the step, under the test that "
                    "chooses the scaled backward; unscale them there by hand",
                )
                return False
            if step_top is not step_stmt:
                arms = self._arm_tails(ctx, read_top, site, before, step_stmt)
                if arms is not None:
                    self._arms_to_boundary(ctx, site, read_top, arms, step_stmt, opt, done)
                elif not self._to_boundary(ctx, site, before, read_top, step_stmt, opt, done):
                    return False
                continue
            anchors: list[cst.CSTNode] = []
            for read in before:
                if any(_covered(ctx, a, read) for a in anchors):
                    continue
                if not all(index.exclusive(read, a) for a in anchors):
                    hoisted = _hoist(ctx, anchors, read, site)
                    if hoisted is not None:
                        anchors = [hoisted]
                        continue
                    ctx.tx.fail(
                        site.group,
                        read,
                        self.code,
                        "gradients are read in several places between the backward and the "
                        "step; put one scaler.unscale_ before all of them by hand",
                    )
                    return False
                anchors.append(_anchor(ctx, read, site))
            if site.arm is not None and not all(_side(ctx, site, a) for a in anchors):
                ctx.tx.fail(
                    site.group,
                    anchors[0],
                    self.code,
                    "the one scaler.unscale_ these gradient reads need would stand outside "
                    f"`if {index.code(site.arm[0])}:`; unscale them under that test by hand",
                )
                return False
            for anchor in anchors:
                key = (site.scaler.access, opt, id(anchor))
                if key in done:
                    continue
                done.add(key)
                unscale = ctx.gen.stmt(
                    f"{site.scaler.access}.unscale_({opt})", index.indent_width(anchor)
                )
                ctx.tx.edits.insert_before(site.group, anchor, unscale)
                ctx.tx.note(
                    site.group,
                    anchor,
                    self.code,
                    f"{site.scaler.access}.unscale_({opt}) before the gradient read",
                    SAFE,
                )
        return True

    def _scaled_side(
        self, ctx: FileContext, site: BackwardSite, reads: list[cst.CSTNode]
    ) -> list[cst.CSTNode] | None:
        """Of the reads of a backward whose if/else stayed, those under the same test on the
        scaled side (they need `unscale_`); reads on the plain side see unscaled gradients.
        A read under neither is refused: whether it needs `unscale_` depends on the test."""
        kept = []
        for read in reads:
            side = _side(ctx, site, read)
            if side is None:
                ctx.tx.fail(
                    site.group,
                    read,
                    self.code,
                    f"gradients are read outside `if {ctx.index.code(site.arm[0])}:`, which "  # type: ignore[index]
                    "chooses the scaled backward; unscale them under that test by hand",
                )
                return None
            if side:
                kept.append(read)
        return kept

    @staticmethod
    def _accumulates(ctx: FileContext, site: BackwardSite) -> bool:
        """Some step runs under a condition the backward does not (every N micro-steps):
        gradients of several backward passes add up between steps."""
        index = ctx.index
        for step in site.steps:
            for anc in index.ancestors(step):
                if index.contains(anc, site.with_node):
                    break
                if isinstance(anc, (cst.If, cst.For, cst.While)):
                    return True
        return not site.steps

    def _arm_tails(self, ctx, read_top, site, before, step_stmt) -> list[list] | None:
        """`if fp16: <scaled backward>; clip(...)  else: <backward>; clip(...)`: the reads
        that follow the backward in each arm, when every read before the step is one."""
        index = ctx.index
        if not isinstance(read_top, cst.If) or not index.contains(read_top, site.with_node):
            return None
        if isinstance(read_top.orelse, cst.If):
            return None
        blocks = [read_top.body] + ([read_top.orelse.body] if read_top.orelse else [])
        tails: list[list] = []
        for block in blocks:
            stmts = list(block.body)
            last = max(
                (i for i, st in enumerate(stmts) if index.calls_named("backward", st)),
                default=-1,
            )
            if last < 0:
                return None
            tail = stmts[last + 1 :]
            if not all(_read_only(ctx, st) for st in tail):
                return None
            if not self._movable_all(ctx, tail, step_stmt):
                return None
            tails.append(tail)
        if not any(tails) or not all(
            any(index.contains(t, r) for t in sum(tails, [])) for r in before
        ):
            return None
        return tails

    def _movable_all(self, ctx, tail, step_stmt) -> bool:
        return all(self._movable(ctx, st, step_stmt, []) or isinstance(st, cst.If) for st in tail)

    def _arms_to_boundary(self, ctx, site, if_node, tails, step_stmt, opt, done) -> None:
        """Each arm's reads move to the step boundary, under the same condition."""
        key = (site.scaler.access, opt, id(if_node))
        if key in done:
            return
        done.add(key)
        index = ctx.index
        scaled = 0 if index.contains(if_node.body, site.with_node) else 1
        width = index.indent_width(step_stmt)
        test = index.code(if_node.test)
        unscale_code = f"{site.scaler.access}.unscale_({opt})"
        gen = ctx.gen

        def build(arms: list[list[cst.BaseStatement]]) -> cst.BaseStatement:
            arms = [list(a) for a in arms] + [[]] * (2 - len(arms))
            arms[scaled] = [gen.stmt(unscale_code), *arms[scaled]]
            body, orelse = arms
            if not body:
                stmt = gen.stmt(f"if not ({test}):\n    pass", width)
                return stmt.with_changes(body=cst.IndentedBlock(body=orelse))
            if not orelse:
                stmt = gen.stmt(f"if {test}:\n    pass", width)
                return stmt.with_changes(body=cst.IndentedBlock(body=body))
            stmt = gen.stmt(f"if {test}:\n    pass\nelse:\n    pass", width)
            return stmt.with_changes(
                body=cst.IndentedBlock(body=body),
                orelse=stmt.orelse.with_changes(body=cst.IndentedBlock(body=orelse)),
            )

        ctx.tx.edits.gather(site.group, tails, step_stmt, build)
        ctx.tx.note(
            site.group,
            if_node,
            self.code,
            "clipping moved to the step boundary: it now clips the accumulated gradient, "
            "not each micro-batch",
            NUMERICS,
        )

    def _to_boundary(self, ctx, site, before, read_top, step_stmt, opt, done) -> bool:
        """A read on every micro-step, a step every N: the read moves to the step."""
        key = (site.scaler.access, opt, id(read_top))
        if key in done:
            return True
        done.add(key)
        first = before[0]
        if not self._movable(ctx, read_top, step_stmt, before):
            ctx.tx.fail(
                site.group,
                first,
                self.code,
                "gradients are read on every micro-step but the optimizer steps every N; "
                "move this read next to the step, after scaler.unscale_",
            )
            return False
        for read in before:
            top, _ = _tops(ctx, read, step_stmt)
            if top is not read_top:
                ctx.tx.fail(
                    site.group,
                    read,
                    self.code,
                    "several gradient reads before the step boundary",
                )
                return False
        unscale = ctx.gen.stmt(
            f"{site.scaler.access}.unscale_({opt})", ctx.index.indent_width(step_stmt)
        )
        ctx.tx.edits.move(site.group, read_top, step_stmt)
        ctx.tx.edits.insert_before(site.group, step_stmt, unscale)
        ctx.tx.note(
            site.group,
            first,
            self.code,
            "clipping moved to the step boundary: it now clips the accumulated gradient, "
            "not each micro-batch",
            NUMERICS,
        )
        return True

    def _movable(
        self, ctx: FileContext, read_top: cst.CSTNode, step_stmt: cst.CSTNode, reads
    ) -> bool:
        """A simple statement whose results are read nowhere but after the step, in the
        step's own block, can move there: a read anywhere else (after the boundary `if`,
        in the next micro-step) would find the name unbound or stale."""
        if not isinstance(read_top, (cst.SimpleStatementLine, cst.BaseSmallStatement)):
            return False
        index = ctx.index
        if not _keeps_its_result_in_names(ctx, read_top):
            return False  # `stats["norm"] = clip(...)`, `norms.append(clip(...))`
        assigned = {
            n.value
            for n in index.within(read_top, cst.Name)
            if isinstance(index.parent(n), (cst.AssignTarget, cst.AugAssign))
        }
        if not assigned:
            return True
        scope = index.scope_of(read_top)
        block = index.parent(step_stmt)
        for node in index.within(scope, cst.Name):
            if node.value in assigned and not index.contains(read_top, node):
                after_step = index.order(node) > index.order(step_stmt)
                if not (after_step and index.contains(block, node)):
                    return False
        return True


def _keeps_its_result_in_names(ctx: FileContext, stmt: cst.CSTNode) -> bool:
    """The statement is a bare call (`clip(...)`) or assigns plain names only (`norm =
    clip(...)`): where else its result goes (an item, an attribute, a list it appends to)
    cannot be followed to its readers."""
    smalls = stmt.body if isinstance(stmt, cst.SimpleStatementLine) else [stmt]
    for small in smalls:
        if isinstance(small, cst.Expr):
            value = small.value
            if not isinstance(value, cst.Call):
                return False
            if not _names_clip(ctx, value.func) and any(
                _names_clip(ctx, inner.func)
                for a in value.args
                for inner in ctx.index.within(a.value, cst.Call)
            ):
                return False  # `norms.append(clip(...))`: the norm goes into the list
        elif isinstance(small, cst.Assign):
            if not all(_plain_names(t.target) for t in small.targets):
                return False
        elif isinstance(small, (cst.AugAssign, cst.AnnAssign)):
            if not _plain_names(small.target):
                return False
        else:
            return False
    return True


def _plain_names(target: cst.BaseExpression) -> bool:
    if isinstance(target, cst.Name):
        return True
    if isinstance(target, (cst.Tuple, cst.List)):
        return all(_plain_names(e.value) for e in target.elements)
    return False


def _side(ctx: FileContext, site: BackwardSite, node: cst.CSTNode) -> bool | None:
    """True on the scaled side of the nearest `if` on the test a kept if/else chose the
    scaled backward by, False on its plain side, None outside every such `if`."""
    test, scaled_in_body = site.arm  # type: ignore[misc]
    inner, negated = strip_not(test)
    spelled = ctx.index.code(inner)
    child = node
    for anc in ctx.index.ancestors(node):
        if isinstance(anc, cst.If):
            tested, flipped = strip_not(anc.test)
            if ctx.index.code(tested) == spelled:
                in_body = ctx.index.contains(anc.body, child)
                return (in_body != (flipped != negated)) == scaled_in_body
        child = anc
    return None


def _read_only(ctx: FileContext, stmt: cst.CSTNode) -> bool:
    """A statement that only reads gradients (a clip), possibly under a plain `if`."""
    if isinstance(stmt, cst.If):
        return stmt.orelse is None and all(_read_only(ctx, s) for s in stmt.body.body)
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    return all(
        isinstance(small, (cst.Expr, cst.Assign)) and ctx.index.within(small, cst.Call)
        for small in stmt.body
    )


def _anchor(ctx: FileContext, read: cst.CSTNode, site: BackwardSite) -> cst.CSTNode:
    """Where `unscale_` goes for a read: right before the read's statement, outside any
    loop that repeats the read without the backward (one unscale_ per step)."""
    anchor = ctx.index.statement_of(read)
    for anc in ctx.index.ancestors(anchor):
        if isinstance(anc, (cst.FunctionDef, cst.ClassDef, cst.Module)):
            break
        if isinstance(anc, (cst.For, cst.While)):
            if ctx.index.contains(anc, site.with_node):
                break
            anchor = ctx.index.statement_of(anc)
    return anchor


def _hoist(ctx: FileContext, anchors: list, read: cst.CSTNode, site: BackwardSite):
    """One anchor for an earlier read in a branch and a later read after it:
    `if amp: params = master_params(...)` then `clip(params)` take one `unscale_` before
    the `if`, in the block of the later read, so it runs whenever that read runs. None
    when the earlier reads are not in that block before it, or a backward is in between."""
    index = ctx.index
    later = _anchor(ctx, read, site)
    block = index.block_of(later)
    tops = []
    for anchor in anchors:
        top = next(
            (s for s in (anchor, *index.ancestors(anchor)) if index.parent(s) is block),
            None,
        )
        if top is None or index.order(top) >= index.order(later):
            return None
        tops.append(top)
    first = min(tops, key=index.order)
    if index.calls_named("backward", first) or index.contains(first, site.with_node):
        return None
    if not index.after(first, site.with_node):
        return None
    return first


def _covered(ctx: FileContext, anchor: cst.CSTNode, read: cst.CSTNode) -> bool:
    """An `unscale_` before `anchor` is run before `read` too."""
    block = ctx.index.block_of(anchor)
    return ctx.index.contains(block, read) and ctx.index.order(read) > ctx.index.order(anchor)


def _tops(ctx: FileContext, read: cst.CSTNode, step_stmt: cst.CSTNode):
    """The statements holding `read` and `step_stmt` in their innermost common block."""
    step_chain = [step_stmt, *ctx.index.ancestors(step_stmt)]
    child = ctx.index.statement_of(read)
    while True:
        block = ctx.index.block_of(child)
        if block in step_chain:
            i = step_chain.index(block)
            top = step_chain[i - 1]
            if (
                isinstance(top, cst.SimpleStatementLine)
                and top is not step_stmt
                and step_stmt in top.body
            ):
                top = step_stmt
            return child, top
        parent_stmt = ctx.index.parent(block)
        while parent_stmt is not None and not isinstance(
            ctx.index.parent(parent_stmt), (cst.IndentedBlock, cst.Module, cst.SimpleStatementSuite)
        ):
            parent_stmt = ctx.index.parent(parent_stmt)
        if parent_stmt is None:
            return child, step_stmt
        child = parent_stmt
