"""Phase 1 per file: what the repo-wide plan needs to know, read with Python's `ast`.

`ast` reads a file about ten times faster than LibCST with metadata, so the plan can look at
every file on an import path from an apex file and still only pay LibCST for the files that
will change. A summary holds the file's defs, classes, imports and calls (resolved through
its imports), and its `amp.initialize` sites with the decision of what each becomes.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from dataclasses import dataclass, field

from apex2native.codegen import detect_quote
from apex2native.facts import InitDecision, ScalerSpec
from apex2native.findings import NUMERICS, SAFE
from apex2native.index import BUILTIN_NAMES, ast_statements
from apex2native.native_twins import Twin, native_twins
from apex2native.scaler_options import (
    DOTTED,
    INIT_PARAMS,
    NOT_LITERAL,
    Arg,
    bind_initialize,
    scaler_options,
)
from apex2native.scopes import (
    CLASS,
    COMPREHENSION,
    FUNCTION,
    MODULE,
    Binding,
    Scope,
    absolute_name,
    free_name,
    import_qualified,
    instance_class,
    qualified_names,
)
from apex2native.target import RENAMES

PRIVATE_STATE = {"apex.amp._amp_state", "apex.amp._amp_state._amp_state"}
# fields of apex's LossScaler that scripts set right after initialize -> GradScaler options
PRIVATE_FIELDS = {"_loss_scale": "init_scale", "_scale_seq_len": "growth_interval"}

NEEDS = ("apex.amp.scale_loss", "apex.amp.state_dict", "apex.amp.load_state_dict")
SCALER_NAMES = ("scaler", "grad_scaler", "amp_scaler")
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
# calls that read (and change) gradients: apex unscaled before them, native AMP must too
GRAD_CLIPS = frozenset(
    {"clip_grad_norm_", "clip_grad_value_", "clip_grad_norm", "clip_gradients", "clip_grads"}
)
APEX_DDP_METHODS = ("enable_allreduce", "disable_allreduce")  # torch DDP has neither


def _names_autograd(node: ast.AST) -> bool:
    """`autograd` or `torch.autograd`: `autograd.grad(...)` computes gradients, it does not
    read the `.grad` a backward left."""
    return (isinstance(node, ast.Name) and node.id == "autograd") or (
        isinstance(node, ast.Attribute) and node.attr == "autograd"
    )


def _own_args(func) -> list[ast.arg]:
    a = func.args
    return [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]


def is_clip_name(dotted: str) -> bool:
    """`torch.nn.utils.clip_grad_norm_`: a dotted name whose last part is a clipping call."""
    return dotted.rsplit(".", 1)[-1] in GRAD_CLIPS


@dataclass
class Function:
    qualname: str
    path: str
    params: list[str]
    names: set[str]
    cls: str | None
    return_tuples: list[list[str]]
    line: int = 0
    required: tuple[str, ...] = ()  # parameters without a default (not *args/**kwargs)
    # parameters it calls (`model(x)`, `model.forward(x)`), and for a method the instance's
    # attributes it calls (`self.model(x)`)
    calls: frozenset[str] = frozenset()
    clips: bool = False  # it reads or changes gradients: a caller must unscale them first
    steps: frozenset[str] = frozenset()  # parameters it steps: `optimizer.step()`
    scales: bool = False  # it scales its own loss (`amp.scale_loss`)
    factory: bool = False  # a method whose every return makes its class: `return cls(...)`
    globals_called: frozenset[str] = frozenset()  # module-level names it runs: `model(x)`
    return_lines: tuple[int, ...] = ()  # the line of each of its `return` statements
    # parameters whose only use is the optimizer of `amp.scale_loss` (and `is None` tests):
    # handed the scaler instead, they keep the def's meaning (`attack(model, x, opt=None)`)
    scaling_optimizers: frozenset[str] = frozenset()
    scaled_optimizers: frozenset[str] = frozenset()  # names it hands `amp.scale_loss` itself
    # the `if` tests (code, arm taken) around every statement of a def that scales its loss
    # that would read a scaler (amp, steps, backwards, gradients), outermost first, and the
    # lines of the innermost block they guard: a call whose literal arguments make one of
    # them false needs no scaler (`run_nn(cfg, 'valid', ...)` of a def that trains only
    # under `if mode == 'train':`)
    scaler_guard: tuple[tuple[str, bool], ...] = ()
    guard_span: tuple[int, int] = (0, 0)
    rebound: frozenset[str] = frozenset()  # parameters the def assigns (or declares global)
    defaults: tuple[tuple[str, str], ...] = ()  # (parameter, code of its default)
    positional: tuple[str, ...] = ()  # the parameters a positional argument can fill
    # the parameter its scaled loss is, when the def only reworks it (`loss = loss.mean()`):
    # the forward pass that made the loss runs in the callers
    loss_param: str = ""
    # it runs a backward of its own that no `amp.scale_loss` scales (`reg.backward()`)
    plain_backward: bool = False
    # the `if` tests (code, arm taken) around every `amp.scale_loss` of the def, outermost
    # first: `(("self.use_amp", True),)` when a switch of its object picks the scaled arm
    scale_tests: tuple[tuple[str, bool], ...] = ()


@dataclass
class Call:
    path: str
    caller: str  # qualified name of the enclosing function, or the module name
    callee: str  # as the file's imports name it; made canonical by the planner
    args: list[str]
    keywords: dict[str, str]
    unpacked: int | None  # number of names the result is unpacked into, if any
    line: int
    raw: str = ""
    amp_args: tuple[str, ...] = ()  # positions ("0") and keywords that pass the amp module
    # a method called on a variable whose class the assignments tell: the methods of the
    # class that made the variable, which the plan must find to be factories
    factories: frozenset[str] = frozenset()
    starred: bool = False  # `f(*args)` or `f(**kwargs)`: which parameter gets what is unknown
    spelled: str = ""  # the called name as written (`atk` after `import attack as atk`)
    looped: bool = False  # it runs inside a loop of its function: maybe once per step


@dataclass
class ImportRef:
    """`import a.b [as c]` or `from [.]a import b [as c]`, as written."""

    line: int
    module: str  # dotted, with leading dots for relative imports
    names: list[tuple[str, str]]  # (imported name, bound name); empty for `import a.b`
    bound: str = ""  # for `import a.b as c`: "c"; for `import a.b`: "a"
    star: bool = False

    def spelled(self) -> str:
        """How code spells the module `import a.b [as c]` binds: `a.b`, or `c`."""
        return self.module if self.bound == self.module.split(".")[0] else self.bound


@dataclass
class InitSite:
    """One `amp.initialize` call: where it is and what the plan decided it becomes."""

    line: int
    home: str  # qualname of the function, class (self attribute) or module
    decision: InitDecision
    models: tuple[str, ...] = ()


@dataclass
class Summary:
    path: str
    module: str
    is_package: bool = False
    functions: dict[str, Function] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    imports: list[ImportRef] = field(default_factory=list)
    inits: list[InitSite] = field(default_factory=list)
    needs: set[str] = field(default_factory=set)
    module_names: set[str] = field(default_factory=set)  # bound at module level
    apex_exports: dict[str, str] = field(default_factory=dict)  # module name -> apex name
    # module-level flags an apex import guard sets (`HAS_APEX = True` / `False`)
    guard_flags: set[str] = field(default_factory=set)
    # of those, the ones that say whether apex's amp imports (True in the `try`, False in
    # the handler, the `try` importing `apex` or `apex.amp` only): A2N118's probes
    amp_probe_flags: set[str] = field(default_factory=set)
    uses_apex: bool = False
    amp_uses: list[tuple[int, str]] = field(default_factory=list)  # (line, apex.amp.* name)
    # project names read as values, not called (`run_all(train_step)`): (name, line, reader)
    value_refs: list[tuple[str, int, str]] = field(default_factory=list)
    # deprecated torch.cuda.amp classes tested by `isinstance`/`issubclass` or subclassed:
    # the objects other files make must stay of the old class
    kept_amp: set[str] = field(default_factory=set)
    # dotted names read through a name an import binds (`utils.HAS_APEX` after `import
    # utils`; `utils` alone where the module itself is passed on): what is read of a module
    module_reads: set[str] = field(default_factory=set)
    # apex DDP's own methods the file calls (`model.disable_allreduce()`): torch DDP has none
    apex_ddp_methods: set[str] = field(default_factory=set)
    identifiers: set[str] = field(default_factory=set)  # every identifier the file writes
    # defs whose name their scope binds more than once (two defs under `if`/`else`, a def
    # in an `except ImportError` beside the import): which one a call runs is not known
    redefined: set[str] = field(default_factory=set)
    # class -> the attributes its methods use on `self`, and the names its body binds
    class_attrs: dict[str, set[str]] = field(default_factory=dict)
    # attributes set on anything but `self` (`trainer.scaler = x`, `setattr(t, "scaler", x)`):
    # an object of any class may get them, so a new `self.<attribute>` must not be one
    outside_writes: set[str] = field(default_factory=set)
    # names a module-level `__all__` lists: its public API, called from outside the repository
    # (None: an `__all__` this summary cannot read, so any name may be public)
    public: set[str] | None = field(default_factory=set)
    # apex defs with a proven native twin (A2N119), and the defs inside each that would
    # need a scaler were it not routed to its twin
    twins: dict[str, Twin] = field(default_factory=dict)
    twin_needs: dict[str, set[str]] = field(default_factory=dict)
    # lines of initialize calls with options a default GradScaler cannot keep (`enabled=`,
    # an O0 or run-time opt level, `loss_scale=`): no routed twin may stand in for them
    optioned_inits: list[int] = field(default_factory=list)
    # of those, the ones with options beyond an O1-O3 or run-time opt level (a loss scale,
    # `enabled=`, O0): a scaler a class makes under its own switch could not keep them
    scaling_inits: list[int] = field(default_factory=list)
    # lines where the amp module itself is a value (saved, passed on, stored)
    amp_values: list[int] = field(default_factory=list)
    # class -> {attribute: parameter} its `__init__` body sets first thing, unconditionally
    # (`self.use_amp = use_amp`): a switch the object carries from its construction on
    init_switches: dict[str, dict[str, str]] = field(default_factory=dict)
    # attribute -> how many statements store it, on any object (`x.use_amp = ...`, `setattr`,
    # a class body's names); "*": stores that may set any attribute (`vars`, `__dict__`)
    attr_stores: dict[str, int] = field(default_factory=dict)
    # classes whose `__init__` never calls a base class's (`super().__init__(...)`): what
    # the bases' constructors set is not set on their objects
    lone_inits: set[str] = field(default_factory=set)


class SourceLines:
    """The source of `ast` nodes as written. `ast.get_source_segment` splits the whole file
    on every call; this splits it once."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)
        self._encoded: dict[int, bytes] = {}

    def _col(self, line: int, col: int) -> int:
        """A UTF-8 byte column of a line as a character index."""
        text = self.lines[line]
        if text.isascii():
            return col
        data = self._encoded.get(line)
        if data is None:
            data = self._encoded[line] = text.encode("utf-8")
        return len(data[:col].decode("utf-8", "replace"))

    def segment(self, node: ast.AST) -> str:
        end_line = getattr(node, "end_lineno", None)
        if end_line is None or node.lineno > len(self.lines) or end_line > len(self.lines):
            return ast.unparse(node).strip()
        first, last = node.lineno - 1, end_line - 1
        start = self._col(first, node.col_offset)
        end = self._col(last, node.end_col_offset)
        if first == last:
            return self.lines[first][start:end].strip()
        parts = [self.lines[first][start:], *self.lines[first + 1 : last], self.lines[last][:end]]
        return "".join(parts).strip()


