"""A2N114: `amp.register_*_function(torch, "op")` for ops autocast already casts that way go."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext
from apex2native.findings import NUMERICS
from apex2native.rules.base import Rule
from apex2native.syntax import is_call_statement

# What CUDA autocast does per op (PyTorch's autocast op reference). `einsum` is not listed
# but decomposes into `bmm`, which runs in float16.
FLOAT16_OPS = frozenset(
    "__matmul__ addbmm addmm addmv addr baddbmm bmm chain_matmul multi_dot conv1d conv2d "
    "conv3d conv_transpose1d conv_transpose2d conv_transpose3d GRUCell linear LSTMCell "
    "matmul mm mv prelu RNNCell einsum".split()
)
FLOAT32_OPS = frozenset(
    "__pow__ __rdiv__ __rpow__ __rtruediv__ acos asin binary_cross_entropy_with_logits cosh "
    "cosine_embedding_loss cdist cosine_similarity cross_entropy cumprod cumsum dist erfinv "
    "exp expm1 group_norm hinge_embedding_loss kl_div l1_loss layer_norm log log_softmax "
    "log10 log1p log2 margin_ranking_loss mse_loss multilabel_margin_loss multi_margin_loss "
    "nll_loss norm normalize pdist poisson_nll_loss pow prod reciprocal rsqrt sinh "
    "smooth_l1_loss soft_margin_loss softmax softmin softplus sum renorm tan "
    "triplet_margin_loss".split()
)
PROMOTE_OPS = frozenset(
    "addcdiv addcmul atan2 bilinear cross dot grid_sample index_put scatter_add tensordot "
    "cat stack".split()
)
REGISTRATIONS = {
    "apex.amp.register_half_function": (FLOAT16_OPS, "float16"),
    "apex.amp.register_float_function": (FLOAT32_OPS, "float32"),
    "apex.amp.register_promote_function": (PROMOTE_OPS, "the widest input type"),
}
TORCH_MODULES = {"torch", "torch.nn.functional"}


def registers_lowered_op(ctx: FileContext, call: cst.Call, ops: frozenset) -> bool:
    """`register_*_function(torch, "<op>")` of an op autocast already casts that way."""
    if len(call.args) != 2 or any(a.keyword or a.star for a in call.args):
        return False
    name = call.args[1].value
    return (
        ctx.names.resolve_name(call.args[0].value) in TORCH_MODULES
        and isinstance(name, cst.SimpleString)
        and name.evaluated_value in ops
    )


class Registrations(Rule):
    """Registrations that only repeat what autocast does are deleted.

    Before:
        amp.register_half_function(torch, "einsum")
    After:
        (nothing: under autocast, einsum runs on bmm, which autocast runs in float16)

    apex's O1 cast lists were patched into torch; autocast has its own per-op lists, and a
    registration of a torch op that autocast already runs in the registered precision has
    nothing left to do. Registrations of other functions (a custom CUDA op, a project
    function) pin a precision autocast does not know: they stay with a TODO, and their
    migration unit with them, because the op would otherwise receive float16 under autocast.
    """

    code = "A2N114"
    name = "registrations"
    tier = NUMERICS
    summary = "register_*_function of ops autocast already casts: deleted"

    def apply(self, ctx: FileContext) -> None:
        for qualified, (ops, precision) in REGISTRATIONS.items():
            for call in ctx.names.calls_to(qualified):
                self._site(ctx, call, ops, precision)

    def _site(self, ctx: FileContext, call: cst.Call, ops: frozenset, precision: str) -> None:
        if not registers_lowered_op(ctx, call, ops):
            return
        module = ctx.names.resolve_name(call.args[0].value)
        op = call.args[1].value.evaluated_value  # type: ignore[attr-defined]
        stmt = ctx.index.statement_of(call)
        if not is_call_statement(stmt, call):
            return
        unit = ctx.unit_for(call)
        if not unit:
            return  # no unit to go with: the leftover rule marks it
        group = object()
        ctx.tx.tag(group, unit)
        ctx.tx.edits.replace_statement(group, stmt, lambda _u: [])
        ctx.tx.handle(group, call.func)
        ctx.tx.note(
            group,
            call,
            self.code,
            f"registration of {module}.{op} removed: autocast already runs it in {precision}",
            NUMERICS,
        )
