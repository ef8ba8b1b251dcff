"""Resolve `--device` and `--apex`: is CUDA here, is real NVIDIA apex importable there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .errors import HarnessError

_PROBE = (
    "import apex, apex.amp\n"
    "print('reference' if getattr(apex, 'A2N_REFERENCE', False) else "
    "('installed' if hasattr(apex.amp, 'scale_loss') else 'other'))\n"
)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(requested: str) -> str:
    """auto -> cuda when available, else cpu; cuda without CUDA is a usage error."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise HarnessError("--device cuda: CUDA is not available here")
    return requested


def python_of(command: list[str]) -> str:
    """The interpreter COMMAND runs, when it is visibly one; else the harness's own."""
    name = Path(command[0]).name if command else ""
    return command[0] if name.startswith("python") else sys.executable


def real_apex_importable(command: list[str], tree: Path) -> bool:
    """Whether NVIDIA apex (with apex.amp) imports in the original tree's interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("A2N_VERIFY_")}
    try:
        proc = subprocess.run(
            [python_of(command), "-c", _PROBE],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.strip().endswith("installed")


def resolve_apex(requested: str, device: str, command: list[str], tree: Path) -> str:
    """installed or reference. Real apex needs CUDA; auto falls back to the stand-in."""
    if requested == "reference":
        return "reference"
    if requested == "installed":
        if device != "cuda":
            raise HarnessError("--apex installed needs --device cuda (apex.amp never ran on CPU)")
        if not real_apex_importable(command, tree):
            raise HarnessError("--apex installed: NVIDIA apex with apex.amp is not importable")
        return "installed"
    if device == "cuda" and real_apex_importable(command, tree):
        return "installed"
    return "reference"
