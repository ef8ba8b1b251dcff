"""The stand-in apex reproduces apex.amp's documented control flow (apex-api.md 3-8)."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn as nn

from apex2native.verify.runner import REFERENCE_APEX_DIR


@pytest.fixture
def amp():
    sys.path.insert(0, str(REFERENCE_APEX_DIR))
    try:
        import apex.amp

        yield apex.amp
    finally:
        handle = getattr(apex.amp._amp_state, "handle", None)
        if handle is not None and hasattr(handle, "_deactivate"):
            handle._deactivate()
        for name in [n for n in sys.modules if n == "apex" or n.startswith("apex.")]:
            del sys.modules[name]
        sys.path.remove(str(REFERENCE_APEX_DIR))


def make(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def backward(amp, model, opt, x_scale=1.0, **kwargs):
    loss = model(torch.randn(3, 4) * x_scale).float().pow(2).mean()
    with amp.scale_loss(loss, opt, **kwargs) as scaled:
        scaled.backward()
    return loss


def test_loss_scaler_rules(amp):
    from apex.amp.scaler import LossScaler

    s = LossScaler("dynamic", scale_window=2, max_loss_scale=2.0**17)
    assert s.loss_scale() == 2.0**16
    seen = []
    for _ in range(4):
        assert s.update_scale() is False
        seen.append(s.loss_scale())
    assert seen == [2.0**16, 2.0**17, 2.0**17, 2.0**17]
    s._has_overflow = True
    assert s.update_scale() is True and s.loss_scale() == 2.0**16 and s._unskipped == 0
    floor = LossScaler("dynamic", min_loss_scale=2.0**15)
    for _ in range(3):
        floor._has_overflow = True
        floor.update_scale()
    assert floor.loss_scale() == 2.0**15
    static = LossScaler(128.0)
    static._has_overflow = True
    assert static.update_scale() is False and static.loss_scale() == 128.0


def test_o1_unscales_on_exit_and_casts_forward(amp):
    model, opt = make()
    model, opt = amp.initialize(model, opt, opt_level="O1", verbosity=0)
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    loss = model(torch.randn(3, 4)).float().pow(2).mean()
    assert seen == [torch.float16]
    grads_ref = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    with amp.scale_loss(loss, opt) as scaled:
        assert scaled.item() == pytest.approx(loss.item() * 2.0**16, rel=1e-6)
        assert not torch.is_autocast_enabled("cpu")
        scaled.backward()
    for p, g in zip(model.parameters(), grads_ref):
        assert torch.equal(p.grad, g)
    assert amp.state_dict() == {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 1}}


def test_overflow_skips_exactly_one_step(amp):
    model, opt = make()
    model, opt = amp.initialize(model, opt, opt_level="O1", verbosity=0)
    before = [p.detach().clone() for p in model.parameters()]
    backward(amp, model, opt, x_scale=1e6)
    assert amp._amp_state.loss_scalers[0].loss_scale() == 2.0**15
    assert "step" in opt.__dict__ and opt._amp_stash.already_patched
    opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    opt.zero_grad()
    backward(amp, model, opt)
    opt.step()
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_old_api_wrapped_optimizer_unscales_and_skips_after_an_overflow(amp):
    model, opt = make()
    opt = amp.init(verbose=False).wrap_optimizer(opt)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(3, 4) * 1e6).float().pow(2).mean()
    with opt.scale_loss(loss) as scaled:
        scaled.backward()
    assert opt._loss_scaler[0].loss_scale() == 2.0**15
    opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    x = torch.randn(3, 4)
    opt.zero_grad()
    with opt.scale_loss(model(x).float().pow(2).mean()) as scaled:
        scaled.backward()
    wrapped = [p.grad.clone() for p in model.parameters()]
    opt.zero_grad()
    model(x).float().pow(2).mean().backward()
    assert all(torch.allclose(w, p.grad, rtol=1e-3) for w, p in zip(wrapped, model.parameters()))
    opt.step()
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_fp16_optimizer_keeps_fp32_masters_and_skips_an_overflowing_step(amp):
    from apex.fp16_utils import FP16_Optimizer

    model, opt = make()
    model.half()
    opt = FP16_Optimizer(opt, dynamic_loss_scale=True, verbose=False)
    masters = [p for group in opt.param_groups for p in group["params"]]
    assert all(p.dtype == torch.float32 for p in masters)
    before = [p.detach().clone() for p in model.parameters()]
    opt.backward(model(torch.randn(3, 4).half() * 1e4).float().pow(2).mean() * 1e4)
    assert opt.overflow and opt.loss_scale == 2.0**15
    opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    opt.zero_grad()
    opt.backward(model(torch.randn(3, 4).half()).float().pow(2).mean())
    assert not opt.overflow
    opt.clip_master_grads(1e-3)
    opt.step()
    assert all(p.dtype == torch.float16 for p in model.parameters())
    assert all(torch.equal(m.half(), p) for m, p in zip(masters, model.parameters()))
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_delay_unscale_keeps_gradients_scaled(amp):
    model, opt = make()
    model, opt = amp.initialize(model, opt, opt_level="O1", verbosity=0)
    backward(amp, model, opt, delay_unscale=True)
    scaled = [p.grad.clone() for p in model.parameters()]
    assert opt._amp_stash.params_have_scaled_gradients
    assert amp._amp_state.loss_scalers[0]._unskipped == 0
    backward(amp, model, opt)
    assert amp._amp_state.loss_scalers[0]._unskipped == 1
    assert all(
        g.abs().sum() < s.abs().sum() / 1000
        for g, s in zip((p.grad for p in model.parameters()), scaled)
    )


def test_num_losses_and_state_dict_round_trip(amp):
    model, opt = make()
    model, opt = amp.initialize(model, opt, opt_level="O1", num_losses=2, verbosity=0)
    backward(amp, model, opt, loss_id=1, x_scale=1e6)
    opt.step()
    state = amp.state_dict()
    assert state["loss_scaler0"]["loss_scale"] == 2.0**16
    assert state["loss_scaler1"] == {"loss_scale": 2.0**15, "unskipped": 0}
    amp._amp_state.loss_scalers[1]._loss_scale = 1.0
    amp.load_state_dict(state)
    assert amp._amp_state.loss_scalers[1].loss_scale() == 2.0**15
    with pytest.raises(RuntimeError, match="Unexpected key"):
        amp.load_state_dict({"other": 1})


def test_o2_master_weights_and_o3(amp):
    model, opt = make()
    model, opt = amp.initialize(model, opt, opt_level="O2", verbosity=0)
    assert model[0].weight.dtype is torch.float16
    out = model(torch.randn(3, 4))
    assert out.dtype is torch.float32
    loss = out.pow(2).mean()
    with amp.scale_loss(loss, opt) as scaled:
        scaled.backward()
    masters = list(amp.master_params(opt))
    assert all(p.dtype is torch.float32 and p.grad is not None for p in masters)
    opt.step()
    assert torch.equal(model[0].weight, masters[0].half())
    assert model.state_dict()["0.weight"].dtype is torch.float32

    model3, opt3 = make()
    model3, opt3 = amp.initialize(model3, opt3, opt_level="O3", verbosity=0)
    assert model3[0].weight.dtype is torch.float16
    assert amp._amp_state.loss_scalers[0].loss_scale() == 1.0


def test_option_validation_and_disabled_amp(amp):
    model, opt = make()
    with pytest.raises(RuntimeError, match="letter O"):
        amp.initialize(model, opt, opt_level="01")
    with pytest.raises(RuntimeError, match="master_weights with O1"):
        amp.initialize(model, opt, opt_level="O1", master_weights=True, verbosity=0)
    model, opt = make()
    same = amp.initialize(model, opt, enabled=False)
    assert same == (model, opt)
    loss = model(torch.randn(2, 4)).sum()
    with amp.scale_loss(loss, opt) as scaled:
        assert scaled is loss
    with pytest.raises(AttributeError):
        amp.state_dict()


def test_register_float_function_and_disable_casts(amp):
    import types

    lib = types.ModuleType("lib")
    lib.mm = lambda a, b: a @ b
    amp.register_float_function(lib, "mm")
    with pytest.raises(ValueError):
        amp.register_half_function(lib, "missing")
    model, opt = make()
    model, opt = amp.initialize(model, opt, opt_level="O1", verbosity=0)
    h = model[0](torch.randn(3, 4))
    assert h.dtype is torch.float16
    assert lib.mm(h, torch.randn(8, 2)).dtype is torch.float32
    with amp.disable_casts():
        assert model[0](torch.randn(3, 4)).dtype is torch.float32
    amp._amp_state.handle._clear_cache()
    half = torch.randn(3, 8).half(), torch.randn(8, 2).half()
    assert lib.mm(*half).dtype is torch.float16
