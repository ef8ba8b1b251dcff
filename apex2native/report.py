"""What a run did, for people (summary line, TODO lines) and machines (JSON, Markdown)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from apex2native import annotations
from apex2native.findings import FileOutcome

OUTPUT_FORMATS = ("text", "json", "github")


def counts(outcomes: list[FileOutcome]) -> Counter:
    c: Counter = Counter(o.status for o in outcomes)
    c["scanned"] = len(outcomes)
    c["todos"] = sum(len(o.todos) for o in outcomes)
    return c


def by_code(outcomes: list[FileOutcome]) -> Counter:
    return Counter(f.code for o in outcomes for f in o.findings)


def summary(outcomes: list[FileOutcome], dry_run: bool) -> str:
    """One line: files scanned, changed, unchanged, skipped, failed, TODOs left, by rule code."""
    c = counts(outcomes)
    verb = "would change" if dry_run else "changed"
    codes = by_code(outcomes)
    per_code = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
    line = (
        f"apex2native: {c['scanned']} files scanned, {c['changed']} {verb}, "
        f"{c['unchanged']} unchanged, {c['skipped']} skipped, {c['failed']} failed, "
        f"{c['todos']} TODOs left"
    )
    return line + (f" ({per_code})" if per_code else "")


def todo_lines(outcomes: list[FileOutcome]) -> list[str]:
    return [f"{o.path}:{f.line}: {f.code} {f.message}" for o in outcomes for f in o.todos]


def held_back_lines(outcomes: list[FileOutcome]) -> list[str]:
    """Files that keep apex code because a unit they share failed elsewhere, and why."""
    return [
        f"{o.path}: held back: migration unit {unit} stays apex: {why}"
        for o in outcomes
        for unit, why in sorted(o.held_back.items())
    ]


def text_lines(outcomes: list[FileOutcome], list_pending: bool) -> list[str]:
    """The per-file lines of the text format: TODOs left, units held back, then files a
    --check would rewrite."""
    pending = [f"would rewrite {o.path}" for o in outcomes if o.status == "changed"]
    return todo_lines(outcomes) + held_back_lines(outcomes) + (pending if list_pending else [])


def render(
    output_format: str, outcomes: list[FileOutcome], dry_run: bool, errors: Iterable[str] = ()
) -> str:
    """What `--output-format json|github` prints on stdout."""
    if output_format == "json":
        return as_json(outcomes, dry_run, errors)
    if output_format == "github":
        return annotations.github(outcomes, dry_run, errors)
    raise ValueError(f"no machine-readable output format {output_format!r}")


def as_json(outcomes: list[FileOutcome], dry_run: bool, errors: Iterable[str] = ()) -> str:
    """The JSON report; `errors` are the paths that could not be processed at all."""
    c = counts(outcomes)
    data = {
        "summary": {
            k: c[k] for k in ("scanned", "changed", "unchanged", "skipped", "failed", "todos")
        },
        "by_code": dict(sorted(by_code(outcomes).items())),
        "dry_run": dry_run,
        "files": [
            {
                "path": o.path,
                "status": o.status,
                "error": o.error,
                "findings": [f.as_dict() for f in o.findings],
                "held_back": dict(sorted(o.held_back.items())),
            }
            for o in outcomes
            if o.status != "skipped"
        ],
        "errors": list(errors),
    }
    return json.dumps(data, indent=2) + "\n"


def as_markdown(outcomes: list[FileOutcome], dry_run: bool) -> str:
    lines = ["# apex2native report", "", summary(outcomes, dry_run), ""]
    for o in outcomes:
        if o.status == "skipped":
            continue
        lines.append(f"## `{o.path}`: {o.status}")
        if o.error:
            lines.append(f"- error: {o.error}")
        for f in o.findings:
            mark = "TODO " if f.todo else ""
            lines.append(f"- line {f.line}: {mark}**{f.code}** ({f.tier}) {f.message}")
        for unit, why in sorted(o.held_back.items()):
            lines.append(f"- held back: migration unit `{unit}` stays apex: {why}")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_report(
    path: str, outcomes: list[FileOutcome], dry_run: bool, errors: Iterable[str] = ()
) -> None:
    target = Path(path)
    text = (
        as_markdown(outcomes, dry_run)
        if target.suffix.lower() == ".md"
        else as_json(outcomes, dry_run, errors)
    )
    target.write_text(text, encoding="utf-8")
