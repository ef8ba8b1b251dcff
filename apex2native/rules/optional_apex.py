"""A2N115: an optional apex import with a fallback of its own keeps only the fallback."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.apex_imports import (
    catches_import_errors,
    falls_back,
    is_apex_import,
    star_used,
)
from apex2native.context import FileContext
from apex2native.findings import NUMERICS, SAFE
from apex2native.guards import unbound_names
from apex2native.rules.apex_modules import (
    ADAM_SPELLINGS,
    SAME_NAME,
    TABLE,
    apex_only_keywords,
    shared_positions,
)
from apex2native.rules.base import Rule
from apex2native.syntax import apex_message


class OptionalApex(Rule):
    """`try: <apex import> except ImportError: <fallback>` becomes the fallback.

    Before:
        try:
            from apex.normalization.fused_layer_norm import FusedLayerNorm as BertLayerNorm
        except ImportError:
            logger.info("Better speed can be achieved with apex installed ...")
            BertLayerNorm = torch.nn.LayerNorm
    After:
        BertLayerNorm = torch.nn.LayerNorm

    The project already says what runs without apex, and every machine without apex runs
    it today; the migration takes that branch rather than a second replacement of its own.
    The hint about installing apex goes with the import. Only whole-module apex classes
    qualify (not `amp`, which other rules migrate), and only when the fallback binds every
    name the import bound; the fallback's own numbers may differ from apex's fused kernel
    (an eps, a Python implementation), which the report says. A fallback that sets a name
    to `None` is no replacement, and is not taken. A flag the guard sets (`HAS_APEX = True`
    / `False`) takes the fallback's value only where it is read as the test of the apex
    arm (`if HAS_APEX:` around uses of the guarded names); read anywhere else, or by another
    module (`from utils import HAS_APEX`, `utils.HAS_APEX`), it may mean "mixed precision is
    on", so the guard gets a TODO. A call of a guarded apex class that passes what only apex
    takes (`DDP(model, delay_allreduce=True)`, `**kwargs`, a second positional argument)
    never ran with the fallback: the guard stays and the call gets a TODO. A guarded
    `from apex.fp16_utils import *` goes with its hint when the module reads no name that
    its own statements do not bind (nothing it could supply is used).
    """

    code = "A2N115"
    name = "optional-apex"
    tier = NUMERICS
    summary = "optional apex import with a fallback: the fallback branch is kept"

    def apply(self, ctx: FileContext) -> None:
        for node in ctx.index.within(ctx.module, cst.Try):
            if self._unused_star(ctx, node) or self._dynamic_lookup(ctx, node):
                continue
            fallback = self._fallback(ctx, node)
            if fallback is None:
                self._unwrap(ctx, node)
                continue
            differs = _differing_fallback(ctx, node, fallback)
            if differs:  # the table rules move apex's class where it is used, or mark it
                ctx.tx.note(
                    object(),
                    node,
                    self.code,
                    f"optional apex import: {differs}; with apex installed this program ran "
                    "apex's, so the fallback is not taken",
                    SAFE,
                )
                continue
            read = _read_flags(ctx, node)
            calls = _apex_only_calls(ctx, node)
            if read or calls:
                self._keep(ctx, node, read, calls)
                continue
            group = object()
            lines = list(node.leading_lines)
            body = [s for s in fallback if not apex_message(s)]
            body[0] = body[0].with_changes(leading_lines=[*lines, *body[0].leading_lines])
            ctx.tx.edits.replace_statement(group, node, lambda _u, b=body: b)
            inside = {id(n) for n in ctx.index.subtree(node.body)}
            names = _binds(list(node.body.body))
            for ref, _name in ctx.names.refs():
                if id(ref) in inside or ctx.index.code(ref).split(".")[0] in names:
                    ctx.tx.handle(group, ref)  # the uses now mean the fallback
            kept = ", ".join(f"`{n}`" for n in sorted(names))
            ctx.tx.note(
                group,
                node,
                self.code,
                f"optional apex import: the project's own fallback for {kept} is kept; it is "
                "what runs without apex today, but it need not compute what apex's class did "
                "(FusedAdam decays weights like AdamW, FusedLayerNorm uses eps=1e-5, "
                "convert_syncbn_model syncs BatchNorm statistics across GPUs): check it",
                NUMERICS,
            )

    def _keep(
        self, ctx: FileContext, node: cst.Try, read: str | None, calls: list[tuple[cst.Call, str]]
    ) -> None:
        """The guard stays as it is: no other rule moves its imports, and where a call
        needs apex's class, no other rule rewrites the uses of the names it binds."""
        kept = object()
        for stmt in node.body.body:  # type: ignore[attr-defined]
            for imp in ctx.index.within(stmt, cst.ImportFrom):
                ctx.tx.handle(kept, imp)
        if read:
            ctx.tx.todo(
                node,
                self.code,
                f"optional apex import: `{read}` is read, and the fallback's False may "
                "not be what that code needs without apex (mixed precision, a fused "
                "kernel, an error that asks for apex), so the fallback was not taken; "
                "decide what the flag means once apex is gone",
            )
        if not calls:
            return
        names = _binds(list(node.body.body))  # type: ignore[attr-defined]
        for ref, _name in ctx.names.refs():
            if ctx.index.code(ref).split(".")[0] in names:
                ctx.tx.handle(kept, ref)
        for call, why in calls:
            ctx.tx.todo(
                call,
                self.code,
                f"optional apex import kept: this call passes {why}, so the fallback was not "
                "taken (without apex this call may never have run): translate it by hand, "
                "then remove the guard",
            )

    def _dynamic_lookup(self, ctx: FileContext, node: cst.Try) -> bool:
        """`try: opt = getattr(import_module("apex.optimizers"), name)` / `except (ImportError,
        AttributeError): <next place to look>`: a lookup by name that goes on without apex.
        The next place is what every machine without apex runs; names only apex defined
        (`FusedLAMB`) now fail there, loudly, instead of finding apex's class."""
        if node.orelse is not None or node.finalbody is not None or len(node.handlers) != 1:
            return False
        handler = node.handlers[0]
        if not falls_back(node) or handler.name is not None:
            return False
        if not isinstance(node.body, cst.IndentedBlock) or len(node.body.body) != 1:
            return False
        module = _apex_lookup(ctx, node.body.body[0])
        if module is None or not isinstance(handler.body, cst.IndentedBlock):
            return False
        group = object()
        lines = list(node.leading_lines)
        body = list(handler.body.body)
        body[0] = body[0].with_changes(leading_lines=[*lines, *body[0].leading_lines])
        ctx.tx.edits.replace_statement(group, node, lambda _u: body)
        for call in ctx.index.calls_named("import_module", node.body):
            ctx.tx.handle(group, call)
        ctx.tx.note(
            group,
            node,
            self.code,
            f"lookup in `{module}` removed: the search goes on where it went without apex; "
            f"a name only `{module}` defined (FusedAdam, FusedLAMB, ...) is no longer found "
            "and fails there (torch.optim.AdamW(fused=True) replaces FusedAdam)",
            NUMERICS,
        )
        return True

    def _unused_star(self, ctx: FileContext, node: cst.Try) -> bool:
        """`try: from apex.fp16_utils import *` / `except ImportError: print(hint)` in a
        module that reads no name the star could bind (one its own statements do not bind
        and, where known, one the apex module exports): the star supplies nothing that is
        used, so the guard goes (without apex it only printed the hint)."""
        if node.orelse is not None or node.finalbody is not None or len(node.handlers) != 1:
            return False
        handler = node.handlers[0]
        if not catches_import_errors(node) or handler.name is not None:
            return False
        if not isinstance(node.body, cst.IndentedBlock) or not isinstance(
            handler.body, cst.IndentedBlock
        ):
            return False
        modules = []
        for stmt in node.body.body:
            small = stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ()
            if not (
                len(small) == 1
                and isinstance(small[0], cst.ImportFrom)
                and isinstance(small[0].names, cst.ImportStar)
                and is_apex_import(small[0])
            ):
                return False
            modules.append(ctx.index.code(small[0].module))
        if not all(apex_message(s) or _is_pass(s) for s in handler.body.body):
            return False
        text = ctx.index.text or ctx.module.code
        unbound = unbound_names(text)
        if any(star_used(module, unbound, ctx.facts.imported, text) for module in modules):
            return False
        group = object()
        ctx.tx.edits.replace_statement(group, node, lambda _u: [])
        for ref, _name in ctx.names.refs():
            if ctx.index.contains(node, ref):
                ctx.tx.handle(group, ref)
        ctx.tx.note(
            group,
            node,
            self.code,
            "unused `from apex... import *` and its ImportError hint removed: the module "
            "reads no name the star import could supply",
            SAFE,
        )
        return True

    def _unwrap(self, ctx: FileContext, node: cst.Try) -> None:
        """`try: from apex.parallel import DDP as A` / `except ImportError: from torch...
        import DDP as B`: once the import moves to torch it cannot fail, and the handler's
        imports would never run, leaving `B` unbound. Both imports are kept, in order."""
        if node.orelse is not None or node.finalbody is not None or len(node.handlers) != 1:
            return
        if not catches_import_errors(node) or not _moved_imports(ctx, node):
            return
        handler = node.handlers[0]
        if handler.name is not None or not isinstance(handler.body, cst.IndentedBlock):
            return
        extra = [s for s in handler.body.body if not apex_message(s)]
        if not all(_is_import(s) for s in extra):
            return
        taken = _binds(list(node.body.body))
        extra = [s for s in extra if not (_binds([s]) <= taken)]
        group = object()
        lines = list(node.leading_lines)

        def unwrap(updated: cst.Try) -> list[cst.BaseStatement]:
            body = [*updated.body.body, *extra]  # type: ignore[attr-defined]
            body[0] = body[0].with_changes(leading_lines=[*lines, *body[0].leading_lines])
            return body

        ctx.tx.edits.replace_statement(group, node, unwrap)
        ctx.tx.note(
            group,
            node,
            self.code,
            "the apex import now always succeeds: its ImportError fallback's imports run "
            "unconditionally",
            NUMERICS,
        )

    def _fallback(self, ctx: FileContext, node: cst.Try) -> list[cst.BaseStatement] | None:
        """The handler's statements, when the try only imports apex classes it replaces."""
        if node.orelse is not None or node.finalbody is not None or len(node.handlers) != 1:
            return None
        if not falls_back(node):
            return None  # without apex the import raises ImportError: this handler runs
        handler = node.handlers[0]
        if not isinstance(node.body, cst.IndentedBlock):
            return None
        imported: set[str] = set()
        flags: set[str] = set()
        for stmt in node.body.body:
            small = stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ()
            flag = _flag(small[0]) if len(small) == 1 else None
            if flag is not None:
                if _assignments(ctx, flag) != 2:
                    return None  # set elsewhere too: other guards may read it as theirs
                imported.add(flag)  # `HAS_APEX = True`: the fallback must set it too
                flags.add(flag)
                continue
            if len(small) != 1 or not isinstance(small[0], cst.ImportFrom):
                return None
            imp = small[0]
            if not is_apex_import(imp) or isinstance(imp.names, cst.ImportStar):
                return None
            module = ctx.index.code(imp.module) if imp.module is not None else ""
            if module == "apex" or module.startswith("apex.amp"):
                return None
            for alias in imp.names:
                bound = alias.asname.name if alias.asname else alias.name
                imported.add(ctx.index.code(bound))
        if not isinstance(handler.body, cst.IndentedBlock):
            return None
        statements = list(handler.body.body)
        if not imported <= _binds(statements) or (imported - flags) & _binds_none(statements):
            return None  # `FusedAdam = None` is no replacement: its callers need the class
        if handler.name is not None and _reads_exception(ctx, handler, statements):
            return None  # `except ImportError as e:` whose kept lines read `e`
        return statements