# scopes -----------------------------------------------------------------------------------
class AstScopes:
    """Parent links and name bindings of an `ast` module (the twin of TreeIndex's scopes)."""

    def __init__(self, tree: ast.Module, module: str, is_package: bool) -> None:
        self.tree = tree
        self.module = module
        self.is_package = is_package
        self.parent: dict[int, ast.AST] = {}
        self.scope_of: dict[int, Scope] = {}
        self.store_scope: dict[int, Scope] = {}  # plain-name assignment targets
        self.module_scope = Scope(MODULE)
        self.by_type: dict[type, list[ast.AST]] = {}
        self._made_by: dict[int, str] = {}  # assignment targets -> the callee of their value
        self._star_module: str | None = None  # the module of the one star import ("": none)
        self._star_fallbacks: set[str] = set()  # names its `try` binds when it fails
        self._walk()

    def _walk(self) -> None:
        stack: list[tuple[ast.AST, Scope]] = [(self.tree, self.module_scope)]
        by_type = self.by_type
        while stack:
            node, scope = stack.pop()
            by_type.setdefault(type(node), []).append(node)
            children = self._children(node, scope)
            for child, _ in children:
                self.parent[id(child)] = node
            stack.extend(reversed(children))

    def of_type(self, *kinds: type) -> list[ast.AST]:
        """Every node of these types, in the order the walk met them."""
        return [n for kind in kinds for n in self.by_type.get(kind, ())]

    def _children(self, node: ast.AST, scope: Scope) -> list[tuple[ast.AST, Scope]]:
        kind = type(node)
        if kind is ast.Name:
            if isinstance(node.ctx, ast.Store):
                scope.bind(node.id, Binding("assign", made_by=self._made_by.pop(id(node), "")))
                self.store_scope[id(node)] = scope
            elif isinstance(node.ctx, ast.Load):
                self.scope_of[id(node)] = scope
            return []
        if kind is ast.Assign and len(node.targets) == 1 and isinstance(node.value, ast.Call):
            if isinstance(node.targets[0], ast.Name):
                made_by = _dotted(node.value.func)
                if made_by:
                    self._made_by[id(node.targets[0])] = made_by
        if kind in FUNCTIONS or kind is ast.ClassDef:
            return self._def(node, scope)
        if kind is ast.Lambda:
            inner = Scope(FUNCTION, scope)
            self.scope_of[id(node)] = inner
            self._params(node.args, inner)
            outer = [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            return [(c, scope) for c in outer] + [(node.body, inner)]
        if kind in COMPREHENSIONS:
            inner = Scope(COMPREHENSION, scope)
            self.scope_of[id(node)] = inner
            out = []
            for i, gen in enumerate(node.generators):
                out.append((gen.iter, scope if i == 0 else inner))
                out.append((gen.target, inner))
                out.extend((cond, inner) for cond in gen.ifs)
            elts = [node.key, node.value] if kind is ast.DictComp else [node.elt]
            return out + [(e, inner) for e in elts]
        if kind is ast.NamedExpr:
            if isinstance(node.target, ast.Name):
                scope.function_scope().bind(node.target.id, Binding("assign"))
            return [(node.value, scope)]
        if kind is ast.Import or kind is ast.ImportFrom:
            self._import(node, scope)
            return []
        if kind is ast.Global or kind is ast.Nonlocal:
            (scope.globals if kind is ast.Global else scope.nonlocals).update(node.names)
            return []
        if kind is ast.ExceptHandler and node.name:
            scope.bind(node.name, Binding("assign"))
        elif kind in (ast.MatchAs, ast.MatchStar) and node.name:
            scope.bind(node.name, Binding("assign"))
        return [(c, scope) for c in ast.iter_child_nodes(node)]

    def _def(self, node, scope: Scope) -> list[tuple[ast.AST, Scope]]:
        is_class = isinstance(node, ast.ClassDef)
        qualified = node.name if scope.kind == MODULE else None
        scope.bind(node.name, Binding("class" if is_class else "def", qualified))
        inner = Scope(CLASS if is_class else FUNCTION, scope, node.name)
        self.scope_of[id(node)] = inner
        outer: list[ast.AST] = list(node.decorator_list)
        if is_class:
            outer += [*node.bases, *node.keywords]
        else:
            self._params(node.args, inner)
            args = node.args
            outer += [*args.defaults, *(d for d in args.kw_defaults if d)]
            outer += [
                a.annotation
                for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
                if a is not None and a.annotation is not None
            ]
            if node.returns is not None:
                outer.append(node.returns)
        return [(c, scope) for c in outer] + [(s, inner) for s in node.body]

    @staticmethod
    def _params(args: ast.arguments, inner: Scope) -> None:
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if a is not None:
                inner.bind(a.arg, Binding("param"))

    def _import(self, node, scope: Scope) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    scope.bind(alias.asname, Binding("import", alias.name, id(node)))
                else:
                    top = alias.name.split(".")[0]
                    scope.bind(top, Binding("import", top, id(node)))
            return
        for alias in node.names:
            if alias.name == "*":
                continue
            qualified = import_qualified(node.module, alias.name, node.level)
            scope.bind(alias.asname or alias.name, Binding("import", qualified, id(node)))

    # queries ---------------------------------------------------------------------------
    def bindings(self, name: ast.Name) -> list[Binding]:
        scope = self.scope_of.get(id(name))
        return scope.lookup(name.id) if scope is not None else []

    def imported(self, node: ast.AST) -> list[str]:
        """Dotted names an expression stands for through imports (seen through calls and
        subscripts on the way, as the LibCST side does)."""
        if isinstance(node, ast.Name):
            return [b.qualified for b in self.bindings(node) if b.kind == "import" and b.qualified]
        if isinstance(node, ast.Attribute):
            return [f"{base}.{node.attr}" for base in self.imported(_through(node.value))]
        return []

    def star_imported(self, node: ast.AST) -> list[str]:
        """`amp.scale_loss` read where nothing binds `amp` (or only the fallback of the `try`
        around the import, `except ImportError: amp = None`) and the module's one star
        import (`from .utils import *`) may: the dotted name through that module, else []."""
        if isinstance(node, ast.Attribute):
            return [f"{base}.{node.attr}" for base in self.star_imported(_through(node.value))]
        if not isinstance(node, ast.Name) or node.id in BUILTIN_NAMES:
            return []
        if self._star_module is None:
            self._star_module, self._star_fallbacks = "", set()
            stars = [
                n
                for n in ast.walk(self.tree)
                if isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)
            ]
            if len(stars) == 1:
                star = stars[0]
                spelled = "." * star.level + (star.module or "")
                self._star_module = absolute_name(spelled, self.module, self.is_package)
                guard = self.parent.get(id(star))
                if isinstance(guard, ast.Try) and star in guard.body:
                    self._star_fallbacks = {
                        t.id
                        for h in guard.handlers
                        for a in h.body
                        if isinstance(a, ast.Assign)
                        for t in a.targets
                        if isinstance(t, ast.Name)
                    }
        bound = self.bindings(node)
        if bound and not (
            node.id in self._star_fallbacks and all(b.kind == "assign" for b in bound)
        ):
            return []
        return [f"{self._star_module}.{node.id}"] if self._star_module else []

    def qualified(self, node: ast.AST) -> list[str]:
        if isinstance(node, ast.Name):
            names = qualified_names(self.bindings(node), self.module)
            return [absolute_name(n, self.module, self.is_package) for n in names]
        if isinstance(node, ast.Attribute):
            return [f"{base}.{node.attr}" for base in self.qualified(_through(node.value))]
        return []

    def ancestors(self, node: ast.AST):
        current = self.parent.get(id(node))
        while current is not None:
            yield current
            current = self.parent.get(id(current))


def _on_self(node: ast.AST) -> bool:
    """`self.<name>`."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


# decorators that hand back a function called as it was, and keep no reference to it
KEEPING_DECORATORS = frozenset(
    {
        "staticmethod",
        "classmethod",
        "torch.no_grad",
        "torch.enable_grad",
        "torch.inference_mode",
        "torch.autograd.no_grad",
        "torch.autograd.enable_grad",
        "torch.autograd.grad_mode.no_grad",
    }
)
# attributes of a function that read it without calling it a new way
HARMLESS_DUNDERS = frozenset(
    {"__name__", "__qualname__", "__doc__", "__module__", "__file__", "__class__"}
)


def _string_prefix(node: ast.AST) -> str | None:
    """The constant start of a string built at run time: `"pkg.models." + name`,
    `f"pkg.models.{name}"`."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _string(node.left) or _string_prefix(node.left)
    if isinstance(node, ast.JoinedStr) and node.values:
        return _string(node.values[0])
    return None


def _string(node: ast.AST) -> str | None:
    """The value of a string constant, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _dotted(node: ast.AST) -> str:
    """`a.b.c` spelled out; "" for anything but names and attributes of names."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _callee_word(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _position(node: ast.AST) -> tuple[int, int]:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def _through(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


