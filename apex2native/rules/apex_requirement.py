"""A2N118: a check that turns mixed precision off (or stops) when apex is missing goes."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.apex_imports import APEX_PROBE_HELPERS, apex_guards, is_apex_import, try_flags
from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule
from apex2native.rules.leftovers import dunder_all
from apex2native.syntax import conjuncts

# The flag is False: `not F`, `F is False`, `F == False`, `F is not True`, `F != True`;
# or a helper says apex is missing: `not is_apex_available()`.
MISSING = m.UnaryOperation(operator=m.Not(), expression=m.Name() | m.Call(args=[])) | m.Comparison(
    left=m.Name(),
    comparisons=[
        m.ComparisonTarget(m.Is() | m.Equal(), m.Name("False"))
        | m.ComparisonTarget(m.IsNot() | m.NotEqual(), m.Name("True"))
    ],
)
# What such a check does: switch something off, say so, or stop.
TURN_OFF = m.Assign(value=m.Name("False") | m.Name("None")) | m.Expr(value=m.Call()) | m.Raise()


class ApexRequirement(Rule):
    """`if fp16 and not HAS_AMP: fp16 = False` is deleted, and the probe with it.

    Before:
        try:
            from apex import amp
            IS_AMP_AVAILABLE = True
        except ImportError:
            IS_AMP_AVAILABLE = False
        ...
        if is_fp16 and (IS_AMP_AVAILABLE is False):
            logger.debug("Apex not installed. switching off FP16 training")
            is_fp16 = False
    After:
        (both gone: native mixed precision is part of torch)

    The probe's flag says whether apex's amp could be imported, and the check only switches
    fp16 off (or raises, or logs) when it could not; `if FLAG: <body> else: <that>` keeps
    its body, in place of the `if` (nothing, when only the initialize was in it). Native AMP
    needs nothing installed, so the check can never fire again: under apex the program ran
    with the flag True, and it keeps doing what it did then. Only probes that import apex's
    amp qualify (other apex imports beside it may be there: `apex.parallel`; a probe of a
    fused kernel alone stands for that kernel), only when the flag is set nowhere but in the
    guard's `try` and handler, every read of it is such a check, and no other module can
    read it.

    `if not is_apex_available(): raise ...` (transformers' helper, or a copy of it) goes
    the same way, and the helper's import once nothing else calls it. Both hold only when
    no apex is left in the file: a kept apex unit still needs its requirement.
    """

    code = "A2N118"
    name = "apex-requirement"
    tier = SAFE
    summary = "if fp16 and not HAS_APEX: fp16 = False -> deleted (native AMP is always there)"

    def apply(self, ctx: FileContext) -> None:
        elsewhere = ctx.facts.exports | ctx.facts.imported | dunder_all(ctx)
        for guard in apex_guards(ctx.index):
            if not _probes_amp(ctx, guard):
                continue
            for flag in sorted(try_flags(ctx.index, guard) - elsewhere):
                if not _says_present(ctx, guard, flag):
                    continue  # `APEX_MISSING = False` in the try: the other way round
                checks = _checks(ctx, guard, flag)
                if checks:
                    self._delete(ctx, flag, checks)
        if not ctx.names.refs():
            return  # the apex it asks for is used elsewhere (another module, a library)
        for helper in sorted(APEX_PROBE_HELPERS):
            for call in ctx.index.calls_named(helper):
                check = _check_of(ctx, call)
                if check is not None:
                    self._delete(ctx, f"{ctx.index.code(call)}", [check])

    def _delete(self, ctx: FileContext, flag: str, checks: list[cst.If]) -> None:
        group = object()
        ctx.availability.append(group)  # holds only once apex is gone from the file
        for check in checks:
            ctx.tx.edits.replace_statement(group, check, _present_arm)
            ctx.tx.note(
                group,
                check,
                self.code,
                f"check for a missing apex removed: `{flag}` is always True once native "
                "AMP replaces apex (torch has it built in)",
                SAFE,
            )


def _probes_amp(ctx: FileContext, guard: cst.Try) -> bool:
    """The guard imports `apex` or `apex.amp`, and nothing but apex (`apex.parallel` beside
    it, as haystack's guard does: once no apex is left in the file, those went too)."""
    imports = [n for n in ctx.index.within(guard.body, cst.Import, cst.ImportFrom)]
    if not imports or not all(is_apex_import(n) for n in imports):
        return False
    amp = False
    for node in imports:
        if isinstance(node, cst.Import):
            amp |= any(ctx.index.code(a.name) in ("apex", "apex.amp") for a in node.names)
        elif isinstance(node.names, cst.ImportStar):
            return False
        else:
            module = ctx.index.code(node.module) if node.module else ""
            names = {ctx.index.code(a.name) for a in node.names}
            amp |= (module == "apex" and "amp" in names) or module == "apex.amp"
    return amp


def _says_present(ctx: FileContext, guard: cst.Try, flag: str) -> bool:
    """The flag is set True where the import worked and False where it failed, only (not
    again in the try's `else:` or `finally:`, which may turn it off with apex installed)."""
    after = [part for part in (guard.orelse, guard.finalbody) if part is not None]
    if any(
        ctx.index.code(t.target) == flag
        for part in after
        for a in ctx.index.within(part, cst.Assign)
        for t in a.targets
    ):
        return False
    values = {
        (part is guard.body, ctx.index.code(a.value))
        for part in (guard.body, *guard.handlers)
        for a in ctx.index.within(part, cst.Assign)
        if any(ctx.index.code(t.target) == flag for t in a.targets)
    }
    return values == {(True, "True"), (False, "False")}


def _checks(ctx: FileContext, guard: cst.Try, flag: str) -> list[cst.If] | None:
    """The `if` statements reading the flag, when every read is a check for missing apex."""
    checks: list[cst.If] = []
    for name in ctx.index.within(ctx.module, cst.Name):
        if name.value != flag or ctx.index.contains(guard, name):
            continue
        if isinstance(ctx.index.parent(name), cst.NameItem):
            continue  # `global FLAG`: a declaration, neither a read nor a set
        check = _check_of(ctx, name)
        if check is None:
            return None
        if all(c is not check for c in checks):
            checks.append(check)
    return checks or None


def _present_arm(updated: cst.If) -> list[cst.BaseStatement]:
    """What a check leaves: nothing, or for `if FLAG: <body> else: <turn off>` its body
    (a body left with nothing but `pass`, its initialize gone, goes too)."""
    if updated.orelse is None:
        return []
    suite = updated.body
    if isinstance(suite, cst.SimpleStatementSuite):  # `if FLAG: x = 1` on one line
        body: list[cst.BaseStatement] = [cst.SimpleStatementLine(body=list(suite.body))]
    else:
        body = list(suite.body)  # type: ignore[arg-type]
    if all(m.matches(s, m.SimpleStatementLine(body=[m.Pass()])) for s in body):
        return []
    body[0] = body[0].with_changes(leading_lines=[*updated.leading_lines, *body[0].leading_lines])
    return body


def _check_of(ctx: FileContext, read: cst.Name | cst.Call) -> cst.If | None:
    """The `if` that does nothing but turn fp16 off (or stop) when `read` says no apex, or
    that tests `read` alone and does only that in its `else`."""
    positive = _positive_check(ctx, read)
    if positive is not None:
        return positive
    term = ctx.index.parent(read)
    if not m.matches(term, MISSING):
        return None
    node: cst.CSTNode | None = term
    while node is not None and not isinstance(node, cst.If):
        node = ctx.index.parent(node)
    if not isinstance(node, cst.If) or node.orelse is not None:
        return None
    if not any(t is term for t in conjuncts(node.test)):
        return None  # `F is False` must decide the whole test
    parent = ctx.index.parent(node)
    if isinstance(parent, cst.If) and parent.orelse is node:
        return None  # an elif
    if not all(_turns_off(s) for s in node.body.body):  # type: ignore[union-attr]
        return None
    return node


def _positive_check(ctx: FileContext, read: cst.Name | cst.Call) -> cst.If | None:
    """`if FLAG: <body> else: <turn off>`: the flag is the whole test, not of an elif."""
    node = ctx.index.parent(read)
    if not isinstance(node, cst.If) or node.test is not read:
        return None
    parent = ctx.index.parent(node)
    if isinstance(parent, cst.If) and parent.orelse is node:
        return None
    orelse = node.orelse
    if not isinstance(orelse, cst.Else):
        return None
    if not all(_turns_off(s) for s in orelse.body.body):  # type: ignore[union-attr]
        return None
    return node


def _turns_off(stmt: cst.BaseStatement) -> bool:
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    return all(m.matches(s, TURN_OFF) for s in stmt.body)