def _read_flags(ctx: FileContext, node: cst.Try) -> str | None:
    """A flag the guard sets whose fallback value (False) may be wrong where it is read.

    It is right only where the flag chooses the apex class's own arm (`if HAS_APEX:` whose
    body uses the guarded names, like apex DDP's keywords): without apex that arm cannot
    run. Anywhere else (a negation, a condition with other terms, another module) the flag
    may stand for "mixed precision is on" or "apex is there, do not raise", which stays True.
    """
    guarded = _binds(list(node.body.body))  # type: ignore[attr-defined]
    for flag in _flags(node):
        if flag in ctx.facts.imported or "*" in ctx.facts.imported:
            return flag
        names = guarded - {flag}
        for read in ctx.index.reads.get(flag, []):
            if ctx.index.contains(node, read):
                continue
            test = ctx.index.parent(read)
            if not (isinstance(test, cst.If) and test.test is read):
                return flag
            if not any(_reads_in(ctx, test.body, n) for n in names):
                return flag
    return None


def _apex_only_calls(ctx: FileContext, node: cst.Try) -> list[tuple[cst.Call, str]]:
    """Calls of a guarded apex class that pass what only apex's class takes (a keyword
    torch's class lacks, `**kwargs`, a second positional argument), with what that is.

    The fallback never ran with such a call: without apex it fails (`delay_allreduce`) or
    reads an argument another way. A call in the `if HAS_APEX:` arm is not counted: the
    fallback's False leaves that arm dead.
    """
    flags = _flags(node)
    out = []
    for name, bound in _guarded_classes(ctx, node):
        for read in ctx.index.reads.get(bound, []):
            call = ctx.index.parent(read)
            if not (isinstance(call, cst.Call) and call.func is read):
                continue
            if ctx.index.contains(node, read) or _in_flag_arm(ctx, read, flags):
                continue
            why = _apex_only_argument(ctx, call, name)
            if why:
                out.append((call, why))
    return out


