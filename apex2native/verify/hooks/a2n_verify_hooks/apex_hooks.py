"""Recording hooks on `apex.amp` and `apex.fp16_utils` (real or stand-in), installed right
after they are imported.

`scale_loss` is wrapped to record the unscaled loss and the scale in use, and to wrap the
one-shot skip that apex installs as an instance attribute `optimizer.step` after an overflow,
so a skipped step still counts as a step opportunity. With the fp32 envelope run,
`initialize` is forced to `enabled=False`.
"""

from __future__ import annotations

import importlib.abc
import sys

import torch

from .recorder import Recorder


def _current_scale(amp, loss_id: int) -> float:
    state = amp._amp_state
    properties = getattr(state, "opt_properties", None)
    if properties is None or not properties.enabled:
        return 1.0
    try:
        return float(state.loss_scalers[loss_id].loss_scale())
    except (AttributeError, IndexError):
        return 1.0


def _wrap_skips(rec: Recorder, optimizers) -> None:
    if isinstance(optimizers, torch.optim.Optimizer) or hasattr(optimizers, "optim"):
        optimizers = [optimizers]
    for optimizer in optimizers:
        stash = getattr(optimizer, "_amp_stash", None)
        skip = optimizer.__dict__.get("step")
        if stash is None or skip is None or not getattr(stash, "already_patched", False):
            continue
        if getattr(skip, "_a2n_skip", False):
            continue

        def recorded_skip(*args, _skip=skip, _opt=optimizer, **kwargs):
            began = rec.begin(_opt, direct=False)
            result = _skip(*args, **kwargs)
            if began:
                rec.end()
            return result

        recorded_skip._a2n_skip = True
        optimizer.step = recorded_skip


class _ScaleLoss:
    def __init__(self, rec, amp, inner, loss, optimizers, loss_id):
        self.rec, self.amp, self.inner = rec, amp, inner
        self.loss, self.optimizers, self.loss_id = loss, optimizers, loss_id

    def __enter__(self):
        self.rec.set_pending(self.loss, _current_scale(self.amp, self.loss_id), "apex")
        return self.inner.__enter__()

    def __exit__(self, *exc):
        result = self.inner.__exit__(*exc)
        if exc[0] is None:
            _wrap_skips(self.rec, self.optimizers)
        return result


class _WrapperScaleLoss:
    """`opt.scale_loss(loss)` of the old API's optimizer wrapper (`handle.wrap_optimizer`)."""

    def __init__(self, rec, wrapper, inner, loss):
        self.rec, self.wrapper, self.inner, self.loss = rec, wrapper, inner, loss

    def __enter__(self):
        wrapper = self.wrapper
        scale = 1.0
        if wrapper._amp_handle.is_active():
            scale = float(wrapper._loss_scaler[wrapper._loss_idx].loss_scale())
        self.rec.set_pending(self.loss, scale, "apex")
        return self.inner.__enter__()

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


def _record_wrapper(rec: Recorder, wrapper) -> None:
    """Record the wrapper's scaled losses, and its skipped steps as step opportunities."""
    scale_loss, step = wrapper.scale_loss, wrapper.step

    def recorded_scale_loss(loss):
        return _WrapperScaleLoss(rec, wrapper, scale_loss(loss), loss)

    def recorded_step(*args, **kwargs):
        began = rec.begin(wrapper._optimizer, direct=False)
        result = step(*args, **kwargs)
        if began:
            rec.end()
        return result

    wrapper.scale_loss, wrapper.step = recorded_scale_loss, recorded_step


def _patch_init(rec: Recorder, amp, amp_off: bool) -> None:
    """`amp.init` (the pre-0.1 API): its handle's wrapped optimizers are recorded."""
    orig_init = getattr(amp, "init", None)
    if orig_init is None:
        return

    def init(*args, **kwargs):
        if amp_off:
            args, kwargs = args[1:], {**kwargs, "enabled": False}
        handle = orig_init(*args, **kwargs)
        orig_wrap = getattr(handle, "wrap_optimizer", None)
        if orig_wrap is not None:

            def wrap_optimizer(optimizer, num_loss=1):
                wrapper = orig_wrap(optimizer, num_loss)
                _record_wrapper(rec, wrapper)
                return wrapper

            handle.wrap_optimizer = wrap_optimizer
        return handle

    amp.init = init


def patch_amp(rec: Recorder, amp, amp_off: bool) -> None:
    """Wrap `scale_loss` (and `initialize` when amp must be off) on an imported apex.amp."""
    if getattr(amp, "_a2n_patched", False):
        return
    amp._a2n_patched = True
    orig_scale_loss = amp.scale_loss

    def scale_loss(loss, optimizers, loss_id=0, *args, **kwargs):
        inner = orig_scale_loss(loss, optimizers, loss_id, *args, **kwargs)
        return _ScaleLoss(rec, amp, inner, loss, optimizers, loss_id)

    amp.scale_loss = scale_loss
    _patch_init(rec, amp, amp_off)
    handle = sys.modules.get("apex.amp.handle")
    if handle is not None and getattr(handle, "scale_loss", None) is orig_scale_loss:
        handle.scale_loss = scale_loss
    if amp_off:
        orig_initialize = amp.initialize

        def initialize(models, optimizers=None, *args, **kwargs):
            kwargs["enabled"] = False
            return orig_initialize(models, optimizers, *args, **kwargs)

        amp.initialize = initialize
        frontend = sys.modules.get("apex.amp.frontend")
        if frontend is not None:
            frontend.initialize = initialize


def patch_fp16_utils(rec: Recorder, module) -> None:
    """`FP16_Optimizer.backward` records the loss and its scale; `step` counts a skipped
    step (an overflow) as a step opportunity."""
    cls = getattr(module, "FP16_Optimizer", None)
    if cls is None or getattr(cls, "_a2n_patched", False):
        return
    cls._a2n_patched = True
    backward, step = cls.backward, cls.step

    def recorded_backward(self, loss, *args, **kwargs):
        rec.set_pending(loss, float(self.loss_scaler.loss_scale()), "apex")
        return backward(self, loss, *args, **kwargs)

    def recorded_step(self, *args, **kwargs):
        began = rec.begin(self.optimizer, direct=False)
        result = step(self, *args, **kwargs)
        if began:
            rec.end()
        return result

    cls.backward, cls.step = recorded_backward, recorded_step


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner, after):
        self.inner, self.after = inner, after

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        self.after(module)


class _AmpFinder(importlib.abc.MetaPathFinder):
    """Patch `apex.amp` (and `apex.fp16_utils`) as soon as it is executed, before user code
    binds its names."""

    def __init__(self, after):
        self.after = after  # module name -> what to do with the module

    def find_spec(self, name, path, target=None):
        if name not in self.after:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, self.after[name])
                return spec
        return None


def install(rec: Recorder, amp_off: bool) -> None:
    """Patch apex.amp now if already imported, else when it gets imported."""

    after = {
        "apex.amp": lambda module: patch_amp(rec, module, amp_off),
        "apex.fp16_utils": lambda module: patch_fp16_utils(rec, module),
    }
    waiting = {}
    for name, patch in after.items():
        if name in sys.modules:
            patch(sys.modules[name])
        else:
            waiting[name] = patch
    if waiting:
        sys.meta_path.insert(0, _AmpFinder(waiting))
