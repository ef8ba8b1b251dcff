"""A2N2xx-A2N4xx: apex.parallel, apex.optimizers and apex.normalization to torch (a table)."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m
from libcst.helpers import get_full_name_for_node

from apex2native.apex_imports import apex_guards, install_guard, is_apex_import
from apex2native.context import FileContext
from apex2native.findings import NUMERICS, SAFE
from apex2native.rules.base import Rule
from apex2native.syntax import with_appended
from apex2native.target import TorchVersion, allows


@dataclass(frozen=True)
class Mapping:
    """How one apex class or function maps to torch.

    `drop`: keywords with no native meaning (behaviour unchanged or only performance);
    `refuse`: keyword values that change numbers with no native form (the call gets a TODO);
    `add`: keywords the native call needs to behave like apex (added when absent);
    `params`: apex's positional parameters, in order, as far as every apex release agrees;
    `shared`: how many of them the native signature takes at the same positions (the rest
    become keywords); `accepts`: the native keywords (any other keyword is refused);
    `since`: the torch release that brought the native class (an older target refuses).
    """

    code: str
    native: str
    tier: str = SAFE
    drop: frozenset[str] = frozenset()
    refuse: dict[str, str] = field(default_factory=dict)
    add: dict[str, str] = field(default_factory=dict)
    note: str = ""
    params: tuple[str, ...] = ()
    shared: int = 1
    accepts: frozenset[str] = frozenset()
    since: TorchVersion | None = None


def _kw(*names: str) -> frozenset[str]:
    return frozenset(names)


# apex's positional parameters (the native signatures share a prefix of them).
DDP_PARAMS = (
    "module",
    "message_size",
    "delay_allreduce",
    "shared_param",
    "allreduce_trigger_params",
    "retain_allreduce_buffers",
    "allreduce_always_fp32",
    "num_allreduce_streams",
    "allreduce_communicators",
    "gradient_average",
    "gradient_predivide_factor",
    "gradient_average_split_factor",
    "prof",
)
SYNCBN_PARAMS = (
    "num_features",
    "eps",
    "momentum",
    "affine",
    "track_running_stats",
    "process_group",
)
SGD_PARAMS = ("params", "lr", "momentum", "dampening", "weight_decay", "nesterov")
NORM_PARAMS = ("normalized_shape", "eps", "elementwise_affine")
# FusedAdam's sixth parameter was `eps_inside_sqrt` before apex 0.1 and `adam_w_mode` after:
# only the first five positions mean the same thing in every release.
ADAM_PARAMS = ("params", "lr", "bias_correction", "betas", "eps")
ADAM_ACCEPTS = _kw(
    "params",
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "amsgrad",
    "foreach",
    "maximize",
    "capturable",
    "differentiable",
    "fused",
)

TABLE: dict[str, Mapping] = {
    "apex.parallel.DistributedDataParallel": Mapping(
        "A2N201",
        "torch.nn.parallel.DistributedDataParallel",
        drop=frozenset(DDP_PARAMS[1:]),  # performance knobs, and gradient_average=True
        refuse={"gradient_average": "False"},
        add={"broadcast_buffers": "False", "find_unused_parameters": "True"},
        params=DDP_PARAMS,
        accepts=_kw(
            "module",
            "device_ids",
            "output_device",
            "dim",
            "broadcast_buffers",
            "init_sync",
            "process_group",
            "bucket_cap_mb",
            "find_unused_parameters",
            "check_reduction",
            "gradient_as_bucket_view",
            "static_graph",
            "delay_all_reduce_named_params",
            "param_to_hook_all_reduce",
            "mixed_precision",
            "device_mesh",
            "skip_all_reduce_unused_params",
        ),
        note="apex never broadcast buffers after construction (broadcast_buffers=False keeps "
        "that), and reduced only the gradients that exist, so parameters that get none (an "
        "unused head, a frozen part) were fine: find_unused_parameters=True keeps that, at "
        "the cost of a graph walk per step; drop it where every parameter gets a gradient",
    ),
    "apex.parallel.SyncBatchNorm": Mapping(
        "A2N202",
        "torch.nn.SyncBatchNorm",
        refuse={"channel_last": "True", "fuse_relu": "True"},
        drop=_kw("channel_last", "fuse_relu"),
        params=(*SYNCBN_PARAMS, "channel_last", "fuse_relu"),
        shared=len(SYNCBN_PARAMS),
        accepts=_kw(*SYNCBN_PARAMS, "device", "dtype"),
    ),
    "apex.parallel.convert_syncbn_model": Mapping(
        "A2N203",
        "torch.nn.SyncBatchNorm.convert_sync_batchnorm",
        refuse={"channel_last": "True"},
        drop=_kw("channel_last"),
        params=("module", "process_group", "channel_last"),
        shared=2,
        accepts=_kw("module", "process_group"),
    ),
    "apex.optimizers.FusedSGD": Mapping(
        "A2N302",
        "torch.optim.SGD",
        drop=_kw("materialize_master_grads", "set_grad_none", "wd_after_momentum"),
        refuse={"wd_after_momentum": "True"},
        params=(*SGD_PARAMS, "wd_after_momentum", "materialize_master_grads", "set_grad_none"),
        shared=len(SGD_PARAMS),
        accepts=_kw(*SGD_PARAMS, "maximize", "foreach", "differentiable", "fused"),
    ),
    "apex.normalization.FusedLayerNorm": Mapping(
        "A2N401",
        "torch.nn.LayerNorm",
        NUMERICS,
        drop=_kw("memory_efficient"),
        note="under autocast native LayerNorm returns fp32 where apex returned fp16",
        params=(*NORM_PARAMS, "memory_efficient"),
        shared=len(NORM_PARAMS),
        accepts=_kw(*NORM_PARAMS, "bias", "device", "dtype"),
    ),
    "apex.normalization.FusedRMSNorm": Mapping(
        "A2N402",
        "torch.nn.RMSNorm",
        NUMERICS,
        drop=_kw("memory_efficient"),
        add={"eps": "1e-5"},
        note="eps=1e-5 made explicit (native default depends on dtype)",
        params=(*NORM_PARAMS, "memory_efficient"),
        shared=len(NORM_PARAMS),
        accepts=_kw(*NORM_PARAMS, "device", "dtype"),
        since=TorchVersion(2, 4),
    ),
    "apex.contrib.clip_grad.clip_grad_norm_": Mapping(
        "A2N501",
        "torch.nn.utils.clip_grad_norm_",
        NUMERICS,
        note="apex's is torch's with a fused kernel for the 2-norm; torch takes each fp16 "
        "gradient's norm in fp16 (apex in fp32), so fp16 gradients whose norm passes 65504 "
        "give an inf total and are zeroed (fp32 gradients, as under autocast, are clipped alike)",
        params=("parameters", "max_norm", "norm_type", "error_if_nonfinite"),
        shared=4,
        accepts=_kw("parameters", "max_norm", "norm_type", "error_if_nonfinite", "foreach"),
    ),
}
# The same classes under the submodules that define them.
CANONICAL: dict[str, str] = {"apex.optimizers.fused_adam.FusedAdam": "apex.optimizers.FusedAdam"}
for _module, _names in {
    "apex.normalization.fused_layer_norm": ("FusedLayerNorm", "FusedRMSNorm"),
    "apex.parallel.distributed": ("DistributedDataParallel",),
    "apex.parallel.optimized_sync_batchnorm": ("SyncBatchNorm",),
    "apex.optimizers.fused_sgd": ("FusedSGD",),
    "apex.contrib.clip_grad.clip_grad": ("clip_grad_norm_",),
}.items():
    for _name in _names:
        _package = _module.rsplit(".", 1)[0]
        TABLE[f"{_module}.{_name}"] = TABLE[f"{_package}.{_name}"]
        CANONICAL[f"{_module}.{_name}"] = f"{_package}.{_name}"
SAME_NAME = {
    "apex.parallel.DistributedDataParallel": "torch.nn.parallel",
    "apex.parallel.distributed.DistributedDataParallel": "torch.nn.parallel",
    "apex.parallel.SyncBatchNorm": "torch.nn",
    "apex.parallel.optimized_sync_batchnorm.SyncBatchNorm": "torch.nn",
}
ADAM = "apex.optimizers.FusedAdam"
ADAM_SPELLINGS = {ADAM, "apex.optimizers.fused_adam.FusedAdam"}
ADAM_DROP = _kw("set_grad_none", "capturable", "bias_correction", "master_weights", "adam_w_mode")
ADAM_REFUSE = {"bias_correction": "False", "master_weights": "True", "amsgrad": "True"}
_EQUAL = cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace(""))


def _keywords(call: cst.Call, mapping: Mapping) -> dict[str, cst.BaseExpression]:
    """Every argument by apex's parameter name, whether passed by keyword or by position."""
    out: dict[str, cst.BaseExpression] = {}
    for position, arg in enumerate(call.args):
        if arg.keyword is not None:
            out[arg.keyword.value] = arg.value
        elif position < len(mapping.params):
            out[mapping.params[position]] = arg.value
    return out


