"""A2N107: `amp.state_dict()` / `amp.load_state_dict(x)` become the scaler's."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.index import COMPREHENSIONS, TreeIndex
from apex2native.rules.base import Rule

# keys of apex's `amp.state_dict()`: code that reads them breaks on GradScaler's state
APEX_KEYS = ("loss_scale", "unskipped")
APEX_KEY_PREFIX = "loss_scaler"
# `... if "loss_scaler0" in state else ...`: the loader this rule writes
OWN_LOADER = m.IfExp(
    test=m.Comparison(left=m.SimpleString(), comparisons=[m.ComparisonTarget(operator=m.In())])
)


class StateDict(Rule):
    """The amp state in checkpoints becomes the GradScaler's state.

    Before:
        checkpoint["amp"] = amp.state_dict()
        amp.load_state_dict(checkpoint["amp"])
    After:
        checkpoint["amp"] = scaler.state_dict()
        scaler.load_state_dict(
            {**scaler.state_dict(), "scale": checkpoint["amp"]["loss_scaler0"]["loss_scale"], ...}
            if "loss_scaler0" in checkpoint["amp"]
            else checkpoint["amp"] or scaler.state_dict()
        )

    The checkpoint key stays, so the rest of the checkpoint code is unchanged. Checkpoints
    written by apex hold `{"loss_scaler0": {"loss_scale": ..., "unskipped": ...}}`, which
    GradScaler cannot load as it is: the loader converts it inline, so a run saved before the
    migration resumes with its loss scale and growth count (`apex2native convert-checkpoint`
    converts checkpoint files once and for all). An empty state (saved by a disabled
    scaler, e.g. an fp32 run) leaves the scaler as it is, as apex did, instead of raising.

    The amp module itself among the objects a checkpointer saves (`{"model": model, "amp":
    amp}`, `dict(amp=amp)`: the checkpointer calls `.state_dict()` on each) becomes the
    scaler, so the entry keeps its key and holds GradScaler state; unless this file also
    hands that collection to a loader, where an apex-era entry would not load.

    A TODO is left, and the unit stays apex, where the rewrite would change what the code
    does: a load whose argument runs only under a condition (`... if c else None`,
    `c and ...`, an `elif` test, a lambda, a comprehension) cannot be named on a line of
    its own, code next to a site that reads apex's keys (`state["loss_scaler0"]`) would
    read GradScaler's state, and `amp.state_dict(destination)` has no GradScaler form.
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
        for ref, name in list(ctx.names.refs()):
            if name == "apex.amp" and isinstance(ref, cst.Name) and _collected(ctx, ref):
                self._collected(ctx, ref)

    def _collected(self, ctx: FileContext, ref: cst.Name) -> None:
        """The amp module among the objects a checkpointer saves (`{"model": model, "amp":
        amp}`, `dict(amp=amp)`): it saves what `.state_dict()` gives, so the scaler takes
        its place. A collection this file also hands to a loader stays: an apex-era
        checkpoint's entry would not load into a GradScaler there."""
        reachable = ctx.reach.reachable(ref)
        if len(reachable) != 1:
            return  # the leftover marker says that apex stays
        scaler = reachable[0]
        holder = _collection_name(ctx, ref)
        if holder is not None and _loaded(ctx, holder):
            ctx.refuse(
                ref,
                self.code,
                f"amp is saved in `{holder}`, which this file also loads from a checkpoint: "
                "an apex-era checkpoint's amp entry would not load into a GradScaler; convert "
                "old checkpoints (`apex2native convert-checkpoint`) and put the scaler in",
            )
            return
        if not _saved_only(ctx, ref, holder):
            return  # the collection is used another way: the leftover marker says so
        group = object()
        ctx.depend(scaler, group)
        ctx.tx.handle(group, ref)
        new = cst.parse_expression(scaler.access)
        ctx.tx.edits.replace_node(group, ref, lambda _u: new)
        ctx.tx.note(
            group,
            ref,
            self.code,
            f"the checkpointed amp -> {scaler.access}: its entry holds GradScaler state from "
            "now on; an apex-era checkpoint loads once `apex2native convert-checkpoint` has "
            "converted it",
            SAFE,
        )

    def _site(self, ctx: FileContext, call: cst.Call, method: str) -> None:
        reachable = ctx.reach.reachable(call)
        if len(reachable) != 1:
            why = "no GradScaler reaches it" if not reachable else "several scalers reach it"
            ctx.refuse(call, self.code, f"amp.{method}: {why}; use the scaler's {method}")
            return
        scaler = reachable[0]
        group = object()
        ctx.depend(scaler, group)
        ctx.tx.handle(group, call.func)
        reader = _apex_layout_read(ctx, call)
        if reader is not None:
            ctx.tx.fail(
                group,
                call,
                self.code,
                f"amp.{method}: `{ctx.index.code(reader)}` reads apex's layout of the amp "
                "state; GradScaler's has `scale` and `_growth_tracker` instead",
            )
            return
        if method == "state_dict":
            if call.args:
                ctx.tx.fail(
                    group,
                    call,
                    self.code,
                    "amp.state_dict with arguments (apex's `destination`); "
                    "GradScaler.state_dict takes none",
                )
                return
            new = cst.parse_expression(f"{scaler.access}.state_dict")
            ctx.tx.edits.replace_node(group, call.func, lambda _u: new)
            ctx.tx.note(
                group, call, self.code, f"amp.state_dict -> {scaler.access}.state_dict", SAFE
            )
            return
        self._load(ctx, call, scaler.access, group)

    def _load(self, ctx: FileContext, call: cst.Call, access: str, group: object) -> None:
        """Load the scaler's state, converting apex's `{"loss_scaler0": ...}` on the way."""
        if len(call.args) != 1 or call.args[0].keyword is not None or call.args[0].star:
            ctx.tx.fail(group, call, self.code, "amp.load_state_dict with unexpected arguments")
            return
        why = load_converting(ctx, group, call, access)
        if why:
            ctx.tx.fail(group, call, self.code, f"amp.load_state_dict: {why}")
            return
        ctx.tx.note(
            group,
            call,
            self.code,
            f"amp.load_state_dict -> {access}.load_state_dict; a checkpoint saved by apex "
            "resumes with its loss scale (the first loss scaler's when there were several)",
            SAFE,
        )