def _guarded_classes(ctx: FileContext, node: cst.Try) -> list[tuple[str, str]]:
    """(apex name, bound name) of the guarded imports of classes in apex_modules' table."""
    out = []
    for imp in ctx.index.within(node.body, cst.ImportFrom):
        if imp.module is None or isinstance(imp.names, cst.ImportStar):
            continue
        module = ctx.index.code(imp.module)
        for alias in imp.names:
            name = f"{module}.{ctx.index.code(alias.name)}"
            bound = ctx.index.code(alias.asname.name if alias.asname else alias.name)
            if name in TABLE or name in ADAM_SPELLINGS:
                out.append((name, bound))
    return out


# guarded apex names whose usual fallbacks compute something else: FusedAdam decays like
# AdamW with `weight_decay=0` (torch's AdamW defaults to 0.01, Adam couples the decay), and
# a fallback for convert_syncbn_model is most often "no SyncBN at all"
NOT_A_FALLBACK = {
    **{
        name: "torch.optim.AdamW(..., weight_decay=0.0), as A2N301 writes it"
        for name in ADAM_SPELLINGS
    },
    "apex.parallel.convert_syncbn_model": "torch.nn.SyncBatchNorm.convert_sync_batchnorm",
}


def _differing_fallback(ctx: FileContext, node: cst.Try, fallback: list[cst.BaseStatement]) -> str:
    """Why the fallback is not what the guarded apex name computed, or "": only where its
    usual fallbacks differ (NOT_A_FALLBACK), and the guard sets no flag (a flag keeps
    choosing between arms, which taking the fallback keeps consistent)."""
    if _flags(node):
        return ""
    for name, bound in _guarded_classes(ctx, node):
        native = NOT_A_FALLBACK.get(name)
        if native is not None and (
            name in ADAM_SPELLINGS or _names(ctx, fallback, bound) != native
        ):
            return f"the fallback for `{bound}` is not apex's {name} (that is {native})"
    return ""


