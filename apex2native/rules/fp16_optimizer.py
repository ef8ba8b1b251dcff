"""A2N117: apex's `FP16_Optimizer` over a `.half()` model becomes a fp32 model, autocast and
a GradScaler."""

from __future__ import annotations

import re

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext, Scaler
from apex2native.findings import NUMERICS, SAFE
from apex2native.index import TreeIndex
from apex2native.rules.base import Rule
from apex2native.rules.initialize import place_creation
from apex2native.rules.scale_loss import BackwardSite, ScaleLoss
from apex2native.scaler_options import DOTTED, NUMERIC, normalize
from apex2native.syntax import is_call_statement

SPELLINGS = (
    "apex.fp16_utils.FP16_Optimizer",
    "apex.fp16_utils.fp16_optimizer.FP16_Optimizer",
    "apex.optimizers.FP16_Optimizer",
    "apex.optimizers.fp16_optimizer.FP16_Optimizer",
)
PARAMS = ("init_optimizer", "static_loss_scale", "dynamic_loss_scale", "dynamic_loss_args")
USES = {"backward", "clip_master_grads", "step", "zero_grad", "state_dict", "load_state_dict"}
HALF_HELPERS = {
    f"apex.fp16_utils{module}.{name}"
    for module in ("", ".fp16util")
    for name in ("network_to_half", "BN_convert_float", "tofp16")
}
# reads of an input that do not care about its dtype
SHAPE_READS = {"size", "shape", "dim", "ndim", "numel", "device"}
HARMLESS = {"print", "len", "isinstance", "getattr", "hasattr", "id", "type", "repr", "str"}
# module methods that return the module itself (`model.eval()` hands on the model)
RETURNS_SELF = {
    "eval",
    "train",
    "cuda",
    "cpu",
    "to",
    "half",
    "float",
    "double",
    "bfloat16",
    "type",
    "requires_grad_",
    "apply",
    "zero_grad",
    "share_memory",
    "to_empty",
}
MODEL_NAME = re.compile(r"^[A-Za-z_]\w*$")
# other ways to make fp16 tensors: the fp32 model would get them outside autocast
HALF_SPELLINGS = {"torch.float16", "torch.half", "torch.HalfTensor", "torch.cuda.HalfTensor"}
# other spellings of fp16 data: `np.float16`, `from torch import float16`, and as strings
# `.type("torch.cuda.HalfTensor")`, `getattr(torch, "float16")`
HALF_NAMES = {"float16", "HalfTensor"}
HALF_STRINGS = {"float16", "half", *HALF_SPELLINGS}


class _Refused(Exception):
    """The site stays apex; the message is its TODO."""


