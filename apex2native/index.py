"""One walk over a parsed module, for every question the rules ask about its tree.

Rules used to walk subtrees again and again (hundreds of thousands of generator steps on one
training script) and to pay for LibCST's metadata providers. The index is built once per
parse: the parent map, document order with subtree ranges, nodes by type, calls by callee
name, the scopes with their name bindings (see `scopes.py`), and statement lines.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
from bisect import bisect_left, bisect_right
from collections.abc import Iterator

import libcst as cst

from apex2native.scopes import (
    CLASS,
    COMPREHENSION,
    FUNCTION,
    MODULE,
    Binding,
    Scope,
    absolute_name,
    import_qualified,
    qualified_names,
)

BUILTIN_NAMES = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "__spec__"}
BLOCKS = (cst.IndentedBlock, cst.Module, cst.SimpleStatementSuite)
COMPOUND = (
    cst.If,
    cst.For,
    cst.While,
    cst.Try,
    cst.TryStar,
    cst.With,
    cst.FunctionDef,
    cst.ClassDef,
    cst.Match,
)
COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)


def dotted(node: cst.CSTNode) -> str | None:
    """`a.b.c` for a chain of names and attributes, else None."""
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if not isinstance(node, cst.Name):
        return None
    parts.append(node.value)
    return ".".join(reversed(parts))


def callee_name(call: cst.Call) -> str | None:
    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    return None


SKIP_FIELDS = frozenset(
    "lpar rpar comma semicolon leading_lines lines_after_decorators header footer "
    "trailing_whitespace equal colon dot lbracket rbracket lbrace rbrace asynchronous star "
    "operator indent default_indent default_newline has_trailing_newline encoding first_colon "
    "second_colon posonly_ind separator trailing_comma relative start end conversion "
    "whitespace".split()
)
# Types whose dataclass fields are not in source order.
LEXICAL_FIELDS: dict[type, tuple[str, ...]] = {
    cst.FunctionDef: ("decorators", "name", "type_parameters", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "type_parameters", "bases", "keywords", "body"),
    cst.IfExp: ("body", "test", "orelse"),
    cst.ExceptHandler: ("type", "name", "body"),
    cst.ExceptStarHandler: ("type", "name", "body"),
    cst.Arg: ("keyword", "value"),
    cst.Parameters: ("posonly_params", "params", "star_arg", "kwonly_params", "star_kwarg"),
    cst.ImportFrom: ("module", "names"),
    cst.MatchCase: ("pattern", "guard", "body"),
}
_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(kind: type) -> tuple[str, ...]:
    """The fields of a node type that hold code (no whitespace or punctuation), in order."""
    found = _FIELDS.get(kind)
    if found is None:
        found = LEXICAL_FIELDS.get(kind) or tuple(
            f.name
            for f in dataclasses.fields(kind)
            if f.name not in SKIP_FIELDS and not f.name.startswith("whitespace")
        )
        _FIELDS[kind] = found
    return found


def code_children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The children that hold code, in source order; far cheaper than `node.children`."""
    out: list[cst.CSTNode] = []
    for name in _fields(type(node)):
        value = getattr(node, name)
        if value is None or type(value) is str:
            continue
        if type(value) is tuple or type(value) is list:
            out.extend(value)
        elif isinstance(value, cst.CSTNode):
            out.append(value)
    return out


def descendants(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """`node` and every code node below it, in source order (for trees that have no index).

    Whitespace, punctuation and operators are left out, as in the index.
    """
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(code_children(current)))


