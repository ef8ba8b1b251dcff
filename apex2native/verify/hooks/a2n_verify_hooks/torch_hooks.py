"""Recording hooks on torch: optimizers, GradScaler, backward and clip_grad_norm_.

Patched: `torch.optim.Optimizer.__init__` (creation order gives each optimizer its index),
the global optimizer step pre/post hooks, `torch.amp.GradScaler.__init__/scale/step`,
`torch.Tensor.backward`, `torch.autograd.backward`, and `torch.nn.utils.clip_grad_norm_`
(also in `torch.nn.utils.clip_grad`).
"""

from __future__ import annotations

import functools

import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from .recorder import Recorder


def _install_optimizer_hooks(rec: Recorder) -> None:
    orig_init = torch.optim.Optimizer.__init__

    @functools.wraps(orig_init)
    def __init__(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        rec.index(self)
        if rec.skip_mask:
            _install_replay(rec, self)

    torch.optim.Optimizer.__init__ = __init__
    register_optimizer_step_pre_hook(lambda opt, args, kwargs: rec.on_pre_step(opt))
    register_optimizer_step_post_hook(lambda opt, args, kwargs: rec.on_post_step(opt))


def _install_replay(rec: Recorder, optimizer) -> None:
    bound = optimizer.step

    def step(*args, **kwargs):
        if rec.replay_skips(optimizer):
            if rec.begin(optimizer, direct=False):
                rec.end()
            return None
        return bound(*args, **kwargs)

    optimizer.step = step


def _install_scaler_hooks(rec: Recorder) -> None:
    cls = torch.amp.GradScaler
    orig_init, orig_scale, orig_step = cls.__init__, cls.scale, cls.step

    @functools.wraps(orig_init)
    def __init__(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        rec.track_scaler(self)

    @functools.wraps(orig_scale)
    def scale(self, outputs):
        result = orig_scale(self, outputs)
        if isinstance(outputs, torch.Tensor):
            current = getattr(self, "_scale", None) if self._enabled else None
            rec.set_pending(
                outputs, float(current.item()) if current is not None else 1.0, "scaler"
            )
        return result

    @functools.wraps(orig_step)
    def step(self, optimizer, *args, **kwargs):
        began = rec.begin(optimizer, direct=False)
        result = orig_step(self, optimizer, *args, **kwargs)
        if began:
            rec.end()
        return result

    cls.__init__, cls.scale, cls.step = __init__, scale, step


def _install_backward_hooks(rec: Recorder) -> None:
    orig_tensor_backward = torch.Tensor.backward
    orig_autograd_backward = torch.autograd.backward

    @functools.wraps(orig_tensor_backward)
    def tensor_backward(self, *args, **kwargs):
        if rec.in_backward:
            return orig_tensor_backward(self, *args, **kwargs)
        rec.in_backward = True
        try:
            rec.on_backward(self)
            return orig_tensor_backward(self, *args, **kwargs)
        finally:
            rec.in_backward = False

    @functools.wraps(orig_autograd_backward)
    def autograd_backward(tensors, *args, **kwargs):
        if rec.in_backward:
            return orig_autograd_backward(tensors, *args, **kwargs)
        first = tensors if isinstance(tensors, torch.Tensor) else next(iter(tensors), None)
        rec.in_backward = True
        try:
            if isinstance(first, torch.Tensor):
                rec.on_backward(first)
            return orig_autograd_backward(tensors, *args, **kwargs)
        finally:
            rec.in_backward = False

    torch.Tensor.backward = tensor_backward
    torch.autograd.backward = autograd_backward


def _install_clip_hook(rec: Recorder) -> None:
    clip_module = torch.nn.utils.clip_grad
    orig_clip = clip_module.clip_grad_norm_

    @functools.wraps(orig_clip)
    def clip_grad_norm_(parameters, max_norm, *args, **kwargs):
        norm = orig_clip(parameters, max_norm, *args, **kwargs)
        rec.on_clip(norm)
        return norm

    clip_module.clip_grad_norm_ = clip_grad_norm_
    torch.nn.utils.clip_grad_norm_ = clip_grad_norm_


def install(rec: Recorder) -> None:
    """Install every recording hook on torch for this process."""
    _install_optimizer_hooks(rec)
    _install_scaler_hooks(rec)
    _install_backward_hooks(rec)
    _install_clip_hook(rec)
