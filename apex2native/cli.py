"""The command line: parse options, call the library, print. No logic of its own."""

from __future__ import annotations

import inspect
import os
import sys

import click

from apex2native import __version__, consistency, diffing, engine, report, target
from apex2native.cache import ENV_FOLDER, FOLDER_NAME, Cache
from apex2native.discover import discover
from apex2native.options import Options
from apex2native.verify.command import verify

EXIT_OK, EXIT_PENDING, EXIT_ERROR = 0, 1, 2
PROGRESS_THRESHOLD = 200


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="apex2native")
def main() -> None:
    """Migrate PyTorch training code from NVIDIA Apex to native torch.amp."""


def _codes(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip().upper() for value in values for v in value.split(",") if v.strip())


def _target_torch(_ctx, _param, value: str | None) -> target.TorchVersion | None:
    try:
        return None if value is None else target.parse_target(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--diff", "show_diff", is_flag=True, help="Print unified diffs; write nothing.")
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if anything would change or a TODO remains.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: CPU count).",
)
@click.option(
    "--include", multiple=True, metavar="GLOB", help="Only files matching GLOB (repeatable)."
)
@click.option(
    "--exclude", multiple=True, metavar="GLOB", help="Skip files matching GLOB (repeatable)."
)
@click.option("--no-gitignore", is_flag=True, help="Also process files .gitignore excludes.")
@click.option(
    "--select", multiple=True, metavar="CODE", help="Only rules whose code starts with CODE."
)
@click.option(
    "--ignore",
    "ignore_codes",
    multiple=True,
    metavar="CODE",
    help="Skip rules whose code starts with CODE.",
)
@click.option(
    "--target-torch",
    metavar="X.Y",
    callback=_target_torch,
    help="Oldest torch the rewritten code must run on (default: the project's torch pin; "
    "none: the newest spellings).",
)
@click.option(
    "--report", "report_path", metavar="FILE", help="Write a report: FILE.json or FILE.md."
)
@click.option(
    "--output-format",
    type=click.Choice(report.OUTPUT_FORMATS),
    default="text",
    show_default=True,
    help="text: lines on stderr; json: the JSON report on stdout; github: workflow "
    "annotations on stdout. json and github cannot be combined with --diff.",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help=f"Do not read or write the result cache ({FOLDER_NAME} at the project root, or "
    f"${ENV_FOLDER}).",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="Print nothing but errors (and the output asked for)."
)
def rewrite(
    paths,
    show_diff,
    check,
    jobs,
    include,
    exclude,
    no_gitignore,
    select,
    ignore_codes,
    target_torch,
    report_path,
    output_format,
    no_cache,
    quiet,
):
    """Rewrite apex code under PATHS into native torch.amp (in place unless --diff/--check).

    Exit status: 0 nothing left to do, 1 changes pending (--check/--diff) or TODO markers
    left, 2 a path or file could not be processed.
    """
    if show_diff and output_format != "text":
        raise click.UsageError(
            f"--output-format {output_format} cannot be combined with --diff: both print on "
            "stdout. Run them separately, or keep --diff and add --report FILE.json."
        )
    options = Options(select=_codes(select), ignore=_codes(ignore_codes), target_torch=target_torch)
    found = discover(list(paths), include, exclude, respect_gitignore=not no_gitignore)
    for error in found.errors:
        click.echo(f"error: {error}", err=True)
    warnings = list(found.warnings)
    warnings += [] if target_torch else target.unsupported(path for path, _ in found.files)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)

    progress_bar = None
    if sys.stderr.isatty() and len(found.files) >= PROGRESS_THRESHOLD and not quiet:
        progress_bar = click.progressbar(
            length=len(found.files), label="apex2native", file=sys.stderr
        )
    try:
        if progress_bar is not None:
            progress_bar.__enter__()
        outcomes = engine.run(
            found.files,
            options,
            jobs=jobs or os.cpu_count() or 1,
            progress=progress_bar.update if progress_bar is not None else None,
            cache=_cache(found.files, no_cache),
            left_out=found.left_out,
        )
    finally:
        if progress_bar is not None:
            progress_bar.__exit__(None, None, None)

    dry_run = show_diff or check
    by_path = {display: path for path, display in found.files}
    for outcome in outcomes:
        if outcome.status == "failed":
            click.echo(f"error: {outcome.path}: {outcome.error}", err=True)
        elif outcome.status == "changed" and not dry_run:
            try:
                engine.write_atomic(by_path[outcome.path], outcome)
            except OSError as exc:
                outcome.status, outcome.error = "failed", f"cannot write: {exc}"
                click.echo(f"error: {outcome.path}: {outcome.error}", err=True)
    if show_diff:
        sys.stdout.flush()
        sys.stdout.buffer.write(diffing.diff_all(outcomes))
        sys.stdout.flush()
    if output_format != "text":
        click.echo(report.render(output_format, outcomes, dry_run, found.errors), nl=False)
    elif not quiet:
        for line in report.text_lines(outcomes, list_pending=check and not show_diff):
            click.echo(line, err=True)
    if report_path:
        report.write_report(report_path, outcomes, dry_run, found.errors)
    if not quiet:
        click.echo(report.summary(outcomes, dry_run), err=True)

    c = report.counts(outcomes)
    if found.errors or c["failed"]:
        sys.exit(EXIT_ERROR)
    if c["todos"] or (dry_run and c["changed"]):
        sys.exit(EXIT_PENDING)
    sys.exit(EXIT_OK)


