"""Runs a migration: plan the repository, rewrite each file, hold back units that fail.

1. plan (`plan.py`): `ast` summaries, migration units, what every file must do;
2. rewrite each candidate file (LibCST, one parse, rules plan edits in transactions);
3. a unit that failed anywhere, or that the repository-wide check (`consistency/`) rejects,
   is held back: the files that touch it are rewritten again with the unit blocked, so it
   stays apex in every file, with TODO markers at its blockers;
4. guards on every changed file (compiles, binds its names, a second run changes nothing).

Nothing is written here: `write_atomic` is for the caller, once it has the outcomes.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from apex2native import guards
from apex2native.apex_imports import APEX_EXTENSIONS
from apex2native.cache import Cache, map_cached
from apex2native.codegen import DEFAULT_LINE_LENGTH, CodeGen
from apex2native.consistency import check_repository
from apex2native.edits import TODO_PREFIX, EditApplier
from apex2native.facts import FileFacts
from apex2native.findings import ApexClasses, FileOutcome, Finding, UnitFacts
from apex2native.options import Options
from apex2native.plan import RepoPlan, build_plan, imported_names, names_read
from apex2native.textio import DecodeError, decode, encode, line_length_for, read_text
from apex2native.textio import write_atomic as _write

# The text pre-filter: a file that contains none of these is never parsed.
MARKERS = ("apex", "cuda.amp", "cpu.amp")
# an import of one of apex's compiled extensions (`import amp_C`) in a file that never names
# apex; found by two quick substrings first (most of them end in `_cuda`), so the files that
# import only a rarer contrib extension are read when they name apex too
EXTENSION_HINTS = ("amp_C", "_cuda")
_EXTENSIONS = "|".join(sorted(APEX_EXTENSIONS))
EXTENSION_IMPORT = re.compile(
    rf"\bimport[ \t]+(?:[\w.]+(?:[ \t]+as[ \t]+\w+)?[ \t]*,[ \t]*)*(?:{_EXTENSIONS})\b"
    rf"|\bfrom[ \t]+(?:{_EXTENSIONS})\b|import_module\(\s*[\"'](?:{_EXTENSIONS})"
)
MAX_ROUNDS = 8  # units held back, then the files that touch them rewritten again


def mentions(text: str) -> bool:
    if any(marker in text for marker in MARKERS):
        return True
    return any(h in text for h in EXTENSION_HINTS) and EXTENSION_IMPORT.search(text) is not None


@dataclass
class FileRewrite:
    """One file's rewrite before the guards: its text, findings and migration units."""

    text: str
    findings: list[Finding]
    units: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    failed: dict[str, tuple[int, str, str, str]] = field(default_factory=dict)
    unit_facts: UnitFacts = field(default_factory=UnitFacts)
    classes: ApexClasses = field(default_factory=ApexClasses)


def single_file_facts(text: str, name: str = "<string>") -> FileFacts:
    """The plan for a text on its own (what `rewrite` decides for a one-file repository)."""
    plan = build_plan([(name, name)], texts={name: text}, module_names={name: ("", False)})
    facts = plan.facts.get(name)
    return facts if facts is not None else FileFacts()


def rewrite_text(
    text: str,
    options: Options,
    line_length: int = DEFAULT_LINE_LENGTH,
    facts: FileFacts | None = None,
) -> tuple[str, list[Finding]]:
    """The rewritten text and the findings; pure, no file system. Raises on a parse error.

    `facts` carries the repo-wide plan's decisions for this file; without it the text is
    planned as a repository of its own.
    """
    if facts is None:
        facts = single_file_facts(text)
    result = rewrite_file_text(text, options, line_length, facts)
    return result.text, result.findings


