"""The `verify` click command: parse options, run a verification, print and exit."""

from __future__ import annotations

from pathlib import Path

import click

from .tolerances import Tolerances

_COMMAND_KEY = "apex2native.verify.command"


class _VerifyCommand(click.Command):
    """Everything after the first `--` is COMMAND, passed through untouched."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta[_COMMAND_KEY] = list(args[cut + 1 :])
            args = args[:cut]
        else:
            ctx.meta[_COMMAND_KEY] = []
        return super().parse_args(ctx, args)


@click.command(
    "verify",
    cls=_VerifyCommand,
    short_help="Run original and rewritten training steps and compare them.",
)
@click.argument("trees", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--against",
    metavar="REV",
    help="Take ORIGINAL from this git revision (a temporary worktree); "
    "then the only tree argument is REWRITTEN (default: .).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Optimizer-step opportunities to run on each side (skipped ones count).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="cpu maps 'cuda' autocast/GradScaler to the CPU.",
)
@click.option(
    "--apex",
    "apex_mode",
    type=click.Choice(["auto", "installed", "reference"]),
    default="auto",
    show_default=True,
    help="Original side: real NVIDIA apex, or the bundled reference stand-in.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--compare",
    "compare_mode",
    type=click.Choice(["auto", "exact", "envelope", "fixed"]),
    default="auto",
    show_default=True,
    help="auto: exact with the stand-in, fp32 envelope with real apex.",
)
@click.option(
    "--rtol",
    type=click.FloatRange(min=0),
    default=Tolerances.near_rtol,
    show_default=True,
    help="Near-equal fallback of exact mode (0: bitwise or fail).",
)
@click.option(
    "--envelope-factor",
    type=click.FloatRange(min=0),
    default=Tolerances.envelope_factor,
    show_default=True,
)
@click.option(
    "--envelope-floor",
    type=click.FloatRange(min=0),
    default=Tolerances.envelope_floor,
    show_default=True,
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=900.0,
    show_default=True,
    help="Seconds each batch of side runs may take.",
)
@click.option(
    "--sequential", is_flag=True, help="Run the sides one after the other (automatic for torchrun)."
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a JSON report with both traces.",
)
@click.option(
    "--rewrite-report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The JSON report of `apex2native rewrite --report` (default: "
    "apex2native-report.json in REWRITTEN, when present). Differences it announces "
    "are labelled, and pass as PASS-ANNOUNCED within the fp32 envelope.",
)
@click.option(
    "--resume-from",
    metavar="CKPT",
    type=click.Path(dir_okay=False),
    help="Run both sides from this checkpoint, which the original wrote with apex amp state. "
    "COMMAND must pass it to the program, spelled as here; each side gets a private copy.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a PNG of loss and gradient-norm curves (needs matplotlib).",
)
@click.pass_context
def verify(
    ctx: click.Context,
    trees: tuple[Path, ...],
    against: str | None,
    steps: int,
    device: str,
    apex_mode: str,
    seed: int,
    compare_mode: str,
    rtol: float,
    envelope_factor: float,
    envelope_floor: float,
    timeout: float,
    sequential: bool,
    report: Path | None,
    rewrite_report: Path | None,
    resume_from: str | None,
    plot: Path | None,
) -> None:
    """Run ORIGINAL and REWRITTEN with COMMAND for N steps and compare what they did.

    \b
    apex2native verify ORIGINAL REWRITTEN --steps N -- COMMAND [ARG...]
    apex2native verify --against HEAD --steps 20 -- python train.py ...
    apex2native verify A B --resume-from ckpt.pt -- python train.py --resume ckpt.pt

    COMMAND runs with each tree as its working directory. Exit status: 0 equivalent,
    1 not equivalent (also when the rewritten side crashes or stops early), 2 harness or
    usage error (also when the original side fails).
    """
    from . import plot as plotting
    from .report import side_summaries, table, verdict_line, write_report
    from .session import VerifyOptions
    from .session import verify as run_verify

    command = ctx.meta.get(_COMMAND_KEY, [])
    if not command:
        raise click.UsageError("missing COMMAND: put it after `--`")
    if against is not None:
        if len(trees) > 1:
            raise click.UsageError("with --against, give at most one tree (REWRITTEN)")
        original, rewritten = None, (trees[0] if trees else Path("."))
    elif len(trees) != 2:
        raise click.UsageError("give ORIGINAL and REWRITTEN (or --against REV)")
    else:
        original, rewritten = trees
    if plot is not None and not plotting.available():
        raise click.UsageError(plotting.MISSING)
    tolerances = Tolerances(
        near_rtol=rtol, envelope_factor=envelope_factor, envelope_floor=envelope_floor
    )
    opts = VerifyOptions(
        rewritten=rewritten,
        command=command,
        original=original,
        against=against,
        steps=steps,
        device=device,
        apex=apex_mode,
        seed=seed,
        compare=compare_mode,
        tolerances=tolerances,
        timeout=timeout,
        sequential=sequential,
        rewrite_report=rewrite_report,
        resume_from=resume_from,
    )
    outcome = run_verify(opts)
    click.echo(verdict_line(outcome, steps))
    rows = table(outcome)
    if rows:
        click.echo(rows)
    for line in side_summaries(outcome) + outcome.notes:
        click.echo(line)
    if outcome.exit_code != 0:
        for run in outcome.sides:
            if run.status not in ("stopped", "finished") and run.stderr_tail.strip():
                click.echo(f"--- {run.spec.label} stderr (tail) ---", err=True)
                click.echo(run.stderr_tail.rstrip()[-2000:], err=True)
    if report is not None:
        write_report(report, outcome, opts)
    if plot is not None and outcome.sides:
        plotting.write_plot(plot, outcome)
    ctx.exit(outcome.exit_code)