def apex_only_keywords(name: str) -> frozenset[str]:
    """Keywords apex's class `name` takes and its torch counterpart does not."""
    if name in ADAM_SPELLINGS:
        apex = {*ADAM_PARAMS, *ADAM_DROP, *ADAM_REFUSE}
        return frozenset(apex - ADAM_ACCEPTS)
    mapping = TABLE[name]
    return frozenset({*mapping.params, *mapping.drop, *mapping.refuse} - mapping.accepts)


def shared_positions(name: str) -> int:
    """How many leading positional arguments apex's class and torch's read alike."""
    return 2 if name in ADAM_SPELLINGS else TABLE[name].shared


def _is_base_class(ctx: FileContext, ref: cst.CSTNode) -> bool:
    """`class LN(FusedLayerNorm):`: the class is a base of another."""
    arg = ctx.index.parent(ref)
    return isinstance(arg, cst.Arg) and isinstance(ctx.index.parent(arg), cst.ClassDef)


def _is_type_test(ctx: FileContext, ref: cst.CSTNode) -> bool:
    """`isinstance(m, FusedLayerNorm)`, or an element of a tuple of classes (built for such a
    test): the class is tested, not constructed."""
    parent = ctx.index.parent(ref)
    holder = ctx.index.parent(parent) if parent is not None else None
    if isinstance(parent, cst.Element) and isinstance(holder, cst.Tuple):
        return True
    return (
        isinstance(parent, cst.Arg)
        and isinstance(holder, cst.Call)
        and m.matches(holder.func, m.Name("isinstance") | m.Name("issubclass"))
        and len(holder.args) == 2
        and holder.args[1] is parent
    )