class TreeIndex:
    """The navigation, order, scope and line facts of one LibCST module.

    Whitespace, punctuation and operator nodes are not indexed: no rule asks about them.
    """

    def __init__(
        self,
        module: cst.Module,
        module_name: str = "",
        is_package: bool = False,
        text: str | None = None,
    ) -> None:
        self.module = module
        self.text = text  # the source `module` was parsed from, if the caller has it
        self.module_name = module_name
        self.is_package = is_package
        self.nodes: list[cst.CSTNode] = []
        self._pre: dict[int, int] = {}
        self._end: list[int] = []
        self._parent: dict[int, cst.CSTNode] = {}
        self._by_type: dict[type, list[int]] = {}
        self._calls: dict[str, list[int]] = {}
        self._scope_of: dict[int, Scope] = {}  # scope-making nodes and name reads
        self.reads: dict[str, list[cst.Name]] = {}
        self._not_read: set[int] = set()
        self._lines: dict[int, int] | None = None
        self._lines_from_ast = False
        self._outer_iter: dict[int, Scope] = {}  # a comprehension's first iterable
        # the module of the one star import ("": none), and the names its `try` binds when
        # it fails; made on first use
        self._star: tuple[str, set[str]] | None = None
        self.module_scope = Scope(MODULE)
        self._walk()

    # building --------------------------------------------------------------------------
    def _walk(self) -> None:
        stack: list[tuple[cst.CSTNode, cst.CSTNode | None, Scope]] = [
            (self.module, None, self.module_scope)
        ]
        nodes, pre, parent_of, by_type = self.nodes, self._pre, self._parent, self._by_type
        scoped = _SCOPED
        while stack:
            node, parent, scope = stack.pop()
            key = id(node)
            if self._outer_iter:
                scope = self._outer_iter.pop(key, scope)
            i = len(nodes)
            pre[key] = i
            nodes.append(node)
            if parent is not None:
                parent_of[key] = parent
            kind = type(node)
            positions = by_type.get(kind)
            if positions is None:
                by_type[kind] = [i]
            else:
                positions.append(i)
            if kind is cst.Name:
                if key not in self._not_read:
                    self.reads.setdefault(node.value, []).append(node)
                    self._scope_of[key] = scope
                continue
            binder = _BINDERS.get(kind)
            if binder is not None:
                binder(self, node, scope)
            if kind is cst.Call:
                name = callee_name(node)
                if name:
                    self._calls.setdefault(name, []).append(i)
            elif kind is cst.Attribute:
                self._not_read.add(id(node.attr))
            elif kind is cst.Arg and node.keyword is not None:
                self._not_read.add(id(node.keyword))
            if kind in scoped:
                children = self._scoped_children(node, scope)
            else:
                children = [(child, node, scope) for child in code_children(node)]
            stack.extend(reversed(children))
        ends = list(range(len(nodes)))
        for i in range(len(nodes) - 1, 0, -1):
            p = pre[id(parent_of[id(nodes[i])])]
            if ends[i] > ends[p]:
                ends[p] = ends[i]
        self._end = ends

    def _scoped_children(self, node: cst.CSTNode, outer: Scope) -> list[tuple]:
        """Children of a def, class, lambda or comprehension, each with its own scope."""
        kind = type(node)
        if kind is cst.ClassDef:
            inner = Scope(CLASS, outer, node.name.value)
        elif kind is cst.FunctionDef or kind is cst.Lambda:
            inner = Scope(FUNCTION, outer, node.name.value if kind is cst.FunctionDef else "")
            params = node.params
            for param in (
                *params.posonly_params,
                *params.params,
                *params.kwonly_params,
                params.star_arg if isinstance(params.star_arg, cst.Param) else None,
                params.star_kwarg,
            ):
                if param is not None:
                    inner.bind(param.name.value, Binding("param"))
                    self._not_read.add(id(param.name))
        else:
            inner = Scope(COMPREHENSION, outer)
            self._outer_iter[id(node.for_in.iter)] = outer
            self._scope_of[id(node)] = inner
            return [(c, node, inner) for c in code_children(node)]
        self._scope_of[id(node)] = inner
        inner.owner = node
        return [(c, node, inner if c is node.body else outer) for c in code_children(node)]

    # binding helpers -------------------------------------------------------------------
    def _store(self, target: cst.CSTNode, scope: Scope, kind: str = "assign") -> None:
        """Names a target expression binds (`a`, `a, (b, *c)`); attributes bind nothing."""
        if isinstance(target, cst.Name):
            scope.bind(target.value, Binding(kind))
            self._not_read.add(id(target))
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._store(element.value, scope, kind)
        elif isinstance(target, cst.StarredElement):
            self._store(target.value, scope, kind)

    # navigation ------------------------------------------------------------------------
    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self._parent.get(id(node))

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        parents = self._parent
        current = parents.get(id(node))
        while current is not None:
            yield current
            current = parents.get(id(current))

    def paths_to(self, nodes) -> set[int]:
        """Ids of `nodes` and of every ancestor of theirs: what a transformer must visit."""
        hot: set[int] = set()
        parents = self._parent
        for node in nodes:
            key = id(node)
            while key not in hot:
                hot.add(key)
                parent = parents.get(key)
                if parent is None:
                    break
                key = id(parent)
        return hot

    def order(self, node: cst.CSTNode) -> int:
        """Position in document order (preorder): sort keys and `before` tests."""
        return self._pre[id(node)]

    def after(self, node: cst.CSTNode, other: cst.CSTNode) -> bool:
        """`node` starts after the whole of `other` ends."""
        return self._pre[id(node)] > self._end[self._pre[id(other)]]

    def contains(self, outer: cst.CSTNode, node: cst.CSTNode) -> bool:
        i = self._pre[id(outer)]
        return i <= self._pre[id(node)] <= self._end[i]

    def exclusive(self, a: cst.CSTNode, b: cst.CSTNode) -> bool:
        """`a` and `b` sit in different arms of one `if`: no run executes both."""
        chain_a = [a, *self.ancestors(a)]
        on_a = {id(n) for n in chain_a}
        below_b: cst.CSTNode = b
        for anc in self.ancestors(b):
            if id(anc) in on_a:
                if isinstance(anc, cst.If):
                    below_a = chain_a[chain_a.index(anc) - 1] if anc is not a else None
                    arms = {_arm(anc, below_a), _arm(anc, below_b)} if below_a is not None else {}
                    return arms == {"body", "orelse"}  # the test runs before either arm
                return False
            below_b = anc
        return False

    def subtree(self, node: cst.CSTNode) -> list[cst.CSTNode]:
        """`node` and everything below it, in document order."""
        i = self._pre[id(node)]
        return self.nodes[i : self._end[i] + 1]

    def within(self, node: cst.CSTNode, *kinds: type) -> list[cst.CSTNode]:
        """Nodes of exactly these types inside `node` (itself included), in document order."""
        i = self._pre[id(node)]
        j = self._end[i]
        found: list[int] = []
        for kind in kinds:
            positions = self._by_type.get(kind, [])
            found.extend(positions[bisect_left(positions, i) : bisect_right(positions, j)])
        return [self.nodes[k] for k in sorted(found)]

    def calls_named(self, name: str, node: cst.CSTNode | None = None) -> list[cst.Call]:
        """Calls whose callee is `name` or `<x>.name`, inside `node` (default: the module)."""
        positions = self._calls.get(name, [])
        if node is not None:
            i = self._pre[id(node)]
            positions = positions[bisect_left(positions, i) : bisect_right(positions, self._end[i])]
        return [self.nodes[k] for k in positions]  # type: ignore[misc]

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node).strip()

    def scope_of(self, node: cst.CSTNode) -> cst.CSTNode:
        """The innermost function (or the module) whose body holds `node`."""
        for anc in self.ancestors(node):
            if isinstance(anc, (cst.FunctionDef, cst.Module)):
                return anc
        return self.module

    def enclosing_function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        for anc in self.ancestors(node):
            if isinstance(anc, cst.FunctionDef):
                return anc
        return None

    def enclosing_class(self, func: cst.CSTNode) -> cst.ClassDef | None:
        """The class a def is a method of (directly in its body), else None."""
        parent = self.parent(func)
        if isinstance(parent, cst.IndentedBlock):
            parent = self.parent(parent)
        return parent if isinstance(parent, cst.ClassDef) else None

    def statement_of(self, node: cst.CSTNode) -> cst.CSTNode:
        """The statement that holds `node` as a direct member of a block.

        Inside a one-line suite (`if x: a(); b()`) that is the small statement itself, so an
        insertion lands inside the suite rather than after the whole compound statement.
        """
        current = node
        for anc in self.ancestors(node):
            if isinstance(anc, BLOCKS):
                return current
            current = anc
        return current

    def block_of(self, stmt: cst.CSTNode) -> cst.CSTNode:
        parent = self.parent(stmt)
        if isinstance(parent, cst.SimpleStatementLine):
            parent = self.parent(parent)
        return parent  # type: ignore[return-value]

    def siblings(self, stmt: cst.CSTNode) -> list[cst.CSTNode]:
        return list(self.block_of(stmt).body)  # type: ignore[attr-defined]

    def indent_width(self, stmt: cst.CSTNode) -> int:
        depth = sum(
            isinstance(a, (cst.IndentedBlock, cst.SimpleStatementSuite))
            for a in self.ancestors(stmt)
        )
        return depth * len(self.module.default_indent.expandtabs(4))

    def qualname(self, node: cst.CSTNode) -> str:
        """`module.Class.method` for a def or class; the module name for the module."""
        parts = [node.name.value] if isinstance(node, (cst.FunctionDef, cst.ClassDef)) else []
        for anc in self.ancestors(node):
            if isinstance(anc, (cst.FunctionDef, cst.ClassDef)):
                parts.insert(0, anc.name.value)
        return ".".join(p for p in (self.module_name, *parts) if p)

    def definitions(self) -> dict[str, cst.CSTNode]:
        """Every def and class of the file by qualified name."""
        return {
            self.qualname(n): n for n in self.within(self.module, cst.FunctionDef, cst.ClassDef)
        }

    # names -----------------------------------------------------------------------------
    def bindings(self, name: cst.Name) -> list[Binding]:
        """What a read of a name can refer to ([] for builtins and unbound names)."""
        scope = self._scope_of.get(id(name))
        return scope.lookup(name.value) if scope is not None else []

    def qualified_names(self, node: cst.CSTNode) -> list[str]:
        """Dotted names an expression stands for through imports and module-level defs."""
        if isinstance(node, cst.Name):
            names = qualified_names(self.bindings(node), self.module_name)
            return [absolute_name(n, self.module_name, self.is_package) for n in names]
        if isinstance(node, cst.Attribute):
            return [f"{base}.{node.attr.value}" for base in self.qualified_names(_through(node))]
        return []

    def read_scope(self, name: cst.Name) -> Scope | None:
        """The scope a read of a name happens in (before any lookup)."""
        return self._scope_of.get(id(name))

    def param_of(self, name: cst.Name) -> cst.FunctionDef | None:
        """The def whose parameter a read of a name refers to, if it does."""
        scope = self._scope_of.get(id(name))
        binder = scope.resolve(name.value) if scope is not None else None
        if binder is None or not isinstance(binder.owner, cst.FunctionDef):
            return None
        if any(b.kind == "param" for b in binder.bindings.get(name.value, ())):
            return binder.owner
        return None

    def binder_of(self, name: cst.Name) -> cst.CSTNode | None:
        """The def (or the module) whose scope binds what a read of a name refers to."""
        scope = self._scope_of.get(id(name))
        binder = scope.resolve(name.value) if scope is not None else None
        if binder is None:
            return None
        return binder.owner if isinstance(binder.owner, cst.FunctionDef) else self.module

    def imported_names(self, node: cst.CSTNode) -> list[str]:
        """Dotted names an expression stands for through imports only (as written)."""
        if isinstance(node, cst.Name):
            return [b.qualified for b in self.bindings(node) if b.kind == "import" and b.qualified]
        if isinstance(node, cst.Attribute):
            return [f"{base}.{node.attr.value}" for base in self.imported_names(_through(node))]
        return []

    def star_imported(self, node: cst.CSTNode) -> list[str]:
        """`amp.scale_loss` read where nothing binds `amp` (or only the fallback of the `try`
        around the import, `except ImportError: amp = None`) and the module's one star
        import (`from .utils import *`) may: the dotted name through that module, else []."""
        if isinstance(node, cst.Attribute):
            return [f"{base}.{node.attr.value}" for base in self.star_imported(_through(node))]
        if not isinstance(node, cst.Name) or node.value in BUILTIN_NAMES:
            return []
        star, fallbacks = self._star_source()
        bound = self.bindings(node)
        if bound and not (node.value in fallbacks and all(b.kind == "assign" for b in bound)):
            return []
        return [f"{star}.{node.value}"] if star else []

    def _star_source(self) -> tuple[str, set[str]]:
        if self._star is None:
            star, fallbacks = "", set()
            stars = [
                n
                for n in self.within(self.module, cst.ImportFrom)
                if isinstance(n.names, cst.ImportStar)
            ]
            if len(stars) == 1:
                imp = stars[0]
                name = cst.helpers.get_full_name_for_node(imp.module) if imp.module else ""
                star = absolute_name(
                    "." * len(imp.relative) + (name or ""), self.module_name, self.is_package
                )
                guard = next((a for a in self.ancestors(imp) if isinstance(a, cst.Try)), None)
                if guard is not None and self.contains(guard.body, imp):
                    fallbacks = {
                        t.target.value
                        for h in guard.handlers
                        for a in self.within(h, cst.Assign)
                        for t in a.targets
                        if isinstance(t.target, cst.Name)
                    }
            self._star = (star, fallbacks)
        return self._star

    def used_imports(self) -> set[tuple[int, str]]:
        """(import statement id, bound name) of every import some read can refer to."""
        used = set()
        for name, reads in self.reads.items():
            for node in reads:
                for binding in self.bindings(node):
                    if binding.kind == "import":
                        used.add((binding.source, name))
        return used

    def scope_binds(self, node: cst.CSTNode, name: str) -> bool:
        """Whether the scope `node` makes (a def, class or the module) binds `name`."""
        scope = self.module_scope if isinstance(node, cst.Module) else self._scope_of.get(id(node))
        return scope is not None and name in scope.bindings

    # lines -----------------------------------------------------------------------------
    def statement_at(self, line: int) -> cst.CSTNode | None:
        """The first statement (small or compound) that starts on `line`."""
        self.line(self.module)
        best = None
        for node in self.nodes:
            if self._lines.get(id(node)) == line and isinstance(
                node, (cst.BaseSmallStatement, cst.BaseCompoundStatement, cst.SimpleStatementLine)
            ):
                if best is None:
                    best = node
        return best

    def _ensure_lines(self) -> dict[int, int]:
        if self._lines is None:
            lines = _ast_statement_lines(self.module, self.text)
            self._lines_from_ast = lines is not None
            self._lines = lines if lines is not None else _provider_lines(self.module)
        return self._lines

    def top_level_lines(self) -> list[int] | None:
        """The line where each top-level statement's own code starts (a def's is its `def`
        line, after decorators), or None when only LibCST's positions could be had."""
        lines = self._ensure_lines()
        if not self._lines_from_ast:
            return None
        return [lines[id(stmt)] for stmt in self.module.body]

    def line(self, node: cst.CSTNode) -> int:
        """The line of the statement that holds `node` (1-based)."""
        self._ensure_lines()
        current: cst.CSTNode | None = node
        while current is not None:
            line = self._lines.get(id(current))
            if line is not None:
                return line
            current = self._parent.get(id(current))
        return 1


