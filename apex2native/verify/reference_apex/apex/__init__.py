"""Reference stand-in for NVIDIA apex, shipped with apex2native for `apex2native verify`.

It reproduces apex.amp's control flow (loss scaling, unscale on leaving `scale_loss`, skip and
scale update per backward, opt levels O0-O3) with `torch.autocast` as its cast engine, so it runs
on a CPU and shares the cast engine of a native rewrite. It is not NVIDIA's code.
"""

import torch

from . import amp, fp16_utils, normalization, optimizers

__all__ = ["amp", "fp16_utils", "normalization", "optimizers"]

if torch.distributed.is_available():
    from . import parallel  # noqa: F401

A2N_REFERENCE = True
__version__ = "0.1.0+apex2native.reference"
