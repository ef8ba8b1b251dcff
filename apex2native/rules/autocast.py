"""A2N106: the forward pass and loss before a scaled backward run under `torch.amp.autocast`."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext, Scaler
from apex2native.findings import NUMERICS
from apex2native.index import TreeIndex, callee_name
from apex2native.rules.base import Rule
from apex2native.rules.scale_loss import BackwardSite
from apex2native.scopes import free_name

# Calls that only move or re-type data: a statement with nothing else does not start a region.
DATA_ONLY = frozenset(
    "cuda to float half long int contiguous detach clone len next iter randn rand randint "
    "randperm zeros ones empty full arange tensor as_tensor from_numpy size view reshape "
    "unsqueeze squeeze permute".split()
    # and the batch movers of training frameworks (ignite's `convert_tensor`, `prepare_batch`)
    + "convert_tensor prepare_batch _prepare_batch to_device move_to_device".split()
)
BARRIER_CALLS = {"backward", "step", "unscale_"}
# Python's own functions: a statement that calls only these computes no tensors.
PLAIN_PYTHON = frozenset(
    "isinstance issubclass getattr hasattr setattr type len range enumerate zip min max abs "
    "int float str bool list tuple dict set sorted reversed print format round".split()
)


def reads(index: TreeIndex, node: cst.CSTNode) -> set[str]:
    """Names and dotted attribute chains read in `node`."""
    out = {n.value for n in index.within(node, cst.Name)}
    for n in index.within(node, cst.Attribute):
        if isinstance(n.value, (cst.Name, cst.Attribute)):
            out.add(index.code(n))
    return out


TARGET_HOLDERS = (cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor, cst.AsName)
# methods that fill the container they are called on: `feats.append(model(v))` computes `feats`
MUTATORS = frozenset("append extend insert update add setdefault __setitem__".split())


def assigned(index: TreeIndex, node: cst.CSTNode) -> set[str]:
    """Names and attribute chains a statement binds (assignment targets, with/for targets,
    containers it fills)."""
    out: set[str] = set()
    for call in index.within(node, cst.Call):
        func = call.func
        if (
            isinstance(func, cst.Attribute)
            and func.attr.value in MUTATORS
            and isinstance(func.value, (cst.Name, cst.Attribute))
        ):
            out.add(index.code(func.value))
    for n in index.within(node, *TARGET_HOLDERS):
        target = n.name if isinstance(n, cst.AsName) else n.target
        for leaf in index.within(target, cst.Name, cst.Attribute):
            if isinstance(leaf, cst.Name):
                out.add(leaf.value)  # `(lm_loss), *_ = ...`: the name, not its parentheses
            else:
                out.add(index.code(leaf.with_changes(lpar=[], rpar=[])))
    return out


def _calls(index: TreeIndex, node: cst.CSTNode) -> set[str]:
    return {callee_name(n) or "" for n in index.within(node, cst.Call)}


def _barrier(ctx: FileContext, stmt: cst.CSTNode) -> bool:
    if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
        return True
    if _calls(ctx.index, stmt) & BARRIER_CALLS:
        return True
    if any(_is_autocast(ctx, n) for n in ctx.index.within(stmt, cst.With)):
        return True
    if ctx.facts.helpers and any(
        ctx.names.resolve_call(n) in ctx.facts.helpers for n in ctx.index.within(stmt, cst.Call)
    ):
        return True  # the helper that makes the scaler: the initialize's stand-in
    if ctx.facts.clippers and any(
        ctx.names.resolve_call(n) in ctx.facts.clippers for n in ctx.index.within(stmt, cst.Call)
    ):
        return True  # it reads or changes gradients (an attack, a clip): backward-side work
    return any(
        ctx.names.call_name(n) not in (None, "apex.amp.disable_casts")
        for n in ctx.index.within(stmt, cst.Call)
    )


def _region_top(ctx: FileContext, site: BackwardSite) -> cst.CSTNode:
    """The statement the forward passes come before: the backward's own, or, when nothing
    before it in its block computes the loss, the `if`/`with`/`try` around it whose block
    does (`loss = ...` then `if phase == "train": <backward>`). Never out of a loop."""
    needed = reads(ctx.index, site.loss)
    top = site.top
    while True:
        top = _chain_head(ctx, top)
        block = ctx.index.siblings(top)
        earlier = block[: block.index(top)]
        if any(assigned(ctx.index, s) & needed for s in earlier):
            return top
        outer = next(
            (
                a
                for a in ctx.index.ancestors(top)
                if isinstance(a, (cst.BaseCompoundStatement, cst.Module))
            ),
            None,
        )
        if not isinstance(outer, (cst.If, cst.With, cst.Try)):
            return site.top
        top = outer


def _forward_sites(ctx: FileContext) -> list[BackwardSite]:
    """Calls of defs that scale the loss they are handed: the argument is the loss whose
    forward pass runs here, before the call, under the scaler that reaches the call."""
    forwards = ctx.facts.forwards
    out: list[BackwardSite] = []
    for name in sorted({raw.rsplit(".", 1)[-1] for raw in forwards}):
        for call in ctx.index.calls_named(name):
            target = ctx.names.resolve_call(call)
            if target not in forwards:
                continue
            param, position, unit = forwards[target]
            if not unit or unit in ctx.facts.blocked:
                continue  # no scaler reaches the def, or its unit stays apex: nothing to run
            loss = _argument(call, param, position)
            stmt = ctx.index.statement_of(call)
            reachable = ctx.reach.reachable(call)
            if loss is not None and _computed_inline(ctx, loss) is not None:
                # `step(model(x).sum(), opt)`: the forward is inside the call
                if len(reachable) == 1 and _hoist(ctx, stmt, call, loss, reachable[0]):
                    continue
                loss = None
            if loss is not None and _wrapped_before(ctx, stmt, reads(ctx.index, loss)):
                continue  # a region already makes the argument (the rewrite ran before)
            if loss is None or len(reachable) != 1 or not _runs_the_call(stmt, call):
                ctx.tx.todo(
                    call,
                    "A2N106",
                    f"{ctx.index.code(call.func)} scales the loss it is handed: run the forward "
                    f"pass that makes it under {ctx.autocast_hint()}",
                )
                continue
            site = BackwardSite(stmt, call, loss, [], reachable[0], stmt)  # type: ignore[arg-type]
            ctx.depend(site.scaler, site.group)
            out.append(site)
    return out


def _hoist(
    ctx: FileContext, stmt: cst.CSTNode, call: cst.Call, loss: cst.BaseExpression, scaler
) -> bool:
    """`return self.backward_propagate(torch.sum(self.loss(x)), step)`: the argument is the
    forward pass. It moves into a variable made under autocast just before the statement,
    when nothing else the statement runs first could see the difference (the callee runs
    no call, the arguments before it are names and constants) and the argument reads no
    output of a model the def ran before (`F.cross_entropy(logits, y)` is a loss, not the
    forward)."""
    if not _runs_the_call(stmt, call) or ctx.in_autocast(stmt):
        return False
    position = next(i for i, a in enumerate(call.args) if a.value is loss)
    before = [a.value for a in call.args[:position]]
    plain = (cst.Name, cst.SimpleString, cst.Integer, cst.Float)
    if ctx.index.within(call.func, cst.Call) or not all(isinstance(v, plain) for v in before):
        return False  # something the statement runs first could see the forward's effects
    unsafe = (cst.Await, cst.Yield, cst.NamedExpr, cst.Lambda, cst.GeneratorExp)
    if any(ctx.index.within(loss, t) for t in unsafe):
        return False
    func = ctx.index.scope_of(stmt)
    if not isinstance(func, cst.FunctionDef):
        return False
    made = _forward_outputs(ctx, func, stmt, stmt)
    if reads(ctx.index, loss) & made:
        # `F.cross_entropy(logits, y)`: the forward ran before, outside the call
        return _hoist_with_forward(ctx, stmt, call, loss, scaler, made)
    name = _free_loss_name(ctx, func)
    width = ctx.index.indent_width(stmt)
    autocast = Autocast.autocast_code_for(ctx, scaler)
    region = ctx.gen.stmt(f"with {autocast}:\n    {name} = {ctx.index.code(loss)}", width)
    group = object()
    ctx.depend(scaler, group)
    ctx.tx.edits.insert_before(group, stmt, region)
    ctx.tx.edits.replace_node(group, loss, lambda _u: cst.Name(name))
    ctx.record_region(scaler.unit, scaler.autocast_enabled, stmt)
    ctx.mark_autocast([stmt])
    ctx.needs_torch = True
    ctx.tx.note(
        group,
        call,
        "A2N106",
        f"the forward pass inside the call to {ctx.index.code(call.func)} moves into `{name}`, "
        "made under autocast just before it",
        NUMERICS,
    )
    return True


def _hoist_with_forward(
    ctx: FileContext,
    stmt: cst.CSTNode,
    call: cst.Call,
    loss: cst.BaseExpression,
    scaler,
    made: set[str],
) -> bool:
    """`logits = model(x)` then `step(F.cross_entropy(logits, y), opt)`: the statements
    just before the call that make what the argument reads (the forward among them) go
    under autocast, with the argument made into a variable at their end."""
    block = ctx.index.siblings(stmt)
    if not isinstance(stmt, cst.SimpleStatementLine) or stmt not in block:
        return False
    needed = reads(ctx.index, loss)
    first = at = block.index(stmt)
    apex = [ref for ref, _ in ctx.names.refs()]
    while first > 0:
        earlier = block[first - 1]
        if not isinstance(earlier, cst.SimpleStatementLine) or not (
            assigned(ctx.index, earlier) & needed
        ):
            break
        if any(ctx.index.contains(earlier, ref) for ref in apex):
            break  # `amp.initialize(...)`: other rules rewrite it, outside the region
        if ctx.in_autocast(earlier) or any(
            ctx.index.within(earlier, t) for t in (cst.Return, cst.Raise, cst.Yield, cst.Await)
        ):
            return False
        needed |= reads(ctx.index, earlier)
        first -= 1
    chain = block[first:at]
    if not chain or not any(_runs_a_model(ctx, s) for s in chain):
        return False
    # what the statements and the argument read before the statements themselves bind it,
    # in order: a forward that made any of it before them would stay outside the region
    available: set[str] = set()
    from_before: set[str] = set()
    for s in chain:
        from_before |= _loads(ctx.index, s) - available
        available |= assigned(ctx.index, s)
    from_before |= reads(ctx.index, loss) - available
    func = ctx.index.scope_of(stmt)
    if from_before & (_forward_outputs(ctx, func, chain[0], stmt) | made - available):
        return False  # a forward before these statements made part of what they read
    name = _free_loss_name(ctx, func)
    width = ctx.index.indent_width(stmt)
    template = ctx.gen.stmt(f"with {Autocast.autocast_code_for(ctx, scaler)}:\n    pass", width)
    group = object()
    ctx.depend(scaler, group)
    ctx.tx.edits.wrap(group, chain[0], chain[-1], template)
    made_loss = ctx.gen.stmt(
        f"{name} = {ctx.index.code(loss)}", width + len(ctx.module.default_indent)
    )
    ctx.tx.edits.insert_after(group, chain[-1], made_loss)
    ctx.tx.edits.replace_node(group, loss, lambda _u: cst.Name(name))
    ctx.record_region(scaler.unit, scaler.autocast_enabled, chain[0])
    ctx.mark_autocast([*chain, stmt])
    ctx.needs_torch = True
    ctx.tx.note(
        group,
        call,
        "A2N106",
        f"the forward pass before the call to {ctx.index.code(call.func)} and the loss handed "
        f"to it (now `{name}`) run under autocast",
        NUMERICS,
    )
    return True


def _forward_outputs(
    ctx: FileContext, func: cst.CSTNode, before: cst.CSTNode, stmt: cst.CSTNode
) -> set[str]:
    """What the statements of `func` that run a model before `before` assign (none that
    holds `stmt`)."""
    out: set[str] = set()
    for earlier in ctx.index.within(func, cst.SimpleStatementLine, cst.With):
        if (
            ctx.index.order(earlier) < ctx.index.order(before)
            and not ctx.index.contains(earlier, stmt)
            and _runs_a_model(ctx, earlier)
        ):
            out |= assigned(ctx.index, earlier)
    return out


def _free_loss_name(ctx: FileContext, func: cst.CSTNode) -> str:
    """A name for the hoisted loss that nothing in `func` uses (`loss`, `loss_value`, ...)."""
    taken = {
        n.value
        for n in ctx.index.within(func, cst.Name)
        if not (isinstance(ctx.index.parent(n), cst.Attribute) and ctx.index.parent(n).attr is n)
    }
    return free_name(("loss", "loss_value"), taken)


def _loads(index: TreeIndex, stmt: cst.CSTNode) -> set[str]:
    """What `reads` finds in a statement, less the targets it only stores to
    (`logits = model(x)` loads `model` and `x`; `total += x` loads `total` too)."""
    stored = {
        id(n)
        for holder in index.within(stmt, cst.AssignTarget, cst.AnnAssign)
        for n in index.subtree(holder.target)
    }
    out = {n.value for n in index.within(stmt, cst.Name) if id(n) not in stored}
    for n in index.within(stmt, cst.Attribute):
        if id(n) not in stored and isinstance(n.value, (cst.Name, cst.Attribute)):
            out.add(index.code(n))
    return out


def _wrapped_before(ctx: FileContext, stmt: cst.CSTNode, needed: set[str]) -> bool:
    """An autocast block holds the statement, or an earlier one of its block assigns
    what it needs, directly or through the arithmetic after it (`combined = a + b`)."""
    if any(isinstance(a, cst.With) and _is_autocast(ctx, a) for a in ctx.index.ancestors(stmt)):
        return True
    block = ctx.index.siblings(stmt)
    needed = set(needed)
    for earlier in reversed(block[: block.index(stmt)]):
        made = assigned(ctx.index, earlier) & needed
        if isinstance(earlier, cst.With) and _is_autocast(ctx, earlier) and made:
            return True
        if made:
            needed |= reads(ctx.index, earlier)
    return False


def _argument(call: cst.Call, param: str, position: int) -> cst.BaseExpression | None:
    """What a call passes for `param` (by keyword, or at `position`), None if unsure."""
    for i, arg in enumerate(call.args):
        if arg.star:
            return None
        if arg.keyword is not None:
            if arg.keyword.value == param:
                return arg.value
        elif i == position:
            return arg.value
    return None


def _runs_the_call(stmt: cst.CSTNode, call: cst.Call) -> bool:
    """The call is the statement, or the value it assigns: nothing else in the statement
    runs before it that a region would have to split."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return False
    small = stmt.body[0]
    return (isinstance(small, (cst.Expr, cst.Return)) and small.value is call) or (
        isinstance(small, (cst.Assign, cst.AnnAssign, cst.AugAssign)) and small.value is call
    )


