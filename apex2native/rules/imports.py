"""A2N101: apex imports, their guards and availability flags go once nothing uses them."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor
from libcst.helpers import get_full_name_for_node

from apex2native.apex_imports import (
    APEX_PROBE_HELPERS,
    apex_guards,
    bound_name,
    catches_import_errors,
    guard_flags,
    has_apex_import,
    is_apex_import,
    is_migrated_import,
    star_used,
)
from apex2native.context import FileContext
from apex2native.facts import FileFacts
from apex2native.findings import SAFE
from apex2native.guards import unbound_names
from apex2native.index import TreeIndex, descendants
from apex2native.rules.base import Rule
from apex2native.scopes import absolute_name, import_qualified
from apex2native.syntax import apex_message, taken_arm


class Imports(Rule):
    """apex imports are removed once unused, with the try/except guards around them.

    Before:
        try:
            from apex import amp
            APEX_AVAILABLE = True
        except ImportError:
            amp = None
            APEX_AVAILABLE = False
    After:
        APEX_AVAILABLE = True          (only if the flag is still read somewhere)

    Tests of availability (`amp is not None`, `if amp:`) are always true after the
    migration and become `True`/`False`. `import torch` is added where new code needs it.
    Imports still used by code no rule could rewrite stay, next to their TODO.
    """

    code = "A2N101"
    name = "imports"
    tier = SAFE
    summary = "remove unused apex imports and guards; add import torch"

    def apply(self, ctx: FileContext) -> None:
        for ref, name in ctx.names.refs():
            if name not in ("apex", "apex.amp") or not isinstance(ref, cst.Name):
                continue
            if name == "apex.amp" and ctx.names.switch_held(ref):
                continue  # a test of the amp switch (rules/amp_switch.py)
            parent = ctx.index.parent(ref)
            target: cst.CSTNode = ref
            if m.matches(
                parent,
                m.Comparison(comparisons=[m.ComparisonTarget(m.Is() | m.IsNot(), m.Name("None"))]),
            ):
                value = not isinstance(parent.comparisons[0].operator, cst.Is)  # type: ignore[union-attr]
                target = parent  # type: ignore[assignment]
            elif isinstance(parent, (cst.If, cst.IfExp, cst.While)) and parent.test is ref:
                value = True
            elif isinstance(parent, (cst.BooleanOperation, cst.UnaryOperation)):
                value = True
            else:
                continue
            group = object()
            ctx.availability.append(group)
            self._fold(ctx, group, target, value)
            ctx.tx.handle(group, ref)
            ctx.tx.note(
                group, ref, self.code, f"apex availability test is now always {value}", SAFE
            )

        for read in _probe_flag_tests(ctx):
            group = object()
            ctx.availability.append(group)
            self._fold(ctx, group, read, True)
            ctx.tx.note(
                group,
                read,
                self.code,
                f"`{ctx.index.code(read)}` (another module's apex probe) is now always True",
                SAFE,
            )

    def _fold(self, ctx: FileContext, group: object, node: cst.CSTNode, value: bool) -> None:
        """Replace a test known to be `value`, folding the expression or statement around it."""
        parent = ctx.index.parent(node)
        if isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not):
            return self._fold(ctx, group, parent, not value)
        if isinstance(parent, cst.BooleanOperation) and not node_has_parens(node):
            absorbing = isinstance(parent.operator, cst.Or) == value
            if absorbing:
                return self._fold(ctx, group, parent, value)
            keep_left = parent.right is node
            ctx.tx.edits.replace_node(group, parent, lambda u: u.left if keep_left else u.right)
            return None
        if isinstance(parent, cst.IfExp) and parent.test is node:
            ctx.tx.edits.replace_node(group, parent, lambda u: u.body if value else u.orelse)
            return None
        if isinstance(parent, cst.If) and parent.test is node and not _is_elif(ctx, parent):
            ctx.tx.edits.replace_statement(group, parent, lambda u: taken_arm(u, value))
            return None
        ctx.tx.edits.replace_node(group, node, lambda _u: cst.Name("True" if value else "False"))
        return None

    def cleanup(
        self,
        module: cst.Module,
        needs_torch: bool,
        remove_unused: bool = True,
        keep: set[str] | frozenset[str] = frozenset(),
        facts: FileFacts | None = None,
        defined: set[str] | frozenset[str] = frozenset(),
    ) -> cst.Module:
        """After the rewrite: drop what became unused, add `import torch` if needed.

        `keep`: names other modules still import from this one; `facts.aliases`: project
        names that stand for apex, whose imports go like apex's once unused; `defined`:
        names the rewrite now defines in this module, whose apex imports go though read.
        """
        if remove_unused:
            facts = facts if facts is not None else FileFacts()
            index = TreeIndex(module, facts.module, facts.is_package)
            # a group that added torch code may have been dropped since
            needs_torch = needs_torch and any(
                n.value == "torch" for n in index.within(module, cst.Name)
            )
            flags = facts.probe_flags
            cleanup = _Cleanup(index, None, keep, facts.aliases, facts.imported, flags, defined)
            if cleanup.ambiguous:
                unused = precise_unused(index, cleanup)
                cleanup = _Cleanup(
                    index, unused, keep, facts.aliases, facts.imported, flags, defined
                )
            module = module.visit(cleanup)
            if _imports_helper(module):
                # its last reads may have been the tests of the guards that just went
                index = TreeIndex(module, facts.module, facts.is_package)
                module = module.visit(
                    _Cleanup(index, None, keep, facts.aliases, facts.imported, flags, defined)
                )
        if needs_torch and not _imports_torch(module):
            context = CodemodContext()
            AddImportsVisitor.add_needed_import(context, "torch")
            module = AddImportsVisitor(context).transform_module(module)
        return module


def _probe_flag_tests(ctx: FileContext) -> list[cst.CSTNode]:
    """Tests of another module's amp probe flag (`if fp16 and not HAS_APEX:`, `use_amp =
    fp16 and utils.HAS_APEX`), as the plan found this file spells it: True once native AMP
    replaces apex, as the module's own flags are. Only in a file that uses apex itself
    (whose migration the fold then follows), and only where nothing here binds the name."""
    flags = ctx.facts.probe_flags
    if not flags or not ctx.names.refs():
        return []
    index = ctx.index
    bound = {
        t.target.value
        for t in index.within(ctx.module, cst.AssignTarget)
        if isinstance(t.target, cst.Name)
    }
    out: list[cst.CSTNode] = []
    for node in index.within(ctx.module, cst.Name, cst.Attribute):
        parent = index.parent(node)
        if isinstance(parent, cst.Attribute) or index.code(node) not in flags:
            continue
        if isinstance(node, cst.Name) and (
            node.value in bound or any(b.kind != "import" for b in index.bindings(node))
        ):
            continue  # a parameter or local of that name shadows the flag
        if any(isinstance(a, (cst.Import, cst.ImportFrom)) for a in index.ancestors(node)):
            continue
        if isinstance(parent, (cst.BooleanOperation, cst.UnaryOperation)) or (
            isinstance(parent, (cst.If, cst.IfExp, cst.While)) and parent.test is node
        ):
            out.append(node)
    return out


def star_supplies_torch(module: cst.Module) -> bool:
    """`torch` is read but only a star import can bind it (`from pkg.model import *`).

    Code the rewrite adds then uses that same `torch`; adding `import torch` would make a
    second run resolve names the first could not, so the result would not be a fixed point.
    """
    stars = any(
        m.matches(s, m.SimpleStatementLine(body=[m.ImportFrom(names=m.ImportStar())]))
        for s in module.body
    )
    if not stars:
        return False
    reads = False
    for node in descendants(module):
        if isinstance(node, cst.Name):
            reads = reads or node.value == "torch"
        elif isinstance(node, cst.AssignTarget):
            if isinstance(node.target, cst.Name) and node.target.value == "torch":
                return False
        elif isinstance(node, (cst.Import, cst.ImportFrom)) and _binds_torch(node):
            return False
    return reads


def _binds_torch(node: cst.Import | cst.ImportFrom) -> bool:
    if isinstance(node.names, cst.ImportStar):
        return False
    for alias in node.names:
        bound = alias.asname.name if alias.asname else alias.name
        while isinstance(bound, cst.Attribute):
            bound = bound.value
        if isinstance(bound, cst.Name) and bound.value == "torch":
            return True
    return False


CONSTANT_FLAG = m.SimpleStatementLine(
    body=[
        m.Assign(
            targets=[m.AssignTarget(m.Name())],
            value=m.Name("True") | m.Name("False") | m.Name("None"),
        )
    ]
) | m.SimpleStatementLine(body=[m.Pass()])


def _imports_helper(module: cst.Module) -> bool:
    """A top-level import of an apex probe helper (`is_apex_available`) is left."""
    return any(
        isinstance(s, cst.SimpleStatementLine)
        and isinstance(s.body[0], cst.ImportFrom)
        and not isinstance(s.body[0].names, cst.ImportStar)
        and any(get_full_name_for_node(a.name) in APEX_PROBE_HELPERS for a in s.body[0].names)
        for s in module.body
    )


def _imports_torch(module: cst.Module) -> bool:
    """A top-level import already binds `torch` (`import torch`, `import torch.optim`): the
    common case, with no visitor pass."""
    return any(
        isinstance(s, cst.SimpleStatementLine)
        and isinstance(s.body[0], cst.Import)
        and any(
            alias.asname is None
            and (get_full_name_for_node(alias.name) or "").split(".")[0] == "torch"
            for alias in s.body[0].names
        )
        for s in module.body
    )


class _Cleanup(cst.CSTTransformer):
    """Removes apex imports whose names nothing reads any more, and the guards around them.

    A name counts as used wherever it occurs outside import statements, which is
    conservative: a shadowing local keeps the import rather than risk an unbound name.
    """

    def __init__(
        self,
        index: TreeIndex,
        unused: set[tuple[int, str]] | None = None,
        keep: set[str] | frozenset[str] = frozenset(),
        aliases: dict[str, str] | None = None,
        imported: set[str] | frozenset[str] = frozenset(),
        probe_flags: set[str] | frozenset[str] = frozenset(),
        defined: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.index = index
        self.keep = keep
        self.defined = defined  # names the rewrite defines here: their apex imports go
        self.aliases = aliases or {}
        self.imported = set(imported)  # names other modules import from this one
        self.probe_flags = probe_flags  # other modules' amp probe flags imported here
        module = index.module
        guards = apex_guards(index)
        inside_guards = {id(n) for g in guards for n in index.subtree(g)}
        imports = index.within(module, cst.Import, cst.ImportFrom)
        # inside a guard, the flags it sets are not uses; anything else it reads is
        flag_targets = {
            id(t.target)
            for a in index.within(module, cst.Assign)
            if id(a) in inside_guards
            for t in a.targets
        }
        skip = {id(n) for imp in imports for n in index.subtree(imp)} | flag_targets
        skip |= {id(n.attr) for n in index.within(module, cst.Attribute)}
        skip |= {id(n.keyword) for n in index.within(module, cst.Arg) if n.keyword}
        names = index.within(module, cst.Name)
        self.used = {n.value for n in names if id(n) not in skip}
        self.unused = unused
        self.migrated = {id(i): self._removable(i) for i in imports}
        bound = {
            bound_name(a)
            for imp in imports
            for a in _aliases(imp)
            if self.migrated[id(imp)] is not None and bound_name(a) in self.migrated[id(imp)]
        }
        self.ambiguous = unused is None and bool((bound - set(defined)) & self.used)
        self.flags = guard_flags(index)
        self.flags_read = {
            n.value for n in names if n.value in self.flags and id(n) not in inside_guards
        }
        self.dead_nones = self._dead_nones(imports)
        self.guarded = inside_guards
        # apex stays imported outside guards (a held-back unit, a TODO): the guards that probe
        # for it keep probing, or `check_apex_available()` would say True without apex
        self.apex_stays = any(
            is_apex_import(imp)
            and id(imp) not in inside_guards
            and any(self._keep(imp, a) for a in _aliases(imp))
            for imp in imports
        )
        self.stars = self._unused_stars(imports)
        # a guard whose flag other modules import stays as it is (A2N115 marks it); a
        # module read whole (`getattr(utils, name)`) may be read for any flag
        frozen = {
            id(n)
            for g in guards
            if any(
                isinstance(t.target, cst.Name)
                and (t.target.value in self.imported or "*" in self.imported)
                for a in index.within(g, cst.Assign)
                for t in a.targets
            )
            for n in index.subtree(g)
        }
        self.hot = index.paths_to(
            [
                *(
                    i
                    for i in imports
                    if (self.migrated[id(i)] or id(i) in self.stars) and id(i) not in frozen
                ),
                *(g for g in guards if id(g) not in frozen),
                *self.dead_nones,
            ]
        )
        self._empty: set[int] = set()
        self._markers: list[cst.CSTNode] = []  # kept alive: their ids must not be reused

    def _unused_stars(self, imports) -> set[int]:
        """`from apex.fp16_utils import *` when the module reads no name the star could bind
        (a name no statement of its own binds, and one the apex module exports): the star
        supplies nothing that is used, and goes."""
        stars = [
            i
            for i in imports
            if isinstance(i, cst.ImportFrom)
            and isinstance(i.names, cst.ImportStar)
            and is_apex_import(i)
        ]
        if not stars:
            return set()
        text = self.index.module.code
        unbound = unbound_names(text)
        return {
            id(i)
            for i in stars
            if not star_used(get_full_name_for_node(i.module) or "", unbound, self.imported, text)
        }

    def _removable(self, node: cst.CSTNode) -> set[str] | None:
        """The names an import binds that may go once unused (apex's, or re-exports of it)."""
        aliases = _aliases(node)
        if is_migrated_import(node):
            return {bound_name(a) for a in aliases}
        helpers = {
            bound_name(a)
            for a in aliases
            if isinstance(node, cst.ImportFrom)
            and (
                get_full_name_for_node(a.name) in APEX_PROBE_HELPERS
                or bound_name(a) in self.probe_flags
            )
            and not {bound_name(a), "*"} & self.imported  # another module reads it here
        }
        if not self.aliases or not isinstance(node, cst.ImportFrom):
            return helpers or None
        module = get_full_name_for_node(node.module) if node.module else None
        out = helpers
        for alias in aliases:
            name = get_full_name_for_node(alias.name) or ""
            qualified = import_qualified(module, name, len(node.relative))
            absolute = absolute_name(qualified, self.index.module_name, self.index.is_package)
            if absolute in self.aliases:
                out.add(bound_name(alias))
        return out or None

    def _keep(self, node: cst.CSTNode, alias: cst.ImportAlias) -> bool:
        bound = bound_name(alias)
        if bound in self.defined and is_apex_import(node):
            return False
        removable = self.migrated.get(id(node))
        if bound in self.keep or removable is None or bound not in removable:
            return True
        if self.unused is not None:
            return (id(node), bound) not in self.unused
        return bound in self.used

    def on_visit(self, node: cst.CSTNode) -> bool:
        return id(node) in self.hot

    def leave_Import(self, original_node, updated_node):
        if not self.migrated.get(id(original_node)) or self._probing(original_node):
            return updated_node
        names = [a for a in updated_node.names if self._keep(original_node, a)]
        if not names:
            return cst.RemoveFromParent()
        return updated_node.with_changes(names=_fix_commas(names))

    def leave_ImportFrom(self, original_node, updated_node):
        if id(original_node) in self.stars and not self._probing(original_node):
            return cst.RemoveFromParent()
        if (
            not self.migrated.get(id(original_node))
            or isinstance(updated_node.names, cst.ImportStar)
            or self._probing(original_node)
        ):
            return updated_node
        names = [a for a in updated_node.names if self._keep(original_node, a)]
        if not names:
            return cst.RemoveFromParent()
        if len(names) == len(updated_node.names):
            return updated_node
        return updated_node.with_changes(names=_fix_commas(names))

    def _probing(self, node: cst.CSTNode) -> bool:
        """An apex import in a guard while apex stays: it still answers "is apex here?"."""
        return self.apex_stays and id(node) in self.guarded and is_apex_import(node)

    def _dead_nones(self, imports) -> list[cst.CSTNode]:
        """`amp = None` (the arm where apex did not import) once nothing reads `amp`."""
        names = {
            name
            for imp in imports
            for name in self.migrated[id(imp)] or ()
            if not self.index.reads.get(name) and name not in self.keep
        }
        out = []
        for assign in self.index.within(self.index.module, cst.Assign):
            if (
                len(assign.targets) == 1
                and isinstance(assign.targets[0].target, cst.Name)
                and assign.targets[0].target.value in names
                and m.matches(assign.value, m.Name("None"))
            ):
                out.append(assign)
        return out

    def leave_Assign(self, original_node, updated_node):
        if any(original_node is dead for dead in self.dead_nones):
            return cst.RemoveFromParent()
        return updated_node

    def leave_Else(self, original_node, updated_node):
        body = updated_node.body.body
        if body and all(self._dead(s) for s in body):
            return cst.RemoveFromParent()
        return updated_node

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if not updated_node.body:
            marker = cst.SimpleStatementLine([cst.Pass()], leading_lines=updated_node.leading_lines)
            self._empty.add(id(marker))
            self._markers.append(marker)
            return marker
        return updated_node

    def leave_Try(self, original_node, updated_node):
        if not has_apex_import(self.index, original_node.body):
            return updated_node
        # what is left once the apex imports went, less its lines saying apex is there
        body = [s for s in _lines(updated_node.body) if not apex_message(s)]
        if not (
            catches_import_errors(original_node)
            or (updated_node.finalbody is None and all(m.matches(s, CONSTANT_FLAG) for s in body))
        ):
            return updated_node  # `except AttributeError:` around what is left may matter
        if any(isinstance(n, (cst.Import, cst.ImportFrom)) for n in descendants(updated_node.body)):
            return updated_node
        kept = [s for s in body if not self._dead(s)]
        if updated_node.orelse is not None:
            kept += [s for s in _lines(updated_node.orelse.body) if not self._dead(s)]
        if not kept:
            marker = cst.SimpleStatementLine([cst.Pass()], leading_lines=updated_node.leading_lines)
            self._empty.add(id(marker))
            self._markers.append(marker)
            return marker
        kept[0] = kept[0].with_changes(
            leading_lines=[*updated_node.leading_lines, *kept[0].leading_lines]
        )
        return cst.FlattenSentinel(kept)

    def leave_If(self, original_node, updated_node):
        """`if is_apex_available(): from apex import amp` goes with its import."""
        if not has_apex_import(self.index, original_node.body) or updated_node.orelse is not None:
            return updated_node
        if all(self._dead(s) for s in _lines(updated_node.body)):
            marker = cst.SimpleStatementLine([cst.Pass()], leading_lines=updated_node.leading_lines)
            self._empty.add(id(marker))
            self._markers.append(marker)
            return marker
        return updated_node

    def _dead(self, stmt: cst.CSTNode) -> bool:
        """Empty after import removal, `pass`, or a flag assignment nobody reads."""
        if id(stmt) in self._empty:
            return True
        if m.matches(stmt, m.SimpleStatementLine(body=[m.Pass()])):
            return True
        return (
            m.matches(
                stmt, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
            )
            and stmt.body[0].targets[0].target.value in self.flags - self.flags_read - self.imported
        )  # type: ignore[attr-defined]

    def _prune(self, body, block_start: bool = True):
        """Drop emptied statements, keeping their comments; a statement that now opens its
        block loses the blank lines that separated it from the removed one."""
        out, carry = [], []
        removed = False
        for stmt in body:
            if id(stmt) in self._empty:
                carry.extend(line for line in stmt.leading_lines if line.comment is not None)
                removed = True
                continue
            if not out and removed and block_start and not carry:
                lines = list(stmt.leading_lines)
                while lines and lines[0].comment is None:
                    lines.pop(0)
                stmt = stmt.with_changes(leading_lines=lines)
            if carry:
                stmt = stmt.with_changes(leading_lines=[*carry, *stmt.leading_lines])
                carry = []
            out.append(stmt)
        return out, carry

    def leave_IndentedBlock(self, original_node, updated_node):
        body, carry = self._prune(updated_node.body)
        if not body:
            body = [cst.SimpleStatementLine([cst.Pass()], leading_lines=carry)]
            carry = []
        return updated_node.with_changes(body=body, footer=[*carry, *updated_node.footer])

    def leave_Module(self, original_node, updated_node):
        body, carry = self._prune(updated_node.body, block_start=False)
        return updated_node.with_changes(body=body, footer=[*carry, *updated_node.footer])


def _lines(block: cst.BaseSuite) -> list[cst.BaseStatement]:
    """A block's statements as lines: `try: x = 1; y = 2` holds small statements."""
    if isinstance(block, cst.SimpleStatementSuite):
        return [
            cst.SimpleStatementLine([s.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)])
            for s in block.body
        ]
    return list(block.body)


def _aliases(node: cst.CSTNode) -> list[cst.ImportAlias]:
    names = getattr(node, "names", ())
    return list(names) if not isinstance(names, cst.ImportStar) else []


def precise_unused(index: TreeIndex, cleanup: _Cleanup) -> set[tuple[int, str]]:
    """(import node id, name) of removable imports no read refers to, by scope analysis."""
    used = index.used_imports()
    unused: set[tuple[int, str]] = set()
    for node in index.within(index.module, cst.Import, cst.ImportFrom):
        for name in cleanup.migrated.get(id(node)) or ():
            if (id(node), name) not in used:
                unused.add((id(node), name))
    return unused


def node_has_parens(node: cst.CSTNode) -> bool:
    return bool(getattr(node, "lpar", ()))


def _is_elif(ctx: FileContext, node: cst.If) -> bool:
    parent = ctx.index.parent(node)
    return isinstance(parent, cst.If) and parent.orelse is node


def _fix_commas(names: list[cst.ImportAlias]) -> list[cst.ImportAlias]:
    last = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return [*names[:-1], last]
