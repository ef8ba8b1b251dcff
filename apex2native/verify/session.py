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

from .announced import Announcement, find_report, load_report
from .compare import Comparison
from .environment import resolve_apex, resolve_device
from .errors import HarnessError
from .judge import Announced, Judgement, conclude, evaluate, rewritten_failure
from .resume import (
    Checkpoint,
    check_command,
    command_for,
    inspect_checkpoint,
    private_copy,
    resume_rows,
)
from .resume import notes as resume_notes
from .runner import Settings, SideRun, SideSpec, launches_distributed, run_sides, skip_mask
from .tolerances import Tolerances
from .trace import step_counts
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
    rewrite_report: Path | None = None
    resume_from: str | None = None


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
    rewrite_report: Path | None = None
    announcements: list[Announcement] = field(default_factory=list)


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


def verify(opts: VerifyOptions) -> Outcome:
    """Run and judge one verification; never raises for harness errors (exit 2 instead)."""
    outcome = Outcome(2, "ERROR", "")
    try:
        _verify(opts, outcome)
    except HarnessError as exc:
        outcome.exit_code, outcome.verdict, outcome.message = 2, "ERROR", str(exc)
    return outcome


def _announcement_notes(out: Outcome) -> None:
    if out.announcements:
        out.notes.append(f"announced by the rewrite ({out.rewrite_report}):")
        out.notes.extend(f"  {a.describe()}" for a in out.announcements)


def _with_resume(judgement: Judgement, a: SideRun, b: SideRun, ckpt: Checkpoint) -> Judgement:
    """The judgement with the resume rows added (a side that did not resume fails)."""
    if judgement.comparison is None:
        return judgement
    judgement.comparison.rows.extend(resume_rows(a, b, ckpt))
    return conclude(judgement.comparison)


def _verify(opts: VerifyOptions, out: Outcome) -> None:
    if not opts.command:
        raise HarnessError("missing COMMAND after `--`")
    _require_dir(opts.rewritten, "REWRITTEN")
    out.rewrite_report = find_report(opts.rewrite_report, opts.rewritten)
    if out.rewrite_report is not None:
        out.announcements = load_report(out.rewrite_report)
    ckpt = inspect_checkpoint(opts.resume_from) if opts.resume_from else None
    if ckpt is not None:
        check_command(opts.command, ckpt)
        out.notes.extend(resume_notes(ckpt))
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
        announced = Announced(out.announcements, stand_in=reference)
        with tempfile.TemporaryDirectory(prefix="a2n-verify-") as tmp:
            record_dir = Path(tmp)

            def spec(label: str, tree: Path, **kwargs) -> SideSpec:
                if ckpt is None:
                    return SideSpec(label, tree, opts.command, **kwargs)
                copy = private_copy(ckpt, record_dir, label)
                command = command_for(opts.command, ckpt, copy)
                return SideSpec(label, tree, command, resume=copy, **kwargs)

            specs = [
                spec("original", original, reference_apex=reference),
                spec("rewritten", opts.rewritten),
            ]
            parallel = not (opts.sequential or launches_distributed(opts.command))
            a, b = run_sides(specs, settings, record_dir, parallel=parallel)
            out.sides = [a, b]
            check_original(a, out.notes, opts.steps)

            def fp32_run() -> SideRun:
                fp32 = spec(
                    "fp32", original, reference_apex=reference, amp_off=True, skip_mask=skip_mask(a)
                )
                c = run_sides([fp32], settings, record_dir)[0]
                out.sides.append(c)
                check_original(c, out.notes, opts.steps)
                return c

            c = None
            if mode == "envelope" and rewritten_failure(a, b) is None:
                c = fp32_run()
            judgement = evaluate(a, b, c, mode, opts.tolerances, announced)
            if judgement.needs_fp32:
                judgement = evaluate(a, b, fp32_run(), mode, opts.tolerances, announced)
            if ckpt is not None:
                judgement = _with_resume(judgement, a, b, ckpt)
            out.exit_code, out.verdict = judgement.exit_code, judgement.verdict
            out.message, out.comparison = judgement.message, judgement.comparison
    _announcement_notes(out)
