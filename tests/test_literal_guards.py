"""A call's literal arguments decide the `if` tests of the def it calls, or leave them open."""

from __future__ import annotations

import pytest

from apex2native.literal_guards import arm_skipped, literal_bindings

PARAMS = ["mode", "model", "optimizer", "fp16"]


@pytest.mark.parametrize(
    "test, taken, args, skipped",
    [
        ("mode in ['train']", True, ["'valid'"], True),
        ("mode in ['train']", True, ["'train'"], False),
        ("mode == 'train'", False, ["'train'"], True),  # the `else:` of a training test
        ("mode != 'eval' and fp16", True, ["'eval'", "m", "o", "x"], True),
        ("mode == 'train' or fp16", True, ["'valid'", "m", "o", "x"], False),  # fp16 unknown
        ("mode != 'eval' and mode != 'test'", True, ["'test'"], True),
        ("optimizer is not None", True, ["'train'", "m", "None"], True),
        ("mode.startswith('tr')", True, ["'valid'"], False),  # calls are never evaluated
        ("mode in modes", True, ["'valid'"], False),
        ("mode == 'train'", True, ["mode"], False),  # not a literal
        ("(mode or 'train') == 'train'", True, ["None"], False),  # `or` yields an operand
        ("(mode and 'eval') == 'eval'", True, ["'x'"], False),
        ("(fp16 or mode) == 'train'", True, ["'train'"], False),  # fp16 unknown first
    ],
)
def test_literal_arguments_decide_a_test_or_leave_it_open(test, taken, args, skipped):
    bindings = literal_bindings(PARAMS, args, {}, frozenset())
    assert arm_skipped(test, taken, bindings) is skipped


def test_keywords_bind_and_a_rebound_parameter_is_never_trusted():
    assert literal_bindings(PARAMS, [], {"mode": "'test'"}, frozenset()) == {"mode": "test"}
    assert literal_bindings(PARAMS, ["'test'"], {}, frozenset({"mode"})) == {}


def test_a_mutable_literal_is_no_literal():
    """`phases.extend(extra)` may run before the test: only immutable values are trusted."""
    assert literal_bindings(PARAMS, ["['eval']", "('a', 1)"], {}, frozenset()) == {
        "model": ("a", 1)
    }


def test_a_list_is_not_a_tuple():
    bindings = literal_bindings(PARAMS, ["('train',)"], {}, frozenset())
    assert arm_skipped("mode == ['train']", True, bindings)
    assert not arm_skipped("mode == ('train',)", True, bindings)


def test_a_parameter_left_out_takes_its_literal_default():
    defaults = (("mode", "'train'"), ("fp16", "flags.fp16"))
    assert literal_bindings(PARAMS, [], {}, frozenset(), defaults) == {"mode": "train"}
    assert literal_bindings(PARAMS, ["'test'"], {}, frozenset(), defaults) == {"mode": "test"}
