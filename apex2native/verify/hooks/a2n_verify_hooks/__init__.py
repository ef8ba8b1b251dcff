"""Hooks injected into each side of `apex2native verify` (imported by its sitecustomize).

`install()` reads the harness configuration from the environment, sets seeds and determinism
flags, maps a CUDA program and its "cuda" mixed precision to the CPU when asked, and installs
the recording hooks (and the checkpoint watch of `--resume-from`).
"""

from __future__ import annotations

import atexit
import json
import os
import sys


def install() -> None:
    """Install everything for this process; failures are written next to the records."""
    from .protocol import (
        ENV_AMP_OFF,
        ENV_DEVICE,
        ENV_DIR,
        ENV_RESUME,
        ENV_SEED,
        ENV_SIDE,
        ENV_SKIP_MASK,
        ENV_STEPS,
        loaded_name,
    )

    directory = os.environ[ENV_DIR]
    side = os.environ.get(ENV_SIDE, "side")
    try:
        from . import apex_hooks, determinism, device_map, resume_hooks, torch_hooks
        from .recorder import Recorder, StopTraining

        skip_mask = None
        if os.environ.get(ENV_SKIP_MASK):
            with open(os.environ[ENV_SKIP_MASK], encoding="utf-8") as fh:
                skip_mask = json.load(fh)
        amp_off = os.environ.get(ENV_AMP_OFF) == "1"
        rec = Recorder(directory, side, int(os.environ.get(ENV_STEPS, "20")), skip_mask)
        determinism.install(int(os.environ.get(ENV_SEED, "0")))
        device_map.install(os.environ.get(ENV_DEVICE) == "cpu", amp_off)
        torch_hooks.install(rec)
        apex_hooks.install(rec, amp_off)
        if os.environ.get(ENV_RESUME):
            resume_hooks.install(rec, os.environ[ENV_RESUME])
        _install_exit_handlers(rec, StopTraining)
    except Exception as exc:  # noqa: BLE001 - reported to the harness, never fatal here
        with open(os.path.join(directory, f"{side}.pid{os.getpid()}.error"), "w") as fh:
            fh.write(f"{type(exc).__name__}: {exc}\n")
        return
    with open(os.path.join(directory, loaded_name(side, os.getpid())), "w") as fh:
        fh.write(" ".join(sys.argv))


def _install_exit_handlers(rec, stop_type) -> None:
    previous = sys.excepthook

    def excepthook(exc_type, exc, tb):
        if issubclass(exc_type, stop_type):
            sys.stdout.flush()
            sys.stderr.write(f"{exc}\n")
            sys.stderr.flush()
            os._exit(0)
        rec.crash(f"{exc_type.__name__}: {exc}")
        previous(exc_type, exc, tb)

    sys.excepthook = excepthook
    atexit.register(rec.finish, "exit")