def rewrite_file_text(
    text: str, options: Options, line_length: int, facts: FileFacts
) -> FileRewrite:
    """Parse once, let every rule plan its edits, settle the units, apply, clean imports."""
    # the rules (and libcst.matchers, a third of start-up) load on the first file that is
    # rewritten: a run the cache answers never needs them
    from apex2native.context import FileContext
    from apex2native.rules import rules_for
    from apex2native.rules.imports import Imports, star_supplies_torch
    from apex2native.rules.initialize import Initialize
    from apex2native.rules.leftovers import Leftovers
    from apex2native.splice import module_code
    from apex2native.unused_scalers import drop_unused_scalers, renote_dropped

    module = cst.parse_module(text)
    gen = CodeGen(None, options.line_length or line_length, options.target_torch, text)
    ctx = FileContext(module, options, gen, facts, text)
    rules = rules_for(options.select, options.ignore)
    for rule in rules:
        rule.apply(ctx)
    for rule in rules:
        rule.finalize(ctx)
    for unit, reason in facts.blocked.items():
        ctx.tx.block(unit, reason)
    for rule in rules:
        rule.settle(ctx)
    for line, marks in facts.marks.items():
        stmt = ctx.index.statement_at(line)
        for code, message in marks:
            ctx.tx.todo(stmt if stmt is not None else module, code, message)
    if ctx.availability and ctx.apex_remains():
        for group in ctx.availability:
            ctx.tx.edits.drop(group)
    edits = ctx.tx.edits.compile()
    if facts.star_reads:
        leftovers = next((r for r in rules if isinstance(r, Leftovers)), None)
        if leftovers is not None and leftovers.mark_star_read_imports(ctx, edits.touched()):
            edits = ctx.tx.edits.compile()
    only_markers = edits.only_todos()  # no rule changes the code: its imports stay as they are
    if not edits:  # nor marks anything: apex imports it keeps would pass `--check` unseen
        leftovers = next((r for r in rules if isinstance(r, Leftovers)), None)
        if leftovers is not None:
            leftovers.mark_kept_imports(ctx)
            edits = ctx.tx.edits.compile()
    result = FileRewrite(
        text,
        ctx.tx.findings(),
        ctx.tx.units(),
        ctx.tx.touched_units(),
        {u: (b.line, b.code, b.message, b.scope) for u, b in ctx.tx.failed.items()},
        ctx.surviving_unit_facts(),
        ctx.classes,
    )
    if not edits:
        return result
    new = ctx.module.visit(EditApplier(edits, ctx.index.paths_to(edits.touched())))
    initialize = next((r for r in rules if isinstance(r, Initialize)), None)
    if initialize is not None:
        new, dropped = drop_unused_scalers(new, initialize.created)
        result.findings = renote_dropped(result.findings, dropped)
    if not only_markers:  # a file no rule changes keeps its imports (and their flags)
        cleanup = any(isinstance(r, Imports) for r in rules)
        needs_torch = ctx.needs_torch and not star_supplies_torch(ctx.module)
        new = Imports().cleanup(
            new,
            needs_torch,
            remove_unused=cleanup,
            keep=facts.exports | facts.star_reads,
            facts=facts,
            defined=ctx.defined,
        )
    result.text = module_code(ctx.index, text, new)
    return result


