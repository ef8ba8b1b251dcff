"""LossScaler with apex's arithmetic: Python-float scale, x2 / /2, window 2000, cap 2**24."""

from __future__ import annotations

import torch


def _non_finite(tensors: list[torch.Tensor]) -> bool:
    return any(not bool(torch.isfinite(t).all()) for t in tensors)


class LossScaler:
    """One apex loss scaler; `update_scale` runs once per `scale_loss` exit."""

    warned_no_fused_kernel = True
    has_fused_kernel = False

    def __init__(
        self,
        loss_scale,
        init_scale: float = 2.0**16,
        scale_factor: float = 2.0,
        scale_window: int = 2000,
        min_loss_scale: float | None = None,
        max_loss_scale: float = 2.0**24,
    ) -> None:
        if loss_scale == "dynamic":
            self.dynamic = True
            self._loss_scale = min(max_loss_scale, init_scale)
        else:
            self.dynamic = False
            self._loss_scale = float(loss_scale)
        self._max_loss_scale = max_loss_scale
        self._min_loss_scale = min_loss_scale
        self._scale_seq_len = scale_window
        self._unskipped = 0
        self._has_overflow = False

    def loss_scale(self) -> float:
        return self._loss_scale

    def clear_overflow_state(self) -> None:
        self._has_overflow = False

    def unscale(
        self, model_grads, master_grads, unused_scale, models_are_masters=False, scale_override=None
    ) -> None:
        """master = model * (1/scale), flagging inf/NaN in the model grads."""
        if self._has_overflow:
            return
        scale = self._loss_scale if scale_override is None else scale_override
        if scale == 1.0 and models_are_masters and not self.dynamic:
            return
        inv = 1.0 / scale
        same = all(m is o for m, o in zip(model_grads, master_grads))
        if same and all(g.dtype == torch.float32 for g in model_grads):
            found = torch.zeros(1, dtype=torch.float32, device=model_grads[0].device)
            inv_t = torch.full((1,), inv, dtype=torch.float32, device=model_grads[0].device)
            torch._amp_foreach_non_finite_check_and_unscale_(model_grads, found, inv_t)
            overflow = bool(found.item())
        else:
            overflow = _non_finite(model_grads)
            for model, master in zip(model_grads, master_grads):
                master.copy_(model.float() * inv)
        if overflow and self.dynamic:
            self._has_overflow = True

    def unscale_with_stashed(
        self, model_grads, stashed_master_grads, master_grads, scale_override=None
    ) -> None:
        """master = model * (1/scale) + stashed, checking only the new model grads."""
        if self._has_overflow:
            return
        grads_have_scale, stashed_have_scale, out_scale = self._loss_scale, 1.0, 1.0
        if scale_override is not None:
            grads_have_scale, stashed_have_scale, out_scale = scale_override
        overflow = _non_finite(model_grads)
        a = out_scale / grads_have_scale
        b = out_scale / stashed_have_scale
        for model, stashed, master in zip(model_grads, stashed_master_grads, master_grads):
            master.copy_(model.float() * a + stashed.float() * b)
        if overflow and self.dynamic:
            self._has_overflow = True

    def update_scale(self) -> bool:
        """Apply apex's dynamic rule; return True when the next step must be skipped."""
        if self._has_overflow and self.dynamic:
            should_skip = True
            if self._min_loss_scale:
                self._loss_scale = max(self._min_loss_scale, self._loss_scale / 2.0)
            else:
                self._loss_scale = self._loss_scale / 2.0
            self._unskipped = 0
        else:
            should_skip = False
            self._unskipped += 1
        if self._unskipped == self._scale_seq_len and self.dynamic:
            self._loss_scale = min(self._max_loss_scale, self._loss_scale * 2.0)
            self._unskipped = 0
        return should_skip
