"""Everything the rules of one file share: metadata, apex name resolution, edits, findings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst

from apex2native.codegen import CodeGen
from apex2native.edits import EditSet
from apex2native.facts import FileFacts, ScalerSpec
from apex2native.findings import MANUAL, Finding
from apex2native.index import TreeIndex
from apex2native.options import Options


def _module_values(value: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The expressions an assignment may store as is: `x`, or either arm of `x if c else y`."""
    if isinstance(value, cst.IfExp):
        return [value.body, value.orelse]
    return [value]


def m_self_method(func: cst.BaseExpression) -> bool:
    return (
        isinstance(func, cst.Attribute)
        and isinstance(func.value, cst.Name)
        and func.value.value == "self"
    )


def conjuncts(test: cst.BaseExpression) -> list[cst.BaseExpression]:
    """`a and b and c` as [a, b, c]; anything else as [itself]."""
    if (
        isinstance(test, cst.BooleanOperation)
        and isinstance(test.operator, cst.And)
        and not test.lpar
    ):
        return conjuncts(test.left) + conjuncts(test.right)
    return [test]


def taken_arm(updated: cst.If, take_body: bool) -> list[cst.BaseStatement]:
    """The statements of the arm an `if` takes when its test is known."""
    if take_body:
        return list(updated.body.body)
    if updated.orelse is None:
        return []
    if isinstance(updated.orelse, cst.If):
        return [updated.orelse]
    return list(updated.orelse.body.body)


def with_appended(items: list, new: cst.CSTNode) -> list:
    """`items` (args or elements) plus `new` at the end, with a comma before it."""
    items = list(items)
    if items and items[-1].comma == cst.MaybeSentinel.DEFAULT:
        items[-1] = items[-1].with_changes(
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        )
    return [*items, new]


BLOCKS = (cst.IndentedBlock, cst.Module, cst.SimpleStatementSuite)
SCOPES = (cst.FunctionDef, cst.Lambda, cst.ClassDef, cst.Module)


@dataclass
class Scaler:
    """One GradScaler the rewrite creates, and how code reaches it.

    `access` is the expression that names it at a use site (`scaler`, `self.scaler`);
    `home` is the node whose body can reach it: a function, a class (for `self.` access)
    or the module.
    """

    access: str
    home: cst.CSTNode
    optimizers: set[str]
    conditions: set[str] = field(default_factory=set)
    autocast_enabled: str | None = None  # code for autocast's enabled=, None: always on
    autocast: bool = True
    update_args: str = ""
    line: int = 0
    group: object = field(default_factory=object)
    init_call: cst.CSTNode | None = None
    models: tuple[str, ...] = ()
    level_hints: tuple[str, ...] = ()

    def spec(self, origin: str) -> ScalerSpec:
        """What users of this scaler elsewhere in the repo need to know about it."""
        return ScalerSpec(
            origin=origin,
            autocast=self.autocast,
            runtime=bool(self.autocast_enabled and self.autocast_enabled.endswith(".is_enabled()")),
            update_args=self.update_args,
            conditions=tuple(sorted(self.conditions)),
            level_hints=self.level_hints,
        )

    @classmethod
    def from_spec(cls, access: str, home: cst.CSTNode, spec: ScalerSpec) -> Scaler:
        return cls(
            access,
            home,
            set(),
            conditions=set(spec.conditions),
            autocast_enabled=f"{access}.is_enabled()" if spec.runtime else None,
            autocast=spec.autocast,
            update_args=spec.update_args,
            level_hints=spec.level_hints,
        )

    @property
    def key(self) -> tuple[int, str]:
        return (id(self.home), self.access)


