"""A2N190: apex uses no rule could rewrite are marked for a person, never dropped silently."""

from __future__ import annotations

import re
from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m
from libcst.helpers import get_full_name_for_node

from apex2native.apex_imports import (
    APEX_EXTENSIONS,
    bound_name,
    extension_imported,
    falls_back,
    is_apex_import,
    star_supplies,
    try_flags,
)
from apex2native.context import FileContext
from apex2native.findings import MANUAL
from apex2native.guards import unbound_names
from apex2native.index import COMPOUND
from apex2native.rules.base import Rule

AMP_API = {"initialize", "scale_loss", "master_params", "state_dict", "load_state_dict"}
PRESENCE_CHECKS = ("find_spec", "find_loader")  # importlib.util's, pkgutil's
DYNAMIC_IMPORTS = {"importlib.import_module", "__import__", "builtins.__import__"}
MARKER = re.compile(r"# TODO\(apex2native\): (A2N\d+) (.*)$")
HINTS = {
    "apex.amp.register_half_function": "wrap the function with torch.amp.custom_fwd(cast_inputs=torch.float16)",
    "apex.amp.register_float_function": "wrap the function with torch.amp.custom_fwd(cast_inputs=torch.float32)",
    "apex.amp.register_promote_function": "cast mixed half/float inputs to float in the function",
    "apex.amp.half_function": "use torch.amp.custom_fwd(device_type=..., cast_inputs=torch.float16)",
    "apex.amp.float_function": "use torch.amp.custom_fwd(device_type=..., cast_inputs=torch.float32)",
    "apex.amp.promote_function": "cast mixed half/float inputs to float in the function",
    "apex.amp.init": "the pre-0.1 amp API: use torch.amp.autocast and torch.amp.GradScaler",
    "apex.amp._amp_state": "private apex state has no native equivalent (GradScaler options?)",
}