def _too_new(ctx: FileContext, mapping: Mapping) -> str | None:
    """Why the target torch lacks the native class, or None."""
    if mapping.since is None or allows(ctx.options.target_torch, mapping.since):
        return None
    return f"{mapping.native} needs torch {mapping.since} (target {ctx.options.target_torch})"


SET_TO_NONE_DEFAULT = TorchVersion(2, 0)  # Optimizer.zero_grad(set_to_none=True) by default
INTROSPECTION = m.Attribute(attr=m.Name("__name__") | m.Name("__qualname__"))


def _names_compared(ctx: FileContext) -> set[str]:
    """Strings a class name is tested against (`type(m).__name__ == "FusedLayerNorm"`); a
    config value (`cfg["type"] == "FusedSGD"`) picks a class, it does not test one. Names
    quoted in any file of the run that reads `__name__` or `__class__` count too (a tuple
    of names tested elsewhere, a test in another module)."""
    found = set()
    for comparison in ctx.index.within(ctx.module, cst.Comparison):
        operands = [comparison.left, *(c.comparator for c in comparison.comparisons)]
        if not any(m.findall(operand, INTROSPECTION) for operand in operands):
            continue
        for operand in operands:
            strings = operand.elements if isinstance(operand, (cst.Tuple, cst.List)) else []
            for node in [operand, *(e.value for e in strings)]:
                if isinstance(node, cst.SimpleString):
                    found.add(node.evaluated_value)
    return found | ctx.options.name_tested


def _is_init_call(call: cst.Call) -> bool:
    """`<anything>.__init__(...)`."""
    return isinstance(call.func, cst.Attribute) and call.func.attr.value == "__init__"


