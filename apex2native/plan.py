"""Phase 1, repo-wide: where scalers are made, where they are needed, and how they get there.

Every file that mentions apex is parsed once, with LibCST metadata, and summarised: its
functions and classes, the calls it makes (resolved to qualified names through its imports),
the scalers `amp.initialize` creates in it and the functions that need one but cannot reach
one. Files that never mention apex are parsed only when they define or call a function on a
path. The plan then decides, per function that needs a scaler, in this order:

1. a scaler in the same scope (the file rules already see it);
2. `self.scaler` inherited from a base class that creates it;
3. a `scaler` parameter threaded along the call chain, every call site found updated; a
   helper that initializes and returns `model, optimizer` also returns the scaler;
4. otherwise a module-level scaler next to the use, with a TODO that names the init site.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from apex2native.codegen import CodeGen
from apex2native.context import FileContext
from apex2native.facts import FileFacts, ScalerSpec
from apex2native.index import descendants
from apex2native.options import Options

NEEDS = ("apex.amp.scale_loss", "apex.amp.state_dict", "apex.amp.load_state_dict")
PARAM_NAMES = ("scaler", "grad_scaler", "amp_scaler")


@dataclass
class Function:
    qualname: str
    path: str
    params: list[str]
    names: set[str]
    cls: str | None
    return_tuples: list[list[str]]


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


@dataclass
class Holder:
    """A scope that has a scaler: `access` reaches it there."""

    access: str
    spec: ScalerSpec
    models: set[str] = field(default_factory=set)


@dataclass
class Summary:
    path: str
    module: str
    functions: dict[str, Function] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    holders: dict[str, Holder] = field(default_factory=dict)  # function/class/module qualname
    needs: set[str] = field(default_factory=set)


@dataclass
class RepoPlan:
    facts: dict[str, FileFacts] = field(default_factory=dict)
    moves: list[str] = field(default_factory=list)

    def for_path(self, path: str) -> FileFacts | None:
        return self.facts.get(path)


def module_name(path: Path, root: Path) -> str:
    rel = path.resolve().relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def summarize(path: str, text: str, module: str, options: Options) -> Summary | None:
    """One file's functions, classes, calls, scalers and needs (None if it does not parse)."""
    from apex2native.rules.initialize import Initialize

    try:
        tree = cst.parse_module(text)
    except cst.ParserSyntaxError:
        return None
    ctx = FileContext(tree, options, CodeGen(), FileFacts(module=module))
    summary = Summary(path, module)
    if "apex" in text:
        Initialize().apply(ctx)
    for qualname, node in ctx.definitions().items():
        if isinstance(node, cst.ClassDef):
            bases = [ctx.resolve_name(base.value) for base in node.bases]
            summary.classes[qualname] = [b for b in bases if b]
            continue
        cls = ctx.enclosing_class(node)
        summary.functions[qualname] = Function(
            qualname,
            path,
            [
                p.name.value
                for p in (
                    *node.params.posonly_params,
                    *node.params.params,
                    *node.params.kwonly_params,
                )
            ],
            {n.value for n in descendants(node) if isinstance(n, cst.Name)},
            ctx.qualname(cls) if cls is not None else None,
            _return_tuples(ctx, node),
        )
    for node in descendants(ctx.module):
        if isinstance(node, cst.Call):
            callee = ctx.resolve_call(node)
            if callee is None:
                continue
            func = ctx.enclosing_function(node)
            parent = ctx.parent(node)
            unpacked = None
            if isinstance(parent, cst.Assign) and len(parent.targets) == 1:
                target = parent.targets[0].target
                if isinstance(target, (cst.Tuple, cst.List)):
                    unpacked = len(target.elements)
            summary.calls.append(
                Call(
                    path,
                    ctx.qualname(func) if func is not None else module,
                    callee,
                    [ctx.code(a.value) for a in node.args if a.keyword is None and not a.star],
                    {
                        a.keyword.value: ctx.code(a.value)
                        for a in node.args
                        if a.keyword is not None
                    },
                    unpacked,
                    ctx.line(node),
                )
            )
    for scaler in ctx.scalers:
        home = scaler.home
        key = ctx.qualname(home) if not isinstance(home, cst.Module) else module
        spec = scaler.spec(f"{Path(path).name}:{scaler.line}")
        summary.holders.setdefault(key, Holder(scaler.access, spec, set(scaler.models)))
    for ref, name in ctx.apex_refs():
        if name in NEEDS and not ctx.reachable_scalers(ref):
            func = ctx.enclosing_function(ref)
            summary.needs.add(ctx.qualname(func) if func is not None else module)
    return summary