def _cache(files: list[tuple[str, str]], disabled: bool) -> Cache | None:
    """The project's result cache, unless turned off or there is nothing to cache."""
    if disabled or not files:
        return None
    return Cache.for_paths([path for path, _ in files])


main.add_command(verify)


@main.command("convert-checkpoint")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--static", is_flag=True, help="The run used a static loss_scale.")
@click.option(
    "--unsafe-load", is_flag=True, help="Allow pickled objects (torch.load weights_only=False)."
)
def convert_checkpoint_command(source, target, static, unsafe_load):
    """Replace apex `amp.state_dict()` entries in a checkpoint with GradScaler state (and apex
    optimizer state with what torch's optimizers load)."""
    try:
        import torch
    except ImportError:
        click.echo(
            "error: convert-checkpoint needs torch (pip install apex2native[verify])", err=True
        )
        sys.exit(EXIT_ERROR)
    from apex2native.checkpoint import convert_checkpoint

    try:
        data = _load_checkpoint(torch, source, unsafe_load)
    except Exception as exc:  # torch raises several types for unreadable or unsafe files
        click.echo(
            f"error: {source}: cannot load ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            err=True,
        )
        sys.exit(EXIT_ERROR)
    left: list[str] = []
    converted, changes = convert_checkpoint(data, static=static, left=left)
    for note in left:
        click.echo(f"{source}: {note}", err=True)
    if not changes:
        click.echo(f"{source}: no apex amp state found; nothing written", err=True)
        sys.exit(EXIT_PENDING)
    torch.save(converted, target)
    for change in changes:
        click.echo(f"{source}: {change}", err=True)


def _load_checkpoint(torch, source: str, unsafe_load: bool):
    """`torch.load`; a pickled apex object (FP16_Optimizer's `LossScaler`) unpickles into the
    stand-in apex when apex itself is not installed."""
    try:
        return torch.load(source, map_location="cpu", weights_only=not unsafe_load)
    except ModuleNotFoundError as exc:
        if not unsafe_load or (exc.name or "").split(".")[0] != "apex":
            raise
    from apex2native.verify.runner import REFERENCE_APEX_DIR

    sys.path.insert(0, str(REFERENCE_APEX_DIR))
    try:
        return torch.load(source, map_location="cpu", weights_only=False)
    finally:
        sys.path.remove(str(REFERENCE_APEX_DIR))
        for name in [n for n in sys.modules if n == "apex" or n.startswith("apex.")]:
            del sys.modules[name]


@main.command()
@click.argument("code", required=False)
@click.option("--markdown", is_flag=True, help="Print every rule as Markdown (docs/rules.md).")
def rules(code, markdown):
    """List the rules, or explain one (with its before/after)."""
    from apex2native.rules import ALL_RULES, rule_by_code  # loaded only when asked for

    if markdown:
        click.echo(rules_markdown(), nl=False)
        return
    if code is None:
        for rule in ALL_RULES:
            click.echo(f"{rule.code}  {rule.tier:<8}  {rule.name:<14}  {rule.summary}")
        return
    rule = rule_by_code(code)
    if rule is None:
        click.echo(f"error: no rule {code}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"{rule.code} {rule.name} ({rule.tier})\n")
    click.echo(_dedent(rule.__doc__ or ""))


def _dedent(text: str) -> str:
    return inspect.cleandoc(text)


def rules_markdown() -> str:
    """docs/rules.md, made from the rules themselves so it cannot drift."""
    from apex2native.rules import ALL_RULES

    out = [
        "# apex2native rules",
        "",
        "Generated by `apex2native rules --markdown`. Tiers: **safe** (same behaviour),",
        "**numerics** (mixed-precision numbers may differ slightly), **manual** (left for a",
        "person with a `# TODO(apex2native): <CODE> <why>` marker).",
        "",
        "| code | name | tier | what |",
        "| --- | --- | --- | --- |",
    ]
    out += [f"| {r.code} | {r.name} | {r.tier} | {r.summary} |" for r in ALL_RULES]
    for rule in ALL_RULES:
        out += [
            "",
            f"## {rule.code} {rule.name} ({rule.tier})",
            "",
            "```text",
            _dedent(rule.__doc__ or ""),
            "```",
        ]
    out += [
        "",
        "## A2N100 repository check (manual)",
        "",
        "Not a rule: the check that runs over the rewritten repository before anything is",
        "written. A violation holds its migration unit back everywhere and leaves an A2N100",
        "TODO where it was found.",
        "",
        "```text",
        _dedent(consistency.__doc__ or ""),
        "```",
    ]
    return "\n".join(out) + "\n"
