"""A2N104: the optimizer step after a scaled backward becomes `scaler.step(opt)` + `scaler.update()`."""

from __future__ import annotations

import re

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext
from apex2native.findings import NUMERICS, SAFE
from apex2native.index import BLOCKS, callee_name
from apex2native.rules.base import Rule
from apex2native.rules.scale_loss import BackwardSite
from apex2native.syntax import is_call_statement, strip_not

LOOPS = (cst.For, cst.While)
EXITS = (cst.Return, cst.Raise)
JUMPS = (cst.Continue, cst.Break)
TRIES = (cst.Try, cst.TryStar)
# A helper whose body the plan cannot see but whose name says it steps the optimizer it
# is handed (`xm.optimizer_step(optimizer)`): it would step past the scaler.
STEPS_BY_NAME = re.compile(r"^(optimizer|optim|opt)_?step$|^step_(optimizer|optim|opt)s?$")


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


def _runs_after(
    ctx: FileContext, node: cst.CSTNode, site: BackwardSite, scope: cst.CSTNode
) -> bool:
    """`node` can run after the scaled backward: later in the function, or in a loop with it."""
    return (
        ctx.index.after(node, site.with_node) or _shares_loop(ctx, node, site.with_node, scope)
    ) and not ctx.index.exclusive(node, site.with_node)


def _header(ctx: FileContext, node: cst.CSTNode) -> str:
    """How a TODO names the statement a backward may be skipped under."""
    if isinstance(node, (cst.If, cst.While)):
        return f"{'if' if isinstance(node, cst.If) else 'while'} {ctx.index.code(node.test)}"
    if isinstance(node, cst.For):
        return f"for {ctx.index.code(node.target)} in {ctx.index.code(node.iter)}"
    return "try" if isinstance(node, TRIES) else type(node).__name__.lower()


def _backs(
    ctx: FileContext, node: cst.CSTNode, opt: str, step: cst.Call, scope: cst.CSTNode
) -> bool:
    """Every run through `node` does a backward for `opt`, or leaves before `step`
    (return, raise, or a continue/break of a loop that holds the step)."""
    index = ctx.index
    if isinstance(node, (cst.IndentedBlock, cst.SimpleStatementSuite, cst.SimpleStatementLine)):
        return any(_backs(ctx, s, opt, step, scope) for s in node.body)
    if isinstance(node, (cst.Else, cst.ExceptHandler, cst.ExceptStarHandler, cst.Finally)):
        return _backs(ctx, node.body, opt, step, scope)
    if isinstance(node, EXITS):
        return True
    if isinstance(node, JUMPS):
        loop = next((a for a in index.ancestors(node) if isinstance(a, LOOPS)), None)
        return loop is not None and index.contains(loop, step)
    site = next((s for s in ctx.sites if s.with_node is node), None)
    if site is not None:
        return opt in site.optimizers
    if isinstance(node, cst.With):
        return _backs(ctx, node.body, opt, step, scope)
    if isinstance(node, cst.If):
        return (
            node.orelse is not None
            and _backs(ctx, node.body, opt, step, scope)
            and _backs(ctx, node.orelse, opt, step, scope)
        )
    if isinstance(node, TRIES):
        if node.finalbody is not None and _backs(ctx, node.finalbody, opt, step, scope):
            return True
        ran = _backs(ctx, node.body, opt, step, scope) or (
            node.orelse is not None and _backs(ctx, node.orelse, opt, step, scope)
        )
        return ran and all(_backs(ctx, h, opt, step, scope) for h in node.handlers)
    if isinstance(node, cst.BaseSmallStatement):
        for call in index.calls_named("backward", node):
            if index.scope_of(call) is not scope:
                continue
            holder = next((s for s in ctx.sites if index.contains(s.with_node, call)), None)
            if holder is None or opt in holder.optimizers:
                return True
    return False