class FP16Optimizer(Rule):
    """`FP16_Optimizer` (the manual-`.half()` recipe) becomes autocast and a GradScaler.

    Before:
        model = Net().cuda().half()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        optimizer = FP16_Optimizer(optimizer, dynamic_loss_scale=True)
        ...
        optimizer.backward(loss)
        optimizer.clip_master_grads(1.0)
        optimizer.step()
    After:
        model = Net().cuda().float()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cuda")
        ...
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(<optimizer's params>, 1.0)
        scaler.step(optimizer)
        scaler.update()

    apex kept the model in fp16 with fp32 master copies in the optimizer; natively the model
    stays fp32 and its forward runs under autocast (numerics and memory differ, as for O2).
    Each `.half()` of the model and of its inputs becomes `.float()`: without it they keep
    whatever type they had (a float64 array, uint8 images, a bool mask, a module loaded in
    fp16), and under autocast they must be fp32. The contrib `apex.optimizers.FP16_Optimizer`
    grew its dynamic scale every 1000 steps: `growth_interval=1000`. Only the wrapper's own
    methods (`backward`, `clip_master_grads`,
    `step`, `zero_grad`, and `state_dict` / `load_state_dict`, which become the plain
    optimizer's: old checkpoints go through `convert-checkpoint`) in the function that makes
    it are migrated, and `loss_scale` becomes `scaler.get_scale()`; anything else (the wrapper
    handed on, another attribute) keeps the whole site apex with a TODO.
    The fp16 model must be made in that function and stay there (a local name, not the
    caller's, not returned or yielded, stored or aliased, also inside a container or as
    `model.eval()`, nor handed to another module's function), and nothing else in the module
    may make fp16 data (another `.half()` or one with arguments, `torch.float16`, `np.float16`,
    `"torch.cuda.HalfTensor"`, apex's `tofp16`): code that fed the fp16 model fp16 data would
    fail on a fp32 one. An input made half must only feed the model, or have its size read
    (a custom op or a saved tensor that wanted fp16 keeps the site apex). Options read through the `if` that guards the
    wrapper (`cfg.fp16.loss_scale`), `clip_master_grads` results compared with apex's -1
    (also through the name they are stored in), and `loss_scale` changed in place keep the
    site apex too.
    """

    code = "A2N117"
    name = "fp16-optimizer"
    tier = NUMERICS
    summary = "FP16_Optimizer + .half() model -> fp32 model, autocast, GradScaler"

    def apply(self, ctx: FileContext) -> None:
        calls = [c for name in SPELLINGS for c in ctx.names.calls_to(name)]
        for call in sorted(calls, key=ctx.index.order):
            try:
                self._site(ctx, call)
            except _Refused as why:
                ctx.tx.todo(call, self.code, f"FP16_Optimizer: {why}; migrate it by hand")

    def _site(self, ctx: FileContext, call: cst.Call) -> None:
        index = ctx.index
        stmt = index.statement_of(call)
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) else None
        if not (
            isinstance(small, cst.Assign)
            and len(stmt.body) == 1
            and small.value is call
            and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)
        ):
            raise _Refused("its result is not assigned to one name")
        wrapper = small.targets[0].target.value
        args = _bind(call)
        if args is None or "init_optimizer" not in args:
            raise _Refused("arguments not understood")
        if "dynamic_loss_args" in args and index.code(args["dynamic_loss_args"]) != "None":
            raise _Refused("dynamic_loss_args has no GradScaler spelling here")
        inner = args["init_optimizer"]
        if not isinstance(inner, (cst.Name, cst.Call)):
            raise _Refused("the wrapped optimizer is not a name or a constructor call")
        scope = index.scope_of(call)
        outer, condition = _guard(ctx, stmt)
        for anc in index.ancestors(outer):
            if anc is scope:
                break
            if isinstance(anc, (cst.If, cst.For, cst.While, cst.Try, cst.With)):
                raise _Refused(
                    "made inside another block; the scaler must exist wherever the optimizer "
                    "is used"
                )
        uses = self._uses(ctx, scope, stmt, wrapper)
        if not uses["backward"]:
            raise _Refused(f"no `{wrapper}.backward(loss)` in this function")
        model = _model(ctx, scope, stmt, inner)
        _owned(ctx, scope, model)
        halves, data = _halves(ctx, scope, model)
        access = _free_name(ctx, scope)
        kwargs, update, scaling = _options(ctx, args)
        if condition is not None and any(
            index.code(v).startswith(f"{condition}.") for v in args.values()
        ):
            raise _Refused(f"its options are read through `{condition}`, which may be unset")
        contrib = (ctx.names.call_name(call) or "").startswith("apex.optimizers.")
        if contrib and scaling:
            kwargs.append(("growth_interval", "1000"))  # the contrib class's scale_window
        if condition is not None and scaling:
            kwargs.insert(0, ("enabled", f"bool({condition})"))
            # the options were read only where the wrapper was made: a run without it
            # (`--loss-scale` left None) must not evaluate them
            kwargs = [
                (
                    (k, f"({v}) if {condition} else 2.0**16")
                    if k == "init_scale" and not NUMERIC.match(v)
                    else (k, v)
                )
                for k, v in kwargs
            ]
            if update and not NUMERIC.match(update.split("=", 1)[1]):
                key, value = update.split("=", 1)
                update = f"{key}=({value}) if {condition} else None"
        unit = f"{ctx.facts.module or '<module>'}:FP16_Optimizer:{index.line(stmt)}"
        scaler = Scaler(
            access,
            scope,
            {wrapper},
            conditions={normalize(condition)} if condition else set(),
            autocast_enabled=(
                (f"{access}.is_enabled()" if scaling else condition) if condition else None
            ),
            update_args=update,
            init_call=call,
            unit=unit,
            update_scope=scope if update and not NUMERIC.match(update.split("=", 1)[1]) else None,
        )
        group = scaler.group
        ctx.tx.tag(group, unit)
        ctx.add_scaler(scaler)
        ctx.needs_torch = True
        ctx.tx.handle(group, call.func)
        creation = ctx.gen.stmt(
            f"{access} = {ctx.gen.grad_scaler(ctx.options.device_type, kwargs)}",
            index.indent_width(outer),
        )
        inner_code = index.code(inner)
        rebind = [] if wrapper == inner_code else [f"{wrapper} = {inner_code}"]
        kept = [ctx.gen.stmt(r, index.indent_width(stmt)) for r in rebind]
        place_creation(ctx, group, stmt, outer, creation, kept)
        for half in halves:
            self._unhalf(ctx, group, half, model)
        for half in data:
            self._unhalf(ctx, group, half, "the model's input")
        for clip in uses["clip_master_grads"]:
            self._clip(ctx, group, clip, wrapper)
        for backward in uses["backward"]:
            self._backward(ctx, scaler, backward)
        ctx.tx.note(
            group,
            call,
            self.code,
            f"FP16_Optimizer -> {access}; the model stays fp32 under autocast, where apex kept "
            "fp16 weights with fp32 master copies (numbers and memory differ)",
            NUMERICS,
        )
        if contrib and scaling:
            ctx.tx.note(
                group,
                call,
                self.code,
                "apex.optimizers.FP16_Optimizer grew its scale every 1000 good steps "
                "(growth_interval=1000) and never let it fall below 1; GradScaler has no floor",
                NUMERICS,
            )
        if update:
            ctx.tx.note(
                group,
                call,
                self.code,
                "a static loss scale: GradScaler skips steps with inf/NaN gradients, which "
                "FP16_Optimizer's static scale applied",
                NUMERICS,
            )
        for read in uses["loss_scale"]:
            ctx.tx.edits.replace_node(
                group, read, lambda _u: cst.parse_expression(f"{access}.get_scale()")
            )
        for saved in [*uses["state_dict"], *uses["load_state_dict"]]:
            ctx.tx.note(
                group,
                saved,
                self.code,
                f"`{index.code(saved.func)}` is the plain optimizer's state now: checkpoints "
                "saved before need `apex2native convert-checkpoint --unsafe-load`, and the loss "
                "scale is not saved (a resume starts from the scaler's initial scale)",
                NUMERICS,
            )

    def _uses(
        self, ctx: FileContext, scope: cst.CSTNode, stmt: cst.CSTNode, wrapper: str
    ) -> dict[str, list[cst.Call]]:
        """The wrapper's method calls after it is made; any other use refuses the site."""
        index = ctx.index
        out: dict[str, list] = {name: [] for name in (*USES, "loss_scale")}
        for name in _later_reads(index, scope, stmt, wrapper):
            if index.scope_of(name) is not scope:
                raise _Refused(f"`{wrapper}` is used inside a nested function or class")
            attr = index.parent(name)
            call = index.parent(attr)
            if not (isinstance(attr, cst.Attribute) and attr.value is name):
                raise _Refused(f"`{wrapper}` is used as a value (handed on, stored)")
            if (
                isinstance(attr, cst.Attribute)
                and attr.attr.value == "loss_scale"
                and not (isinstance(call, cst.Call) and call.func is attr)
                and not isinstance(call, cst.AssignTarget)
                and not (isinstance(call, (cst.AugAssign, cst.Del)) and call.target is attr)
            ):
                out["loss_scale"].append(attr)  # the current scale, a property
                continue
            if not (
                isinstance(attr, cst.Attribute)
                and attr.attr.value in USES
                and isinstance(call, cst.Call)
                and call.func is attr
            ):
                raise _Refused(f"`{index.code(attr)}` has no native spelling here")
            method = attr.attr.value
            shape = {
                "backward": 1,
                "clip_master_grads": None,
                "step": 0,
                "zero_grad": 0,
                "state_dict": 0,
                "load_state_dict": 1,
            }[method]
            if shape is not None and (
                len(call.args) != shape or any(a.keyword or a.star for a in call.args)
            ):
                raise _Refused(f"`{index.code(call)}` arguments not understood")
            if method not in ("clip_master_grads", "state_dict") and not is_call_statement(
                ctx.index.statement_of(call), call
            ):
                raise _Refused(f"`{index.code(call)}` is used as a value")
            if method == "clip_master_grads" and _compared(ctx, scope, call):
                raise _Refused(f"`{index.code(call)}` is compared: -1 on overflow is apex's")
            out[method].append(call)
        for assign in index.within(scope, cst.AssignTarget):
            target = assign.target
            if (
                isinstance(target, cst.Name)
                and target.value == wrapper
                and index.order(target) > index.order(stmt)
                and not index.contains(stmt, target)
            ):
                raise _Refused(f"`{wrapper}` is assigned again")
        return out

    def _unhalf(self, ctx: FileContext, group: object, half: cst.Call, what: str) -> None:
        """`.half()` becomes `.float()`, not nothing: what it converted need not be fp32
        without it (a float64 array, uint8 images, a bool mask, a module loaded in fp16),
        and the model and its inputs must be fp32 under autocast."""
        ctx.tx.edits.replace_node(
            group,
            half,
            lambda u: u.with_changes(func=u.func.with_changes(attr=cst.Name("float"))),
        )
        ctx.tx.note(group, half, self.code, f"`.half()` of {what} -> `.float()`", SAFE)

    def _clip(self, ctx: FileContext, group: object, call: cst.Call, wrapper: str) -> None:
        """`opt.clip_master_grads(n)` clips the optimizer's (now fp32) parameters."""
        params = f'(p for group in {wrapper}.param_groups for p in group["params"])'
        args = ", ".join(
            (f"{a.keyword.value}=" if a.keyword else "") + a.star + ctx.index.code(a.value)
            for a in call.args
        )
        new = cst.parse_expression(f"torch.nn.utils.clip_grad_norm_({params}, {args})")
        ctx.tx.edits.replace_node(group, call, lambda _u: new)
        stmt = ctx.index.statement_of(call)
        width = ctx.index.indent_width(stmt)
        ctx.tx.edits.replace_statement(group, stmt, lambda u: [ctx.gen.relayout(u, width)])
        ctx.tx.note(
            group,
            call,
            self.code,
            f"clip_master_grads -> clip_grad_norm_ of {wrapper}'s parameters (an overflow now "
            "returns inf instead of -1, and the step is skipped)",
            SAFE,
        )

    def _backward(self, ctx: FileContext, scaler: Scaler, call: cst.Call) -> None:
        """`opt.backward(loss)` is the scaled backward the step, unscale and autocast rules
        extend."""
        index = ctx.index
        stmt = index.statement_of(call)
        loss = call.args[0].value
        site = BackwardSite(stmt, call, loss, sorted(scaler.optimizers), scaler, stmt)
        ctx.depend(scaler, site.group)
        scaled = ctx.gen.stmt(
            f"{scaler.access}.scale({index.code(loss)}).backward()", index.indent_width(stmt)
        )
        ctx.tx.edits.replace_statement(site.group, stmt, lambda _u: [scaled])
        if not ScaleLoss().collapse_branch(ctx, site):
            return
        ctx.tx.handle(site.group, call.func)
        ctx.sites.append(site)
        ctx.tx.note(
            site.group, call, self.code, f"backward -> {scaler.access}.scale(loss).backward()", SAFE
        )


