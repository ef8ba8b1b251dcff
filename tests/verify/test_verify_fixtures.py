"""Every fixture's correct rewrite is bitwise equal to its apex original, and every
mutation twin is reported as not equivalent."""

from __future__ import annotations

import pytest
from verify_helpers import STEPS, all_mutants, cases, events, fixture_specs, mutants, run

from apex2native.verify.session import evaluate
from apex2native.verify.tolerances import Tolerances


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory):
    """Run each fixture's original, rewrite and mutants once (concurrently), on demand."""
    cache: dict = {}

    def get(case: str) -> dict:
        if case not in cache:
            tmp = tmp_path_factory.mktemp(case)
            runs = run(fixture_specs(case, tmp), tmp / "records")
            cache[case] = {r.spec.label: r for r in runs}
        return cache[case]

    return get


def test_every_fixture_has_mutants():
    assert len(cases()) >= 8
    for case in cases():
        assert {"no_update", "step_on_scaled_grads"} <= set(mutants(case)), case


@pytest.mark.parametrize("case", cases())
def test_correct_rewrite_is_bitwise_equal(case, fixture_runs):
    runs = fixture_runs(case)
    original, rewritten = runs["original"], runs["rewritten"]
    assert original.status == "stopped", original.stderr_tail
    assert events(original, "start")[0]["apex"] == "reference"
    code, verdict, message, comparison = evaluate(
        original, rewritten, None, "exact", Tolerances(near_rtol=0.0)
    )
    assert (code, verdict) == (0, "PASS-EXACT"), message
    assert all(row.status == "equal" for row in comparison.rows)


@pytest.mark.parametrize(("case", "mutant"), all_mutants())
def test_mutation_twin_fails(case, mutant, fixture_runs):
    runs = fixture_runs(case)
    code, verdict, message, _ = evaluate(
        runs["original"], runs[f"mutant-{mutant}"], None, "exact", Tolerances()
    )
    assert (code, verdict) == (1, "FAIL"), message


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


def test_mutant_edits_change_the_rewrite(tmp_path):
    from verify_helpers import FIXTURES, materialize

    for case, mutant in all_mutants():
        tree = materialize(case, mutant, tmp_path)
        rewritten = (FIXTURES / case / "rewritten" / "train.py").read_text()
        assert (tree / "train.py").read_text() != rewritten, (case, mutant)
