"""Human-readable verdict and table, and the `--report` JSON document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .session import Outcome, VerifyOptions


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.9g}"
    if isinstance(value, list) and len(value) == 3:
        return f"norm {value[0]:.9g}"
    return str(value)


def verdict_line(outcome: Outcome, steps: int) -> str:
    if outcome.verdict == "ERROR":
        return f"ERROR: {outcome.message}"
    setup = f"device {outcome.device}, apex {outcome.apex}, mode {outcome.mode}"
    if outcome.verdict == "PASS-EXACT":
        return f"PASS-EXACT: bitwise equal over {steps} steps ({setup})"
    if outcome.verdict == "PASS-ANNOUNCED":
        return (
            f"PASS-ANNOUNCED: equal over {steps} steps except where the rewrite announced a "
            f"numerics change, and within the fp32 envelope there ({setup})"
        )
    if outcome.verdict.startswith("PASS"):
        return f"{outcome.verdict}: equivalent within tolerance over {steps} steps ({setup})"
    return f"FAIL: {outcome.message} ({setup})"


def _detail(row) -> str:
    parts = [row.detail, row.extra]
    if row.announced:
        parts.append("announced: " + ", ".join(row.announced))
    return "; ".join(p for p in parts if p)


def table(outcome: Outcome) -> str:
    """One line per metric: status, entries compared, first differing entry and values."""
    if outcome.comparison is None:
        return ""
    header = ("metric", "status", "n", "first diff", "step", "original", "rewritten", "detail")
    lines = [header]
    for row in outcome.comparison.rows:
        differs = row.index is not None
        lines.append(
            (
                row.metric,
                row.status,
                str(row.compared),
                str(row.index) if differs else "-",
                str(row.step) if differs and row.step is not None else "-",
                _fmt(row.original) if differs else "-",
                _fmt(row.rewritten) if differs else "-",
                _detail(row),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths)) + "  " + line[-1]
        for line in lines
    ).rstrip()


def side_summaries(outcome: Outcome) -> list[str]:
    return [
        f"{run.spec.label}: {run.status} in {run.wall_s:.1f}s ({run.spec.tree})"
        for run in outcome.sides
    ]


def report_document(outcome: Outcome, opts: VerifyOptions) -> dict:
    """The `--report` JSON: settings, verdict, table rows and both (or three) traces."""
    rows = []
    if outcome.comparison is not None:
        rows = [row.__dict__ for row in outcome.comparison.rows]
    return {
        "verdict": outcome.verdict,
        "exit_code": outcome.exit_code,
        "message": outcome.message,
        "mode": outcome.mode,
        "device": outcome.device,
        "apex": outcome.apex,
        "steps": opts.steps,
        "seed": opts.seed,
        "command": opts.command,
        "tolerances": opts.tolerances.__dict__,
        "notes": outcome.notes,
        "rewrite_report": str(outcome.rewrite_report) if outcome.rewrite_report else None,
        "announcements": [
            {"code": a.code, "message": a.message, "path": a.path, "line": a.line}
            for a in outcome.announcements
        ],
        "rows": rows,
        "sides": {
            run.spec.label: {
                "tree": str(run.spec.tree),
                "status": run.status,
                "returncode": run.returncode,
                "wall_s": round(run.wall_s, 3),
                "stderr_tail": run.stderr_tail,
                "hook_errors": run.hook_errors,
                "notes": run.notes,
                "ranks": run.ranks,
            }
            for run in outcome.sides
        },
    }


def write_report(path: Path, outcome: Outcome, opts: VerifyOptions) -> None:
    path.write_text(json.dumps(report_document(outcome, opts), indent=1) + "\n", encoding="utf-8")
