"""`apex.fp16_utils`: the manual-`.half()` recipe's optimizer wrapper, as apex ran it.

`FP16_Optimizer` keeps fp32 master copies of the fp16 parameters inside the wrapped
optimizer, scales the loss, copies and unscales the fp16 gradients into the masters (one
apex `LossScaler`, dynamic or static), skips the step on overflow, and copies the masters
back into the fp16 model after each step.
"""

from __future__ import annotations

import torch

from ..amp._amp_state import maybe_print
from ..amp.scaler import LossScaler

__all__ = ["FP16_Optimizer"]


class FP16_Optimizer:
    def __init__(
        self,
        init_optimizer,
        static_loss_scale=1.0,
        dynamic_loss_scale=False,
        dynamic_loss_args=None,
        verbose=True,
    ):
        self.verbose = verbose
        self.optimizer = init_optimizer
        self.fp16_groups, self.fp32_from_fp16_groups, self.fp32_from_fp32_groups = [], [], []
        for group in self.optimizer.param_groups:
            fp16, masters, fp32 = [], [], []
            for i, param in enumerate(group["params"]):
                if not param.requires_grad:
                    continue
                if param.dtype == torch.float16:
                    fp16.append(param)
                    master = param.detach().clone().float()
                    master.requires_grad = True
                    group["params"][i] = master
                    masters.append(master)
                    if param in self.optimizer.state:
                        self.optimizer.state[master] = self.optimizer.state.pop(param)
                elif param.dtype == torch.float32:
                    fp32.append(param)
                else:
                    raise TypeError(f"Wrapped parameters must be fp16 or fp32, got {param.dtype}")
            self.fp16_groups.append(fp16)
            self.fp32_from_fp16_groups.append(masters)
            self.fp32_from_fp32_groups.append(fp32)
        self.all_fp16_params = [p for g in self.fp16_groups for p in g]
        self.all_fp32_from_fp16_params = [p for g in self.fp32_from_fp16_groups for p in g]
        self.all_fp32_from_fp32_params = [p for g in self.fp32_from_fp32_groups for p in g]
        self.optimizer.load_state_dict(self.optimizer.state_dict())
        if dynamic_loss_scale:
            self.dynamic_loss_scale = True
            self.loss_scaler = LossScaler("dynamic", **(dynamic_loss_args or {}))
        else:
            self.dynamic_loss_scale = False
            self.loss_scaler = LossScaler(static_loss_scale)
        self.overflow = False

    def zero_grad(self, set_grads_to_None=False):
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if set_grads_to_None:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.detach_()
                    p.grad.zero_()
        for param in self.all_fp16_params:
            if set_grads_to_None:
                param.grad = None
            elif param.grad is not None:
                param.grad.detach_()
                param.grad.zero_()

    def backward(self, loss, update_master_grads=True, retain_graph=False):
        (loss.float() * self.loss_scaler.loss_scale()).backward(retain_graph=retain_graph)
        if update_master_grads:
            self.update_master_grads()

    def update_master_grads(self):
        self.loss_scaler.clear_overflow_state()
        model_grads, master_grads = [], []
        for model, master in zip(self.all_fp16_params, self.all_fp32_from_fp16_params):
            if model.grad is not None:
                if master.grad is None:
                    master.grad = torch.empty_like(master)
                model_grads.append(model.grad)
                master_grads.append(master.grad)
        if model_grads:
            self.loss_scaler.unscale(model_grads, master_grads, self.loss_scaler.loss_scale())
        grads = [p.grad for p in self.all_fp32_from_fp32_params if p.grad is not None]
        if grads:
            self.loss_scaler.unscale(grads, grads, self.loss_scaler.loss_scale())
        self.overflow = self.loss_scaler.update_scale()

    def clip_master_grads(self, max_norm, norm_type=2):
        if self.overflow:
            return -1
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        return torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)

    def step(self, closure=None):
        if closure is not None:
            raise NotImplementedError("the stand-in FP16_Optimizer takes no closure")
        if self.overflow:
            maybe_print(
                "Gradient overflow.  Skipping step, reducing loss scale to "
                f"{self.loss_scaler.loss_scale()}"
            )
            return None
        result = self.optimizer.step()
        with torch.no_grad():
            for model, master in zip(self.all_fp16_params, self.all_fp32_from_fp16_params):
                model.copy_(master)
        return result

    @property
    def loss_scale(self):
        return self.loss_scaler.loss_scale()

    def state_dict(self):
        return {
            "loss_scaler": self.loss_scaler,
            "dynamic_loss_scale": self.dynamic_loss_scale,
            "overflow": self.overflow,
            "optimizer_state_dict": self.optimizer.state_dict(),
            "fp32_from_fp16": self.fp32_from_fp16_groups,
        }

    @property
    def param_groups(self):
        return self.optimizer.param_groups
