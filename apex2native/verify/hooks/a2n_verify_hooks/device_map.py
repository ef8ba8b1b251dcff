"""Run a CUDA-written program and its "cuda" mixed precision on the CPU (`--device cpu`), and
force amp off (the envelope run).

With the CPU mapping the program takes its GPU path (`cuda_api.py`), its tensors and process
groups land on the CPU (`placement.py`, `distributed.py`), and these are patched so that
"cuda" fp16 autocast and loss scaling really run on the CPU instead of silently turning off:

* `torch.autocast` / `torch.amp.autocast` / `torch.cuda.amp.autocast`: device "cuda" becomes
  "cpu"; a missing dtype becomes float16 (the CUDA default), not the CPU default bfloat16;
* `torch.amp.GradScaler` and `torch.cuda.amp.GradScaler`: device "cuda" becomes "cpu";
* `torch.is_autocast_enabled`, `torch.get_autocast_dtype`, `torch.set_autocast_enabled`,
  `torch.set_autocast_dtype` and `torch.get_autocast_gpu_dtype`: "cuda" (or no argument)
  reads the CPU state;
* `torch.amp.custom_fwd` / `custom_bwd`: `device_type="cuda"` becomes "cpu".

With amp off, autocast and GradScaler are constructed with `enabled=False`.
"""

from __future__ import annotations

import functools

import torch

from . import cuda_api, distributed, placement
from .placement import to_cpu


def _patch_autocast(map_cpu: bool, amp_off: bool) -> None:
    cls = torch.amp.autocast_mode.autocast
    orig_init = cls.__init__

    @functools.wraps(orig_init)
    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        if map_cpu and device_type == "cuda":
            device_type = "cpu"
            dtype = torch.float16 if dtype is None else dtype
        if amp_off:
            enabled = False
        orig_init(self, device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    cls.__init__ = __init__


def _patch_grad_scaler(map_cpu: bool, amp_off: bool) -> None:
    cls = torch.amp.GradScaler
    orig_init = cls.__init__

    @functools.wraps(orig_init)
    def __init__(self, device="cuda", *args, **kwargs):
        if map_cpu:
            device = to_cpu(device)
        if amp_off:
            kwargs["enabled"] = False
            args = args[:4]
        orig_init(self, device, *args, **kwargs)

    cls.__init__ = __init__


def _patch_autocast_state() -> None:
    def mapped(fn, default_cuda: bool):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if args and args[0] == "cuda":
                args = ("cpu",) + args[1:]
            elif default_cuda and not args and "device_type" not in kwargs:
                args = ("cpu",)
            return fn(*args, **kwargs)

        return wrapper

    torch.is_autocast_enabled = mapped(torch.is_autocast_enabled, True)
    torch.get_autocast_dtype = mapped(torch.get_autocast_dtype, False)
    torch.set_autocast_enabled = mapped(torch.set_autocast_enabled, False)
    torch.set_autocast_dtype = mapped(torch.set_autocast_dtype, False)
    cpu_dtype = torch.get_autocast_dtype
    torch.get_autocast_gpu_dtype = lambda: cpu_dtype("cpu")


def _patch_custom_fwd_bwd() -> None:
    module = torch.amp.autocast_mode
    orig_fwd, orig_bwd = module.custom_fwd, module.custom_bwd

    @functools.wraps(orig_fwd)
    def custom_fwd(fwd=None, *, device_type, cast_inputs=None):
        return orig_fwd(fwd, device_type=to_cpu(device_type), cast_inputs=cast_inputs)

    @functools.wraps(orig_bwd)
    def custom_bwd(bwd=None, *, device_type):
        return orig_bwd(bwd, device_type=to_cpu(device_type))

    module.custom_fwd = torch.amp.custom_fwd = custom_fwd
    module.custom_bwd = torch.amp.custom_bwd = custom_bwd


def install(map_cpu: bool, amp_off: bool) -> None:
    """Apply the CPU mapping and/or the amp-off policy to torch in this process."""
    if map_cpu:
        cuda_api.install()
        placement.install()
        distributed.install()
        _patch_autocast_state()
        _patch_custom_fwd_bwd()
    if map_cpu or amp_off:
        _patch_autocast(map_cpu, amp_off)
        _patch_grad_scaler(map_cpu, amp_off)
