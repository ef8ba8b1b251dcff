"""`--select` / `--ignore`: the step and unscale rules only extend the scaled backwards other
rules make, so they run exactly when one of those rules runs."""

from __future__ import annotations

from apex2native.rules import rules_for


def codes(select=(), ignore=()) -> set[str]:
    return {rule.code for rule in rules_for(tuple(select), tuple(ignore))}


def test_every_rule_runs_by_default():
    assert {"A2N103", "A2N104", "A2N105", "A2N117"} <= codes()


def test_ignoring_fp16_optimizer_keeps_what_scale_loss_needs():
    chosen = codes(ignore=["A2N117"])
    assert "A2N117" not in chosen
    assert {"A2N103", "A2N104", "A2N105"} <= chosen


def test_ignoring_scale_loss_keeps_what_fp16_optimizer_needs():
    chosen = codes(ignore=["A2N103"])
    assert {"A2N117", "A2N104", "A2N105"} <= chosen


def test_selecting_one_backward_rule_brings_its_step_and_unscale():
    assert codes(select=["A2N117"]) == {"A2N117", "A2N104", "A2N105"}


def test_step_and_unscale_alone_have_no_sites_to_extend():
    assert codes(select=["A2N104", "A2N105"]) == set()


def test_ignoring_both_backward_rules_drops_step_and_unscale():
    chosen = codes(ignore=["A2N103", "A2N117"])
    assert not chosen & {"A2N103", "A2N117", "A2N104", "A2N105"}