# the summary ------------------------------------------------------------------------------
class _Summarizer:
    def __init__(
        self,
        path: str,
        text: str,
        tree: ast.Module,
        module: str,
        is_package: bool,
        aliases: dict[str, str] | None = None,
        reserved: tuple[str, ...] = (),
    ):
        self.path = path
        self.aliases = aliases or {}
        # attributes a new `self.<scaler>` must not take: related classes elsewhere use them
        self.reserved = set(reserved)
        self.source = SourceLines(text)
        self.text = text
        self.tree = tree
        self.scopes = AstScopes(tree, module, is_package)
        self.summary = Summary(path, module, is_package)
        self._quote: str | None = None
        self._apex_memo: dict[int, str | None] = {}
        self._handle_keys: set[tuple[int, str]] | None = None
        self._wrapped_keys: set[tuple[int, str]] | None = None
        self._held: dict[int, set[str]] = {}
        self._held_ready = False
        self._flags: set[str] | None = None
        self._identifiers: set[str] | None = None
        self._returns: dict[int, list[ast.Return]] = {}
        self._calls_in: dict[int, list[ast.Call]] = {}
        self._grad_defs: set[int] | None = None
        self._assigns: dict[str, list[ast.Assign]] | None = None
        self.opt_levels: dict[str, str | None] = {}  # scaler unit -> its opt_level code

    def code(self, node: ast.AST) -> str:
        return self.source.segment(node)

    def lit(self, value: str) -> str:
        """A string literal in the file's quote style."""
        if self._quote is None:
            self._quote = detect_quote(self.text)
        return f"{self._quote}{value}{self._quote}"

    # names -----------------------------------------------------------------------------
    def apex_name(self, node: ast.AST) -> str | None:
        key = id(node)
        if key not in self._apex_memo:
            found = None
            if isinstance(node, (ast.Name, ast.Attribute)):
                for name in sorted(self.scopes.imported(node)):
                    if name.startswith(".") and self.aliases:  # the aliases are absolute
                        name = absolute_name(name, self.scopes.module, self.scopes.is_package)
                    name = unalias(name, self.aliases)
                    if name == "apex" or name.startswith("apex."):
                        found = name
                        break
                if found is None and self.aliases:
                    found = star_apex_name(self.scopes.star_imported(node), self.aliases)
                if found is None:
                    found = self.handle_name(node)
                if found is None:
                    found = self._held_apex_name(node)
            self._apex_memo[key] = found
        return self._apex_memo[key]

    def handle_name(self, node: ast.AST) -> str | None:
        """`handle.scale_loss` where `handle = amp.init(...)` is the name's one binding:
        the old API's handle does what the amp module does."""
        root, parts = node, []
        while isinstance(root, ast.Attribute):
            parts.insert(0, root.attr)
            root = root.value
        if not isinstance(root, ast.Name) or not self._handles():
            return None
        scope = self.scopes.scope_of.get(id(root))
        if isinstance(root.ctx, ast.Store):
            scope = self.scopes.store_scope.get(id(root))
        binder = scope.resolve(root.id) if scope is not None else None
        if binder is None:
            return None
        if (id(binder), root.id) in self._handles():
            return ".".join(["apex.amp", *parts])
        if parts == ["scale_loss"] and (id(binder), root.id) in self._wrapped():
            return "apex.amp.scale_loss"  # the wrapper's scale_loss(loss): its own optimizer
        return None

    def _wrapped(self) -> set[tuple[int, str]]:
        """`opt = handle.wrap_optimizer(opt)`: names whose `scale_loss(loss)` is the handle's."""
        if self._wrapped_keys is None:
            self._wrapped_keys = set()
            for stmt in self.scopes.of_type(ast.Assign):
                call = stmt.value
                if not (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "wrap_optimizer"
                    and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)
                    and self.handle_name(call.func.value) == "apex.amp"
                ):
                    continue
                scope = self.scopes.store_scope.get(id(stmt.targets[0]))
                if scope is not None:
                    self._wrapped_keys.add((id(scope), stmt.targets[0].id))
        return self._wrapped_keys

    def _handles(self) -> set[tuple[int, str]]:
        if self._handle_keys is None:
            self._handle_keys = set()
            for call in self.scopes.of_type(ast.Call):
                func = call.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name != "init" or not any(
                    unalias(n, self.aliases) == "apex.amp.init" for n in self.scopes.imported(func)
                ):
                    continue
                stmt = self.statement_of(call)
                if not (
                    isinstance(stmt, ast.Assign)
                    and stmt.value is call
                    and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)
                ):
                    continue
                name = stmt.targets[0].id
                scope = self.scopes.store_scope.get(id(stmt.targets[0]))
                if scope is not None and len(scope.bindings.get(name, ())) == 1:
                    self._handle_keys.add((id(scope), name))
        return self._handle_keys

    def _held_apex_name(self, node: ast.AST) -> str | None:
        parts: list[str] = []
        current = node
        while isinstance(current, ast.Attribute):
            parts.insert(0, current.attr)
            current = current.value
        if not (isinstance(current, ast.Name) and current.id == "self" and parts):
            return None
        cls = next((a for a in self.scopes.ancestors(node) if isinstance(a, ast.ClassDef)), None)
        if cls is None or parts[0] not in self.held(cls):
            return None
        return ".".join(["apex.amp", *parts[1:]])

    def held(self, cls: ast.ClassDef) -> set[str]:
        """Attributes a class sets to the amp module (`self.amp = amp if fp16 else None`)."""
        if not self._held_ready:
            self._held_ready = True
            for node in self.scopes.of_type(ast.Assign):
                if len(node.targets) != 1:
                    continue
                target = node.targets[0]
                if not (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    continue
                values = (
                    [node.value.body, node.value.orelse]
                    if isinstance(node.value, ast.IfExp)
                    else [node.value]
                )
                if any(self.apex_name(v) == "apex.amp" for v in values):
                    owner = next(
                        (a for a in self.scopes.ancestors(node) if isinstance(a, ast.ClassDef)),
                        None,
                    )
                    if owner is not None:
                        self._held.setdefault(id(owner), set()).add(target.attr)
        return self._held.get(id(cls), set())

    def flags(self) -> set[str]:
        """`HAS_APEX = True` style flags set in apex import guards."""
        if self._flags is None:
            self._flags = set()
            for node in self.scopes.of_type(ast.Try):
                if _guards_apex_import(node):
                    for part in (*node.body, *node.handlers):
                        for n in ast.walk(part):
                            if (
                                isinstance(n, ast.Assign)
                                and len(n.targets) == 1
                                and isinstance(n.targets[0], ast.Name)
                                and isinstance(n.value, ast.Constant)
                                and isinstance(n.value.value, bool)
                            ):
                                self._flags.add(n.targets[0].id)
        return self._flags

    def _helper_probe_flags(self) -> set[str]:
        """Module-level flags a probe helper sets, and nothing else ever sets
        (`has_apex = is_apex_available()`; not `has_apex = False` on a condition after)."""
        assigned: dict[str, int] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                assigned[node.id] = assigned.get(node.id, 0) + 1
            elif isinstance(node, ast.Global):
                for name in node.names:
                    assigned[name] = assigned.get(name, 0) + 2
        out: set[str] = set()
        for node in self.tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if (
                len(targets) == 1
                and isinstance(targets[0], ast.Name)
                and isinstance(node.value, ast.Call)
                and not node.value.args
                and not node.value.keywords
                and _last_name(node.value.func) in APEX_PROBE_HELPERS
            ):
                out.add(targets[0].id)
        return {flag for flag in out if assigned[flag] == 1}

    def _amp_probe_flags(self) -> set[str]:
        """Module-level flags a `try` sets True after importing only `apex` or `apex.amp`,
        and False in its handlers."""
        out: set[str] = set()
        for node in self.tree.body:
            if not isinstance(node, ast.Try) or not _guards_apex_import(node):
                continue
            imports = [n for s in node.body for n in ast.walk(s) if isinstance(n, ast.Import)]
            froms = [n for s in node.body for n in ast.walk(s) if isinstance(n, ast.ImportFrom)]
            if not all(a.name in ("apex", "apex.amp") for n in imports for a in n.names):
                continue
            if not all(
                n.module == "apex.amp"
                or (n.module == "apex" and [a.name for a in n.names] == ["amp"])
                for n in froms
            ):
                continue
            values: dict[str, set[tuple[bool, object]]] = {}
            for part, in_body in [(node.body, True), *((h.body, False) for h in node.handlers)]:
                for n in (x for s in part for x in ast.walk(s)):
                    if (
                        isinstance(n, ast.Assign)
                        and len(n.targets) == 1
                        and isinstance(n.targets[0], ast.Name)
                    ):
                        value = n.value.value if isinstance(n.value, ast.Constant) else n
                        values.setdefault(n.targets[0].id, set()).add((in_body, value))
            out |= {flag for flag, seen in values.items() if seen == {(True, True), (False, False)}}
        return out

    def is_availability_test(self, node: ast.AST) -> bool:
        """`amp`, `amp is not None`, `HAS_APEX`: true once apex is gone."""
        if isinstance(node, ast.Name) and self.apex_name(node) in ("apex", "apex.amp"):
            return True
        if (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], ast.IsNot)
            and isinstance(node.comparators[0], ast.Constant)
            and node.comparators[0].value is None
            and isinstance(node.left, ast.Name)
        ):
            return self.apex_name(node.left) in ("apex", "apex.amp")
        return isinstance(node, ast.Name) and node.id in self.flags()

    # structure -------------------------------------------------------------------------
    def qualname(self, node: ast.AST) -> str:
        parts = [node.name] if isinstance(node, (*FUNCTIONS, ast.ClassDef)) else []
        for anc in self.scopes.ancestors(node):
            if isinstance(anc, (*FUNCTIONS, ast.ClassDef)):
                parts.insert(0, anc.name)
        return ".".join(p for p in (self.summary.module, *parts) if p)

    def enclosing_function(self, node: ast.AST):
        return next((a for a in self.scopes.ancestors(node) if isinstance(a, FUNCTIONS)), None)

    def enclosing_class(self, func: ast.AST) -> ast.ClassDef | None:
        parent = self.scopes.parent.get(id(func))
        return parent if isinstance(parent, ast.ClassDef) else None

    def statement_of(self, node: ast.AST) -> ast.stmt:
        current = node
        while not isinstance(current, ast.stmt):
            current = self.scopes.parent[id(current)]
        return current  # type: ignore[return-value]

    def run(self) -> Summary:
        s = self.summary
        s.module_names = set(self.scopes.module_scope.bindings)
        for name, bindings in self.scopes.module_scope.bindings.items():
            for b in bindings:
                if b.kind == "import" and b.qualified:
                    q = b.qualified
                    if q == "apex" or q.startswith("apex."):
                        s.apex_exports[name] = q
        s.guard_flags = self.flags() & s.module_names
        s.amp_probe_flags = (self._amp_probe_flags() & s.guard_flags) | self._helper_probe_flags()
        s.identifiers = self.identifiers()
        s.public = _listed_in_all(self.tree)
        s.outside_writes = self._outside_writes() if "scaler" in self.text else set()
        s.attr_stores = self._attr_stores()
        self._returns = self._collect_returns()
        self._calls_in = self._calls_by_function()
        for node in self.scopes.of_type(*FUNCTIONS):
            self._function(node)
            inner = self.scopes.scope_of.get(id(node))
            outer = inner.parent if inner is not None else None
            if outer is not None and len(outer.bindings.get(node.name, ())) > 1:
                s.redefined.add(self.qualname(node))
        for node in self.scopes.of_type(ast.ClassDef):
            bases = [q for b in node.bases for q in self.scopes.qualified(b)[:1]]
            s.classes[self.qualname(node)] = bases
            if "scaler" in self.text:  # only a scaler's own names can clash with one
                attrs = {
                    n.attr
                    for n in ast.walk(node)
                    if isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Name)
                    and n.value.id == "self"
                    and "scaler" in n.attr
                }
                attrs |= {
                    name for stmt in node.body for name in _bound_names(stmt) if "scaler" in name
                }
                s.class_attrs[self.qualname(node)] = attrs
            switches = _init_switches(node)
            if switches:
                s.init_switches[self.qualname(node)] = switches
            if _inits_alone(node):
                s.lone_inits.add(self.qualname(node))
        for node in self.scopes.of_type(ast.Call):
            self._call(node)
            if isinstance(node.func, ast.Attribute) and node.func.attr in APEX_DDP_METHODS:
                s.apex_ddp_methods.add(node.func.attr)
        self._value_refs()
        self._dynamic_refs()
        self._decorated_refs()
        for node in sorted(self.scopes.of_type(ast.Import, ast.ImportFrom), key=_position):
            self._import(node)
        self._module_reads()
        if s.uses_apex or s.apex_exports or self.aliases:
            self._apex_sites()
        self._star_amp()
        return s

    def _star_amp(self) -> None:
        """`amp.scale_loss(...)` where no statement binds `amp` (a `from m import *`, an
        import in another function): apex, most likely, and nothing the plan can follow."""
        if "amp." not in self.text:
            return
        for node in self.scopes.of_type(ast.Attribute):
            if (
                star_amp_use(node)
                and not self.scopes.bindings(node.value)
                and self.apex_name(node.value) is None  # not a star import the plan follows
            ):
                self.summary.uses_apex = True
                self.summary.amp_uses.append(
                    (self.statement_of(node).lineno, f"apex.amp.{node.attr} (unbound amp)")
                )

    def _outside_writes(self) -> set[str]:
        out = {
            n.attr
            for n in self.scopes.of_type(ast.Attribute)
            if isinstance(n.ctx, ast.Store) and not _on_self(n)
        }
        for call in self.scopes.of_type(ast.Call):
            if (
                isinstance(call.func, ast.Name)
                and call.func.id == "setattr"
                and len(call.args) >= 2
                and isinstance(call.args[1], ast.Constant)
                and isinstance(call.args[1].value, str)
            ):
                out.add(call.args[1].value)
        return out

    def _attr_stores(self) -> dict[str, int]:
        """How many statements store each attribute, on any object; "*" counts the stores
        that may set any attribute (`setattr(obj, name, v)`, `obj.__dict__.update(...)`,
        `vars(obj)`), and class bodies count the names they bind."""
        counts: dict[str, int] = {}

        def add(name: str) -> None:
            counts[name] = counts.get(name, 0) + 1

        for n in self.scopes.of_type(ast.Attribute):
            if not isinstance(n.ctx, ast.Load):
                add(n.attr)
            elif n.attr == "__dict__" and self._may_set_through(n):
                add("*")
        for call in self.scopes.of_type(ast.Call):
            name = _dotted(call.func)
            if name in ("setattr", "delattr", "object.__setattr__"):
                key = call.args[1] if len(call.args) >= 2 else None
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    add(key.value)
                else:
                    add("*")
            elif name == "vars" and self._may_set_through(call):
                add("*")
        for node in self.scopes.of_type(ast.ClassDef):
            for stmt in node.body:
                for bound in _bound_names(stmt):
                    add(bound)
                if isinstance(stmt, ast.Assign) and any(
                    _is_name(t, "__slots__") for t in stmt.targets
                ):
                    add("*")
        return counts

    def _may_set_through(self, node: ast.expr) -> bool:
        """`vars(x)` / `x.__dict__` used to set attributes (`.update(...)`, an item stored) or
        to hand an object's own attributes on (`vars(self)`: a copy rebuilt from them)."""
        target = node.args[0] if isinstance(node, ast.Call) and node.args else None
        if isinstance(node, ast.Attribute):
            target = node.value
        if isinstance(target, ast.Name) and target.id in ("self", "cls"):
            return True
        parent = self.scopes.parent.get(id(node))
        if isinstance(parent, ast.Subscript):
            return not isinstance(parent.ctx, ast.Load)
        return isinstance(parent, ast.Attribute) and parent.attr in MUTATING_METHODS

    def _factory(self, node, cls: ast.ClassDef | None) -> bool:
        """A method of `cls` whose every return makes an instance of it: `return cls(...)`
        in a classmethod, `return ClassName(...)` anywhere in the class."""
        if cls is None:
            return False
        first = (node.args.posonlyargs + node.args.args)[:1]
        classmethod = any(_dotted(d) == "classmethod" for d in node.decorator_list)
        makers = {cls.name} | ({first[0].arg} if classmethod and first else set())
        returns = self._returns.get(id(node), [])
        return bool(returns) and all(
            isinstance(r.value, ast.Call)
            and isinstance(r.value.func, ast.Name)
            and r.value.func.id in makers
            for r in returns
        )

    def _function(self, node) -> None:
        cls = self.enclosing_class(node)
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        params = [a.arg for a in (*positional, *args.kwonlyargs)]
        required = [a.arg for a in positional[: len(positional) - len(args.defaults)]]
        required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
        scales = any(
            self.apex_name(c.func) == "apex.amp.scale_loss"
            for c in self._calls_in.get(id(node), ())
        )
        self.summary.functions[self.qualname(node)] = Function(
            self.qualname(node),
            self.path,
            params,
            self.identifiers(),
            self.qualname(cls) if cls is not None else None,
            [
                [self.code(e) for e in r.value.elts] if isinstance(r.value, ast.Tuple) else []
                for r in self._returns.get(id(node), [])
            ],
            node.lineno,
            tuple(required),
            frozenset(self._called_params(node, set(params))),
            self._touches_grads(node),
            frozenset() if scales else frozenset(self._stepped_params(node, set(params))),
            scales,
            self._factory(node, cls),
            frozenset(self._called_globals(node)),
            tuple(r.lineno for r in self._returns.get(id(node), [])),
            frozenset(self._scaling_optimizers(node)) if scales else frozenset(),
            frozenset(self._scaled_optimizers(node)) if scales else frozenset(),
            *(self._scaler_guard(node) if scales else ((), (0, 0))),
            frozenset(self._rebound(node, set(params))) if scales else frozenset(),
            self._defaults(node) if scales else (),
            self._positional(node) if scales else (),
            self._loss_param(node, set(params)) if scales else "",
            self._runs_plain_backward(node),
            scale_tests=self._common_arms(node, self._is_scale_loss)[0] if scales else (),
        )

    def _is_scale_loss(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and self.apex_name(node.func) == "apex.amp.scale_loss"

    def _loss_param(self, func, params: set[str]) -> str:
        """The parameter every `amp.scale_loss` of the def scales, when each statement that
        binds it again reads it (`loss = loss / accum`): the loss comes from the callers."""
        found = set()
        for call in self._calls_in.get(id(func), ()):
            if self.apex_name(call.func) != "apex.amp.scale_loss":
                continue
            loss = call.args[0] if call.args else None
            loss = next((k.value for k in call.keywords if k.arg == "loss"), loss)
            if not isinstance(loss, ast.Name) or loss.id not in params:
                return ""
            found.add(loss.id)
        if len(found) != 1:
            return ""
        name = found.pop()
        for node in ast.walk(func):
            if isinstance(node, (*FUNCTIONS, ast.Lambda, ast.ClassDef)) and node is not func:
                if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node)):
                    return ""  # a nested scope reads or binds it: not followed
            if isinstance(node, ast.AugAssign) and _is_name(node.target, name):
                continue  # `loss /= accum` reads it
            if isinstance(node, ast.AnnAssign) and node.value is None:
                continue  # an annotation binds nothing
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                binds = any(_is_name(n, name) for t in targets for n in ast.walk(t))
                if binds and not any(_is_name(n, name) for n in _names(node.value or func)):
                    return ""  # bound to a fresh value: the loss is made here
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.NamedExpr)):
                targets = [node.target] if hasattr(node, "target") else []
                targets += [i.optional_vars for i in getattr(node, "items", []) if i.optional_vars]
                if any(_is_name(n, name) for t in targets for n in ast.walk(t)):
                    return ""
        return name

    def _positional(self, func) -> tuple[str, ...]:
        return tuple(a.arg for a in (*func.args.posonlyargs, *func.args.args))

    def _defaults(self, func) -> tuple[tuple[str, str], ...]:
        args = func.args
        positional = [*args.posonlyargs, *args.args]
        pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        return tuple((a.arg, self.code(d)) for a, d in pairs)

    def _scaler_guard(self, func) -> tuple[tuple[tuple[str, bool], ...], tuple[int, int]]:
        """The `if` arms shared by every statement of `func` a migration makes read the
        scaler or the gradients, and the lines of the innermost one."""
        if func.args.vararg is not None or func.args.posonlyargs:
            return (), (0, 0)  # which parameter an argument lands in is unsure
        return self._common_arms(func, self._reads_scaler)

    def _common_arms(self, func, wanted) -> tuple[tuple[tuple[str, bool], ...], tuple[int, int]]:
        """The `if` arms of `func` shared by every statement holding a node `wanted` picks,
        outermost first, and the lines of the innermost one."""
        chains = []
        for found in ast.walk(func):
            if found is func or not wanted(found):
                continue
            if self.enclosing_function(found) is not func:
                return (), (0, 0)  # a nested def may run anywhere, outside every arm
            chain: list[tuple[ast.If, bool]] = []
            child: ast.AST = self.statement_of(found)
            for anc in self.scopes.ancestors(child):
                if anc is func:
                    break
                if isinstance(anc, ast.If):
                    chain.insert(0, (anc, any(c is child for c in anc.body)))
                child = anc
            chains.append(chain)
        common: list[tuple[ast.If, bool]] = []
        for links in zip(*chains) if chains else ():
            if any(link[0] is not links[0][0] or link[1] != links[0][1] for link in links):
                break
            common.append(links[0])
        if not common:
            return (), (0, 0)
        last, arm = common[-1]
        block = last.body if arm else last.orelse
        span = (block[0].lineno, block[-1].end_lineno or block[-1].lineno)
        return tuple((self.code(test.test), taken) for test, taken in common), span

    def _reads_scaler(self, node: ast.AST) -> bool:
        """apex.amp, a step, a backward, a gradient or a clip: what the scaler must see."""
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = self.apex_name(node)
            if name is not None and (name == "apex.amp" or name.startswith("apex.amp.")):
                return True
            return isinstance(node, ast.Attribute) and node.attr == "grad"
        if isinstance(node, ast.Call):
            method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            return method in ("step", "backward") or self._clip_call(node)
        return False

    def _rebound(self, func, params: set[str]) -> set[str]:
        """Parameters any statement of the def (or of a def inside it) may bind again."""
        out = set()
        for node in ast.walk(func):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                out.add(node.id)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                out.update(node.names)
            elif isinstance(node, ast.alias):
                out.add(node.asname or node.name.split(".")[0])
            elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)):
                out.add(node.name or "")
            elif isinstance(node, ast.MatchMapping):
                out.add(node.rest or "")
            elif isinstance(node, ast.arg) and node not in _own_args(func):
                out.add(node.arg)
            elif isinstance(node, (*FUNCTIONS, ast.ClassDef)) and node is not func:
                out.add(node.name)
        return out & params

    def _scaled_optimizers(self, func) -> set[str]:
        found = set()
        for call in self._calls_in.get(id(func), ()):
            optimizer = self._scale_loss_optimizer(call)
            if isinstance(optimizer, ast.Name):
                found.add(optimizer.id)
        return found

    def _scale_loss_optimizer(self, call: ast.Call) -> ast.expr | None:
        """The optimizer `amp.scale_loss(loss, opt)` is handed, by position or keyword."""
        if self.apex_name(call.func) != "apex.amp.scale_loss":
            return None
        given = call.args[1:2] + [k.value for k in call.keywords if k.arg == "optimizers"]
        return given[0] if given else None

    def _scaling_optimizers(self, func) -> set[str]:
        """Parameters read only as the optimizer of `amp.scale_loss(loss, opt)` and in
        tests of whether one was given (`if opt is not None:`, `if opt:`). Plain
        positional-or-keyword parameters of a def without `*args`; a read in a nested
        def or lambda counts as another use."""
        if func.args.vararg is not None:
            return set()
        params = {a.arg for a in func.args.args}
        uses: dict[str, list[ast.Name]] = {}
        for node in ast.walk(func):
            if isinstance(node, ast.Name) and node.id in params:
                uses.setdefault(node.id, []).append(node)
        found = set()
        for name, names in uses.items():
            kinds = [
                self._scaling_use(n) if self.enclosing_function(n) is func else "" for n in names
            ]
            if "scale" in kinds and all(kinds):
                found.add(name)
        return found

    def _scaling_use(self, node: ast.Name) -> str:
        """'scale' (the optimizer of scale_loss), 'test' (is it given?), or '' (other)."""
        if not isinstance(node.ctx, ast.Load):
            return ""
        parent = self.scopes.parent.get(id(node))
        if isinstance(parent, ast.Call) and self.apex_name(parent.func) == "apex.amp.scale_loss":
            return "scale" if self._scale_loss_optimizer(parent) is node else ""
        if isinstance(parent, ast.Compare):
            is_none = (
                parent.left is node
                and len(parent.ops) == 1
                and isinstance(parent.ops[0], (ast.Is, ast.IsNot))
                and isinstance(parent.comparators[0], ast.Constant)
                and parent.comparators[0].value is None
            )
            return "test" if is_none else ""
        if isinstance(parent, (ast.If, ast.IfExp, ast.While)) and parent.test is node:
            return "test"
        if isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.Not):
            return "test"
        return ""

    def _touches_grads(self, func) -> bool:
        """The def reads or changes gradients: `.grad` of anything, a clipping call by any
        name, or a plain backward. A caller must unscale before it, as apex had on leaving
        `scale_loss`."""
        if self._grad_defs is None:
            self._grad_defs = {
                id(self.enclosing_function(a))
                for a in self.scopes.of_type(ast.Attribute)
                if a.attr == "grad" and not _names_autograd(a.value)
            }
        calls = self._calls_in.get(id(func), ())
        return (
            id(func) in self._grad_defs
            or any(self._clip_call(c) for c in calls)
            or (  # a def that scales a loss of its own: A2N103 judges its plain backward
                self._runs_plain_backward(func)
                and not any(self.apex_name(c.func) == "apex.amp.scale_loss" for c in calls)
            )
        )

    def _runs_plain_backward(self, func) -> bool:
        """A `.backward()` in the def whose tensor is not what an `amp.scale_loss` of the
        def yields (`with amp.scale_loss(l, opt) as s: s.backward()` is scaled)."""
        scaled = {
            item.optional_vars.id
            for node in ast.walk(func)
            if isinstance(node, (ast.With, ast.AsyncWith))
            for item in node.items
            if isinstance(item.optional_vars, ast.Name)
            and isinstance(item.context_expr, ast.Call)
            and self.apex_name(item.context_expr.func) == "apex.amp.scale_loss"
        }
        return any(
            isinstance(c.func, ast.Attribute)
            and c.func.attr == "backward"
            and not (isinstance(c.func.value, ast.Name) and c.func.value.id in scaled)
            for c in self._calls_in.get(id(func), ())
        )

    def _stepped_params(self, func, params: set[str]) -> set[str]:
        """Parameters the def steps (`opt.step()`): handed a scaled optimizer, it would apply
        gradients that still carry the loss scale. (A def that scales its own loss has its
        steps migrated with its backward, so it is not asked.)"""
        calls = self._calls_in.get(id(func), ())
        return {
            call.func.value.id
            for call in calls
            if isinstance(call.func, ast.Attribute)
            and call.func.attr == "step"
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id in params
        }

    def _clip_call(self, call: ast.Call) -> bool:
        """`clip_grad_norm_(...)`, also under an import alias (`clip_grad_norm_ as clip`)
        or a name bound once to one (`clip = torch.nn.utils.clip_grad_norm_`)."""
        return self._names_clip(call.func) or self._names_clip(self._alias_value(call.func))

    def _names_clip(self, node: ast.AST | None) -> bool:
        """`clip_grad_norm_`, `torch.nn.utils.clip_grad_norm_`, or an imported alias of one."""
        if isinstance(node, ast.Name) and node.id in GRAD_CLIPS:
            return True
        if isinstance(node, ast.Attribute) and node.attr in GRAD_CLIPS:
            return True
        return node is not None and any(is_clip_name(n) for n in self.scopes.imported(node))

    def _alias_value(self, node: ast.AST) -> ast.AST | None:
        """What `name = <value>` gave a name that one assignment alone binds, else None."""
        if not isinstance(node, ast.Name):
            return None
        scope = self.scopes.scope_of.get(id(node))
        binder = scope.resolve(node.id) if scope is not None else None
        bindings = binder.bindings.get(node.id, []) if binder is not None else []
        if len(bindings) != 1 or bindings[0].kind != "assign":
            return None
        if self._assigns is None:
            self._assigns = {}
            for a in self.scopes.of_type(ast.Assign):
                if len(a.targets) == 1 and isinstance(a.targets[0], ast.Name):
                    self._assigns.setdefault(a.targets[0].id, []).append(a)
        assigns = [
            a
            for a in self._assigns.get(node.id, ())
            if self.scopes.store_scope.get(id(a.targets[0])) is binder
        ]
        return assigns[0].value if len(assigns) == 1 else None

    def _called_params(self, func, params: set[str]) -> set[str]:
        """Parameters the def runs as a model: `p(...)`, `p.forward(...)`, `p.module(...)`;
        for a method, also attributes of its instance (`self.model(...)`)."""
        out = set()
        args = func.args
        first = [*args.posonlyargs, *args.args][:1]
        own = first[0].arg if first and self.enclosing_class(func) is not None else None
        for call in self._calls_in.get(id(func), ()):
            target = call.func
            if isinstance(target, ast.Attribute) and target.attr in ("forward", "module"):
                target = target.value
            if isinstance(target, ast.Name) and target.id in params:
                out.add(target.id)
            elif (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == own
            ):
                out.add(f"{own}.{target.attr}")
        return out

    def _called_globals(self, func) -> set[str]:
        """Module-level names the def runs as a model (`model(x)` on the script's model)."""
        out = set()
        module = self.scopes.module_scope
        for call in self._calls_in.get(id(func), ()):
            target = call.func
            if isinstance(target, ast.Attribute) and target.attr in ("forward", "module"):
                target = target.value
            if isinstance(target, ast.Name):
                scope = self.scopes.scope_of.get(id(target))
                if scope is not None and scope.resolve(target.id) is module:
                    out.add(target.id)
        return out

    def identifiers(self) -> set[str]:
        """Every identifier of the file (names a new parameter must not clash with)."""
        if self._identifiers is None:
            self._identifiers = _identifiers(self.scopes)
        return self._identifiers

    def _calls_by_function(self) -> dict[int, list[ast.Call]]:
        out: dict[int, list[ast.Call]] = {}
        for call in self.scopes.of_type(ast.Call):
            func = self.enclosing_function(call)
            if func is not None:
                out.setdefault(id(func), []).append(call)
        return out

    def _collect_returns(self) -> dict[int, list[ast.Return]]:
        """Each def's own `return` statements (not those of a def or lambda inside it)."""
        out: dict[int, list[ast.Return]] = {}
        for node in self.scopes.of_type(ast.Return):
            func = next(
                (a for a in self.scopes.ancestors(node) if isinstance(a, (*FUNCTIONS, ast.Lambda))),
                None,
            )
            if func is None or isinstance(func, ast.Lambda):
                continue
            out.setdefault(id(func), []).append(node)
        return out

    def _call(self, node: ast.Call) -> None:
        callee = self._resolve_call(node)
        named = callee or (node.func.id if isinstance(node.func, ast.Name) else None)
        if named in DYNAMIC_IMPORTS and _imports_apex(node):
            # apex, hidden from the import statements: its amp state is live in this program
            self.summary.uses_apex = True
            self.summary.amp_uses.append((self.statement_of(node).lineno, "apex (dynamic import)"))
        if callee is None:
            return
        func = self.enclosing_function(node)
        parent = self.scopes.parent.get(id(node))
        unpacked = None
        if isinstance(parent, ast.Assign) and len(parent.targets) == 1:
            target = parent.targets[0]
            if isinstance(target, (ast.Tuple, ast.List)):
                unpacked = len(target.elts)
        made = None if self.scopes.qualified(node.func) else self._instance_class(node.func)
        amp_args = tuple(
            [str(i) for i, a in enumerate(node.args) if self._is_amp_module(a)]
            + [k.arg for k in node.keywords if k.arg and self._is_amp_module(k.value)]
        )
        self.summary.calls.append(
            Call(
                self.path,
                self.qualname(func) if func is not None else self.summary.module,
                callee,
                [self.code(a) for a in node.args if not isinstance(a, ast.Starred)],
                {k.arg: self.code(k.value) for k in node.keywords if k.arg is not None},
                unpacked,
                self.statement_of(node).lineno,
                amp_args=amp_args,
                factories=made[1] if made else frozenset(),
                starred=any(isinstance(a, ast.Starred) for a in node.args)
                or any(k.arg is None for k in node.keywords),
                spelled=(
                    node.func.id
                    if isinstance(node.func, ast.Name)
                    else node.func.attr if isinstance(node.func, ast.Attribute) else ""
                ),
                looped=self._looped(node),
            )
        )

    def _looped(self, node: ast.AST) -> bool:
        """`node` runs in a loop (or a comprehension) of its own function."""
        for anc in self.scopes.ancestors(node):
            if isinstance(anc, (*FUNCTIONS, ast.Lambda, ast.ClassDef)):
                return False
            if isinstance(anc, (ast.For, ast.AsyncFor, ast.While, ast.comprehension)):
                return True
        return False

    def _value_refs(self) -> None:
        """Defs and imported names read other than by a call: a function handed on as a
        value has callers the plan cannot see, so it must not gain a parameter."""
        seen = set()
        for node in self.scopes.of_type(ast.Name, ast.Attribute):
            if not isinstance(node.ctx, ast.Load):
                continue
            parent = self.scopes.parent.get(id(node))
            if isinstance(parent, ast.Call) and parent.func is node:
                continue
            if isinstance(parent, (ast.Attribute, *FUNCTIONS)):
                continue  # part of a longer name; a decorator
            names = (
                self.scopes.qualified(node) or self._self_method(node) or self._class_member(node)
            )
            if not names:
                continue
            kept = RENAMES.keys() & set(names)
            if kept and (isinstance(parent, ast.ClassDef) or self._class_test(node)):
                self.summary.kept_amp |= kept
            if isinstance(parent, ast.ClassDef):
                continue  # a base class
            func = self.enclosing_function(node)
            reader = self.qualname(func) if func is not None else self.summary.module
            if (min(names), reader) not in seen:
                seen.add((min(names), reader))
                self.summary.value_refs.append((min(names), self.statement_of(node).lineno, reader))

    def _class_member(self, node: ast.AST) -> list[str]:
        """`step = train_step` in a class body reads the class's method `train_step`."""
        if not isinstance(node, ast.Name):
            return []
        scope = self.scopes.scope_of.get(id(node))
        if scope is None or scope.kind != CLASS:
            return []
        if not any(b.kind == "def" for b in scope.bindings.get(node.id, ())):
            return []
        cls = next((a for a in self.scopes.ancestors(node) if isinstance(a, ast.ClassDef)), None)
        return [f"{self.qualname(cls)}.{node.id}"] if cls is not None else []

    def _decorated_refs(self) -> None:
        """A def under a decorator other than those known to keep nothing (`staticmethod`,
        `torch.no_grad()`): the decorator may store the function (a registry) and call it
        later, so the def is read as a value."""
        for node in self.scopes.of_type(*FUNCTIONS):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                names = self.scopes.qualified(target) or [_dotted(target)]
                if all(name in KEEPING_DECORATORS for name in names):
                    continue
                func = self.enclosing_function(node)
                reader = self.qualname(func) if func is not None else self.summary.module
                self.summary.value_refs.append((self.qualname(node), node.lineno, reader))
                break

    def _dynamic_refs(self) -> None:
        """Functions reached by a lookup the call graph cannot follow: `getattr(mod, "f")`,
        `vars(mod)["f"]`, `mod.__dict__["f"]`, `globals()["f"]`, `importlib.import_module("mod")`,
        `f.__call__(...)`. They are read as values (`mod.*`: any name of `mod`)."""
        module = self.summary.module
        refs: list[tuple[str, ast.AST]] = []
        for call in self.scopes.of_type(ast.Call):
            func, args = call.func, call.args
            word = func.id if isinstance(func, ast.Name) else ""
            if word == "getattr" and len(args) >= 2:
                key = _string(args[1])
                refs += [(f"{q}.{key or '*'}", call) for q in self.scopes.qualified(args[0])]
            elif word == "vars" and len(args) == 1:
                key = self._key_read(call)
                refs += [(f"{q}.{key or '*'}", call) for q in self.scopes.qualified(args[0])]
            elif word in ("globals", "locals") and not args:
                if word == "locals" and self.enclosing_function(call) is not None:
                    continue  # a function's own locals hold no module function
                if not self._escapes(call):
                    continue  # `"best" in globals()`: a test, no function is taken out
                key = self._key_read(call)
                names = [key] if key else list(self.scopes.module_scope.bindings)
                for name in names:
                    bindings = self.scopes.module_scope.bindings.get(name, [])
                    refs += [(q, call) for q in qualified_names(bindings, module)]
                    refs += [(f"{module}.{name}", call)] if module else []
            elif args and (
                self.scopes.qualified(func)[:1] in (["importlib.import_module"], ["__import__"])
                or word == "__import__"
            ):
                name = _string(args[0])
                if name and not name.startswith("."):
                    refs.append((f"{name}.*", call))
                elif name is None:  # a module chosen at run time: any function it calls
                    prefix = _string_prefix(args[0])
                    if prefix and not prefix.startswith("."):
                        refs.append((f"{prefix.rstrip('.')}.*", call))  # 'pkg.models.' + name
                    else:
                        attrs = self._attributes_of_result(call)
                        refs += [(f"*.{attr}", call) for attr in attrs]
        for node in self.scopes.of_type(ast.Attribute):
            if not (node.attr.startswith("__") and node.attr.endswith("__")):
                continue
            if node.attr in HARMLESS_DUNDERS:
                continue
            key = self._key_read(node) if node.attr == "__dict__" else None
            suffix = f".{key or '*'}" if node.attr == "__dict__" else ""
            refs += [(f"{q}{suffix}", node) for q in self.scopes.qualified(node.value)]
        seen = {(name, reader) for name, _, reader in self.summary.value_refs}
        for name, node in refs:
            func = self.enclosing_function(node)
            reader = self.qualname(func) if func is not None else module
            if (name, reader) not in seen:
                seen.add((name, reader))
                self.summary.value_refs.append((name, self.statement_of(node).lineno, reader))

    def _escapes(self, node: ast.AST) -> bool:
        """The value of `node` is looked into or handed on: subscripted, `.get(...)`,
        passed to a call, bound to a name, returned; not only tested (`x in globals()`)."""
        parent = self.scopes.parent.get(id(node))
        return not isinstance(parent, (ast.Compare, ast.Expr))

    def _attributes_of_result(self, call: ast.Call) -> set[str]:
        """The attributes read on what `call` returns: directly (`import_module(n).train`)
        or through the one name it is bound to in its function (`mod = ...; mod.train`)."""
        parent = self.scopes.parent.get(id(call))
        if isinstance(parent, ast.Attribute):
            return {parent.attr}
        if not (
            isinstance(parent, ast.Assign)
            and len(parent.targets) == 1
            and isinstance(parent.targets[0], ast.Name)
        ):
            return {"*"}
        name = parent.targets[0].id
        home = self.enclosing_function(call)
        return {
            n.attr
            for n in self.scopes.of_type(ast.Attribute)
            if isinstance(n.value, ast.Name)
            and n.value.id == name
            and self.enclosing_function(n) is home
        } or {"*"}

    def _key_read(self, node: ast.AST) -> str | None:
        """`node["key"]`: the constant key a subscript of `node` reads, if any."""
        parent = self.scopes.parent.get(id(node))
        if isinstance(parent, ast.Subscript) and parent.value is node:
            return _string(parent.slice)
        if (
            isinstance(parent, ast.Attribute)
            and parent.attr == "get"
            and isinstance(self.scopes.parent.get(id(parent)), ast.Call)
        ):
            call = self.scopes.parent[id(parent)]
            return _string(call.args[0]) if call.args else None
        return None

    def _self_method(self, node: ast.AST) -> list[str]:
        """`self.step` read as a value (`Engine(self.step)`) names the class's method."""
        if not _on_self(node):
            return []
        cls = next((a for a in self.scopes.ancestors(node) if isinstance(a, ast.ClassDef)), None)
        return [f"{self.qualname(cls)}.{node.attr}"] if cls is not None else []

    def _class_test(self, node: ast.AST) -> bool:
        """`node` is the class an `isinstance`/`issubclass` tests against (alone or in a
        tuple): objects made elsewhere must be of exactly that class."""
        parent = self.scopes.parent.get(id(node))
        if isinstance(parent, ast.Tuple):
            node, parent = parent, self.scopes.parent.get(id(parent))
        return (
            isinstance(parent, ast.Call)
            and isinstance(parent.func, ast.Name)
            and parent.func.id in ("isinstance", "issubclass")
            and len(parent.args) == 2
            and parent.args[1] is node
        )

    def _is_amp_module(self, node: ast.AST) -> bool:
        """`amp` passed as a value: the apex.amp module itself."""
        return isinstance(node, ast.Name) and self.apex_name(node) == "apex.amp"

    def _resolve_call(self, node: ast.Call) -> str | None:
        func = node.func
        if _on_self(func):
            return next(iter(self._self_method(func)), None)
        names = self.scopes.qualified(func)
        if names:
            return min(names)
        made = self._instance_class(func)
        return f"{made[0]}.{func.attr}" if made else None  # type: ignore[attr-defined]

    def _instance_class(self, func: ast.AST) -> tuple[str, frozenset[str]] | None:
        """`state.track(amp)` where every assignment to `state` makes a `TrainingState`."""
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
            return None
        scope = self.scopes.scope_of.get(id(func.value))
        return instance_class(scope, func.value.id, self.scopes.module, self.scopes.is_package)

    def _import(self, node) -> None:
        for ref in _refs_of(node):
            self.summary.imports.append(ref)
            if not ref.module.startswith(".") and (
                ref.module == "apex" or ref.module.startswith("apex.")
            ):
                self.summary.uses_apex = True

    def _module_reads(self) -> None:
        """The dotted names read through imported names: another module reads `HAS_APEX`
        of `utils` by writing `utils.HAS_APEX` as surely as by importing it."""
        roots = {ref.bound for ref in self.summary.imports if not ref.names}
        roots |= {bound for ref in self.summary.imports for _, bound in ref.names}
        if not roots:
            return
        parent = self.scopes.parent
        for node in self.scopes.of_type(ast.Name):
            if node.id not in roots or not isinstance(node.ctx, ast.Load):
                continue
            dotted, current = node.id, node
            up = parent.get(id(current))
            while isinstance(up, ast.Attribute) and up.value is current:
                dotted, current = f"{dotted}.{up.attr}", up
                up = parent.get(id(current))
            self.summary.module_reads.add(dotted)

    # apex sites ------------------------------------------------------------------------
    def _apex_sites(self) -> None:
        taken: dict[str, list[tuple[str, set[str]]]] = {}
        homes: list[tuple[str, str]] = []  # (home qualname, access)
        calls = [
            n
            for n in self.scopes.of_type(ast.Call)
            if self.apex_name(n.func) in ("apex.amp.initialize", "apex.amp.init")
        ]
        ordinals: dict[str, int] = {}
        for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
            func = self.enclosing_function(call)
            scope = self.qualname(func) if func is not None else self.summary.module
            anchor = (scope, ordinals.get(scope, 0))
            ordinals[scope] = anchor[1] + 1
            site = _InitAnalysis(self, call, taken, anchor).run()
            self.summary.inits.append(site)
            if site.decision.access:
                home = site.home
                if home == self.summary.module and _in_main_guard(self, call):
                    home = MAIN_GUARD  # functions reach it only through a parameter
                homes.append((home, site.decision.access))
        for node in self.scopes.of_type(ast.Name, ast.Attribute):
            self._amp_use(node)
        self.summary.amp_uses.sort()
        candidates = self._twin_candidates()
        for node in self.scopes.of_type(ast.Call):
            if self.apex_name(node.func) not in NEEDS:
                continue
            func = self.enclosing_function(node)
            outer = [a for a in self.scopes.ancestors(node) if isinstance(a, FUNCTIONS)]
            if not self._reaches_scaler(node, func, homes):
                need = self.qualname(func) if func is not None else self.summary.module
                if outer and id(outer[-1]) in candidates:  # unless the plan routes it to its twin
                    self.summary.twin_needs.setdefault(outer[-1].name, set()).add(need)
                else:
                    self.summary.needs.add(need)
        for call in calls:
            if _beyond_default_options(call):
                self.summary.optioned_inits.append(call.lineno)
            if _beyond_opt_level(call):
                self.summary.scaling_inits.append(call.lineno)

    def _twin_candidates(self) -> set[int]:
        """Module-level apex defs a native twin proves (A2N119): the plan decides whether
        they are routed to it."""
        if not any("apex" in s.name.lower() for s in self.tree.body if isinstance(s, FUNCTIONS)):
            return set()
        twins = native_twins(self.tree, self.scopes.module_scope.bindings)
        defs = [s for s in self.tree.body if isinstance(s, FUNCTIONS) and s.name in twins]
        self.summary.twins = {s.name: twins[s.name] for s in defs}
        return {id(s) for s in defs}

    def _amp_use(self, node: ast.AST) -> None:
        """Record `node` if it is an outermost use of something inside apex.amp."""
        name = self.apex_name(node)
        if name == "apex.amp" and isinstance(node, ast.Name):
            parent = self.scopes.parent.get(id(node))
            if not (isinstance(parent, ast.Attribute) and parent.value is node):
                self.summary.amp_values.append(node.lineno)  # `{"amp": amp}`, `f(amp)`
        if name is None or not name.startswith("apex.amp."):
            return
        parent = self.scopes.parent.get(id(node))
        if isinstance(parent, ast.Attribute) and parent.value is node and self.apex_name(parent):
            return
        self.summary.amp_uses.append((self.statement_of(node).lineno, name))

    def _reaches_scaler(self, node, func, homes: list[tuple[str, str]]) -> bool:
        scopes = [self.qualname(a) for a in self.scopes.ancestors(node) if isinstance(a, FUNCTIONS)]
        for home, access in homes:
            if home == self.summary.module or home in scopes:
                return True
            if home == MAIN_GUARD and not scopes:
                return True
            if access.startswith("self.") and func is not None:
                method = next(
                    (a for a in [func, *self.scopes.ancestors(func)] if isinstance(a, FUNCTIONS)),
                    None,
                )
                cls = self.enclosing_class(method) if method is not None else None
                if cls is not None and self.qualname(cls) == home:
                    args = method.args.args
                    if args and args[0].arg == "self":
                        return True
        return False


