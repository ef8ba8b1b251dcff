"""`amp.initialize`, opt levels O0-O3 and `amp.state_dict` / `amp.load_state_dict`."""

from __future__ import annotations

from collections import OrderedDict

import torch

from ._amp_state import _amp_state, maybe_print, warn_or_err
from ._initialize import _initialize


class Properties:
    """Opt-level options with apex's override validation."""

    def __init__(self) -> None:
        self.options = {
            "enabled": False,
            "opt_level": None,
            "cast_model_type": None,
            "patch_torch_functions": False,
            "keep_batchnorm_fp32": None,
            "master_weights": None,
            "loss_scale": 1.0,
        }

    def __getattr__(self, name):
        options = self.__dict__.get("options", {})
        if name in options:
            return options[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name, value):
        if "options" not in self.__dict__:
            super().__setattr__(name, value)
            return
        if name not in self.options:
            super().__setattr__(name, value)
            return
        if name == "cast_model_type":
            if self.opt_level == "O1" and value is not None and value not in (False, torch.float32):
                warn_or_err(
                    "O1 inserts casts around Torch functions rather than model weights, so "
                    "with O1, the model weights themselves should remain FP32. If you wish to "
                    "cast the model to a different type, use opt_level='O2' or 'O3'. "
                    f"cast_model_type was {value}"
                )
        elif name == "patch_torch_functions":
            if self.opt_level != "O1" and value:
                warn_or_err(
                    "Currently, patch_torch_functions=True should only be set by selecting "
                    "opt_level='O1'."
                )
        elif name == "keep_batchnorm_fp32":
            if self.opt_level == "O1" and value is not None:
                warn_or_err(
                    "With opt_level O1, batchnorm functions are automatically patched to run "
                    "in FP32, so keep_batchnorm_fp32 should be None. "
                    f"keep_batchnorm_fp32 was {value}"
                )
            value = {"True": True, "False": False}.get(value, value)
            if value not in (True, False, None):
                raise AssertionError(
                    "keep_batchnorm_fp32 must be a boolean, the string 'True' or 'False', or None"
                )
        elif name == "master_weights":
            if self.opt_level == "O1" and value is not None:
                warn_or_err(
                    "It doesn't make sense to use master_weights with O1. With O1, your model "
                    "weights themselves should be FP32."
                )
        elif name == "loss_scale":
            value = value if value == "dynamic" else float(value)
        self.options[name] = value


def _level(brief, cast_model_type, patch, keep_bn, master, loss_scale):
    def apply(properties: Properties) -> Properties:
        properties.enabled = True
        properties.opt_level = apply.name
        properties.cast_model_type = cast_model_type
        properties.patch_torch_functions = patch
        properties.keep_batchnorm_fp32 = keep_bn
        properties.master_weights = master
        properties.loss_scale = loss_scale
        return properties

    apply.brief = brief
    return apply


opt_levels = {
    "O0": _level("O0:  Pure FP32 training.\n", torch.float32, False, None, False, 1.0),
    "O1": _level(
        "O1:  Insert automatic casts around Pytorch functions and Tensor methods.\n",
        None,
        True,
        None,
        None,
        "dynamic",
    ),
    "O2": _level(
        "O2:  FP16 training with FP32 batchnorm and FP32 master weights.\n",
        torch.float16,
        False,
        True,
        True,
        "dynamic",
    ),
    "O3": _level("O3:  Pure FP16 training.\n", torch.float16, False, False, False, 1.0),
}
for _name, _apply in opt_levels.items():
    _apply.name = _name


def initialize(
    models,
    optimizers=None,
    enabled=True,
    opt_level="O1",
    cast_model_type=None,
    patch_torch_functions=None,
    keep_batchnorm_fp32=None,
    master_weights=None,
    loss_scale=None,
    cast_model_outputs=None,
    num_losses=1,
    verbosity=1,
    min_loss_scale=None,
    max_loss_scale=2.0**24,
):
    """Configure models and optimizers for the opt level; returns them in the same shape."""
    _amp_state.opt_properties = Properties()
    _amp_state.verbosity = verbosity
    if not enabled:
        return models if optimizers is None else (models, optimizers)
    if not torch.backends.cudnn.enabled:
        raise RuntimeError("Amp requires torch.backends.cudnn.enabled = True")
    if opt_level not in opt_levels:
        raise RuntimeError(
            f"Unexpected optimization level {opt_level}. Options are 'O0', 'O1', 'O2', 'O3'.  "
            "Note that in `O0`, `O1`, etc., the prefix O is the letter O, not the number zero."
        )
    _amp_state.opt_properties = opt_levels[opt_level](_amp_state.opt_properties)
    maybe_print(f"Selected optimization level {opt_levels[opt_level].brief}", True)
    maybe_print("Defaults for this optimization level are:", True)
    for key, value in _amp_state.opt_properties.options.items():
        maybe_print(f"{key:22} : {value}", True)
    _amp_state.min_loss_scale = min_loss_scale
    _amp_state.max_loss_scale = max_loss_scale
    maybe_print("Processing user overrides (additional kwargs that are not None)...", True)
    overrides = {
        "cast_model_type": cast_model_type,
        "patch_torch_functions": patch_torch_functions,
        "keep_batchnorm_fp32": keep_batchnorm_fp32,
        "master_weights": master_weights,
        "loss_scale": loss_scale,
    }
    for key, value in overrides.items():
        if value is not None:
            setattr(_amp_state.opt_properties, key, value)
    maybe_print("After processing overrides, optimization options are:", True)
    for key, value in _amp_state.opt_properties.options.items():
        maybe_print(f"{key:22} : {value}", True)
    return _initialize(
        models, optimizers, _amp_state.opt_properties, num_losses, cast_model_outputs
    )


def state_dict(destination=None):
    """`{"loss_scaler<i>": {"loss_scale": float, "unskipped": int}}` for every scaler."""
    if destination is None:
        destination = OrderedDict()
    for idx, loss_scaler in enumerate(_amp_state.loss_scalers):
        destination[f"loss_scaler{idx}"] = {
            "loss_scale": loss_scaler.loss_scale(),
            "unskipped": loss_scaler._unskipped,
        }
    return destination


def load_state_dict(state_dict):
    """Restore scale and unskipped counter per scaler; unexpected keys raise."""
    if len(state_dict) != len(_amp_state.loss_scalers):
        print(
            f"Warning:  state_dict contains {len(state_dict)} entries, while "
            f"{len(_amp_state.loss_scalers)} loss_scalers are used"
        )
    state_dict = state_dict.copy()
    nb_loss_scalers = len(_amp_state.loss_scalers)
    unexpected_keys = []
    idx = 0
    for key in state_dict:
        if "loss_scaler" not in key:
            unexpected_keys.append(key)
        else:
            if idx > (nb_loss_scalers - 1):
                print(f"Skipping loss_scaler[{idx}], since num_losses was set to {nb_loss_scalers}")
                break
            _amp_state.loss_scalers[idx]._loss_scale = state_dict[key]["loss_scale"]
            _amp_state.loss_scalers[idx]._unskipped = state_dict[key]["unskipped"]
            idx += 1
    if unexpected_keys:
        raise RuntimeError(
            "Error(s) in loading state_dict. Unexpected key(s) in state_dict: "
            + ", ".join(f'"{k}"' for k in unexpected_keys)
            + ". "
        )
