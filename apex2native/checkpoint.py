"""Conversion of apex state inside old checkpoints: amp state into GradScaler state, apex
FusedAdam optimizer state into the per-parameter form torch's Adam/AdamW load, and
`FP16_Optimizer.state_dict()` into its wrapped optimizer's state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCALER_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
WINDOW = 2000


def is_amp_state(value: Any) -> bool:
    """`{"loss_scaler0": {"loss_scale": S, "unskipped": U}, ...}` as `amp.state_dict()` wrote it."""
    if not isinstance(value, Mapping) or not value:
        return False
    return all(
        isinstance(k, str)
        and k.startswith("loss_scaler")
        and isinstance(v, Mapping)
        and {"loss_scale", "unskipped"} <= set(v)
        for k, v in value.items()
    )


def convert_amp_state(value: Mapping, static: bool = False) -> tuple[dict, str]:
    """GradScaler state for one amp entry, and a note of any choice made.

    Several loss scalers (`num_losses > 1`) collapse into one: the smallest scale is kept,
    which is the safe choice against an immediate overflow. A static run restarts its
    tracker (the scale must then be pinned with `scaler.update(new_scale=...)`).
    """
    entries = sorted(value.items())
    note = ""
    if len(entries) > 1:
        key, chosen = min(entries, key=lambda kv: float(kv[1]["loss_scale"]))
        note = f"{len(entries)} loss scalers: kept {key} (the smallest scale)"
    else:
        chosen = entries[0][1]
    tracker = int(chosen["unskipped"])
    if static or tracker >= WINDOW:
        tracker = 0
    state = {
        "scale": float(chosen["loss_scale"]),
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": WINDOW,
        "_growth_tracker": tracker,
    }
    return state, note


# param-group keys of apex's other per-group-step optimizers (FusedLAMB, FusedNovoGrad,
# FusedMixedPrecisionLamb): they have no torch counterpart and stay on apex, which resumes
# only from its own layout
NOT_FUSED_ADAM_KEYS = frozenset(
    {"max_grad_norm", "grad_averaging", "use_nvlamb", "norm_type", "init_zero", "reg_inside_moment"}
)


def is_group_step_state(value: Any) -> bool:
    """An optimizer state dict that counts steps per param group, as apex FusedAdam
    (and FusedLAMB) did, with per-parameter moments but no per-parameter `step`."""
    if not isinstance(value, Mapping) or set(value) != {"state", "param_groups"}:
        return False
    groups = value["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        return False
    if not any("step" in g and "params" in g for g in groups):
        return False
    states = value["state"]
    return isinstance(states, Mapping) and any(
        isinstance(s, Mapping) and "exp_avg" in s and "step" not in s for s in states.values()
    )


def foreign_group_keys(value: Mapping) -> list[str]:
    """The keys that tell a per-group-step state from FusedAdam's (FusedLAMB's
    `max_grad_norm`...): such state must not be converted, its optimizer stays apex."""
    return sorted({k for g in value["param_groups"] for k in g if k in NOT_FUSED_ADAM_KEYS})


def convert_group_steps(value: Mapping) -> dict:
    """Each parameter's state gets its group's step (a float tensor, as torch keeps it).
    The groups keep theirs: torch's Adam ignores it, and an apex FusedAdam the migration
    left in place (a TODO) resumes from it. Parameters without state (never stepped) stay
    without."""
    import torch

    states = {k: dict(v) for k, v in value["state"].items()}
    groups = []
    for group in value["param_groups"]:
        group = dict(group)
        step = group.get("step")
        for pid in group.get("params", []):
            state = states.get(pid)
            if step is not None and state is not None and "step" not in state:
                state["step"] = torch.tensor(float(step))
        groups.append(group)
    return {"state": states, "param_groups": groups}


FP16_OPTIMIZER_KEYS = {"optimizer_state_dict", "fp32_from_fp16", "loss_scaler"}


def is_fp16_optimizer_state(value: Any) -> bool:
    """`FP16_Optimizer.state_dict()`: the wrapped optimizer's state, the fp32 master copies
    and apex's pickled `LossScaler`."""
    return isinstance(value, Mapping) and FP16_OPTIMIZER_KEYS <= set(value)


def convert_checkpoint(
    checkpoint: Any, static: bool = False, left: list[str] | None = None
) -> tuple[Any, list[str]]:
    """Every apex entry in a (nested) checkpoint dict replaced; the list says where.

    `left` collects apex entries found but kept as they were (state of an optimizer that
    stays apex), so the caller can say so without counting them as changes."""
    changes: list[str] = []

    def walk(value: Any, path: str) -> Any:
        if is_amp_state(value):
            state, note = convert_amp_state(value, static)
            changes.append(
                f"{path or '<root>'}: amp state -> GradScaler state"
                + (f" ({note})" if note else "")
            )
            return state
        if is_fp16_optimizer_state(value):
            scaler = value["loss_scaler"]
            # apex's own classes keep `cur_scale`; the stand-in's amp scaler `_loss_scale`
            scale = getattr(scaler, "cur_scale", None) or getattr(scaler, "_loss_scale", None)
            changes.append(
                f"{path or '<root>'}: FP16_Optimizer state -> its wrapped optimizer's state "
                "(the fp32 master copies are dropped: the model's weights were those masters "
                "rounded to fp16"
                + (
                    f"; the loss scale was {scale}, a native run starts at its own)"
                    if scale
                    else ")"
                )
            )
            return walk(value["optimizer_state_dict"], path)
        if is_group_step_state(value) and foreign_group_keys(value):
            if left is not None:
                keys = ", ".join(foreign_group_keys(value))
                left.append(
                    f"{path or '<root>'}: optimizer state with a step per param group that is "
                    f"not apex FusedAdam's (its groups have {keys}: FusedLAMB or another apex "
                    "optimizer that stays apex) left as it was"
                )
            return value
        if is_group_step_state(value):
            changes.append(
                f"{path or '<root>'}: optimizer state with a step per param group (apex "
                "FusedAdam) -> a step per parameter (torch Adam/AdamW)"
            )
            return convert_group_steps(value)
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):  # Lightning's `optimizer_states: [...]`
            items = [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
            return type(value)(items) if isinstance(value, tuple) else items
        return value

    return walk(checkpoint, ""), changes