def _names(ctx: FileContext, statements: list[cst.BaseStatement], bound: str) -> str:
    """What an import or an alias of the fallback binds `bound` to, dotted ("": other)."""
    for stmt in statements:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                module = ctx.index.code(small.module) if small.module is not None else ""
                for alias in small.names:
                    if ctx.index.code(alias.asname.name if alias.asname else alias.name) == bound:
                        return f"{module}.{ctx.index.code(alias.name)}"
            elif isinstance(small, cst.Assign) and len(small.targets) == 1:
                target = small.targets[0].target
                if isinstance(target, cst.Name) and target.value == bound:
                    return ctx.names.resolve_name(small.value) or ""
    return ""


def _apex_only_argument(ctx: FileContext, call: cst.Call, name: str) -> str:
    """What in `call` only apex's class `name` takes this way, or "" (nothing)."""
    keywords = apex_only_keywords(name)
    short = name.rsplit(".", 1)[-1]
    positional = 0
    for arg in call.args:
        if arg.star:
            spelled = f"{arg.star}{ctx.index.code(arg.value)}"
            return f"`{spelled}`, which may hold what only apex's {short} takes"
        if arg.keyword is not None and arg.keyword.value in keywords:
            return f"`{arg.keyword.value}=`, which only apex's {short} takes"
        positional += arg.keyword is None
    if positional > shared_positions(name):
        return (
            f"{positional} positional arguments, which apex's {short} may read as other "
            "parameters than the fallback does"
        )
    return ""


def _in_flag_arm(ctx: FileContext, read: cst.CSTNode, flags: list[str]) -> bool:
    """`read` is in the body of `if HAS_APEX:` testing one of the guard's flags."""
    return any(
        isinstance(up, cst.If)
        and isinstance(up.test, cst.Name)
        and up.test.value in flags
        and ctx.index.contains(up.body, read)
        for up in ctx.index.ancestors(read)
    )