def _handed_loss(ctx: FileContext, site: BackwardSite) -> str:
    """The parameter the loss is, when the def only reworks it (`loss = loss.mean()`): the
    forward ran in the caller, and a region here would cover arithmetic on a finished loss
    while the forward stays in full precision."""
    func = ctx.index.scope_of(site.with_node)
    if not isinstance(func, cst.FunctionDef):
        return ""
    params = func.params
    names = {p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)}
    if not isinstance(site.loss, cst.Name) or site.loss.value not in names:
        return ""  # `loss / accum`, `self.loss`: made here
    name = site.loss.value
    statements = ctx.index.within(func, cst.SimpleStatementLine)
    rebinds = [s for s in statements if name in _rebinds(ctx, s)]
    return name if all(name in reads(ctx.index, s) for s in rebinds) else ""


# what a finished loss may go through inside `scale_loss(...)` without leaving autocast's
# reach mattering: the loss of an autocast region is float32 already
REDUCTIONS = frozenset({"mean", "sum", "float", "double"})


def _computed_inline(ctx: FileContext, loss: cst.BaseExpression) -> str | None:
    """A call that computes the loss inside the scaling call (`F.cross_entropy(out, y)`),
    other than a reduction of a finished loss (`loss.mean()`)."""
    for call in ctx.index.within(loss, cst.Call):
        func = call.func
        if isinstance(func, cst.Attribute) and func.attr.value in REDUCTIONS and not call.args:
            continue
        return ctx.index.code(call.func)
    return None


