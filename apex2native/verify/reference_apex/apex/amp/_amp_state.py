"""Process-wide amp state, as in apex's `_amp_state.py`."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class AmpState:
    """Holds opt properties, loss scalers and the O1 handle once `initialize` ran."""

    def __init__(self) -> None:
        self.hard_override = False
        self.allow_incoming_model_not_fp32 = False
        self.verbosity = 1


_amp_state = AmpState()


def warn_or_err(msg: str) -> None:
    """Raise for conflicting options unless `hard_override` is set (apex behaviour)."""
    if _amp_state.hard_override:
        print("Warning:  " + msg)
    else:
        raise RuntimeError(msg)


def maybe_print(msg: str, rank0: bool = False) -> None:
    """Print unless verbosity is 0; with `rank0`, only on rank 0 of a distributed job."""
    if _amp_state.verbosity <= 0:
        return
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if rank0 and distributed and torch.distributed.get_rank() != 0:
        return
    print(msg)


def master_params(optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    """Yield the parameters the optimizer updates (fp32 masters under O2)."""
    for group in optimizer.param_groups:
        yield from group["params"]
