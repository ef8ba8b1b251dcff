"""Python's name scoping, independent of the tree that was parsed (LibCST or `ast`).

The tree walkers (`index.py` for LibCST, `summary.py` for `ast`) record which names each scope
binds and how; this module answers what a name read in a scope refers to. It replaces LibCST's
ScopeProvider/QualifiedNameProvider, which cost several times a parse: the rewrite only ever
asks about a handful of names (apex imports, callees), so it builds only the binding tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODULE, CLASS, FUNCTION, COMPREHENSION = "module", "class", "function", "comprehension"


@dataclass(frozen=True)
class Binding:
    """One way a scope binds a name: `import` (with the dotted name imported), `def`,
    `class`, `param` or `assign` (any other store)."""

    kind: str
    qualified: str | None = None
    source: int = 0  # id() of the import statement, for imports
    made_by: str = ""  # `x = State(...)`, `x = State.load(...)`: the callee as spelled


@dataclass(eq=False)
class Scope:
    kind: str
    parent: Scope | None = None
    name: str = ""  # the def or class name; "" for the module and comprehensions
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    globals: set[str] = field(default_factory=set)
    nonlocals: set[str] = field(default_factory=set)
    owner: object = None  # the def, class or lambda node that makes the scope

    def bind(self, name: str, binding: Binding) -> None:
        target = self
        if name in self.globals:
            target = self.module()
        elif name in self.nonlocals:
            target = self.enclosing_binder(name) or self
        target.bindings.setdefault(name, []).append(binding)

    def module(self) -> Scope:
        scope = self
        while scope.parent is not None:
            scope = scope.parent
        return scope

    def enclosing_binder(self, name: str) -> Scope | None:
        """The nearest enclosing function scope that binds `name` (for `nonlocal`)."""
        scope = self.parent
        while scope is not None and scope.kind != MODULE:
            if scope.kind == FUNCTION and name in scope.bindings:
                return scope
            scope = scope.parent
        return None

    def function_scope(self) -> Scope:
        """Where an assignment expression binds: the nearest non-comprehension scope."""
        scope = self
        while scope.kind == COMPREHENSION and scope.parent is not None:
            scope = scope.parent
        return scope

    def lookup(self, name: str) -> list[Binding]:
        """The bindings a read of `name` in this scope can see ([] for builtins, unbound)."""
        scope = self.resolve(name)
        return scope.bindings.get(name, []) if scope is not None else []

    def resolve(self, name: str) -> Scope | None:
        """The scope whose binding a read of `name` here sees (None: builtin or unbound)."""
        if name in self.globals:
            module = self.module()
            return module if name in module.bindings else None
        if name in self.nonlocals:
            return self.enclosing_binder(name)
        if name in self.bindings:
            return self
        scope = self.parent
        while scope is not None:
            if scope.kind != CLASS and name in scope.bindings:
                return scope
            scope = scope.parent
        return None

    def qualname(self) -> str:
        """`Class.method` for a def in a class; "" for the module."""
        parts = []
        scope: Scope | None = self
        while scope is not None and scope.kind != MODULE:
            if scope.name:
                parts.insert(0, scope.name)
            scope = scope.parent
        return ".".join(parts)


def instance_class(
    scope: Scope | None, name: str, module: str, is_package: bool = False
) -> tuple[str, frozenset[str]] | None:
    """The class a variable holds when each assignment to it calls that class or a method
    of it (`s = State(m)` in one arm, `s = State.load(path)` in the other): the class's
    dotted name, and the methods called (factories, which the plan must find to return
    an instance of the class). None when anything else binds the name.
    """
    binder = scope.resolve(name) if scope is not None else None
    if binder is None or binder.kind not in (FUNCTION, MODULE):
        return None
    bindings = binder.bindings.get(name, [])
    if not bindings or any(b.kind != "assign" or not b.made_by for b in bindings):
        return None
    spelled = min((b.made_by for b in bindings), key=len)
    methods = {b.made_by[len(spelled) + 1 :] for b in bindings if b.made_by != spelled}
    if any(
        b.made_by != spelled and not b.made_by.startswith(spelled + ".") for b in bindings
    ) or any("." in m for m in methods):
        return None
    root, _, rest = spelled.partition(".")
    spelled_by = binder.lookup(root)
    if any(b.kind not in ("import", "class") for b in spelled_by):
        return None  # `Trainer = AccumTrainer` somewhere: not always the imported class
    names = qualified_names(spelled_by, module)
    if len(names) != 1:
        return None
    cls = absolute_name(names[0], module, is_package) + (f".{rest}" if rest else "")
    return cls, frozenset(f"{cls}.{m}" for m in methods)


def free_name(candidates: tuple[str, ...], taken) -> str:
    """The first candidate name not in `taken`; else the last one numbered (`_2`, `_3`...)."""
    for name in candidates:
        if name not in taken:
            return name
    n = 2
    while f"{candidates[-1]}_{n}" in taken:
        n += 1
    return f"{candidates[-1]}_{n}"


def absolute_name(name: str, module: str, is_package: bool = False) -> str:
    """`.train.fit` seen from `pkg.main` is `pkg.train.fit` (from `pkg/__init__`: `pkg.train.fit`)."""
    if not name.startswith("."):
        return name
    dots = len(name) - len(name.lstrip("."))
    package = module.split(".") if is_package else module.split(".")[:-1]
    if dots > 1:
        package = package[: len(package) - (dots - 1)]
    return ".".join([*package, name.lstrip(".")])


def import_qualified(module: str | None, name: str, level: int = 0) -> str:
    """The dotted name `from <module> import <name>` binds (relative imports keep their dots)."""
    base = "." * level + (module or "")
    if not base:
        return name
    return f"{base}.{name}" if not base.endswith(".") else f"{base}{name}"


def qualified_names(bindings: list[Binding], module: str, scope_qualname: str = "") -> list[str]:
    """What a name can stand for: imported dotted names, or `module.def` for definitions."""
    out = []
    for binding in bindings:
        if binding.kind == "import" and binding.qualified:
            out.append(binding.qualified)
        elif binding.kind in ("def", "class") and binding.qualified:
            out.append(".".join(p for p in (module, binding.qualified) if p))
    return out
