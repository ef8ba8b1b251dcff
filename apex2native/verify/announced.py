"""What the rewrite announced: the numerics findings of `apex2native rewrite --report FILE.json`.

A rewrite may change numbers on purpose (clipping moved to the step boundary, fp32 weights
instead of O2's fp16 ones, one loss scale instead of one per loss), and its report says so.
Each such finding is classified by rule code and message into a kind that names the metrics
where its difference first shows. Only `files[].path` and `findings[].{line, code, message,
tier, todo}` of the report are read, so fields added to it later do no harm.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import HarnessError

REPORT_NAME = "apex2native-report.json"
NUMERICS = "numerics"


@dataclass(frozen=True)
class Kind:
    """A class of announced change: which findings belong to it, the metric families where
    its difference first shows, and whether it shows with the stand-in too (which shares
    autocast's cast engine, so cast-list changes cannot show there)."""

    title: str
    codes: tuple[str, ...]
    phrases: tuple[str, ...]
    metrics: tuple[str, ...]
    with_stand_in: bool = True

    def matches(self, code: str, message: str) -> bool:
        if self.codes and code not in self.codes:
            return False
        return not self.phrases or any(p.lower() in message.lower() for p in self.phrases)


KINDS = (
    Kind(
        "clipping moved to the step boundary",
        ("A2N105",),
        ("moved to the step boundary",),
        ("clip_norm", "grad_norm"),
    ),
    Kind(
        "a static loss scale now skips overflowing steps",
        ("A2N102",),
        ("static loss_scale",),
        ("applied", "loss_scale"),
    ),
    Kind(
        "one loss scale for every loss",
        ("A2N102",),
        ("num_losses",),
        ("loss_scale", "applied"),
    ),
    Kind(
        "no floor or cap on the loss scale",
        ("A2N102",),
        ("min_loss_scale", "max_loss_scale"),
        ("loss_scale", "applied"),
    ),
    Kind(
        "fp32 weights under autocast instead of O2/O3",
        ("A2N102",),
        ("O2", "O3", "opt level", "cast_model_type", "cast_model_outputs"),
        ("loss", "init_params", "grad_norm", "clip_norm"),
    ),
    Kind(
        "autocast's cast lists instead of apex's",
        ("A2N106", "A2N111"),
        (),
        ("loss", "grad_norm", "clip_norm"),
        with_stand_in=False,
    ),
)
UNCLASSIFIED = Kind(
    "numerics change", (), (), ("loss", "grad_norm", "clip_norm"), with_stand_in=False
)


@dataclass(frozen=True)
class Announcement:
    """One numerics finding of the rewrite report."""

    code: str
    message: str
    path: str
    line: int
    kind: Kind

    @property
    def label(self) -> str:
        return f"{self.code} ({self.path}:{self.line})"

    def describe(self) -> str:
        return f"{self.code} {self.path}:{self.line}: {self.message}"

    def covers(self, metric: str, stand_in: bool) -> bool:
        """Whether this change can make `metric` differ first (a "rankN/" prefix is ignored)."""
        if stand_in and not self.kind.with_stand_in:
            return False
        return family(metric) in self.kind.metrics


def family(metric: str) -> str:
    """`rank1/grad_norm/opt0` -> `grad_norm`."""
    return re.sub(r"^rank\d+/", "", metric).split("/", 1)[0]


def classify(code: str, message: str) -> Kind:
    return next((k for k in KINDS if k.matches(code, message)), UNCLASSIFIED)


def parse_report(data: object, source: str) -> list[Announcement]:
    """The numerics findings (not TODOs) of a rewrite report document, in file order."""
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise HarnessError(f"{source}: not a JSON report of `apex2native rewrite` (no files list)")
    found = []
    for entry in files:
        if not isinstance(entry, dict):
            continue
        path = str(entry.get("path", "?"))
        for finding in entry.get("findings") or []:
            if not isinstance(finding, dict) or finding.get("tier") != NUMERICS:
                continue
            if finding.get("todo"):
                continue
            code, message = str(finding.get("code", "")), str(finding.get("message", ""))
            line = finding.get("line")
            found.append(
                Announcement(
                    code,
                    message,
                    path,
                    line if isinstance(line, int) else 0,
                    classify(code, message),
                )
            )
    return found


def load_report(path: Path) -> list[Announcement]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"cannot read the rewrite report {path}: {exc}") from exc
    return parse_report(data, str(path))


def find_report(explicit: Path | None, rewritten: Path) -> Path | None:
    """`--rewrite-report FILE`, else `apex2native-report.json` in the rewritten tree's root."""
    if explicit is not None:
        if not explicit.is_file():
            raise HarnessError(f"--rewrite-report: no such file: {explicit}")
        return explicit
    beside = rewritten / REPORT_NAME
    return beside if beside.is_file() else None
