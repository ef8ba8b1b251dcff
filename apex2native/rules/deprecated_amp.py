"""A2N901: deprecated `torch.cuda.amp.*` spellings become `torch.amp.*` (a rename table).

A working spelling is only upgraded when the project's oldest torch has the new one, and never
where the code already chooses between the two (a compatibility fallback).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.index import dotted
from apex2native.rules.base import Rule
from apex2native.syntax import with_appended
from apex2native.target import RENAMES, allows

# What a missing API raises, and the broad handlers a fallback may use instead.
API_ERRORS = {
    "ImportError",
    "ModuleNotFoundError",
    "AttributeError",
    "TypeError",
    "NameError",
    "Exception",
    "BaseException",
}
FEATURE_PROBE = m.Call(func=m.Name("hasattr") | m.Name("getattr"))
VERSION_NAME = re.compile(r"version|torch\w*\d", re.IGNORECASE)
EXIT = m.Return() | m.Raise() | m.Continue() | m.Break()
EXITS = m.IndentedBlock(
    body=[m.ZeroOrMore(), m.SimpleStatementLine(body=[m.ZeroOrMore(), EXIT])]
) | m.SimpleStatementSuite(body=[m.ZeroOrMore(), EXIT])
NEW_API = ("torch.amp", "torch.autocast", "torch.GradScaler")
LAST_PARTS = frozenset(old.rsplit(".", 1)[1] for old in RENAMES)


class DeprecatedAmp(Rule):
    """The deprecated CUDA-specific AMP names move to the device-generic `torch.amp` API.

    Before:
        scaler = torch.cuda.amp.GradScaler(init_scale=1024)
        with torch.cuda.amp.autocast(enabled=use_amp):
    After:
        scaler = torch.amp.GradScaler("cuda", init_scale=1024)
        with torch.amp.autocast("cuda", enabled=use_amp):

    Same behaviour (the old names forward to the new ones and warn since PyTorch 2.4).

    Only where the project's oldest torch (--target-torch, else its torch pin) has the new
    name: torch.amp.autocast from 1.12, torch.amp.GradScaler("cuda") from 2.3,
    torch.amp.custom_fwd/custom_bwd(device_type=...) from 2.4. With no pin, the newest torch.
    Compatibility code stays as it is: an old spelling in a try/except next to the new one,
    under `if hasattr(torch.amp, ...)` or a torch version check, or through a name bound
    more than one way (`try: from torch.amp import GradScaler except ImportError: ...`).
    """

    code = "A2N901"
    name = "deprecated-amp"
    tier = SAFE
    summary = "torch.cuda.amp.* -> torch.amp.* with the device, where the target torch has it"

    def apply(self, ctx: FileContext) -> None:
        may_rename = _may_name_old_api(ctx)
        kept = _kept_names(ctx, may_rename) | ctx.options.pinned_amp_names
        for node in ctx.index.within(ctx.module, cst.Call, cst.Decorator):
            if isinstance(node, cst.Call):
                ref = node.func
            elif isinstance(node, cst.Decorator) and not isinstance(node.decorator, cst.Call):
                ref = node.decorator
            else:
                continue
            if not may_rename(ref):
                continue
            old = ctx.names.resolve_name(ref) or ""
            rename = RENAMES.get(old)
            if rename is None or not allows(ctx.options.target_torch, rename[2]):
                continue
            if isinstance(node, cst.Call) and ctx.names.is_removed(node):
                continue
            if any(old == k or old.startswith(k + ".") for k in kept):
                continue
            if _compatibility_code(ctx, ref):
                continue
            if isinstance(node, cst.Call):
                self._call(ctx, node, *rename[:2])
            else:
                self._decorator(ctx, node, *rename[:2])

    def _device_arg(self, ctx: FileContext, how: str) -> cst.Arg:
        kind, _, value = how.partition(":")
        if kind == "positional":
            return cst.Arg(cst.parse_expression(ctx.gen.lit(value)))
        key, _, device = value.partition("=")
        return cst.Arg(
            cst.parse_expression(ctx.gen.lit(device)),
            keyword=cst.Name(key),
            equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
        )

    def _call(self, ctx: FileContext, call: cst.Call, new: str, how: str) -> None:
        device = self._device_arg(ctx, how)
        group = object()
        moved = OLD_POSITIONS.get(new, ())
        positional = [a for a in call.args if a.keyword is None]
        if moved and (len(positional) > len(moved) or any(a.star for a in call.args)):
            return  # `autocast(*args)`: which parameter each fills is not known

        def rename(updated: cst.Call) -> cst.Call:
            args = list(updated.args)
            if moved:  # `autocast(use_amp)`: the old first parameter is `enabled`, the new `dtype`
                args = [
                    (
                        a.with_changes(
                            keyword=cst.Name(moved[i]),
                            equal=cst.AssignEqual(
                                cst.SimpleWhitespace(""), cst.SimpleWhitespace("")
                            ),
                        )
                        if a.keyword is None
                        else a
                    )
                    for i, a in enumerate(args)
                ]
            if how.startswith("positional"):
                first = device.with_changes(
                    comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                )
                args = [first, *args] if args else [device]
            else:
                args = with_appended(args, device)
            return updated.with_changes(func=cst.parse_expression(new), args=args)

        ctx.tx.edits.replace_node(group, call, rename)
        ctx.needs_torch = True
        ctx.tx.note(group, call, self.code, f"{ctx.index.code(call.func)} -> {new}", SAFE)

    def _decorator(self, ctx: FileContext, deco: cst.Decorator, new: str, how: str) -> None:
        device = self._device_arg(ctx, how)
        group = object()
        call = cst.Call(func=cst.parse_expression(new), args=[device])
        ctx.tx.edits.replace_node(group, deco, lambda u: u.with_changes(decorator=call))
        ctx.needs_torch = True
        ctx.tx.note(
            group, deco, self.code, f"@{ctx.index.code(deco.decorator)} -> @{new}(...)", SAFE
        )


# the old positional parameters of a renamed call whose new signature puts others first:
# `torch.cuda.amp.autocast(enabled, dtype, cache_enabled)` against
# `torch.amp.autocast(device_type, dtype, enabled, cache_enabled)`
OLD_POSITIONS = {"torch.amp.autocast": ("enabled", "dtype", "cache_enabled")}


def _may_name_old_api(ctx: FileContext) -> Callable[[cst.CSTNode], bool]:
    """A cheap test that is true of every expression that names an old API: an attribute
    ending in one of their last names, or a name that an import, def or class binds (only
    those resolve to anything). Resolving every name of a large file costs more than the
    rest of the rule."""
    bound = {n.name.value for n in ctx.index.within(ctx.module, cst.FunctionDef, cst.ClassDef)}
    for node in ctx.index.within(ctx.module, cst.Import, cst.ImportFrom):
        if isinstance(node.names, cst.ImportStar):
            continue
        for alias in node.names:
            name = alias.evaluated_alias or alias.evaluated_name
            bound.add(name if isinstance(node, cst.ImportFrom) else name.split(".")[0])

    def may_rename(node: cst.CSTNode) -> bool:
        if isinstance(node, cst.Attribute):
            return node.attr.value in LAST_PARTS
        return isinstance(node, cst.Name) and node.value in bound

    return may_rename


def _kept_names(ctx: FileContext, may_rename: Callable[[cst.CSTNode], bool]) -> set[str]:
    """Old names the file uses other than by calling them (`isinstance(s, GradScaler)`,
    a base class): objects it makes must stay instances of the old class, so the calls keep
    the old spelling too."""
    kept: set[str] = set()
    for node in ctx.index.within(ctx.module, cst.Name, cst.Attribute):
        if not may_rename(node):
            continue
        parent = ctx.index.parent(node)
        if isinstance(parent, cst.Attribute) and parent.value is node:
            continue  # part of a longer name
        if isinstance(parent, (cst.Call, cst.Decorator)) and (
            getattr(parent, "func", None) is node or getattr(parent, "decorator", None) is node
        ):
            continue
        if isinstance(parent, (cst.ImportAlias, cst.ImportFrom)):
            continue
        name = ctx.names.resolve_name(node) or ""
        if name in RENAMES and not any(
            isinstance(a, (cst.Import, cst.ImportFrom)) for a in ctx.index.ancestors(node)
        ):
            kept.add(name)
    return kept


def _compatibility_code(ctx: FileContext, ref: cst.CSTNode) -> bool:
    """The old spelling is one side of a choice the code makes between torch versions."""
    if _in_fallback(ctx, ref):
        return True
    base = ref
    while isinstance(base, cst.Attribute):
        base = base.value
    if not isinstance(base, cst.Name):
        return False
    bindings = ctx.index.bindings(base)
    if len({(b.kind, b.qualified) for b in bindings}) > 1:
        return True  # `GradScaler` is the new class on one path, the old one on another
    sources = {b.source for b in bindings if b.kind == "import"}
    return any(
        id(stmt) in sources and _in_fallback(ctx, stmt)
        for stmt in ctx.index.within(ctx.module, cst.Import, cst.ImportFrom)
    )


def _in_fallback(ctx: FileContext, node: cst.CSTNode) -> bool:
    """`node` sits in a branch chosen by a torch feature or version test, or in one arm of a
    try/if whose other arm uses the new API (an `if` that returns early counts as an arm)."""
    child = node
    for anc in ctx.index.ancestors(node):
        if isinstance(anc, (cst.IndentedBlock, cst.Module)):
            if _after_early_exit(ctx, anc.body, child):
                return True
        elif isinstance(anc, (cst.If, cst.IfExp)):
            if _is_probe(ctx, anc.test):
                return True
            arms = [anc.body, anc.orelse] if anc.orelse is not None else []
            if any(arm is not child and _uses_new_api(ctx, arm) for arm in arms):
                return True
        elif isinstance(anc, (cst.Try, cst.TryStar)) and _catches_api_errors(anc):
            parts = [anc.body, *anc.handlers]
            if any(part is not child and _uses_new_api(ctx, part) for part in parts):
                return True
            if child is anc.body and isinstance(node, (cst.Import, cst.ImportFrom)):
                return True  # `try: from torch.cuda.amp import X except ImportError: ...`
        child = anc
    return False


def _after_early_exit(ctx: FileContext, body, stmt: cst.CSTNode) -> bool:
    """`if hasattr(torch.amp, ...): return <new>` before `stmt` makes it the `else` arm."""
    for earlier in body:
        if earlier is stmt:
            return False
        if (
            isinstance(earlier, cst.If)
            and m.matches(earlier.body, EXITS)
            and (_is_probe(ctx, earlier.test) or _uses_new_api(ctx, earlier.body))
        ):
            return True
    return False


def _catches_api_errors(node: cst.Try | cst.TryStar) -> bool:
    """A handler for what a missing torch API raises (or a broad one)."""
    for handler in node.handlers:
        if handler.type is None:
            return True
        if isinstance(handler.type, cst.Tuple):
            types = [element.value for element in handler.type.elements]
        else:
            types = [handler.type]
        if any((dotted(t) or "").split(".")[-1] in API_ERRORS for t in types):
            return True
    return False


def _is_probe(ctx: FileContext, test: cst.CSTNode) -> bool:
    """`hasattr(torch.amp, ...)`, `getattr(torch, ...)`, `torch.__version__`, `TORCH_2_3`."""
    for node in ctx.index.within(test, cst.Call, cst.Name):
        if m.matches(node, FEATURE_PROBE) and node.args:
            target = ctx.names.resolve_name(node.args[0].value) or ""
            if target == "torch" or target.startswith("torch."):
                return True
        elif isinstance(node, cst.Name) and VERSION_NAME.search(node.value):
            return True
    return False


def _uses_new_api(ctx: FileContext, part: cst.CSTNode) -> bool:
    """`part` names `torch.amp.*`, `torch.autocast` or `torch.GradScaler` (or imports them)."""
    for node in ctx.index.within(part, cst.ImportFrom, cst.Import, cst.Attribute, cst.Name):
        if isinstance(node, cst.ImportFrom):
            names = [dotted(node.module) or ""] if node.module is not None else []
        elif isinstance(node, cst.Import):
            names = [dotted(alias.name) or "" for alias in node.names]
        else:
            names = [ctx.names.resolve_name(node) or ""]
        if any(n == api or n.startswith(api + ".") for n in names for api in NEW_API):
            return True
    return False