def _skipped(
    ctx: FileContext, site: BackwardSite, step: cst.Call, opt: str, scope: cst.CSTNode
) -> str | None:
    """How `step` can run on a path without the scaled backward (None: it cannot).

    apex stepped such an iteration as a no-op; `GradScaler.step` asserts that the
    optimizer's gradients were unscaled, and with none it raises. A loop around the
    backward is taken to run (micro-batches before one step), a `with` body always does.
    """
    index = ctx.index
    chain = [site.with_node, *index.ancestors(site.with_node)]
    if index.contains(site.with_node, step) and any(
        index.order(back) < index.order(step)
        for back in index.calls_named("backward", site.with_node)
    ):
        return None  # stepped inside the scale_loss block, after its backward
    for back in index.calls_named("backward", site.with_node):
        for anc in index.ancestors(back):
            if anc is site.with_node:
                break
            if isinstance(anc, (cst.If, cst.Match, cst.With, *LOOPS, *TRIES)):
                return f"the backward is under `{_header(ctx, anc)}` inside the scale_loss block"
    if not index.after(step, site.with_node):
        loop = next(a for a in chain if isinstance(a, LOOPS) and index.contains(a, step))
        return f"it comes first in `{_header(ctx, loop)}`, so its first run has no backward"
    holds_step = {id(a) for a in index.ancestors(step)}
    for below, anc in zip(chain, chain[1:]):
        if isinstance(anc, LOOPS) and id(anc) not in holds_step:
            inside = [
                c
                for c in index.calls_named("step", anc)
                if isinstance(c.func, cst.Attribute) and _steps(ctx, c, opt, scope)
            ]
            if inside:
                return (
                    f"it follows `{_header(ctx, anc)}`, which steps too: when its last "
                    "iteration has stepped and cleared the gradients, there is nothing left "
                    "to unscale; step here only when gradients are left"
                )
        if id(anc) in holds_step:  # both run from here on
            if isinstance(anc, TRIES):
                if below is anc.body and anc.orelse and index.contains(anc.orelse, step):
                    return None
                return _under(ctx, anc)
            return _under(ctx, anc) if isinstance(anc, (cst.If, cst.Match)) else None
        if isinstance(anc, cst.If):
            other = anc.orelse if below is anc.body else anc.body
            if other is None or not _backs(ctx, other, opt, step, scope):
                return _under(ctx, anc)
        elif isinstance(anc, TRIES):
            if below in anc.handlers:
                others = [h for h in anc.handlers if h is not below]
                ran = _backs(ctx, anc.body, opt, step, scope) or (
                    anc.orelse is not None and _backs(ctx, anc.orelse, opt, step, scope)
                )
            else:
                others, ran = list(anc.handlers), True
            if below is not anc.finalbody and not (
                ran and all(_backs(ctx, h, opt, step, scope) for h in others)
            ):
                return _under(ctx, anc)
        elif isinstance(anc, cst.Match):
            return _under(ctx, anc)
    return None


def _covered(
    ctx: FileContext, site: BackwardSite, step: cst.Call, opt: str, scope: cst.CSTNode
) -> bool:
    """`step` is in a later loop that `site` is not in, where a scaled backward of `opt` by
    the same scaler runs before it on every path (`_skipped` finds none without it): that
    backward's step, not this one's, as in a script whose epoch loop follows a loop of
    fixed steps. (In a loop with `site`, the step also steps `site`'s gradients.)"""
    index = ctx.index
    loops = [a for a in index.ancestors(site.with_node) if isinstance(a, LOOPS)]
    if any(index.contains(loop, step) for loop in loops):
        return False
    return any(
        other is not site
        and opt in other.optimizers
        and other.scaler.access == site.scaler.access
        and ctx.index.scope_of(other.with_node) is scope
        and ctx.index.after(other.with_node, site.with_node)
        and not ctx.index.exclusive(step, other.with_node)
        and _runs_after(ctx, step, other, scope)
        and _skipped(ctx, other, step, opt, scope) is None
        for other in ctx.sites
    )


