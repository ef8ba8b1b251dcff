"""Answer `torch.cuda` as a machine with one GPU would (`--device cpu`).

A CUDA-written program asks `torch.cuda.is_available()` and takes its GPU path when the
answer is True; everything that path places on "cuda" lands on the CPU (`placement.py`).
The calls it makes on the way must then not fail:

* `is_available()` is True, `device_count()` 1, `current_device()` 0, `get_device_name()`
  names the CPU stand-in;
* `set_device`, `synchronize`, `empty_cache`, `reset_peak_memory_stats` (and the older
  `reset_max_memory_*`) do nothing, and so does the `torch.cuda.device(i)` context;
  `memory_allocated` and friends already answer 0 without CUDA;
* `manual_seed` / `manual_seed_all` are kept: without CUDA they are queued and never run, so
  they do not touch the CPU generator that the "cuda" tensors now draw from;
* `get_rng_state()` is an empty state and `set_rng_state` (and the `_all` forms) ignore it;
* `nn.DataParallel` wraps without devices (it then calls the module directly).
"""

from __future__ import annotations

import importlib

import torch

NAME = "CPU (apex2native verify --device cpu)"


def _nothing(*args, **kwargs) -> None:
    return None


def install() -> None:
    """Patch this process's `torch.cuda` to the one-GPU answers."""
    cuda = torch.cuda
    cuda.is_available = lambda: True
    cuda.device_count = lambda: 1
    cuda.current_device = lambda: 0
    cuda.get_device_name = lambda device=None: NAME
    for name in (
        "set_device",
        "synchronize",
        "empty_cache",
        "reset_peak_memory_stats",
        "reset_max_memory_allocated",
        "reset_max_memory_cached",
        "set_rng_state",
        "set_rng_state_all",
    ):
        setattr(cuda, name, _nothing)
    cuda.get_rng_state = lambda device="cuda": torch.empty(0, dtype=torch.uint8)
    cuda.get_rng_state_all = lambda: [torch.empty(0, dtype=torch.uint8)]
    cuda._exchange_device = lambda device: -1
    cuda._maybe_exchange_device = lambda device: -1
    data_parallel = importlib.import_module("torch.nn.parallel.data_parallel")
    data_parallel._get_available_device_type = lambda: None