def _calls_super_init(call: cst.Call) -> bool:
    """`super().__init__(...)`: its arguments are the base class's, without `self`."""
    value = call.func.value  # type: ignore[attr-defined]
    return m.matches(value, m.Call(func=m.Name("super")))


def _unwrapped(updated: cst.Try) -> list[cst.BaseStatement]:
    """The guard's imports, where it stood (its comments and blank lines go first, the
    comment on its `try:` line with them)."""
    body = list(updated.body.body)
    header = updated.body.header.comment if isinstance(updated.body, cst.IndentedBlock) else None
    said = [cst.EmptyLine(comment=header)] if header is not None else []
    body[0] = body[0].with_changes(
        leading_lines=[*updated.leading_lines, *said, *body[0].leading_lines]
    )
    return body


def _canonical(name: str) -> str:
    """One name per apex class, whichever module spells it."""
    return CANONICAL.get(name, name)


def _opposite(value: str) -> str:
    return "False" if value == "True" else "True"


class ApexModules(Rule):
    """apex's DDP, SyncBatchNorm, fused optimizers and norms become their torch equivalents.

    Before:
        from apex.parallel import DistributedDataParallel as DDP
        from apex.optimizers import FusedAdam
        model = DDP(model, delay_allreduce=True)
        optimizer = FusedAdam(model.parameters(), lr=1e-3)
    After:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, broadcast_buffers=False, find_unused_parameters=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)

    Driven by a table (code, native name, keywords to drop, to refuse, to add). FusedAdam is
    AdamW unless `adam_w_mode=False`, and its weight decay (0.0) is always passed because
    AdamW's default is 0.01. `fused=True` is not added: it needs every parameter on the GPU
    in a floating type and a recent torch, and it changes speed, not numbers; add it where
    that holds. Old FusedAdam state counts steps per param group: `convert-checkpoint`
    moves them to each parameter, as torch's Adam/AdamW load them. Keyword values with no
    native form (`gradient_average=False`, `channel_last=True`, ...) leave the call with a
    TODO. Arguments are read by apex's own signature: positions torch does not share become
    keywords, and a position apex releases disagree on, or a keyword torch does not take,
    leaves the call with a TODO. A class one file keeps apex (a refused call, or apex DDP's
    own `disable_allreduce()`) stays apex in every file its imports link to, so that
    `isinstance` checks and constructions name one class. A class used other than by a call
    or a type test (in a dict, `partial`, a default argument, an alias) keeps apex with a
    TODO where the table has keywords to drop, refuse or add, since its calls cannot be
    checked (an alias every call of which torch's class takes as it is moves:
    `optim_name = FusedSGD` then `optim_name(params, lr=lr)`); so does one the file
    recognises by its name (`type(m).__name__ == "FusedLayerNorm"`), a subclass that reads
    an apex-only attribute (`self.channel_last`), and `RMSNorm` below a torch 2.4 target. apex's contrib
    `clip_grad_norm_` (torch's with a fused kernel) becomes torch's (A2N501). FusedLAMB and
    friends have no torch counterpart and are reported by A2N190.
    """

    code = "A2N201"
    name = "apex-modules"
    tier = SAFE
    summary = "apex.parallel / optimizers / normalization / contrib clip_grad -> torch"

    def apply(self, ctx: FileContext) -> None:
        # classes this file keeps apex whatever its own calls say: another file of the
        # program keeps them, or the program calls apex DDP's own methods (the plan's facts)
        refused = set()
        compared = _names_compared(ctx)
        taken = ctx.tx.handled()  # e.g. names an optional import's fallback now binds
        for ref, name in ctx.names.refs():
            if name not in TABLE and name not in ADAM_SPELLINGS or ref in taken:
                continue
            if _canonical(name) in ctx.facts.kept_classes:
                refused.add(name)
                continue
            parent = ctx.index.parent(ref)
            why = self._refusal(ctx, parent, ref, name)
            code = TABLE[name].code if name in TABLE else "A2N301"
            if why is None and _is_base_class(ctx, ref):
                why = self._subclass_refusal(ctx, ref, name)
                if why:
                    ctx.tx.todo(ref, code, why)
            elif why is None and name in TABLE:
                why = self._value_refusal(ctx, parent, ref, name, compared)
                if why:
                    ctx.tx.todo(ref, code, why)
            if why:
                refused.add(name)
                ctx.classes.kept.setdefault(_canonical(name), why)
        probes = self._type_probes(ctx)
        kept_names = self._move_imports(ctx, refused, probes)
        handled = ctx.tx.handled()
        marked: set[str] = set()
        for ref, name in ctx.names.refs():
            if (name not in TABLE and name not in ADAM_SPELLINGS) or ref in handled:
                continue
            if isinstance(ref, cst.Name) and ref.value in probes:
                ctx.tx.handle(object(), ref)
                continue
            kept = isinstance(ref, cst.Name) and ref.value in kept_names
            parent = ctx.index.parent(ref)
            if name in refused:
                # One refused call keeps the class apex in this file: its other uses
                # (calls, isinstance checks) must keep naming the same class.
                if self._refusal(ctx, parent, ref, name):
                    self._call(ctx, parent, ref, name)
                else:
                    ctx.tx.handle(object(), ref)
                    self._mark_kept(ctx, ref, name, marked)
                continue
            if isinstance(parent, cst.Call) and parent.func is ref:
                self._call(ctx, parent, ref, name, kept)
            elif kept:
                ctx.tx.handle(object(), ref)
            elif name in TABLE:
                group = object()
                native = TABLE[name].native
                ctx.tx.edits.replace_node(group, ref, lambda _u, n=native: cst.parse_expression(n))
                ctx.tx.handle(group, ref)
                ctx.classes.moved.add(_canonical(name))
                ctx.needs_torch = True

    def _value_refusal(
        self,
        ctx: FileContext,
        parent: cst.CSTNode | None,
        ref: cst.CSTNode,
        name: str,
        compared: set[str],
    ) -> str | None:
        """Why a use of the class other than a call keeps it apex, or None.

        The keywords a call must drop, refuse or add (DDP's `find_unused_parameters`,
        RMSNorm's `eps`) can only be applied where the class is called: stored in a dict,
        handed to `partial`, a default argument or an alias, it is called where the table
        cannot see. A class recognised by its name as a string stops matching once moved.
        """
        mapping = TABLE[name]
        short = name.rsplit(".", 1)[-1]
        if short in compared:
            return (
                f"{name} is recognised by its name as a string ({short!r}) in this program, "
                f"which {mapping.native} does not carry; update that test, then swap it"
            )
        too_new = _too_new(ctx, mapping)
        if too_new or isinstance(parent, cst.Call) and parent.func is ref:
            return too_new  # a call is checked as such
        if _is_type_test(ctx, ref):
            return None
        if self._alias_called_as_torch(ctx, parent, ref, mapping):
            return None
        if mapping.add or mapping.drop or mapping.refuse or apex_only_keywords(name):
            return (
                f"{name} used as a value, not called here: the keywords {mapping.native} "
                "needs or rejects cannot be checked where it is called; swap it by hand"
            )
        return None

    @staticmethod
    def _alias_called_as_torch(
        ctx: FileContext, parent: cst.CSTNode | None, ref: cst.CSTNode, mapping: Mapping
    ) -> bool:
        """`optim_name = FusedSGD`, and every read of `optim_name` in the file is a call that
        torch's class takes as it is: positions both share, keywords torch accepts, nothing
        the table would add."""
        if mapping.add or not (
            isinstance(parent, cst.Assign)
            and parent.value is ref
            and len(parent.targets) == 1
            and isinstance(parent.targets[0].target, cst.Name)
        ):
            return False
        alias = parent.targets[0].target.value
        if {alias, "*"} & ctx.facts.imported:
            return False  # another module calls it where this file cannot look
        reads = ctx.index.reads.get(alias, [])
        for read in reads:
            call = ctx.index.parent(read)
            if not (isinstance(call, cst.Call) and call.func is read):
                return False
            positional = [a for a in call.args if a.keyword is None]
            if (
                any(a.star for a in call.args)
                or len(positional) > mapping.shared
                or any(a.keyword and a.keyword.value not in mapping.accepts for a in call.args)
            ):
                return False
        return bool(reads)

    def _subclass_refusal(self, ctx: FileContext, ref: cst.CSTNode, name: str) -> str | None:
        """Why `class X(<apex class>)` cannot take torch's class as its base, or None.

        The base may move when torch's class needs nothing added to behave like apex's
        (no differing default) and what reaches the base constructor fits torch's: every
        `super().__init__(...)` of the subclass, or, when it inherits apex's constructor,
        every call of the subclass in this file (and no other module imports it)."""
        mapping = TABLE.get(name)
        why = (
            f"a subclass of {name} keeps it apex: its constructor arguments or defaults "
            "follow apex's signature, which torch's class does not share; port the subclass "
            "by hand"
        )
        if mapping is None or mapping.add:
            return why
        cls = ctx.index.parent(ctx.index.parent(ref))
        apex_only = apex_only_keywords(name)
        for node in ctx.index.within(cls, cst.Attribute):
            if m.matches(node.value, m.Name("self")) and node.attr.value in apex_only:
                return (
                    f"a subclass of {name} reads `self.{node.attr.value}`, which only apex's "
                    "class sets; port the subclass by hand"
                )
        inits = [c for c in ctx.index.within(cls, cst.Call) if _is_init_call(c)]
        if not inits:  # apex's constructor is inherited: the subclass's callers fill it
            if {cls.name.value, "*"} & ctx.facts.imported:
                return why
            inits = [
                c
                for c in ctx.index.calls_named(cls.name.value)
                if m.matches(c.func, m.Name(cls.name.value))
            ]
        elif not all(_calls_super_init(c) for c in inits):
            return why  # `Base.__init__(self, ...)`: `self` shifts the positions
        for call in inits:
            positional = [a for a in call.args if a.keyword is None]
            passed = set(_keywords(call, mapping))
            if (
                any(a.star for a in call.args)
                or len(positional) > mapping.shared
                or not passed <= mapping.accepts
            ):
                return why
        return None

    def _mark_kept(self, ctx: FileContext, ref: cst.CSTNode, name: str, marked: set[str]) -> None:
        """A use other than a call of a class another file keeps apex gets one marker per
        class, so the report says why this file still names apex."""
        why = ctx.facts.kept_classes.get(_canonical(name))
        if why and name not in marked and not ctx.tx.has_todo(ref):
            marked.add(name)
            if any(
                isinstance(call := ctx.index.parent(other), cst.Call) and call.func is other
                for other, full in ctx.names.refs()
                if full == name
            ):
                return  # the call's own marker says why
            mapping = TABLE.get(name)
            code = mapping.code if mapping is not None else "A2N301"
            ctx.tx.todo(ref, code, f"{name} stays apex in every file of this program: {why}")

    def _type_probes(self, ctx: FileContext) -> set[str]:
        """Names an optional apex import binds only to recognise apex's objects.

        `try: from apex.parallel import DistributedDataParallel as apex_DDP` with a handler
        that does not raise, feeding only an isinstance check or a tuple of wrapper types,
        stays as it is: it recognises apex DDP models wherever the repository still makes
        them (another file may keep apex), and it is a harmless ImportError once apex is
        gone. Moved to torch, the check would miss them.
        """
        probes: set[str] = set()
        for guard in apex_guards(ctx.index):
            if any(ctx.index.within(h, cst.Raise) for h in guard.handlers):
                continue
            for node in ctx.index.within(guard.body, cst.ImportFrom):
                if not is_apex_import(node) or isinstance(node.names, cst.ImportStar):
                    continue
                for alias in node.names:
                    bound = alias.asname.name if alias.asname else alias.name
                    if isinstance(bound, cst.Name) and self._only_type_checks(ctx, bound):
                        probes.add(bound.value)
        return probes

    def _only_type_checks(self, ctx: FileContext, bound: cst.Name) -> bool:
        uses = [
            n
            for n in ctx.index.within(ctx.module, cst.Name)
            if n.value == bound.value and n is not bound
        ]
        if not all(_is_type_test(ctx, use) for use in uses):
            return False
        return bool(uses)

    def _move_imports(self, ctx: FileContext, refused: set[str], probes: set[str]) -> set[str]:
        """`from apex.parallel import DistributedDataParallel as DDP` only changes its module.

        Where torch has the same class under the same name, the import moves and every use
        keeps its spelling (the smallest diff); the names bound that way are returned. An
        import stays apex while one of its calls is refused (`DDP(model, **ddp_kwargs)`):
        moving it would hand that call's apex keywords to torch.
        """
        kept: set[str] = set()
        unwrapped: set[int] = set()
        handled = ctx.tx.handled()
        for node in ctx.index.within(ctx.module, cst.ImportFrom):
            if not is_apex_import(node) or node in handled:
                continue
            if isinstance(node.names, cst.ImportStar) or node.relative:
                continue
            module = get_full_name_for_node(node.module) or ""
            bound = {(a.asname.name if a.asname else a.name) for a in node.names}
            if any(isinstance(b, cst.Name) and b.value in probes for b in bound):
                group = object()
                ctx.tx.handle(group, node)
                ctx.tx.note(
                    group,
                    node,
                    self.code,
                    "optional apex import kept: it only recognises apex's objects "
                    "(an ImportError once apex is gone)",
                    SAFE,
                )
                continue
            full = {f"{module}.{a.name.value}" for a in node.names}
            targets = {SAME_NAME.get(name) for name in full}
            if len(targets) != 1 or None in targets or full & refused:
                continue
            native = targets.pop()
            ctx.classes.moved |= {_canonical(name) for name in full}
            group = object()
            ctx.tx.edits.replace_node(
                group, node, lambda u, n=native: u.with_changes(module=cst.parse_expression(n))
            )
            ctx.tx.note(group, node, self.code, f"import moved from {module} to {native}", SAFE)
            guard = install_guard(ctx.index, ctx.index.statement_of(node))
            if guard is not None and id(guard) not in unwrapped:
                unwrapped.add(id(guard))
                ctx.tx.edits.replace_statement(group, guard, _unwrapped)
                ctx.tx.note(
                    group,
                    guard,
                    self.code,
                    "the `try` that said apex was missing goes: torch's import does not fail",
                    SAFE,
                )
            kept |= {
                (a.asname.name.value if a.asname else a.name.value)  # type: ignore[union-attr]
                for a in node.names
            }
        return kept

    def _call(
        self, ctx: FileContext, call: cst.Call, ref: cst.CSTNode, name: str, kept: bool = False
    ) -> None:
        mapping = self._mapping(ctx, call, name)
        refusal = self._refusal(ctx, call, ref, name)
        if refusal:
            ctx.tx.todo(call, mapping.code, refusal)
            return
        keywords = _keywords(call, mapping)
        drop = mapping.drop
        group = object()
        native = mapping.native
        add = {k: v for k, v in mapping.add.items() if k not in keywords}

        def rewrite(updated: cst.Call) -> cst.Call:
            args = []
            for position, arg in enumerate(updated.args):
                key = arg.keyword.value if arg.keyword is not None else None
                if key is None and position >= mapping.shared:
                    key = mapping.params[position]
                    arg = arg.with_changes(keyword=cst.Name(key), equal=_EQUAL)
                if key not in drop:
                    args.append(arg)
            if args:
                args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            for key, value in add.items():
                args = with_appended(
                    args, cst.Arg(cst.parse_expression(value), keyword=cst.Name(key), equal=_EQUAL)
                )
            if kept:
                return updated.with_changes(args=args)
            return updated.with_changes(func=cst.parse_expression(native), args=args)

        ctx.tx.edits.replace_node(group, call, rewrite)
        ctx.classes.moved.add(_canonical(name))
        stmt = ctx.index.statement_of(call)
        width = ctx.index.indent_width(stmt)
        ctx.tx.edits.replace_statement(group, stmt, lambda u: [ctx.gen.relayout(u, width)])
        ctx.tx.handle(group, ref)
        ctx.needs_torch = ctx.needs_torch or not kept
        dropped = sorted(k for k in keywords if k in drop and k != "adam_w_mode")
        detail = f" (dropped {', '.join(dropped)})" if dropped else ""
        ctx.tx.note(group, call, mapping.code, f"{name} -> {native}{detail}", mapping.tier)
        if mapping.note:
            ctx.tx.note(group, call, mapping.code, mapping.note, mapping.tier)
        if native.startswith("torch.optim.") and not allows(
            ctx.options.target_torch, SET_TO_NONE_DEFAULT
        ):
            ctx.tx.note(
                group,
                call,
                mapping.code,
                "below torch 2.0 `zero_grad()` zeroes gradients in place where apex's fused "
                "optimizers set them to None, so a parameter that got no gradient in a step "
                "is still updated (momentum, decay); call zero_grad(set_to_none=True) to keep "
                "apex's behaviour",
                NUMERICS,
            )

    def _mapping(self, ctx: FileContext, call: cst.Call, name: str) -> Mapping:
        if name in ADAM_SPELLINGS:
            keywords = {a.keyword.value: a for a in call.args if a.keyword is not None}
            return self._adam(ctx, keywords)
        return TABLE[name]

    def _refusal(
        self, ctx: FileContext, call: cst.CSTNode | None, ref: cst.CSTNode, name: str
    ) -> str | None:
        """Why a call of an apex class cannot move to torch, or None when it can."""
        if not isinstance(call, cst.Call) or call.func is not ref:
            return None
        own = self._own_refusal(ctx, call, name)
        kept = ctx.facts.kept_classes.get(_canonical(name))
        if own or not kept:
            return own
        return f"{name} stays apex in every file of this program: {kept}"

    def _own_refusal(self, ctx: FileContext, call: cst.Call, name: str) -> str | None:
        """Why this call itself cannot move to torch, or None."""
        mapping = self._mapping(ctx, call, name)
        too_new = _too_new(ctx, mapping)
        if too_new:
            return too_new
        if any(a.star == "**" for a in call.args):
            return (
                f"{name}(**kwargs) keeps the class apex in this file: check the keywords "
                f"against {mapping.native}, then swap it"
            )
        positional = [a for a in call.args if a.keyword is None]
        if any(a.star for a in positional):
            return f"{name}(*args): which of apex's parameters they fill is not known"
        if len(positional) > len(mapping.params):
            return (
                f"{name} with {len(positional)} positional arguments: apex releases disagree "
                "on what the later positions mean; pass them by keyword, then swap it"
            )
        keywords = _keywords(call, mapping)
        for key, bad in mapping.refuse.items():
            if key not in keywords:
                continue
            value = ctx.index.code(keywords[key])
            if value == bad:
                return f"{name}({key}={bad}) has no torch equivalent"
            if value not in ("True", "False"):
                return f"{name}({key}={value}): only {key}={_opposite(bad)} has a torch equivalent"
        for key in sorted(keywords):
            if key not in mapping.accepts | mapping.drop | set(mapping.refuse):
                return f"{name}({key}=...) has no {mapping.native} counterpart"
        return None

    def _adam(self, ctx: FileContext, keywords: dict[str, cst.Arg]) -> Mapping:
        mode = keywords.get("adam_w_mode")
        adamw = mode is None or not m.matches(mode.value, m.Name("False"))
        if mode is not None and not m.matches(mode.value, m.Name("True") | m.Name("False")):
            return Mapping(
                "A2N301",
                "torch.optim.AdamW",
                refuse={"adam_w_mode": ctx.index.code(mode.value)},
                params=ADAM_PARAMS,
                shared=2,
                accepts=ADAM_ACCEPTS,
            )
        return Mapping(
            "A2N301",
            "torch.optim.AdamW" if adamw else "torch.optim.Adam",
            NUMERICS,
            drop=ADAM_DROP,
            refuse=ADAM_REFUSE,
            add={"weight_decay": "0.0"},
            params=ADAM_PARAMS,
            shared=2,
            accepts=ADAM_ACCEPTS,
            note="weight_decay passed explicitly: FusedAdam's default is 0.0, AdamW's 0.01; "
            "optimizer state saved by FusedAdam (a step per param group) loads into it only "
            "after `apex2native convert-checkpoint`",
        )