def _under(ctx: FileContext, node: cst.CSTNode) -> str:
    return f"the backward is under `{_header(ctx, node)}`, the step is not"


def _alias_of(ctx: FileContext, node: cst.BaseExpression, scope: cst.CSTNode) -> str | None:
    """What a local alias stands for: `opt` bound only by `opt = optimizer` in `scope`."""
    if not isinstance(node, cst.Name) or ctx.index.binder_of(node) is not scope:
        return None
    if [b.kind for b in ctx.index.bindings(node)] != ["assign"]:
        return None
    for assign in ctx.index.within(scope, cst.Assign):
        targets = assign.targets
        if (
            ctx.index.scope_of(assign) is scope
            and len(targets) == 1
            and isinstance(targets[0].target, cst.Name)
            and targets[0].target.value == node.value
        ):
            return ctx.index.code(assign.value)
    return None


def _steps(ctx: FileContext, call: cst.Call, opt: str, scope: cst.CSTNode) -> bool:
    """`call` is `opt.step(...)`, or a step through a local alias of `opt`."""
    receiver = call.func.value  # type: ignore[attr-defined]
    return ctx.index.code(receiver) == opt or _alias_of(ctx, receiver, scope) == opt


def _hands_to_stepper(ctx: FileContext, call: cst.Call, opt: str) -> str | None:
    """How the function `call` hands `opt` to steps it (None: it does not, as far as
    the plan or the callee's name tells)."""
    handed = [
        (i, arg)
        for i, arg in enumerate(call.args)
        if not arg.star
        and isinstance(arg.value, (cst.Name, cst.Attribute))
        and ctx.index.code(arg.value) == opt
    ]
    if not handed:
        return None
    stepper = ctx.facts.steppers.get(ctx.names.resolve_call(call) or "")
    if stepper is None:
        return "its name says so" if STEPS_BY_NAME.match(callee_name(call) or "") else None
    params, stepped, where = stepper
    for i, arg in handed:
        param = arg.keyword.value if arg.keyword else (params[i] if i < len(params) else None)
        if param in stepped:
            return f"{param}.step() in {where}"
    return None


CONDITIONS = (cst.If, cst.Match, *LOOPS, *TRIES)
LEAVES = (cst.Continue, cst.Break, cst.Return, cst.Raise)


def _shared_update_problem(
    ctx: FileContext, stmts: list[cst.CSTNode], anchor: cst.CSTNode
) -> str | None:
    """Why one update after `anchor` cannot serve the steps `stmts` (None: it can).

    The update must run exactly when a step did: so one step must run whenever the
    anchor's block gets that far, and nothing may leave the block between the first
    step and the update."""
    index = ctx.index
    block = index.parent(anchor)

    def always(stmt: cst.CSTNode) -> bool:
        for anc in index.ancestors(stmt):
            if anc is block:
                return True
            if isinstance(anc, CONDITIONS):
                return False
        return False

    if not any(always(stmt) for stmt in stmts):
        return (
            "each step of this backward is under its own condition, and one update() per "
            "iteration must run only after a step; update where a step ran by hand"
        )
    first = min(stmts, key=index.order)
    top = next(a for a in [first, *index.ancestors(first)] if index.parent(a) is block)
    siblings = list(block.body)  # type: ignore[attr-defined]
    between = siblings[siblings.index(top) : siblings.index(anchor) + 1]
    if any(next(iter(index.within(s, *LEAVES)), None) is not None for s in between):
        return (
            "a continue, break, return or raise between the steps of this backward would "
            "skip their one update(); update where the iteration leaves by hand"
        )
    return None