def _rebinds(ctx: FileContext, stmt: cst.CSTNode) -> set[str]:
    """Names a statement binds as a whole (`loss = ...`, `a, loss = ...`, `loss /= n`),
    not through an attribute or item (`self.loss = ...`)."""
    out: set[str] = set()
    for node in ctx.index.within(stmt, cst.AssignTarget, cst.AugAssign, cst.AnnAssign):
        target = node.target
        elements = target.elements if isinstance(target, (cst.Tuple, cst.List)) else [target]
        for element in elements:
            value = element.value if isinstance(element, cst.BaseElement) else element
            if isinstance(value, cst.Name):
                out.add(value.value)
    return out


def _chain_head(ctx: FileContext, stmt: cst.CSTNode) -> cst.CSTNode:
    """The `if` that starts the chain an `elif` belongs to (an `elif` sits in no block)."""
    parent = ctx.index.parent(stmt)
    while isinstance(parent, cst.If) and parent.orelse is stmt:
        stmt, parent = parent, ctx.index.parent(parent)
    return stmt


def _runs_a_model(ctx: FileContext, stmt: cst.CSTNode) -> bool:
    """The statement calls an object held in a variable (`model(x)`, `self.net.forward(x)`),
    not only functions a `def` or an import names (`format_data(batch)`)."""
    for call in ctx.index.within(stmt, cst.Call):
        if (callee_name(call) or "") in DATA_ONLY | PLAIN_PYTHON:
            continue
        root = call.func
        while isinstance(root, cst.Attribute):
            root = root.value
        scope = ctx.index.read_scope(root) if isinstance(root, cst.Name) else None
        kinds = {b.kind for b in scope.lookup(root.value)} if scope is not None else set()
        if kinds and kinds <= {"assign", "param"}:
            return True
    return False


