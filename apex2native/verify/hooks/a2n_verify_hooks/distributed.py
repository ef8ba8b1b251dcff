"""Run a CUDA program's process group on the CPU (`--device cpu`).

NCCL needs GPUs, so the `nccl` backend (alone or in a "cpu:gloo,cuda:nccl" spec) becomes
`gloo`, in `init_process_group` and `new_group`; this works for a single-process group and
for every torchrun rank alike. `DistributedDataParallel(model, device_ids=[rank], ...)` of a
model that is now on the CPU drops `device_ids` and `output_device`, which DDP refuses for CPU
modules.
"""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist


def gloo(backend):
    """The backend spec with NCCL replaced by gloo (None stays None)."""
    if isinstance(backend, str) and "nccl" in backend.lower():
        return "gloo"
    return backend


def _patch_group_calls() -> None:
    c10d = dist.distributed_c10d
    orig_init, orig_new = c10d.init_process_group, c10d.new_group

    @functools.wraps(orig_init)
    def init_process_group(backend=None, *args, **kwargs):
        return orig_init(gloo(backend), *args, **kwargs)

    @functools.wraps(orig_new)
    def new_group(ranks=None, timeout=None, backend=None, *args, **kwargs):
        return orig_new(ranks, timeout, gloo(backend), *args, **kwargs)

    c10d.init_process_group = dist.init_process_group = init_process_group
    c10d.new_group = dist.new_group = new_group


def _on_cpu(module) -> bool:
    return all(p.device.type == "cpu" for p in module.parameters())


def _patch_ddp() -> None:
    cls = torch.nn.parallel.DistributedDataParallel
    orig_init = cls.__init__

    @functools.wraps(orig_init)
    def __init__(self, module, device_ids=None, output_device=None, *args, **kwargs):
        if _on_cpu(module):
            device_ids = output_device = None
        orig_init(self, module, device_ids, output_device, *args, **kwargs)

    cls.__init__ = __init__


def install() -> None:
    """Map NCCL process groups and GPU-bound DDP wrappers of this process to the CPU."""
    if not dist.is_available():
        return
    _patch_group_calls()
    _patch_ddp()