def _step_anchors(ctx: FileContext, site: BackwardSite) -> list[cst.CSTNode]:
    """The statements an update may follow: each step's own, or, when the steps of one
    iteration lie in different blocks, the one statement of their common block that holds
    the last of them. Steps of one iteration share the innermost loop around the backward
    (a step after that loop flushes the accumulation and gets its own update)."""
    index = ctx.index
    iterations: dict[int, list[cst.CSTNode]] = {}
    for call in site.steps:
        loop = next(
            (
                a
                for a in index.ancestors(call)
                if isinstance(a, LOOPS) and index.contains(a, site.with_node)
            ),
            None,
        )
        iterations.setdefault(id(loop), []).append(index.statement_of(call))
    anchors: list[cst.CSTNode] = []
    for stmts in iterations.values():
        if len({id(index.block_of(stmt)) for stmt in stmts}) <= 1:
            anchors.extend(stmts)
            continue
        last = max(stmts, key=index.order)
        for anc in [last, *index.ancestors(last)]:
            block = index.parent(anc)
            if isinstance(block, BLOCKS) and all(index.contains(block, s) for s in stmts):
                problem = _shared_update_problem(ctx, stmts, anc)
                if problem is not None:
                    raise _NoSharedUpdate(anc, problem)
                anchors.append(anc)
                break
    return anchors


def _switch_handed_on(
    ctx: FileContext, site: BackwardSite, step_stmt: cst.CSTNode
) -> cst.Call | None:
    """A call between the backward and the step that is handed the object the kept
    switch is read from (`hook(self, loss)`), or is one of its methods this file does not
    define (`self.after_backward()`): code this file cannot see may flip the switch."""
    test, _ = strip_not(site.arm[0])  # type: ignore[index]
    if not isinstance(test, cst.Attribute):
        return None
    root = test
    while isinstance(root, cst.Attribute):
        root = root.value
    if not isinstance(root, cst.Name):
        return None
    index = ctx.index
    defined = {f.name.value for f in index.within(index.module, cst.FunctionDef)}
    holders = _back_references(ctx, root.value, step_stmt)
    start, end = index.order(site.with_node), index.order(step_stmt)
    for call in index.within(index.scope_of(step_stmt), cst.Call):
        if not start < index.order(call) < end or index.contains(site.with_node, call):
            continue
        func = call.func
        if isinstance(func, cst.Name) and func.value in READ_ONLY_BUILTINS:
            continue  # `print(args, loss)`
        if (
            isinstance(func, cst.Attribute)
            and m.matches(func.value, m.Name(root.value))
            and func.attr.value not in defined
        ):
            return call
        if isinstance(func, cst.Attribute) and index.code(func.value) in holders:
            return call  # `self.hooks.after_backward(loss)`: the hooks hold `self`
        if any(m.matches(a.value, m.Name(root.value)) for a in call.args):
            return call
    return None


# builtins that read their arguments and change nothing on them
READ_ONLY_BUILTINS = frozenset(
    {"print", "len", "str", "repr", "format", "isinstance", "hasattr", "getattr", "id", "type"}
)


def _back_references(ctx: FileContext, root: str, stmt: cst.CSTNode) -> set[str]:
    """`self.hooks` where the class sets `self.hooks = Hooks(self)`: objects handed the
    switch's owner, which their methods may change."""
    if root != "self":
        return set()
    func = ctx.index.enclosing_function(stmt)
    cls = ctx.index.enclosing_class(func) if func is not None else None
    if cls is None:
        return set()
    out = set()
    for assign in ctx.index.within(cls, cst.Assign):
        value = assign.value
        if isinstance(value, cst.Call) and any(
            m.matches(a.value, m.Name("self")) for a in value.args
        ):
            out |= {ctx.index.code(t.target) for t in assign.targets}
    return out


