"""`amp.init`, the user cast registries and the cast decorators.

A registered or decorated function runs like the native mapping of it: while O1 casts are
active, its floating inputs are cast (half or float) and it runs with autocast disabled;
promote casts mixed half/float inputs to float. apex kept patching the ops inside such a
function; the stand-in follows the native mapping instead, so a faithful rewrite is exact.
"""

from __future__ import annotations

import functools

import torch

from ._amp_state import _amp_state
from .handle import AmpHandle, NoOpHandle

_DECORATOR_HANDLE = None
_USER_CAST_REGISTRY: set = set()
_USER_PROMOTE_REGISTRY: set = set()


def _cast(value, dtype):
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and value.dtype is not torch.float64:
            return value.to(dtype)
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


def _float_dtypes(values) -> set:
    found = set()
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            found.add(value.dtype)
        elif isinstance(value, (list, tuple)):
            found |= _float_dtypes(value)
    return found


def _cast_wrapper(orig, dtype, get_handle):
    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        handle = get_handle()
        if handle is None or not handle.casts_enabled():
            return orig(*args, **kwargs)
        with torch.autocast(handle.device_type, enabled=False):
            return orig(*_cast(args, dtype), **_cast(kwargs, dtype))

    return wrapper


def _promote_wrapper(orig, get_handle):
    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        handle = get_handle()
        if handle is None or not handle.casts_enabled():
            return orig(*args, **kwargs)
        kinds = _float_dtypes(list(args) + list(kwargs.values()))
        if {torch.float16, torch.float32} <= kinds:
            return orig(*_cast(args, torch.float32), **_cast(kwargs, torch.float32))
        return orig(*args, **kwargs)

    return wrapper


def _decorator_handle():
    return _DECORATOR_HANDLE


def half_function(fn):
    return _cast_wrapper(fn, torch.float16, _decorator_handle)


def float_function(fn):
    return _cast_wrapper(fn, torch.float32, _decorator_handle)


def promote_function(fn):
    return _promote_wrapper(fn, _decorator_handle)


def _register(module, name, entry, registry) -> None:
    if not hasattr(module, name):
        raise ValueError(f"No function named {name} in module {module}.")
    registry.add(entry)


def register_half_function(module, name) -> None:
    _register(module, name, (module, name, torch.float16), _USER_CAST_REGISTRY)


def register_float_function(module, name) -> None:
    _register(module, name, (module, name, torch.float32), _USER_CAST_REGISTRY)


def register_promote_function(module, name) -> None:
    _register(module, name, (module, name), _USER_PROMOTE_REGISTRY)


def init(
    enabled=True, loss_scale="dynamic", enable_caching=True, verbose=False, allow_banned=False
):
    """Create the O1 handle and apply (then clear) the user registries, like apex."""
    global _DECORATOR_HANDLE
    if not enabled:
        handle = NoOpHandle()
        _DECORATOR_HANDLE = handle
        return handle
    handle = AmpHandle(loss_scale, enable_caching, verbose)

    def current():
        return handle

    for module, name, dtype in _USER_CAST_REGISTRY:
        setattr(module, name, _cast_wrapper(getattr(module, name), dtype, current))
    _USER_CAST_REGISTRY.clear()
    for module, name in _USER_PROMOTE_REGISTRY:
        setattr(module, name, _promote_wrapper(getattr(module, name), current))
    _USER_PROMOTE_REGISTRY.clear()
    _DECORATOR_HANDLE = handle
    _amp_state.handle = handle
    return handle