class FileContext:
    """Per-file state for one rewrite pass over one parsed module."""

    def __init__(
        self,
        module: cst.Module,
        options: Options,
        gen: CodeGen,
        facts: FileFacts | None = None,
        text: str | None = None,
    ) -> None:
        self.facts = facts if facts is not None else FileFacts()
        self.module = module
        self.index = TreeIndex(module, self.facts.module, text=text)
        self.options = options
        self.gen = gen
        self.edits = EditSet()
        self._findings: list[tuple[object, Finding]] = []
        self.scalers: list[Scaler] = []
        self._handled: list[tuple[object, cst.CSTNode]] = []
        self.needs_torch = False
        self._apex_refs: list[tuple[cst.CSTNode, str]] | None = None
        self._todo_statements: set[cst.CSTNode] = set()
        self._explained: set[cst.CSTNode] = set()
        self._dependents: dict[tuple[int, str], list[object]] = {}
        self.sites: list = []
        self._flags: set[str] | None = None
        self._autocast: set[int] = set()
        self._removed: list[cst.CSTNode] = []
        self._held: dict[int, set[str]] = {}

    @property
    def apex_flags(self) -> set[str]:
        """Flags set by an apex import guard (`HAS_APEX = True`)."""
        if self._flags is None:
            from apex2native.apex_imports import guard_flags

            self._flags = guard_flags(self.index)
        return self._flags

    # names -----------------------------------------------------------------------------
    def apex_name(self, node: cst.CSTNode) -> str | None:
        """The apex qualified name `node` refers to through an import, else None.

        Look-alikes (`args.amp`, a local `apex`, a home-grown `scale_loss`) resolve to local
        names and are never apex. A guarded import (`amp = None` in the except arm) still is.
        """
        if not isinstance(node, (cst.Name, cst.Attribute)):
            return None
        for name in sorted(self.index.imported_names(node)):
            if name == "apex" or name.startswith("apex."):
                return name
        return self._held_apex_name(node)

    def is_availability_test(self, node: cst.BaseExpression) -> bool:
        """`amp`, `amp is not None`, `HAS_APEX`: apex is importable, always true after migration."""
        if isinstance(node, cst.Name) and self.apex_name(node) in ("apex", "apex.amp"):
            return True
        if isinstance(node, cst.Comparison) and len(node.comparisons) == 1:
            target = node.comparisons[0]
            if isinstance(target.operator, cst.IsNot) and isinstance(target.comparator, cst.Name):
                if target.comparator.value == "None" and isinstance(node.left, cst.Name):
                    return self.apex_name(node.left) in ("apex", "apex.amp")
        return isinstance(node, cst.Name) and node.value in self.apex_flags

    def _held_apex_name(self, node: cst.CSTNode) -> str | None:
        """`self.amp.scale_loss` where the class stored the amp module: `self.amp = amp`."""
        parts: list[str] = []
        current = node
        while isinstance(current, cst.Attribute):
            parts.insert(0, current.attr.value)
            current = current.value
        if not (isinstance(current, cst.Name) and current.value == "self" and parts):
            return None
        cls = next((a for a in self.ancestors(node) if isinstance(a, cst.ClassDef)), None)
        if cls is None or parts[0] not in self.held_apex(cls):
            return None
        return ".".join(["apex.amp", *parts[1:]])

    def held_apex(self, cls: cst.ClassDef) -> set[str]:
        """Attributes a class sets to the apex amp module (`self.amp = amp if fp16 else None`)."""
        key = id(cls)
        if key not in self._held:
            attrs: set[str] = set()
            self._held[key] = attrs
            for n in self.index.within(cls, cst.Assign):
                if len(n.targets) == 1:
                    target = n.targets[0].target
                    if (
                        isinstance(target, cst.Attribute)
                        and isinstance(target.value, cst.Name)
                        and target.value.value == "self"
                        and any(self.apex_name(v) == "apex.amp" for v in _module_values(n.value))
                    ):
                        attrs.add(target.attr.value)
        return self._held[key]

    def call_name(self, node: cst.CSTNode) -> str | None:
        """The apex name a call invokes (`apex.amp.scale_loss`), else None."""
        if isinstance(node, cst.Call):
            return self.apex_name(node.func)
        return None

    def apex_refs(self) -> list[tuple[cst.CSTNode, str]]:
        """Outermost apex references outside import statements, in source order."""
        if self._apex_refs is None:
            found: dict[int, tuple[cst.CSTNode, str]] = {}
            for reads in self.index.reads.values():
                for node in reads:
                    self._add_outermost(node, found)
            for cls in self.index.within(self.module, cst.ClassDef):
                held = self.held_apex(cls)
                if not held:
                    continue
                for node in self.index.within(cls, cst.Attribute):
                    if (
                        isinstance(node.value, cst.Name)
                        and node.value.value == "self"
                        and node.attr.value in held
                    ):
                        self._add_outermost(node, found)
            refs = [found[k] for k in sorted(found)]
            if self._removed:
                refs = [(n, q) for n, q in refs if not self.is_removed(n)]
            self._apex_refs = refs
        return self._apex_refs

    def _add_outermost(self, node: cst.CSTNode, found: dict) -> None:
        """Record the longest apex attribute chain that starts at `node`."""
        name = self.apex_name(node)
        if name is None:
            return
        current = node
        while True:
            parent = self.parent(current)
            if isinstance(parent, cst.Attribute) and parent.value is current:
                outer = self.apex_name(parent)
                if outer is None:
                    break
                node, name = parent, outer
            elif not (
                isinstance(parent, cst.Subscript)
                and parent.value is current
                or isinstance(parent, cst.Call)
                and parent.func is current
            ):
                break
            current = parent
        found.setdefault(self.index.order(node), (node, name))

    def calls_to(self, qualified: str) -> list[cst.Call]:
        out = []
        for ref, name in self.apex_refs():
            parent = self.parent(ref)
            if name == qualified and isinstance(parent, cst.Call) and parent.func is ref:
                out.append(parent)
        return out

    # tree navigation ---------------------------------------------------------------------
    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.index.parent(node)

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        return self.index.ancestors(node)

    def code(self, node: cst.CSTNode) -> str:
        return self.index.code(node)

    def line(self, node: cst.CSTNode) -> int:
        return self.index.line(node)

    def scope_of(self, node: cst.CSTNode) -> cst.CSTNode:
        return self.index.scope_of(node)

    def statement_of(self, node: cst.CSTNode) -> cst.CSTNode:
        return self.index.statement_of(node)

    def block_of(self, stmt: cst.CSTNode) -> cst.CSTNode:
        return self.index.block_of(stmt)

    def siblings(self, stmt: cst.CSTNode) -> list[cst.CSTNode]:
        return self.index.siblings(stmt)

    def indent_width(self, stmt: cst.CSTNode) -> int:
        return self.index.indent_width(stmt)

    def reachable_scalers(self, node: cst.CSTNode) -> list[Scaler]:
        """Scalers whose name is in scope at `node`, innermost home first."""
        ancestors = list(self.ancestors(node))
        found = []
        for scaler in self.scalers:
            if isinstance(scaler.home, cst.ClassDef):
                prefix = scaler.access.split(".")[0]
                for anc in ancestors:
                    if (
                        isinstance(anc, cst.FunctionDef)
                        and self.enclosing_class(anc) is scaler.home
                    ):
                        params = anc.params.params
                        if params and params[0].name.value == prefix:
                            found.append((ancestors.index(anc), scaler))
                        break
            elif scaler.home in ancestors:
                found.append((ancestors.index(scaler.home), scaler))
        found.sort(key=lambda pair: pair[0])
        unique: dict[str, Scaler] = {}
        for _, scaler in found:
            unique.setdefault(scaler.access, scaler)
        return list(unique.values())

    def pick_scaler(self, node: cst.CSTNode, optimizers: set[str]) -> Scaler | None:
        """The scaler for a site that uses `optimizers`: the one made for them, else the only one."""
        reachable = self.reachable_scalers(node)
        matching = [s for s in reachable if s.optimizers & optimizers]
        if matching:
            return matching[0]
        return reachable[0] if len(reachable) == 1 else None

    def qualname(self, node: cst.CSTNode) -> str:
        return self.index.qualname(node)

    def definitions(self) -> dict[str, cst.CSTNode]:
        return self.index.definitions()

    def resolve_call(self, call: cst.Call) -> str | None:
        """The qualified name a call targets, as far as imports and `self.` tell."""
        func = call.func
        if m_self_method(func):
            for anc in self.ancestors(call):
                if isinstance(anc, cst.ClassDef):
                    return f"{self.qualname(anc)}.{func.attr.value}"  # type: ignore[attr-defined]
            return None
        return self.resolve_name(func)

    def resolve_name(self, node: cst.CSTNode) -> str | None:
        """The qualified name an expression names, through imports or module-level defs."""
        names = self.index.qualified_names(node)
        return min(names) if names else None

    def remove(self, node: cst.CSTNode) -> None:
        """`node` is deleted by a rule: no other rule looks inside it."""
        self._removed.append(node)
        self._apex_refs = None

    def is_removed(self, node: cst.CSTNode) -> bool:
        removed = set(map(id, self._removed))
        return id(node) in removed or any(id(a) in removed for a in self.ancestors(node))

    def autocast_hint(self) -> str:
        """The autocast call a TODO tells a person to wrap a forward pass in."""
        return self.gen.autocast(self.options.device_type, self.options.dtype)

    def mark_autocast(self, stmts) -> None:
        """Statements a rule has put under autocast (so no other rule wraps them again)."""
        self._autocast.update(id(s) for s in stmts)

    def in_autocast(self, node: cst.CSTNode) -> bool:
        if id(node) in self._autocast:
            return True
        for anc in self.ancestors(node):
            if id(anc) in self._autocast:
                return True
            if isinstance(anc, cst.With) and any(
                "autocast" in self.code(i.item) for i in anc.items
            ):
                return True
        return False

    def enclosing_function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        return self.index.enclosing_function(node)

    def enclosing_class(self, func: cst.CSTNode) -> cst.ClassDef | None:
        return self.index.enclosing_class(func)

    # findings and transactions -----------------------------------------------------------
    def note(self, group: object, node: cst.CSTNode, code: str, message: str, tier: str) -> None:
        """Report a change (it disappears with its transaction)."""
        self._findings.append((group, Finding(self.line(node), code, message, tier)))

    def todo(self, node: cst.CSTNode, code: str, message: str) -> None:
        """Mark the statement holding `node` for a person, and report it."""
        group = object()
        stmt = self.statement_of(node)
        self.edits.todo(group, stmt, f"{code} {message}")
        self._findings.append((group, Finding(self.line(node), code, message, MANUAL, todo=True)))
        self._todo_statements.add(stmt)

    def existing_todo(self, stmt: cst.CSTNode, code: str, message: str) -> None:
        """A marker already in the file (from an earlier run), reported unless re-made now."""
        if any(f.todo and f.code == code and f.message == message for _, f in self._findings):
            return
        self._findings.append(
            (object(), Finding(self.line(stmt), code, message, MANUAL, todo=True))
        )

    def has_todo(self, node: cst.CSTNode) -> bool:
        return self.statement_of(node) in self._todo_statements

    def handle(self, group: object, ref: cst.CSTNode) -> None:
        """Record that a rule rewrote the apex reference `ref` (unless `group` is dropped)."""
        self._handled.append((group, ref))

    def depend(self, scaler: Scaler, group: object) -> None:
        """`group` uses `scaler`: if one user of a scaler fails, all of them stay apex."""
        self._dependents.setdefault(scaler.key, []).append(group)

    def fail(self, group: object, node: cst.CSTNode, code: str, message: str) -> None:
        """Abandon a transaction: its edits are dropped and the site gets a TODO.

        When the transaction used a scaler, every other use of that scaler and its creation
        are dropped too, so the file stays consistent apex code around the TODO (and a
        second run gives the same result). The apex references the dropped transactions had
        taken are explained by these TODOs, so no second, vaguer one is added for them.
        """
        self.edits.drop(group)
        self.todo(node, code, message)
        dropped = [group]
        for key, groups in self._dependents.items():
            if not any(g is group for g in groups):
                continue
            for other in groups:
                self.edits.drop(other)
                dropped.append(other)
            for scaler in self.scalers:
                if scaler.key == key and not self.dropped(scaler.group):
                    self.edits.drop(scaler.group)
                    dropped.append(scaler.group)
                    self.todo(
                        scaler.init_call,
                        "A2N102",
                        f"amp.initialize kept: a use of its scaler could not be migrated "
                        f"(see the {code} TODO)",
                    )
        self._explained.update(ref for g, ref in self._handled if any(g is d for d in dropped))

    def explained(self, ref: cst.CSTNode) -> bool:
        return ref in self._explained or self.has_todo(ref)

    def dropped(self, group: object) -> bool:
        return self.edits.is_dropped(group)

    def handled(self) -> set[cst.CSTNode]:
        return {node for group, node in self._handled if not self.dropped(group)}

    def findings(self) -> list[Finding]:
        return sorted(f for group, f in self._findings if not self.dropped(group))
