"""Comparison settings and their defaults (see docs/verify.md, "Tolerances")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerances:
    """Defaults follow native-amp-and-verification.md, section 2.5 and the harness design."""

    near_rtol: float = 1e-6
    envelope_factor: float = 3.0
    envelope_floor: float = 1e-5
    fixed_first_loss_rtol: float = 2e-3
    fixed_loss_rtol: float = 1e-2
    fixed_grad_rtol: float = 5e-2
    median_ratio_low: float = 0.95
    median_ratio_high: float = 1.05
    fixed_skip_slack: int = 1
