"""convert-checkpoint: old apex amp entries become state a GradScaler loads."""

from __future__ import annotations

import subprocess
import sys

import torch
from click.testing import CliRunner

from apex2native.checkpoint import convert_checkpoint
from apex2native.cli import main

APEX_STATE = {"loss_scaler0": {"loss_scale": 32768.0, "unskipped": 317}}


def test_converted_state_loads_into_an_enabled_grad_scaler():
    converted, changes = convert_checkpoint({"model": {}, "amp": APEX_STATE})
    scaler = torch.amp.GradScaler("cpu")
    scaler.load_state_dict(converted["amp"])
    assert scaler.get_scale() == 32768.0
    assert scaler._get_growth_tracker() == 317
    assert changes == ["amp: amp state -> GradScaler state"]


def test_several_loss_scalers_keep_the_smallest_scale():
    state = {
        "loss_scaler0": {"loss_scale": 65536.0, "unskipped": 3},
        "loss_scaler1": {"loss_scale": 1024.0, "unskipped": 9},
    }
    converted, changes = convert_checkpoint({"amp": state})
    assert converted["amp"]["scale"] == 1024.0 and converted["amp"]["_growth_tracker"] == 9
    assert "kept loss_scaler1" in changes[0]


def test_static_runs_and_trackers_past_the_window_restart_at_zero():
    converted, _ = convert_checkpoint(
        {"amp": {"loss_scaler0": {"loss_scale": 128.0, "unskipped": 5000}}}
    )
    assert converted["amp"]["_growth_tracker"] == 0


def test_cli_round_trip(tmp_path):
    source, target = tmp_path / "old.pt", tmp_path / "new.pt"
    torch.save({"epoch": 3, "amp": APEX_STATE}, source)
    result = CliRunner().invoke(main, ["convert-checkpoint", str(source), str(target)])
    assert result.exit_code == 0, result.stderr
    assert torch.load(target)["amp"]["scale"] == 32768.0
    nothing = CliRunner().invoke(main, ["convert-checkpoint", str(target), str(tmp_path / "x.pt")])
    assert nothing.exit_code == 1 and "no apex amp state" in nothing.stderr


def test_fused_adam_state_resumes_in_torch_adamw():
    """apex FusedAdam counted steps per param group; torch AdamW wants one per parameter
    and raises KeyError 'step' on the old layout."""
    model = torch.nn.Linear(3, 2)
    reference = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    reference.step()
    saved = reference.state_dict()
    apex_style = {
        "state": {
            k: {n: t for n, t in v.items() if n != "step"} for k, v in saved["state"].items()
        },
        "param_groups": [{**g, "step": 1} for g in saved["param_groups"]],
    }
    converted, changes = convert_checkpoint({"optimizer": apex_style})
    assert changes == [
        "optimizer: optimizer state with a step per param group (apex FusedAdam) -> "
        "a step per parameter (torch Adam/AdamW)"
    ]
    resumed = torch.optim.AdamW(model.parameters(), lr=0.1)
    resumed.load_state_dict(converted["optimizer"])
    model(torch.ones(1, 3)).sum().backward()
    resumed.step()
    assert all(float(s["step"]) == 2.0 for s in resumed.state.values())


def test_optimizer_states_in_a_list_are_converted():
    """Lightning keeps `optimizer_states: [...]`: each entry is converted."""
    group_step = {
        "state": {0: {"exp_avg": torch.zeros(2)}},
        "param_groups": [{"params": [0], "step": 3}],
    }
    converted, changes = convert_checkpoint({"optimizer_states": [group_step]})
    assert changes == [
        "optimizer_states[0]: optimizer state with a step per param group (apex FusedAdam) -> "
        "a step per parameter (torch Adam/AdamW)"
    ]
    assert float(converted["optimizer_states"][0]["state"][0]["step"]) == 3.0


