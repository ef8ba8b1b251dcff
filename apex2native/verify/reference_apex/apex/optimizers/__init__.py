"""Stand-ins for `apex.optimizers`: the torch optimizers with the same update rule."""

from __future__ import annotations

import torch


def FusedAdam(
    params,
    lr=1e-3,
    bias_correction=True,
    betas=(0.9, 0.999),
    eps=1e-8,
    adam_w_mode=True,
    weight_decay=0.0,
    amsgrad=False,
    set_grad_none=True,
):
    if amsgrad:
        raise RuntimeError("FusedAdam does not support the AMSGrad variant.")
    cls = torch.optim.AdamW if adam_w_mode else torch.optim.Adam
    return cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def FusedSGD(
    params,
    lr=0.001,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov=False,
    wd_after_momentum=False,
    materialize_master_grads=True,
    set_grad_none=False,
):
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
    )


def FusedLAMB(*args, **kwargs):
    raise NotImplementedError("The apex2native reference apex has no FusedLAMB (no torch twin).")