def process_file(
    path: str, options: Options, display: str | None = None, facts: FileFacts | None = None
) -> FileOutcome:
    """Rewrite one file in memory and check the result; never writes."""
    name = display or path
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileOutcome(name, "failed", error=f"cannot read: {exc.strerror or exc}")
    try:
        text, encoding, bom = decode(data)
    except DecodeError as exc:
        return FileOutcome(name, "failed", error=str(exc))
    outcome = FileOutcome(name, "skipped", old_text=text, encoding=encoding, bom=bom)
    facts = facts if facts is not None else FileFacts()
    if not mentions(text) and not facts:
        return outcome
    length = line_length_for(str(Path(path).resolve().parent))
    options = options.for_file(path)
    try:
        result = rewrite_file_text(text, options, length, facts)
    except cst.ParserSyntaxError as exc:
        outcome.status, outcome.error = "failed", _parse_error(text, exc)
        return outcome
    except Exception as exc:  # a rule bug must not lose the other files
        outcome.status, outcome.error = "failed", f"internal error ({type(exc).__name__}: {exc})"
        return outcome
    outcome.findings = result.findings
    outcome.units, outcome.touched = result.units, result.touched
    outcome.failed_units = result.failed
    outcome.unit_facts = result.unit_facts
    outcome.classes = result.classes
    outcome.held_back = {u: r for u, r in facts.blocked.items() if u in result.touched}
    new = result.text
    if new == text:
        outcome.status = "unchanged"
        return outcome

    again_facts = dataclasses.replace(facts, marks={})  # its markers are in the text now
    reruns: dict[str, FileRewrite] = {}

    def rewrite_again(again: str) -> FileRewrite:
        if again not in reruns:
            reruns[again] = rewrite_file_text(again, options, length, again_facts)
        return reruns[again]

    def rerun(again: str) -> tuple[str, set[str]]:
        unbound = guards.unbound_names(again)
        if not mentions(again) and not facts:
            return again, unbound
        return rewrite_again(again).text, unbound

    try:
        if mentions(new) or facts:
            try:
                second = rewrite_again(new)
            except cst.ParserSyntaxError:
                second = None
            if second is not None and _only_markers_added(new, second.text):
                # a marker the edits made due (an import kept for a flag others read): the
                # second run would add it, so this one does
                outcome.findings += _moved_findings(text, new, second.findings, outcome.findings)
                new = second.text
        problem = guards.check(new, guards.unbound_names(text), rerun)
    except Exception as exc:  # the second pass is a rule run too: a bug there loses one file
        outcome.status, outcome.error = "failed", f"internal error ({type(exc).__name__}: {exc})"
        outcome.findings = [f for f in outcome.findings if f.todo]
        return outcome
    if problem:
        outcome.status, outcome.error = "failed", f"guard refused the rewrite: {problem}"
        outcome.findings = [f for f in outcome.findings if f.todo]
        return outcome
    outcome.status, outcome.new_text = "changed", new
    return outcome


def _only_markers_added(new: str, again: str) -> bool:
    """`again` is `new` with TODO comment lines added, and nothing else."""
    if again == new:
        return False
    a, b = new.splitlines(), again.splitlines()
    for tag, _i1, _i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag != "insert" or not all(line.lstrip().startswith(TODO_PREFIX) for line in b[j1:j2]):
            return False
    return True