def _repeated_step(ctx: FileContext, site: BackwardSite) -> cst.Call | None:
    """A step inside a loop that does not hold the backward (`for _ in range(k):
    opt.step()`): it steps the same gradients several times."""
    for call in site.steps:
        for anc in ctx.index.ancestors(call):
            if isinstance(anc, LOOPS) and not ctx.index.contains(anc, site.with_node):
                return call
            if isinstance(anc, (cst.FunctionDef, cst.Module)):
                break
    return None


def _iteration_exits(
    ctx: FileContext, first: cst.CSTNode, last: cst.CSTNode
) -> list[cst.CSTNode] | None:
    """The `continue`/`break`/`return` statements between the first step (`first`, a
    statement of the block that always runs) and the update after `last` that end the
    iteration after that step: an update before each keeps one update per iteration that
    stepped. None when the first step may not have run there, or on a `raise`."""
    index = ctx.index
    block = index.parent(last)
    if not isinstance(first, cst.SimpleStatementLine) or index.parent(first) is not block:
        return None  # the first step must run whenever the block gets that far
    exits = _exits(ctx, first, last)
    if any(isinstance(leave, cst.Raise) for leave in exits):
        return None
    return [index.statement_of(leave) for leave in exits]


def _exits(ctx: FileContext, first: cst.CSTNode, last: cst.CSTNode) -> list[cst.CSTNode]:
    """What, among the statements of one block from `first` to `last`, leaves the block's
    iteration or function: not a `continue`/`break` of a loop nested in them, nor anything
    in a nested def."""
    index = ctx.index
    block = index.parent(last)
    siblings = list(block.body)  # type: ignore[attr-defined]
    out = []
    for stmt in siblings[siblings.index(first) : siblings.index(last) + 1]:
        for leave in index.within(stmt, *LEAVES):
            inner = False
            for anc in index.ancestors(leave):
                if anc is block:
                    break
                if isinstance(anc, (cst.FunctionDef, cst.Lambda, cst.ClassDef)):
                    inner = True
                    break
                if (
                    isinstance(anc, LOOPS)
                    and isinstance(leave, (cst.Continue, cst.Break))
                    and not (anc.orelse is not None and index.contains(anc.orelse, leave))
                ):
                    inner = True  # it leaves that loop (from its `else:`, the outer one)
                    break
            if not inner:
                out.append(leave)
    return out


def _leaves_between(ctx: FileContext, first: cst.CSTNode, last: cst.CSTNode) -> bool:
    """Something between two statements of one block can leave its iteration."""
    return first is not last and bool(_exits(ctx, first, last))


class _NoSharedUpdate(Exception):
    """The steps of one backward cannot share one update (the statement, and why)."""


