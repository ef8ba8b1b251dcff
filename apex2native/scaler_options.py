"""What `GradScaler(...)` an `amp.initialize(...)` call becomes: a pure function of its arguments.

The plan decides this once per initialize site (from `ast`), and the rewrite of the file that
holds the site writes it; every other file of the migration unit learns it from the plan.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from apex2native.findings import NUMERICS, SAFE

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
# `amp.init(...)`, the pre-0.1 API
INIT_PARAMS = ("enabled", "loss_scale", "enable_caching", "verbose", "allow_banned")
NUMERIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
ATOM = re.compile(r"^[\w.]+(\[[^\[\]]*\])?$")
DOTTED = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$")
NOT_LITERAL = ...
FP32_TYPES = frozenset({"torch.float32", "torch.float"})
FP16_TYPES = frozenset({"torch.float16", "torch.half"})


@dataclass(frozen=True)
class Arg:
    """One argument as written: its source, its value when it is a literal (else `...`),
    and whether it needs parentheses to stay one operand of `and`."""

    code: str
    literal: object = NOT_LITERAL
    loose: bool = False

    def condition(self) -> str:
        return f"({self.code})" if self.loose else self.code

    def operand(self) -> str:
        """The argument as one operand of a comparison."""
        return self.code if ATOM.match(self.code) else f"({self.code})"


@dataclass
class ScalerOptions:
    """The scaler's keyword arguments, the report lines, and how autocast follows it.

    `autocast`: False when amp never casts (O0, enabled=False); `autocast_enabled`: the
    `enabled=` of every autocast region (None: always on); `conditions`: normalised
    spellings of the switch, which other code may test to choose the scaled branch.
    """

    kwargs: list[tuple[str, str]] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    conditions: set[str] = field(default_factory=set)
    autocast: bool = True
    autocast_enabled: str | None = None
    update_args: str = ""
    update_local: bool = False  # update_args read names of the scope that makes the scaler
    switch: str | None = None  # the run-time condition that turns amp on (None: always on)
    level_hints: tuple[str, ...] = ()
    problem: str | None = None


def normalize(code: str) -> str:
    """A condition's spelling with whitespace, quote style and outer parentheses ignored."""
    code = re.sub(r"\s+", "", code)
    code = code.replace("'", '"')
    while code.startswith("(") and code.endswith(")"):
        code = code[1:-1]
    m_bool = re.fullmatch(r"bool\((.*)\)", code)
    return m_bool.group(1) if m_bool else code


def bind_initialize(positional: list[Arg], keywords: dict[str, Arg]) -> dict[str, Arg]:
    """`amp.initialize`'s arguments by parameter name."""
    bound = {PARAMS[i]: arg for i, arg in enumerate(positional[: len(PARAMS)])}
    bound.update(keywords)
    return bound