def _bind(call: cst.Call) -> dict[str, cst.BaseExpression] | None:
    out: dict[str, cst.BaseExpression] = {}
    for i, arg in enumerate(call.args):
        if arg.star or (arg.keyword is None and i >= len(PARAMS)):
            return None
        name = arg.keyword.value if arg.keyword else PARAMS[i]
        if name == "verbose":
            continue
        if name not in PARAMS:
            return None
        out[name] = arg.value
    return out


def _guard(ctx: FileContext, stmt: cst.CSTNode) -> tuple[cst.CSTNode, str | None]:
    """The `if` directly holding the site (no else), and its condition; else the statement."""
    block = ctx.index.parent(stmt)
    branch = ctx.index.parent(block)
    if not (isinstance(branch, cst.If) and branch.body is block):
        return stmt, None
    if branch.orelse is not None:
        raise _Refused("made in one arm of an if/else")
    test = ctx.index.code(branch.test)
    if ctx.index.within(branch.test, cst.Call):
        raise _Refused(f"made under `{test}`, which calls a function")
    return branch, test


def _later_reads(
    index: TreeIndex, scope: cst.CSTNode, stmt: cst.CSTNode, name: str
) -> list[cst.Name]:
    """Reads of `name` in `scope` after the statement `stmt` (not inside it)."""
    return [
        read
        for read in index.reads.get(name, [])
        if index.contains(scope, read)
        and index.order(read) > index.order(stmt)
        and not index.contains(stmt, read)
    ]