def _forward(ctx: FileContext, block, region: list[int]) -> bool:
    """The region so far runs something more than data movement and plain Python."""
    return any(_calls(ctx.index, block[i]) - DATA_ONLY - PLAIN_PYTHON for i in region)


def _is_autocast(ctx: FileContext, node: cst.With) -> bool:
    return any("autocast" in ctx.index.code(item.item) for item in node.items)


class Autocast(Rule):
    """The forward pass and loss of each iteration run under autocast, closed before backward.

    Before:
        output = model(images)
        loss = criterion(output, target)
        with amp.scale_loss(loss, optimizer) as scaled_loss:
            scaled_loss.backward()
    After:
        with torch.amp.autocast("cuda", dtype=torch.float16):
            output = model(images)
            loss = criterion(output, target)
        scaler.scale(loss).backward()

    apex O1 patched torch for the whole process; autocast only covers its region, so the
    region is the chain of statements that compute the loss, back to the first one that does
    more than move data, never across an earlier backward or step. A def that only reworks
    the loss it is handed (`backward_step(loss, optimizer)`) has no forward pass: its callers
    wrap the statements that make the argument, under the scaler that reaches each call; an
    argument that is itself the forward pass (`step(model(x).sum(), opt)`) moves into a
    variable made under autocast just before the call. A call that cannot be wrapped (inside
    an expression, no single scaler in reach) gets a TODO, as does a loss whose def has no
    caller in the run, or is overridden by a subclass.
    """

    code = "A2N106"
    name = "autocast"
    tier = NUMERICS
    summary = "forward + loss under torch.amp.autocast"

    def apply(self, ctx: FileContext) -> None:
        blocks: dict[int, list[BackwardSite]] = {}
        self._tops: dict[int, cst.CSTNode] = {}
        for site in [*ctx.sites, *_forward_sites(ctx)]:
            if site.scaler.autocast and not ctx.tx.dropped(site.group):
                top = self._tops[id(site)] = _region_top(ctx, site)
                blocks.setdefault(id(ctx.index.block_of(top)), []).append(site)
        marks: dict[int, tuple[list, dict[int, BackwardSite]]] = {}
        for sites in blocks.values():
            unreachable = [s for s in sites if s.scaler.unreachable_switch]
            for site in unreachable:
                ctx.tx.fail(
                    site.group,
                    site.call,
                    self.code,
                    "autocast must be switched like the scaler, whose switch is not visible "
                    f"here; run the forward pass under {ctx.autocast_hint()} with that switch",
                )
            sites = [s for s in sites if not s.scaler.unreachable_switch]
            if sites:
                self._mark(ctx, sites, marks)
        for block, marked in marks.values():
            self._regions(ctx, block, marked)

    def _mark(self, ctx: FileContext, sites: list[BackwardSite], marks: dict) -> None:
        """Mark, for each site, the statements that compute its loss: in the backward's
        block, and before the `if`/`with`/`try` that holds it (`out = model(x)` then
        `try: loss = criterion(out, y)`), each block's statements for its own regions."""
        block = ctx.index.siblings(self._tops[id(sites[0])])
        tops = {id(self._tops[id(s)]) for s in sites}
        for site in sites:
            needed = reads(ctx.index, site.loss)
            chain = self._chain(ctx, block, self._tops[id(site)], needed, tops)
            handed = _handed_loss(ctx, site)
            if handed:
                func = ctx.index.scope_of(site.with_node)
                if ctx.index.qualname(func) in ctx.facts.forwarded:
                    ctx.tx.note(
                        site.group,
                        site.call,
                        self.code,
                        f"the loss comes in as `{handed}`: its callers run the forward pass "
                        "under autocast",
                        NUMERICS,
                    )
                    continue
                ctx.tx.todo(
                    site.call,
                    self.code,
                    f"the loss comes in as the parameter `{handed}`: its forward pass runs in "
                    f"the caller; run it there under {ctx.autocast_hint()}",
                )
                continue
            made_inline = _computed_inline(ctx, site.loss)
            if made_inline is not None:
                ctx.tx.todo(
                    site.call,
                    self.code,
                    f"the loss is computed inside the scaling call (`{made_inline}`), outside "
                    f"any autocast region; compute it into a variable under "
                    f"{ctx.autocast_hint()} first",
                )
                continue
            found = bool(chain)
            for i in chain:
                marks.setdefault(id(block), (block, {}))[1].setdefault(i, site)
            outer = self._tops[id(site)]
            while True:
                outer = next(
                    (
                        a
                        for a in ctx.index.ancestors(outer)
                        if isinstance(a, cst.BaseCompoundStatement)
                    ),
                    None,
                )
                if not isinstance(outer, (cst.If, cst.With, cst.Try)):
                    break
                outer = _chain_head(ctx, outer)
                around = ctx.index.siblings(outer)
                for i in self._chain(ctx, around, outer, needed, set(), models_only=True):
                    found = True
                    marks.setdefault(id(around), (around, {}))[1].setdefault(i, site)
            if not found:
                ctx.tx.todo(
                    site.call,
                    self.code,
                    "the forward pass that computes this loss is not in this block; "
                    f"run it under {ctx.autocast_hint()}",
                )

    def _regions(self, ctx: FileContext, block: list, marked: dict[int, BackwardSite]) -> None:
        """One region per run of forward statements, shared by the sites of one block.

        Consecutive marked statements form one region, so two losses computed before their
        two backward passes share one autocast block, and work between a forward and its
        loss that feeds neither (a timer, a log line) splits the region in two.
        """
        region: list[int] = []
        for i in range(len(block) + 1):
            stop = i == len(block) or _barrier(ctx, block[i])
            if not stop and i in marked:
                if region and self.autocast_code(ctx, marked[region[0]]) != self.autocast_code(
                    ctx, marked[i]
                ):
                    self._wrap(ctx, block, region, marked)
                    region = []
                region.append(i)
            elif region and (stop or _forward(ctx, block, region)):
                # a barrier, or work that feeds no loss (a timer, a log line) after a forward
                self._wrap(ctx, block, region, marked)
                region = []

    def _chain(
        self,
        ctx: FileContext,
        block,
        top: cst.CSTNode,
        needed: set[str],
        tops: set[int],
        models_only: bool = False,
    ) -> list[int]:
        """Indices of the statements before `top` that compute `needed` (latest first);
        `needed` grows by what they read. A barrier (a step, an apex call) that computes
        none of it is passed over: its own statement stays outside any region."""
        index = next(i for i, s in enumerate(block) if s is top)
        chain: list[int] = []
        crossed = models_only  # before an enclosing if/with/try: only a model's forward
        for i in range(index - 1, -1, -1):
            stmt = block[i]
            if id(stmt) in tops:
                continue  # another loss's backward: its forward may sit before it
            computes = assigned(ctx.index, stmt) & needed
            if _barrier(ctx, stmt):
                if computes or isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
                    break
                crossed = True
                continue
            if computes:
                if crossed and not _runs_a_model(ctx, stmt):
                    break  # data loading before a schedule step: not the forward
                chain.append(i)
                needed |= reads(ctx.index, stmt)
        while chain and not (_calls(ctx.index, block[chain[-1]]) - DATA_ONLY - PLAIN_PYTHON):
            chain.pop()  # data preparation before the forward stays outside
        while chain and not _calls(ctx.index, block[chain[0]]):
            chain.pop(0)  # arithmetic on the finished loss (`loss / accum`) stays outside
        return chain

    def _wrap(self, ctx: FileContext, block, region: list[int], marked: dict) -> None:
        site = marked[region[0]]
        first, last = block[region[0]], block[region[-1]]
        template = ctx.gen.stmt(
            f"with {self.autocast_code(ctx, site)}:\n    pass", ctx.index.indent_width(first)
        )
        ctx.tx.edits.wrap(site.group, first, last, template)
        ctx.record_region(site.scaler.unit, site.scaler.autocast_enabled, first)
        ctx.mark_autocast(block[region[0] : region[-1] + 1])
        ctx.needs_torch = True
        ctx.tx.note(site.group, first, self.code, "forward pass and loss under autocast", NUMERICS)

    @staticmethod
    def autocast_code(ctx: FileContext, site: BackwardSite) -> str:
        return Autocast.autocast_code_for(ctx, site.scaler)

    @staticmethod
    def autocast_code_for(ctx: FileContext, scaler: Scaler) -> str:
        opts = ctx.options
        return ctx.gen.autocast(opts.device_type, opts.dtype, scaler.autocast_enabled)
