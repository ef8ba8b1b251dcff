"""Seeds and determinism flags, set identically on every side before user code runs."""

from __future__ import annotations

import random

import torch


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
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
