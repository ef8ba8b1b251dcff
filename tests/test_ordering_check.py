"""The ordering part of the repository check: on every path through a function, the scaled
backward comes before `unscale_`, and `unscale_` before a gradient read and the step."""

from __future__ import annotations

import ast
import textwrap

from apex2native.consistency.ordering import _Flow


def problem(code: str, access: str = "scaler") -> str | None:
    return _Flow(access).check(ast.parse(textwrap.dedent(code)).body)


def test_a_clip_between_a_scaled_backward_and_the_step_needs_unscale():
    found = problem("""
        scaler.scale(loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        """)
    assert found == "`clip_grad_norm_(...)` can read gradients before scaler.unscale_"


def test_unscale_before_the_clip_is_in_order():
    assert problem("""
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            """) is None


def test_accumulation_unscales_once_at_the_step_boundary():
    assert problem("""
            for i, x in enumerate(loader):
                scaler.scale(model(x).sum()).backward()
                if (i + 1) % accumulation == 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    scaler.step(optimizer)
                    scaler.update()
            """) is None


def test_a_clip_on_every_micro_step_reads_scaled_gradients():
    assert problem("""
        for i, x in enumerate(loader):
            scaler.scale(model(x).sum()).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if (i + 1) % accumulation == 0:
                scaler.unscale_(optimizer)
                scaler.step(optimizer)
                scaler.update()
        """)


def test_a_plain_fp32_backward_has_nothing_to_order():
    assert problem("""
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            """) is None


def test_another_scalers_calls_are_not_this_ones():
    assert problem("""
        scaler.scale(loss).backward()
        other.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        """)