class _InitAnalysis:
    """What one `amp.initialize(...)` call becomes (the `Initialize` rule writes it)."""

    def __init__(
        self, owner: _Summarizer, call: ast.Call, taken: dict, anchor: tuple[str, int]
    ) -> None:
        self.o = owner
        self.anchor = anchor
        self.call = call
        self.taken = taken
        self.stmt = owner.statement_of(call)
        self.home = ""
        self.wraps: tuple[tuple[int, str | None], ...] = ()

    def decision(self, **kwargs) -> InitDecision:
        return InitDecision(line=self.stmt.lineno, anchor=self.anchor, home=self.home, **kwargs)

    def site(self, decision: InitDecision, home: str = "", models=()) -> InitSite:
        return InitSite(self.stmt.lineno, home, decision, tuple(models))

    def run(self) -> InitSite:
        o, call, stmt = self.o, self.call, self.stmt
        siblings = self._siblings()
        if any(s is not stmt and s.lineno == stmt.lineno for s in siblings):
            return self.site(
                self.decision(problem="amp.initialize shares its line; split it first")
            )
        if o.apex_name(call.func) == "apex.amp.init":
            return self._legacy()
        if isinstance(stmt, ast.Assign) and stmt.value is call and len(stmt.targets) == 1:
            target = stmt.targets[0]
        elif isinstance(stmt, ast.Expr) and stmt.value is call:
            target = None
        else:
            return self.site(
                self.decision(
                    problem="amp.initialize result is used in an expression; create a "
                    "torch.amp.GradScaler here and pass it to the training step"
                )
            )
        for a in call.args:
            if isinstance(a, ast.Starred):
                return self.site(self.decision(problem=_hidden("*")))
        keywords: dict[str, ast.AST] = {}
        for k in call.keywords:
            if k.arg is not None:
                keywords[k.arg] = k.value
                continue
            expanded = self._expand(k.value)
            if expanded is None:
                return self.site(self.decision(problem=_hidden("**")))
            keywords.update(expanded)
        args = bind_initialize(
            [self.arg(a) for a in call.args], {k: self.arg(v) for k, v in keywords.items()}
        )
        nodes = dict(zip(_PARAM_NAMES, call.args))
        nodes.update(keywords)
        if "models" not in args:
            return self.site(
                self.decision(
                    problem="amp.initialize: no models argument; create the GradScaler by hand"
                )
            )
        models, optimizers = nodes["models"], nodes.get("optimizers")
        # apex hands back the models alone only when no optimizers were given (None);
        # `amp.initialize(model, [])` returns `(model, [])`
        given = not (optimizers is None or isinstance(optimizers, ast.Constant))
        returned = (models, optimizers) if given else models
        pairs: list[tuple[ast.AST, object]] = []
        if target is not None:
            _pair_targets(target, returned, pairs)
        keep = [(t, v) for t, v in pairs if o.code(t) != self.value_code(v)]
        rebind = self._rebind(keep)
        if _no_optimizers(optimizers) or self._idle_optimizer(optimizers, pairs):
            return self._inference(args, models, pairs, rebind)

        opt_codes = self._optimizer_codes(optimizers, pairs)
        return self._scaler_site(args, opt_codes, rebind, lambda: self._model_codes(models, pairs))

    def _legacy(self) -> InitSite:
        """`handle = amp.init(enabled=..., loss_scale=...)`, the pre-0.1 API: O1 with the
        scaler the handle's `scale_loss(loss, optimizer)` calls use."""
        o, stmt, call = self.o, self.stmt, self.call
        if not (
            isinstance(stmt, ast.Assign)
            and stmt.value is call
            and o.handle_name(stmt.targets[0]) == "apex.amp"
        ):
            return self.site(
                self.decision(
                    problem="amp.init: only `handle = amp.init(...)` with `handle.scale_loss` "
                    "is migrated; create the GradScaler and autocast regions by hand"
                )
            )
        if any(isinstance(a, ast.Starred) for a in call.args) or any(
            k.arg is None for k in call.keywords
        ):
            return self.site(self.decision(problem=_hidden("*")))
        args = {name: self.arg(a) for name, a in zip(INIT_PARAMS, call.args)}
        args.update({k.arg: self.arg(k.value) for k in call.keywords if k.arg})
        args = {k: v for k, v in args.items() if k in ("enabled", "loss_scale")}
        handle = stmt.targets[0].id
        optimizers: set[str] = set()
        wraps: list[tuple[int, str | None]] = []
        wrapped: set[str] = set()
        uses = o.scopes.of_type(ast.Call)
        for use in uses:
            func = use.func
            if not (
                isinstance(func, ast.Attribute)
                and func.attr == "wrap_optimizer"
                and isinstance(func.value, ast.Name)
                and func.value.id == handle
                and o.apex_name(func) == "apex.amp.wrap_optimizer"
            ):
                continue
            wrap = o.statement_of(use)
            extra = [k for k in use.keywords if not (k.arg == "num_loss" and _is_one(k.value))]
            if not (
                isinstance(wrap, ast.Assign)
                and wrap.value is use
                and len(wrap.targets) == 1
                and isinstance(wrap.targets[0], ast.Name)
                and len(use.args) == 1
                and not extra
            ):
                return self.site(
                    self.decision(
                        problem="amp.init: only `opt = handle.wrap_optimizer(opt)` with one loss "
                        "is migrated; create the GradScaler by hand"
                    )
                )
            target, given = wrap.targets[0].id, o.code(use.args[0])
            wraps.append((wrap.lineno, None if target == given else f"{target} = {given}"))
            wrapped.add(target)
        for node in o.scopes.of_type(ast.Attribute):
            if (
                isinstance(node.value, ast.Name)
                and node.value.id in wrapped
                and node.attr in WRAPPER_ONLY
            ):
                return self.site(
                    self.decision(
                        problem=f"amp.init: `{o.code(node)}` exists only on apex's wrapped "
                        "optimizer; create the GradScaler by hand"
                    )
                )
        through: set[str] = set()  # "handle", "wrapper": whose loss scaler scales
        for use in uses:
            func = use.func
            if not (
                isinstance(func, ast.Attribute)
                and func.attr == "scale_loss"
                and isinstance(func.value, ast.Name)
                and func.value.id in {handle, *wrapped}
                and o.apex_name(func) == "apex.amp.scale_loss"
            ):
                continue
            through.add("handle" if func.value.id == handle else "wrapper")
            if func.value.id == handle:
                given = use.args[1] if len(use.args) > 1 else None
                given = next((k.value for k in use.keywords if k.arg == "optimizer"), given)
            else:
                given = func.value if len(use.args) == 1 and not use.keywords else None
            if given is None:
                return self.site(
                    self.decision(problem="amp.init: a scale_loss call not understood")
                )
            optimizers.add(o.code(given))
        if not optimizers:
            return self.site(
                self.decision(
                    problem="amp.init: the handle is not used as `handle.scale_loss(loss, "
                    "optimizer)` here (handed to other code?); create the "
                    "GradScaler and autocast regions by hand"
                )
            )
        if "wrapper" in through:
            # a wrapped optimizer has its own dynamic scaler; the handle's loss_scale is not it
            scale = args.pop("loss_scale", None)
            if "handle" in through and scale is not None and scale.literal != "dynamic":
                return self.site(
                    self.decision(
                        problem="amp.init: the handle's static loss_scale and a wrapped "
                        "optimizer's dynamic one both scale here; one GradScaler cannot be both"
                    )
                )
        self.wraps = tuple(wraps)
        note = (
            f"`{handle} = amp.init(...)`, the pre-0.1 API, runs as O1: its scale_loss uses "
            "the scaler; forward passes outside the scaled steps run in fp32 (apex cast them)",
            NUMERICS,
        )
        return self._scaler_site(args, optimizers, None, tuple, note)

    def _scaler_site(
        self, args: dict[str, Arg], opt_codes: set[str], rebind, models, note=None
    ) -> InitSite:
        """The GradScaler that replaces the call, made where its guards allow."""
        o, stmt = self.o, self.stmt
        guards, outer, once = self._guards()
        home, access, unit = self._scaler(opt_codes)
        self.home = home
        blocker = _conditional_ancestor(o, outer)
        if blocker is not None:
            return self.site(
                self.decision(
                    problem=f"amp.initialize runs inside `{blocker}`; its scaler must exist "
                    "wherever the scaler is used: create the GradScaler before it by hand"
                ),
                home,
            )
        if once and not access.startswith("self."):
            once = None
        options = scaler_options(args, guards, access, o.lit)
        if options.problem:
            return self.site(self.decision(problem=options.problem), home)
        changed = self._loss_scale_changed(args)
        if options.update_local and changed:
            return self.site(
                self.decision(
                    problem=f"loss_scale reads `{changed}`, which this function changes after "
                    "amp.initialize; the scaler's update would read the new value: create "
                    "the GradScaler by hand"
                ),
                home,
            )
        if note is not None:
            options.messages.append(note)
        presets = self._presets(args, options, hoisted=outer is not stmt)
        for line, keyword, code in presets:
            options.kwargs = [(k, v) for k, v in options.kwargs if k != keyword]
            options.kwargs.append((keyword, code))
            options.messages.append(
                (
                    f"apex's private scaler state set on line {line} -> {keyword}={code}",
                    SAFE,
                )
            )
        model_codes = models()
        spec = ScalerSpec(
            origin=unit,
            autocast=options.autocast,
            runtime=bool(
                options.autocast_enabled and options.autocast_enabled.endswith(".is_enabled()")
            ),
            update_args=options.update_args,
            update_local=options.update_local,
            conditions=tuple(sorted(options.conditions)),
            level_hints=options.level_hints,
            unit=unit,
            switch=options.autocast_enabled,
            enabled=dict(options.kwargs).get("enabled"),
        )
        decision = self.decision(
            kind="scaler",
            access=access,
            kwargs=tuple(options.kwargs),
            messages=tuple(options.messages),
            rebind=rebind,
            outer_line=outer.lineno,
            optimizers=tuple(sorted(opt_codes)),
            models=model_codes,
            autocast_enabled=options.autocast_enabled,
            spec=spec,
            once=once,
            preset_lines=tuple(line for line, _, _ in presets),
            wraps=self.wraps,
        )
        chain = self.arms
        if chain is not None and chain[1][0] is not stmt:
            if unit != f"{o.path}:{chain[1][0].lineno}":
                return self.site(
                    self.decision(
                        problem="amp.initialize in an arm of an `if` whose first arm's "
                        "initialize stays apex; migrate them together by hand"
                    ),
                    home,
                )
            decision = dataclasses.replace(decision, follows=True)
        self.taken.setdefault(home, []).append((access, set(opt_codes), unit))
        o.opt_levels[unit] = args["opt_level"].code if "opt_level" in args else None
        return self.site(decision, home, model_codes)

    def _presets(self, args, options, hoisted: bool) -> list[tuple[int, str, str]]:
        """`amp._amp_state.loss_scalers[0]._loss_scale = x` (and `._scale_seq_len = n`)
        right after the call: the starting scale and growth window of apex's one dynamic
        scaler, which are GradScaler's `init_scale` and `growth_interval`.

        A value that is not a constant must be readable where the scaler is made: not
        when the creation moves above a guard.
        """
        dynamic = "loss_scale" not in args or args["loss_scale"].literal == "dynamic"
        single = "num_losses" not in args or args["num_losses"].literal == 1
        if not dynamic or not single or ("enabled", "False") in options.kwargs:
            return []
        siblings = self._siblings()
        at = next(i for i, s in enumerate(siblings) if s is self.stmt)
        out: list[tuple[int, str, str]] = []
        for nxt in siblings[at + 1 :]:
            if not (isinstance(nxt, ast.Assign) and len(nxt.targets) == 1):
                break
            target = nxt.targets[0]
            scalers = target.value if isinstance(target, ast.Attribute) else None
            if not (
                isinstance(target, ast.Attribute)
                and target.attr in PRIVATE_FIELDS
                and isinstance(scalers, ast.Subscript)
                and isinstance(scalers.slice, ast.Constant)
                and scalers.slice.value == 0
                and isinstance(scalers.value, ast.Attribute)
                and scalers.value.attr == "loss_scalers"
                and self.o.apex_name(scalers.value.value) in PRIVATE_STATE
            ):
                break
            code = self.o.code(nxt.value)
            if not (_constant(nxt.value) or (DOTTED.match(code) and not hoisted)):
                break
            out.append((nxt.lineno, PRIVATE_FIELDS[target.attr], code))
        return out

    def _expand(self, node: ast.AST) -> dict[str, ast.AST] | None:
        """`**amp_args` where the same function built `amp_args` as a dict literal.

        Later `amp_args["key"] = value` statements count when they always run; one under a
        condition may only set keys that do not change the scaler (`master_weights`, ...).
        """
        o = self.o
        if not isinstance(node, ast.Name):
            return None
        func = o.enclosing_function(self.call)
        body = func.body if func is not None else o.tree.body
        out: dict[str, ast.AST] | None = None
        for stmt in _statements_before(body, self.stmt):
            if (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id == node.id
            ):
                out = _dict_literal(stmt.value)
                if out is None:
                    return None
                continue
            for sub in ast.walk(stmt):
                if not _stores_key(sub, node.id):
                    if isinstance(sub, ast.Name) and sub.id == node.id and out is not None:
                        if isinstance(sub.ctx, ast.Store) or _mutates(o, sub):
                            return None
                    continue
                key = sub.targets[0].slice
                if out is None or not (
                    isinstance(key, ast.Constant) and isinstance(key.value, str)
                ):
                    return None
                unconditional = o.scopes.parent.get(id(sub)) is not None and sub in body
                if not unconditional and key.value not in INERT_OPTIONS:
                    return None
                out[key.value] = sub.value
        return out

    def _idle_optimizer(self, optimizers, pairs) -> bool:
        """An optimizer made only to hand to initialize (an EMA or teacher model's), read
        nowhere else in its scope: nothing steps it, so there is nothing to scale."""
        if not isinstance(optimizers, ast.Name):
            return False
        o = self.o
        func = o.enclosing_function(self.call)
        if func is None:
            return False
        back = [t for t, v in pairs if v is optimizers]
        if not all(isinstance(t, ast.Name) and t.id == optimizers.id for t in back):
            return False
        if optimizers.id in {a.arg for a in ast.walk(func.args) if isinstance(a, ast.arg)}:
            return False  # the caller's optimizer: the caller may step it
        made = False
        for node in ast.walk(func):
            if isinstance(node, ast.Name) and node.id == optimizers.id and node is not optimizers:
                if isinstance(node.ctx, ast.Load):
                    return False
                made = made or not any(t is node for t in back)
            if isinstance(node, (ast.Global, ast.Nonlocal)) and optimizers.id in node.names:
                return False
        return made

    def _inference(self, args, models, pairs, rebind) -> InitSite:
        """`model = amp.initialize(model, opt_level=...)` with no optimizer: nothing to scale.

        The forward passes of that model in the same function run under autocast, switched
        the way the opt level and `enabled=` switched apex (O2/O3's fp16 weights become fp32
        weights cast per op: numerics).
        """
        o = self.o
        guards, outer, _ = self._guards()
        unit = f"{o.path}:{self.stmt.lineno}"
        options = scaler_options(args, guards, "", o.lit)
        if options.problem:
            return self.site(self.decision(problem=options.problem))
        switch = options.switch if options.autocast else "False"
        func = o.enclosing_function(self.call)
        self.home = o.qualname(func) if func is not None else o.summary.module
        companion = self._companion(func, args)
        if companion is not None:
            access, unit = companion
            switch = f"{access}.is_enabled()"
        spec = ScalerSpec(origin=unit, autocast=options.autocast, unit=unit, switch=switch)
        decision = self.decision(
            kind="inference",
            rebind=rebind,
            outer_line=outer.lineno,
            models=self._model_codes(models, pairs),
            autocast_enabled=switch,
            messages=tuple(options.messages),
            spec=spec,
            companion=companion[0] if companion else "",
        )
        return self.site(decision, self.home, decision.models)

    def _companion(self, func, args) -> tuple[str, str] | None:
        """The scaler an earlier initialize of the same function made with the same opt
        level: this model (an EMA, a teacher) is cast like the trained one."""
        if func is None:
            return None
        o = self.o
        level = args["opt_level"].code if "opt_level" in args else None
        for site in reversed(o.summary.inits):
            d = site.decision
            if d.kind != "scaler" or d.anchor[0] != o.qualname(func) or d.spec is None:
                continue
            if level is None or o.opt_levels.get(d.spec.unit) != level or "enabled" in args:
                return None
            return d.access, d.spec.unit
        return None

    def arg(self, node: ast.AST) -> Arg:
        literal: object = NOT_LITERAL
        if isinstance(node, ast.Constant) and (
            node.value is None or isinstance(node.value, (str, int, float, bool))
        ):
            literal = node.value
        elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
            number = _number(node)
            literal = NOT_LITERAL if number is None else number
        loose = isinstance(node, (ast.IfExp, ast.Lambda, ast.NamedExpr)) or (
            isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)
        )
        return Arg(self.o.code(node), literal, loose)

    def value_code(self, value) -> str:
        if isinstance(value, tuple):
            return "(" + ", ".join(self.value_code(v) for v in value) + ")"
        return self.o.code(value)

    def _siblings(self) -> list[ast.stmt]:
        parent = self.o.scopes.parent.get(id(self.stmt))
        for name in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(parent, name, None)
            if isinstance(block, list) and self.stmt in block:
                return block
        return [self.stmt]

    @functools.cached_property
    def arms(self) -> tuple[ast.If, list[ast.stmt]] | None:
        """`if isinstance(m, list): ... initialize(...) elif ...: ... initialize(...) else:
        ... initialize(...)`: the top `if` of a chain with an `else` whose every arm makes
        the scaler once, at its own level, for the same optimizers with the same options,
        and the initialize statements in order; None when this call is not in one."""
        return self._find_arms()

    def _find_arms(self) -> tuple[ast.If, list[ast.stmt]] | None:
        o = self.o
        parent = o.scopes.parent.get(id(self.stmt))
        if not isinstance(parent, ast.If):
            return None
        top = parent
        while _is_elif(o, top):
            top = o.scopes.parent.get(id(top))
        arms: list[list[ast.stmt]] = []
        link = top
        while True:
            arms.append(link.body)
            if len(link.orelse) == 1 and isinstance(link.orelse[0], ast.If):
                link = link.orelse[0]
                continue
            if not link.orelse:
                return None  # no `else`: a path with no scaler
            arms.append(link.orelse)
            break
        inits: list[ast.stmt] = []
        for arm in arms:
            made = [
                stmt
                for stmt in arm
                if any(
                    isinstance(n, ast.Call) and o.apex_name(n.func) == "apex.amp.initialize"
                    for n in ast.walk(stmt)
                )
            ]
            if len(made) != 1 or not isinstance(made[0], (ast.Assign, ast.Expr)):
                return None
            call = made[0].value
            if not (isinstance(call, ast.Call) and o.apex_name(call.func) == "apex.amp.initialize"):
                return None
            inits.append(made[0])
        if self.stmt not in inits:
            return None
        shapes = {_beyond_models(o, stmt.value) for stmt in inits}  # type: ignore[union-attr]
        return (top, inits) if len(shapes) == 1 and None not in shapes else None

    def _rebind(self, keep: list) -> str | None:
        if not keep:
            return None
        if len(keep) == 1:
            return f"{self.o.code(keep[0][0])} = {self.value_code(keep[0][1])}"
        return (
            ", ".join(self.o.code(t) for t, _ in keep)
            + " = "
            + ", ".join(self.value_code(v) for _, v in keep)
        )

    def _model_codes(self, models, pairs) -> tuple[str, ...]:
        nodes = models.elts if isinstance(models, (ast.List, ast.Tuple)) else [models]
        codes = {self.o.code(n) for n in nodes}
        codes |= {self.o.code(t) for t, v in pairs if self.value_code(v) in codes}
        return tuple(sorted(codes))

    def _optimizer_codes(self, optimizers, pairs) -> set[str]:
        nodes = optimizers.elts if isinstance(optimizers, (ast.List, ast.Tuple)) else [optimizers]
        opt_nodes = {self.o.code(n) for n in nodes}
        codes = set(opt_nodes)
        whole = self.o.code(optimizers)
        for t, v in pairs:
            if self.value_code(v) in opt_nodes or self.value_code(v) == whole:
                codes.add(self.o.code(t))
        return codes

    def _guards(self) -> tuple[list[str], ast.stmt, str | None]:
        """Conditions of the `if` statements that hold the call, the outermost of them, and
        the one-shot part of its condition, if any.

        The scaler is made unconditionally before the outermost `if`, switched by the
        conditions. A conjunct that reads what its own `if` body sets (`not
        self.amp_initialized`) is a one-shot guard, not a switch: the scaler is then made
        under that guard alone, so a second pass (a resume) keeps the first scaler.
        """
        o = self.o
        guards: list[str] = []
        outer = node = self.stmt
        options = {
            n.id
            for a in (*self.call.args[2:], *self.call.keywords)
            if not (isinstance(a, ast.keyword) and a.arg in ("models", "optimizers"))
            for n in _names(a)
        }
        # what the GradScaler's own arguments read: the options and the switches so far
        # (the model and optimizer it does not take may be made just before the call)
        needed = set(options)
        chain = self.arms
        if chain is not None:  # one scaler before the `if`/`elif`/`else` whose arms each make it
            top, inits = chain
            earlier = [s for init in inits for s in _before_in_arm(o, init)]
            if any(name in needed for s in earlier for name in _changed_roots(s)):
                return guards, outer, None  # an arm changes a name the scaler reads
            outer = node = top
            needed |= {n.id for n in _names(top.test)}
        while True:
            parent = o.scopes.parent.get(id(node))
            if _hoistable_loop(parent, node, options):
                outer = node = parent  # one scaler for every model the loop initializes
                continue
            if not isinstance(parent, ast.If) or node not in parent.body:
                break
            if not _pure(parent.test) or _is_elif(o, parent):
                break
            if any(
                isinstance(n, ast.Call) and o.apex_name(n.func) == "apex.amp.initialize"
                for s in parent.orelse
                for n in ast.walk(s)
            ):
                break  # `if c: initialize(...) else: initialize(...)`: one scaler, two makers
            earlier = parent.body[: parent.body.index(node)]
            if any(name in needed for s in earlier for name in _changed_roots(s)):
                break  # the scaler would move above a change of a name it reads
            kept = [c for c in _conjuncts(parent.test) if not _ignorable(o, c)]
            stored = {o.code(t) for s in parent.body for t in _store_targets(s)}
            once = [c for c in kept if _reads_any(o, c, stored)]
            switch = [c for c in kept if c not in once]
            guards[:0] = [self.arg(c).condition() for c in switch]
            needed |= {n.id for n in _names(parent.test)}
            outer = node = parent
            if once:
                return guards, outer, " and ".join(self.arg(c).condition() for c in once)
        return guards, outer, None

    def _loss_scale_changed(self, args: dict[str, Arg]) -> str:
        """A name the runtime `loss_scale` reads that a statement after the call changes
        (rebinds, or changes through an attribute, an item or a call), "" if none."""
        if "loss_scale" not in args:
            return ""
        try:
            names = {n.id for n in _names(ast.parse(args["loss_scale"].code, mode="eval"))}
        except SyntaxError:
            return ""
        func = self.o.enclosing_function(self.call)
        body = func if func is not None else self.o.tree
        for node in ast.walk(body):
            if isinstance(node, ast.stmt) and getattr(node, "lineno", 0) > self.stmt.lineno:
                if not isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
                    hit = names & set(_changed_roots(node, calls=False))
                    if hit:
                        return sorted(hit)[0]
        return ""

    def _scaler(self, opt_codes: set[str]) -> tuple[str, str, str]:
        """The scaler's home (qualname), how code there reaches it, and its unit.

        A second initialize of the same optimizers in the same home (a re-initialization
        on resume) makes no new scaler: it is the same unit.
        """
        o = self.o
        func = o.enclosing_function(self.call)
        home = o.qualname(func) if func is not None else o.summary.module
        self_name = None
        cls = o.enclosing_class(func) if func is not None else None
        if func is not None and func.args.args:
            first = func.args.args[0].arg
            if cls is not None and first == "self" and not self._amp_only_in(func, cls):
                self_name, home = first, o.qualname(cls)
        for access, optimizers, unit in self.taken.get(home, []):
            if optimizers & opt_codes:
                return home, access, unit
        taken = {access for access, _, _ in self.taken.get(home, [])}
        if self_name is not None:
            attrs = {
                n.attr
                for n in ast.walk(cls)
                if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id == self_name
            } | o.reserved
            base = f"{self_name}.{free_name((*SCALER_NAMES, 'amp_grad_scaler'), attrs)}"
        else:
            base = free_name((*SCALER_NAMES, "amp_grad_scaler"), o.identifiers())
        access, n = base, 2
        while access in taken:
            access, n = f"{base}_{n}", n + 1
        return home, access, f"{o.path}:{self.stmt.lineno}"

    def _amp_only_in(self, func: ast.AST, cls: ast.ClassDef) -> bool:
        """The method is a whole training loop (it initializes and scales the loss) and
        every apex.amp use of the class is in it: a local scaler then, not an attribute
        nobody else reads."""
        o = self.o
        if not any(
            isinstance(n, ast.Call) and o.apex_name(n.func) == "apex.amp.scale_loss"
            for n in ast.walk(func)
        ):
            return False
        inside = {id(n) for n in ast.walk(func)}
        for node in ast.walk(cls):
            if id(node) in inside or not isinstance(node, (ast.Name, ast.Attribute)):
                continue
            name = o.apex_name(node)
            if name is not None and name.startswith("apex.amp"):
                return False
        return not any(
            isinstance(n, (ast.Name, ast.Attribute)) and o.apex_name(n) == "apex.amp"
            for n in ast.walk(func)
            if isinstance(o.scopes.parent.get(id(n)), ast.Assign)
            and n is o.scopes.parent[id(n)].value
        )


