"""Seeds and determinism flags, set identically on every side before user code runs.

Programs written for GPUs often say `torch.backends.cudnn.benchmark = True`, which lets cuDNN
pick convolution algorithms by timing them, differently in every process. The harness pins
`cudnn.benchmark` to False and `cudnn.deterministic` to True: a program's later assignments
to them are ignored (reading them gives the pinned values).
"""

from __future__ import annotations

import random

import torch
from torch.backends import ContextProp

PINNED = {"benchmark": False, "deterministic": True}


def _pin_cudnn_flags() -> None:
    cudnn = torch.backends.cudnn
    for name, value in PINNED.items():
        setattr(type(cudnn), name, ContextProp(lambda value=value: value, lambda requested: None))


def install(seed: int) -> None:
    """Seed random/numpy/torch, make cuDNN and algorithms deterministic, turn TF32 off."""
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is not None:
        numpy.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    _pin_cudnn_flags()
    # Also imports TorchDynamo (through inductor's config) before any hook patches torch:
    # its trace rules, loaded later (making an optimizer loads them), reject patched names.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
