"""`handle.wrap_optimizer(opt, num_loss)`: the pre-0.1 API's optimizer wrapper.

apex kept it working after the new API arrived: one dynamic LossScaler per loss; leaving
`scale_loss` unscales the new gradients and decides whether the next step is skipped;
`step` skips once when any loss overflowed. Other attributes are the wrapped optimizer's.
"""

from __future__ import annotations

import contextlib

from ._amp_state import maybe_print
from .scaler import LossScaler


class OptimWrapper:
    def __init__(self, optimizer, amp_handle, num_loss: int) -> None:
        self._optimizer = optimizer
        self._amp_handle = amp_handle
        self._num_loss = num_loss
        self._loss_idx = 0
        self._skip_next = [False] * num_loss
        self._loss_scaler = [LossScaler("dynamic") for _ in range(num_loss)]

    def _params(self):
        return [p for group in self._optimizer.param_groups for p in group["params"]]

    @contextlib.contextmanager
    def scale_loss(self, loss):
        if not self._amp_handle.is_active():
            yield loss
            return
        self._amp_handle._clear_cache()
        cached = []
        if self._loss_idx > 0:
            cached = [None if p.grad is None else p.grad.detach().clone() for p in self._params()]
            self._optimizer.zero_grad()
        scaler = self._loss_scaler[self._loss_idx]
        loss_scale = scaler.loss_scale()
        yield loss * loss_scale
        scaler.clear_overflow_state()
        grads = [p.grad for p in self._params() if p.grad is not None]
        if grads:
            scaler.unscale(grads, grads, loss_scale, models_are_masters=True)
        self._skip_next[self._loss_idx] = scaler.update_scale()
        self._loss_idx += 1
        for p, grad in zip(self._params(), cached):
            if grad is not None:
                p.grad.add_(grad)

    def step(self, closure=None):
        if not self._amp_handle.is_active():
            return self._optimizer.step(closure=closure)
        self._loss_idx = 0
        self._amp_handle._clear_cache()
        if closure is not None:
            raise NotImplementedError(
                "The `closure` argument is unsupported by the amp optimizer wrapper."
            )
        if any(self._skip_next):
            maybe_print("Gradient overflow, skipping update")
            self._skip_next = [False] * self._num_loss
            return None
        return self._optimizer.step()

    def zero_grad(self, *args, **kwargs):
        return self._optimizer.zero_grad(*args, **kwargs)

    def state_dict(self):
        return self._optimizer.state_dict()

    def load_state_dict(self, state_dict):
        return self._optimizer.load_state_dict(state_dict)

    def __getattr__(self, attr):
        return getattr(self._optimizer, attr)