_PARAM_NAMES = ("models", "optimizers")
# initialize options that change nothing a GradScaler does (reported or ignored)
INERT_OPTIONS = {
    "master_weights",
    "keep_batchnorm_fp32",
    "verbosity",
    "cast_model_type",
    "patch_torch_functions",
    "cast_model_outputs",
}


def _is_one(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == 1 and node.value is not True


def _constant(node: ast.AST) -> bool:
    """Number arithmetic: `2**20`, `-1.0`, `65536 * 4`."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _constant(node.operand)
    if isinstance(node, ast.BinOp):
        return _constant(node.left) and _constant(node.right)
    return False


_ARITHMETIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


def _number(node: ast.AST) -> int | float | None:
    """The value of number arithmetic written out (`2**10`, `2.0 ** 16`, `-1`), so a loss
    scale spelled as a power is as literal as one spelled as its value."""
    if isinstance(node, ast.Constant):
        value = node.value
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _number(node.operand)
        return None if value is None else (-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _number(node.left), _number(node.right)
        if left is None or right is None or (isinstance(node.op, ast.Pow) and abs(right) > 128):
            return None
        try:
            return _ARITHMETIC[type(node.op)](left, right)
        except (ArithmeticError, ValueError):
            return None
    return None


def _statements_before(body: list[ast.stmt], target: ast.stmt) -> list[ast.stmt]:
    """The statements of `body` (a def's) that come before the one holding `target`."""
    out = []
    for stmt in body:
        if stmt is target or any(n is target for n in ast.walk(stmt)):
            break
        out.append(stmt)
    return out


def _dict_literal(node: ast.AST) -> dict[str, ast.AST] | None:
    """`dict(a=1)` or `{"a": 1}` with literal keys, as key -> value node."""
    if isinstance(node, ast.Dict):
        if not all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys):
            return None
        return {k.value: v for k, v in zip(node.keys, node.values)}  # type: ignore[union-attr]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
        and all(k.arg for k in node.keywords)
    ):
        return {k.arg: k.value for k in node.keywords}  # type: ignore[misc]
    return None


