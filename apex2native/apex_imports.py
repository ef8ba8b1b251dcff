"""Where a module imports apex, and the try/except guards and flags around those imports."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
from libcst.helpers import get_full_name_for_node

from apex2native.index import TreeIndex
from apex2native.summary import APEX_PROBE_HELPERS as APEX_PROBE_HELPERS

IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


DEPRECATED_AMP_MODULES = ("torch.cuda.amp", "torch.cpu.amp")


# What `from <module> import *` binds, for the apex modules whose names are known (apex's
# `fp16_utils/__init__.py` has no `__all__`: its public names and submodules).
STAR_EXPORTS = {
    "apex.fp16_utils": frozenset(
        "BN_convert_float network_to_half prep_param_lists model_grads_to_master_grads "
        "master_params_to_model_params tofp16 to_python_float clip_grad_norm convert_module "
        "convert_network FP16Model FP16_Optimizer LossScaler DynamicLossScaler fp16util "
        "fp16_optimizer loss_scaler".split()
    ),
}


# apex's compiled extensions, top-level modules of their own that only an apex build installs
# (apex's setup.py). Names a project might give a module of its own (`syncbn`, `bnp`) are
# left out: an import of them may well be the project's.
APEX_EXTENSIONS = frozenset(
    "apex_C amp_C fused_layer_norm_cuda mlp_cuda fused_dense_cuda "
    "scaled_upper_triang_masked_softmax_cuda generic_scaled_masked_softmax_cuda "
    "scaled_masked_softmax_cuda scaled_softmax_cuda fused_rotary_positional_embedding "
    "fused_weight_gradient_mlp_cuda distributed_adam_cuda distributed_lamb_cuda "
    "fused_adam_cuda fused_lamb_cuda xentropy_cuda fast_layer_norm fused_index_mul_2d "
    "fast_multihead_attn fmhalib focal_loss_cuda transducer_joint_cuda transducer_loss_cuda "
    "cudnn_gbn_lib peer_memory_cuda nccl_p2p_cuda fast_bottleneck fused_conv_bias_relu "
    "group_norm_cuda permutation_search_cuda _apex_nccl_allocator".split()
)


def extension_imported(node: cst.CSTNode) -> str | None:
    """The apex extension an import statement names, if it names one."""
    if isinstance(node, cst.ImportFrom):
        if node.relative or node.module is None:
            return None
        top = (get_full_name_for_node(node.module) or "").split(".")[0]
        return top if top in APEX_EXTENSIONS else None
    if isinstance(node, cst.Import):
        for alias in node.names:
            top = (get_full_name_for_node(alias.name) or "").split(".")[0]
            if top in APEX_EXTENSIONS:
                return top
    return None


def star_supplies(module: str, unbound: set[str]) -> set[str]:
    """The names a module reads but never binds that `from <module> import *` may bind:
    those it exports when they are known, else all of them."""
    exports = STAR_EXPORTS.get(module)
    return unbound & exports if exports is not None else set(unbound)


def star_used(module: str, unbound: set[str], imported: set[str], text: str) -> bool:
    """Whether `from <module> import *` may supply a name someone reads: this module (its
    unbound names), a module that imports names from it, or, when it is star-imported,
    imported whole or lists `__all__`, any module."""
    if "*" in imported or "__all__" in text:
        return True
    return bool(star_supplies(module, unbound | imported))


def is_migrated_import(node: cst.CSTNode) -> bool:
    """Imports the migration may leave unused: apex, and `from torch.cuda.amp import ...`."""
    if isinstance(node, cst.ImportFrom) and not node.relative and node.module is not None:
        if (get_full_name_for_node(node.module) or "") in DEPRECATED_AMP_MODULES:
            return True
    return is_apex_import(node)


def is_apex_import(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.ImportFrom):
        if node.relative or node.module is None:
            return False
        name = get_full_name_for_node(node.module) or ""
        return name == "apex" or name.startswith("apex.")
    if isinstance(node, cst.Import):
        return any(
            (get_full_name_for_node(a.name) or "").split(".")[0] == "apex" for a in node.names
        )
    return False


def has_apex_import(index: TreeIndex, body: cst.CSTNode) -> bool:
    return any(is_apex_import(n) for n in index.within(body, cst.Import, cst.ImportFrom))


def caught_names(handler: cst.ExceptHandler) -> list[str]:
    """The exception names an `except` lists ([] for a bare `except:`)."""
    if handler.type is None:
        return []
    types = handler.type.elements if isinstance(handler.type, cst.Tuple) else [handler.type]
    return [(get_full_name_for_node(getattr(t, "value", t)) or "").split(".")[-1] for t in types]


def catches_import_errors(node: cst.Try) -> bool:
    """Every handler catches only import errors (a probe the clean-up may take apart)."""
    if not node.handlers or node.finalbody is not None:
        return False
    return all(name in IMPORT_ERRORS for h in node.handlers for name in caught_names(h))


def falls_back(node: cst.Try) -> bool:
    """Some handler catches an import error (`except (ImportError, OSError):` too): an
    import in the body that fails lets the program go on."""
    return any(
        h.type is None or any(name in IMPORT_ERRORS for name in caught_names(h))
        for h in node.handlers
    )


def install_guard(index: TreeIndex, stmt: cst.CSTNode) -> cst.Try | None:
    """`try: <imports> except ImportError: raise ImportError("Please install apex ...")`
    around `stmt`: a guard around imports alone whose every handler stops the program with
    a message about apex (after printing, at most). Once its apex imports move to torch it
    has nothing to catch, and whatever else fails in it fails as it did (with another
    message); a handler that goes on (a fallback, `pass`, a flag) keeps the guard."""
    from apex2native.syntax import apex_message

    block = index.parent(stmt)
    guard = index.parent(block) if isinstance(block, cst.IndentedBlock) else None
    if not (
        isinstance(guard, cst.Try)
        and guard.body is block
        and guard.orelse is None
        and catches_import_errors(guard)
        and all(h.type is not None for h in guard.handlers)
    ):
        return None
    imports = m.SimpleStatementLine(body=[m.AtLeastN(m.Import() | m.ImportFrom(), n=1)])
    if not all(m.matches(s, imports) for s in block.body):
        return None
    for handler in guard.handlers:
        body = handler.body
        lines = (
            list(body.body)
            if isinstance(body, cst.IndentedBlock)
            else [cst.SimpleStatementLine(body=[s]) for s in body.body]
        )
        *said, last = lines
        raised = last.body[0] if isinstance(last, cst.SimpleStatementLine) else None
        if not (
            all(apex_message(line) for line in said)
            and isinstance(raised, cst.Raise)
            and raised.exc is not None
            and "apex" in cst.Module([]).code_for_node(raised.exc).lower()
        ):
            return None
    return guard


def apex_guards(index: TreeIndex) -> list[cst.Try]:
    """`try: <apex import> except ImportError:` statements."""
    return [
        node
        for node in index.within(index.module, cst.Try)
        if has_apex_import(index, node.body) and catches_import_errors(node)
    ]


FLAG = m.Assign(targets=[m.AssignTarget(m.Name())], value=m.Name("True") | m.Name("False"))


def try_flags(index: TreeIndex, node: cst.Try) -> set[str]:
    """`HAS_APEX = True` / `= False` set in a try's body or handlers."""
    return {
        n.targets[0].target.value  # type: ignore[attr-defined]
        for part in (node.body, *node.handlers)
        for n in index.within(part, cst.Assign)
        if m.matches(n, FLAG)
    }


def guard_flags(index: TreeIndex) -> set[str]:
    """Names that record whether apex imported: `HAS_APEX = True` in the guarded try."""
    return {flag for node in apex_guards(index) for flag in try_flags(index, node)}


def bound_name(alias: cst.ImportAlias) -> str:
    """The name an import alias binds (`import apex.amp` binds `apex`)."""
    if alias.asname is not None:
        return get_full_name_for_node(alias.asname.name) or ""
    return (get_full_name_for_node(alias.name) or "").split(".")[0]
