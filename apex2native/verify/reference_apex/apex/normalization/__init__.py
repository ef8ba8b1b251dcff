"""Stand-ins for `apex.normalization`: torch LayerNorm and RMSNorm."""

from __future__ import annotations

import torch


class FusedLayerNorm(torch.nn.LayerNorm):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, *args, **kwargs):
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine)


class FusedRMSNorm(torch.nn.RMSNorm):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, *args, **kwargs):
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine)
