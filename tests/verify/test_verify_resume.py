"""`--resume-from`: finding apex amp state in a checkpoint, private copies in COMMAND, and the
scale each side resumed with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apex2native.verify.errors import HarnessError
from apex2native.verify.resume import (
    check_command,
    command_for,
    inspect_checkpoint,
    resume_rows,
    scale_after_load,
)
from apex2native.verify.runner import SideRun, SideSpec

AMP = {"loss_scaler0": {"loss_scale": 1024.0, "unskipped": 1997}}


def saved(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "ckpt.pt"
    torch.save(data, path)
    return str(path)


def test_apex_amp_state_is_found_where_the_program_put_it(tmp_path):
    ckpt = inspect_checkpoint(saved(tmp_path, {"state": {"amp": AMP}, "epoch": 3}))
    assert (ckpt.where, ckpt.scale, ckpt.unskipped) == ("checkpoint['state']['amp']", 1024.0, 1997)
    with pytest.raises(HarnessError, match="holds no apex amp state"):
        inspect_checkpoint(saved(tmp_path, {"scaler": {"scale": 1024.0}}))
    with pytest.raises(HarnessError, match="no such file"):
        inspect_checkpoint(str(tmp_path / "missing.pt"))


def test_every_mention_of_the_checkpoint_in_command_becomes_the_private_copy(tmp_path):
    ckpt = inspect_checkpoint(saved(tmp_path, {"amp": AMP}))
    copy = Path("/records/rewritten.resume/ckpt.pt")
    command = ["python", "train.py", "--resume", ckpt.text, f"--init={ckpt.text}", "--out=x.pt"]
    assert command_for(command, ckpt, copy) == [
        "python",
        "train.py",
        "--resume",
        str(copy),
        f"--init={copy}",
        "--out=x.pt",
    ]
    with pytest.raises(HarnessError, match="COMMAND does not pass it"):
        check_command(["python", "train.py"], ckpt)


def run_with(events: list[dict]) -> SideRun:
    return SideRun(
        SideSpec("side", Path("."), []), 0, False, 0.0, "", "", True, ranks={"0": events}
    )


def test_the_scale_after_the_load_is_what_each_side_resumed_with(tmp_path):
    ckpt = inspect_checkpoint(saved(tmp_path, {"amp": AMP}))
    resumed = [
        {"ev": "backward", "scale": 65536.0},
        {"ev": "resume", "step": 0},
        {"ev": "backward", "scale": 1024.0},
    ]
    assert scale_after_load(resumed) == (True, 1024.0)
    fresh = [{"ev": "resume", "step": 0}, {"ev": "backward", "scale": 65536.0}]
    never = [{"ev": "backward", "scale": 1024.0}]

    (ok,) = resume_rows(run_with(resumed), run_with(resumed), ckpt)
    assert ok.status == "equal"
    (late,) = resume_rows(run_with(resumed), run_with(fresh), ckpt)
    assert late.failed and late.rewritten == 65536.0
    (missing,) = resume_rows(run_with(resumed), run_with(never), ckpt)
    assert missing.failed and "never loaded" in missing.detail
    with pytest.raises(HarnessError, match="original side never loaded"):
        resume_rows(run_with(never), run_with(resumed), ckpt)