class Leftovers(Rule):
    """Every apex reference that no rule rewrote gets a TODO on the line above it.

    The file keeps its apex import while such a reference remains, so it stays importable
    wherever apex still is, and `rewrite --check` keeps failing until a person decides.
    So do imports of apex's compiled extensions (`import amp_C`), and unused apex imports
    of a file no rule changes (an availability probe whose flag goes False without apex),
    and checks whether apex is installed (`skipif(find_spec("apex"))`), which answer no
    from now on.

    Before:
        import amp_C
        try:
            from apex import amp
            HAS_APEX = True
        except ImportError:
            HAS_APEX = False
    After:
        # TODO(apex2native): A2N190 `amp_C` is a compiled extension only an apex build ...
        import amp_C
        try:
            # TODO(apex2native): A2N190 `from apex import amp` kept: only `HAS_APEX` ...
            from apex import amp
            HAS_APEX = True
        except ImportError:
            HAS_APEX = False
    """

    code = "A2N190"
    name = "leftover"
    tier = MANUAL
    summary = "apex use with no automatic rewrite: TODO marker"

    def apply(self, ctx: FileContext) -> None:
        """Nothing to plan yet: which references are left is known only at the end."""

    def finalize(self, ctx: FileContext) -> None:
        self._marked(ctx)
        self._dynamic_imports(ctx)
        self._presence_checks(ctx)
        self._extensions(ctx)
        self._star_imported(ctx)
        self._amp_parameters(ctx)
        self._apex_stars(ctx)
        handled = ctx.tx.handled()
        for ref, name in ctx.names.refs():
            if ref in handled or ctx.tx.explained(ref):
                continue
            if any(a in handled for a in ctx.index.ancestors(ref)):
                continue
            hint = next(
                (h for key, h in HINTS.items() if name == key or name.startswith(key + ".")),
                None,
            )
            message = f"`{name}` has no automatic rewrite" + (f": {hint}" if hint else "")
            if name == "apex.amp" or name.startswith("apex.amp."):
                ctx.refuse(ref, self.code, message)
            else:
                ctx.tx.todo(ref, self.code, message)

    def mark_kept_imports(self, ctx: FileContext) -> None:
        """Unused apex imports of a file no rule changed: the file would pass `--check` while
        it still imports apex, whose absence then silently turns a flag off (or fails).

        They are not dropped: a flag they set, or a module importing from this one, may be
        read where the run cannot see. Imports something here reads, or that other modules
        import from this one (or that `__all__` passes on), belong to apex code that is
        marked, or held back, where it is used; imports under `TYPE_CHECKING` never run.
        """
        used = ctx.index.used_imports()
        imported = ctx.facts.imported
        if ctx.facts.star_only:  # what the star importers read, settled after their rewrite
            imported = (imported - {"*"}) | ctx.facts.star_reads
        elsewhere = ctx.facts.exports | imported | dunder_all(ctx)
        for node in ctx.index.within(ctx.module, cst.Import, cst.ImportFrom):
            if not is_apex_import(node) or _type_checking_only(ctx, node):
                continue
            names = _bound_names(node)
            if "*" in elsewhere or (names == ["*"] and elsewhere):
                continue
            if any((id(node), n) in used or n in elsewhere for n in names):
                continue
            spelled = _spelled(node)
            flags = _guard_flags(ctx, node)
            if _in_class_body(ctx, node):
                why = (
                    "the class holds it as an attribute, which its methods may read as "
                    "`self.<name>` (no rule follows that); migrate those uses by hand"
                )
            elif flags:
                why = (
                    f"only {_listed(flags)} depends on it, and that flag is False wherever "
                    "apex is not installed; decide what it should switch, then remove the "
                    "probe by hand"
                )
            else:
                why = (
                    "nothing here uses it; remove it by hand unless a module the run did not "
                    "read imports it from here"
                )
            ctx.tx.todo(node, self.code, f"`{spelled}` kept: {why}")

    def mark_star_read_imports(self, ctx: FileContext, touched: list[cst.CSTNode]) -> bool:
        """Apex imports that stay only because a module star-imports this one and reads
        their names: its uses are not migrated there, so they are marked here. True when
        one was."""
        edited = {id(n) for n in touched}
        marked = False
        used = ctx.index.used_imports()
        for node in ctx.index.within(ctx.module, cst.Import, cst.ImportFrom):
            if not is_apex_import(node) or _type_checking_only(ctx, node):
                continue
            stmt = ctx.index.statement_of(node)
            if id(node) in edited or id(stmt) in edited:
                continue  # a rule moved it (to torch's class of the same name)
            names = [
                n
                for n in _bound_names(node)
                if n in ctx.facts.star_reads and not _binds_amp_module(node, n)
            ]
            if not names or any((id(node), n) in used for n in names):
                continue
            ctx.tx.todo(
                node,
                self.code,
                f"`{_spelled(node)}` kept: a module that star-imports this one reads "
                f"{_listed(names)}, which the tool does not follow there; migrate that use "
                "by hand",
            )
            marked = True
        return marked

    def _extensions(self, ctx: FileContext) -> None:
        """`import amp_C`: not apex.amp, but built only with apex, so the file fails to import
        wherever apex is not installed. A guarded import falls back by itself."""
        for node in ctx.index.within(ctx.module, cst.Import, cst.ImportFrom):
            name = extension_imported(node)
            if name is None or name in ctx.options.local_extensions:
                continue
            if _guard_of(ctx, node) is not None or _type_checking_only(ctx, node):
                continue
            ctx.tx.todo(node, self.code, _extension_message(name))

    def _dynamic_imports(self, ctx: FileContext) -> None:
        """`importlib.import_module("apex.amp")`: nothing follows what it returns."""
        handled = ctx.tx.handled()
        for name in ("import_module", "__import__"):
            for call in ctx.index.calls_named(name):
                if call in handled:
                    continue
                target = ctx.names.resolve_name(call.func) or ctx.index.code(call.func)
                if target not in DYNAMIC_IMPORTS or not call.args:
                    continue
                module = call.args[0].value
                if not isinstance(module, cst.SimpleString):
                    continue
                top = str(module.evaluated_value).split(".")[0]
                if top in APEX_EXTENSIONS:
                    if top not in ctx.options.local_extensions and _guard_of(ctx, call) is None:
                        ctx.tx.todo(call, self.code, _extension_message(top))
                elif top == "apex":
                    ctx.tx.todo(
                        call,
                        self.code,
                        f"apex imported dynamically (`{module.evaluated_value}`): no rule follows "
                        "what it returns; migrate this module by hand",
                    )

    def _presence_checks(self, ctx: FileContext) -> None:
        """`find_spec("apex")` (`skipif(find_spec("apex"))`, `if find_spec("apex"):`): once
        apex is gone it answers no, and what it guards (a test of apex's install error, an
        apex-only branch) now runs differently from what its author checked."""
        for name in PRESENCE_CHECKS:
            for call in ctx.index.calls_named(name):
                module = call.args[0].value if call.args else None
                if not isinstance(module, cst.SimpleString):
                    continue
                spelled = str(module.evaluated_value)
                if (spelled == "apex" or spelled.startswith("apex.")) and not _guards_an_import(
                    ctx, call
                ):
                    ctx.tx.todo(
                        call,
                        self.code,
                        f"`{name}({spelled!r})` asks whether apex is installed; after the "
                        "migration it is not: check what this guards against the native path",
                    )

    def _star_imported(self, ctx: FileContext) -> None:
        """`amp.scale_loss(...)` on an `amp` no statement binds: a star import, or an
        import in another function (a NameError waiting, or apex by a route unseen)."""
        stars = [
            n
            for n in ctx.index.within(ctx.module, cst.ImportFrom)
            if isinstance(n.names, cst.ImportStar)
        ]
        source = ", ".join(
            sorted(
                "." * len(n.relative) + (ctx.index.code(n.module) if n.module else "")
                for n in stars
            )
        )
        why = (
            f"`amp` comes from a star import ({source}), which the tool does not follow"
            if stars
            else "no statement in reach binds `amp` (imported in another function?)"
        )
        seen: set[int] = set()
        for node in ctx.index.within(ctx.module, cst.Attribute):
            if not (
                isinstance(node.value, cst.Name)
                and node.value.value == "amp"
                and node.attr.value in AMP_API
                and not ctx.index.bindings(node.value)
                and ctx.names.apex_name(node.value) is None  # a star import the plan follows
            ):
                continue
            stmt = ctx.index.statement_of(node)
            if id(stmt) in seen:
                continue
            seen.add(id(stmt))
            ctx.tx.todo(node, self.code, f"`amp.{node.attr.value}`: {why}; migrate it by hand")

    def _amp_parameters(self, ctx: FileContext) -> None:
        """`def load_checkpoint(path, amp=None): amp.load_state_dict(...)` that no call in
        the file fills (a hook a framework calls, or callers left on apex): apex.amp where a
        caller passes it, so it is marked rather than left to pass `--check`. A parameter
        with an annotation, or a def this file calls, holds what those say, not apex."""
        handled = ctx.tx.handled()
        seen: set[int] = set()
        for node in ctx.index.within(ctx.module, cst.Attribute):
            if not (
                isinstance(node.value, cst.Name)
                and node.value.value == "amp"
                and node.attr.value in AMP_API
            ):
                continue
            func = ctx.index.param_of(node.value)
            if func is None or ctx.index.calls_named(func.name.value):
                continue
            params = func.params
            every = [*params.posonly_params, *params.params, *params.kwonly_params]
            if any(p.name.value == "amp" and _says_what_it_is(p.annotation) for p in every):
                continue
            near = [node, node.value, *ctx.index.ancestors(node)]
            if any(n in handled or ctx.tx.explained(n) for n in near):
                continue
            stmt = ctx.index.statement_of(node)
            if id(stmt) in seen or ctx.tx.has_todo(node):
                continue
            seen.add(id(stmt))
            ctx.tx.todo(
                node,
                self.code,
                f"`{node.value.value}.{node.attr.value}` on the parameter "
                f"`{node.value.value}` of `{func.name.value}`: apex.amp where a caller passes "
                "it, and no rule rewrote it here; migrate it by hand",
            )

    def _apex_stars(self, ctx: FileContext) -> None:
        """`from apex.fp16_utils import *` while the module reads names no statement binds:
        apex may supply them, and no rule can tell which."""
        stars = [
            n
            for n in ctx.index.within(ctx.module, cst.ImportFrom)
            if isinstance(n.names, cst.ImportStar) and is_apex_import(n)
        ]
        if not stars:
            return
        unbound = unbound_names(ctx.index.text or ctx.module.code)
        for node in stars:
            module = ctx.index.code(node.module) if node.module is not None else ""
            supplied = sorted(star_supplies(module, unbound))
            if not supplied:
                continue
            names = ", ".join(f"`{n}`" for n in supplied[:5])
            names += ", ..." if len(supplied) > 5 else ""
            ctx.tx.todo(
                node,
                self.code,
                f"`from {module} import *` may supply {names} (read here, bound by no "
                "statement): import what is used from its native home by hand",
            )

    def _marked(self, ctx: FileContext) -> None:
        """Markers left by an earlier run still count: `--check` fails until a person acts."""
        holders = (cst.SimpleStatementLine, *COMPOUND)
        for node in ctx.index.within(ctx.module, *holders):
            lines = list(node.leading_lines)
            if ctx.module.body and node is ctx.module.body[0]:
                lines = [*ctx.module.header, *lines]  # a marker above the first line
            for line in lines:
                comment = line.comment.value if line.comment is not None else ""
                match = MARKER.match(comment)
                if match and isinstance(node, cst.CSTNode) and node is not ctx.module:
                    ctx.tx.existing_todo(node, match.group(1), match.group(2))


