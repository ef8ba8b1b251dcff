"""Verdicts on hand-made traces: records paired by step, and differences the rewrite announced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apex2native.verify.announced import parse_report
from apex2native.verify.errors import HarnessError
from apex2native.verify.judge import Announced, evaluate
from apex2native.verify.runner import SideRun, SideSpec
from apex2native.verify.tolerances import Tolerances

CLIP_MOVED = {
    "code": "A2N105",
    "message": "clipping moved to the step boundary: it now clips the accumulated gradient",
}
ONE_SCALE = {"code": "A2N102", "message": "num_losses: one GradScaler serves every loss"}
AUTOCAST = {"code": "A2N106", "message": "forward pass and loss under autocast"}


def report(*findings: dict, tier: str = "numerics") -> list:
    """Announcements parsed from a rewrite report holding these findings (plus noise)."""
    doc = {
        "summary": {},
        "files": [
            {
                "path": "train.py",
                "status": "changed",
                "findings": [
                    {"line": 7 + i, "tier": tier, "todo": False, "new_field": 1, **f}
                    for i, f in enumerate(findings)
                ]
                + [{"line": 1, "code": "A2N102", "message": "safe", "tier": "safe"}],
            }
        ],
        "added_later": True,
    }
    return parse_report(json.loads(json.dumps(doc)), "report.json")


def side(label: str, steps: list[dict]) -> SideRun:
    """A side whose step n has micro-steps (loss, clip norm or None, scale) and a grad norm."""
    events: list[dict] = []
    for n, step in enumerate(steps):
        for m, (loss, clip, scale) in enumerate(step["micro"]):
            events.append({"ev": "backward", "step": n, "micro": m, "loss": loss, "scale": scale})
            if clip is not None:
                events.append({"ev": "clip", "step": n, "micro": m, "norm": clip})
        events.append(
            {"ev": "step", "opt": 0, "n": n, "step": n, "applied": True, "grad_norm": step["grad"]}
        )
    params = steps[-1].get("params", 1.0)
    events.append({"ev": "params", "when": "final", "params": [[[params, params, str(params)]]]})
    events.append({"ev": "end", "reason": "stopped"})
    return SideRun(SideSpec(label, Path("."), []), 0, False, 0.0, "", "", True, ranks={"0": events})


def accumulation(clips_at=(0, 1, 2), loss=(1.0, 0.9), grad=(2.0, 1.5), scale=65536.0, params=1.0):
    """Two steps of three micro-steps, clipping at the given micro-steps."""
    return [
        {
            "micro": [(loss[n] + m, 3.0 + n if m in clips_at else None, scale) for m in range(3)],
            "grad": grad[n],
            "params": params,
        }
        for n in range(2)
    ]


def row(judgement, metric):
    return next(r for r in judgement.comparison.rows if r.metric == metric)


def test_clip_records_are_paired_by_step_and_extras_reported():
    original = side("original", accumulation(clips_at=(0, 1, 2)))
    rewritten = side("rewritten", accumulation(clips_at=(2,)))
    plain = evaluate(original, rewritten, None, "exact", Tolerances(near_rtol=0))
    assert (plain.exit_code, plain.verdict) == (0, "PASS-EXACT")
    clip = row(plain, "clip_norm")
    assert (clip.status, clip.compared, clip.announced) == ("extra", 2, [])
    assert (
        clip.extra
        == "original recorded 6, rewritten 2; only in the original: 4 at micro-steps 0, 1"
    )

    labelled = evaluate(
        original, rewritten, None, "exact", Tolerances(), Announced(report(CLIP_MOVED))
    )
    assert labelled.verdict == "PASS-EXACT"
    assert row(labelled, "clip_norm").announced == ["A2N105 (train.py:7)"]


def test_a_paired_diagnostic_that_differs_still_fails():
    original = side("original", accumulation(clips_at=(2,)))
    scaled = accumulation(clips_at=(2,))
    scaled[0]["micro"][2] = (3.0, 65536.0 * 3.0, 65536.0)
    judgement = evaluate(original, side("rewritten", scaled), None, "exact", Tolerances())
    assert judgement.verdict == "FAIL" and row(judgement, "clip_norm").index == 0


def test_training_records_at_other_micro_steps_fail_as_structure():
    original = side("original", accumulation())
    moved = accumulation()
    moved[1]["micro"] = moved[1]["micro"][:2]
    moved[0]["micro"].append(moved[0]["micro"][-1])
    judgement = evaluate(original, side("rewritten", moved), None, "exact", Tolerances())
    loss = row(judgement, "loss")
    assert (judgement.verdict, loss.status, loss.index) == ("FAIL", "count", 3)
    assert "belongs to another step or micro-step" in loss.detail


def test_an_announced_scale_difference_passes_as_announced_without_an_envelope():
    original = side("original", accumulation(scale=65536.0))
    rewritten = side("rewritten", accumulation(scale=32768.0))
    strict = evaluate(original, rewritten, None, "exact", Tolerances())
    assert strict.verdict == "FAIL"
    judgement = evaluate(
        original, rewritten, None, "exact", Tolerances(), Announced(report(ONE_SCALE))
    )
    assert (judgement.exit_code, judgement.verdict, judgement.needs_fp32) == (
        0,
        "PASS-ANNOUNCED",
        False,
    )
    scale = row(judgement, "loss_scale")
    assert scale.status == "announced" and scale.announced == ["A2N102 (train.py:7)"]
    assert scale.detail == "not judged by the fp32 envelope"


def test_announced_differences_are_judged_by_the_fp32_envelope():
    original = side("original", accumulation(clips_at=(0, 1, 2), loss=(1.0, 0.9), grad=(2.0, 1.5)))
    moved = side("rewritten", accumulation(clips_at=(2,), loss=(1.0, 0.9001), grad=(2.0002, 1.5)))
    announced = Announced(report(CLIP_MOVED))
    first = evaluate(original, moved, None, "exact", Tolerances(), announced)
    assert (first.verdict, first.needs_fp32) == ("FAIL", True)

    wide = side("fp32", accumulation(loss=(1.0, 0.91), grad=(2.02, 1.5)))
    passed = evaluate(original, moved, wide, "exact", Tolerances(), announced)
    assert (passed.exit_code, passed.verdict) == (0, "PASS-ANNOUNCED")
    assert row(passed, "grad_norm/opt0").status == "announced"
    assert row(passed, "loss").status == "announced" and row(passed, "loss").announced == []
    assert row(passed, "loss").detail.startswith("within the fp32 envelope")

    narrow = side("fp32", accumulation(loss=(1.0, 0.9), grad=(2.0, 1.5)))
    failed = evaluate(original, moved, narrow, "exact", Tolerances(), announced)
    assert failed.verdict == "FAIL"
    assert row(failed, "grad_norm/opt0").detail.startswith("beyond the fp32 envelope")
    assert failed.message.endswith("beyond the fp32 envelope (announced: A2N105 (train.py:7))")


@pytest.mark.parametrize(
    ("finding", "changed"),
    [(CLIP_MOVED, {"loss": (1.001, 0.9)}), (ONE_SCALE, {"grad": (2.5, 1.5)})],
    ids=["loss-first-clip-announced", "gradient-first-scale-announced"],
)
def test_a_first_difference_nobody_announced_fails_without_an_fp32_run(finding, changed):
    original = side("original", accumulation())
    rewritten = side("rewritten", accumulation(**changed))
    judgement = evaluate(
        original, rewritten, None, "exact", Tolerances(), Announced(report(finding))
    )
    assert (judgement.verdict, judgement.needs_fp32) == ("FAIL", False)


def test_cast_list_announcements_explain_nothing_on_the_stand_in():
    original = side("original", accumulation())
    rewritten = side("rewritten", accumulation(loss=(1.001, 0.9)))
    stand_in = evaluate(
        original, rewritten, None, "exact", Tolerances(), Announced(report(AUTOCAST))
    )
    assert (stand_in.verdict, row(stand_in, "loss").announced) == ("FAIL", [])
    fp32 = side("fp32", accumulation(loss=(1.01, 0.9)))
    real_apex = evaluate(
        original, rewritten, fp32, "envelope", Tolerances(), Announced(report(AUTOCAST), False)
    )
    assert real_apex.verdict == "PASS-ENVELOPE"
    assert row(real_apex, "loss").announced == ["A2N106 (train.py:7)"]


def test_only_numerics_findings_that_were_made_are_announcements():
    assert report(CLIP_MOVED, tier="safe") == []
    todo = report({**CLIP_MOVED, "todo": True})
    assert todo == []
    (one,) = report(CLIP_MOVED)
    assert (one.code, one.path, one.line) == ("A2N105", "train.py", 7)
    assert one.describe().startswith("A2N105 train.py:7: clipping moved")
    with pytest.raises(HarnessError, match="not a JSON report"):
        parse_report({"verdict": "PASS"}, "x.json")
