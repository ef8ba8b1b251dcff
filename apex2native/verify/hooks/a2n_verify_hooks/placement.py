"""Put on the CPU every tensor a CUDA-written program places on "cuda" (`--device cpu`).

The program keeps seeing "cuda" (its `torch.device("cuda")` objects, its device strings); the
tensors land on the CPU where they are made or moved:

* `Tensor.cuda()` / `Module.cuda()` return the object itself (as they do on the GPU for
  something already there); `Tensor.to(...)` / `Module.to(...)` with a CUDA device (string,
  `torch.device` or index; positional or `device=`) go to the CPU, `non_blocking` included;
* factory functions (`torch.zeros`, `torch.tensor`, `torch.arange`, ... and the `*_like`
  ones) with a CUDA `device=`, also when module constructors pass it on (`nn.Linear(...,
  device=...)`);
* `torch.load` restores every storage to the CPU unless `map_location` is a function;
* `Tensor.pin_memory()` returns the tensor itself and `DataLoader(pin_memory=True)` does not
  pin (there is no accelerator to pin for).
"""

from __future__ import annotations

import functools

import torch

LIKE = ("zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like")


def is_cuda(device) -> bool:
    """A CUDA device as programs spell it: "cuda", "cuda:1", torch.device("cuda"), an index."""
    if isinstance(device, str):
        return device.startswith("cuda")
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return isinstance(device, int) and not isinstance(device, bool)


def to_cpu(device):
    return "cpu" if is_cuda(device) else device


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
            if kwargs and is_cuda(kwargs.get("device")):
                kwargs["device"] = "cpu"
            return orig(self, *args, **kwargs)

        return to

    def stay(self, *args, **kwargs):
        return self

    torch.Tensor.to = mapped_to(torch.Tensor.to)
    torch.nn.Module.to = mapped_to(torch.nn.Module.to)
    torch.Tensor.cuda = stay
    torch.nn.Module.cuda = stay


def _mapped_factory(orig):
    @functools.wraps(orig)
    def factory(*args, **kwargs):
        if "device" in kwargs and is_cuda(kwargs["device"]):
            kwargs["device"] = "cpu"
        return orig(*args, **kwargs)

    return factory


def _as_builtin(wrapper, name: str) -> None:
    """TorchScript compiles calls of `torch.zeros` & co. as aten ops, looked up by identity."""
    builtins = torch.jit._builtins
    if builtins._builtin_table is None:
        builtins._builtin_ops.append((wrapper, f"aten::{name}"))
    else:
        builtins._register_builtin(wrapper, f"aten::{name}")


def _patch_factories() -> None:
    from torch.utils._device import _device_constructors

    names = {fn.__name__ for fn in _device_constructors()} | set(LIKE)
    for name in sorted(names):
        orig = getattr(torch, name, None)
        if callable(orig):
            wrapper = _mapped_factory(orig)
            setattr(torch, name, wrapper)
            _as_builtin(wrapper, name)


def _patch_load() -> None:
    orig = torch.load

    @functools.wraps(orig)
    def load(f, map_location=None, *args, **kwargs):
        if not callable(map_location):
            map_location = "cpu"
        return orig(f, map_location, *args, **kwargs)

    torch.load = load


def _patch_pinning() -> None:
    loader = torch.utils.data.DataLoader
    orig_init = loader.__init__

    @functools.wraps(orig_init)
    def __init__(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        self.pin_memory = False

    loader.__init__ = __init__
    torch.Tensor.pin_memory = lambda self, *args, **kwargs: self


def install() -> None:
    """Map every CUDA placement of this process to the CPU."""
    _patch_moves()
    _patch_factories()
    _patch_load()
    _patch_pinning()
