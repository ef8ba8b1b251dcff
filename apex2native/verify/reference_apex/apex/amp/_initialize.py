"""Model casting, forward patching, optimizer processing and scaler creation (`_initialize`)."""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping

import torch

from ._amp_state import _amp_state
from ._process_optimizer import _process_optimizer
from .scaler import LossScaler


def _to_type(dtype, value):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    return value.to(dtype)


def _applier(value, fn):
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (str, bytes)):
        return value
    if type(value).__module__ == "numpy":
        return value
    if hasattr(value, "to"):
        return fn(value)
    if isinstance(value, Mapping):
        return {_applier(k, fn): _applier(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_applier(v, fn) for v in value)
    return value


def _convert_network(network: torch.nn.Module, dtype) -> torch.nn.Module:
    """Cast every module's own tensors except affine BatchNorms (apex `convert_network`)."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.affine:
            continue
        for param in module.parameters(recurse=False):
            if param.is_floating_point():
                param.data = param.data.to(dtype)
                if param.grad is not None:
                    param.grad.data = param.grad.data.to(dtype)
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and buf.is_floating_point():
                setattr(module, name, buf.to(dtype))
        if isinstance(module, torch.nn.RNNBase):
            module.flatten_parameters()
    return network


def _patch_forward(model, input_caster, output_caster) -> None:
    old_fwd = model.forward

    def new_fwd(*args, **kwargs):
        if input_caster is not None:
            args = _applier(args, input_caster)
            kwargs = _applier(kwargs, input_caster)
        return _applier(old_fwd(*args, **kwargs), output_caster)

    model.forward = new_fwd


def _fp32_state_dict_hook(module, state_dict, prefix, local_metadata):
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.dtype is torch.float16:
            state_dict[key] = value.float()


def _check_models(models) -> None:
    parallel = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    for model in models:
        if isinstance(model, parallel):
            raise RuntimeError(
                "Incoming model is an instance of torch.nn.parallel.DistributedDataParallel. "
                "Parallel wrappers should only be applied to the model(s) AFTER the model(s) "
                "have been returned from amp.initialize."
            )


def _check_params_fp32(models) -> None:
    for model in models:
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if tensor.is_floating_point() and tensor.dtype is not torch.float32:
                raise RuntimeError(
                    f"Found param {name} with type {tensor.type()}, expected float32.\n"
                    "When using amp.initialize, you do not need to call .half() on your model\n"
                    "before passing it, no matter what optimization level you choose."
                )


def _device_type(models) -> str:
    for model in models:
        for tensor in model.parameters():
            return tensor.device.type
    return "cuda" if torch.cuda.is_available() else "cpu"


def _initialize(models, optimizers, properties, num_losses=1, cast_model_outputs=None):
    from .amp import init as amp_init
    from .handle import disable_casts

    optimizers_was_list = isinstance(optimizers, list)
    if optimizers is None:
        optimizers = []
    elif isinstance(optimizers, torch.optim.Optimizer) or hasattr(optimizers, "optim"):
        optimizers = [optimizers]
    elif not optimizers_was_list:
        raise TypeError("optimizers must be either a single optimizer or a list of optimizers.")
    optimizers = list(optimizers)
    if isinstance(models, torch.nn.Module):
        models_was_list = False
        models = [models]
    elif isinstance(models, list):
        models_was_list = True
    else:
        raise TypeError("models must be either a single model or a list of models.")

    _check_models(models)
    if not _amp_state.allow_incoming_model_not_fp32:
        _check_params_fp32(models)

    if properties.cast_model_type:
        for model in models:
            if properties.keep_batchnorm_fp32:
                _convert_network(model, properties.cast_model_type)
            else:
                model.to(properties.cast_model_type)
        input_caster = functools.partial(_to_type, properties.cast_model_type)
        output_caster = functools.partial(_to_type, cast_model_outputs or torch.float32)
        for model in models:
            _patch_forward(model, input_caster, output_caster)
            for module in model.modules():
                module._register_state_dict_hook(_fp32_state_dict_hook)
        for optimizer in optimizers:
            optimizer.load_state_dict(optimizer.state_dict())
    elif cast_model_outputs is not None:
        output_caster = functools.partial(_to_type, cast_model_outputs)
        for model in models:
            _patch_forward(model, None, output_caster)

    for i, optimizer in enumerate(optimizers):
        optimizers[i] = _process_optimizer(optimizer, properties)

    _amp_state.loss_scalers = [
        LossScaler(
            properties.loss_scale,
            min_loss_scale=_amp_state.min_loss_scale,
            max_loss_scale=_amp_state.max_loss_scale,
        )
        for _ in range(num_losses)
    ]

    if properties.patch_torch_functions:
        handle = amp_init(loss_scale=properties.loss_scale, verbose=(_amp_state.verbosity == 2))
        handle.device_type = _device_type(models)
        for optimizer in optimizers:

            def patch_step(old_step, handle=handle):
                def new_step(self, *args, **kwargs):
                    handle._clear_cache()
                    with disable_casts():
                        return old_step(*args, **kwargs)

                return new_step

            optimizer.step = types.MethodType(patch_step(optimizer.step), optimizer)

    if optimizers_was_list:
        result_optimizers = optimizers
    else:
        result_optimizers = optimizers[0] if optimizers else None
    result_models = models if models_was_list else models[0]
    if result_optimizers is None:
        return result_models
    return result_models, result_optimizers