def scaler_options(
    args: dict[str, Arg], guards: list[str], access: str, lit: Callable[[str], str]
) -> ScalerOptions:
    """GradScaler options for an initialize call with `args`, run under the `guards`.

    `access` names the scaler where autocast regions read it (`scaler.is_enabled()`), and
    `lit` spells a string literal in the file's quote style.
    """
    out = ScalerOptions()
    parts = list(guards)
    scaling = True
    autocast_on: bool | None = True  # None: decided at run time

    level = args["opt_level"].literal if "opt_level" in args else "O1"
    cast_free = _cast_free(level, args)
    if cast_free is None:
        given = ", ".join(
            f"{k}={args[k].code}"
            for k in ("opt_level", "patch_torch_functions", "cast_model_type")
            if k in args
        )
        out.problem = (
            f"{given}: whether apex casts at all (autocast or fp32 compute) is decided at run "
            "time; create the GradScaler and the autocast regions by hand"
        )
        return out
    if cast_free:
        autocast_on = False
    elif level is NOT_LITERAL:
        expr = args["opt_level"].operand()
        out.level_hints = (expr.rsplit(".", 1)[-1],)
        parts.append(f"{expr} != {lit('O0')}")
        autocast_on = None
        message = f"runtime opt level `{expr}`: O2/O3 run as autocast with fp32 weights"
        if "loss_scale" not in args:
            message += "; O3, which apex ran unscaled (loss_scale 1.0), is scaled dynamically"
        out.messages.append((message, NUMERICS))
    elif level not in ("O0", "O1", "O2", "O3"):
        out.problem = f"unknown opt_level {level!r}; create the GradScaler by hand"
        return out
    elif level == "O0":
        scaling, autocast_on = False, False
    if level in ("O2", "O3") and not cast_free:
        out.messages.append(
            (
                f"{level}: native AMP keeps fp32 weights under autocast; apex ran "
                + ("fp16 weights with fp32 master copies" if level == "O2" else "pure fp16")
                + " (numbers and memory differ)",
                NUMERICS,
            )
        )
    if level == "O3" and "loss_scale" not in args:
        scaling = False  # O3's default loss_scale is 1.0; a given one still scales

    enabled = args["enabled"].literal if "enabled" in args else None
    if enabled is False:
        scaling, autocast_on = False, False
    elif enabled is NOT_LITERAL:
        parts.append(args["enabled"].condition())
        autocast_on = None if autocast_on is not False else False

    loss_scale = args["loss_scale"].literal if "loss_scale" in args else None
    if isinstance(loss_scale, str) and loss_scale != "dynamic":
        if not NUMERIC.match(loss_scale.strip()):
            out.problem = f"loss_scale={loss_scale!r} is not a number"
            return out
        loss_scale = float(loss_scale)
    if loss_scale is NOT_LITERAL:
        code = args["loss_scale"].code
        chosen = _dynamic_when(code)  # `"dynamic" if args.loss_scale == 0 else args.loss_scale`
        if chosen is None and not (DOTTED.match(code) or _reads_only(code)):
            out.problem = (
                f"loss_scale={code} is decided at run time (dynamic or static); "
                "create the GradScaler by hand"
            )
            return out
        tested = code if DOTTED.match(code) else f"({code})"
        dynamic = f"{tested} in (None, {lit('dynamic')})"
        if chosen is not None:
            test, code = chosen
            dynamic = f"{test} or {code} in (None, {lit('dynamic')})"
        out.kwargs.append(("init_scale", f"2.0**16 if {dynamic} else float({code})"))
        out.update_args = f"new_scale=None if {dynamic} else float({code})"
        out.update_local = True
        out.messages.append(
            (
                f"loss_scale={code} is chosen at run time: a number is a static scale (the scale "
                "is reset after every step, and GradScaler skips steps with inf/NaN gradients, "
                "which apex's static scale applied), \"dynamic\" is GradScaler's own scaling",
                NUMERICS,
            )
        )
    if isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
        loss_scale = float(loss_scale)
        if loss_scale == 1.0:
            scaling = False
        else:
            out.kwargs.append(("init_scale", repr(loss_scale)))
            out.update_args = f"new_scale={loss_scale!r}"
            out.messages.append(
                (
                    f"static loss_scale {loss_scale!r}: GradScaler skips steps with inf/NaN "
                    "gradients, apex's static scale applied them",
                    NUMERICS,
                )
            )

    if cast_free:
        out.messages.append(_cast_free_message(level, args, scaling))
    _option_messages(args, out, cast_free)
    if not scaling:
        out.kwargs.insert(0, ("enabled", "False"))
    elif parts:
        out.kwargs.insert(0, ("enabled", " and ".join(parts)))
    out.switch = " and ".join(parts) or None
    out.conditions = {normalize(p) for p in parts}
    if len(parts) > 1:
        out.conditions.add(normalize(" and ".join(parts)))
    if autocast_on is False:
        out.autocast = False
    elif autocast_on is None or (parts and scaling):
        out.autocast_enabled = f"{access}.is_enabled()" if scaling else " and ".join(parts)
    return out


PURE_NODES = (
    ast.Expression,
    ast.Name,
    ast.Attribute,
    ast.Constant,
    ast.Compare,
    ast.IfExp,
    ast.BoolOp,
    ast.UnaryOp,
    ast.Load,
    ast.cmpop,
    ast.boolop,
    ast.unaryop,
)