def _compared(ctx: FileContext, scope: cst.CSTNode, call: cst.Call) -> bool:
    """The call's result is compared, directly or through the name it is assigned to."""
    index = ctx.index
    parent = index.parent(call)
    if isinstance(parent, (cst.Comparison, cst.ComparisonTarget)):
        return True
    if not (isinstance(parent, cst.Assign) and len(parent.targets) == 1):
        return False
    target = parent.targets[0].target
    if not isinstance(target, cst.Name):
        return True  # stored somewhere the reads cannot be followed
    return any(  # anywhere in the function: a loop compares the previous step's norm too
        index.contains(scope, read)
        and isinstance(index.parent(read), (cst.Comparison, cst.ComparisonTarget))
        for read in index.reads.get(target.value, [])
    )


def _only_model_input(
    ctx: FileContext, scope: cst.CSTNode, stmt: cst.CSTNode, name: str, model_calls: list
) -> bool:
    """Every later read of `name` in the function is an argument of a model call."""
    index = ctx.index
    for read in _later_reads(index, scope, stmt, name):
        arg = index.parent(read)
        if isinstance(arg, cst.Attribute) and arg.attr.value in SHAPE_READS:
            continue  # `x.size(0)`, `x.shape`: the same under either dtype
        if isinstance(arg, cst.Arg) and m.matches(index.parent(arg), m.Call(func=m.Name("len"))):
            continue
        if not (isinstance(arg, cst.Arg) and index.parent(arg) in model_calls):
            return False
    return True