def _stores_key(node: ast.AST, name: str) -> bool:
    """`name["key"] = value`."""
    return (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Subscript)
        and isinstance(node.targets[0].value, ast.Name)
        and node.targets[0].value.id == name
    )


def _mutates(owner, name: ast.Name) -> bool:
    """`name.update(...)` and other method calls that may change a dict in place."""
    parent = owner.scopes.parent.get(id(name))
    return isinstance(parent, ast.Attribute) and parent.attr in {
        "update",
        "pop",
        "setdefault",
        "clear",
        "popitem",
    }


def _hidden(star: str) -> str:
    return f"amp.initialize: `{star}` arguments hide the amp options; create the GradScaler by hand"


AMP_API = {"initialize", "scale_loss", "master_params", "state_dict", "load_state_dict"}


def star_amp_use(node: ast.Attribute) -> bool:
    """`amp.<apex amp call>` spelled on a bare `amp` name."""
    return isinstance(node.value, ast.Name) and node.value.id == "amp" and node.attr in AMP_API


DYNAMIC_IMPORTS = {"importlib.import_module", "__import__", "builtins.__import__"}


def _imports_apex(call: ast.Call) -> bool:
    """`importlib.import_module("apex.amp")`, `__import__("apex")`."""
    if not call.args or not isinstance(call.args[0], ast.Constant):
        return False
    name = call.args[0].value
    return isinstance(name, str) and (name == "apex" or name.startswith("apex."))