def _return_tuples(ctx: FileContext, func: cst.FunctionDef) -> list[list[str]]:
    out = []
    for node in descendants(func.body):
        if isinstance(node, cst.Return) and ctx.enclosing_function(node) is func:
            if isinstance(node.value, cst.Tuple):
                out.append([ctx.code(e.value) for e in node.value.elements])
            else:
                out.append([])
    return out


class Planner:
    """Builds the RepoPlan from the files of one run."""

    def __init__(self, files: list[tuple[str, str]], options: Options, pool=None) -> None:
        self.options = options
        self.pool = pool
        self.paths = [p for p, _ in files]
        self.root = _common_root(self.paths)
        self.modules: dict[str, str] = {}
        self.module_of: dict[str, str] = {}
        for path in self.paths:
            try:
                name = module_name(Path(path), self.root)
            except ValueError:
                continue
            self.modules.setdefault(name, path)
            self.module_of[path] = name
        self.texts: dict[str, str] = {}
        self.summaries: dict[str, Summary] = {}

    def text(self, path: str) -> str:
        if path not in self.texts:
            try:
                self.texts[path] = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                self.texts[path] = ""
        return self.texts[path]

    def summarize_all(self, paths: list[str]) -> None:
        """Summaries of `paths`, in worker processes when there are many."""
        todo = [p for p in paths if p not in self.summaries]
        args = [(p, self.text(p), self.module_of.get(p, Path(p).stem), self.options) for p in todo]
        if self.pool is not None and len(args) > 8:
            results = list(self.pool.map(_summarize, args, chunksize=4))
        else:
            results = [_summarize(a) for a in args]
        for path, result in zip(todo, results):
            if result is not None:
                self.summaries[path] = result

    def parse_mentioning(self, names: set[str]) -> None:
        """Summarise every file whose text mentions one of `names` (as a word)."""
        if not names:
            return
        pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names))) + r")\b")
        self.summarize_all(
            [p for p in self.paths if p not in self.summaries and pattern.search(self.text(p))]
        )

    def build(self) -> RepoPlan:
        self.summarize_all([p for p in self.paths if "apex" in self.text(p)])
        if not any(s.holders for s in self.summaries.values()):
            return RepoPlan()
        wanted = {q.rsplit(".", 1)[-1] for s in list(self.summaries.values()) for q in s.needs}
        wanted |= {
            c.callee.rsplit(".", 1)[-1]
            for s in list(self.summaries.values())
            for c in s.calls
            if c.caller in s.holders
        }
        for _ in range(4):  # callers of callers: widen the parsed set a few levels
            before = len(self.summaries)
            self.parse_mentioning(wanted)
            wanted |= {  # whoever calls a wanted function may have to pass the scaler on
                call.caller.rsplit(".", 1)[-1]
                for summary in self.summaries.values()
                for call in summary.calls
                if call.callee.rsplit(".", 1)[-1] in wanted and call.caller != summary.module
            }
            if len(self.summaries) == before:
                break
        return self._decide()

    def canonical(self, raw: str, path: str) -> str:
        """`train.fit` imported by `repo/main.py` is `repo.train.fit` when that file exists.

        Script-style repositories import their siblings by bare name (the script's folder
        is on sys.path), so the importing file's folder and its parents are tried in turn.
        """
        parts = raw.split(".")
        folder = Path(path).resolve().parent
        while True:
            try:
                prefix = ".".join(folder.relative_to(self.root).parts)
            except ValueError:
                return raw
            for i in range(len(parts) - 1, 0, -1):
                module = ".".join(p for p in (prefix, *parts[:i]) if p)
                if module in self.modules:
                    return ".".join([module, *parts[i:]])
            if folder == self.root:
                return raw
            folder = folder.parent

    def _decide(self) -> RepoPlan:
        functions: dict[str, Function] = {}
        classes: dict[str, list[str]] = {}
        callers: dict[str, list[Call]] = defaultdict(list)
        holders: dict[str, Holder] = {}
        for s in self.summaries.values():
            functions.update(s.functions)
            classes.update(
                {k: [self.canonical(b, s.path) for b in v] for k, v in s.classes.items()}
            )
            holders.update(s.holders)
            for call in s.calls:
                call.raw = call.raw or call.callee
                call.callee = self.canonical(call.raw, s.path)
                callers[call.callee].append(call)
        plan = _PlanBuilder(self, functions, classes, callers, holders)
        return plan.run()


