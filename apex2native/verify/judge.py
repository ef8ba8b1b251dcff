"""Turn two (or three) recorded runs into a verdict, rank by rank.

Exact mode passes only on equal values (PASS-EXACT, or PASS-NEAR within `near_rtol`). When
values differ, the difference may still be one the rewrite announced (see `announced.py`):
if the first difference lies in a metric an announced change can move, and every difference
stays within the fp32 envelope of the original, the verdict is PASS-ANNOUNCED. Later
differences in other metrics are consequences of the first one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .announced import Announcement
from .compare import (
    INFORMATIONAL_OUTSIDE_EXACT,
    Comparison,
    Row,
    compare_envelope,
    compare_exact,
    compare_fixed,
)
from .errors import HarnessError
from .runner import SideRun
from .tolerances import Tolerances
from .trace import metrics, step_counts

BEYOND = "beyond the fp32 envelope"
ORDER = ["FAIL", "PASS-ANNOUNCED", "PASS-NEAR", "PASS-FIXED", "PASS-ENVELOPE", "PASS-EXACT"]


@dataclass
class Judgement:
    """Exit status, verdict, message and table; `needs_fp32` asks for the fp32 run first."""

    exit_code: int
    verdict: str
    message: str
    comparison: Comparison | None = None
    needs_fp32: bool = False


@dataclass
class Announced:
    """The rewrite's numerics announcements and whether the original ran on the stand-in."""

    items: list[Announcement] = field(default_factory=list)
    stand_in: bool = True

    def covering(self, metric: str) -> list[Announcement]:
        return [a for a in self.items if a.covers(metric, self.stand_in)]


def _side_failure(run: SideRun) -> str:
    return f"{run.spec.label} side {run.status}: {run.error_summary()}"


def rewritten_failure(a: SideRun, b: SideRun) -> str | None:
    """Why the rewritten side cannot be compared (crash, early stop, other ranks), if so."""
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


def _label(rows: list[Row], announced: Announced) -> None:
    for row in rows:
        if row.failed or row.differs or row.extra:
            row.announced = [a.label for a in announced.covering(row.metric)]


def _confined(rows: list[Row], announced: Announced) -> bool:
    """The first failing difference is in a metric an announced change can move, and each
    other failing row is announced too or starts later (a consequence)."""
    failing = [r for r in rows if r.failed]
    if not failing or not announced.items:
        return False
    timed = [r.seq for r in failing if r.seq is not None]
    first = min(timed) if timed else None
    if not any(r.announced for r in failing if r.seq == first):
        return False
    return all(
        r.announced or (r.seq is not None and first is not None and r.seq > first) for r in failing
    )


def _needs_envelope(rows: list[Row]) -> bool:
    return any(r.differs and r.metric not in INFORMATIONAL_OUTSIDE_EXACT for r in rows)


def _announced_rank(exact: Comparison, envelope: Comparison | None) -> Comparison:
    """Exact rows, with each difference judged by the fp32 envelope (when one was needed)."""
    verdict = "PASS-ANNOUNCED"
    by_metric = {r.metric: r for r in envelope.rows} if envelope is not None else {}
    for row in exact.rows:
        if not row.differs:
            continue
        judged = by_metric.get(row.metric)
        if judged is not None and judged.failed:
            verdict = "FAIL"
            row.status = "differs"
            row.detail = f"{BEYOND}: {judged.detail}"
        elif judged is not None and judged.status == "within":
            row.status = "announced"
            row.detail = f"within the fp32 envelope: {judged.detail}"
        else:
            row.status = "announced"
            row.detail = "not judged by the fp32 envelope"
    return Comparison("exact", verdict, exact.rows)


def _judge_rank(
    ma: dict,
    mb: dict,
    mc: dict | None,
    mode: str,
    tol: Tolerances,
    announced: Announced,
) -> tuple[Comparison, bool]:
    """One rank's comparison, and whether it waits for the fp32 run."""
    if mode == "envelope":
        part = compare_envelope(ma, mb, mc or {}, tol)
    elif mode == "fixed":
        part = compare_fixed(ma, mb, tol)
    else:
        part = compare_exact(ma, mb, tol)
    _label(part.rows, announced)
    if mode != "exact" or part.verdict != "FAIL" or not _confined(part.rows, announced):
        return part, False
    if not _needs_envelope(part.rows):
        return _announced_rank(part, None), False
    if mc is None:
        return part, True
    return _announced_rank(part, compare_envelope(ma, mb, mc, tol)), False


def judge(
    tolerances: Tolerances,
    mode: str,
    a: SideRun,
    b: SideRun,
    c: SideRun | None,
    announced: Announced | None = None,
) -> tuple[Comparison, bool]:
    """The comparison over every rank, and whether it needs the fp32 run to decide."""
    announced = announced or Announced()
    parts, wants = [], False
    for rank in sorted(a.ranks):
        ma, mb = metrics(a.ranks[rank]), metrics(b.ranks[rank])
        mc = metrics(c.ranks.get(rank, [])) if c is not None else None
        part, needs = _judge_rank(ma, mb, mc, mode, tolerances, announced)
        wants = wants or needs
        if len(a.ranks) > 1:
            for row in part.rows:
                row.metric = f"rank{rank}/{row.metric}"
        parts.append(part)
    rows: list[Row] = [row for part in parts for row in part.rows]
    verdict = min((p.verdict for p in parts), key=ORDER.index)
    return Comparison(mode, verdict, rows), wants


def evaluate(
    a: SideRun,
    b: SideRun,
    c: SideRun | None,
    mode: str,
    tolerances: Tolerances,
    announced: Announced | None = None,
) -> Judgement:
    """Judge a rewritten run `b` against `a` (and the fp32 run `c`, in envelope mode or for
    announced differences). Raises HarnessError for harness problems."""
    failure = rewritten_failure(a, b)
    if failure is not None:
        return Judgement(1, "FAIL", failure)
    comparison, needs_fp32 = judge(tolerances, mode, a, b, c, announced)
    return conclude(comparison, needs_fp32)


def conclude(comparison: Comparison, needs_fp32: bool = False) -> Judgement:
    """The judgement a finished comparison stands for (a failed row makes it FAIL)."""
    if any(r.failed for r in comparison.rows):
        comparison.verdict = "FAIL"
    code = 0 if comparison.passed else 1
    return Judgement(code, comparison.verdict, _message(comparison), comparison, needs_fp32)


def _message(comparison: Comparison) -> str:
    failed = [r for r in comparison.rows if r.failed]
    if not failed:
        return f"{len(comparison.rows)} metrics compared"
    message = "differs in " + ", ".join(r.metric for r in failed)
    labels = sorted({label for r in comparison.rows for label in r.announced})
    if any(r.detail.startswith(BEYOND) for r in failed):
        message += f" beyond the fp32 envelope (announced: {', '.join(labels)})"
    return message
