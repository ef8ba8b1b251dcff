"""Every fixture's correct rewrite is bitwise equal to its apex original, and every
mutation twin is reported as not equivalent, even with the rewrite's announcements at hand."""

from __future__ import annotations

import pytest
from verify_helpers import (
    FIXTURES,
    STEPS,
    all_mutants,
    cases,
    checkpoint,
    compare_mode,
    events,
    fixture_specs,
    mutants,
    run_forked,
)

from apex2native.verify.announced import find_report, load_report
from apex2native.verify.judge import Announced, evaluate
from apex2native.verify.resume import inspect_checkpoint, resume_rows
from apex2native.verify.tolerances import Tolerances
from apex2native.verify.trace import is_diagnostic


def announced(case: str) -> Announced:
    """What the rewrite report beside the fixture's rewritten tree announces (if any)."""
    report = find_report(None, FIXTURES / case / "rewritten")
    return Announced(load_report(report) if report else [])


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory, fork_server):
    """Run each fixture's original, rewrite and mutants once, on demand, each in a fork of a
    process that has imported torch (the launch through `run_sides` is tested by the hook and
    CLI tests)."""
    cache: dict = {}

    def get(case: str) -> dict:
        if case not in cache:
            tmp = tmp_path_factory.mktemp(case)
            runs = run_forked(fixture_specs(case, tmp), tmp / "records", fork_server)
            cache[case] = {r.spec.label: r for r in runs}
        return cache[case]

    return get


def test_every_fixture_has_mutants():
    assert len(cases()) >= 12
    for case in cases():
        twins = mutants(case)
        assert twins and all(t["why"] and t["edits"] for t in twins.values()), case


EXACT = [case for case in cases() if compare_mode(case) == "exact"]
TOLERANT = [case for case in cases() if compare_mode(case) != "exact"]


@pytest.mark.parametrize("case", EXACT)
def test_correct_rewrite_is_bitwise_equal(case, fixture_runs):
    runs = fixture_runs(case)
    original, rewritten = runs["original"], runs["rewritten"]
    assert original.status == "stopped", original.stderr_tail
    assert events(original, "start")[0]["apex"] == "reference"
    judgement = evaluate(
        original, rewritten, None, "exact", Tolerances(near_rtol=0.0), announced(case)
    )
    assert (judgement.exit_code, judgement.verdict) == (0, "PASS-EXACT"), judgement.message
    rows = judgement.comparison.rows
    assert all(row.status in ("equal", "extra") for row in rows)
    assert all(row.announced for row in rows if row.status == "extra")


@pytest.mark.parametrize("case", TOLERANT)
def test_correct_rewrite_is_within_the_fixed_tolerances(case, fixture_runs):
    """A rewrite that changes the numbers by design (fp16 weights become fp32 weights under
    autocast) trains the same within the fixed tolerances."""
    runs = fixture_runs(case)
    original, rewritten = runs["original"], runs["rewritten"]
    assert original.status == "stopped", original.stderr_tail
    judgement = evaluate(original, rewritten, None, compare_mode(case), Tolerances())
    assert (judgement.exit_code, judgement.verdict) == (0, "PASS-FIXED"), judgement.message
    assert not all(row.status == "equal" for row in judgement.comparison.rows)


@pytest.mark.parametrize(("case", "mutant"), all_mutants())
def test_mutation_twin_fails(case, mutant, fixture_runs):
    """A twin fails where training differs (or crashes): never on a diagnostic alone."""
    runs = fixture_runs(case)
    judgement = evaluate(
        runs["original"],
        runs[f"mutant-{mutant}"],
        None,
        compare_mode(case),
        Tolerances(),
        announced(case),
    )
    assert (judgement.exit_code, judgement.verdict) == (1, "FAIL"), judgement.message
    if judgement.comparison is not None:
        failed = [row.metric for row in judgement.comparison.rows if row.failed]
        assert any(not is_diagnostic(metric) for metric in failed), failed


def _applied(run, opt=0):
    return [e["applied"] for e in events(run, "step") if e["opt"] == opt]


def test_fixtures_exercise_what_they_claim(fixture_runs):
    """Guards against fixtures that silently stop testing their feature."""
    clipping = fixture_runs("clipping")["original"]
    assert len(events(clipping, "clip")) == STEPS + 1

    accumulation = fixture_runs("accumulation")["original"]
    assert len(events(accumulation, "backward")) == 3 * (STEPS + 1)
    assert len(events(accumulation, "clip")) == STEPS + 1

    two = fixture_runs("two_models")["original"]
    assert len(_applied(two, 0)) == len(_applied(two, 1)) == STEPS

    forced = fixture_runs("forced_overflow")["original"]
    assert [i for i, ok in enumerate(_applied(forced)) if not ok] == [2, 3, 6]
    scales = [e["scale"] for e in events(forced, "backward")]
    assert scales[:5] == [65536.0, 65536.0, 65536.0, 32768.0, 16384.0]

    checkpoint = fixture_runs("checkpoint")["original"]
    assert _applied(checkpoint)[4] is False
    assert [e["scale"] for e in events(checkpoint, "backward")][5] == 65536.0

    static = fixture_runs("static_scale")["original"]
    assert {e["scale"] for e in events(static, "backward")} == {128.0}

    resumed = fixture_runs("resume")["original"]
    scales = [e["scale"] for e in events(resumed, "backward")]
    assert scales[:5] == [1024.0, 1024.0, 1024.0, 2048.0, 2048.0]

    fp16 = fixture_runs("fp16_optimizer")["original"]
    assert len(events(fp16, "clip")) == STEPS + 1
    assert {e["scale"] for e in events(fp16, "backward")} == {65536.0}

    micro = fixture_runs("micro_step_clip")
    assert [e["micro"] for e in events(micro["original"], "clip")] == [0, 1, 2] * (STEPS + 1)
    assert [e["micro"] for e in events(micro["rewritten"], "clip")] == [2] * (STEPS + 1)


def test_mutant_edits_change_the_rewrite(tmp_path):
    from verify_helpers import FIXTURES, materialize

    for case, mutant in all_mutants():
        tree = materialize(case, mutant, tmp_path)
        rewritten = (FIXTURES / case / "rewritten" / "train.py").read_text()
        assert (tree / "train.py").read_text() != rewritten, (case, mutant)


def test_the_rewrite_resumes_from_the_apex_checkpoint_with_its_scale(fixture_runs):
    runs = fixture_runs("resume")
    ckpt = inspect_checkpoint(str(checkpoint("resume")))
    assert (ckpt.scale, ckpt.unskipped, ckpt.where) == (1024.0, 1997, "checkpoint['amp']")
    (resumed,) = resume_rows(runs["original"], runs["rewritten"], ckpt)
    assert resumed.status == "equal"
    (fresh,) = resume_rows(runs["original"], runs["mutant-no_scaler_restore"], ckpt)
    assert fresh.failed and (fresh.original, fresh.rewritten) == (1024.0, 65536.0)
