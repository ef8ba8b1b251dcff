"""Optimizer patching: grad stashing, unscaling after backward and O2 fp32 master weights."""

from __future__ import annotations

import types

import torch


class AmpOptimizerState:
    """The `_amp_stash` apex hangs on every processed optimizer."""


def _master_params_to_model_params(self) -> None:
    stash = self._amp_stash
    with torch.no_grad():
        for model, master in zip(stash.all_fp16_params, stash.all_fp32_from_fp16_params):
            model.data.copy_(master.data)


def _lazy_init_with_master_weights(self) -> None:
    stash = self._amp_stash
    stash.fp16_groups, stash.fp32_from_fp16_groups, stash.fp32_from_fp32_groups = [], [], []
    for group in self.param_groups:
        fp16_this, fp32_from_fp16_this, fp32_this = [], [], []
        for j, param in enumerate(group["params"]):
            if not param.requires_grad:
                continue
            if param.dtype is torch.float16:
                master = param.detach().clone().float()
                master.requires_grad = True
                group["params"][j] = master
                fp16_this.append(param)
                fp32_from_fp16_this.append(master)
                if param in self.state:
                    self.state[master] = self.state.pop(param)
            elif param.dtype is torch.float32:
                fp32_this.append(param)
                group["params"][j] = param
            else:
                raise TypeError(
                    "Optimizer's parameters must be either torch.cuda.FloatTensor or "
                    f"torch.cuda.HalfTensor. Received {param.type()}"
                )
        stash.fp16_groups.append(fp16_this)
        stash.fp32_from_fp16_groups.append(fp32_from_fp16_this)
        stash.fp32_from_fp32_groups.append(fp32_this)
    stash.all_fp16_params = [p for g in stash.fp16_groups for p in g]
    stash.all_fp32_from_fp16_params = [p for g in stash.fp32_from_fp16_groups for p in g]
    stash.all_fp32_from_fp32_params = [p for g in stash.fp32_from_fp32_groups for p in g]
    stash.all_fp32_from_fp32_grad_stash = [None for _ in stash.all_fp32_from_fp32_params]
    for param in stash.all_fp32_from_fp16_params:
        param.grad = None
    self.load_state_dict(self.state_dict())


def _post_backward_models_are_masters(scaler, params, stashed_grads) -> None:
    if scaler.loss_scale() == 1.0 and not scaler.dynamic:
        for i in range(len(stashed_grads)):
            stashed_grads[i] = None
        return
    needing_unscale, needing_stash, stashed = [], [], []
    for param, stashed_grad in zip(params, stashed_grads):
        if param.grad is None and stashed_grad is not None:
            param.grad = stashed_grad
        elif param.grad is not None and stashed_grad is None:
            needing_unscale.append(param.grad)
        elif param.grad is not None and stashed_grad is not None:
            needing_stash.append(param.grad)
            stashed.append(stashed_grad)
    if needing_unscale:
        scaler.unscale(
            needing_unscale,
            needing_unscale,
            None,
            models_are_masters=True,
            scale_override=scaler.loss_scale(),
        )
    if needing_stash:
        scaler.unscale_with_stashed(
            needing_stash, stashed, needing_stash, scale_override=(scaler.loss_scale(), 1.0, 1.0)
        )
    for i in range(len(stashed_grads)):
        stashed_grads[i] = None


def _prepare_backward_with_master_weights(self) -> None:
    stash = self._amp_stash
    self._amp_lazy_init()
    for param in stash.all_fp16_params:
        param.grad = None
    for i, param in enumerate(stash.all_fp32_from_fp32_params):
        stash.all_fp32_from_fp32_grad_stash[i] = param.grad
        param.grad = None


def _post_backward_with_master_weights(self, scaler) -> None:
    stash = self._amp_stash
    self._amp_lazy_init()
    fp16_needing, new_fp32, fp16_with_stash, preexisting = [], [], [], []
    for fp16_param, fp32_param in zip(stash.all_fp16_params, stash.all_fp32_from_fp16_params):
        if fp16_param.grad is not None and fp32_param.grad is None:
            fp32_param.grad = torch.empty_like(fp32_param)
            fp16_needing.append(fp16_param.grad)
            new_fp32.append(fp32_param.grad)
        elif fp16_param.grad is not None and fp32_param.grad is not None:
            fp16_with_stash.append(fp16_param.grad)
            preexisting.append(fp32_param.grad)
    if fp16_needing:
        scaler.unscale(fp16_needing, new_fp32, scaler.loss_scale(), models_are_masters=False)
    if fp16_with_stash:
        scaler.unscale_with_stashed(fp16_with_stash, preexisting, preexisting)
    _post_backward_models_are_masters(
        scaler, stash.all_fp32_from_fp32_params, stash.all_fp32_from_fp32_grad_stash
    )