def _no_optimizers(node) -> bool:
    return (
        node is None
        or (isinstance(node, ast.Constant) and node.value is None)
        or (isinstance(node, (ast.List, ast.Tuple)) and not node.elts)
    )


def _pair_targets(target: ast.AST, value, out: list) -> None:
    """Match assignment targets to the expressions apex handed back unchanged."""
    values = (
        list(value)
        if isinstance(value, tuple)
        else value.elts if isinstance(value, (ast.Tuple, ast.List)) else None
    )
    if isinstance(target, (ast.Tuple, ast.List)) and values is not None:
        if len(target.elts) == len(values) and not any(
            isinstance(e, ast.Starred) for e in (*target.elts, *values)
        ):
            for t, v in zip(target.elts, values):
                _pair_targets(t, v, out)
            return
    out.append((target, value))


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _names(node: ast.AST):
    return (n for n in ast.walk(node) if isinstance(n, ast.Name))


def _identifiers(scopes: AstScopes) -> set[str]:
    """Every identifier written in the module: names, attributes, parameters, keywords."""
    out = {n.id for n in scopes.of_type(ast.Name)}
    out |= {n.attr for n in scopes.of_type(ast.Attribute)}
    out |= {n.arg for n in scopes.of_type(ast.keyword) if n.arg}
    for func in scopes.of_type(*FUNCTIONS, ast.Lambda):
        a = func.args
        out |= {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x}
        if not isinstance(func, ast.Lambda):
            out.add(func.name)
    out |= {c.name for c in scopes.of_type(ast.ClassDef)}
    for imp in scopes.of_type(ast.Import, ast.ImportFrom):
        for alias in imp.names:
            out.update(alias.name.split("."))
            if alias.asname:
                out.add(alias.asname)
    for decl in scopes.of_type(ast.Global, ast.Nonlocal):
        out.update(decl.names)
    out |= {h.name for h in scopes.of_type(ast.ExceptHandler) if h.name}
    return out


