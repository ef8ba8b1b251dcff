"""Record when the program loads the checkpoint it resumes from (`verify --resume-from`).

`torch.load` is wrapped: loading this side's private copy of the checkpoint (by path, or by a
file object with that name) writes a `resume` record. The harness then reads the loss scale of
the first backward pass after it.
"""

from __future__ import annotations

import functools
import os

import torch

from .recorder import Recorder


def _name(f) -> str | None:
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
    return os.fspath(name) if isinstance(name, (str, os.PathLike)) else None


def install(rec: Recorder, checkpoint: str) -> None:
    """Watch `torch.load` for the checkpoint at this path."""
    target = os.path.realpath(checkpoint)
    orig = torch.load

    @functools.wraps(orig)
    def load(f, *args, **kwargs):
        result = orig(f, *args, **kwargs)
        name = _name(f)
        if name is not None and os.path.realpath(name) == target:
            rec.on_resume()
        return result

    torch.load = load