class _PlanBuilder:
    def __init__(self, planner: Planner, functions, classes, callers, holders) -> None:
        self.planner = planner
        self.functions: dict[str, Function] = functions
        self.classes: dict[str, list[str]] = classes
        self.callers: dict[str, list[Call]] = callers
        self.holders: dict[str, Holder] = holders
        self.facts: dict[str, FileFacts] = {}
        self.moves: list[str] = []
        self.param_of: dict[str, str] = {}

    def file(self, path: str) -> FileFacts:
        summary = self.planner.summaries.get(path)
        module = summary.module if summary else Path(path).stem
        return self.facts.setdefault(path, FileFacts(module=module))

    def note(self, path: str, qualname: str, text: str) -> None:
        self.file(path).notes.setdefault(qualname, []).append(text)
        self.moves.append(f"{Path(path).name}: {text}")

    def class_holder(self, cls: str | None, seen: set[str] | None = None) -> Holder | None:
        """The self-attribute scaler a class gets from itself or a base class."""
        if cls is None:
            return None
        seen = seen or set()
        if cls in seen:
            return None
        seen.add(cls)
        if cls in self.holders and self.holders[cls].access.startswith("self."):
            return self.holders[cls]
        for base in self.classes.get(cls, []):
            found = self.class_holder(base, seen)
            if found is not None:
                return found
        return None

    def holder_at(self, call: Call) -> Holder | None:
        """The scaler the calling scope can pass on."""
        if call.caller in self.holders:
            return self.holders[call.caller]
        func = self.functions.get(call.caller)
        if func is not None:
            holder = self.class_holder(func.cls)
            if holder is not None:
                return holder
        summary = self.planner.summaries.get(call.path)
        if summary and summary.module in self.holders:
            return self.holders[summary.module]
        return None

    def run(self) -> RepoPlan:
        self._helpers_return_scalers()
        needs = []
        for summary in self.planner.summaries.values():
            for qualname in sorted(summary.needs):
                needs.append((summary.path, qualname))
        self._evaluation(needs)
        self._thread(needs)
        return RepoPlan(self.facts, self.moves)

    def _helpers_return_scalers(self) -> None:
        """A helper that initializes and returns the model and optimizer returns the scaler too."""
        for qualname, holder in list(self.holders.items()):
            func = self.functions.get(qualname)
            if func is None or holder.access.startswith("self.") or not func.return_tuples:
                continue
            if not all(t for t in func.return_tuples):
                continue
            sizes = {len(t) for t in func.return_tuples}
            unpacking = [c for c in self.callers.get(qualname, []) if c.unpacked in sizes]
            if not unpacking or len(sizes) != 1:
                continue
            self.file(func.path).returns[qualname] = holder.spec
            self.note(func.path, qualname, f"{qualname} returns its scaler ({holder.spec.origin})")
            for call in unpacking:
                facts = self.file(call.path)
                facts.helpers.add(call.raw)
                facts.unpacks[call.caller] = holder.spec
                self.holders.setdefault(
                    call.caller, Holder("scaler", holder.spec, set(holder.models))
                )
                self.note(
                    call.path, call.caller, f"{call.caller} unpacks the scaler from {qualname}"
                )

    def _evaluation(self, needs: list[tuple[str, str]]) -> None:
        """Functions handed an initialized model run their forward passes under autocast."""
        for qualname, holder in list(self.holders.items()):
            if not holder.models or not holder.spec.autocast:
                continue
            for callee, calls in self.callers.items():
                for call in calls:
                    if call.caller != qualname or callee not in self.functions:
                        continue
                    func = self.functions[callee]
                    params = [p for p in func.params if p not in ("self", "cls")]
                    got = [
                        params[i]
                        for i, a in enumerate(call.args)
                        if a in holder.models and i < len(params)
                    ]
                    got += [
                        k for k, v in call.keywords.items() if v in holder.models and k in params
                    ]
                    if not got:
                        continue
                    facts = self.file(func.path)
                    known = facts.evaluation.get(callee, ((), holder.spec))[0]
                    facts.evaluation[callee] = (tuple(sorted({*known, *got})), holder.spec)
                    if holder.spec.runtime and (func.path, callee) not in needs:
                        needs.append((func.path, callee))

    def _param_name(self, qualname: str) -> str:
        if qualname not in self.param_of:
            func = self.functions[qualname]
            taken = set(func.params) | func.names
            self.param_of[qualname] = next(
                (n for n in PARAM_NAMES if n not in taken), "amp_grad_scaler"
            )
        return self.param_of[qualname]

    def _thread(self, needs: list[tuple[str, str]]) -> None:
        queue = list(needs)
        done: set[str] = set()
        while queue:
            path, qualname = queue.pop(0)
            if qualname in done:
                continue
            done.add(qualname)
            func = self.functions.get(qualname)
            if func is None:
                self._fallback(path, qualname)
                continue
            if qualname in self.holders:
                continue
            holder = self.class_holder(func.cls)
            if holder is not None:
                self.file(path).inherited[func.cls] = (holder.access, holder.spec)  # type: ignore[index]
                self.note(
                    path,
                    qualname,
                    f"{func.cls} reaches {holder.access} from its base class ({holder.spec.origin})",
                )
                continue
            calls = self.callers.get(qualname, [])
            if not calls:
                self._fallback(path, qualname)
                continue
            spec = None
            for call in calls:
                source = self.holder_at(call)
                if source is None and call.caller in self.functions:
                    queue.append((call.path, call.caller))
                    spec = spec or self._upstream_spec(call.caller)
                elif source is not None:
                    spec = spec or source.spec
            if spec is None:
                self._fallback(path, qualname)
                continue
            name = self._param_name(qualname)
            self.file(path).params[qualname] = (name, spec)
            self.holders.setdefault(qualname, Holder(name, spec))
            for call in calls:
                self.file(call.path).callees[call.raw] = name
                self.note(
                    call.path,
                    call.caller,
                    f"scaler ({spec.origin}) passed from {call.caller} to {qualname} "
                    f"({Path(call.path).name}:{call.line})",
                )

    def _upstream_spec(self, qualname: str, seen: set[str] | None = None) -> ScalerSpec | None:
        seen = seen or set()
        if qualname in seen:
            return None
        seen.add(qualname)
        for call in self.callers.get(qualname, []):
            holder = self.holder_at(call)
            if holder is not None:
                return holder.spec
            found = self._upstream_spec(call.caller, seen)
            if found is not None:
                return found
        return None

    def _fallback(self, path: str, qualname: str) -> None:
        specs = {h.spec for h in self.holders.values()}
        if len(specs) != 1:
            return
        spec = next(iter(specs))
        self.file(path).fallback[qualname] = spec
        self.note(
            path, qualname, f"{qualname}: module-level scaler (no call path from {spec.origin})"
        )


def _summarize(args: tuple[str, str, str, Options]) -> Summary | None:
    return summarize(*args)


def _common_root(paths: list[str]) -> Path:
    import os

    if not paths:
        return Path.cwd()
    parents = [str(Path(p).resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents))


def build_plan(files: list[tuple[str, str]], options: Options, pool=None) -> RepoPlan:
    """Phase 1 over the files of one run (`pool`: a process pool to summarise files in)."""
    return Planner(files, options, pool).build()