def _lazy_init_no_master_weights(self) -> None:
    stash = self._amp_stash
    stash.all_fp16_params, stash.all_fp32_params = [], []
    for group in self.param_groups:
        for param in group["params"]:
            if param.dtype is torch.float16:
                stash.all_fp16_params.append(param)
            elif param.dtype is torch.float32:
                stash.all_fp32_params.append(param)
            else:
                raise TypeError(
                    "Optimizer's parameters must be either torch.cuda.FloatTensor or "
                    f"torch.cuda.HalfTensor. Received {param.type()}"
                )
    stash.all_fp16_grad_stash = [None for _ in stash.all_fp16_params]
    stash.all_fp32_grad_stash = [None for _ in stash.all_fp32_params]


def _prepare_backward_no_master_weights(self) -> None:
    stash = self._amp_stash
    self._amp_lazy_init()
    for params, grad_stash in (
        (stash.all_fp16_params, stash.all_fp16_grad_stash),
        (stash.all_fp32_params, stash.all_fp32_grad_stash),
    ):
        for i, param in enumerate(params):
            grad_stash[i] = param.grad
            param.grad = None


def _post_backward_no_master_weights(self, scaler) -> None:
    stash = self._amp_stash
    self._amp_lazy_init()
    for params, grad_stash in (
        (stash.all_fp16_params, stash.all_fp16_grad_stash),
        (stash.all_fp32_params, stash.all_fp32_grad_stash),
    ):
        _post_backward_models_are_masters(scaler, params, grad_stash)


def _amp_lazy_init(self) -> None:
    stash = self._amp_stash
    if not stash.lazy_init_called:
        self._lazy_init_maybe_master_weights()
        stash.lazy_init_called = True


def _process_optimizer(optimizer, properties):
    """Attach apex's stash and backward hooks; with master weights also patch step/zero_grad."""
    if hasattr(optimizer, "_amp_stash"):
        raise RuntimeError("A given optimizer should only be passed through amp.initialize once.")
    optimizer._amp_stash = AmpOptimizerState()
    optimizer._amp_stash.lazy_init_called = False
    optimizer._amp_stash.already_patched = False
    optimizer._amp_stash.params_have_scaled_gradients = False
    optimizer._amp_lazy_init = types.MethodType(_amp_lazy_init, optimizer)

    if properties.master_weights:
        optimizer._lazy_init_maybe_master_weights = types.MethodType(
            _lazy_init_with_master_weights, optimizer
        )
        optimizer._master_params_to_model_params = types.MethodType(
            _master_params_to_model_params, optimizer
        )
        old_step = optimizer.step

        def new_step(self, closure=None):
            if closure is not None:
                raise RuntimeError("Currently, Amp does not support closure use with optimizers.")
            retval = old_step()
            self._master_params_to_model_params()
            for param in self._amp_stash.all_fp32_from_fp16_params:
                param.grad = None
            return retval

        optimizer.step = types.MethodType(new_step, optimizer)

        def new_zero_grad(self, set_to_none=None):
            stash = self._amp_stash
            self._amp_lazy_init()
            for param in stash.all_fp16_params + stash.all_fp32_from_fp32_params:
                if param.grad is not None:
                    param.grad.detach_()
                    param.grad.zero_()
            for param in stash.all_fp32_from_fp16_params:
                param.grad = None

        optimizer.zero_grad = types.MethodType(new_zero_grad, optimizer)
        optimizer._prepare_amp_backward = types.MethodType(
            _prepare_backward_with_master_weights, optimizer
        )
        optimizer._post_amp_backward = types.MethodType(
            _post_backward_with_master_weights, optimizer
        )
    else:
        optimizer._lazy_init_maybe_master_weights = types.MethodType(
            _lazy_init_no_master_weights, optimizer
        )
        optimizer._prepare_amp_backward = types.MethodType(
            _prepare_backward_no_master_weights, optimizer
        )
        optimizer._post_amp_backward = types.MethodType(_post_backward_no_master_weights, optimizer)
    return optimizer
