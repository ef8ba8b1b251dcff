"""convert-checkpoint: old apex amp entries become state a GradScaler loads."""

from __future__ import annotations

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


def test_torch_optimizer_state_is_left_alone():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    _, changes = convert_checkpoint({"optimizer": opt.state_dict()})
    assert changes == []
