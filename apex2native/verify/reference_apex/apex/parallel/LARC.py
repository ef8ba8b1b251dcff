"""Stand-in for `apex.parallel.LARC`, as apex-api.md (13.2) describes apex's wrapper."""

from __future__ import annotations

import torch


class LARC:
    """Wraps an optimizer; rescales each gradient by its layer's trust ratio before a step."""

    def __init__(self, optimizer, trust_coefficient=0.02, clip=True, eps=1e-8):
        self.optim = optimizer
        self.trust_coefficient = trust_coefficient
        self.eps = eps
        self.clip = clip

    @property
    def state(self):
        return self.optim.state

    @property
    def param_groups(self):
        return self.optim.param_groups

    @param_groups.setter
    def param_groups(self, value):
        self.optim.param_groups = value

    def state_dict(self):
        return self.optim.state_dict()

    def load_state_dict(self, state_dict):
        self.optim.load_state_dict(state_dict)

    def zero_grad(self):
        self.optim.zero_grad()

    def add_param_group(self, param_group):
        self.optim.add_param_group(param_group)

    def step(self):
        saved = []
        with torch.no_grad():
            for group in self.optim.param_groups:
                decay = group["weight_decay"] if "weight_decay" in group else 0
                saved.append(decay)
                group["weight_decay"] = 0
                for param in group["params"]:
                    if param.grad is None:
                        continue
                    p_norm = torch.norm(param.data)
                    g_norm = torch.norm(param.grad.data)
                    if p_norm == 0 or g_norm == 0:
                        continue
                    ratio = self.trust_coefficient * p_norm / (g_norm + p_norm * decay + self.eps)
                    if self.clip:
                        ratio = min(ratio / group["lr"], 1)
                    param.grad.data += decay * param.data
                    param.grad.data *= ratio
        self.optim.step()
        for i, group in enumerate(self.optim.param_groups):
            group["weight_decay"] = saved[i]