def _collected(ctx: FileContext, ref: cst.Name) -> bool:
    """`ref` is a value of a dict display or a keyword of a `dict(...)` call."""
    parent = ctx.index.parent(ref)
    if isinstance(parent, cst.DictElement) and parent.value is ref:
        return True
    if isinstance(parent, cst.Arg) and parent.keyword is not None and parent.value is ref:
        call = ctx.index.parent(parent)
        return isinstance(call, cst.Call) and m.matches(call.func, m.Name("dict"))
    return False


def _collection(ctx: FileContext, ref: cst.Name) -> cst.CSTNode | None:
    """The dict display or `dict(...)` call that holds `ref`."""
    node: cst.CSTNode | None = ctx.index.parent(ref)
    while node is not None and not isinstance(node, (cst.Dict, cst.Call)):
        node = ctx.index.parent(node)
    return node


def _collection_name(ctx: FileContext, ref: cst.Name) -> str | None:
    """The name the collection holding `ref` is assigned to (`to_save = {...}`)."""
    node = _collection(ctx, ref)
    stmt = ctx.index.parent(node) if node is not None else None
    if isinstance(stmt, cst.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0].target
        return target.value if isinstance(target, cst.Name) else None
    return None


def _saves(ctx: FileContext, arg: cst.Arg) -> bool:
    """`arg` goes to a call that saves: `save(x)`, `torch.save(x, path)`, `to_save=x`."""
    call = ctx.index.parent(arg)
    if not isinstance(call, cst.Call):
        return False
    callee = ctx.index.code(call.func).rsplit(".", 1)[-1].lower()
    keyword = arg.keyword.value.lower() if arg.keyword is not None else ""
    loads = any(
        word in a.keyword.value.lower()
        for a in call.args
        if a.keyword is not None
        for word in ("resume", "load", "restore")
    )  # `setup_checkpointing(to_save=x, resume_from=path)` may load into x as well
    return ("save" in callee or "save" in keyword) and not loads and "load" not in callee