def _arm(node: cst.If, child: cst.CSTNode) -> str:
    """Which part of an `if` a direct child is: its test, its body or its else arm."""
    if child is node.body:
        return "body"
    if child is node.orelse:
        return "orelse"
    return "test"


def _through(node: cst.Attribute) -> cst.CSTNode:
    """The value an attribute is read on, seen through calls and subscripts as LibCST's
    qualified names do (`amp._amp_state.loss_scalers[0].loss_scale` names apex state)."""
    value = node.value
    while isinstance(value, (cst.Call, cst.Subscript)):
        value = value.func if isinstance(value, cst.Call) else value.value
    return value


def _bind_assign(index: TreeIndex, node: cst.Assign, scope: Scope) -> None:
    target = node.targets[0].target
    if len(node.targets) == 1 and isinstance(target, cst.Name):
        made_by = _dotted(node.value.func) if isinstance(node.value, cst.Call) else ""
        if made_by:
            scope.bind(target.value, Binding("assign", made_by=made_by))
            index._not_read.add(id(target))
            return
    for target in node.targets:
        index._store(target.target, scope)


def _dotted(node: cst.BaseExpression) -> str:
    """`a.b.c` spelled out; "" for anything but names and attributes of names."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr.value}" if base else ""
    return ""


def _bind_target(index: TreeIndex, node, scope: Scope) -> None:
    index._store(node.target, scope)


def _bind_comp_for(index: TreeIndex, node: cst.CompFor, scope: Scope) -> None:
    index._store(node.target, scope)


def _bind_as(index: TreeIndex, node: cst.AsName, scope: Scope) -> None:
    index._store(node.name, scope)


def _bind_named(index: TreeIndex, node: cst.NamedExpr, scope: Scope) -> None:
    index._store(node.target, scope.function_scope())


def _bind_def(index: TreeIndex, node, scope: Scope) -> None:
    kind = "class" if isinstance(node, cst.ClassDef) else "def"
    qualified = node.name.value if scope.kind == MODULE else None
    scope.bind(node.name.value, Binding(kind, qualified))
    index._not_read.add(id(node.name))


def _bind_import(index: TreeIndex, node: cst.Import, scope: Scope) -> None:
    for alias in node.names:
        full = cst.helpers.get_full_name_for_node(alias.name) or ""
        if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
            scope.bind(alias.asname.name.value, Binding("import", full, id(node)))
        else:
            top = full.split(".")[0]
            scope.bind(top, Binding("import", top, id(node)))
        for n in descendants(alias):
            index._not_read.add(id(n))


def _bind_import_from(index: TreeIndex, node: cst.ImportFrom, scope: Scope) -> None:
    module = cst.helpers.get_full_name_for_node(node.module) if node.module else None
    level = len(node.relative)
    for n in descendants(node):
        if isinstance(n, cst.Name):
            index._not_read.add(id(n))
    if isinstance(node.names, cst.ImportStar):
        return
    for alias in node.names:
        name = cst.helpers.get_full_name_for_node(alias.name) or ""
        bound = (
            alias.asname.name.value
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name)
            else name
        )
        scope.bind(bound, Binding("import", import_qualified(module, name, level), id(node)))


def _declare(index: TreeIndex, node, scope: Scope) -> None:
    names = scope.globals if isinstance(node, cst.Global) else scope.nonlocals
    for item in node.names:
        names.add(item.name.value)
        index._not_read.add(id(item.name))


def _bind_match(index: TreeIndex, node, scope: Scope) -> None:
    name = getattr(node, "name", None)
    if isinstance(name, cst.Name):
        index._store(name, scope)


_SCOPED = frozenset({cst.FunctionDef, cst.ClassDef, cst.Lambda, *COMPREHENSIONS})
_BINDERS = {
    cst.Assign: _bind_assign,
    cst.AugAssign: _bind_target,
    cst.AnnAssign: _bind_target,
    cst.For: _bind_target,
    cst.CompFor: _bind_comp_for,
    cst.AsName: _bind_as,
    cst.NamedExpr: _bind_named,
    cst.FunctionDef: _bind_def,
    cst.ClassDef: _bind_def,
    cst.Import: _bind_import,
    cst.ImportFrom: _bind_import_from,
    cst.Global: _declare,
    cst.Nonlocal: _declare,
    cst.MatchAs: _bind_match,
    cst.MatchStar: _bind_match,
}


# statement lines, from `ast` (a fraction of the cost of LibCST's PositionProvider) ---------
def _cst_statements(body, lines: list) -> list:
    """Small and compound statements in source order; `lines` gets (line node, first small)."""
    out: list[cst.CSTNode] = []
    for stmt in body:
        if type(stmt) is cst.SimpleStatementLine:
            out.extend(stmt.body)
            lines.append((stmt, stmt.body[0]))
            continue
        out.append(stmt)
        for block in _cst_blocks(stmt):
            out.extend(_cst_statements(block, lines))
    return out


def _cst_blocks(stmt: cst.CSTNode) -> Iterator[list]:
    """The statement lists a compound statement holds, in source order."""
    if isinstance(stmt, cst.If):
        yield stmt.body.body
        if isinstance(stmt.orelse, cst.Else):
            yield stmt.orelse.body.body
        elif isinstance(stmt.orelse, cst.If):
            yield [stmt.orelse]
    elif isinstance(stmt, (cst.For, cst.While)):
        yield stmt.body.body
        if stmt.orelse is not None:
            yield stmt.orelse.body.body
    elif isinstance(stmt, (cst.Try, cst.TryStar)):
        yield stmt.body.body
        for handler in stmt.handlers:
            yield handler.body.body
        if stmt.orelse is not None:
            yield stmt.orelse.body.body
        if stmt.finalbody is not None:
            yield stmt.finalbody.body.body
    elif isinstance(stmt, cst.Match):
        for case in stmt.cases:
            yield case.body.body
    elif isinstance(getattr(stmt, "body", None), cst.BaseSuite):
        yield stmt.body.body


def ast_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from ast_statements(stmt.body)
            yield from ast_statements(stmt.orelse)
        elif isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            yield from ast_statements(stmt.body)
            yield from ast_statements(stmt.orelse)
        elif isinstance(stmt, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            yield from ast_statements(stmt.body)
            for handler in stmt.handlers:
                yield from ast_statements(handler.body)
            yield from ast_statements(stmt.orelse)
            yield from ast_statements(stmt.finalbody)
        elif isinstance(stmt, ast.Match):
            for case in stmt.cases:
                yield from ast_statements(case.body)
        elif isinstance(
            stmt,
            (ast.With, ast.AsyncWith, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef),
        ):
            yield from ast_statements(stmt.body)


def _ast_statement_lines(module: cst.Module, text: str | None) -> dict[int, int] | None:
    """Every statement's first line, matched pairwise against the `ast` of the same code (a
    def's is its `def` line), or None when the two trees disagree."""
    try:
        tree = ast.parse(text if text is not None else module.code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    simple_lines: list[tuple[cst.CSTNode, cst.CSTNode]] = []
    cst_stmts = _cst_statements(module.body, simple_lines)
    ast_stmts = list(ast_statements(tree.body))
    if len(cst_stmts) != len(ast_stmts):
        return None
    lines = {id(node): stmt.lineno for node, stmt in zip(cst_stmts, ast_stmts)}
    for line_node, first in simple_lines:
        lines[id(line_node)] = lines[id(first)]
    return lines


def _provider_lines(module: cst.Module) -> dict[int, int]:
    from libcst.metadata import MetadataWrapper, PositionProvider

    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    return {id(node): pos.start.line for node, pos in wrapper.resolve(PositionProvider).items()}
