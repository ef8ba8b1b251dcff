"""Which expressions of one file are apex: imports, aliases, and amp held on `self`."""

from __future__ import annotations

import libcst as cst

from apex2native.apex_imports import catches_import_errors, guard_flags
from apex2native.index import TreeIndex
from apex2native.scopes import absolute_name, instance_class
from apex2native.summary import star_apex_name, unalias
from apex2native.syntax import is_self_method, module_values


def is_apex(name: str | None) -> bool:
    return name is not None and (name == "apex" or name.startswith("apex."))


class ApexNames:
    """Resolves names to apex's dotted names through the file's imports.

    Look-alikes (`args.amp`, a local `apex`, a home-grown `scale_loss`) resolve to local
    names and are never apex. A guarded import (`amp = None` in the except arm) still is, and
    so is a project name the plan found to re-export apex (`aliases`: `base.amp` -> `apex.amp`).
    """

    def __init__(
        self,
        index: TreeIndex,
        aliases: dict[str, str] | None = None,
        amp_params: set[tuple[str, str]] = frozenset(),
        factories: set[str] = frozenset(),
    ) -> None:
        self.index = index
        self.aliases = aliases or {}
        self.amp_params = amp_params  # (def qualname, parameter) that receive amp
        self.factories = factories  # methods the plan found to return their class
        self._flags: set[str] | None = None
        self._held: dict[int, set[str]] = {}
        self._handle_keys: set[tuple[int, str]] | None = None
        self._wrapped_keys: set[tuple[int, str]] | None = None
        self._refs: list[tuple[cst.CSTNode, str]] | None = None
        self._removed: list[cst.CSTNode] = []

    @property
    def flags(self) -> set[str]:
        """Flags set by an apex import guard (`HAS_APEX = True`)."""
        if self._flags is None:
            self._flags = guard_flags(self.index)
        return self._flags

    def apex_name(self, node: cst.CSTNode) -> str | None:
        """The apex dotted name `node` refers to, else None."""
        if not isinstance(node, (cst.Name, cst.Attribute)):
            return None
        for name in sorted(self._imported(node)):
            name = unalias(name, self.aliases)
            if is_apex(name):
                return name
        if self.aliases:
            starred = star_apex_name(self.index.star_imported(node), self.aliases)
            if starred is not None:
                return starred
        if self.amp_params:
            held = self._param_apex_name(node)
            if held is not None:
                return held
        handle = self._handle_apex_name(node)
        if handle is not None:
            return handle
        return self._held_apex_name(node)

    def _handle_apex_name(self, node: cst.CSTNode) -> str | None:
        """`handle.scale_loss` where `handle = amp.init(...)` is the name's one binding:
        the old API's handle does what the amp module does."""
        if not self._handles():
            return None
        current, parts = _chain(node)
        if not isinstance(current, cst.Name):
            return None
        scope = self.index.read_scope(current)
        binder = scope.resolve(current.value) if scope is not None else None
        if binder is None:
            return None
        if (id(binder), current.value) in self._handles():
            return ".".join(["apex.amp", *parts])
        if parts == ["scale_loss"] and (id(binder), current.value) in self._wrapped():
            return "apex.amp.scale_loss"  # the wrapper's scale_loss(loss): its own optimizer
        return None

    def wrapped_optimizer(self, node: cst.CSTNode) -> bool:
        """`opt` after `opt = handle.wrap_optimizer(opt)`: its `scale_loss(loss)` scales
        for itself."""
        if not isinstance(node, cst.Name):
            return False
        scope = self.index.read_scope(node)
        binder = scope.resolve(node.value) if scope is not None else None
        return binder is not None and (id(binder), node.value) in self._wrapped()

    def _wrapped(self) -> set[tuple[int, str]]:
        if self._wrapped_keys is None:
            self._wrapped_keys = set()
            for call in self.index.calls_named("wrap_optimizer"):
                assign = self.index.parent(call)
                if not (
                    isinstance(call.func, cst.Attribute)
                    and self._handle_apex_name(call.func.value) == "apex.amp"
                    and isinstance(assign, cst.Assign)
                    and len(assign.targets) == 1
                    and isinstance(assign.targets[0].target, cst.Name)
                ):
                    continue
                scope = self.index.read_scope(call.func.value)
                if scope is not None:
                    self._wrapped_keys.add((id(scope), assign.targets[0].target.value))
        return self._wrapped_keys

    def _handles(self) -> set[tuple[int, str]]:
        if self._handle_keys is None:
            self._handle_keys = set()
            for call in self.index.calls_named("init"):
                if not any(
                    unalias(n, self.aliases) == "apex.amp.init"
                    for n in self.index.imported_names(call.func)
                ):
                    continue
                assign = self.index.parent(call)
                if not (
                    isinstance(assign, cst.Assign)
                    and len(assign.targets) == 1
                    and isinstance(assign.targets[0].target, cst.Name)
                ):
                    continue
                name = assign.targets[0].target.value
                root, _ = _chain(call.func)
                scope = self.index.read_scope(root) if isinstance(root, cst.Name) else None
                if (
                    scope is not None
                    and name not in scope.globals | scope.nonlocals
                    and len(scope.bindings.get(name, ())) == 1
                ):
                    self._handle_keys.add((id(scope), name))
        return self._handle_keys

    def _param_apex_name(self, node: cst.CSTNode) -> str | None:
        """`amp.scale_loss` where `amp` is a parameter the amp module is passed in by."""
        current, parts = _chain(node)
        if not isinstance(current, cst.Name):
            return None
        func = self.index.param_of(current)
        if func is None or (self.index.qualname(func), current.value) not in self.amp_params:
            return None
        return ".".join(["apex.amp", *parts])

    def call_name(self, node: cst.CSTNode) -> str | None:
        """The apex name a call invokes (`apex.amp.scale_loss`), else None."""
        return self.apex_name(node.func) if isinstance(node, cst.Call) else None

    def is_availability_test(self, node: cst.BaseExpression) -> bool:
        """`amp`, `amp is not None`, `HAS_APEX`: apex is importable, always true after migration."""
        if isinstance(node, cst.Name) and self.apex_name(node) in ("apex", "apex.amp"):
            return True
        if isinstance(node, cst.Comparison) and len(node.comparisons) == 1:
            target = node.comparisons[0]
            if isinstance(target.operator, cst.IsNot) and isinstance(target.comparator, cst.Name):
                if target.comparator.value == "None" and isinstance(node.left, cst.Name):
                    return self.apex_name(node.left) in ("apex", "apex.amp")
        return isinstance(node, cst.Name) and node.value in self.flags

    def switch_held(self, node: cst.Name) -> bool:
        """`amp` that is None when amp is switched off, not when apex is missing: a
        parameter callers may pass None, or `amp = None` outside an import guard. A test
        of it is the amp switch, not an availability test."""
        if self.index.param_of(node) is not None:
            return True
        binder = self.index.binder_of(node)
        if binder is None:
            return False
        for assign in self.index.within(binder, cst.Assign):
            if self.index.scope_of(assign) is not binder or not _may_be_none(assign.value):
                continue
            if not any(
                isinstance(t.target, cst.Name) and t.target.value == node.value
                for t in assign.targets
            ):
                continue
            if not any(
                isinstance(a, cst.Try) and catches_import_errors(a)
                for a in self.index.ancestors(assign)
            ):
                return True
        return False

    def _held_apex_name(self, node: cst.CSTNode) -> str | None:
        """`self.amp.scale_loss` where the class stored the amp module: `self.amp = amp`."""
        current, parts = _chain(node)
        if not (isinstance(current, cst.Name) and current.value == "self" and parts):
            return None
        cls = next((a for a in self.index.ancestors(node) if isinstance(a, cst.ClassDef)), None)
        if cls is None or parts[0] not in self.held(cls):
            return None
        return ".".join(["apex.amp", *parts[1:]])

    def held(self, cls: cst.ClassDef) -> set[str]:
        """Attributes a class sets to the apex amp module (`self.amp = amp if fp16 else None`)."""
        key = id(cls)
        if key not in self._held:
            attrs: set[str] = set()
            self._held[key] = attrs
            for n in self.index.within(cls, cst.Assign):
                if len(n.targets) != 1:
                    continue
                target = n.targets[0].target
                if (
                    isinstance(target, cst.Attribute)
                    and isinstance(target.value, cst.Name)
                    and target.value.value == "self"
                    and any(self.apex_name(v) == "apex.amp" for v in module_values(n.value))
                ):
                    attrs.add(target.attr.value)
        return self._held[key]

    def refs(self) -> list[tuple[cst.CSTNode, str]]:
        """Outermost apex references outside import statements, in source order."""
        if self._refs is None:
            found: dict[int, tuple[cst.CSTNode, str]] = {}
            for reads in self.index.reads.values():
                for node in reads:
                    self._add_outermost(node, found)
            if self._handles():
                for call in self.index.calls_named("scale_loss"):
                    func = call.func
                    if isinstance(func, cst.Attribute) and self.wrapped_optimizer(func.value):
                        self._add_outermost(func, found)
            for cls in self.index.within(self.index.module, cst.ClassDef):
                held = self.held(cls)
                if not held:
                    continue
                for node in self.index.within(cls, cst.Attribute):
                    if is_self_method(node) and node.attr.value in held:
                        self._add_outermost(node, found)
            refs = [found[k] for k in sorted(found)]
            if self._removed:
                refs = [(n, q) for n, q in refs if not self.is_removed(n)]
            self._refs = refs
        return self._refs

    def _imported(self, node: cst.CSTNode) -> list[str]:
        """The names `node` stands for through imports, relative ones made absolute (the
        plan's aliases are absolute: `from .common import amp` is `pkg.common.amp`)."""
        names = self.index.imported_names(node)
        if not self.aliases:
            return names
        index = self.index
        return [
            absolute_name(n, index.module_name, index.is_package) if n.startswith(".") else n
            for n in names
        ]

    def _through_module(self, node: cst.CSTNode) -> cst.CSTNode | None:
        """`common.amp` when `import common` reads apex's amp through a project module that
        re-exports it: the attribute chain from `node` that reaches an alias, else None."""
        modules = {alias.rsplit(".", 1)[0] for alias in self.aliases}
        current = node
        while modules:
            names = set(self._imported(current))
            if not any(m == n or m.startswith(n + ".") for m in modules for n in names):
                return None  # `import pkg.common` then `pkg.common.amp`: climb to the module
            parent = self.index.parent(current)
            if not (isinstance(parent, cst.Attribute) and parent.value is current):
                return None
            if names & modules:
                return parent
            current = parent
        return None

    def _add_outermost(self, node: cst.CSTNode, found: dict) -> None:
        """Record the longest apex attribute chain that starts at `node`."""
        name = self.apex_name(node)
        if name is None:
            node = self._through_module(node)
            name = self.apex_name(node) if node is not None else None
        if name is None or node is None:
            return
        current = node
        while True:
            parent = self.index.parent(current)
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
        for ref, name in self.refs():
            parent = self.index.parent(ref)
            if name == qualified and isinstance(parent, cst.Call) and parent.func is ref:
                out.append(parent)
        return out

    def remove(self, node: cst.CSTNode) -> None:
        """`node` is deleted by a rule: no other rule looks inside it."""
        self._removed.append(node)
        self._refs = None

    def is_removed(self, node: cst.CSTNode) -> bool:
        removed = set(map(id, self._removed))
        return id(node) in removed or any(id(a) in removed for a in self.index.ancestors(node))

    def resolve_call(self, call: cst.Call) -> str | None:
        """The qualified name a call targets, as far as imports and `self.` tell."""
        func = call.func
        if is_self_method(func):
            for anc in self.index.ancestors(call):
                if isinstance(anc, cst.ClassDef):
                    return f"{self.index.qualname(anc)}.{func.attr.value}"  # type: ignore[attr-defined]
            return None
        found = self.resolve_name(func)
        if found is None and isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name):
            made = instance_class(
                self.index.read_scope(func.value),
                func.value.value,
                self.index.module_name,
                self.index.is_package,
            )
            if made is not None and made[1] <= self.factories:
                return f"{made[0]}.{func.attr.value}"
        return found

    def resolve_name(self, node: cst.CSTNode) -> str | None:
        """The qualified name an expression names, through imports or module-level defs."""
        names = self.index.qualified_names(node)
        return min(names) if names else None


def _chain(node: cst.CSTNode) -> tuple[cst.CSTNode, list[str]]:
    """`self.amp.scale_loss` as (`self`, ["amp", "scale_loss"])."""
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.insert(0, node.attr.value)
        node = node.value
    return node, parts


def _may_be_none(value: cst.BaseExpression) -> bool:
    """`None`, or a conditional expression with a `None` arm."""
    if isinstance(value, cst.Name):
        return value.value == "None"
    if isinstance(value, cst.IfExp):
        return _may_be_none(value.body) or _may_be_none(value.orelse)
    return False
