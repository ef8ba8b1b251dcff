"""Comparison rules on hand-made series: exact, near, envelope and fixed modes."""

from __future__ import annotations

import math

from apex2native.verify.compare import (
    bitwise_equal,
    compare_envelope,
    compare_exact,
    compare_fixed,
)
from apex2native.verify.tolerances import Tolerances
from apex2native.verify.trace import Series


def side(loss, applied=None, grad=None, params=None):
    applied = applied if applied is not None else [True] * len(loss)
    grad = grad if grad is not None else [1.0] * len(loss)
    steps = list(range(len(loss)))
    return {
        "loss": Series("loss", "float", list(loss), steps),
        "applied/opt0": Series("applied/opt0", "bool", list(applied), steps[: len(applied)]),
        "grad_norm/opt0": Series("grad_norm/opt0", "float", list(grad), steps[: len(grad)]),
        "final_params": Series("final_params", "params", params or [[1.0, 2.0, "ab"]], [0]),
    }


def row(comparison, metric):
    return next(r for r in comparison.rows if r.metric == metric)


def test_bitwise_equal_semantics():
    assert bitwise_equal(float("nan"), float("nan"))
    assert bitwise_equal(math.inf, math.inf)
    assert not bitwise_equal(math.inf, -math.inf)
    assert not bitwise_equal(1.0, 1.0 + 1e-16 * 4)
    assert not bitwise_equal(True, 1.0)
    assert not bitwise_equal(None, 0.0)
    assert bitwise_equal([1.0, 2.0, "h"], [1.0, 2.0, "h"])


def test_exact_pass_near_and_fail():
    a = side([1.0, 0.5, 0.25])
    assert compare_exact(a, side([1.0, 0.5, 0.25]), Tolerances()).verdict == "PASS-EXACT"

    near = side([1.0, 0.5 * (1 + 1e-7), 0.25], params=[[1.0, 2.0, "cd"]])
    result = compare_exact(a, near, Tolerances())
    assert result.verdict == "PASS-NEAR"
    assert row(result, "loss").status == "near" and row(result, "loss").index == 1

    assert compare_exact(a, near, Tolerances(near_rtol=0.0)).verdict == "FAIL"
    far = compare_exact(a, side([1.0, 0.6, 0.25]), Tolerances())
    assert far.verdict == "FAIL"
    assert (row(far, "loss").index, row(far, "loss").original) == (1, 0.5)


def test_exact_structure_must_match():
    a = side([1.0, 0.5, 0.25])
    fewer = compare_exact(a, side([1.0, 0.5]), Tolerances())
    assert row(fewer, "loss").status == "count" and fewer.verdict == "FAIL"
    masks = compare_exact(a, side([1.0, 0.5, 0.25], applied=[True, False, True]), Tolerances())
    assert row(masks, "applied/opt0").status == "differs"
    nan = compare_exact(a, side([1.0, float("nan"), 0.25]), Tolerances(near_rtol=1.0))
    assert row(nan, "loss").status == "differs"


def test_envelope_scales_with_the_fp32_deviation():
    a = side([1.0, 1.0, 1.0], grad=[2.0, 2.0, 2.0])
    c = side([1.0, 1.01, 1.0], grad=[2.0, 2.0, 2.0])
    tol = Tolerances()
    ok = side([1.0, 1.02, 1.029], grad=[2.0, 2.0, 2.0])
    assert compare_envelope(a, ok, c, tol).verdict == "PASS-ENVELOPE"
    too_early = side([1.0001, 1.0, 1.0], grad=[2.0, 2.0, 2.0])
    result = compare_envelope(a, too_early, c, tol)
    assert result.verdict == "FAIL" and row(result, "loss").index == 0
    too_far = side([1.0, 1.0, 1.04], grad=[2.0, 2.0, 2.0])
    assert row(compare_envelope(a, too_far, c, tol), "loss").index == 2


def test_envelope_checks_grad_norm_median_ratio():
    a = side([1.0] * 4, grad=[1.0, 1.0, 1.0, 1.0])
    c = side([1.0] * 4, grad=[1.1, 1.1, 1.1, 1.1])
    b = side([1.0] * 4, grad=[1.2, 1.2, 1.2, 1.2])
    result = compare_envelope(a, b, c, Tolerances(envelope_factor=10.0))
    assert row(result, "grad_norm/opt0").failed
    assert "median ratio" in row(result, "grad_norm/opt0").detail


def test_fixed_tolerances_and_skip_slack():
    a = side([1.0, 1.0, 1.0], applied=[True, False, True])
    b = side([1.001, 1.009, 0.995], applied=[True, True, True])
    assert compare_fixed(a, b, Tolerances()).verdict == "PASS-FIXED"
    first = compare_fixed(a, side([1.003, 1.0, 1.0], applied=[True, False, True]), Tolerances())
    assert row(first, "loss").index == 0
    skips = compare_fixed(
        side([1.0] * 3, applied=[False, False, True]),
        side([1.0] * 3, applied=[True, True, True]),
        Tolerances(),
    )
    assert row(skips, "applied/opt0").failed
