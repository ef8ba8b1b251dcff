"""`scale_loss`, `disable_casts` and the O1 handle whose cast engine is `torch.autocast`.

apex O1 patched torch functions for the whole process. The stand-in opens an autocast region
at the first module forward of an iteration and closes it when `scale_loss` is entered (and
before an optimizer step), which is where apex cleared its cast cache. Closing there keeps the
weight-cast cache from going stale across optimizer steps.
"""

from __future__ import annotations

import contextlib

import torch

from ._amp_state import _amp_state, maybe_print


class AmpHandle:
    """O1 state: whether casts are active and the currently open autocast region."""

    def __init__(self, loss_scale="dynamic", enable_caching: bool = True, verbose: bool = False):
        self._enable_caching = enable_caching
        self._verbose = verbose
        self._is_active = True
        self._region: torch.autocast | None = None
        self._disabled: list[torch.autocast] = []
        self.device_type = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = torch.float16
        self._hook = torch.nn.modules.module.register_module_forward_pre_hook(self._on_forward)

    def is_active(self) -> bool:
        return self._is_active

    def casts_enabled(self) -> bool:
        """True inside an open region with casts active (what a native autocast check sees)."""
        return self._is_active and self._region is not None

    def _on_forward(self, module, args) -> None:
        if self._is_active and self._region is None:
            self.open_region()

    def open_region(self) -> None:
        region = torch.autocast(
            self.device_type, dtype=self.dtype, cache_enabled=self._enable_caching
        )
        region.__enter__()
        self._region = region

    def _clear_cache(self) -> None:
        """Close the open region, which drops autocast's weight-cast cache."""
        region, self._region = self._region, None
        if region is not None:
            region.__exit__(None, None, None)

    def _deactivate(self) -> None:
        self._clear_cache()
        self._hook.remove()
        self._is_active = False

    @contextlib.contextmanager
    def _disable_casts(self):
        self._is_active = False
        guard = torch.autocast(self.device_type, enabled=False)
        guard.__enter__()
        try:
            yield
        finally:
            guard.__exit__(None, None, None)
            self._is_active = True

    def wrap_optimizer(self, optimizer, num_loss: int = 1):
        """The old API's optimizer wrapper, which apex kept working."""
        from .opt import OptimWrapper

        return OptimWrapper(optimizer, self, num_loss)

    def scale_loss(self, *args, **kwargs):
        raise RuntimeError(
            "The old Amp API is no longer supported.  Please move to the new API, documented "
            "here:  https://nvidia.github.io/apex/amp.html.  Transition guide:  "
            "https://nvidia.github.io/apex/amp.html#transition-guide-for-old-api-users"
        )


class NoOpHandle:
    """Handle returned by `amp.init(enabled=False)`."""

    def is_active(self) -> bool:
        return False

    def casts_enabled(self) -> bool:
        return False

    def _clear_cache(self) -> None:
        pass

    def wrap_optimizer(self, optimizer, num_loss: int = 1):
        from .opt import OptimWrapper

        return OptimWrapper(optimizer, self, num_loss)

    @contextlib.contextmanager
    def _disable_casts(self):
        yield


def _as_list(optimizers):
    if isinstance(optimizers, torch.optim.Optimizer) or hasattr(optimizers, "optim"):
        return [optimizers]
    return list(optimizers)


def _patch_skip(optimizer, loss_scaler, loss_id: int) -> None:
    opt_step = optimizer.step

    def skip_step(closure=None):
        if closure is not None:
            raise RuntimeError("Currently, Amp does not support closure use with optimizers.")
        maybe_print(
            f"Gradient overflow.  Skipping step, loss scaler {loss_id} reducing loss scale to "
            f"{loss_scaler.loss_scale()}"
        )
        if hasattr(optimizer._amp_stash, "all_fp32_from_fp16_params"):
            for param in optimizer._amp_stash.all_fp32_from_fp16_params:
                param.grad = None
        optimizer.step = opt_step
        optimizer._amp_stash.already_patched = False

    optimizer.step = skip_step
    optimizer._amp_stash.already_patched = True


@contextlib.contextmanager
def scale_loss(
    loss, optimizers, loss_id=0, model=None, delay_unscale=False, delay_overflow_check=False
):
    """Yield `loss.float() * scale`; on exit unscale, check overflow, update the scale."""
    if not hasattr(_amp_state, "opt_properties"):
        raise RuntimeError(
            "Invoked 'with amp.scale_loss`, but internal Amp state has not been initialized.  "
            "model, optimizer = amp.initialize(model, optimizer, opt_level=...) must be called "
            "before `with amp.scale_loss`."
        )
    if not _amp_state.opt_properties.enabled:
        yield loss
        return
    handle = getattr(_amp_state, "handle", None)
    if _amp_state.opt_properties.patch_torch_functions and handle is not None:
        handle._clear_cache()
    optimizers = _as_list(optimizers)
    loss_scaler = _amp_state.loss_scalers[loss_id]
    loss_scale = loss_scaler.loss_scale()
    if (
        not _amp_state.opt_properties.master_weights
        and not loss_scaler.dynamic
        and loss_scale == 1.0
    ):
        yield loss.float()
        return
    if not delay_unscale:
        for optimizer in optimizers:
            if not optimizer._amp_stash.params_have_scaled_gradients:
                optimizer._prepare_amp_backward()
    yield loss.float() * loss_scale
    if delay_unscale:
        for optimizer in optimizers:
            optimizer._amp_stash.params_have_scaled_gradients = True
        return
    loss_scaler.clear_overflow_state()
    for optimizer in optimizers:
        optimizer._post_amp_backward(loss_scaler)
        optimizer._amp_stash.params_have_scaled_gradients = False
    should_skip = False if delay_overflow_check else loss_scaler.update_scale()
    if should_skip:
        for optimizer in optimizers:
            if not optimizer._amp_stash.already_patched:
                _patch_skip(optimizer, loss_scaler, loss_id)


@contextlib.contextmanager
def disable_casts():
    """Run the body without O1 casts (needs `amp.initialize` with O1, like apex)."""
    with _amp_state.handle._disable_casts():
        yield
