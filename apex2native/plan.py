"""Phase 1, repo-wide: where scalers are made, where they are needed, and how they get there.

Files are read with `ast` (see `summary.py`): first every file that mentions apex, then the
project modules those import and, following the import graph upwards, the modules that
import them (a caller of `pkg/train.py:fit` can only be a file that imports `pkg.train`).
A cheap word scan picks the candidates; only they are parsed. The plan then decides, per
function that needs a scaler, in this order:

1. a scaler in the same scope (the file rules already see it);
2. `self.scaler` inherited from a base class that creates it;
3. a `scaler` parameter threaded along the call chain, every call site found updated; a
   helper that initializes and returns `model, optimizer` also returns the scaler;
4. otherwise nothing: the use is a blocker of its unit, which stays apex, with a TODO.

Every decision carries its migration unit (the initialize site it serves), so a unit that
fails anywhere can be held back everywhere.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from apex2native.cache import Cache, map_cached
from apex2native.facts import FileFacts, Handed, InitDecision, ScalerSpec
from apex2native.literal_guards import arm_skipped, literal_bindings
from apex2native.scopes import absolute_name, free_name
from apex2native.summary import Call, Function, Summary, import_refs, summarize
from apex2native.target import RENAMES
from apex2native.textio import read_text

PARAM_NAMES = ("scaler", "grad_scaler", "amp_scaler")
NAME_CHAIN = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$")
# a deprecated AMP name in a string (`mock.patch("torch.cuda.amp.autocast")`, a sys.modules key)
PINS = re.compile(r"""["'](torch\.(?:cuda|cpu)\.amp(?:\.\w+)*)["']""")
QUOTED_NAME = re.compile(r"""["']([A-Z][A-Za-z0-9_]*)["']""")  # "FusedLayerNorm"
IMPORT_LIST = re.compile(r"\bimport\s*\([^)]*\)")  # from pkg import (a,\n b)
# an optional import (`except ImportError`): its flags and star imports may be read elsewhere
_GUARD = re.compile(r"except\b[^:\n]*ImportError")
_APEX_STAR = re.compile(r"^\s*from\s+apex[.\w]*\s+import\s+\*", re.MULTILINE)
APEX_DDP = "apex.parallel.DistributedDataParallel"
IMPORT_DEPTH = 4  # rounds of reading the importers of files whose signatures change


@dataclass
class Holder:
    """A scope that has a scaler: `access` reaches it there."""

    access: str
    spec: ScalerSpec
    models: set[str] = field(default_factory=set)


@dataclass
class RepoPlan:
    facts: dict[str, FileFacts] = field(default_factory=dict)
    moves: list[str] = field(default_factory=list)
    summaries: dict[str, Summary] = field(default_factory=dict)
    graph: ImportGraph | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # deprecated AMP names a file names in a string (a mock target): they keep their spelling
    pinned_amp_names: frozenset[str] = frozenset()
    name_tested: frozenset[str] = frozenset()  # see Options.name_tested
    programs: dict[str, str] = field(default_factory=dict)  # file -> its program's first file
    # summaries and trees of rewritten texts, by (path, text): the hold-back rounds check
    # the same rewrites again
    rewritten: dict[tuple[str, str, str], object] = field(
        default_factory=dict, repr=False, compare=False
    )
    cache: Cache | None = field(default=None, repr=False, compare=False)
    key: str | None = None  # the cache key of the inputs the plan was made from
    # units that share a threaded function: one held back holds back the others
    links: list[frozenset[str]] = field(default_factory=list)
    # `pkg.f` -> `pkg.engine.f` where pkg imports f from .engine: calls spelled either way
    reexports: dict[str, str] = field(default_factory=dict)
    # units held back before any rewrite, with the reason (a file of their program that
    # uses apex does not parse: what it does with the scaler cannot be known)
    held: dict[str, str] = field(default_factory=dict)

    def summary_of(self, path: str, text: str) -> Summary | None:
        """The summary of `text` as the content of `path` (None: it does not parse)."""
        key = ("summary", path, text)
        if key not in self.rewritten:
            module, package = self.graph.name_of(path) if self.graph else ("", False)
            facts = self.facts.get(path)
            # apex reached through a project module (`common.amp`) is apex in the new text too
            args = (path, text, module, package, (facts.aliases or None) if facts else None)
            stored = self.cache.key("summary", args) if self.cache is not None else None
            [(self.rewritten[key], _)] = map_cached(self.cache, _summarize, [args], [stored])
        return self.rewritten[key]  # type: ignore[return-value]

    def program_of(self, path: str) -> str:
        """The files linked by imports (either way) form one program; a file the plan did
        not read is a program of its own."""
        return self.programs.get(path, path)

    def for_path(self, path: str) -> FileFacts | None:
        return self.facts.get(path)

    def relative(self, path: str) -> str:
        """`path` as the repository shows it (relative to the root of the run)."""
        return self.graph.relative(path) if self.graph is not None else path

    def unit_label(self, unit: str) -> str:
        """A unit (`/abs/path.py:12`, its initialize) as the repository shows it."""
        path, sep, line = unit.rpartition(":")
        return f"{self.relative(path)}:{line}" if sep and line.isdigit() else unit


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """The dotted module name of a file under `root`, and whether it is a package."""
    rel = real_path(str(path)).relative_to(root).with_suffix("")
    parts = list(rel.parts)
    package = bool(parts) and parts[-1] == "__init__"
    if package:
        parts.pop()
    return ".".join(parts), package


class ImportGraph:
    """Project modules by name, and how a dotted name written in one file resolves.

    Resolution is by path, never by file name: the package path from the root, and for
    script-style repositories the importing file's folder and its parents.
    """

    def __init__(self, paths: list[str], names: dict[str, tuple[str, bool]] | None = None) -> None:
        self.root = _common_root(paths)
        # module names start above the packages the run is inside (`repo/pkg/__init__.py`
        # run as `repo/pkg`: its files are `pkg.x`, as `from pkg.x import y` names them)
        self.base = _package_base(self.root)
        self._canonical: dict[tuple[str, str], str] = {}
        self._folders: dict[str, list[str]] = {}
        self._relative: dict[str, str] = {}
        self.modules: dict[str, str] = {}
        self.module_of: dict[str, tuple[str, bool]] = {}
        for path in paths:
            try:
                name, package = (names or {}).get(path) or module_name(Path(path), self.base)
            except ValueError:
                continue
            self.modules.setdefault(name, path)
            self.module_of[path] = (name, package)
        # a `src/` layout: `src/pkg/x.py` is imported as `pkg.x` (and by some as `src.pkg.x`;
        # with `src` on the path, tests import `src/engine.py` as `engine` even where
        # `src/__init__.py` makes `src` a package as well)
        if not names and (self.base / "src").is_dir():
            for path, (name, _) in list(self.module_of.items()):
                if name.startswith("src."):
                    self.modules.setdefault(name[len("src.") :], path)

    def relative(self, path: str) -> str:
        if path not in self._relative:
            try:
                self._relative[path] = Path(path).resolve().relative_to(self.root).as_posix()
            except ValueError:
                self._relative[path] = path
        return self._relative[path]

    def name_of(self, path: str) -> tuple[str, bool]:
        return self.module_of.get(path, (Path(path).stem, False))

    def canonical(self, raw: str, path: str) -> str:
        """`train.fit` imported by `repo/main.py` is `repo.train.fit` when that file exists."""
        key = (raw, path)
        if key not in self._canonical:
            self._canonical[key] = self._resolve(raw.split("."), self._prefixes(path), raw)
        return self._canonical[key]

    def _resolve(self, parts: list[str], prefixes: list[str], raw: str) -> str:
        for prefix in prefixes:
            for i in range(len(parts), 0, -1):
                module = ".".join(p for p in (prefix, *parts[:i]) if p)
                if module in self.modules:
                    name = self.module_of[self.modules[module]][0]  # not a `src/` alias
                    return ".".join([name, *parts[i:]])
        return raw

    def _prefixes(self, path: str) -> list[str]:
        """The package prefixes of a file's folder and of each parent up to the root."""
        folder = str(Path(path).parent)
        if folder not in self._folders:
            prefixes = []
            current = Path(folder).resolve()
            while True:
                try:
                    prefixes.append(".".join(current.relative_to(self.base).parts))
                except ValueError:
                    break
                if current == self.base:
                    break
                current = current.parent
            self._folders[folder] = prefixes
        return self._folders[folder]

    def module_file(self, raw: str, path: str) -> tuple[str | None, str]:
        """The project file a dotted name lives in, and the rest of the name inside it."""
        name = self.canonical(raw, path)
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            module = ".".join(parts[:i])
            if module in self.modules:
                return self.modules[module], ".".join(parts[i:])
        return None, name

    def source_of(self, ref, summary: Summary) -> tuple[str | None, str]:
        """The project file an import statement of `summary` reads from, and the rest of
        the dotted name inside it (`from pkg.utils import x`: utils.py, "")."""
        base = absolute_name(ref.module, summary.module, summary.is_package)
        return self.module_file(base, summary.path)

    def imported_files(self, summary: Summary) -> set[str]:
        """Project files a summarised file imports."""
        out = set()
        for ref in summary.imports:
            base = absolute_name(ref.module, summary.module, summary.is_package)
            targets = [base] if not ref.names else [f"{base}.{n}" for n, _ in ref.names]
            if ref.names and ref.module.strip("."):
                targets.append(base)
            for target in targets:
                found, _ = self.module_file(target, summary.path)
                if found is not None and found != summary.path:
                    out.add(found)
        return out


class Planner:
    """Builds the RepoPlan from the files of one run."""

    def __init__(
        self,
        files: list[tuple[str, str]],
        texts: dict[str, str] | None = None,
        module_names: dict[str, tuple[str, bool]] | None = None,
        cache: Cache | None = None,
    ) -> None:
        self.paths = [p for p, _ in files]
        self.graph = ImportGraph(self.paths, module_names)
        self.cache = cache
        self.texts: dict[str, str] = dict(texts or {})
        self.summaries: dict[str, Summary] = {}
        self.errors: dict[str, str] = {}
        # per star-imported file: what its star importers read that the rules do not follow
        self.star_unfollowed: dict[str, set[str]] = {}

    def text(self, path: str) -> str:
        if path not in self.texts:
            self.texts[path] = _read_or_empty(path)
        return self.texts[path]

    def summarize_all(self, paths, pool=None, aliases=None, reserved=None) -> None:
        todo = [p for p in paths if p not in self.summaries and p not in self.errors]
        args = [(p, self.text(p), *self.graph.name_of(p), (aliases or {}).get(p)) for p in todo]
        if reserved:
            args = [(*a, tuple(sorted(reserved.get(a[0], ())))) for a in args]
        keys = [self._key("summary", a) for a in args]
        results = map_cached(self.cache, _summarize, args, keys, pool)
        for path, (summary, error) in zip(todo, results):
            if summary is not None:
                self.summaries[path] = summary
            else:
                self.errors[path] = error or "does not parse"

    def _key(self, kind: str, args: object) -> str | None:
        return self.cache.key(kind, args) if self.cache is not None else None

    def build(self, pool=None) -> RepoPlan:
        plan = self._build(pool)
        plan.cache = self.cache
        plan.pinned_amp_names = frozenset(
            name
            for p in self.paths
            if ".amp" in self.text(p)
            for name in PINS.findall(self.text(p))
        ) | self._kept_amp_names(pool)
        plan.name_tested = frozenset(
            name
            for p in self.paths
            if "__name__" in self.text(p) or "__class__" in self.text(p)
            for name in QUOTED_NAME.findall(self.text(p))
        )
        plan.programs = self._programs()
        plan.held = self._broken_programs(plan)
        self._star_read_amp(plan)
        self._keep_apex_ddp(plan)
        return plan

    def _broken_programs(self, plan: RepoPlan) -> dict[str, str]:
        """A file that mentions apex and does not parse may scale a loss with the scaler of
        an initialize in another file: every unit of the files it imports or that import it
        (and of their programs) stays apex, or the initialize would go and its scaler never
        reach the broken file's `amp.scale_loss`."""
        held: dict[str, str] = {}
        for path in sorted(self.errors):
            text = self.text(path)
            if "apex" not in text and "amp." not in text:
                continue
            module, package = self.graph.name_of(path)
            linked = {
                found
                for found in self.graph.imported_files(
                    Summary(path, module, package, imports=_import_lines(text))
                )
                if found in self.summaries
            }
            linked |= {
                other
                for other, summary in self.summaries.items()
                if path in self.graph.imported_files(summary)
            }
            programs = {plan.program_of(other) for other in linked}
            why = (
                f"{self.graph.relative(path)} uses apex and does not parse "
                f"({self.errors[path].split(':')[0]}), so its apex uses cannot be migrated"
            )
            for other, summary in sorted(self.summaries.items()):
                if plan.program_of(other) not in programs:
                    continue
                facts = plan.facts.get(other)
                units = set(facts.units()) if facts is not None else set()
                units |= {s.decision.spec.unit for s in summary.inits if s.decision.spec}
                for unit in sorted(units):
                    held.setdefault(unit, why)
        return held

    def _programs(self) -> dict[str, str]:
        """Each read file -> the first file (in path order) of the files it is linked to by
        imports, either way."""
        parent = {path: path for path in self.summaries}

        def root(path: str) -> str:
            while parent[path] != path:
                parent[path] = parent[parent[path]]
                path = parent[path]
            return path

        for path, summary in self.summaries.items():
            for other in self.graph.imported_files(summary):
                if other in parent:
                    a, b = sorted((root(path), root(other)))
                    parent[b] = a
        return {path: root(path) for path in sorted(parent)}

    def _keep_apex_ddp(self, plan: RepoPlan) -> None:
        """apex DDP's own methods (`model.disable_allreduce()`) called in a file: torch DDP
        has none, so apex DDP stays apex in every file of that program that names apex (the
        native form, `no_sync()`, is a different shape)."""
        for path in sorted(self.summaries):
            methods = sorted(self.summaries[path].apex_ddp_methods)
            if not methods:
                continue
            why = (
                f"{self.graph.relative(path)} calls `.{methods[0]}()`, apex DDP's own method, "
                "which torch DDP lacks (its native form is `with model.no_sync():`)"
            )
            program = plan.program_of(path)
            for other in self.summaries:
                if plan.program_of(other) == program and "apex" in self.text(other):
                    facts = plan.facts.get(other)
                    if facts is None:
                        facts = plan.facts[other] = FileFacts(*self.graph.name_of(other))
                    facts.kept_classes.setdefault(APEX_DDP, why)

    def _kept_amp_names(self, pool=None) -> frozenset[str]:
        """Deprecated AMP classes some file tests objects against or subclasses: every
        file keeps making objects of the old class (`isinstance` is False for the new one)."""
        kept = {n for s in self.summaries.values() for n in s.kept_amp}
        words = {name.rsplit(".", 1)[1] for name in RENAMES}
        others = [
            p
            for p in self.paths
            if p not in self.summaries
            and ".amp" in self.text(p)
            and ("isinstance" in self.text(p) or "class " in self.text(p))
            and any(word in self.text(p) for word in words)
        ]
        args = [(p, self.text(p), *self.graph.name_of(p), None) for p in others]
        keys = [self._key("summary", a) for a in args]
        for summary, _ in map_cached(self.cache, _summarize, args, keys, pool):
            kept |= summary.kept_amp if summary is not None else set()
        return frozenset(kept)

    def _build(self, pool=None) -> RepoPlan:
        apex = [p for p in self.paths if "apex" in self.text(p)]
        self.summarize_all(apex, pool)
        if not any(
            s.inits or s.needs or s.apex_exports or s.twins for s in self.summaries.values()
        ):
            plan = RepoPlan(summaries=self.summaries, graph=self.graph, errors=self.errors)
            # who imports a guard's flag, or what an apex star import binds, decides
            # whether an unused apex import may be marked for removal
            if any(_GUARD.search(self.text(p)) or _APEX_STAR.search(self.text(p)) for p in apex):
                self._importers_of(set(apex), pool)
                self.attach_imported(plan, apex)
            return plan
        imported = {f for s in list(self.summaries.values()) for f in self.graph.imported_files(s)}
        self.summarize_all(sorted(imported), pool)
        self._importers_of(set(apex), pool)
        # a package whose star import passes apex names on is imported like an apex file
        passers = {p for p, names in self._passed_exports().items() if names} - set(apex)
        if passers:
            self._importers_of(passers, pool)
        self._resummarize_aliased(pool)
        plan = _PlanBuilder(self).run()
        expanded = set(apex)
        for _ in range(IMPORT_DEPTH):
            frontier = {path for path, facts in plan.facts.items() if _reshapes(facts)} - expanded
            expanded |= frontier
            before = set(self.summaries)
            if not frontier or not self._importers_of(frontier, pool) - before:
                break
            plan = _PlanBuilder(self).run()  # with the callers it had not seen
        if self._reserve_attributes(pool, plan):
            plan = _PlanBuilder(self).run()
        self.attach_imported(plan, apex)
        return plan

    def _subclass_files(self, homes: set[str]) -> set[str]:
        """The summarised files with a class that derives from one of `homes`' classes."""
        classes = {
            cls: [self.graph.canonical(b, s.path) for b in bases]
            for s in self.summaries.values()
            for cls, bases in s.classes.items()
        }
        where = {cls: s.path for s in self.summaries.values() for cls in s.classes}
        out = set()
        for path in homes:
            for cls in self.summaries[path].classes:
                out |= {where[c] for c in _related(cls, classes) if c in where}
        return out

    def _reserve_attributes(self, pool=None, plan: RepoPlan | None = None) -> bool:
        """A `self.scaler` made in a class whose subclasses (at any depth) or base classes
        use that attribute or name (`self.scaler = MinMax()`, `def scaler(self)`), or that
        some file sets on an object (`trainer.scaler = x`): the file is read again with
        those names reserved, so the scaler takes a free one. True when one was (or when
        the subclasses, at any depth, of a class that owns its scaler (A2N120) were found
        in files not read before: the plan is made again with them)."""
        homes = {
            path
            for path, s in self.summaries.items()
            if any(site.decision.access.startswith("self.") for site in s.inits)
        }
        bases = {
            site.home.rsplit(".", 1)[-1]
            for path in homes
            for site in self.summaries[path].inits
            if site.decision.access.startswith("self.")
        }
        owners = {
            path: set(facts.owned)
            for path, facts in (plan.facts.items() if plan is not None else ())
            if facts.owned
        }
        homes |= set(owners)
        bases |= {cls.rsplit(".", 1)[-1] for classes in owners.values() for cls in classes}
        before = set(self.summaries)
        expanded: set[str] = set()
        passing: set[str] = set()  # package `__init__` files that pass a subclass on
        # subclasses of subclasses, in files that import them: for a class that owns its
        # scaler, to the end of the chain, through aliases and packages that re-export
        for _ in range(len(self.paths) if owners else IMPORT_DEPTH):
            frontier = (homes | self._subclass_files(homes) | passing) - expanded
            expanded |= frontier
            bases |= {
                cls.rsplit(".", 1)[-1]
                for path in frontier - homes
                for cls in self.summaries[path].classes
            }
            if not frontier:
                break
            found = self._importers_of(frontier, pool, None if owners else bases)
            if not found:
                break
            if owners:
                passing |= {p for p in found if p.endswith("__init__.py")}
        self._summarize_bases(expanded, pool)
        classes: dict[str, list[str]] = {}
        attrs: dict[str, set[str]] = {}
        outside: set[str] = set()
        for s in self.summaries.values():
            for cls, bases in s.classes.items():
                classes[cls] = [self.graph.canonical(b, s.path) for b in bases]
            for cls, names in s.class_attrs.items():
                attrs.setdefault(cls, set()).update(names)
            outside |= s.outside_writes
        reserved: dict[str, set[str]] = {}
        for path, s in self.summaries.items():
            for site in s.inits:
                access = site.decision.access
                if site.decision.kind != "scaler" or not access.startswith("self."):
                    continue
                near = set(outside)
                for other in _related(site.home, classes):
                    near |= attrs.get(other, set())
                if access.split(".", 1)[1] in near:
                    reserved.setdefault(path, set()).update(near)
        if not reserved:
            return bool(owners) and bool(set(self.summaries) - before)
        for path in reserved:
            self.summaries.pop(path, None)
        self.summarize_all(sorted(reserved), pool, self.aliases(), reserved)
        return True

    def _summarize_bases(self, paths: set[str], pool=None) -> None:
        """Read the project files that define the base classes of `paths`' classes (a mixin
        beside the scaler's class, in a file of its own), and theirs, a few levels up."""
        done = set(paths)
        for _ in range(IMPORT_DEPTH):
            wanted = {
                base.rsplit(".", 1)[-1]
                for path in done
                if path in self.summaries
                for bases in self.summaries[path].classes.values()
                for base in bases
            }
            if not wanted:
                return
            pattern = re.compile(
                r"\bclass\s+(?:" + "|".join(map(re.escape, sorted(wanted))) + r")\b"
            )
            found = {
                f
                for path in done
                if path in self.summaries
                for f in self.graph.imported_files(self.summaries[path])
                if f not in done and pattern.search(self.text(f))
            }
            if not found:
                return
            self.summarize_all(sorted(f for f in found if f not in self.summaries), pool)
            done |= found

    def attach_imported(self, plan: RepoPlan, paths: list[str]) -> None:
        """Record, for each of `paths`, the names the other summarised files import from it
        or read of it as a module (`import utils` then `utils.HAS_APEX`)."""
        found = imported_names(self.graph, self.summaries.values(), paths)
        whole = found  # the same without star imports: is "*" theirs alone?
        if any("*" in names for names in found.values()):
            unstarred = [
                dataclasses.replace(s, imports=[r for r in s.imports if not r.star])
                for s in self.summaries.values()
            ]
            whole = imported_names(self.graph, unstarred, paths)
        for path, names in found.items():
            facts = plan.facts.get(path)
            if facts is None:
                facts = plan.facts[path] = FileFacts(*self.graph.name_of(path))
            facts.imported |= names
            if "*" in names:
                reads, unfollowed = self._star_reads(path, facts.star_readers)
                facts.star_reads |= reads
                self.star_unfollowed[path] = unfollowed
                facts.star_only = "*" not in whole.get(path, set())

    def _star_reads(self, path: str, readers: set[str]) -> tuple[set[str], set[str]]:
        """Names the files that star-import `path` read (or pass on), through chains of
        star imports too (`from mid import *` where mid star-imports path), and the same
        less the apex names the rules follow: those `path` binds itself that a module reads
        through star imports, each its module's only one (`ApexNames.apex_name`). `readers`
        collects the files that read through the star imports."""
        out: set[str] = set()
        unfollowed: set[str] = set()
        stars = self._star_importers()
        source = self.summaries.get(path)
        followed = set()
        if source is not None:
            followed = {n for n in source.apex_exports if star_exports(source, n)}
        # (module, whether every star import on the way was its module's only one: then
        # the rules follow the names through it, `RepoPlan.aliases` and `_passed_exports`)
        frontier, seen = [(path, True)], {path}
        while frontier:
            target, single = frontier.pop()
            for summary in stars:
                if summary.path in seen or not any(
                    ref.star and self.graph.source_of(ref, summary)[0] == target
                    for ref in summary.imports
                ):
                    continue
                seen.add(summary.path)
                one = single and sum(ref.star for ref in summary.imports) == 1
                frontier.append((summary.path, one))
                readers.add(summary.path)
                read = self._reads(summary.path) | self._passed_on(summary.path, path)
                if "*" in read:  # a reader that does not parse, or reads the module whole
                    read = set(source.module_names) if source is not None else read
                out |= read
                unfollowed |= read - followed if one else read
        return out, unfollowed

    def _reads(self, path: str) -> frozenset[str]:
        """The names a file reads, bound there or not (a name it binds only on some path,
        `if not cuda: FusedLayerNorm = LayerNorm`, is the star import's on the others)."""
        cache = self.__dict__.setdefault("_read_names", {})
        if path not in cache:
            cache[path] = frozenset(names_read(self.text(path)))
        return cache[path]

    def _passed_on(self, reader: str, source: str) -> set[str]:
        """What modules import from `reader`, a star importer of `source` (a package's
        `__init__` passing on `from .layers import *`): `source`'s names they may get. All
        of them where one reads the module whole."""
        importers = self._importers_of({reader})
        if not importers:
            return set()
        names = imported_names(self.graph, self.summaries.values(), [reader]).get(reader, set())
        if "*" in names:
            summary = self.summaries.get(source)
            return set(summary.module_names) if summary is not None else {"*"}
        return names

    def _star_importers(self) -> list[Summary]:
        """The imports of every file of the run that has a star import (read once)."""
        if getattr(self, "_stars", None) is None:
            self._stars: list[Summary] | None = []
            for other in self.paths:
                text = self.text(other)
                if "import *" not in text and "import*" not in text:
                    continue
                summary = self.summaries.get(other)
                if summary is None:
                    module, package = self.graph.name_of(other)
                    summary = Summary(other, module, package, imports=import_refs(text) or [])
                self._stars.append(summary)
        return self._stars  # type: ignore[return-value]

    def _star_read_amp(self, plan: RepoPlan) -> None:
        """A module whose `amp` (apex's) a star importer reads: that reader's `amp.*` is not
        followed, so the units of the program stay apex (a GradScaler beside it would not
        be the state the reader saves or scales with)."""
        for path, facts in sorted(plan.facts.items()):
            summary = self.summaries.get(path)
            if summary is None or not facts.star_reads:
                continue
            names = [n for n, apex in summary.apex_exports.items() if apex == "apex.amp"]
            unfollowed = self.star_unfollowed.get(path, set())
            read = sorted(n for n in names if n in unfollowed)
            if not read:
                continue
            why = (
                f"{self.graph.relative(path)} passes apex's `{read[0]}` on to a module that "
                "star-imports it and reads it, which the tool does not follow"
            )
            program = plan.program_of(path)
            for other, other_summary in sorted(self.summaries.items()):
                if plan.program_of(other) != program:
                    continue
                other_facts = plan.facts.get(other)
                units = set(other_facts.units()) if other_facts is not None else set()
                units |= {s.decision.spec.unit for s in other_summary.inits if s.decision.spec}
                for unit in sorted(units):
                    plan.held.setdefault(unit, why)

    def aliases(self) -> dict[str, dict[str, str]]:
        """Per file: names it imports from a project module that re-exports apex."""
        out: dict[str, dict[str, str]] = {}
        exports = self._passed_exports()
        for summary in self.summaries.values():
            for ref in summary.imports:
                found, rest = self.graph.source_of(ref, summary)
                source = self.summaries.get(found) if found else None
                if source is None or rest:
                    continue
                base = absolute_name(ref.module, summary.module, summary.is_package)
                given = exports.get(source.path, source.apex_exports)
                # `from common import amp`; `import common` reads the names as `common.amp`
                names = [name for name, _ in ref.names] if ref.names else list(given)
                if ref.star:
                    names = [n for n in names if star_exports(source, n)]
                for name in names:
                    if name in given:
                        out.setdefault(summary.path, {})[f"{base}.{name}"] = given[name]
        return out

    def _passed_exports(self) -> dict[str, dict[str, str]]:
        """The apex names each module binds, with those its one star import of a project
        module passes on (`pkg/__init__.py`: `from .utils import *`), through chains."""
        exports = {path: dict(s.apex_exports) for path, s in self.summaries.items()}
        for _ in range(IMPORT_DEPTH):
            changed = False
            for path, summary in self.summaries.items():
                stars = [ref for ref in summary.imports if ref.star]
                if len(stars) != 1:
                    continue
                found, rest = self.graph.source_of(stars[0], summary)
                source = self.summaries.get(found) if found and not rest else None
                if source is None or found == path:
                    continue
                for name, apex in exports[found].items():
                    if (
                        star_exports(source, name)
                        and name not in summary.module_names
                        and name not in exports[path]
                    ):
                        exports[path][name] = apex
                        changed = True
            if not changed:
                break
        return exports

    def _resummarize_aliased(self, pool) -> None:
        """Files that use apex through a project module's re-export are read again, so
        their apex uses are seen (`from base_trainer import amp`)."""
        aliases = self.aliases()
        for path in aliases:
            self.summaries.pop(path, None)
        self.summarize_all(sorted(aliases), pool, aliases)

    def _importers_of(
        self, targets: set[str], pool=None, subclassing: set[str] | None = None
    ) -> set[str]:
        """Files that import one of `targets` (a word scan, then the parsed imports); with
        `subclassing`, only those that define a class deriving from one of those names."""
        words = set()
        for path in targets:
            name, package = self.graph.name_of(path)
            last = name.rsplit(".", 1)[-1] if name else ""
            if last:
                words.add(last)
        if not words:
            return set()
        alternatives = "|".join(sorted(map(re.escape, words)))
        pattern = re.compile(r"\b(" + alternatives + r")\b")
        in_import = re.compile(r"\b(?:from|import)\b[^\n]*\b(?:" + alternatives + r")\b")
        # `importlib.import_module("pkg.train")`, `__import__("train")`: an import all the same
        dynamic = re.compile(
            r"""(?:import_module|__import__)\(\s*["'](?:[\w.]*\.)?(?:"""
            + alternatives
            + r""")["']"""
        )
        derives = None
        if subclassing is not None:
            if not subclassing:
                return set()
            names = "|".join(map(re.escape, sorted(subclassing)))
            derives = re.compile(r"class\s+\w+\s*\([^)]*\b(?:" + names + r")\b")
        # `from . import *`, `from .. import x` name no module: the packages' own files
        packages = [
            os.path.dirname(path) + os.sep for path in targets if path.endswith("__init__.py")
        ]
        candidates = [
            p
            for p in self.paths
            if p not in targets
            and "import" in self.text(p)
            and (derives is None or derives.search(self.text(p)))
            and (
                (pattern.search(self.text(p)) and in_import.search(_joined_imports(self.text(p))))
                or (
                    any(p.startswith(package) for package in packages)
                    and BARE_RELATIVE.search(self.text(p))
                )
            )
        ]
        dynamic_importers = {
            p
            for p in self.paths
            if p not in targets
            and ("import_module" in self.text(p) or "__import__" in self.text(p))
            and (derives is None or derives.search(self.text(p)))
            and dynamic.search(self.text(p))
        }
        unread = [p for p in candidates if p not in self.summaries]
        args = [self.text(p) for p in unread]
        keys = [self._key("imports", a) for a in args]
        refs = map_cached(self.cache, import_refs, args, keys, pool)
        imports = dict(zip(unread, refs))
        out = set()
        for path in candidates:
            summary = self.summaries.get(path)
            if summary is None and imports.get(path) is not None:
                module, package = self.graph.name_of(path)
                summary = Summary(path, module, package, imports=imports[path])
            if summary is not None and self.graph.imported_files(summary) & targets:
                out.add(path)
        out |= dynamic_importers
        self.summarize_all(sorted(out), pool)
        return out


BARE_RELATIVE = re.compile(r"^\s*from\s+\.+\s+import\b", re.M)


def names_read(text: str) -> set[str]:
    """Every name a text reads (loads), bound in it or not; {"*"} (any) when it does not
    parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {"*"}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def star_exports(source: Summary, name: str) -> bool:
    """`from source import *` binds `name`: public, and listed where `__all__` lists."""
    public = source.public
    return not name.startswith("_") and public is not None and (not public or name in public)


def imported_names(
    graph: ImportGraph, summaries: Iterable[Summary], paths: Iterable[str]
) -> dict[str, set[str]]:
    """For each of `paths`, the names the files of `summaries` import from it or read of
    it as a module (`import utils` then `utils.HAS_APEX`; "*": a star import, or the
    module passed on whole)."""
    wanted = set(paths)
    out: dict[str, set[str]] = {}

    def read_module(summary: Summary, name: str, path: str, spelled: str) -> None:
        """`summary`'s file reads module `name` (file `path`) as `spelled`: what it reads
        of it counts as imported, and so does what it reads of its submodules through it."""
        names = _read_names(summary, spelled)
        if path in wanted and names:
            out.setdefault(path, set()).update(names)
        for attr in names - {"*"}:
            module, tail = graph.module_file(f"{name}.{attr}", summary.path)
            if module not in (None, path, summary.path) and not tail:
                read_module(summary, f"{name}.{attr}", module, f"{spelled}.{attr}")

    for summary in summaries:
        for ref in summary.imports:
            found, rest = graph.source_of(ref, summary)
            if found == summary.path:
                continue
            base = absolute_name(ref.module, summary.module, summary.is_package)
            if found is not None and (ref.star or rest):
                if found in wanted:
                    out.setdefault(found, set()).add("*")
                continue
            if not ref.names:  # `import a.b [as c]`: what the file reads of a.b
                if found is not None:
                    read_module(summary, base, found, ref.spelled())
                continue
            if found in wanted:
                out.setdefault(found, set()).update(name for name, _ in ref.names)
            for name, bound in ref.names:  # `from pkg import mod`: what it reads of mod
                module, tail = graph.module_file(f"{base}.{name}", summary.path)
                if module not in (None, found, summary.path) and not tail:
                    read_module(summary, f"{base}.{name}", module, bound)
    return out


def _related(cls: str, classes: dict[str, list[str]]) -> set[str]:
    """The classes above `cls` and below it, at any depth, and the other bases of those
    below (a mixin beside it shares the object's attributes); not `cls` itself."""
    out = _ancestors(cls, classes) - {cls}
    below = {cls}
    changed = True
    while changed:  # subclasses
        changed = False
        for other, bases in classes.items():
            if other not in below and below & set(bases):
                below.add(other)
                changed = True
    for sub in below - {cls}:
        out |= _ancestors(sub, classes)
    return out | (below - {cls})


def _ancestors(cls: str, classes: dict[str, list[str]]) -> set[str]:
    """The base classes of `cls`, their bases, and so on."""
    out: set[str] = set()
    pending = list(classes.get(cls, []))
    while pending:
        base = pending.pop()
        if base not in out:
            out.add(base)
            pending.extend(classes.get(base, []))
    return out


def _read_names(summary: Summary, spelled: str) -> set[str]:
    """The names a file reads of the module it spells `spelled` (`utils.X`: X), or every
    name ("*") where it passes the module itself on (`getattr(utils, name)`)."""
    prefix = spelled + "."
    out = set()
    for dotted in summary.module_reads:
        if dotted == spelled:
            return {"*"}
        if dotted.startswith(prefix):
            out.add(dotted[len(prefix) :].split(".")[0])
    return out


def _import_lines(text: str) -> list:
    """The import statements of a text that does not parse as a whole, each read alone."""
    refs = []
    for line in _joined_imports(text).splitlines():
        stripped = line.strip()
        if not stripped.startswith(("import ", "from ")):
            continue
        found = import_refs(stripped.rstrip("\\"))
        refs.extend(found or ())
    return refs


def _reshapes(facts: FileFacts) -> bool:
    """The plan changes what a function of the file takes or returns: every caller of it,
    in any file, must be seen."""
    return bool(facts.params or facts.flags or facts.returns or facts.amp_params)


def _joined_imports(text: str) -> str:
    """The text with each import statement on one line (backslash and parenthesized
    continuations joined), so that a line scan sees every name an import mentions."""
    text = text.replace("\\\n", " ")
    return IMPORT_LIST.sub(lambda m: m.group(0).replace("\n", " "), text)


class _PlanBuilder:
    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.graph = planner.graph
        self.functions: dict[str, Function] = {}
        self.classes: dict[str, list[str]] = {}
        self.callers: dict[str, list[Call]] = defaultdict(list)
        self._callees: dict[str, set[str]] | None = None  # caller -> callees, made on demand
        self.holders: dict[str, Holder] = {}
        self.facts: dict[str, FileFacts] = {}
        self.moves: list[str] = []
        self.param_of: dict[str, str] = {}
        self.values: set[str] = set()  # functions read as values somewhere: unseen callers
        self.links: list[frozenset[str]] = []  # units that share a threaded function
        self.makers: set[str] = set()  # defs that make a closure needing the scaler
        self.class_paths: dict[str, str] = {}
        self.redefined: set[str] = set()  # defs their scope binds more than once
        self.programs = planner._programs()  # file -> the first file of its program
        for s in planner.summaries.values():
            self.functions.update(s.functions)
            self.redefined |= s.redefined
            self.class_paths.update(dict.fromkeys(s.classes, s.path))
            self.classes.update(
                {k: [self.graph.canonical(b, s.path) for b in v] for k, v in s.classes.items()}
            )
            for site in s.inits:
                decision = site.decision
                if decision.kind == "scaler" and decision.spec is not None:
                    self.holders.setdefault(
                        site.home, Holder(decision.access, decision.spec, set(site.models))
                    )
            self.values.update(self.graph.canonical(name, s.path) for name, _, _ in s.value_refs)
        self.reexports = self._reexports(planner)
        self.values = {self.reexports.get(v, v) for v in self.values}
        # defs and classes a package re-exports, or that some file reaches through another
        # module's import of them: the files that call them that way may not be read at all
        self.reexported: dict[str, str] = {}
        called = {
            self.graph.canonical(c.callee, s.path)
            for s in planner.summaries.values()
            for c in s.calls
        } | self.values
        for alias, target in self.reexports.items():
            home = self.graph.modules.get(alias.rsplit(".", 1)[0])
            summary = planner.summaries.get(home) if home else None
            if summary is not None and (summary.is_package or alias in called):
                self.reexported.setdefault(target, summary.path)
        self.values |= set(self.reexported)
        self.star_read: dict[str, str] = {}  # module -> a file that star-imports and uses it
        for s in planner.summaries.values():
            for module in self._star_imported(s):
                self.star_read.setdefault(module, s.path)
        self.values |= {f"{module}.*" for module in self.star_read}
        for s in planner.summaries.values():
            for call in s.calls:
                if not self._made_by_factories(call):
                    continue
                call.raw = call.raw or call.callee
                call.callee = self.graph.canonical(call.raw, s.path)
                self.callers[call.callee].append(call)

    def _reexports(self, planner: Planner) -> dict[str, str]:
        """`pkg.run_epoch` -> `pkg.engine.run_epoch` where `pkg/__init__.py` imports it from
        `.engine` (followed through a few such hops): the def (or class) behind a name that
        another module imports."""
        direct: dict[str, str] = {}
        for s in planner.summaries.values():
            for ref in s.imports:
                base = absolute_name(ref.module, s.module, s.is_package)
                for name, bound in ref.names:
                    direct[f"{s.module}.{bound}"] = self.graph.canonical(f"{base}.{name}", s.path)
        out = {}
        for alias, target in direct.items():
            for _ in range(4):
                if target in self.functions or target in self.classes or target not in direct:
                    break
                target = direct[target]
            if (target in self.functions or target in self.classes) and target != alias:
                out[alias] = target
        return out

    def _star_imported(self, summary: Summary) -> set[str]:
        """`from engine import *`: the calls it makes to engine's defs are not linked to
        them, so engine's defs have callers the plan does not see (the modules, when the
        file names one of their defs)."""
        out = set()
        for ref in summary.imports:
            if not ref.star:
                continue
            found, _ = self.graph.source_of(ref, summary)
            sources = self._exported_by(found) if found else []
            names = {
                q.rsplit(".", 1)[-1]
                for source in sources
                for q in (*source.functions, *source.classes)
            }
            if names & summary.identifiers:
                out |= {source.module for source in sources}
        return out

    def _exported_by(self, path: str) -> list[Summary]:
        """The module and every module whose names it passes on: its own star imports and
        the modules it imports names from (a package `__init__` re-exporting its engine)."""
        seen: dict[str, Summary] = {}
        queue = [path]
        while queue and len(seen) < 50:
            summary = self.planner.summaries.get(queue.pop())
            if summary is None or summary.path in seen:
                continue
            seen[summary.path] = summary
            for ref in summary.imports:
                if ref.star or ref.names:
                    found, _ = self.graph.source_of(ref, summary)
                    if found and found not in seen:
                        queue.append(found)
        return list(seen.values())

    def _made_by_factories(self, call: Call) -> bool:
        """A method called on a variable some assignments fill from a method of its class
        (`state = TrainingState.load_state(path)`) counts as that class's method only when
        each such method returns an instance of the class; the file learns which do."""
        for raw in call.factories:
            func = self.functions.get(self.graph.canonical(raw, call.path))
            if func is None or not func.factory:
                return False
        if call.factories:
            self.file(call.path).factories |= call.factories
        return True

    def file(self, path: str) -> FileFacts:
        if path not in self.facts:
            module, package = self.graph.name_of(path)
            self.facts[path] = FileFacts(module=module, is_package=package)
        return self.facts[path]

    def note(self, path: str, qualname: str, unit: str, text: str) -> None:
        self.file(path).notes.setdefault(qualname, []).append((unit, text))
        self.moves.append(f"{self.rel(path)}: {text}")

    def rel(self, path: str) -> str:
        return self.graph.relative(path)

    def origin(self, spec: ScalerSpec) -> str:
        path, _, line = spec.origin.rpartition(":")
        return f"{self.rel(path)}:{line}"

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
        self.inference_units: set[str] = set()
        for path, summary in self.planner.summaries.items():
            if summary.inits:
                facts = self.file(path)
                for site in summary.inits:
                    decision = site.decision
                    facts.inits[decision.anchor] = decision
                    if decision.kind == "inference" and decision.spec and decision.spec.autocast:
                        if decision.companion:
                            self._companion_models(decision)
                        else:
                            self.inference_units.add(decision.spec.unit)
                        facts.evaluation[site.home] = (
                            decision.models,
                            decision.spec,
                            decision.autocast_enabled,
                        )
        self._aliases()
        self._helpers_return_scalers()
        self._amp_arguments()
        scaling = self._scaling_optimizers()
        needs = []
        for summary in self.planner.summaries.values():
            for qualname in sorted(summary.needs - scaling):
                needs.append((summary.path, qualname))
        self._evaluation(needs)
        self._thread(needs)
        kept_twins = self._route_twins()
        self._thread(sorted((p, q) for p, qs in kept_twins.items() for q in qs - scaling))
        self._forwards()
        self._clippers()
        self._steppers()
        self._probe_flags()
        plan = RepoPlan(
            self.facts, self.moves, self.planner.summaries, self.graph, self.planner.errors
        )
        plan.links = self.links
        plan.reexports = self.reexports
        return plan

    def _route_twins(self) -> dict[str, set[str]]:
        """A2N119 routes an apex def to its native twin when the whole program can follow:
        every initialize of it migrates (the routing is linked to them), none may leave amp
        off (the twin's scaler is always on), and no amp state is saved (the twin's scaler
        is not the one a checkpoint would hold). The needs of the defs not routed go on to
        the threading, as any other def's. Returns those needs by file."""
        summaries = self.planner.summaries
        if not any(s.twins for s in summaries.values()):
            return {}
        programs = self.programs
        kept: dict[str, set[str]] = {}
        for path, summary in summaries.items():
            for name, twin in summary.twins.items():
                if self._twin_blocked(summary, name):
                    kept.setdefault(path, set()).update(summary.twin_needs.get(name, set()))
                    continue
                unit = f"{path}:{twin.line}"
                self.file(path).routed[name] = (unit, twin)
                program = programs.get(path, path)
                inits = {
                    site.decision.spec.unit
                    for p, s in summaries.items()
                    if programs.get(p, p) == program
                    for site in s.inits
                    if site.decision.spec is not None
                }
                self.links.append(frozenset(inits | {unit}))
        return kept

    def _twin_blocked(self, summary: Summary, name: str) -> bool:
        """The apex def `name` cannot hand its work to its twin: some call of it runs in a
        loop (a GradScaler per call would lose the scale), or a file on a call path to it
        (or its own) has an initialize with options the twin's default scaler cannot keep
        (`enabled=flag`, O0 or a run-time opt level, a static loss scale) or that stays
        apex, or keeps amp state (`amp.state_dict()`, `amp` among saved objects, `_amp_state`): the scaler a
        checkpoint holds would not be the twin's."""
        qualname = f"{summary.module}.{name}" if summary.module else name
        files = {summary.path}
        seen, queue = {qualname}, [qualname]
        while queue:
            for call in self.callers.get(queue.pop(), []):
                if call.callee == qualname and call.looped:
                    return True
                files.add(call.path)
                if call.caller not in seen:
                    seen.add(call.caller)
                    queue.append(call.caller)
        for path in files:
            found = self.planner.summaries.get(path)
            if found is None:
                continue
            if (
                found.optioned_inits
                or self._keeps_amp_state(found)
                or any(site.decision.kind == "problem" for site in found.inits)
            ):
                return True
        return False

    def _probe_flags(self) -> None:
        """How each file spells another module's amp probe flags (`HAS_APEX` imported from
        it, `utils.HAS_APEX` read of the module): A2N118 drops checks of them."""
        summaries = self.planner.summaries
        probes = {path for path, s in summaries.items() if s.amp_probe_flags}
        if not probes:
            return
        for path, summary in summaries.items():
            spelled: set[str] = set()
            for ref in summary.imports:
                found, rest = self.graph.source_of(ref, summary)
                if rest or found == path:
                    continue
                if found in probes and not ref.names and not ref.star:
                    flags = summaries[found].amp_probe_flags
                    spelled |= {f"{ref.spelled()}.{f}" for f in flags}
                    continue
                if found in probes and ref.star and sum(r.star for r in summary.imports) == 1:
                    source = summaries[found]  # read as the names star-imported apex is
                    spelled |= {f for f in source.amp_probe_flags if star_exports(source, f)}
                    continue
                if found in probes:
                    flags = summaries[found].amp_probe_flags
                    spelled |= {bound for name, bound in ref.names if name in flags}
                base = absolute_name(ref.module, summary.module, summary.is_package)
                for name, bound in ref.names:  # `from pkg import utils`, then `utils.HAS_APEX`
                    module, tail = self.graph.module_file(f"{base}.{name}", summary.path)
                    if module in probes and module != found and not tail:
                        spelled |= {f"{bound}.{f}" for f in summaries[module].amp_probe_flags}
            if spelled:
                self.file(path).probe_flags |= spelled

    def _forwards(self) -> None:
        """Defs that scale a loss they are handed (`backward_step(loss, optimizer)`): the
        forward pass that made it runs in their callers, which wrap it in autocast."""
        for qualname, func in self.functions.items():
            if not func.loss_param:
                continue
            calls, overridden = self._calls_through_subclasses(func)
            if not calls:
                continue
            holder = self.holders.get(qualname) or self.class_holder(func.cls)
            unit = holder.spec.unit if holder is not None else ""
            params = list(func.positional)
            if func.cls is not None and params[:1] in (["self"], ["cls"]):
                params = params[1:]  # a bound method: the call does not pass it
            position = params.index(func.loss_param) if func.loss_param in params else -1
            wrapped = False
            for call in calls:
                facts = self.file(call.path)
                if (call.raw, call.caller) in facts.bare_calls:
                    continue  # it never reaches the scaled backward: nothing to wrap
                facts.forwards[call.raw] = (func.loss_param, position, unit)
                wrapped = True
                caller = self.functions.get(call.caller)
                if caller is not None and caller.cls and caller.cls != func.cls:
                    found = self.class_holder(caller.cls)
                    if found is holder and holder is not None:  # a subclass's method
                        facts.inherited.setdefault(caller.cls, (holder.access, holder.spec))
            if wrapped and not overridden:
                self.file(func.path).forwarded.add(qualname)

    def _calls_through_subclasses(self, func: Function) -> tuple[list[Call], bool]:
        """The calls of `func`, a method's included when they name a subclass that inherits
        it (`self.backward_propagate(...)` in a subclass's method), and whether a subclass
        overrides it (its `super().<name>(...)` calls are unseen here)."""
        calls = list(self.callers.get(func.qualname, []))
        if func.cls is None:
            return calls, False
        name = func.qualname.rsplit(".", 1)[-1]
        overridden = False
        for sub in sorted(self.subclasses(func.cls)):
            if f"{sub}.{name}" in self.functions:
                overridden = True
            elif not any(f"{a}.{name}" in self.functions for a in self._between(sub, func.cls)):
                calls += self.callers.get(f"{sub}.{name}", [])
        return calls, overridden

    def _between(self, sub: str, cls: str) -> list[str]:
        """The classes on the way from `sub` up to `cls`, both left out."""
        return [a for a in self.ancestors(sub) if cls in self.ancestors(a)]

    def _clippers(self) -> None:
        """Calls to project functions that read or change gradients (clip them, log their
        norm, add noise), in files with apex sites: a scaler must unscale before them, as
        apex had on leaving `scale_loss`."""
        clipping = self._touching_grads()
        for s in self.planner.summaries.values():
            if not (s.amp_uses or s.uses_apex or s.path in self.facts):
                continue
            for call in s.calls:
                if call.callee in clipping:
                    self.file(s.path).clippers.add(call.raw)
                function = self.functions.get(call.callee)
                if function is not None and function.plain_backward:
                    self.file(s.path).backward_helpers[call.raw] = function.scales

    def _steppers(self) -> None:
        """Calls to project functions that step an optimizer they are handed, in files with
        apex sites: handed the scaled optimizer, they would step past the scaler."""
        for s in self.planner.summaries.values():
            if not (s.amp_uses or s.uses_apex or s.path in self.facts):
                continue
            for call in s.calls:
                func = self.functions.get(call.callee)
                if func is None or not func.steps:
                    continue
                params = func.params
                if func.cls is not None and params[:1] in (["self"], ["cls"]):
                    params = params[1:]  # a bound method: the call does not pass it
                where = self.rel(func.path)
                self.file(s.path).steppers[call.raw] = (tuple(params), func.steps, where)

    def _touching_grads(self) -> set[str]:
        """Project functions that read or change gradients, in their own body or through
        the functions they call: a caller must unscale before any of them."""
        found = {q for q, f in self.functions.items() if f.clips}
        pending = list(found)
        while pending:
            for call in self.callers.get(pending.pop(), ()):
                if call.caller in self.functions and call.caller not in found:
                    if self.functions[call.caller].scales:
                        continue  # it scales its own loss: its reads are its own rules' work
                    found.add(call.caller)
                    pending.append(call.caller)
        return found

    def _companion_models(self, decision: InitDecision) -> None:
        """A companion model travels with the trained one: functions handed either run
        their forward passes under the scaler's switch."""
        for holder in self.holders.values():
            if decision.spec and holder.spec.unit == decision.spec.unit:
                holder.models |= set(decision.models)

    def _aliases(self) -> None:
        """`from base_trainer import amp`: the importing file's `amp` is apex's too, and
        base_trainer keeps exporting it while someone imports it."""
        for path, aliases in self.planner.aliases().items():
            self.file(path).aliases.update(aliases)
            for dotted in aliases:
                found, _ = self.graph.module_file(dotted.rsplit(".", 1)[0], path)
                if found is not None:
                    self.file(found).exports.add(dotted.rsplit(".", 1)[1])

    def _helpers_return_scalers(self) -> None:
        """A helper that initializes and returns the model and optimizer returns the scaler too.

        The caller unpacks it into `scaler`, or into `self.scaler` when the caller is a
        method (so the class's other methods reach it). A caller that itself returns the
        model and optimizer to its own caller passes the scaler on the same way.
        """
        work = list(self.holders)
        done: set[str] = set()
        owned = self._owned_programs()
        programs = self.programs
        while work:
            qualname = work.pop(0)
            holder = self.holders[qualname]
            func = self.functions.get(qualname)
            if qualname in done or func is None or holder.access.startswith("self."):
                continue
            if programs.get(func.path, func.path) in owned:
                continue  # its scaler would reach nothing: a class makes its own
            done.add(qualname)
            if not func.return_tuples or not all(t for t in func.return_tuples):
                continue
            sizes = {len(t) for t in func.return_tuples}
            unpacking = [c for c in self.callers.get(qualname, []) if c.unpacked in sizes]
            if not unpacking or len(sizes) != 1 or len(unpacking) < len(self.callers[qualname]):
                continue  # a caller that keeps the tuple whole would get one more value
            if self._read_as_value(qualname) or qualname in self.redefined:
                continue  # handed on as a value, or defined twice: its callers are not all known
            made_at = self._made_at(qualname, holder)
            if any(line < made_at for line in func.return_lines):
                continue  # a return before the scaler exists could not return it
            unit = holder.spec.unit
            self.file(func.path).returns[qualname] = holder.spec
            self.note(
                func.path,
                qualname,
                unit,
                f"{qualname} returns its scaler ({self.origin(holder.spec)})",
            )
            for call in unpacking:
                spec = translate_up(holder.spec, call, func)
                caller = self.functions.get(call.caller)
                in_method = caller is not None and caller.cls and caller.params[:1] == ["self"]
                access = self._unpack_target(call, caller if in_method else None)
                facts = self.file(call.path)
                facts.helpers[call.raw] = (unit, access)
                facts.unpacks[call.caller] = (access, spec)
                home = caller.cls if in_method else call.caller
                if home not in self.holders:
                    self.holders[home] = Holder(access, spec, set(holder.models))
                    work.append(home)
                self.note(
                    call.path,
                    call.caller,
                    unit,
                    f"{call.caller} unpacks the scaler from {qualname}",
                )

    def _read_as_value(self, qualname: str) -> bool:
        """Some file reads the function as a value, or looks names up in its module
        (`getattr(mod, name)`: `mod.*`): its callers are not all known."""
        last = qualname.rsplit(".", 1)[-1]
        return qualname in self.values or any(
            (v.endswith(".*") and qualname.startswith(v[:-1])) or v in ("*.*", f"*.{last}")
            for v in self.values
        )

    def _unpack_target(self, call: Call, method: Function | None) -> str:
        """Where a caller unpacks a returned scaler: a name (`self.<name>` in a method) its
        file does not use yet, so no value of the caller's own is overwritten."""
        summary = self.planner.summaries.get(call.path)
        taken = set(summary.identifiers) if summary is not None else set()
        if method is not None:
            taken |= self._attributes_near(method.cls)
        name = free_name((*PARAM_NAMES, "amp_grad_scaler"), taken)
        return f"self.{name}" if method is not None else name

    def subclasses(self, cls: str) -> set[str]:
        """The summarised classes that derive from `cls`, at any depth."""
        out: set[str] = set()
        pending = [cls]
        while pending:
            current = pending.pop()
            for other, bases in self.classes.items():
                if current in bases and other not in out and other != cls:
                    out.add(other)
                    pending.append(other)
        return out

    def ancestors(self, cls: str) -> list[str]:
        """The summarised or named base classes of `cls`, at any depth, nearest first."""
        out: list[str] = []
        pending = list(self.classes.get(cls, []))
        while pending:
            current = pending.pop(0)
            if current not in out and current != cls:
                out.append(current)
                pending.extend(self.classes.get(current, []))
        return out

    def _attributes_near(self, cls: str | None, own: bool = True) -> set[str]:
        """Identifiers an attribute new to `cls` could clash with: those of the files of its
        base classes and subclasses (of its own file too, unless `own` is false), and every
        attribute some file sets on an object that is not `self`."""
        taken = {n for s in self.planner.summaries.values() for n in s.outside_writes}
        if cls is None:
            return taken
        related = _related(cls, self.classes)  # a subclass's mixins share its objects too
        paths = {self.class_paths[c] for c in related if c in self.class_paths}
        if own and cls in self.class_paths:
            paths.add(self.class_paths[cls])
        for path in paths:
            summary = self.planner.summaries.get(path)
            if summary is not None:
                taken |= summary.identifiers
        return taken

    def _amp_arguments(self) -> None:
        """`train(model, amp)`: the parameter that receives the amp module receives the
        scaler instead (renamed `scaler`), and passes it on the same way."""
        work = [
            (callee, call, arg)
            for callee, calls in self.callers.items()
            for call in calls
            for arg in call.amp_args
        ]
        done: set[tuple[str, str]] = set()
        while work:
            callee, call, arg = work.pop(0)
            func = self.functions.get(callee)
            source = self.holder_at(call) or self._amp_param_holder(call)
            if func is None or source is None or self._unthreadable(func):
                continue  # an override or a base method would still be handed amp's role
            params = call_params(func)
            param = params[int(arg)] if arg.isdigit() and int(arg) < len(params) else arg
            if param not in params or (callee, param) in done:
                continue
            done.add((callee, param))
            new = self._param_name(callee) if param not in PARAM_NAMES else param
            spec = source.spec
            self.file(func.path).amp_params[callee] = (param, new, spec)
            entries = self.file(call.path).handed.setdefault(call.raw, [])
            if Handed(arg, param, new, spec.unit) not in entries:
                entries.append(Handed(arg, param, new, spec.unit))
            self.holders.setdefault(callee, Holder(new, spec))
            self.note(
                call.path,
                call.caller,
                spec.unit,
                f"{call.caller} hands {callee} the scaler where it handed amp (`{param}`)",
            )
            for inner, calls in self.callers.items():
                for c in calls:
                    if c.caller != callee:
                        continue
                    for i, value in enumerate(c.args):
                        if value == param:
                            work.append((inner, c, str(i)))
                    for key, value in c.keywords.items():
                        if value == param:
                            work.append((inner, c, key))

    def _scaling_optimizers(self) -> set[str]:
        """`attack(model, x, opt=None)` whose `opt` only feeds `amp.scale_loss(loss, opt)`
        (and tests of whether one was given): the callers that pass an optimizer pass their
        scaler instead, the parameter is renamed for it, and the callers that pass none
        still take the plain arm. Returns the defs served so (they need no other scaler)."""
        served: set[str] = set()
        for qualname, func in sorted(self.functions.items()):
            calls = self.callers.get(qualname, [])
            if (
                not func.scaling_optimizers
                or func.cls is not None
                or qualname in self.holders
                or not calls
                or self._unthreadable(func)
                or self._read_as_value(qualname)
            ):
                continue
            [param, *more] = sorted(func.scaling_optimizers)
            if more:
                continue  # two optimizers scaled apart: one scaler cannot stand for both
            name = qualname.rsplit(".", 1)[-1]
            if any(c.starred or c.spelled != name for c in calls):
                continue  # an alias or `*args` call the rewrite would not find or fill
            position = func.params.index(param)
            passing = [
                (call, str(position) if len(call.args) > position else param)
                for call in calls
                if len(call.args) > position or param in call.keywords
            ]
            if not passing or not all(self._steps_after(call, arg) for call, arg in passing):
                continue
            own = {id(call): self.holder_at(call) for call, _ in passing}
            if any(h is None for h in own.values()):
                continue
            specs = {key: h.spec for key, h in own.items() if h is not None}
            spec = next(iter(specs.values()))
            if len({s.unit for s in specs.values()}) > 1 and not self._shared_units(
                spec, [c for c, _ in passing], specs
            ):
                continue
            new = self._param_name(qualname) if param not in PARAM_NAMES else param
            self.file(func.path).amp_params[qualname] = (param, new, spec)
            self.file(func.path).optional_scalers.add(qualname)
            for call, arg in passing:
                unit = specs[id(call)].unit
                value = _passed(call, arg)
                entries = self.file(call.path).handed.setdefault(call.raw, [])
                entries.append(Handed(arg, param, new, unit, replaces=value))
                self.note(
                    call.path,
                    call.caller,
                    unit,
                    f"{call.caller} hands {qualname} its scaler where it handed the optimizer "
                    f"that only scaled the loss (`{param}`)",
                )
            self.holders[qualname] = Holder(new, spec)
            served.add(qualname)
        return served

    def _steps_after(self, call: Call, arg: str) -> bool:
        """The call hands over a plain name that its caller also scales its own loss with:
        the caller's steps of that optimizer go through the scaler, which then unscales
        what the callee's backward left (`None`, an expression or an optimizer the caller
        never scales would not be stepped by a scaler)."""
        value = _passed(call, arg)
        caller = self.functions.get(call.caller)
        return (
            caller is not None
            and re.fullmatch(r"[A-Za-z_]\w*", value) is not None
            and value in caller.scaled_optimizers
        )

    def _amp_param_holder(self, call: Call) -> Holder | None:
        """The scaler of a caller whose own parameter held amp (it holds the scaler now)."""
        return self.holders.get(call.caller) if call.caller in self.holders else None

    def _evaluation(self, needs: list[tuple[str, str]]) -> None:
        """Functions handed an initialized model run their forward passes under autocast.

        Autocast there is switched like the scaler: by the scaler's own `enabled=`
        expression, renamed to the callee's parameters, when the callee has them; else by
        an `amp_enabled` flag the caller passes (`scaler.is_enabled()`). No scaler is passed
        into a function that would only read `is_enabled()`.
        """
        training = {q for _, q in needs} | set(self.holders)
        for qualname, holder in list(self.holders.items()):
            if not holder.models or not holder.spec.autocast:
                continue
            if holder.access.startswith("self."):
                self._evaluate_methods(qualname, holder, training)
            made_at = self._made_at(qualname, holder)
            early = self._runs_before(qualname, made_at)
            script = self._module_summary(qualname)
            if made_at and script is not None:
                self._evaluate_globals(script, holder, training, early)
            for callee, calls in self.callers.items():
                func = self.functions.get(callee)
                if func is None or callee in training:
                    continue  # a training step gets its autocast from its own backward
                handed = []
                for call in calls:
                    if call.caller == qualname:
                        models = holder.models
                    elif self._method_of(call.caller, qualname):
                        # another method of the class: only the instance's own attributes
                        # (`self.model`) name the same object there
                        models = {m for m in holder.models if m.startswith("self.")}
                    else:
                        continue
                    params = call_params(func)
                    got = {
                        params[i]
                        for i, a in enumerate(call.args)
                        if a in models and i < len(params)
                    }
                    got |= {k for k, v in call.keywords.items() if v in models and k in params}
                    got &= func.calls
                    if got:
                        handed.append((call, got))
                if handed and callee in early:
                    # it also runs before `amp.initialize`, where apex had cast nothing and
                    # no scaler exists yet to tell it: it stays as it was
                    self.note(
                        func.path,
                        func.qualname,
                        holder.spec.unit,
                        f"{func.qualname} also runs before amp.initialize in {qualname}: it "
                        "stays fp32 (apex ran its later calls in mixed precision)",
                    )
                    continue
                for call, got in handed:
                    self._evaluate_in(func, call, holder, got)

    def _module_summary(self, qualname: str) -> Summary | None:
        """The summary of the module `qualname` names (None: it names a def or a class)."""
        return next((s for s in self.planner.summaries.values() if s.module == qualname), None)

    def _evaluate_globals(
        self, script: Summary, holder: Holder, training: set[str], early: set[str]
    ) -> None:
        """Functions of a script that run its module-level model outside training: apex
        patched (O1) or cast (O2/O3) that model for every caller, so their forwards run
        under autocast too, unless they also run before `amp.initialize` did."""
        path = script.path
        for func in list(self.functions.values()):
            models = func.globals_called & holder.models
            if func.path != path or func.qualname in training or not models:
                continue
            if func.qualname in early:
                continue
            spec = holder.spec
            switch = f"{holder.access}.is_enabled()" if spec.runtime else None
            facts = self.file(path)
            if func.qualname not in facts.evaluation:
                facts.evaluation[func.qualname] = (tuple(sorted(models)), spec, switch)

    def _runs_before(self, qualname: str, made_at: int) -> set[str]:
        """The functions that can run before line `made_at` of `qualname`: those it calls
        above that line, and everything they call in turn."""
        if not made_at:
            return set()
        if self._callees is None:
            self._callees = {}
            for callee, calls in self.callers.items():
                for call in calls:
                    self._callees.setdefault(call.caller, set()).add(callee)
        callees = self._callees
        todo = [
            callee
            for callee, calls in self.callers.items()
            if any(c.caller == qualname and c.line < made_at for c in calls)
        ]
        seen: set[str] = set()
        while todo:
            func = todo.pop()
            if func not in seen:
                seen.add(func)
                todo.extend(callees.get(func, ()))
        return seen

    def _made_at(self, qualname: str, holder: Holder) -> int:
        """The first line of `qualname` where its scaler exists (0: from its start)."""
        return min(
            (
                site.line
                for summary in self.planner.summaries.values()
                for site in summary.inits
                if site.home == qualname
                and site.decision.spec is not None
                and site.decision.spec.unit == holder.spec.unit
            ),
            default=0,
        )

    def _method_of(self, qualname: str, cls: str) -> bool:
        """`qualname` is a method of `cls` that reaches its instance as `self`."""
        func = self.functions.get(qualname)
        return func is not None and func.cls == cls and func.params[:1] == ["self"]

    def _evaluate_methods(self, cls: str, holder: Holder, training: set[str]) -> None:
        """Methods of the class that holds `self.scaler` and runs `self.model` outside
        training (`evaluate`, `predict`): apex O1 patched them too; the scaler's own
        `is_enabled()` switches their autocast. Only when `__init__` makes the scaler: made
        in a setup method, it may not exist yet when evaluation runs."""
        made = [
            site.decision
            for summary in self.planner.summaries.values()
            for site in summary.inits
            if site.decision.spec is not None and site.decision.spec.unit == holder.spec.unit
        ]
        if not made or any(d.anchor[0] != f"{cls}.__init__" or d.once for d in made):
            return
        for func in self.functions.values():
            if func.qualname in training or not self._method_of(func.qualname, cls):
                continue
            if func.qualname == f"{cls}.__init__":
                continue  # it makes the scaler: a forward there may run before it exists
            models = func.calls & holder.models
            if not models:
                continue
            spec = holder.spec
            switch = f"{holder.access}.is_enabled()" if spec.runtime else None
            facts = self.file(func.path)
            if func.qualname not in facts.evaluation:
                facts.evaluation[func.qualname] = (tuple(sorted(models)), spec, switch)

    def _evaluate_in(self, func: Function, call: Call, holder: Holder, models: set[str]) -> None:
        spec = holder.spec
        facts = self.file(func.path)
        known = facts.evaluation.get(func.qualname)
        if known is not None and known[1].unit != spec.unit:
            if known[1].unit in self.inference_units and spec.runtime:
                # its own inference initialize decides when no caller says otherwise
                flag = self._flag(func, call, holder, default="None")
                switch = f"{flag} if {flag} is not None else {known[2] or True}"
                facts.evaluation[func.qualname] = (
                    tuple(sorted({*known[0], *models})),
                    spec,
                    switch,
                )
            return
        switch: str | None = None
        if spec.runtime:
            switch = rename_expression(spec.enabled or "", call, func)
            if not switch:
                switch = self._flag(func, call, holder)
        previous = known[0] if known is not None else ()
        facts.evaluation[func.qualname] = (tuple(sorted({*previous, *models})), spec, switch)

    def _flag(self, func: Function, call: Call, holder: Holder, default: str | None = None) -> str:
        """An `amp_enabled` parameter that every caller passes as `scaler.is_enabled()`."""
        taken = set(func.params) | func.names
        name = next(n for n in ("amp_enabled", "use_amp", "amp_autocast_enabled") if n not in taken)
        entry = (name, holder.spec.unit, default)
        name = self.file(func.path).flags.setdefault(func.qualname, entry)[0]
        value = f"{holder.access}.is_enabled()"
        self.file(call.path).callees[call.raw] = (name, holder.spec.unit, value)
        self.note(
            call.path,
            call.caller,
            holder.spec.unit,
            f"{call.caller} tells {func.qualname} whether autocast is on (`{name}`)",
        )
        return name

    def _param_name(self, qualname: str) -> str:
        if qualname not in self.param_of:
            func = self.functions[qualname]
            taken = set(func.params) | func.names
            self.param_of[qualname] = free_name((*PARAM_NAMES, "amp_grad_scaler"), taken)
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
                self._unreached(path, qualname)
                continue
            if qualname in self.holders:
                continue
            holder = self.class_holder(func.cls)
            if holder is not None:
                self.file(path).inherited[func.cls] = (holder.access, holder.spec)  # type: ignore[index]
                self.note(
                    path,
                    qualname,
                    holder.spec.unit,
                    f"{func.cls} reaches {holder.access} from its base class "
                    f"({self.origin(holder.spec)})",
                )
                continue
            calls = self.callers.get(qualname, [])
            enclosing = qualname.rpartition(".")[0]
            if not calls and func.cls is None and enclosing in self.functions:
                # a closure handed on as a value (`Engine(update)`): it reads the scaler
                # of the def it is made in, so that def is the one the scaler must reach
                self.makers.add(enclosing)
                queue.append((path, enclosing))
                continue
            if not calls:
                star = self._star_reason(func)
                if self._own_switch(func):
                    continue
                if star:
                    self._refuse(path, qualname, star)
                else:
                    self._unreached(path, qualname)
                continue
            why = self._unthreadable(func) or self._made_before_the_scaler(qualname, calls)
            if why:
                if not self._own_switch(func):
                    self._refuse(path, qualname, why)
                continue
            bare = self._bare_calls(func, calls)
            calls = [c for c in calls if c not in bare]
            spec = None
            own: dict[int, ScalerSpec] = {}  # call -> the scaler its caller holds
            for call in calls:
                source = self.holder_at(call)
                if source is None and call.caller in self.functions:
                    queue.append((call.path, call.caller))
                    spec = spec or self._upstream_spec(call.caller)
                elif source is not None:
                    spec = spec or source.spec
                    own[id(call)] = source.spec
            if spec is None:
                self._unreached(path, qualname)
                continue
            shared = self._shared_units(spec, calls, own)
            name = self._param_name(qualname)
            # a call that never enters the training arm has no say in how the def spells
            # the scaler's switch there (`run_nn(cfg, 'valid', ...)` passes no `apex=`)
            training = [c for c in calls if not self._skips_training(func, c)]
            spec = translate_down(spec, training or calls, func)
            self.file(path).params[qualname] = (name, spec)
            self._flag_to_scaler(path, qualname, name)
            self.holders.setdefault(qualname, Holder(name, spec))
            if bare:
                self.file(path).optional_scalers.add(qualname)
                for call in bare:
                    self.file(call.path).bare_calls.add((call.raw, call.caller))
                where = ", ".join(f"{self.rel(c.path)}:{c.line}" for c in bare)
                self.note(
                    path,
                    qualname,
                    spec.unit,
                    f"calls of {qualname} that never reach its training arm ({where}) pass no "
                    f"scaler: `{name}` defaults to None there",
                )
            for call in calls:
                unit = own[id(call)].unit if shared and id(call) in own else spec.unit
                self.file(call.path).callees[call.raw] = (name, unit, "")
                self.note(
                    call.path,
                    call.caller,
                    spec.unit,
                    f"scaler ({self.origin(spec)}) passed from {call.caller} to {qualname} "
                    f"({self.rel(call.path)}:{call.line})",
                )

    def _own_switch(self, func: Function) -> bool:
        """A method no scaler can be passed to, whose scaled backward runs only under a
        switch its object carries (`if self.use_amp:`, set from a constructor parameter in
        `__init__` and nowhere else), gets a scaler of that object, made right after the
        switch and enabled by it (haystack's maintainers did that)."""
        found = self._switch_owner(func)
        if found is None:
            return False
        owner, switch, name, inits = found
        init = self.functions[f"{owner}.__init__"]
        unit = f"{init.path}:{init.line}"
        param = self._init_switches(owner)[switch]
        enabled = f"self.{switch}"
        if dict(init.defaults).get(param) not in ("True", "False"):
            enabled = f'bool(self.{switch} and self.{switch} != "O0")'  # O0 was fp32
        spec = ScalerSpec(origin=unit, runtime=True, unit=unit, enabled=enabled)
        holder = Holder(f"self.{name}", spec)
        self.holders[owner] = holder
        self.file(init.path).owned[owner] = (switch, holder.access, enabled, unit)
        self.links.append(frozenset({unit, *inits}))
        for cls in sorted({owner, *self.subclasses(owner)}):
            if cls in self.class_paths:
                self.file(self.class_paths[cls]).inherited[cls] = (holder.access, spec)
        self.note(
            func.path,
            func.qualname,
            unit,
            f"{func.cls} scales under its own switch `self.{switch}`: {owner} makes "
            f"{holder.access} in __init__, enabled by that switch, instead of taking the "
            "scaler of the program's amp.initialize (which no longer reaches this object)",
        )
        return True

    def _switch_owner(self, func: Function) -> tuple[str, str, str, set[str]] | None:
        """(the class that sets the switch, the switch, the scaler's attribute, the units of
        the program's initializes) when `func` can scale with a scaler of its own object.
        Every initialize of the program must migrate with it (the units are linked), keep
        default options (they do not reach this scaler) and keep no amp state (a
        checkpoint would hold theirs)."""
        if func.cls is None or self.class_holder(func.cls) is not None:
            return None
        switch = _object_switch(func)
        owner = next(
            (c for c in (func.cls, *self.ancestors(func.cls)) if switch in self._init_switches(c)),
            None,
        )
        if switch is None or owner is None or f"{owner}.__init__" not in self.functions:
            return None
        below = self.subclasses(owner)
        family = {owner, *below, *self.ancestors(owner)}
        if any(
            f.scales and f.cls in family and _object_switch(f) != switch
            for f in self.functions.values()
        ):
            return None  # another scaled backward of the family follows another switch
        summaries = self.planner.summaries
        if any(
            sub in summaries[self.class_paths[sub]].lone_inits
            for sub in below
            if sub in self.class_paths
        ):
            return None  # a subclass's objects would not run the constructor that makes it
        if sum(s.attr_stores.get(switch, 0) for s in summaries.values()) != 1:
            return None  # the switch is set somewhere else too
        if any(s.attr_stores.get("*") for s in summaries.values()):
            return None  # some store may set any attribute, the switch included
        files = self._program_files(func.path)
        if not any(summaries[p].inits for p in files):
            # the initialize is in code the imports do not link (the user's script wires
            # the factory and the trainer): every initialize of the run is a candidate
            files += [p for p, found in summaries.items() if found.inits and p not in files]
        inits = [site for p in files for site in summaries[p].inits]
        if not inits or any(s.decision.kind != "scaler" or not s.decision.spec for s in inits):
            return None
        if any(summaries[p].scaling_inits or self._keeps_amp_state(summaries[p]) for p in files):
            return None
        name = free_name((*PARAM_NAMES, "amp_grad_scaler"), self._attributes_near(owner))
        return owner, switch, name, {s.decision.spec.unit for s in inits}  # type: ignore[union-attr]

    def _program_files(self, path: str) -> list[str]:
        here = self.programs.get(path, path)
        return [p for p in self.planner.summaries if self.programs.get(p, p) == here]

    def _owned_programs(self) -> set[str]:
        """Programs each of whose scaled uses a switch-owned scaler serves: their
        initializes' scalers reach nothing, so no helper returns them."""
        programs = self.programs
        served: dict[str, bool] = {}
        for summary in self.planner.summaries.values():
            for qualname in summary.needs:
                func = self.functions.get(qualname)
                own = (
                    func is not None
                    and func.cls is not None
                    and (not self.callers.get(qualname) or bool(self._unthreadable(func)))
                    and self._switch_owner(func) is not None
                )
                program = programs.get(summary.path, summary.path)
                served[program] = served.get(program, True) and own
        owned = {program for program, own in served.items() if own}
        with_inits = {programs.get(p, p) for p, s in self.planner.summaries.items() if s.inits}
        if owned - with_inits:  # their switch-owned scalers stand for every initialize of the run
            owned |= with_inits - set(served)
        return owned

    def _init_switches(self, cls: str) -> dict[str, str]:
        path = self.class_paths.get(cls)
        summary = self.planner.summaries.get(path) if path else None
        return summary.init_switches.get(cls, {}) if summary else {}

    def _keeps_amp_state(self, summary: Summary) -> bool:
        """The file saves or reads amp's state, or hands the amp module on as a value."""
        states = ("apex.amp.state_dict", "apex.amp.load_state_dict", "apex.amp._amp_state")
        return bool(summary.amp_values) or any(
            n == "apex.amp" or n.startswith(states) for _, n in summary.amp_uses
        )

    def _flag_to_scaler(self, path: str, qualname: str, name: str) -> None:
        """A def handed the model (an `amp_enabled` flag for its autocast) that now takes the
        scaler as well: the scaler says whether autocast is on, and the flag goes (two new
        parameters from two decisions would be one too many)."""
        facts = self.file(path)
        flag = facts.flags.get(qualname)
        known = facts.evaluation.get(qualname)
        if flag is None or known is None or known[2] != flag[0]:
            return
        del facts.flags[qualname]
        facts.evaluation[qualname] = (known[0], known[1], f"{name}.is_enabled()")

    def _bare_calls(self, func: Function, calls: list[Call]) -> list[Call]:
        """Calls that need no scaler: their caller holds none and no call chain brings it
        one, and their literal arguments skip the arm that holds every statement of the
        def that would read the scaler (`run_nn(cfg, 'valid', ...)` of a def that trains
        under `if mode == 'train':`). All or nothing: every call must be one the rewrite
        finds, and some call must pass a scaler."""
        if not func.scaler_guard or func.cls is not None or self._read_as_value(func.qualname):
            return []
        name = func.qualname.rsplit(".", 1)[-1]
        if any(c.starred or c.spelled != name for c in calls):
            return []
        bare = [
            c
            for c in calls
            if self.holder_at(c) is None
            and self._upstream_spec(c.caller) is None
            and self._skips_training(func, c)
        ]
        if not bare or len(bare) == len(calls) or not self._guarded_calls(func):
            return []
        passing = {(c.path, c.caller) for c in calls if c not in bare}
        if any((c.path, c.caller) in passing for c in bare):
            return []  # a caller with both kinds: the rewrite tells calls apart by caller
        return bare

    def _skips_training(self, func: Function, call: Call) -> bool:
        """The call's literal arguments skip the arm of every scaler use of the def."""
        positional = list(func.positional)
        if func.cls is not None and positional[:1] in (["self"], ["cls"]):
            positional = positional[1:]
        keywords = {k: v for k, v in call.keywords.items() if k in func.params}
        bindings = literal_bindings(positional, call.args, keywords, func.rebound, func.defaults)
        return any(arm_skipped(test, taken, bindings) for test, taken in func.scaler_guard)

    def _guarded_calls(self, func: Function) -> bool:
        """Every call of the def into code that needs a scaler or touches gradients sits
        in the guarded arm too (the rewrite passes the scaler there, or unscales first)."""
        start, end = func.guard_span
        summary = self.planner.summaries.get(func.path)
        for call in summary.calls if summary else ():
            callee = self.functions.get(call.callee)
            inside = call.caller.startswith(func.qualname + ".")  # a nested def: runs anywhere
            if callee is None or not (call.caller == func.qualname or inside):
                continue
            if not inside and start <= call.line <= end:
                continue
            summary_of = self.planner.summaries.get(callee.path)
            if (
                callee.scales
                or callee.clips
                or callee.steps
                or (summary_of is not None and callee.qualname in summary_of.needs)
            ):
                return False
        return True

    def _shared_units(
        self, spec: ScalerSpec, calls: list[Call], own: dict[int, ScalerSpec]
    ) -> bool:
        """Callers holding scalers of several units (`train.py` and `finetune.py` sharing
        `engine.train_step`): each passes its own scaler, and the units are linked so that
        they migrate together or stay apex together. Only when the scalers behave alike
        (the same switch, dtype and options): the callee's autocast follows one of them."""
        units = {s.unit for s in own.values()}
        if len(units) < 2 or len(own) < len(calls):
            return False  # one unit, or a caller that reaches a scaler only further up
        alike = {dataclasses.replace(s, unit="", origin="") for s in own.values()}
        if len(alike) != 1:
            return False
        self.links.append(frozenset(units | {spec.unit}))
        return True

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

    def _made_before_the_scaler(self, qualname: str, calls: list[Call]) -> str | None:
        """A closure maker called before the scaler exists in its caller (`update =
        make_update(...)`, then `amp.initialize`): apex ran, the closure scaled later, but the
        scaler cannot be passed at that call."""
        returning = {q for facts in self.facts.values() for q in facts.returns}
        for call in calls:
            holder = self.holders.get(call.caller)
            if holder is None:
                if qualname in self.makers and self._made_elsewhere(call):
                    return (
                        f"`{call.caller.rsplit('.', 1)[-1]}` ({self.rel(call.path)}) makes it "
                        "before another method runs amp.initialize, so the scaler cannot be "
                        "passed at that call"
                    )
                continue
            made = [self._made_at(call.caller, holder)]
            summary = self.planner.summaries.get(call.path)
            helpers = [  # a helper that returns it (`model, opt, scaler = setup(...)`)
                other.line
                for other in (summary.calls if summary else ())
                if other.caller == call.caller and other.callee in returning
            ]
            if helpers and made == [0]:
                made = helpers
            if min(made) > call.line:  # made only after the call, on every path
                caller = call.caller.rsplit(".", 1)[-1]
                return (
                    f"`{caller}` ({self.rel(call.path)}) makes it before amp.initialize runs "
                    "there, so the scaler cannot be passed at that call"
                )
        return None

    def _made_elsewhere(self, call: Call) -> bool:
        """The call is in a constructor while its class's scaler comes from another method
        (`self.update = make_update(...)` in `__init__`, `amp.initialize` in `setup`)."""
        func = self.functions.get(call.caller)
        holder = self.class_holder(func.cls) if func is not None else None
        if holder is None or not call.caller.endswith(".__init__"):
            return False
        return not any(
            site.decision.anchor[0] == call.caller
            for summary in self.planner.summaries.values()
            for site in summary.inits
            if site.decision.spec is not None and site.decision.spec.unit == holder.spec.unit
        )

    def _unthreadable(self, func: Function) -> str | None:
        """Why `func` must not gain a parameter though its callers are known, if it must not."""
        name = func.qualname.rsplit(".", 1)[-1]
        star = self._star_reason(func)
        if star:
            return star
        if func.qualname in self.redefined:
            return (
                f"`{name}` is bound more than once in {self.rel(func.path)} (another def or an "
                "import), and only one of its definitions would take the scaler"
            )
        if func.cls is None:
            summary = self.planner.summaries.get(func.path)
            top = summary is not None and func.qualname.rpartition(".")[0] == summary.module
            public = summary.public if top else set()  # type: ignore[union-attr]
            if public is None or name in public:
                listed = "may be listed" if public is None else "is listed"
                return (
                    f"`{name}` {listed} in `__all__` of {self.rel(func.path)}: it is public "
                    "API, and callers outside this repository would not pass the scaler"
                )
            return None
        below = sorted(self.subclasses(func.cls))
        if below:
            return (
                f"{func.cls} has subclasses ({', '.join(below)}) that may override or inherit "
                f"`{name}`, and calls through them would not pass the scaler"
            )
        above = [a for a in self.ancestors(func.cls) if f"{a}.{name}" in self.functions]
        if above:
            return (
                f"it overrides {above[0]}.{name}, whose callers reach it too and would not "
                "pass the scaler"
            )
        return None

    def _star_reason(self, func: Function) -> str | None:
        """Why some calls of `func` are unseen: a star import or a re-export reaches it."""
        owner = func.cls or func.qualname
        module, _, name = owner.rpartition(".")
        if owner in self.reexported:
            return (
                f"{self.rel(self.reexported[owner])} passes `{name}` on to other modules, "
                "whose calls made that way would not pass the scaler"
            )
        if module not in self.star_read:
            return None
        return (
            f"{self.rel(self.star_read[module])} reads `{name}` through `from ... import *`, "
            "and calls made that way would not pass the scaler"
        )

    def _refuse(self, path: str, qualname: str, why: str) -> None:
        """No scaler is threaded into `qualname`, for the reason given: its apex uses stay,
        and so does the unit whose scaler they need."""
        self.file(path).refusals[qualname] = why
        self._unreached(path, qualname)

    def _unreached(self, path: str, qualname: str) -> None:
        """No call path brings a scaler here. When only one unit could be meant, the site
        is that unit's blocker; otherwise the repository check finds what it breaks."""
        units = {
            site.decision.spec.unit if site.decision.spec else f"{summary.path}:{site.line}"
            for summary in self.planner.summaries.values()
            for site in summary.inits
            if site.decision.kind != "inference"
        }
        if len(units) == 1:
            self.file(path).unreached[qualname] = next(iter(units))


def _object_switch(func: Function) -> str | None:
    """The attribute of `self` whose truth alone picks the arm every `amp.scale_loss` of
    `func` is in (`if self.use_amp:`): the only `self.<name>` among the tests around them."""
    tests = [(code, arm) for code, arm in func.scale_tests if code.startswith("self.")]
    if len(tests) != 1 or not tests[0][1] or not tests[0][0][5:].isidentifier():
        return None
    return tests[0][0][5:]


def _passed(call: Call, arg: str) -> str:
    """The code a call passes at a position ("2") or keyword."""
    return call.args[int(arg)] if arg.isdigit() else call.keywords[arg]


def call_params(func: Function) -> list[str]:
    """The parameters a call's arguments fill: a method's own `self`/`cls` is not one (a
    module-level def's first parameter is, whatever its name)."""
    if func.cls is None:
        return list(func.params)
    return [p for p in func.params if p not in ("self", "cls")]


def translate_up(spec: ScalerSpec, call: Call, func: Function) -> ScalerSpec:
    """The spec as the caller spells it: the helper's `fp16` is the caller's `cfg.fp16`."""
    params = call_params(func)
    mapping = {p: a for p, a in zip(params, call.args)}
    mapping.update({k: v for k, v in call.keywords.items() if k in params})
    return _renamed(spec, mapping)


def translate_down(spec: ScalerSpec, calls: list[Call], func: Function) -> ScalerSpec:
    """The spec as a callee spells it: the caller's `cfg.fp16` is `config.fp16` there when
    every caller passes `cfg` as `config`."""
    params = call_params(func)
    mapping: dict[str, str] | None = None
    for call in calls:
        here = {a: p for p, a in zip(params, call.args)}
        here.update({v: k for k, v in call.keywords.items() if k in params})
        mapping = (
            here if mapping is None else {k: v for k, v in mapping.items() if here.get(k) == v}
        )
    return _renamed(spec, mapping or {})


def rename_expression(code: str, call: Call, func: Function) -> str | None:
    """A caller's expression in the callee's names (`args.fp16` -> `config.fp16` when the
    caller passes `args` as `config`); None when it reads names the callee does not get."""
    if not code:
        return None
    params = call_params(func)
    mapping = {a: p for p, a in zip(params, call.args) if NAME_CHAIN.match(a)}
    mapping.update({v: k for k, v in call.keywords.items() if k in params and NAME_CHAIN.match(v)})
    if not mapping:
        return None
    renamed = _names_pattern(mapping).sub(lambda m: "\0" + mapping[m.group(1)] + "\0", code)
    leftovers = re.sub(r"\0[^\0]*\0", "", renamed)
    leftovers = re.sub(r"(\"[^\"]*\"|'[^']*')", "", leftovers)
    if re.search(
        r"(?<![\w.])[A-Za-z_]\w*", re.sub(r"\b(and|or|not|in|is|None|True|False)\b", "", leftovers)
    ):
        return None
    return renamed.replace("\0", "")


def _names_pattern(mapping: dict[str, str]) -> re.Pattern[str]:
    """Whole names and attribute chains of `mapping` (`args.fp16`, not `xargs.fp16`)."""
    names = "|".join(map(re.escape, sorted(mapping, key=len, reverse=True)))
    return re.compile(r"(?<![\w.])(" + names + r")(?![\w])")


def _renamed(spec: ScalerSpec, mapping: dict[str, str]) -> ScalerSpec:
    """Conditions with expressions renamed (`args.fp16` -> `config.fp16`); the spellings
    as they were stay too, for code that reaches the same names."""
    mapping = {k: v for k, v in mapping.items() if k != v and NAME_CHAIN.match(k)}
    if not mapping:
        return spec
    pattern = _names_pattern(mapping)
    renamed = {pattern.sub(lambda m: mapping[m.group(1)], c) for c in spec.conditions}
    return dataclasses.replace(spec, conditions=tuple(sorted(set(spec.conditions) | renamed)))


def _summarize(args: tuple):
    return summarize(*args)


def _common_root(paths: list[str]) -> Path:
    if not paths:
        return Path.cwd()
    parents = [str(real_path(p).parent) for p in paths]
    return Path(os.path.commonpath(parents))


def _package_base(root: Path) -> Path:
    """The folder above the packages `root` is inside (`root` itself when it is none)."""
    base = root
    while (base / "__init__.py").is_file() and base.parent != base:
        base = base.parent
    return base


def real_path(path: str) -> Path:
    """`Path(path).resolve()`, resolving each folder once: a monorepo has thousands of
    files in hundreds of folders."""
    if os.path.islink(path):
        return Path(path).resolve()
    folder, name = os.path.split(os.path.abspath(path))
    return _real_folder(folder) / name


@cache
def _real_folder(folder: str) -> Path:
    return Path(folder).resolve()


def build_plan(
    files: list[tuple[str, str]],
    pool=None,
    texts: dict[str, str] | None = None,
    module_names: dict[str, tuple[str, bool]] | None = None,
    cache: Cache | None = None,
) -> RepoPlan:
    """Phase 1 over the files of one run (`pool`: a process pool to summarise files in).

    With a cache, a run over the same files with the same texts takes the plan it made
    last time: the plan is a function of the paths, their texts and their module names.
    """
    if cache is None:
        return Planner(files, texts, module_names).build(pool)
    texts = dict(texts or {})
    for path, _ in files:
        if path not in texts:
            texts[path] = _read_or_empty(path)
    digests = [(p, d, _digest(texts[p])) for p, d in files]
    key = cache.key("plan", digests, module_names)
    found = cache.get(key)
    if isinstance(found, RepoPlan):
        found.cache = cache
        return found
    plan = Planner(files, texts, module_names, cache).build(pool)
    plan.cache, plan.key = None, key
    cache.put(key, plan)
    plan.cache = cache
    return plan


def _read_or_empty(path: str) -> str:
    try:
        return read_text(path)
    except OSError:
        return ""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