class Step(Rule):
    """`opt.step()` after the scaled backward becomes `scaler.step(opt)`; one `update()` follows.

    Before:
        optimizer.step()
    After:
        scaler.step(optimizer)
        scaler.update()

    `update()` goes after the last step of each block that steps (the accumulation boundary,
    or after the last of several optimizers), so it runs once per iteration; when the steps
    of one backward's iteration lie in different blocks, one update follows the statement of
    their common block that holds the last of them. A step through a local alias
    (`opt = optimizer`) is a step of the optimizer too. A step that cannot be found in the
    same function, or a function handed the optimizer that steps it as well (a project
    function whose body does, or a library one named `optimizer_step`), leaves the whole
    site as it was, with a TODO: stepping on scaled gradients would be silently wrong.
    So does a step that can run when the backward did not (the backward under an `if`
    whose other arm neither runs a backward nor leaves the iteration, or under a `try`
    whose handler goes on to the step; or the step first in the loop): apex stepped nothing
    there, but `scaler.step` raises when it finds no scaled gradients. The step of a
    backward whose `if <switch>: <scaled> else: <plain>` stayed (A2N103) becomes
    `if <switch>: scaler.step(opt); scaler.update() else: opt.step()`.
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
            if opt == site.scaler.optional:
                ctx.tx.note(
                    site.group,
                    site.call,
                    self.code,
                    f"`{opt}` only scaled this backward and is not stepped here: the caller's "
                    f"{site.scaler.access}.step unscales what it leaves in the optimizer's "
                    "gradients (apex unscaled them on leaving scale_loss and skipped the "
                    "next step on an overflow)",
                    NUMERICS,
                )
                continue
            found = [
                c for c in calls if _steps(ctx, c, opt, scope) and _runs_after(ctx, c, site, scope)
            ]
            if not self._no_hidden_step(ctx, site, opt, scope):
                return False
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
                if _covered(ctx, site, call, opt, scope):
                    continue
                skipped = _skipped(ctx, site, call, opt, scope)
                if skipped is not None:
                    ctx.tx.fail(
                        site.group,
                        call,
                        self.code,
                        f"this step can run when the scaled backward of {opt} did not "
                        f"({skipped}): with no scaled gradients {site.scaler.access}.step({opt}) "
                        "raises 'No inf checks were recorded'; skip the step on that path too, "
                        "then migrate by hand",
                    )
                    return False
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
                receiver = ctx.index.code(call.func.value)  # type: ignore[attr-defined]
                if site.arm is not None:
                    if len(found) != 1:
                        ctx.tx.fail(
                            site.group,
                            call,
                            self.code,
                            f"{opt} steps in several places after a backward whose if/else "
                            "stays; scale each step under that test by hand",
                        )
                        return False
                    if not self._step_under_arm(ctx, site, call, receiver):
                        return False
                    site.steps.append(call)
                    continue
                ctx.tx.edits.replace_node(
                    site.group,
                    call,
                    lambda _u, a=access, o=receiver: cst.parse_expression(f"{a}.step({o})"),
                )
                site.steps.append(call)
        return True

    def _step_under_arm(
        self, ctx: FileContext, site: BackwardSite, call: cst.Call, opt: str
    ) -> bool:
        """The step of a backward whose if/else stayed (A2N103): scaled under the same test,
        with its update; the plain arm's optimizer steps as it did."""
        stmt = ctx.index.statement_of(call)
        whole = is_call_statement(stmt, call)
        in_suite = (  # `if done: opt.step(); opt.zero_grad()`: the suite becomes a block
            isinstance(stmt, cst.Expr)
            and stmt.value is call
            and isinstance(ctx.index.parent(stmt), cst.SimpleStatementSuite)
        )
        if not (whole or in_suite):
            ctx.tx.fail(
                site.group,
                call,
                self.code,
                f"{opt}.step() is part of a larger statement, and the backward's if/else "
                "decides how it steps; split it out by hand",
            )
            return False
        test, scaled_in_body = site.arm  # type: ignore[misc]
        handed = _switch_handed_on(ctx, site, stmt)
        if handed is not None:
            ctx.tx.fail(
                site.group,
                handed,
                self.code,
                f"`{ctx.index.code(test)}` decides how {opt} steps, and this call between the "
                "backward and the step is handed its object, so it may change it; make the "
                "backward and the step agree by hand",
            )
            return False
        scaler = site.scaler
        access = scaler.access
        if scaler.unreachable_update or (
            scaler.update_scope is not None and not ctx.index.contains(scaler.update_scope, stmt)
        ):
            ctx.tx.fail(
                site.group,
                stmt,
                self.code,
                f"{access}.update({scaler.update_args}) reads names of the scope that makes "
                "the scaler, not visible here; pass the loss scale choice in by hand",
            )
            return False
        scaled = f"{access}.step({opt})\n    {access}.update({scaler.update_args})"
        plain = f"{opt}.step()"
        first, second = (scaled, plain) if scaled_in_body else (plain, scaled)
        code = f"if {ctx.index.code(test)}:\n    {first}\nelse:\n    {second}"
        branch = ctx.gen.stmt(code, ctx.index.indent_width(stmt))
        ctx.tx.edits.replace_statement(site.group, stmt, lambda _u, b=branch: [b])
        ctx.tx.note(
            site.group,
            stmt,
            self.code,
            f"step -> {access}.step + update() where the scaled backward ran",
            SAFE,
        )
        return True

    def _no_hidden_step(
        self, ctx: FileContext, site: BackwardSite, opt: str, scope: cst.CSTNode
    ) -> bool:
        """No function handed `opt` after the backward steps it: that step would apply
        gradients still multiplied by the loss scale."""
        for call in ctx.index.within(scope, cst.Call):
            if ctx.index.scope_of(call) is not scope:
                continue
            how = _hands_to_stepper(ctx, call, opt)
            if how is None or not _runs_after(ctx, call, site, scope):
                continue
            callee = ctx.index.code(call.func)
            ctx.tx.fail(
                site.group,
                call,
                self.code,
                f"{callee}() is handed {opt} and steps it ({how}) after the scaled backward: "
                "with a GradScaler that step would apply gradients "
                f"still multiplied by the loss scale; step through {site.scaler.access}.step"
                f"({opt}) and {site.scaler.access}.update() there by hand",
            )
            return False
        return True

    def _updates(self, ctx: FileContext) -> None:
        """One `update()` after the last step of each (scaler, block).

        The steps of one backward that lie in different blocks (`opt_a.step()`, then
        `if ...: opt_b.step()`) share one update after the statement of their common block
        that holds the last of them: an update between them would unscale the later step's
        gradients by a scale they were not multiplied by.
        """
        last: dict[tuple[str, int], tuple[cst.CSTNode, BackwardSite]] = {}
        first: dict[tuple[str, int], cst.CSTNode] = {}
        sharing: dict[tuple[str, int], list[BackwardSite]] = {}
        for site in ctx.sites:
            if ctx.tx.dropped(site.group) or site.arm is not None:
                continue  # a kept if/else updates with its step
            repeated = _repeated_step(ctx, site)
            if repeated is not None:
                ctx.tx.fail(
                    site.group,
                    repeated,
                    self.code,
                    "this step runs several times for one scaled backward: each "
                    "scaler.step would unscale the same gradients again after update(); "
                    "migrate it by hand",
                )
                continue
            try:
                anchors = _step_anchors(ctx, site)
            except _NoSharedUpdate as refused:
                ctx.tx.fail(site.group, refused.args[0], self.code, refused.args[1])
                continue
            for stmt in anchors:
                key = (site.scaler.access, id(ctx.index.block_of(stmt)))
                sharing.setdefault(key, []).append(site)
                if key not in last or ctx.index.order(stmt) > ctx.index.order(last[key][0]):
                    last[key] = (stmt, site)
                if key not in first or ctx.index.order(stmt) < ctx.index.order(first[key]):
                    first[key] = stmt
        for key, (stmt, site) in list(last.items()):
            if _leaves_between(ctx, first[key], stmt):
                exits = _iteration_exits(ctx, first[key], stmt)
                if exits is not None:
                    for leave in exits:  # a step ran: its update runs before the iteration ends
                        ctx.tx.edits.insert_before(
                            site.group,
                            leave,
                            ctx.gen.stmt(
                                f"{site.scaler.access}.update({site.scaler.update_args})",
                                ctx.index.indent_width(leave),
                            ),
                        )
                    continue
                for other in sharing[key]:
                    ctx.tx.fail(
                        other.group,
                        stmt,
                        self.code,
                        "a continue, break, return or raise between the steps that share "
                        "this update() would skip it, and the next scaler.step would raise; "
                        "update where the iteration leaves by hand",
                    )
                del last[key]
        for stmt, site in last.values():
            scaler = site.scaler
            if any(
                other is not stmt
                and ctx.index.contains(other, stmt)
                and holder.scaler.access == scaler.access
                for other, holder in last.values()
            ):
                continue  # the update after the statement that holds this one follows it
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