def _guards_an_import(ctx: FileContext, call: cst.Call) -> bool:
    """The check decides whether apex is imported (`if find_spec("apex"): from apex import
    amp`, or through a flag it sets): that import is what the other markers look at."""
    stmt = ctx.index.statement_of(call)
    tests = [call]
    if m.matches(stmt, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])):
        flag = stmt.body[0].targets[0].target.value
        tests += [n for n in ctx.index.within(ctx.module, cst.Name) if n.value == flag]
    for test in tests:
        for anc in ctx.index.ancestors(test):
            if isinstance(anc, cst.If) and ctx.index.contains(anc.test, test):
                body = ctx.index.within(anc.body, cst.Import, cst.ImportFrom)
                if any(is_apex_import(node) for node in body):
                    return True
    return False


def _bound_names(node: cst.Import | cst.ImportFrom) -> list[str]:
    return ["*"] if isinstance(node.names, cst.ImportStar) else [bound_name(a) for a in node.names]


def _says_what_it_is(annotation: cst.Annotation | None) -> bool:
    """An annotation other than `object`/`Any` (Lightning's hook takes `amp: object`)."""
    if annotation is None:
        return False
    name = get_full_name_for_node(annotation.annotation) or ""
    return name.split(".")[-1] not in ("object", "Any")


