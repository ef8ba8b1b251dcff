"""A2N102: `amp.initialize(...)` becomes the creation of one `torch.amp.GradScaler`."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext, Scaler
from apex2native.facts import InitDecision
from apex2native.findings import SAFE
from apex2native.rules.base import Rule
from apex2native.syntax import MAIN_GUARD


def created_note(access: str) -> str:
    """The note of an initialize that made the scaler `access` (unused_scalers finds it)."""
    where = "self attribute" if access.startswith("self.") else "local"
    return f"amp.initialize -> {access} ({where})"


class Initialize(Rule):
    """`amp.initialize` becomes one `torch.amp.GradScaler("cuda", ...)`.

    Before:
        model, optimizer = amp.initialize(model, optimizer, opt_level=args.opt_level)
    After:
        scaler = torch.amp.GradScaler("cuda", enabled=args.opt_level != "O0")

    The model and optimizer are no longer rebound (apex returned the same objects). A literal
    opt level decides the options; a runtime one becomes `enabled=<level> != "O0"` so an O0
    run stays pure fp32. Options under which apex casts nothing (O1 with
    `patch_torch_functions=False`, O2/O3 with `cast_model_type=torch.float32`) keep the
    loss scaling alone: a GradScaler and no autocast regions. A guard (`if args.fp16:`)
    becomes part of `enabled=` and the scaler is created unconditionally, so every later
    use is safe; so is a scaler that every arm of an `if`/`elif`/`else` makes for the same
    optimizers with the same options (teachers in a list, a dict, or one model): it is made
    once, before the `if`, and the arms lose their calls. O2/O3, static loss scales,
    `min/max_loss_scale` and `num_losses` have no exact native form: the closest is written and the numeric consequence reported. What
    each call becomes is decided by the plan (`scaler_options.py`), which tells every
    other file of the migration unit too.

    A starting scale set through apex's private state right after the call
    (`amp._amp_state.loss_scalers[0]._loss_scale = 2**20`) becomes `init_scale=`, and
    its growth window (`._scale_seq_len`) `growth_interval=`. The
    pre-0.1 API, `handle = amp.init(enabled=...)` with `handle.scale_loss(loss, opt)` or
    `opt = handle.wrap_optimizer(opt)` and `opt.scale_loss(loss)`, runs as O1 and becomes the
    same scaler; a handle used any other way (several losses, handed on) keeps a TODO.
    """

    code = "A2N102"
    name = "initialize"
    tier = "numerics"
    summary = "amp.initialize -> torch.amp.GradScaler"

    def __init__(self) -> None:
        # (dotted path of the def, name, line of the initialize) of each local scaler made
        # here: one that nothing reads once every rule has written goes again
        self.created: list[tuple[str, str, int]] = []

    def apply(self, ctx: FileContext) -> None:
        ordinals: dict[str, int] = {}
        calls = [*ctx.names.calls_to("apex.amp.initialize"), *ctx.names.calls_to("apex.amp.init")]
        for call in sorted(calls, key=ctx.index.order):
            stmt = ctx.index.statement_of(call)
            func = ctx.index.enclosing_function(call)
            scope = ctx.index.qualname(func) if func is not None else ctx.facts.module
            anchor = (scope, ordinals.get(scope, 0))
            ordinals[scope] = anchor[1] + 1
            decision = ctx.facts.inits.get(anchor)
            if decision is None:
                ctx.tx.todo(
                    call, self.code, "amp.initialize: not understood; create the GradScaler by hand"
                )
            elif decision.kind == "problem":
                ctx.tx.todo(call, self.code, decision.problem or "amp.initialize not understood")
            elif decision.kind == "inference":
                self._inference(ctx, call, stmt, decision)
            else:
                self._scaler(ctx, call, stmt, decision)

    def _rebind(self, ctx: FileContext, stmt, decision: InitDecision) -> list[cst.BaseStatement]:
        if decision.rebind is None:
            return []
        return [ctx.gen.stmt(decision.rebind, ctx.index.indent_width(stmt))]

    def _inference(self, ctx: FileContext, call, stmt, decision: InitDecision) -> None:
        """No optimizer: the call goes; the forward passes get autocast (`evaluation`)."""
        rebind = self._rebind(ctx, stmt, decision)
        unit = decision.spec.unit if decision.spec else ""
        group = object()
        ctx.tx.tag(group, unit)
        ctx.tx.register_init(unit, call)
        ctx.tx.edits.replace_statement(group, stmt, lambda _u: rebind)
        ctx.tx.handle(group, call.func)
        if decision.spec is not None and decision.spec.autocast:
            what = "its forward passes below run under autocast"
        else:
            what = "apex did not cast in this configuration"
        ctx.tx.note(
            group, call, self.code, f"amp.initialize without optimizers removed: {what}", SAFE
        )
        for text, tier in decision.messages:
            ctx.tx.note(group, call, self.code, text, tier)

    def _scaler(self, ctx: FileContext, call, stmt, decision: InitDecision) -> None:
        spec = decision.spec
        assert spec is not None
        if decision.follows:
            self._follower(ctx, call, stmt, decision)
            return
        outer = self._outer(ctx, stmt, decision.outer_line)
        scaler = Scaler(
            decision.access,
            self._home(ctx, call, decision.access),
            set(decision.optimizers),
            conditions=set(spec.conditions),
            autocast_enabled=decision.autocast_enabled,
            autocast=spec.autocast,
            update_args=spec.update_args,
            init_call=call,
            unit=spec.unit,
            update_scope=ctx.index.scope_of(call) if spec.update_local else None,
            main_guard=_in_main_guard(ctx, call),
        )
        group = scaler.group
        ctx.tx.tag(group, scaler.unit)
        rebind = self._rebind(ctx, stmt, decision)
        assignment = (
            f"{scaler.access} = "
            f"{ctx.gen.grad_scaler(ctx.options.device_type, list(decision.kwargs))}"
        )
        if decision.once:
            indent = ctx.module.default_indent
            assignment = f"if {decision.once}:\n{indent}{assignment}"
        creation = ctx.gen.stmt(assignment, ctx.index.indent_width(outer))
        ctx.needs_torch = True
        ctx.add_scaler(scaler)
        ctx.unit_facts.scaler_switch[scaler.unit] = decision.autocast_enabled or ""
        ctx.tx.handle(group, call.func)
        for line in decision.preset_lines:
            preset = ctx.index.statement_at(line)
            if preset is not None:
                ctx.tx.edits.replace_statement(group, preset, lambda _u: [])
                ctx.tx.handle(group, preset)
        for line, unwrapped in decision.wraps:
            wrap = ctx.index.statement_at(line)
            if wrap is None:
                continue
            width = ctx.index.indent_width(wrap)
            kept = [ctx.gen.stmt(unwrapped, width)] if unwrapped else []
            ctx.tx.edits.replace_statement(group, wrap, lambda _u, kept=kept: kept)
            ctx.tx.handle(group, wrap)
        place_creation(ctx, group, stmt, outer, creation, rebind)
        home = scaler.home
        if isinstance(home, cst.FunctionDef) and "." not in scaler.access:
            qualname = ctx.index.qualname(home)
            module = ctx.index.module_name
            path = qualname.removeprefix(f"{module}.") if module else qualname
            self.created.append((path, scaler.access, ctx.index.line(call)))
        ctx.tx.note(group, call, self.code, created_note(scaler.access), SAFE)
        if decision.once:
            ctx.tx.note(
                group,
                call,
                self.code,
                f"the scaler is made once, under `{decision.once}`: a second pass (a resume) "
                "keeps it and its state",
                SAFE,
            )
        for text, tier in decision.messages:
            ctx.tx.note(group, call, self.code, text, tier)

    def _follower(self, ctx: FileContext, call, stmt, decision: InitDecision) -> None:
        """An arm of the `if` whose first arm made the scaler before it: the call goes."""
        unit = decision.spec.unit if decision.spec else ""
        group = object()
        ctx.tx.tag(group, unit)
        rebind = self._rebind(ctx, stmt, decision)
        block = ctx.index.parent(stmt)
        arm = ctx.index.parent(block) if block is not None else None
        if (
            isinstance(arm, cst.Else)
            and isinstance(block, cst.IndentedBlock)
            and len(block.body) == 1
            and not rebind
        ):
            ctx.tx.edits.replace_node(group, arm, lambda _u: cst.RemoveFromParent())
        else:
            ctx.tx.edits.replace_statement(group, stmt, lambda _u: rebind)
        ctx.tx.handle(group, call.func)
        ctx.tx.note(
            group,
            call,
            self.code,
            f"amp.initialize in another arm of the same `if`: {decision.access}, made before "
            "it, serves every arm",
            SAFE,
        )

    @staticmethod
    def _outer(ctx: FileContext, stmt: cst.CSTNode, line: int) -> cst.CSTNode:
        """The outermost guarding `if` the plan chose (the statement itself when unguarded)."""
        outer = stmt
        for anc in ctx.index.ancestors(stmt):
            if isinstance(anc, cst.If) and ctx.index.line(anc) == line:
                outer = anc
        return outer if line != ctx.index.line(stmt) else stmt

    @staticmethod
    def _home(ctx: FileContext, call: cst.CSTNode, access: str) -> cst.CSTNode:
        scope = ctx.index.scope_of(call)
        if access.startswith("self.") and isinstance(scope, cst.FunctionDef):
            cls = ctx.index.enclosing_class(scope)
            if cls is not None:
                return cls
        return scope


def _in_main_guard(ctx: FileContext, node: cst.CSTNode) -> bool:
    return any(m.matches(a, MAIN_GUARD) for a in ctx.index.ancestors(node))


def place_creation(
    ctx: FileContext,
    group: object,
    stmt: cst.CSTNode,
    outer: cst.CSTNode,
    creation: cst.BaseStatement,
    kept: list[cst.BaseStatement],
) -> None:
    """The scaler's creation takes the statement's place (`kept` stays after it), or goes
    before the guarding `if`, which goes too when nothing else is left in it."""
    if outer is stmt:
        ctx.tx.edits.replace_statement(group, stmt, lambda _u: [creation, *kept])
        return
    ctx.tx.edits.insert_before(group, outer, creation)
    ctx.tx.edits.replace_statement(group, stmt, lambda _u: kept)
    ctx.tx.edits.replace_statement(group, outer, drop_if_empty)


def drop_if_empty(updated: cst.If) -> list[cst.BaseStatement]:
    """An `if` whose body held only the initialize call goes away with it."""
    body = updated.body.body
    empty = all(
        isinstance(s, cst.SimpleStatementLine) and all(isinstance(x, cst.Pass) for x in s.body)
        for s in body
    )
    if empty and updated.orelse is None:
        return []
    return [updated]
