"""Runs the rules on each file: decode, one parse, plan, apply, guard, and (maybe) write."""

from __future__ import annotations

import os
import tempfile
import tokenize
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path

import libcst as cst

from apex2native import guards
from apex2native.codegen import DEFAULT_LINE_LENGTH, CodeGen, detect_quote
from apex2native.context import FileContext
from apex2native.edits import EditApplier
from apex2native.facts import FileFacts
from apex2native.findings import FileOutcome, Finding
from apex2native.options import Options
from apex2native.plan import RepoPlan, build_plan
from apex2native.rules import rules_for
from apex2native.rules.imports import Imports

BOM = b"\xef\xbb\xbf"
# The text pre-filter: a file that contains none of these is never parsed.
MARKERS = ("apex", "cuda.amp", "cpu.amp")


def mentions(text: str) -> bool:
    return any(marker in text for marker in MARKERS)


class DecodeError(Exception):
    """The bytes of a file are not text in the encoding it declares."""


def decode(data: bytes) -> tuple[str, str, bool]:
    """Text, encoding and whether a UTF-8 BOM leads the file."""
    bom = data.startswith(BOM)
    try:
        encoding, _ = tokenize.detect_encoding(iter(data.splitlines(keepends=True)).__next__)
    except SyntaxError as exc:
        raise DecodeError(f"cannot decode: {exc}") from exc
    if encoding == "utf-8-sig":
        encoding = "utf-8"
    body = data[len(BOM) :] if bom else data
    try:
        return body.decode(encoding), encoding, bom
    except (UnicodeDecodeError, LookupError) as exc:
        raise DecodeError(f"cannot decode as {encoding}: {exc.__class__.__name__}") from exc


def encode(text: str, encoding: str, bom: bool) -> bytes:
    return (BOM if bom else b"") + text.encode(encoding)


def rewrite_text(
    text: str,
    options: Options,
    line_length: int = DEFAULT_LINE_LENGTH,
    facts: FileFacts | None = None,
):
    """The rewritten text and the findings; pure, no file system. Raises on a parse error.

    `facts` carries the repo-wide plan's decisions for this file (phase 1).
    """
    new, findings, _ = _rewrite(text, options, line_length, facts)
    return new, findings


def _rewrite(text: str, options: Options, line_length: int, facts: FileFacts | None):
    """Like rewrite_text, also returning the file context (whose metadata the guards reuse)."""
    module = cst.parse_module(text)
    gen = CodeGen(detect_quote(text), options.line_length or line_length)
    ctx = FileContext(module, options, gen, facts, text)
    rules = rules_for(options.select, options.ignore)
    for rule in rules:
        rule.apply(ctx)
    for rule in rules:
        rule.finalize(ctx)
    edits = ctx.edits.compile()
    findings = ctx.findings()
    if not edits:
        return text, findings, ctx
    new = ctx.module.visit(EditApplier(edits, ctx.index.paths_to(edits.touched())))
    cleanup = any(isinstance(r, Imports) for r in rules)
    new = Imports().cleanup(new, ctx.needs_torch, remove_unused=cleanup)
    return new.code, findings, ctx


@cache
def line_length_for(folder: str) -> int:
    """`[tool.black] line-length` of the nearest pyproject.toml above `folder`."""
    path = Path(folder)
    for candidate in (path, *path.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                return DEFAULT_LINE_LENGTH
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return DEFAULT_LINE_LENGTH
            value = data.get("tool", {}).get("black", {}).get("line-length")
            return int(value) if isinstance(value, int) else DEFAULT_LINE_LENGTH
    return DEFAULT_LINE_LENGTH


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
    if not mentions(text) and not facts:
        return outcome
    length = line_length_for(str(Path(path).resolve().parent))
    try:
        new, findings, ctx = _rewrite(text, options, length, facts)
    except cst.ParserSyntaxError as exc:
        outcome.status, outcome.error = (
            "failed",
            f"syntax error at line {exc.raw_line}: {exc.message}",
        )
        return outcome
    except Exception as exc:  # a rule bug must not lose the other files
        outcome.status, outcome.error = "failed", f"internal error ({type(exc).__name__}: {exc})"
        return outcome
    outcome.findings = findings
    if new == text:
        outcome.status = "unchanged"
        return outcome

    def rerun(again: str) -> tuple[str, set[str]]:
        unbound = guards.unbound_names(again)
        if not mentions(again) and not facts:
            return again, unbound
        result, _, _ = _rewrite(again, options, length, facts)
        return result, unbound

    problem = guards.check(new, guards.unbound_names(text), rerun)
    if problem:
        outcome.status, outcome.error = "failed", f"guard refused the rewrite: {problem}"
        outcome.findings = [f for f in findings if f.todo]
        return outcome
    outcome.status, outcome.new_text = "changed", new
    return outcome


def write_atomic(path: str, outcome: FileOutcome) -> None:
    """Temp file in the same folder, same mode, then rename over the original."""
    target = Path(path)
    mode = target.stat().st_mode
    data = encode(outcome.new_text or "", outcome.encoding, outcome.bom)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".a2n")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _work(args: tuple[str, str, Options, FileFacts | None]) -> FileOutcome:
    path, display, options, facts = args
    return process_file(path, options, display, facts)


def run(
    files: Iterable[tuple[str, str]],
    options: Options,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    plan: RepoPlan | None = None,
) -> list[FileOutcome]:
    """Process (path, display name) pairs; outcomes come back sorted by display name.

    Files that never mention apex are settled here without a worker; only candidates go
    to the process pool.
    """
    files = list(files)
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        if plan is None:
            plan = build_plan(files, options, pool)
        outcomes: list[FileOutcome] = []
        candidates: list[tuple[str, str, Options, FileFacts | None]] = []
        for path, display in files:
            facts = plan.for_path(path)
            try:
                head = Path(path).read_bytes()
            except OSError as exc:
                outcomes.append(
                    FileOutcome(display, "failed", error=f"cannot read: {exc.strerror or exc}")
                )
                continue
            if not mentions(head.decode("latin-1")) and not facts:
                outcomes.append(FileOutcome(display, "skipped"))
                if progress:
                    progress(1)
                continue
            candidates.append((path, display, options, facts))
        results = (
            pool.map(_work, candidates, chunksize=2)
            if pool and len(candidates) > 4
            else map(_work, candidates)
        )
        for outcome in results:
            outcomes.append(outcome)
            if progress:
                progress(1)
    finally:
        if pool is not None:
            pool.shutdown()
    return sorted(outcomes, key=lambda o: o.path)


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