def _dynamic_when(code: str) -> tuple[str, str] | None:
    """`"dynamic" if <test> else <x>` (or the other way round), <x> a name or attribute:
    (the test that picks "dynamic", <x>)."""
    try:
        node = ast.parse(code, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.IfExp) or not _reads_only(code):
        return None
    test = ast.get_source_segment(code, node.test) or ast.unparse(node.test)
    for arm, other, negate in ((node.body, node.orelse, False), (node.orelse, node.body, True)):
        spelled = ast.get_source_segment(code, other) or ""
        if isinstance(arm, ast.Constant) and arm.value == "dynamic" and DOTTED.match(spelled):
            return (f"not ({test})" if negate else test), spelled
    return None


def _reads_only(code: str) -> bool:
    """An expression of names, attributes, constants, comparisons and conditionals: it
    may be evaluated again where the scaler updates, with the same value."""
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        return False
    return all(isinstance(n, PURE_NODES) for n in ast.walk(tree))


def _cast_free(level: object, args: dict[str, Arg]) -> bool | None:
    """apex casts nothing under these options (None: known only at run time).

    apex casts through its patched torch functions (O1's default) and through the model's
    `cast_model_type` (float16 by default under O2 and O3); with neither, compute stays
    fp32 and only the loss scaling is left.
    """
    given = args.get("patch_torch_functions")
    patch = given.literal if given is not None else None
    cast = _cast_kind(args.get("cast_model_type"))
    if level is NOT_LITERAL:
        return False if patch in (None, True) and cast == "fp16" else None
    if level not in ("O1", "O2", "O3"):
        return False
    if given is None:
        patch = level == "O1"
    if "cast_model_type" not in args:
        cast = "fp32" if level == "O1" else "fp16"  # O1 leaves the model as it is
    if patch is NOT_LITERAL or cast is None:
        return None
    return not patch and cast == "fp32"


def _cast_kind(cast: Arg | None) -> str | None:
    """What a `cast_model_type` casts the model to: "fp16" (the default), "fp32" (nothing
    changes), or None (decided at run time)."""
    if cast is None or cast.literal is None or cast.code in FP16_TYPES:
        return "fp16"
    if cast.literal is False or cast.code in FP32_TYPES:
        return "fp32"
    return None


def _cast_free_message(level: object, args: dict[str, Arg], scaling: bool) -> tuple[str, str]:
    options = ", ".join(
        f"{name}={args[name].code}"
        for name in ("patch_torch_functions", "cast_model_type")
        if name in args
    )
    return (
        f"{level} with {options}: apex cast nothing (compute stays fp32), "
        "so no autocast regions; "
        + ("the GradScaler scales the loss as apex did" if scaling else "no loss scaling either"),
        SAFE,
    )


def _option_messages(args: dict[str, Arg], out: ScalerOptions, cast_free: bool) -> None:
    """Options with no exact native form: the closest is written, the difference reported."""
    num_losses = args["num_losses"].literal if "num_losses" in args else None
    if num_losses is NOT_LITERAL or (
        isinstance(num_losses, (int, float)) and not isinstance(num_losses, bool) and num_losses > 1
    ):
        out.messages.append(
            ("num_losses: one GradScaler serves every loss; apex kept one scale per loss", NUMERICS)
        )
    if "min_loss_scale" in args and args["min_loss_scale"].literal is not None:
        out.messages.append(
            (f"min_loss_scale={args['min_loss_scale'].code}: GradScaler has no floor", NUMERICS)
        )
    if "max_loss_scale" in args:
        out.messages.append(
            (f"max_loss_scale={args['max_loss_scale'].code}: GradScaler has no cap", NUMERICS)
        )
    if "cast_model_outputs" in args and args["cast_model_outputs"].literal is not None:
        out.messages.append(
            (
                "cast_model_outputs: outputs are no longer cast; compute the loss under autocast",
                NUMERICS,
            )
        )
    if "cast_model_type" in args and args["cast_model_type"].literal is not None and not cast_free:
        out.messages.append(("cast_model_type: the model keeps fp32 weights", NUMERICS))