def _model(
    ctx: FileContext, scope: cst.CSTNode, stmt: cst.CSTNode, inner: cst.BaseExpression
) -> str:
    """The model whose parameters the wrapped optimizer was made over (`model` in
    `optimizer = torch.optim.SGD(model.parameters(), ...)`, in this function, or in the
    constructor call handed to FP16_Optimizer itself)."""
    index = ctx.index
    if isinstance(inner, cst.Call):
        return _parameters_of(index, inner, index.code(inner.func))
    optimizer = inner.value  # type: ignore[attr-defined]
    made = [
        a
        for a in index.within(scope, cst.Assign)
        if index.scope_of(a) is scope
        and index.order(a) < index.order(stmt)
        and len(a.targets) == 1
        and isinstance(a.targets[0].target, cst.Name)
        and a.targets[0].target.value == optimizer
        and isinstance(a.value, cst.Call)
    ]
    if not made:
        raise _Refused(f"`{optimizer}` is not made in this function")
    return _parameters_of(index, made[-1].value, optimizer)  # type: ignore[arg-type]


def _parameters_of(index, ctor: cst.Call, optimizer: str) -> str:
    first = ctor.args[0].value if ctor.args else None
    if not (
        isinstance(first, cst.Call)
        and isinstance(first.func, cst.Attribute)
        and first.func.attr.value == "parameters"
        and not first.args
    ):
        raise _Refused(f"cannot tell which model `{optimizer}` steps")
    return index.code(first.func.value)


