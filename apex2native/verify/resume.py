"""`--resume-from CKPT`: run both sides from one checkpoint that the original wrote.

The checkpoint must hold apex amp state (`amp.state_dict()`: `{"loss_scaler0": {"loss_scale":
S, "unskipped": U}, ...}`). Each side gets a private copy, so a program that saves over its
checkpoint cannot change what the other side loads: the arguments of COMMAND that name CKPT
(as written after --resume-from, alone or as `--flag=CKPT`) become that side's copy. The
hooks record when a side loads its copy; the first backward pass after that must use the
checkpoint's loss scale S on both sides. That proves the rewritten loader accepted the
apex-era checkpoint and continued with its scale; the loss-scale series then shows whether
the growth tracker (U) came along too.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .compare import Row, bitwise_equal
from .errors import HarnessError
from .runner import SideRun

DEFAULT_SCALE = 2.0**16


@dataclass(frozen=True)
class Checkpoint:
    """The checkpoint as given on the command line and the apex loss scaler state in it."""

    text: str
    path: Path
    where: str
    scale: float
    unskipped: int


def _amp_states(value, where: str, depth: int = 0):
    from apex2native.checkpoint import is_amp_state

    if is_amp_state(value):
        yield where, value
    elif isinstance(value, dict) and depth < 4:
        for key, item in value.items():
            yield from _amp_states(item, f"{where}[{key!r}]", depth + 1)


def inspect_checkpoint(text: str) -> Checkpoint:
    """Load CKPT (tensors and plain data only) and find its apex amp state."""
    import torch

    path = Path(text)
    if not path.is_file():
        raise HarnessError(f"--resume-from: no such file: {text}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a usage problem
        raise HarnessError(f"--resume-from: cannot load {text}: {exc}") from exc
    found = next(_amp_states(data, "checkpoint"), None)
    if found is None:
        raise HarnessError(
            f"--resume-from: {text} holds no apex amp state (amp.state_dict()); "
            "nothing to prove about an apex-era checkpoint"
        )
    where, state = found
    first = state[sorted(state)[0]]
    return Checkpoint(text, path, where, float(first["loss_scale"]), int(first["unskipped"]))


def _names_checkpoint(arg: str, text: str) -> bool:
    value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
    return value == text or (value != "" and Path(value) == Path(text))


def check_command(command: list[str], ckpt: Checkpoint) -> None:
    if not any(_names_checkpoint(arg, ckpt.text) for arg in command):
        raise HarnessError(
            f"--resume-from {ckpt.text}: COMMAND does not pass it to the program; "
            "write the path in COMMAND as given to --resume-from"
        )


def command_for(command: list[str], ckpt: Checkpoint, copy: Path) -> list[str]:
    """COMMAND with every mention of CKPT replaced by this side's private copy."""
    out = []
    for arg in command:
        if _names_checkpoint(arg, ckpt.text):
            arg = (
                f"{arg.split('=', 1)[0]}={copy}"
                if "=" in arg and arg.startswith("-")
                else str(copy)
            )
        out.append(arg)
    return out


def private_copy(ckpt: Checkpoint, record_dir: Path, label: str) -> Path:
    target = record_dir / f"{label}.resume" / ckpt.path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt.path, target)
    return target.resolve()


def scale_after_load(events: list[dict]) -> tuple[bool, float | None]:
    """Whether the side loaded its copy, and the scale of the first backward after that."""
    loaded = False
    for event in events:
        if event.get("ev") == "resume":
            loaded = True
        elif loaded and event.get("ev") == "backward":
            return True, event.get("scale")
    return loaded, None


def _scale_row(metric: str, scale: float, loaded: bool, used: float | None, detail: str) -> Row:
    if loaded and bitwise_equal(used, scale):
        return Row(metric, "equal", 1, detail=detail)
    why = (
        "the rewritten side did not continue with the checkpoint's scale"
        if loaded
        else "the rewritten side never loaded the checkpoint"
    )
    return Row(metric, "differs", 1, 0, original=scale, rewritten=used, detail=f"{why}; {detail}")


def resume_rows(a: SideRun, b: SideRun, ckpt: Checkpoint) -> list[Row]:
    """Per rank: the original must have resumed with the checkpoint's scale (else the setup
    proves nothing: a harness error), and the rewritten side must have done the same."""
    rows = []
    detail = f"{ckpt.where}: loss_scale {ckpt.scale:g}, unskipped {ckpt.unskipped}"
    for rank in sorted(a.ranks):
        loaded_a, scale_a = scale_after_load(a.ranks[rank])
        if not loaded_a:
            raise HarnessError(
                f"the original side never loaded {ckpt.text} (rank {rank}); "
                "does COMMAND pass it to the program?"
            )
        if not bitwise_equal(scale_a, ckpt.scale):
            raise HarnessError(
                f"the original side resumed with loss scale {scale_a}, not the checkpoint's "
                f"{ckpt.scale} (rank {rank})"
            )
        metric = f"rank{rank}/resume/scale" if len(a.ranks) > 1 else "resume/scale"
        loaded_b, scale_b = scale_after_load(b.ranks.get(rank, []))
        rows.append(_scale_row(metric, ckpt.scale, loaded_b, scale_b, detail))
    return rows


def notes(ckpt: Checkpoint) -> list[str]:
    if ckpt.scale == DEFAULT_SCALE:
        return [
            f"--resume-from: the checkpoint's loss scale is GradScaler's default ({ckpt.scale:g}); "
            "only the loss-scale series (growth) can show that the scaler state was loaded"
        ]
    return []