def _moved_findings(
    text: str, new: str, findings: list[Finding], known: list[Finding]
) -> list[Finding]:
    """The TODO findings of a run over `new` that `known` lacks, at the lines of `text`
    they stand on (`new`'s lines mapped back through the unchanged ones)."""
    back: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(None, text.splitlines(), new.splitlines(), autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            back[block.b + k + 1] = block.a + k + 1
    seen = {(f.code, f.message) for f in known if f.todo}
    out = []
    for finding in findings:
        if not finding.todo or (finding.code, finding.message) in seen:
            continue
        line = max((back[n] for n in back if n <= finding.line), default=1)
        out.append(dataclasses.replace(finding, line=back.get(finding.line, line)))
    return out


def _parse_error(text: str, exc: cst.ParserSyntaxError) -> str:
    """A syntax error, or valid Python that LibCST's parser does not accept."""
    try:
        compile(text, "<file>", "exec", dont_inherit=True)
    except SyntaxError:
        return f"syntax error at line {exc.raw_line}: {exc.message}"
    except (ValueError, RecursionError, MemoryError):
        pass
    return (
        f"valid Python that LibCST's parser cannot read (line {exc.raw_line}: {exc.message}); "
        "left as it is"
    )


def write_atomic(path: str, outcome: FileOutcome) -> None:
    """Write a changed file: temp file in the same folder, same mode, renamed over it."""
    _write(path, outcome.new_text or "", outcome.encoding, outcome.bom)


def _work(args: tuple[str, str, Options, FileFacts]) -> FileOutcome:
    path, display, options, facts = args
    return process_file(path, options, display, facts)


LEFT_OUT = "left out of the run (--include/--exclude), but the migration would change it"


class _Run:
    """One migration over a set of files: rewrite, hold back failed units, repeat."""

    def __init__(
        self, files, options: Options, pool, plan: RepoPlan, progress, frozen: set[str]
    ) -> None:
        self.files = files
        self.frozen = frozen  # read, never written: a change they need holds units back
        self.cache = plan.cache
        self.options = options
        self.pool = pool
        self.plan = plan
        self.progress = progress
        self.blocked: dict[str, str] = dict(plan.held)
        self.marks: dict[str, dict[int, list[tuple[str, str]]]] = {}
        self.kept: dict[str, dict[str, str]] = {}  # program -> apex class -> why it stays
        self.kept_in_run: dict[str, str] = {}  # apex class -> why it stays in every module

    def facts(self, path: str) -> FileFacts:
        facts = self.plan.for_path(path)
        if facts is None:
            facts = FileFacts(*_module_of(self.plan, path))
        facts.blocked = dict(self.blocked)
        facts.marks = self.marks.get(path, {})
        facts.kept_classes = facts.kept_classes | self.kept.get(self.plan.program_of(path), {})
        facts.kept_in_run = dict(self.kept_in_run)
        return facts

    def rewrite(self, jobs: list[tuple[str, str]]) -> list[FileOutcome]:
        args = [(p, d, self.options, self.facts(p)) for p, d in jobs]
        keys = [self._key(*a) for a in args]
        outcomes = map_cached(self.cache, _work, args, keys, self.pool, chunksize=2, pool_from=4)
        return [
            (
                dataclasses.replace(outcome, status="failed", new_text=None, error=LEFT_OUT)
                if path in self.frozen and outcome.status == "changed"
                else outcome
            )
            for (path, _), outcome in zip(jobs, outcomes)
        ]

    def _key(self, path: str, display: str, options: Options, facts: FileFacts) -> str | None:
        """What a file's outcome depends on: its bytes, the facts, options and line length."""
        if self.cache is None:
            return None
        try:
            data = Path(path).read_bytes()
        except OSError:
            return None  # the error outcome is made afresh
        folder = str(Path(path).resolve().parent)
        inputs = (path, display, data, options.for_file(path), line_length_for(folder), facts)
        return self.cache.key("rewrite", inputs)

    def run(self) -> list[FileOutcome]:
        outcomes: dict[str, FileOutcome] = {}
        candidates: list[tuple[str, str]] = []
        for path, display in self.files:
            try:
                head = Path(path).read_bytes()
            except OSError as exc:
                outcomes[path] = FileOutcome(
                    display, "failed", error=f"cannot read: {exc.strerror or exc}"
                )
                continue
            if not mentions(head.decode("latin-1")) and not self.plan.for_path(path):
                outcomes[path] = FileOutcome(display, "skipped")
                if self.progress and path not in self.frozen:
                    self.progress(1)
                continue
            candidates.append((path, display))
        for (path, _), outcome in zip(candidates, self.rewrite(candidates)):
            outcomes[path] = outcome
            if self.progress and path not in self.frozen:
                self.progress(1)
        settled = False
        for _ in range(MAX_ROUNDS):
            fresh = self._new_blocks(outcomes)
            kept = self._newly_kept(outcomes)
            if not fresh and not kept:
                settled = True
                break
            again = [
                (p, d)
                for p, d in candidates
                if (outcomes[p].touched & set(fresh)) - set(outcomes[p].failed_units)
                or p in self.marks
                or p in kept
            ]
            for (path, _), outcome in zip(again, self.rewrite(again)):
                outcomes[path] = outcome
        if self._settle_exports(outcomes, dict(candidates)) or not settled:
            self._final_check(outcomes)
        for outcome in outcomes.values():
            outcome.held_back = {
                self.plan.unit_label(u): why for u, why in outcome.held_back.items()
            }
        return [o for p, o in outcomes.items() if p not in self.frozen]

    def _newly_kept(self, outcomes: dict[str, FileOutcome]) -> set[str]:
        """Files that moved an apex class to torch while another file of the same program
        keeps it (a refused call): from now on the program keeps it everywhere, and those
        files are rewritten again (returned)."""
        fresh: dict[str, dict[str, str]] = {}
        for path, outcome in sorted(outcomes.items(), key=lambda item: item[1].path):
            program = self.plan.program_of(path)
            facts = self.plan.for_path(path)
            known = {**(facts.kept_classes if facts else {}), **self.kept.get(program, {})}
            for name, why in sorted(outcome.classes.kept.items()):
                if name not in known:
                    fresh.setdefault(program, {}).setdefault(
                        name, f"{self.plan.relative(path)} keeps it ({why})"
                    )
        in_run: dict[str, str] = {}
        for path, outcome in sorted(outcomes.items(), key=lambda item: item[1].path):
            for name, why in sorted(outcome.classes.kept_in_run.items()):
                if name not in self.kept_in_run:
                    in_run.setdefault(name, f"{self.plan.relative(path)} keeps it ({why})")
        again = set()
        for path, outcome in outcomes.items():
            kept = fresh.get(self.plan.program_of(path), {})
            if outcome.classes.moved & (set(kept) | set(in_run)):
                again.add(path)
        for program, kept in fresh.items():
            self.kept.setdefault(program, {}).update(kept)
        self.kept_in_run.update(in_run)
        return again

    def _final_check(self, outcomes: dict[str, FileOutcome]) -> None:
        """The texts after the last rewrite pass the repository check, or the files of the
        units that still fail it are not written: nothing unchecked reaches the disk."""
        fresh = self._new_blocks(outcomes)
        for outcome in outcomes.values():
            if outcome.status == "changed" and outcome.touched & set(fresh):
                outcome.status = "failed"
                outcome.error = "not written: the repository check did not settle on its units"
                outcome.new_text = None

    def _settle_exports(self, outcomes: dict[str, FileOutcome], displays: dict[str, str]) -> bool:
        """A module stops re-exporting apex names once no other module imports them, and
        stops keeping what others imported from it (a flag, a probe) once none does.

        True when a file was rewritten for it (the repository check must run again)."""
        rewrote = False
        for _ in range(MAX_ROUNDS):
            again = []
            read_now = self._read_now(outcomes)
            imported_from = self._imported_from(outcomes)
            for path, facts in self.plan.facts.items():
                settles_imports = bool(facts.imported) and (
                    "*" not in facts.imported or facts.star_only
                )
                if path not in displays:
                    continue
                if facts.star_reads and self.plan.graph is not None:
                    now = self._star_read_now(path, outcomes, imported_from)
                    star_reads = facts.star_reads & now
                    if star_reads != facts.star_reads:
                        facts.star_reads = star_reads
                        again.append((path, displays[path]))
                        continue
                if not (facts.exports or settles_imports):
                    continue
                still = facts.exports & imported_from.get(path, set())
                imported = facts.imported
                if settles_imports and self.plan.graph is not None:
                    imported = facts.imported & read_now.get(path, set())
                if still != facts.exports or imported != facts.imported:
                    facts.exports = still
                    facts.imported = imported
                    again.append((path, displays[path]))
            if not again:
                return rewrote
            rewrote = True
            for (path, _), outcome in zip(again, self.rewrite(again)):
                outcomes[path] = outcome
        return rewrote

    def _star_read_now(
        self, path: str, outcomes: dict[str, FileOutcome], imported_from: dict[str, set[str]]
    ) -> set[str]:
        """Names the files that star-import `path` (through chains of star imports too)
        read, or pass on to the modules that import them, as their texts stand now: a
        reader the rules migrated no longer reads `amp`, and the module need not keep it
        for them."""
        facts = self.plan.facts[path]
        out: set[str] = set()
        for reader in facts.star_readers:
            out |= names_read(_text_now(reader, outcomes)) | imported_from.get(reader, set())
        if "*" in out:  # a reader that does not parse, or a module read whole
            return set(facts.star_reads)
        return out

    def _read_now(self, outcomes: dict[str, FileOutcome]) -> dict[str, set[str]]:
        """What each file's names other files import or read, as their texts stand now."""
        if self.plan.graph is None:
            return {}
        summaries = []
        for path, old in self.plan.summaries.items():
            outcome = outcomes.get(path)
            if outcome is not None and outcome.status == "changed" and outcome.new_text:
                old = self.plan.summary_of(path, outcome.new_text) or old
            summaries.append(old)
        return imported_names(self.plan.graph, summaries, self.plan.facts)

    def _imported_from(self, outcomes: dict[str, FileOutcome]) -> dict[str, set[str]]:
        """Per file, the names other files import from it, as their texts stand now."""
        graph = self.plan.graph
        names: dict[str, set[str]] = {}
        if graph is None:
            return names
        for path, old in self.plan.summaries.items():
            summary = old
            outcome = outcomes.get(path)
            if outcome is not None and outcome.status == "changed" and outcome.new_text:
                summary = self.plan.summary_of(path, outcome.new_text)
            for ref in summary.imports if summary else ():
                found, rest = graph.source_of(ref, summary)
                if found is None or found == path or rest:
                    continue
                into = names.setdefault(found, set())
                into.update(name for name, _ in ref.names)
                if not ref.names:  # `import common`, then `common.amp.scale_loss(...)`
                    into |= _attributes_read(ref, _text_now(path, outcomes))
        return names

    def _violations(self, outcomes: dict[str, FileOutcome]) -> list:
        """The repository check; cached by the plan's inputs and every file's outcome."""
        key = None
        if self.cache is not None and self.plan.key is not None:
            state = sorted(outcomes.items(), key=lambda item: item[0])
            key = self.cache.key("check", self.plan.key, state, self.blocked)
        [found] = map_cached(
            self.cache,
            lambda _: check_repository(self.plan, outcomes, self.blocked),
            [None],
            [key],
        )
        return found

    def _new_blocks(self, outcomes: dict[str, FileOutcome]) -> dict[str, str]:
        """Units that failed somewhere or break the repository check, not yet held back."""
        fresh: dict[str, str] = {}
        self._failed_units(outcomes, fresh)
        if not fresh:
            refused = False
            for violation in self._violations(outcomes):
                if not violation.unit:
                    refused = _refuse_file(outcomes, violation) or refused
                    continue
                if violation.unit in self.blocked or violation.unit in fresh:
                    continue
                where = self.plan.relative(violation.path) if violation.path else "the repository"
                fresh[violation.unit] = violation.reason(where)
                if violation.path is not None:
                    marks = self.marks.setdefault(violation.path, {})
                    marks.setdefault(violation.line, []).append((violation.code, violation.message))
            if refused:  # the units of a file that is not written stay apex everywhere
                self._failed_units(outcomes, fresh)
        self._linked(fresh)
        self.blocked.update(fresh)
        return fresh

    def _linked(self, fresh: dict[str, str]) -> None:
        """Units linked to a held-back one (they share a function that takes the scaler)
        are held back with it: the function keeps one signature."""
        changed = True
        while changed:
            changed = False
            for link in self.plan.links:
                held = sorted(u for u in link if u in fresh or u in self.blocked)
                if not held:
                    continue
                where = self.plan.relative(held[0].rpartition(":")[0])
                for unit in sorted(link - set(fresh) - set(self.blocked)):
                    fresh[unit] = (
                        f"it shares the function that takes the scaler with the unit of {where}, "
                        "which is held back"
                    )
                    changed = True

    def _failed_units(self, outcomes: dict[str, FileOutcome], fresh: dict[str, str]) -> None:
        """Units of files that could not be rewritten, and units a file could not migrate."""
        for path, outcome in outcomes.items():
            if outcome.status == "failed" and outcome.error:
                facts = self.plan.for_path(path)
                for unit in sorted(facts.units() if facts is not None else ()):
                    if unit not in self.blocked and unit not in fresh:
                        why = (
                            "which the run leaves out"
                            if path in self.frozen
                            else ("which could not be rewritten")
                        )
                        fresh[unit] = f"its unit is held back by {self.plan.relative(path)}, {why}"
            for unit, (_, code, message, scope) in outcome.failed_units.items():
                if unit not in self.blocked and unit not in fresh:
                    where = self.plan.relative(path) + (f", {scope}" if scope else "")
                    fresh[unit] = f"its unit is held back by {where} ({code} {message})"


def _text_now(path: str, outcomes: dict[str, FileOutcome]) -> str:
    outcome = outcomes.get(path)
    if outcome is not None and outcome.status == "changed" and outcome.new_text:
        return outcome.new_text
    if outcome is not None and outcome.old_text is not None:
        return outcome.old_text
    try:
        return read_text(path)
    except OSError:
        return ""


def _attributes_read(ref, text: str) -> set[str]:
    """Names a file reads from a module it imports whole: `common.amp` after `import
    common`, `c.amp` after `import a.b as c`."""
    pattern = r"(?<![\w.])" + re.escape(ref.spelled()) + r"\.(\w+)"
    return set(re.findall(pattern, text))


def _refuse_file(outcomes: dict[str, FileOutcome], violation) -> bool:
    """A change no unit owns breaks another file: that change is not written."""
    outcome = outcomes.get(violation.culprit or "")
    if outcome is not None and outcome.status == "changed":
        outcome.status = "failed"
        outcome.error = f"not written: {violation.message}"
        outcome.new_text = None
        return True
    return False


def _module_of(plan: RepoPlan, path: str) -> tuple[str, bool]:
    if plan.graph is not None:
        return plan.graph.name_of(path)
    return Path(path).stem, False


def run(
    files: Iterable[tuple[str, str]],
    options: Options,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    plan: RepoPlan | None = None,
    cache: Cache | None = None,
    left_out: Iterable[tuple[str, str]] = (),
) -> list[FileOutcome]:
    """Process (path, display name) pairs; outcomes come back sorted by display name.

    `cache`: results of earlier runs to take where the inputs are the same. `left_out`:
    files of the project the run must not write (`--exclude`); they are read, and a unit
    that would have to change one of them is held back.
    """
    frozen = [pair for pair in left_out if pair not in set(files)]
    files = list(files) + frozen
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        if plan is None:
            plan = build_plan(files, pool, cache=cache)
        if plan.name_tested:
            options = dataclasses.replace(
                options, name_tested=options.name_tested | plan.name_tested
            )
        pins = plan.pinned_amp_names
        if pins:
            options = dataclasses.replace(options, pinned_amp_names=options.pinned_amp_names | pins)
        local = _local_extensions(path for path, _ in files)
        if local:
            options = dataclasses.replace(options, local_extensions=local)

        outcomes = _Run(files, options, pool, plan, progress, {p for p, _ in frozen}).run()
    finally:
        if pool is not None:
            pool.shutdown()
    return sorted(outcomes, key=lambda o: o.path)


def _local_extensions(paths: Iterable[str]) -> frozenset[str]:
    """apex extension names the project uses for modules of its own (a `fast_layer_norm.py`,
    a `focal_loss_cuda/` package): imports of those are the project's, not apex's."""
    resolved = [os.path.abspath(p) for p in paths]  # names only: no need to follow links
    if not resolved:
        return frozenset()
    root = os.path.commonpath([os.path.dirname(p) for p in resolved])
    names: set[str] = set()
    for path in resolved:
        parts = Path(os.path.relpath(path, root)).parts  # folders above the run are not ours
        names.update(parts[:-1])
        names.add(Path(parts[-1]).stem)
    return frozenset(names & APEX_EXTENSIONS)


__all__ = [
    "Finding",
    "FileOutcome",
    "decode",
    "encode",
    "process_file",
    "rewrite_text",
    "run",
    "write_atomic",
]
