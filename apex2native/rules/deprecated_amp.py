"""A2N901: deprecated `torch.cuda.amp.*` spellings become `torch.amp.*` (a rename table)."""

from __future__ import annotations

import libcst as cst

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule
from apex2native.syntax import with_appended

# old qualified name -> (new callable, how the device is given)
RENAMES: dict[str, tuple[str, str]] = {
    "torch.cuda.amp.GradScaler": ("torch.amp.GradScaler", "positional:cuda"),
    "torch.cuda.amp.autocast": ("torch.amp.autocast", "positional:cuda"),
    "torch.cpu.amp.autocast": ("torch.amp.autocast", "positional:cpu"),
    "torch.cuda.amp.custom_fwd": ("torch.amp.custom_fwd", "keyword:device_type=cuda"),
    "torch.cuda.amp.custom_bwd": ("torch.amp.custom_bwd", "keyword:device_type=cuda"),
}


class DeprecatedAmp(Rule):
    """The deprecated CUDA-specific AMP names move to the device-generic `torch.amp` API.

    Before:
        scaler = torch.cuda.amp.GradScaler(init_scale=1024)
        with torch.cuda.amp.autocast(enabled=use_amp):
    After:
        scaler = torch.amp.GradScaler("cuda", init_scale=1024)
        with torch.amp.autocast("cuda", enabled=use_amp):

    Same behaviour (the old names forward to the new ones and warn since PyTorch 2.4).
    """

    code = "A2N901"
    name = "deprecated-amp"
    tier = SAFE
    summary = "torch.cuda.amp.* -> torch.amp.* with the device"

    def apply(self, ctx: FileContext) -> None:
        for node in ctx.index.within(ctx.module, cst.Call, cst.Decorator):
            if isinstance(node, cst.Call):
                name = ctx.names.resolve_name(node.func)
                if name in RENAMES and not ctx.names.is_removed(node):
                    self._call(ctx, node, *RENAMES[name])
            elif isinstance(node, cst.Decorator) and not isinstance(node.decorator, cst.Call):
                name = ctx.names.resolve_name(node.decorator)
                if name in RENAMES:
                    self._decorator(ctx, node, *RENAMES[name])

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

        def rename(updated: cst.Call) -> cst.Call:
            args = list(updated.args)
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
