"""Run "cuda" mixed precision on the CPU (`--device cpu`) and force amp off (envelope run).

With the CPU mapping, these are patched so a script written for CUDA runs fp16 autocast and
loss scaling on the CPU instead of silently disabling both:

* `torch.cuda.is_available()` returns False (device-agnostic scripts pick the CPU);
* `torch.autocast` / `torch.amp.autocast` / `torch.cuda.amp.autocast`: device "cuda" becomes
  "cpu"; a missing dtype becomes float16 (the CUDA default), not the CPU default bfloat16;
* `torch.amp.GradScaler` and `torch.cuda.amp.GradScaler`: device "cuda" becomes "cpu";
* `torch.is_autocast_enabled`, `torch.get_autocast_dtype`, `torch.set_autocast_enabled`,
  `torch.set_autocast_dtype` and `torch.get_autocast_gpu_dtype`: "cuda" (or no argument)
  reads the CPU state;
* `torch.amp.custom_fwd` / `custom_bwd`: `device_type="cuda"` becomes "cpu";
* `Tensor.cuda()` and `Module.cuda()` return the object unchanged; `Tensor.to(...)` and
  `Module.to(...)` with a CUDA device (string, `torch.device` or index) target the CPU.

Tensors created directly on "cuda" by factory functions (`torch.zeros(..., device="cuda")`) are
not mapped. With amp off, autocast and GradScaler are constructed with `enabled=False`.
"""

from __future__ import annotations

import functools

import torch


def _is_cuda(device) -> bool:
    if isinstance(device, str):
        return device.startswith("cuda")
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return isinstance(device, int) and not isinstance(device, bool)


def _map(device):
    return "cpu" if _is_cuda(device) else device


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
        if map_cpu and device == "cuda":
            device = "cpu"
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
        return orig_fwd(fwd, device_type=_map(device_type), cast_inputs=cast_inputs)

    @functools.wraps(orig_bwd)
    def custom_bwd(bwd=None, *, device_type):
        return orig_bwd(bwd, device_type=_map(device_type))

    module.custom_fwd = torch.amp.custom_fwd = custom_fwd
    module.custom_bwd = torch.amp.custom_bwd = custom_bwd


def _patch_moves() -> None:
    device_type = torch.device

    def mapped_to(orig):
        @functools.wraps(orig)
        def to(self, *args, **kwargs):
            if args:
                first = args[0]
                kind = type(first)
                if (
                    (kind is str and first.startswith("cuda"))
                    or (kind is device_type and first.type == "cuda")
                    or kind is int
                ):
                    args = ("cpu",) + args[1:]
            if kwargs and _is_cuda(kwargs.get("device")):
                kwargs["device"] = "cpu"
            return orig(self, *args, **kwargs)

        return to

    def stay(self, *args, **kwargs):
        return self

    torch.Tensor.to = mapped_to(torch.Tensor.to)
    torch.nn.Module.to = mapped_to(torch.nn.Module.to)
    torch.Tensor.cuda = stay
    torch.nn.Module.cuda = stay


def install(map_cpu: bool, amp_off: bool) -> None:
    """Apply the CPU mapping and/or the amp-off policy to torch in this process."""
    if map_cpu:
        torch.cuda.is_available = lambda: False
        _patch_autocast_state()
        _patch_custom_fwd_bwd()
        _patch_moves()
    if map_cpu or amp_off:
        _patch_autocast(map_cpu, amp_off)
        _patch_grad_scaler(map_cpu, amp_off)
