"""`--output-format github`: workflow commands that GitHub shows inline on a pull request.

One `::warning` per finding of a file the run changes (or would change) and per TODO marker,
one `::error` per file or path that could not be processed, as ruff's `github` format does.
Lines are lines of the file as it was before the rewrite, so under `--check` they point into
the pull request's own version of the file.
"""

from __future__ import annotations

from collections.abc import Iterable

from apex2native.findings import FileOutcome, Finding


def escape_data(text: str) -> str:
    """The message part: `%`, CR and LF would end or corrupt the command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A `key=value` property: also `:` (ends the properties) and `,` (starts the next one)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **properties: str | int) -> str:
    """One workflow command line, `::kind key=value,...::message`."""
    props = ",".join(f"{key}={escape_property(str(value))}" for key, value in properties.items())
    return f"::{kind}{' ' + props if props else ''}::{escape_data(message)}"


def _annotated(outcome: FileOutcome) -> list[Finding]:
    if outcome.status == "changed":
        return outcome.findings
    return outcome.todos


def _warning(path: str, finding: Finding, dry_run: bool) -> str:
    if finding.todo:
        title = f"apex2native {finding.code} TODO"
    else:
        title = f"apex2native {finding.code} ({finding.tier})"
        if dry_run:
            title = f"{title} would rewrite"
    return command(
        "warning", f"{finding.code} {finding.message}", file=path, line=finding.line, title=title
    )


def github(outcomes: list[FileOutcome], dry_run: bool, errors: Iterable[str] = ()) -> str:
    """Every annotation of a run, one per line (empty when there is nothing to say)."""
    lines = [command("error", f"apex2native: {error}") for error in errors]
    for outcome in outcomes:
        if outcome.status == "failed":
            lines.append(command("error", f"apex2native: {outcome.error}", file=outcome.path))
            continue
        lines += [_warning(outcome.path, f, dry_run) for f in _annotated(outcome)]
    return "".join(line + "\n" for line in lines)
