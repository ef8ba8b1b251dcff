"""A2N204: apex's `create_syncbn_process_group(n)` becomes torch's `new_subgroups(n)[0]`."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.apex_imports import caught_names
from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule
from apex2native.syntax import PLAIN_READ
from apex2native.target import TorchVersion, allows

SPELLING = "apex.parallel.create_syncbn_process_group"
NATIVE = "torch.distributed.new_subgroups"
NEW_SUBGROUPS = TorchVersion(1, 10)  # torch.distributed.new_subgroups
# where a conditional expression can stand without parentheses
BARE_PARENTS = (cst.Assign, cst.AnnAssign, cst.Arg, cst.Return, cst.Element)


class SyncBNProcessGroup(Rule):
    """The process group of a sync-BN group size becomes torch's subgroup of that size.

    Before:
        group = apex.parallel.create_syncbn_process_group(args.group_size)
    After:
        group = None if args.group_size == 0 else torch.distributed.new_subgroups(args.group_size)[0]

    Both split the world into groups of `n` consecutive ranks, made in the same order on
    every rank, and return the group this rank is in; a size of 0 is the whole world
    (`None`), as apex had it. A literal size is written out (`new_subgroups(8)[0]`, `None`).
    torch raises ValueError where apex failed an assertion (a size that does not divide the
    world), so a call an `except AssertionError` handles stays. The size is read twice, so
    only a literal, a name or an attribute of one is rewritten; anything else, a torch
    target older than 1.10, or other arguments leave the call with a TODO.
    """

    code = "A2N204"
    name = "syncbn-process-group"
    tier = SAFE
    summary = (
        "apex.parallel.create_syncbn_process_group(n) -> torch.distributed.new_subgroups(n)[0]"
    )

    def apply(self, ctx: FileContext) -> None:
        for call in ctx.names.calls_to(SPELLING):
            size, why = self._size(call)
            if why is None and self._handles_assertion(ctx, call):
                why = (
                    "an `except AssertionError` around it handles apex's failure; torch raises "
                    "ValueError"
                )
            if why is None and not allows(ctx.options.target_torch, NEW_SUBGROUPS):
                why = f"{NATIVE} needs torch 1.10 (target {ctx.options.target_torch})"
            if why is not None:
                ctx.tx.todo(call, self.code, f"create_syncbn_process_group: {why}")
                continue
            group = object()
            replacement = self._replacement(size, ctx.index.parent(call))
            ctx.tx.edits.replace_node(group, call, lambda _u, r=replacement: r)
            stmt = ctx.index.statement_of(call)
            width = ctx.index.indent_width(stmt)
            ctx.tx.edits.replace_statement(group, stmt, lambda u, w=width: [ctx.gen.relayout(u, w)])
            ctx.tx.handle(group, call.func)
            ctx.needs_torch = True
            ctx.tx.note(
                group,
                call,
                self.code,
                f"create_syncbn_process_group -> {NATIVE}: groups of the same consecutive ranks",
                SAFE,
            )

    @staticmethod
    def _handles_assertion(ctx: FileContext, call: cst.Call) -> bool:
        """The call is in the body of a `try` one of whose handlers names AssertionError."""
        return any(
            isinstance(node, cst.Try)
            and ctx.index.contains(node.body, call)
            and any("AssertionError" in caught_names(h) for h in node.handlers)
            for node in ctx.index.ancestors(call)
        )

    @staticmethod
    def _size(call: cst.Call) -> tuple[cst.BaseExpression | None, str | None]:
        """The group size argument, or why the call stays."""
        if len(call.args) != 1 or call.args[0].star:
            return None, "arguments other than one group size"
        arg = call.args[0]
        if arg.keyword is not None and arg.keyword.value != "group_size":
            return None, f"unknown keyword `{arg.keyword.value}`"
        if isinstance(arg.value, cst.Integer) or m.matches(arg.value, PLAIN_READ):
            return arg.value, None
        return None, "the group size is read twice by the rewrite; bind it to a name first"

    @staticmethod
    def _replacement(size: cst.BaseExpression, parent: cst.CSTNode | None) -> cst.BaseExpression:
        bare = size.with_changes(lpar=(), rpar=())
        subgroup = cst.parse_expression(f"{NATIVE}(x)[0]")
        subgroup = subgroup.with_deep_changes(subgroup.value.args[0], value=bare)
        if isinstance(size, cst.Integer):
            return cst.Name("None") if size.evaluated_value == 0 else subgroup
        test = cst.Comparison(bare, [cst.ComparisonTarget(cst.Equal(), cst.Integer("0"))])
        choice = cst.IfExp(test=test, body=cst.Name("None"), orelse=subgroup)
        if isinstance(parent, BARE_PARENTS):
            return choice
        return choice.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