def _owned(ctx: FileContext, scope: cst.CSTNode, model: str) -> None:
    """The fp16 model must not be seen by code outside this module, which may feed it fp16
    data the fp32 model would reject: not a parameter (the caller's object was made half in
    place), not returned, not handed to a function of another module."""
    index = ctx.index
    if isinstance(scope, cst.FunctionDef):
        params = scope.params
        names = {p.name.value for p in (*params.posonly_params, *params.params)}
        names |= {p.name.value for p in params.kwonly_params}
        if model in names:
            raise _Refused(f"`{model}` comes from the caller, which keeps a fp16 model")
    if not MODEL_NAME.match(model):
        raise _Refused(f"`{model}` is an attribute: other methods and modules can reach it")
    local = {
        s.name.value for s in ctx.module.body if isinstance(s, (cst.FunctionDef, cst.ClassDef))
    }
    for read in index.reads.get(model, []):
        if index.contains(scope, read):
            _not_handed_on(ctx, read, local, model)


def _not_handed_on(ctx: FileContext, read: cst.Name, local: set[str], model: str) -> None:
    """Follow one read of the model outward: calling it or reading its parameters is
    harmless; returning, yielding, storing or aliasing it, or handing it (also inside a
    list, or as `model.eval()`) to a function of another module lets fp16 data reach it."""
    index = ctx.index
    node: cst.CSTNode = read
    while True:
        parent = index.parent(node)
        if isinstance(parent, cst.Call) and parent.func is node:
            return  # `model(x)`: its output, not the model
        if isinstance(parent, cst.Attribute) and parent.value is node:
            call = index.parent(parent)
            if not (isinstance(call, cst.Call) and call.func is parent):
                if parent.attr.value != "module":
                    return  # `model.training`, `model.fc`: not the model itself
            elif parent.attr.value not in RETURNS_SELF:
                return  # `model.parameters()`, `model.state_dict()`
            node = call if isinstance(call, cst.Call) and call.func is parent else parent
            continue
        if isinstance(parent, (cst.Element, cst.DictElement, cst.StarredElement)):
            node = index.parent(parent)  # the list, tuple, set or dict holding it
            continue
        if isinstance(parent, (cst.List, cst.Tuple, cst.Set, cst.Dict, cst.IfExp)):
            node = parent
            continue
        if isinstance(parent, cst.Arg):
            call = index.parent(parent)
            func = call.func  # type: ignore[attr-defined]
            if isinstance(func, cst.Name) and func.value in local | HARMLESS:
                return
            target = ctx.names.resolve_call(call) or index.code(func)  # type: ignore[arg-type]
            if target.split(".")[0] in ("torch", "apex"):
                return
            raise _Refused(f"`{model}` is handed to `{index.code(func)}`, defined elsewhere")
        if isinstance(parent, (cst.Return, cst.Yield)):
            raise _Refused(f"`{model}` is returned to the caller")
        if isinstance(parent, cst.Assign) and all(
            isinstance(t.target, cst.Name) and t.target.value == model for t in parent.targets
        ):
            return  # `model = model.cuda()`
        if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign)):
            raise _Refused(f"`{model}` is stored under another name")
        return