def _spelled(node: cst.Import | cst.ImportFrom) -> str:
    """The import as the marker quotes it: one line, without a `;` that may not survive."""
    code = cst.Module([]).code_for_node(node.with_changes(semicolon=cst.MaybeSentinel.DEFAULT))
    spelled = " ".join(code.split())
    return spelled if len(spelled) <= 60 else spelled[:56] + " ..."


def dunder_all(ctx: FileContext) -> set[str]:
    """Names a module lists in `__all__` (it passes them on)."""
    names: set[str] = set()
    for node in ctx.index.within(ctx.module, cst.Assign, cst.AugAssign):
        targets = (
            [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
        )
        if any(m.matches(t, m.Name("__all__")) for t in targets):
            for string in ctx.index.within(node.value, cst.SimpleString):
                names.add(str(string.evaluated_value))
    return names


def _type_checking_only(ctx: FileContext, node: cst.CSTNode) -> bool:
    """Under `if TYPE_CHECKING:`: never run, so apex's absence does not matter."""
    for a in ctx.index.ancestors(node):
        if isinstance(a, cst.If) and ctx.index.contains(a.body, node):
            test = get_full_name_for_node(a.test) or ""
            if test.split(".")[-1] == "TYPE_CHECKING":
                return True
    return False


def _in_class_body(ctx: FileContext, node: cst.CSTNode) -> bool:
    """An import that binds a class attribute (read through `self.`)."""
    scope = next(
        (a for a in ctx.index.ancestors(node) if isinstance(a, (cst.FunctionDef, cst.ClassDef))),
        None,
    )
    return isinstance(scope, cst.ClassDef)


def _extension_message(name: str) -> str:
    hint = " (torch._foreach_* ops do what its multi-tensor kernels did)" if name == "amp_C" else ""
    return (
        f"`{name}` is a compiled extension only an apex build installs, so this fails wherever "
        f"apex is not; replace what uses it by hand{hint}"
    )


def _guard_of(ctx: FileContext, node: cst.CSTNode) -> cst.Try | None:
    """The try/except ImportError whose body runs this import, if any (not its handlers or
    `else:`, and not a def inside it, which runs later, unguarded)."""
    for a in ctx.index.ancestors(node):
        if isinstance(a, (cst.FunctionDef, cst.Lambda)):
            return None
        if isinstance(a, cst.Try) and ctx.index.contains(a.body, node) and falls_back(a):
            return a
    return None


def _guard_flags(ctx: FileContext, node: cst.CSTNode) -> list[str]:
    """`HAS_APEX = True` / `= False` in the try/except that guards this import."""
    guard = _guard_of(ctx, node)
    return sorted(try_flags(ctx.index, guard)) if guard is not None else []


def _binds_amp_module(node: cst.Import | cst.ImportFrom, name: str) -> bool:
    """`name` is apex's amp module (`from apex import amp`): the star importer's own
    `amp.*` uses are marked where they are."""
    if isinstance(node, cst.ImportFrom):
        module = get_full_name_for_node(node.module) if node.module else ""
        return module == "apex" and any(
            isinstance(node.names, Sequence)
            and (a.asname.name.value if a.asname else get_full_name_for_node(a.name)) == name
            and get_full_name_for_node(a.name) == "amp"
            for a in node.names
        )
    return any(
        get_full_name_for_node(a.name) == "apex.amp" and a.asname is not None for a in node.names
    )


def _listed(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)