def _saved_only(ctx: FileContext, ref: cst.Name, holder: str | None) -> bool:
    """The collection holding `ref` only ever reaches calls that save: written inline as
    such a call's argument, or bound once to a name that nothing reads but such calls."""
    node = _collection(ctx, ref)
    if node is None:
        return False
    parent = ctx.index.parent(node)
    if isinstance(parent, cst.Arg):
        return _saves(ctx, parent)
    if holder is None:
        return False
    names = [n for n in ctx.index.within(ctx.module, cst.Name) if n.value == holder]
    bound = [n for n in names if isinstance(ctx.index.parent(n), cst.AssignTarget)]
    reads = [n for n in names if n not in bound]
    return (
        len(bound) == 1
        and bool(reads)
        and all(isinstance(ctx.index.parent(n), cst.Arg) for n in reads)
        and all(_saves(ctx, ctx.index.parent(n)) for n in reads)
    )


def _loaded(ctx: FileContext, name: str) -> bool:
    """Some call whose name speaks of loading is handed `name` (`load_objects(to_load=x)`)."""
    for call in ctx.index.within(ctx.module, cst.Call):
        callee = (ctx.index.code(call.func).rsplit(".", 1)[-1]).lower()
        if "load" in callee and any(m.matches(a.value, m.Name(name)) for a in call.args):
            return True
    return False


def load_converting(ctx: FileContext, group: object, call: cst.Call, access: str) -> str:
    """Make `call` (one positional argument: a state) `<access>.load_state_dict(<state>)`,
    converting apex's `{"loss_scaler0": ...}` inline. Returns why it could not ("" if done)."""
    value = call.args[0].value
    state = ctx.index.code(value)
    stmt = ctx.index.statement_of(call)
    width = ctx.index.indent_width(stmt)
    if not _repeatable(value):
        if not _runs_with_statement(ctx.index, call, value, stmt):
            return (
                "its argument runs only under a condition here, or after other code of its "
                "statement; load the state into a variable first"
            )
        state = _free_name(ctx)
        ctx.tx.edits.insert_before(
            group, stmt, ctx.gen.stmt(f"{state} = {ctx.index.code(value)}", width)
        )
    q = ctx.gen.lit
    first = f"{state}[{q('loss_scaler0')}]"
    converted = (
        f"{{**{access}.state_dict(), {q('scale')}: {first}[{q('loss_scale')}], "
        f"{q('_growth_tracker')}: {first}[{q('unskipped')}]}} "
        f"if {q('loss_scaler0')} in {state} else {state} or {access}.state_dict()"
    )
    new = cst.parse_expression(f"{access}.load_state_dict({converted})")
    ctx.tx.edits.replace_node(group, call, lambda _u: new)
    ctx.tx.edits.replace_statement(group, stmt, lambda u: [ctx.gen.relayout(u, width)])
    return ""


def _repeatable(node: cst.BaseExpression) -> bool:
    """Cheap and free of effects to evaluate three times: names, attributes, subscripts."""
    if isinstance(node, cst.Name):
        return True
    if isinstance(node, cst.Attribute):
        return _repeatable(node.value)
    if isinstance(node, cst.Subscript):
        return _repeatable(node.value) and all(
            isinstance(e.slice, cst.Index)
            and isinstance(e.slice.value, (cst.SimpleString, cst.Integer, cst.Name))
            for e in node.slice
        )
    return False


