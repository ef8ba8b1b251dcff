"""One verification: resolve the setup, run the sides, judge them, return an outcome.

Exit statuses: 0 equivalent, 1 not equivalent (also the rewritten side crashing or stopping
early), 2 harness or usage error (also the original side failing).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .compare import Comparison, Row, compare_envelope, compare_exact, compare_fixed
from .environment import resolve_apex, resolve_device
from .errors import HarnessError
from .runner import Settings, SideRun, SideSpec, launches_distributed, run_sides, skip_mask
from .tolerances import Tolerances
from .trace import metrics, step_counts
from .worktree import revision_tree


@dataclass
class VerifyOptions:
    """Everything the command line decides."""

    rewritten: Path
    command: list[str]
    original: Path | None = None
    against: str | None = None
    steps: int = 20
    device: str = "auto"
    apex: str = "auto"
    seed: int = 0
    compare: str = "auto"
    tolerances: Tolerances = field(default_factory=Tolerances)
    timeout: float = 900.0
    sequential: bool = False


@dataclass
class Outcome:
    exit_code: int
    verdict: str
    message: str
    mode: str | None = None
    device: str | None = None
    apex: str | None = None
    comparison: Comparison | None = None
    sides: list[SideRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@contextmanager
def _original_tree(opts: VerifyOptions) -> Iterator[Path]:
    if opts.against is not None:
        with revision_tree(opts.against, opts.rewritten) as tree:
            yield tree
    else:
        assert opts.original is not None
        yield opts.original


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise HarnessError(f"{what} is not a directory: {path}")


def _side_failure(run: SideRun) -> str:
    return f"{run.spec.label} side {run.status}: {run.error_summary()}"


def check_original(run: SideRun, notes: list[str], steps: int) -> None:
    if run.hook_errors:
        raise HarnessError(f"hooks failed in the {run.spec.label} side: {run.hook_errors[0]}")
    if run.status in ("crashed", "timeout", "no-hooks"):
        hint = " (is COMMAND run with python -I, -E or -S?)" if run.status == "no-hooks" else ""
        raise HarnessError(_side_failure(run) + hint)
    counts = [step_counts(events) for events in run.ranks.values()]
    if not any(counts):
        raise HarnessError(f"the {run.spec.label} side recorded no optimizer step")
    if run.status == "finished":
        notes.append(
            f"{run.spec.label} side exited after {max(max(c) for c in counts if c)} "
            f"step opportunities (fewer than --steps {steps})"
        )


def _rewritten_failure(a: SideRun, b: SideRun) -> str | None:
    if b.hook_errors:
        raise HarnessError(f"hooks failed in the rewritten side: {b.hook_errors[0]}")
    if b.status == "no-hooks":
        raise HarnessError("hooks were not loaded in the rewritten side")
    if b.status in ("crashed", "timeout"):
        return _side_failure(b)
    if sorted(a.ranks) != sorted(b.ranks):
        return f"ranks differ: original {sorted(a.ranks)}, rewritten {sorted(b.ranks)}"
    for rank in a.ranks:
        ca, cb = step_counts(a.ranks[rank]), step_counts(b.ranks[rank])
        if b.status == "finished" and cb != ca:
            return (
                f"rewritten side stopped early: step opportunities {cb} "
                f"vs original {ca} (rank {rank})"
            )
    return None


def _judge(
    tolerances: Tolerances, mode: str, a: SideRun, b: SideRun, c: SideRun | None
) -> Comparison:
    parts = []
    for rank in sorted(a.ranks):
        ma, mb = metrics(a.ranks[rank]), metrics(b.ranks[rank])
        if mode == "exact":
            part = compare_exact(ma, mb, tolerances)
        elif mode == "envelope":
            mc = metrics(c.ranks.get(rank, [])) if c is not None else {}
            part = compare_envelope(ma, mb, mc, tolerances)
        else:
            part = compare_fixed(ma, mb, tolerances)
        if len(a.ranks) > 1:
            for row in part.rows:
                row.metric = f"rank{rank}/{row.metric}"
        parts.append(part)
    rows: list[Row] = [row for part in parts for row in part.rows]
    order = ["FAIL", "PASS-NEAR", "PASS-FIXED", "PASS-ENVELOPE", "PASS-EXACT"]
    verdict = min((p.verdict for p in parts), key=order.index)
    return Comparison(mode, verdict, rows)


def evaluate(
    a: SideRun, b: SideRun, c: SideRun | None, mode: str, tolerances: Tolerances
) -> tuple[int, str, str, Comparison | None]:
    """Exit status, verdict, message and comparison for a rewritten run `b` against `a`
    (and the fp32 run `c` in envelope mode). Raises HarnessError for harness problems."""
    failure = _rewritten_failure(a, b)
    if failure is not None:
        return 1, "FAIL", failure, None
    comparison = _judge(tolerances, mode, a, b, c)
    failed = [r.metric for r in comparison.rows if r.failed]
    if failed:
        message = "differs in " + ", ".join(failed)
    else:
        message = f"{len(comparison.rows)} metrics compared"
    return (0 if comparison.passed else 1), comparison.verdict, message, comparison


def verify(opts: VerifyOptions) -> Outcome:
    """Run and judge one verification; never raises for harness errors (exit 2 instead)."""
    outcome = Outcome(2, "ERROR", "")
    try:
        _verify(opts, outcome)
    except HarnessError as exc:
        outcome.exit_code, outcome.verdict, outcome.message = 2, "ERROR", str(exc)
    return outcome


def _verify(opts: VerifyOptions, out: Outcome) -> None:
    if not opts.command:
        raise HarnessError("missing COMMAND after `--`")
    _require_dir(opts.rewritten, "REWRITTEN")
    out.device = resolve_device(opts.device)
    with _original_tree(opts) as original:
        _require_dir(original, "ORIGINAL")
        out.apex = resolve_apex(opts.apex, out.device, opts.command, original)
        mode = opts.compare
        if mode == "auto":
            mode = "exact" if out.apex == "reference" else "envelope"
        out.mode = mode
        settings = Settings(opts.steps, opts.seed, out.device, opts.timeout)
        reference = out.apex == "reference"
        with tempfile.TemporaryDirectory(prefix="a2n-verify-") as tmp:
            record_dir = Path(tmp)
            specs = [
                SideSpec("original", original, opts.command, reference_apex=reference),
                SideSpec("rewritten", opts.rewritten, opts.command),
            ]
            parallel = not (opts.sequential or launches_distributed(opts.command))
            a, b = run_sides(specs, settings, record_dir, parallel=parallel)
            out.sides = [a, b]
            check_original(a, out.notes, opts.steps)
            c = None
            if mode == "envelope" and _rewritten_failure(a, b) is None:
                spec = SideSpec(
                    "fp32",
                    original,
                    opts.command,
                    reference_apex=reference,
                    amp_off=True,
                    skip_mask=skip_mask(a),
                )
                c = run_sides([spec], settings, record_dir)[0]
                out.sides.append(c)
                check_original(c, out.notes, opts.steps)
            out.exit_code, out.verdict, out.message, out.comparison = evaluate(
                a, b, c, mode, opts.tolerances
            )
