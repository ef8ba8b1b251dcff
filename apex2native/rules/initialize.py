"""A2N102: `amp.initialize(...)` becomes the creation of one `torch.amp.GradScaler`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext, Scaler, conjuncts
from apex2native.findings import NUMERICS, SAFE
from apex2native.index import descendants
from apex2native.rules.base import Rule

PARAMS = (
    "models",
    "optimizers",
    "enabled",
    "opt_level",
    "cast_model_type",
    "patch_torch_functions",
    "keep_batchnorm_fp32",
    "master_weights",
    "loss_scale",
    "cast_model_outputs",
    "num_losses",
    "verbosity",
    "min_loss_scale",
    "max_loss_scale",
)
NUMERIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
SCALER_NAMES = ("scaler", "grad_scaler", "amp_scaler")


@dataclass
class InitCall:
    """The bound arguments of one `amp.initialize` call."""

    args: dict[str, cst.BaseExpression] = field(default_factory=dict)
    problem: str | None = None

    @classmethod
    def bind(cls, call: cst.Call) -> InitCall:
        bound = cls()
        for i, arg in enumerate(call.args):
            if arg.star:
                bound.problem = f"`{arg.star}` arguments hide the amp options"
                return bound
            if arg.keyword is None:
                bound.args[PARAMS[i]] = arg.value
            else:
                bound.args[arg.keyword.value] = arg.value
        if "models" not in bound.args:
            bound.problem = "no models argument"
        return bound

    def literal(self, name: str) -> object:
        """The Python value of a literal argument, `...` when it is not a literal."""
        node = self.args.get(name)
        if node is None:
            return None
        if isinstance(node, cst.SimpleString):
            return node.evaluated_value
        if isinstance(node, (cst.Integer, cst.Float)):
            return float(node.evaluated_value)
        if m.matches(node, m.Name("True") | m.Name("False") | m.Name("None")):
            return {"True": True, "False": False, "None": None}[node.value]  # type: ignore[attr-defined]
        return ...


def no_optimizers(node: cst.BaseExpression | None) -> bool:
    return node is None or m.matches(
        node, m.Name("None") | m.List(elements=[]) | m.Tuple(elements=[])
    )


def pair_targets(target: cst.BaseExpression, value: cst.BaseExpression, out: list) -> None:
    """Match assignment targets to the expressions apex handed back unchanged."""
    if isinstance(target, (cst.Tuple, cst.List)) and isinstance(value, (cst.Tuple, cst.List)):
        if len(target.elements) == len(value.elements) and not any(
            isinstance(e, cst.StarredElement) for e in (*target.elements, *value.elements)
        ):
            for t, v in zip(target.elements, value.elements):
                pair_targets(t.value, v.value, out)
            return
    out.append((target, value))


def condition_code(ctx: FileContext, node: cst.BaseExpression) -> str:
    """Condition code as written, parenthesised when it would not bind inside `and`."""
    code = ctx.code(node)
    loose = isinstance(node, (cst.IfExp, cst.Lambda, cst.NamedExpr)) or (
        isinstance(node, cst.BooleanOperation) and isinstance(node.operator, cst.Or)
    )
    return f"({code})" if loose and not node.lpar else code


def normalize(code: str) -> str:
    code = re.sub(r"\s+", "", code)
    code = code.replace("'", '"')
    while code.startswith("(") and code.endswith(")"):
        code = code[1:-1]
    m_bool = re.fullmatch(r"bool\((.*)\)", code)
    return m_bool.group(1) if m_bool else code


class Initialize(Rule):
    """`amp.initialize` becomes one `torch.amp.GradScaler("cuda", ...)`.

    Before:
        model, optimizer = amp.initialize(model, optimizer, opt_level=args.opt_level)
    After:
        scaler = torch.amp.GradScaler("cuda", enabled=args.opt_level != "O0")

    The model and optimizer are no longer rebound (apex returned the same objects). A literal
    opt level decides the options; a runtime one becomes `enabled=<level> != "O0"` so an O0
    run stays pure fp32. A guard (`if args.fp16:`) becomes part of `enabled=` and the scaler
    is created unconditionally, so every later use is safe. O2/O3, static loss scales,
    `min/max_loss_scale` and `num_losses` have no exact native form: the closest is written
    and the numeric consequence reported.
    """

    code = "A2N102"
    name = "initialize"
    tier = NUMERICS
    summary = "amp.initialize -> torch.amp.GradScaler"

    def apply(self, ctx: FileContext) -> None:
        for call in ctx.calls_to("apex.amp.initialize"):
            self._site(ctx, call)

    def _site(self, ctx: FileContext, call: cst.Call) -> None:
        stmt = ctx.statement_of(call)
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) else stmt
        if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) != 1:
            return ctx.todo(call, self.code, "amp.initialize shares its line; split it first")
        if isinstance(small, cst.Assign) and small.value is call and len(small.targets) == 1:
            target = small.targets[0].target
        elif isinstance(small, cst.Expr) and small.value is call:
            target = None
        else:
            return ctx.todo(
                call,
                self.code,
                "amp.initialize result is used in an expression; create a "
                "torch.amp.GradScaler here and pass it to the training step",
            )
        bound = InitCall.bind(call)
        if bound.problem:
            return ctx.todo(
                call, self.code, f"amp.initialize: {bound.problem}; create the GradScaler by hand"
            )

        models = bound.args["models"]
        optimizers = bound.args.get("optimizers")
        returned = (
            models
            if no_optimizers(optimizers)
            else cst.Tuple([cst.Element(models), cst.Element(optimizers)])  # type: ignore[arg-type]
        )
        pairs: list = []
        if target is not None:
            pair_targets(target, returned, pairs)
        keep = [(t, v) for t, v in pairs if ctx.code(t) != ctx.code(v)]
        rebind = self._rebind(ctx, keep, stmt)

        group = object()
        if no_optimizers(optimizers):
            ctx.edits.replace_statement(group, stmt, lambda _u: rebind)
            ctx.handle(group, call.func)
            ctx.note(group, call, self.code, "amp.initialize without optimizers removed", SAFE)
            ctx.todo(
                call,
                self.code,
                f"inference only: run this model's forward passes under {ctx.autocast_hint()}",
            )
            return

        opt_codes = self._optimizer_codes(ctx, optimizers, pairs)
        guards, outer = self._guards(ctx, stmt, call)
        scaler = self._scaler(ctx, call, opt_codes)
        scaler.models = self._model_codes(ctx, models, pairs)
        group = scaler.group
        kwargs, messages = self._options(ctx, bound, scaler, guards)
        if kwargs is None:
            return ctx.todo(call, self.code, messages[0])

        creation = ctx.gen.stmt(
            f"{scaler.access} = {ctx.gen.grad_scaler(ctx.options.device_type, kwargs)}",
            ctx.indent_width(outer),
        )
        ctx.needs_torch = True
        ctx.scalers.append(scaler)
        ctx.handle(group, call.func)
        if outer is stmt:
            ctx.edits.replace_statement(group, stmt, lambda _u: [creation, *rebind])
        else:
            ctx.edits.insert_before(group, outer, creation)
            ctx.edits.replace_statement(group, stmt, lambda _u: rebind)
            ctx.edits.replace_statement(group, outer, _drop_if_empty)
        where = "self attribute" if scaler.access.startswith("self.") else "local"
        ctx.note(group, call, self.code, f"amp.initialize -> {scaler.access} ({where})", SAFE)
        for text, tier in messages:
            ctx.note(group, call, self.code, text, tier)

    def _rebind(self, ctx: FileContext, keep: list, stmt: cst.CSTNode) -> list[cst.BaseStatement]:
        if not keep:
            return []
        if len(keep) == 1:
            code = f"{ctx.code(keep[0][0])} = {ctx.code(keep[0][1])}"
        else:
            code = (
                ", ".join(ctx.code(t) for t, _ in keep)
                + " = "
                + ", ".join(ctx.code(v) for _, v in keep)
            )
        return [ctx.gen.stmt(code, ctx.indent_width(stmt))]

    def _model_codes(self, ctx: FileContext, models, pairs) -> tuple[str, ...]:
        """Names the initialized models are known by after the call."""
        nodes = (
            [e.value for e in models.elements]
            if isinstance(models, (cst.List, cst.Tuple))
            else [models]
        )
        codes = {ctx.code(n) for n in nodes}
        codes |= {ctx.code(t) for t, v in pairs if ctx.code(v) in codes}
        return tuple(sorted(codes))

    def _optimizer_codes(self, ctx: FileContext, optimizers, pairs) -> set[str]:
        if isinstance(optimizers, (cst.List, cst.Tuple)):
            nodes = [e.value for e in optimizers.elements]
        else:
            nodes = [optimizers]
        opt_nodes = {ctx.code(n) for n in nodes}
        codes = set(opt_nodes)
        for t, v in pairs:
            if ctx.code(v) in opt_nodes or ctx.code(v) == ctx.code(optimizers):
                codes.add(ctx.code(t))
        return codes

    def _guards(
        self, ctx: FileContext, stmt: cst.CSTNode, call: cst.Call
    ) -> tuple[list[str], cst.CSTNode]:
        """Conditions of the `if` statements that hold the call, and the outermost of them."""
        guards: list[str] = []
        outer = stmt
        node = stmt
        reads = {n.value for arg in call.args for n in _names(arg)}
        while True:
            block = ctx.parent(node)
            parent = ctx.parent(block) if block is not None else None
            if not isinstance(parent, cst.If) or block is not parent.body:
                break
            if not _pure(parent.test) or _in_orelse(ctx, parent):
                break
            earlier = parent.body.body[: list(parent.body.body).index(node)]
            if any(n.value in reads for s in earlier for n in _bound_names(s)):
                break  # the scaler would move above the assignment of a name it reads
            kept = [c for c in conjuncts(parent.test) if not ctx.is_availability_test(c)]
            guards[:0] = [condition_code(ctx, c) for c in kept]
            reads |= {n.value for n in _names(parent.test)}
            outer = node = parent
        return guards, outer

    def _scaler(self, ctx: FileContext, call: cst.Call, opt_codes: set[str]) -> Scaler:
        scope = ctx.scope_of(call)
        home: cst.CSTNode = scope
        self_name = None
        if isinstance(scope, cst.FunctionDef) and scope.params.params:
            cls = ctx.enclosing_class(scope)
            first = scope.params.params[0].name.value
            if cls is not None and first == "self":
                self_name = first
                home = cls
        for other in ctx.scalers:
            if other.home is home and other.optimizers & opt_codes:
                return Scaler(other.access, home, opt_codes, line=ctx.line(call), init_call=call)
        taken = {s.access for s in ctx.scalers if s.home is home}
        if self_name is not None:
            attrs = {
                n.attr.value
                for n in descendants(home)
                if m.matches(n, m.Attribute(value=m.Name(self_name)))
            }
            names = [n for n in SCALER_NAMES if n not in attrs]
            base = f"{self_name}.{(names or ['amp_grad_scaler'])[0]}"
        else:
            used = {n.value for n in _names(ctx.module)}
            names = [n for n in SCALER_NAMES if n not in used]
            base = (names or ["amp_grad_scaler"])[0]
        access, n = base, 2
        while access in taken:
            access, n = f"{base}_{n}", n + 1
        return Scaler(access, home, opt_codes, line=ctx.line(call), init_call=call)

    def _options(self, ctx: FileContext, bound: InitCall, scaler: Scaler, guards: list[str]):
        """GradScaler keyword arguments and the report lines, or (None, [why]) to give up."""
        q = ctx.gen.lit
        kwargs: list[tuple[str, str]] = []
        messages: list[tuple[str, str]] = []
        parts = list(guards)
        scaling = True
        autocast_on: bool | None = True  # None: decided at run time

        level = bound.literal("opt_level")
        if "opt_level" not in bound.args:
            level = "O1"
        if level is ...:
            expr = ctx.code(bound.args["opt_level"])
            scaler.level_hints = (expr.rsplit(".", 1)[-1],)
            parts.append(f"{expr} != {q('O0')}")
            autocast_on = None
            messages.append(
                (f"runtime opt level `{expr}`: O2/O3 run as autocast with fp32 weights", NUMERICS)
            )
        elif level not in ("O0", "O1", "O2", "O3"):
            return None, [f"unknown opt_level {level!r}; create the GradScaler by hand"]
        elif level == "O0":
            scaling, autocast_on = False, False
        elif level in ("O2", "O3"):
            messages.append(
                (
                    f"{level}: native AMP keeps fp32 weights under autocast; apex ran "
                    + ("fp16 weights with fp32 master copies" if level == "O2" else "pure fp16")
                    + " (numbers and memory differ)",
                    NUMERICS,
                )
            )
            if level == "O3":
                scaling = False

        enabled = bound.literal("enabled")
        if enabled is False:
            scaling, autocast_on = False, False
        elif enabled is ...:
            parts.append(condition_code(ctx, bound.args["enabled"]))
            autocast_on = None if autocast_on is not False else False

        loss_scale = bound.literal("loss_scale")
        if isinstance(loss_scale, str) and loss_scale != "dynamic":
            if not NUMERIC.match(loss_scale.strip()):
                return None, [f"loss_scale={loss_scale!r} is not a number"]
            loss_scale = float(loss_scale)
        if loss_scale is ...:
            return None, [
                f"loss_scale={ctx.code(bound.args['loss_scale'])} is decided at run time "
                "(dynamic or static); create the GradScaler by hand"
            ]
        if isinstance(loss_scale, float):
            if loss_scale == 1.0:
                scaling = False
            else:
                scaling = True
                kwargs.append(("init_scale", repr(loss_scale)))
                scaler.update_args = f"new_scale={loss_scale!r}"
                messages.append(
                    (
                        f"static loss_scale {loss_scale!r}: GradScaler skips steps with inf/NaN "
                        "gradients, apex's static scale applied them",
                        NUMERICS,
                    )
                )

        num_losses = bound.literal("num_losses")
        if num_losses is ... or (isinstance(num_losses, float) and num_losses > 1):
            messages.append(
                (
                    "num_losses: one GradScaler serves every loss; apex kept one scale per loss",
                    NUMERICS,
                )
            )
        if (
            bound.args.get("min_loss_scale") is not None
            and bound.literal("min_loss_scale") is not None
        ):
            messages.append(
                (
                    f"min_loss_scale={ctx.code(bound.args['min_loss_scale'])}: GradScaler has no floor",
                    NUMERICS,
                )
            )
        if bound.args.get("max_loss_scale") is not None:
            messages.append(
                (
                    f"max_loss_scale={ctx.code(bound.args['max_loss_scale'])}: GradScaler has no cap",
                    NUMERICS,
                )
            )
        if "cast_model_outputs" in bound.args and bound.literal("cast_model_outputs") is not None:
            messages.append(
                (
                    "cast_model_outputs: outputs are no longer cast; compute the loss under autocast",
                    NUMERICS,
                )
            )
        if "cast_model_type" in bound.args and bound.literal("cast_model_type") is not None:
            messages.append(("cast_model_type: the model keeps fp32 weights", NUMERICS))

        if not scaling:
            kwargs.insert(0, ("enabled", "False"))
        elif parts:
            kwargs.insert(0, ("enabled", " and ".join(parts)))
        scaler.conditions = {normalize(p) for p in parts}
        if len(parts) > 1:
            scaler.conditions.add(normalize(" and ".join(parts)))
        if autocast_on is False:
            scaler.autocast = False
        elif autocast_on is None or (parts and scaling):
            scaler.autocast_enabled = (
                f"{scaler.access}.is_enabled()" if scaling else " and ".join(parts)
            )
        return kwargs, messages


def _pure(node: cst.BaseExpression) -> bool:
    """Side-effect free enough to evaluate once more, earlier (names, attributes, compares)."""
    return m.matches(
        node,
        m.Name()
        | m.Attribute()
        | m.Comparison()
        | m.UnaryOperation()
        | m.BooleanOperation()
        | m.Subscript()
        | m.SimpleString(),
    ) and not any(isinstance(n, cst.Call) for n in descendants(node))


def _names(node: cst.CSTNode):
    return (n for n in descendants(node) if isinstance(n, cst.Name))


def _bound_names(stmt: cst.CSTNode):
    """Names a statement binds: assignment, for and with targets, imports, defs."""
    for node in descendants(stmt):
        if isinstance(node, (cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.AsName)):
            target = node.name if isinstance(node, cst.AsName) else node.target
            yield from (n for n in descendants(target) if isinstance(n, cst.Name))
        elif isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            yield node.name
        elif isinstance(node, cst.ImportAlias):
            yield from (n for n in descendants(node.asname or node.name) if isinstance(n, cst.Name))


def _in_orelse(ctx: FileContext, node: cst.If) -> bool:
    parent = ctx.parent(node)
    return isinstance(parent, cst.If) and parent.orelse is node


def _drop_if_empty(updated: cst.If) -> list[cst.BaseStatement]:
    """An `if` whose body held only the initialize call goes away with it."""
    body = updated.body.body
    empty = all(
        isinstance(s, cst.SimpleStatementLine) and all(isinstance(x, cst.Pass) for x in s.body)
        for s in body
    )
    if empty and updated.orelse is None:
        return []
    return [updated]