FUSED_LAMB_STATE = {
    "state": {0: {"exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}},
    "param_groups": [
        {
            "params": [0],
            "step": 7,
            "lr": 1e-3,
            "bias_correction": True,
            "betas": (0.9, 0.999),
            "eps": 1e-6,
            "weight_decay": 0.01,
            "grad_averaging": True,
            "max_grad_norm": 1.0,
        }
    ],
}


def test_fused_lamb_state_is_left_as_it_was_and_said_so():
    """FusedLAMB stays apex after the rewrite and reads its step from the param group:
    moving it to the parameters would restart its bias correction silently."""
    left: list[str] = []
    converted, changes = convert_checkpoint(
        {"optimizer": FUSED_LAMB_STATE, "amp": APEX_STATE}, left=left
    )
    assert converted["optimizer"] is FUSED_LAMB_STATE
    assert changes == ["amp: amp state -> GradScaler state"]
    assert left == [
        "optimizer: optimizer state with a step per param group that is not apex FusedAdam's "
        "(its groups have grad_averaging, max_grad_norm: FusedLAMB or another apex optimizer "
        "that stays apex) left as it was"
    ]


def test_cli_says_fused_lamb_state_is_left_and_writes_nothing_for_it_alone(tmp_path):
    source, target = tmp_path / "old.pt", tmp_path / "new.pt"
    torch.save({"optimizer": FUSED_LAMB_STATE}, source)
    result = CliRunner().invoke(main, ["convert-checkpoint", str(source), str(target)])
    assert result.exit_code == 1 and not target.exists()
    assert "left as it was" in result.stderr and "no apex amp state" in result.stderr


def test_torch_optimizer_state_is_left_alone():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    _, changes = convert_checkpoint({"optimizer": opt.state_dict()})
    assert changes == []


SAVE_FP16_OPTIMIZER = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from apex.fp16_utils import FP16_Optimizer
torch.manual_seed(0)
model = torch.nn.Linear(4, 2).half()
opt = FP16_Optimizer(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                     dynamic_loss_scale=True, verbose=False)
opt.backward(model(torch.randn(3, 4).half()).float().pow(2).mean())
opt.step()
torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, sys.argv[1])
"""


def test_fp16_optimizer_state_becomes_the_wrapped_optimizers(tmp_path):
    """FP16_Optimizer pickled apex's LossScaler into the checkpoint: with `--unsafe-load` it
    unpickles into the stand-in apex, and the entry becomes the plain optimizer's state."""
    from apex2native.verify.runner import REFERENCE_APEX_DIR

    source, target = tmp_path / "old.pt", tmp_path / "new.pt"
    script = tmp_path / "save.py"
    script.write_text(SAVE_FP16_OPTIMIZER)
    subprocess.run([sys.executable, str(script), str(source), str(REFERENCE_APEX_DIR)], check=True)
    refused = CliRunner().invoke(main, ["convert-checkpoint", str(source), str(target)])
    assert refused.exit_code == 2
    result = CliRunner().invoke(
        main, ["convert-checkpoint", "--unsafe-load", str(source), str(target)]
    )
    assert result.exit_code == 0, result.stderr
    assert "FP16_Optimizer state -> its wrapped optimizer's state" in result.stderr
    assert "apex" not in sys.modules
    converted = torch.load(target)
    model = torch.nn.Linear(4, 2)
    model.load_state_dict(converted["model"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.load_state_dict(converted["optimizer"])
    assert all("momentum_buffer" in s for s in optimizer.state.values())
    model(torch.randn(3, 4)).pow(2).mean().backward()
    optimizer.step()


SAVE_AS_APEX_DID = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from apex.fp16_utils.loss_scaler import DynamicLossScaler
model = torch.nn.Linear(4, 2)
sgd = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = DynamicLossScaler()
scaler.cur_scale = 1024.0
state = {"loss_scaler": scaler, "dynamic_loss_scale": True, "overflow": False,
         "optimizer_state_dict": sgd.state_dict(), "fp32_from_fp16": [list(model.parameters())]}
torch.save({"optimizer": state}, sys.argv[1])
"""


def test_a_checkpoint_written_by_real_apex_loads(tmp_path):
    """Real apex pickles `apex.fp16_utils.loss_scaler.DynamicLossScaler`: a package of that
    layout alone (not the stand-in) writes the checkpoint, and the stand-in must read it."""
    fake = tmp_path / "apex_as_installed"
    package = fake / "apex" / "fp16_utils"
    package.mkdir(parents=True)
    (fake / "apex" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "loss_scaler.py").write_text(
        "class DynamicLossScaler:\n    def __init__(self):\n        self.cur_scale = 2.0**32\n"
    )
    source, target = tmp_path / "old.pt", tmp_path / "new.pt"
    script = tmp_path / "save.py"
    script.write_text(SAVE_AS_APEX_DID)
    subprocess.run([sys.executable, str(script), str(source), str(fake)], check=True)
    result = CliRunner().invoke(
        main, ["convert-checkpoint", "--unsafe-load", str(source), str(target)]
    )
    assert result.exit_code == 0, result.stderr
    assert "the loss scale was 1024.0" in result.stderr
    assert set(torch.load(target)["optimizer"]) == {"state", "param_groups"}


def test_converted_fused_adam_state_keeps_its_group_step_for_an_apex_optimizer_left_in_place():
    """A FusedAdam the migration kept (with a TODO) resumes from the group's step, which
    the conversion leaves beside the per-parameter steps torch's Adam reads."""
    group_step = {
        "state": {0: {"exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}},
        "param_groups": [{"params": [0], "step": 5, "lr": 1e-3}],
    }
    converted, _ = convert_checkpoint({"optimizer": group_step})
    assert converted["optimizer"]["param_groups"][0]["step"] == 5
    assert float(converted["optimizer"]["state"][0]["step"]) == 5.0
    again, changes = convert_checkpoint(converted)
    assert changes == [] and again["optimizer"]["param_groups"][0]["step"] == 5