def _init_of(cls: ast.ClassDef) -> ast.FunctionDef | None:
    """The `__init__` the class body defines."""
    return next(
        (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
    )


def _init_switches(cls: ast.ClassDef) -> dict[str, str]:
    """`self.<attr> = <parameter>` statements of the class's `__init__` that run on every
    construction: at the top of its body, before anything that may return or branch."""
    init = _init_of(cls)
    if init is None or not init.args.args or init.args.args[0].arg != "self":
        return {}  # the scaler made beside the switch is spelled `self.<name>`
    me = "self"
    params = {a.arg for a in (*init.args.args[1:], *init.args.kwonlyargs)}
    rebound = {
        n.id for n in ast.walk(init) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
    }
    found: dict[str, str] = {}
    for stmt in init.body:
        if isinstance(stmt, (ast.If, ast.For, ast.While, ast.Try, ast.With, ast.Return)):
            break
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Attribute)
            and _is_name(stmt.targets[0].value, me)
            and isinstance(stmt.value, ast.Name)
            and stmt.value.id in params - rebound
        ):
            found[stmt.targets[0].attr] = stmt.value.id
    return found


def _inits_alone(cls: ast.ClassDef) -> bool:
    """The class defines `__init__` and it calls no `__init__` of a base class."""
    init = _init_of(cls)
    if init is None:
        return False
    return not any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "__init__"
        for n in ast.walk(init)
    )


def _bound_names(stmt: ast.AST):
    """Names a statement binds: assignment, for and with targets, imports, defs."""
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif isinstance(node, (*FUNCTIONS, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.alias):
            yield node.asname or node.name.split(".")[0]


# methods that only read their object, whatever the object (a mapping's views, a copy, a
# string's): a call of one changes nothing a scaler's options could read
READ_ONLY_METHODS = frozenset(
    {"items", "keys", "values", "copy", "count", "index", "format", "join", "split", "strip"}
)


def _changed_roots(stmt: ast.AST, calls: bool = True):
    """Names a statement binds, or changes through an attribute or item (`args.x = 1`,
    `cfg["x"] = 1`, `setattr(args, ...)`), by their root name; with `calls`, also what a
    call may change (`args.update(...)`, `fp16_defaults(args)`)."""
    yield from _bound_names(stmt)
    for node in ast.walk(stmt):
        target = None
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(
            node.ctx, (ast.Store, ast.Del)
        ):
            target = node
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
                target = node.args[0] if node.args else None
            elif (
                isinstance(node.func, ast.Attribute)
                and calls
                and node.func.attr not in READ_ONLY_METHODS
            ):
                target = node.func.value  # a method may change its object
            for given in (*node.args, *(k.value for k in node.keywords)):
                if isinstance(given, ast.Name) and calls:
                    yield given.id  # `fp16_defaults(args)` may change `args`
        while isinstance(target, (ast.Attribute, ast.Subscript)):
            target = target.value
        if isinstance(target, ast.Name):
            yield target.id


def _ignorable(owner: _Summarizer, node: ast.AST) -> bool:
    """Conjuncts that hold wherever the scaler runs: apex is importable (true once apex is
    gone) and `torch.cuda.is_available()` (a "cuda" GradScaler turns itself off without)."""
    return owner.is_availability_test(node) or _device_test(node)


def _device_test(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and not node.args
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "is_available"
        and ast.unparse(node.func.value).endswith("cuda")
    )


def _store_targets(stmt: ast.AST):
    """Names and attribute chains a statement assigns."""
    for node in ast.walk(stmt):
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Store):
            yield node


def _reads_any(owner: _Summarizer, node: ast.AST, codes: set[str]) -> bool:
    return any(
        owner.code(n) in codes for n in ast.walk(node) if isinstance(n, (ast.Name, ast.Attribute))
    )


def _hoistable_loop(loop: ast.AST | None, node: ast.AST, options: set[str]) -> bool:
    """A `for` over the models to initialize, whose options the loop does not set."""
    if not isinstance(loop, ast.For) or node not in loop.body or loop.orelse:
        return False
    bound = {n.id for n in _names(loop.target)}
    for stmt in loop.body:
        bound |= set(_changed_roots(stmt, calls=False))
    return not (bound & options)


def _beyond_models(owner: _Summarizer, call: ast.Call) -> str | None:
    """What an initialize passes besides its models, as written (None: `*`/`**` hide it)."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(
        k.arg is None for k in call.keywords
    ):
        return None
    rest = [owner.code(a) for a in call.args[1:]]
    rest += sorted(f"{k.arg}={owner.code(k.value)}" for k in call.keywords if k.arg != "models")
    return ", ".join(rest)


def _before_in_arm(owner: _Summarizer, stmt: ast.stmt) -> list[ast.stmt]:
    """The statements of `stmt`'s block (an arm of an `if`) that run before it."""
    parent = owner.scopes.parent.get(id(stmt))
    for block in (getattr(parent, "body", None), getattr(parent, "orelse", None)):
        if isinstance(block, list) and stmt in block:
            return block[: block.index(stmt)]
    return []


def _conditional_ancestor(owner: _Summarizer, stmt: ast.AST) -> str | None:
    """The header of an `if`, loop or `except` between a statement and its def, if any."""
    node = stmt
    for anc in owner.scopes.ancestors(stmt):
        if isinstance(anc, (*FUNCTIONS, ast.ClassDef, ast.Module)):
            return None
        if isinstance(anc, ast.If) and not _is_main_guard(anc.test):
            return f"if {owner.code(anc.test)}:"
        if isinstance(anc, (ast.For, ast.AsyncFor)):
            return f"for {owner.code(anc.target)} in {owner.code(anc.iter)}:"
        if isinstance(anc, ast.While):
            return f"while {owner.code(anc.test)}:"
        if isinstance(anc, ast.ExceptHandler) or (
            isinstance(anc, ast.Try) and node in (*anc.orelse, *anc.finalbody)
        ):
            return "try/except"
        node = anc
    return None


MAIN_GUARD = "<__main__>"


def _listed_in_all(tree: ast.Module) -> set[str] | None:
    """The names module-level `__all__ = [...]` and `__all__ += [...]` list; None when
    `__all__` is built some other way (`PUBLIC`, `+`, `.append`): any name may be in it."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "__all__":
            break
    else:
        return out
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
            targets, value = [stmt.target], stmt.value
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            continue
        if not isinstance(value, (ast.List, ast.Tuple)) or not all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
        ):
            return None
        out |= {e.value for e in value.elts}
    reads = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "__all__"]
    written = [
        t
        for s in tree.body
        if isinstance(s, (ast.Assign, ast.AugAssign, ast.AnnAssign))
        for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
        if isinstance(t, ast.Name) and t.id == "__all__"
    ]
    if len(reads) != len(written):  # `__all__.append(...)`, `__all__.extend(...)`
        return None
    return out


def _beyond_default_options(call: ast.Call) -> bool:
    """An initialize whose options a routed twin's default GradScaler cannot keep: those of
    `_beyond_opt_level`, and an O0 or run-time opt level as well."""
    return _beyond_opt_level(call) or any(
        k.arg == "opt_level" and not (isinstance(k.value, ast.Constant) and k.value.value in O1_O3)
        for k in call.keywords
    )


O1_O3 = ("O1", "O2", "O3")
# dict methods that change it: `vars(obj).update(...)` sets attributes of `obj`
MUTATING_METHODS = frozenset({"update", "setdefault", "__setitem__", "pop", "popitem", "clear"})


def _beyond_opt_level(call: ast.Call) -> bool:
    """An initialize with options besides its opt level (any but a literal O0) and
    verbosity: a static `loss_scale`, `enabled=flag`, positional options."""
    if len(call.args) > 2:
        return True
    for keyword in call.keywords:
        value = keyword.value
        if keyword.arg == "verbosity":
            continue
        if keyword.arg == "opt_level" and not (
            isinstance(value, ast.Constant) and value.value not in O1_O3
        ):
            continue
        return True
    return False


def _in_main_guard(owner: _Summarizer, node: ast.AST) -> bool:
    return any(
        isinstance(a, ast.If) and _is_main_guard(a.test) for a in owner.scopes.ancestors(node)
    )


def _is_main_guard(test: ast.AST) -> bool:
    """`__name__ == "__main__"`: the script's own body, run once."""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _conjuncts(test: ast.AST) -> list[ast.AST]:
    """`a and b and c` as [a, b, c] (a parenthesised `and` inside stays whole)."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return list(test.values)
    return [test]


def _pure(node: ast.AST) -> bool:
    """Side-effect free enough to evaluate once more, earlier (names, attributes, compares,
    and `torch.cuda.is_available()`)."""
    if not isinstance(
        node,
        (ast.Name, ast.Attribute, ast.Compare, ast.UnaryOp, ast.BoolOp, ast.Subscript, ast.Call),
    ) and not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return False
    return not any(isinstance(n, ast.Call) and not _device_test(n) for n in ast.walk(node))


def _is_elif(owner: _Summarizer, node: ast.If) -> bool:
    parent = owner.scopes.parent.get(id(node))
    return isinstance(parent, ast.If) and node in parent.orelse


def _guards_apex_import(node: ast.Try) -> bool:
    if not any(
        isinstance(n, ast.Import)
        and any(a.name.split(".")[0] == "apex" for a in n.names)
        or isinstance(n, ast.ImportFrom)
        and not n.level
        and (n.module or "").split(".")[0] == "apex"
        for s in node.body
        for n in ast.walk(s)
    ):
        return False
    if not node.handlers or node.finalbody:
        return False
    for handler in node.handlers:
        if handler.type is None:
            continue
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        for t in types:
            name = t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "")
            if name not in IMPORT_ERRORS:
                return False
    return True


# helpers that answer "is apex installed?" (transformers' `file_utils`, copies of it): a
# check of one is apex's own requirement, and its import goes with the last such check
APEX_PROBE_HELPERS = frozenset({"is_apex_available"})


def _last_name(node: ast.AST) -> str:
    """`is_apex_available` of `is_apex_available` and of `utils.is_apex_available`."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def star_apex_name(names: list[str], aliases: dict[str, str]) -> str | None:
    """The apex name a star-imported project module re-exports under `names`, else None
    (a star import of apex itself is not followed: its names are the leftovers' to mark)."""
    for name in names:
        found = unalias(name, aliases)
        if found != name and (found == "apex" or found.startswith("apex.")):
            return found
    return None


def unalias(name: str, aliases: dict[str, str]) -> str:
    """`base.amp.scale_loss` -> `apex.amp.scale_loss` when `base.amp` re-exports apex.amp."""
    for alias, target in aliases.items():
        if name == alias or name.startswith(alias + "."):
            return target + name[len(alias) :]
    return name


def import_refs(text: str) -> list[ImportRef] | None:
    """Only the imports of a file (None: it does not parse).

    Enough to tell whether a file imports a module, at a fraction of a summary's cost:
    phase 1 reads every file whose imports mention an apex file's module name, and most
    of them import another module of that name.
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return [
        ref
        for node in ast_statements(tree.body)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for ref in _refs_of(node)
    ]


def _refs_of(node: ast.Import | ast.ImportFrom) -> list[ImportRef]:
    """`import a.b [as c], d` is one reference per module; `from m import x` is one."""
    if isinstance(node, ast.Import):
        return [
            ImportRef(node.lineno, alias.name, [], alias.asname or alias.name.split(".")[0])
            for alias in node.names
        ]
    module = "." * node.level + (node.module or "")
    names = [(a.name, a.asname or a.name) for a in node.names if a.name != "*"]
    star = any(a.name == "*" for a in node.names)
    return [ImportRef(node.lineno, module, names, star=star)]


# what apex's OptimWrapper has and the optimizer it wraps does not
WRAPPER_ONLY = frozenset(
    {"_optimizer", "_amp_handle", "_num_loss", "_loss_idx", "_skip_next", "_loss_scaler"}
)


def summarize(
    path: str,
    text: str,
    module: str,
    is_package: bool = False,
    aliases: dict[str, str] | None = None,
    reserved: tuple[str, ...] = (),
) -> tuple[Summary | None, str | None]:
    """The summary of one file, or None and why (it does not parse)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return _Summarizer(path, text, tree, module, is_package, aliases, reserved).run(), None