def _flags(node: cst.Try) -> list[str]:
    """The flags the guard's try sets (`HAS_APEX = True`), in order."""
    out = []
    for stmt in node.body.body:  # type: ignore[attr-defined]
        small = stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ()
        flag = _flag(small[0]) if len(small) == 1 else None
        if flag is not None:
            out.append(flag)
    return out


def _reads_in(ctx: FileContext, block: cst.CSTNode, name: str) -> bool:
    return any(ctx.index.contains(block, read) for read in ctx.index.reads.get(name, []))


def _moved_imports(ctx: FileContext, node: cst.Try) -> bool:
    """The try imports only apex classes whose import moves to torch (it cannot fail)."""
    if not isinstance(node.body, cst.IndentedBlock) or not node.body.body:
        return False
    for stmt in node.body.body:
        small = stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ()
        if len(small) != 1 or not isinstance(small[0], cst.ImportFrom):
            return False
        imp = small[0]
        if not is_apex_import(imp) or isinstance(imp.names, cst.ImportStar) or imp.module is None:
            return False
        module = ctx.index.code(imp.module)
        if not all(f"{module}.{a.name.value}" in SAME_NAME for a in imp.names):
            return False
    return True


def _binds(statements: list[cst.BaseStatement]) -> set[str]:
    """Names the statements bind at their own level."""
    out: set[str] = set()
    for stmt in statements:
        if isinstance(stmt, (cst.ClassDef, cst.FunctionDef)):
            out.add(stmt.name.value)
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Assign):
                    out |= {t.target.value for t in small.targets if isinstance(t.target, cst.Name)}
                elif isinstance(small, (cst.Import, cst.ImportFrom)) and not isinstance(
                    small.names, cst.ImportStar
                ):
                    for alias in small.names:
                        target = alias.asname.name if alias.asname else alias.name
                        if isinstance(target, cst.Name):
                            out.add(target.value)
    return out


def _binds_none(statements: list[cst.BaseStatement]) -> set[str]:
    """Names the statements set to `None`."""
    out: set[str] = set()
    for stmt in statements:
        for small in stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ():
            if isinstance(small, cst.Assign) and m.matches(small.value, m.Name("None")):
                out |= {t.target.value for t in small.targets if isinstance(t.target, cst.Name)}
    return out


def _flag(small: cst.BaseSmallStatement) -> str | None:
    """`HAS_APEX = True`: a name set to a constant, the flag a guard records."""
    if not (
        isinstance(small, cst.Assign)
        and len(small.targets) == 1
        and isinstance(small.targets[0].target, cst.Name)
    ):
        return None
    value = small.value
    constant = (cst.Integer, cst.Float, cst.SimpleString)
    if isinstance(value, constant) or (
        isinstance(value, cst.Name) and value.value in ("True", "False", "None")
    ):
        return small.targets[0].target.value
    return None


def _assignments(ctx: FileContext, name: str) -> int:
    return sum(
        1
        for a in ctx.index.within(ctx.module, cst.Assign)
        for t in a.targets
        if isinstance(t.target, cst.Name) and t.target.value == name
    )


def _is_pass(stmt: cst.BaseStatement) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(
        isinstance(small, cst.Pass) for small in stmt.body
    )


def _is_import(stmt: cst.BaseStatement) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(
        isinstance(small, (cst.Import, cst.ImportFrom)) for small in stmt.body
    )


LOOKUP = m.Assign(
    targets=[m.AssignTarget(m.Name())],
    value=m.Call(
        func=m.Name("getattr"),
        args=[m.Arg(m.Call(args=[m.Arg(m.SimpleString(), keyword=None)])), m.Arg(keyword=None)],
    ),
)


def _apex_lookup(ctx: FileContext, stmt: cst.BaseStatement) -> str | None:
    """The apex module of `x = getattr(import_module("apex.<m>"), name)`, the whole statement."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    if not m.matches(stmt.body[0], LOOKUP):
        return None
    inner = stmt.body[0].value.args[0].value  # type: ignore[attr-defined]
    if ctx.names.resolve_name(inner.func) != "importlib.import_module":
        return None
    module = str(inner.args[0].value.evaluated_value)
    return module if module.split(".")[0] == "apex" else None


def _reads_exception(
    ctx: FileContext, handler: cst.ExceptHandler, statements: list[cst.BaseStatement]
) -> bool:
    """A kept fallback statement reads the caught exception's name (an install hint that
    does goes with the import)."""
    name = ctx.index.code(handler.name.name)  # type: ignore[union-attr]
    return any(
        ctx.index.code(n) == name
        for s in statements
        if not apex_message(s)
        for n in ctx.index.within(s, cst.Name)
    )