def _runs_with_statement(
    index: TreeIndex, call: cst.Call, value: cst.BaseExpression, stmt: cst.CSTNode
) -> bool:
    """The call is evaluated once each time `stmt` runs, before anything the statement
    binds: only then does its argument, hoisted into a line before `stmt`, run as often
    as it did (not under an `if ... else`, after an `and`/`or`, in an `elif`/`while` test,
    a lambda or a comprehension)."""
    child: cst.CSTNode = call
    for parent in index.ancestors(call):
        if parent is stmt:
            break
        if isinstance(parent, (cst.Lambda, *COMPREHENSIONS)):
            return False
        if isinstance(parent, cst.IfExp) and child is not parent.test:
            return False
        if isinstance(parent, cst.BooleanOperation) and child is not parent.left:
            return False
        if isinstance(parent, cst.Comparison) and child not in (
            parent.left,
            parent.comparisons[0],
        ):
            return False  # `a < b < c` evaluates `c` only when `a < b`
        if isinstance(parent, cst.Assert) and child is not parent.test:
            return False
        if isinstance(parent, (cst.BaseCompoundStatement, cst.BaseSuite)):
            return False  # an `elif` test, an inner block
        child = parent
    if isinstance(stmt, cst.SimpleStatementLine):
        head = stmt.body[0]  # `x = ...; amp.load_state_dict(f(x))` reads x first
    elif isinstance(stmt, cst.If):
        head = stmt.test
    elif isinstance(stmt, cst.For):
        head = stmt.iter
    elif isinstance(stmt, cst.BaseSmallStatement):  # in a one-line suite
        head = child = stmt
    else:
        return False  # a `while` test runs on every pass, a decorator at definition...
    if child is not head:
        return False
    return all(index.contains(value, named) for named in index.within(head, cst.NamedExpr))


def _free_name(ctx: FileContext) -> str:
    """`amp_state`, or `amp_state_2`... when the file already uses that name."""
    taken = {n.value for n in ctx.index.within(ctx.module, cst.Name)}
    name, n = "amp_state", 2
    while name in taken:
        name, n = f"amp_state_{n}", n + 1
    return name


def _apex_key(node: cst.BaseExpression) -> bool:
    if not isinstance(node, cst.SimpleString):
        return False
    key = node.evaluated_value
    return isinstance(key, str) and (key in APEX_KEYS or key.startswith(APEX_KEY_PREFIX))


def _apex_layout_read(ctx: FileContext, call: cst.Call) -> cst.CSTNode | None:
    """Code around an amp state site that reads apex's layout of the state: the call's
    result used directly (`amp.state_dict()["loss_scaler0"]`), or a subscript with apex's
    keys in the same function (or module): after the rewrite it would read GradScaler's."""
    index = ctx.index
    parent = index.parent(call)
    if isinstance(parent, (cst.Subscript, cst.Attribute)) and parent.value is call:
        return parent
    for sub in index.within(index.scope_of(call), cst.Subscript):
        keyed = any(isinstance(e.slice, cst.Index) and _apex_key(e.slice.value) for e in sub.slice)
        if keyed and not _own_conversion(index, sub):
            return sub
    for sub in index.within(index.module, cst.Subscript):
        # another function of the file that reads a saved state by apex's own key
        # (`ckpt["amp"]["loss_scaler0"]`) would read the scaler's state after the rewrite
        keyed = any(
            isinstance(e.slice, cst.Index)
            and _apex_key(e.slice.value)
            and e.slice.value.evaluated_value.startswith(APEX_KEY_PREFIX)  # type: ignore[attr-defined]
            for e in sub.slice
        )
        if keyed and not _own_conversion(index, sub):
            return sub
    return None


def _own_conversion(index: TreeIndex, node: cst.CSTNode) -> bool:
    """Inside the loader this rule writes (`... if "loss_scaler0" in state else ...`)."""
    for anc in index.ancestors(node):
        if m.matches(anc, OWN_LOADER) and _apex_key(anc.test.left):
            return True
        if isinstance(anc, (cst.BaseStatement, cst.BaseSmallStatement)):
            return False
    return False