def _halves(
    ctx: FileContext, scope: cst.CSTNode, model: str
) -> tuple[list[cst.Call], list[cst.Call]]:
    """The `.half()` calls that make the model fp16 (`model.half()`, `model.cuda().half()`,
    `model = Net().cuda().half()`), and those that make its inputs fp16 in this function
    (`x = x.half()` then `model(x)`, or `model(x.half())`). A `.half()` elsewhere in the
    module may feed the model outside any autocast region: the site is refused."""
    index = ctx.index
    for call in index.within(ctx.module, cst.Call):
        if ctx.names.call_name(call) in HALF_HELPERS:
            raise _Refused(f"`{index.code(call.func)}` changes the model's structure")
    for attr in index.within(ctx.module, cst.Attribute):
        code = index.code(attr)
        if code in HALF_SPELLINGS or attr.attr.value in ("float16", "HalfTensor"):
            raise _Refused(f"`{code}` makes fp16 data the fp32 model would reject")
    for node in index.within(ctx.module, cst.Name, cst.SimpleString):
        if (node.value if isinstance(node, cst.Name) else None) in HALF_NAMES or (
            isinstance(node, cst.SimpleString) and node.evaluated_value in HALF_STRINGS
        ):
            raise _Refused(f"`{index.code(node)}` makes fp16 data the fp32 model would reject")
    model_calls = [
        c
        for c in index.within(scope, cst.Call)
        if index.code(c.func) in (model, f"{model}.forward")
    ]
    fed = {
        index.code(a.value) for c in model_calls for a in c.args if isinstance(a.value, cst.Name)
    }
    halves, data = [], []
    for call in index.calls_named("half"):
        if not isinstance(call.func, cst.Attribute):
            continue
        if call.args:
            raise _Refused(f"`{index.code(call)}` with arguments: fp16 data here")
        if index.scope_of(call) is not scope:
            raise _Refused(f"`{index.code(call)}` outside this function may feed the fp32 model")
        stmt = index.statement_of(call)
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) else None
        on_model = _root(index, call.func.value) == model
        target = (
            index.code(small.targets[0].target)
            if isinstance(small, cst.Assign) and len(small.targets) == 1
            else None
        )
        if (target == model and _in_chain(small.value, call)) or (
            on_model and isinstance(small, cst.Expr) and _in_chain(small.value, call)
        ):
            halves.append(call)
        elif on_model:
            raise _Refused(f"`{index.code(call)}` makes the model fp16 where it cannot be undone")
        elif target in fed and small.value is call:
            if not _only_model_input(ctx, scope, small, target, model_calls):
                raise _Refused(f"`{target}` is made fp16 for more than the model")
            data.append(call)
        elif any(
            _in_chain(a.value, call) for c in model_calls for a in c.args if c.func is not call
        ):
            data.append(call)
        else:
            raise _Refused(f"`{index.code(call)}`: not the model or its input; fp16 data here")
    if not halves:
        raise _Refused(f"no `.half()` of `{model}` in this function (is it fp16 elsewhere?)")
    return halves, data


def _root(index, node: cst.CSTNode) -> str:
    """`model` for `model.cuda().to(device)`: the receiver at the start of a call chain."""
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        node = node.func.value
    return index.code(node)


def _in_chain(value: cst.CSTNode, call: cst.Call) -> bool:
    """`call` is a link of the method chain `value` (`Net().cuda().half().to(x)`)."""
    node = value
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        if node is call:
            return True
        node = node.func.value
    return False


def _free_name(ctx: FileContext, scope: cst.CSTNode) -> str:
    taken = {n.value for n in ctx.index.within(ctx.module, cst.Name)}
    for name in ("scaler", "grad_scaler", "amp_scaler"):
        if name not in taken:
            return name
    raise _Refused("`scaler`, `grad_scaler` and `amp_scaler` are all taken")


def _options(ctx: FileContext, args: dict) -> tuple[list[tuple[str, str]], str, bool]:
    """GradScaler keywords, `update()` arguments and whether it scales at all."""
    index = ctx.index
    static = index.code(args["static_loss_scale"]) if "static_loss_scale" in args else "1.0"
    dynamic = index.code(args["dynamic_loss_scale"]) if "dynamic_loss_scale" in args else "False"
    if dynamic == "True":
        return [], "", True
    if dynamic == "False":
        if not NUMERIC.match(static):
            if not DOTTED.match(static):
                raise _Refused(f"static_loss_scale={static} is not a number or a name")
            return (
                [("init_scale", f"float({static})")],
                f"new_scale=float({static})",
                True,
            )
        if float(static) == 1.0:
            return [("enabled", "False")], "", False
        return [("init_scale", repr(float(static)))], f"new_scale={float(static)!r}", True
    if not DOTTED.match(dynamic) or not (NUMERIC.match(static) or DOTTED.match(static)):
        raise _Refused(f"dynamic_loss_scale={dynamic} is decided by an expression")
    return (
        [("init_scale", f"2.0**16 if {dynamic} else float({static})")],
        f"new_scale=None if {dynamic} else float({static})",
        True,
    )
