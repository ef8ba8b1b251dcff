"""The injected hooks: a CUDA program and its "cuda" AMP on the CPU, chain-loading, stop
semantics, recording."""

from __future__ import annotations

import json
import textwrap

from verify_helpers import COMMAND, FIXTURES, events, run

from apex2native.verify.runner import SideSpec

PROBE = """
import io, json, os, tempfile, warnings
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

checks = {}
with torch.amp.autocast("cuda"):
    checks["autocast_cpu_fp16"] = (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.float16
    )
    checks["cuda_query_mapped"] = torch.is_autocast_enabled("cuda") and torch.is_autocast_enabled()
    checks["linear_fp16"] = nn.Linear(2, 2)(torch.randn(1, 2)).dtype == torch.float16
with torch.cuda.amp.autocast():
    checks["deprecated_autocast"] = torch.is_autocast_enabled("cpu")
checks["scaler_enabled"] = torch.amp.GradScaler("cuda").is_enabled()
checks["deprecated_scaler"] = torch.cuda.amp.GradScaler().is_enabled()

# the GPU path of a CUDA-written program
checks["cuda_shown"] = torch.cuda.is_available() and torch.cuda.device_count() == 1
torch.cuda.set_device(0)
torch.cuda.manual_seed_all(0)
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
with torch.cuda.device(0):
    checks["cuda_queries"] = torch.cuda.current_device() == 0 and torch.cuda.memory_allocated() == 0
torch.backends.cudnn.benchmark = True
torch.backends.cudnn.deterministic = False
checks["cudnn_pinned"] = not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
device = torch.device("cuda", 0)
x = torch.zeros(2, device=device)
made = [x, torch.ones(2, device="cuda:0"), torch.arange(3, device=device),
        torch.zeros_like(x, device="cuda"), torch.tensor([1.0], device=device)]
checks["factories"] = {t.device.type for t in made} == {"cpu"}
checks["module_factory"] = next(nn.Linear(2, 2, device=device).parameters()).device.type == "cpu"
checks["tensor_cuda"] = x.cuda(non_blocking=True).device.type == "cpu"
checks["tensor_to"] = x.to("cuda:0", non_blocking=True).device.type == "cpu"
checks["tensor_to_kw"] = x.to(device=torch.device("cuda")).device.type == "cpu"
checks["module_cuda"] = next(nn.Linear(2, 2).cuda().to(device).parameters()).device.type == "cpu"
checks["pin"] = x.pin_memory() is x
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    batches = list(DataLoader(TensorDataset(torch.arange(4.0)), batch_size=2, pin_memory=True))
checks["pinned_loader"] = len(batches) == 2 and not caught
buffer = io.BytesIO()
torch.save({"w": torch.ones(2)}, buffer)
buffer.seek(0)
checks["load"] = torch.load(buffer, map_location="cuda:0")["w"].device.type == "cpu"
fd, store = tempfile.mkstemp()
os.close(fd)
dist.init_process_group("nccl", init_method=f"file://{store}", rank=0, world_size=1)
checks["nccl_is_gloo"] = dist.get_backend() == "gloo"
ddp = nn.parallel.DistributedDataParallel(nn.Linear(2, 2).cuda(), device_ids=[0], output_device=0)
checks["ddp_device_ids"] = ddp(torch.ones(1, 2, device=device)).shape == (1, 2)
dist.destroy_process_group()
data_parallel = nn.DataParallel(nn.Linear(2, 2)).cuda()
checks["data_parallel"] = data_parallel(torch.ones(1, 2).cuda()).shape == (1, 2)


@torch.jit.script
def scripted(n: int):
    return torch.zeros(n)


checks["torchscript_factories"] = scripted(2).shape == (2,)

SEEN = []


class F(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x):
        SEEN.append(x.dtype)
        return x * 2

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, g):
        return g * 2


with torch.amp.autocast("cuda", dtype=torch.float16):
    F.apply(torch.randn(2, dtype=torch.float16))
checks["custom_fwd_casts"] = SEEN == [torch.float32]
print("CHECKS " + json.dumps(checks))
"""


def write(tmp_path, name, source):
    tree = tmp_path / name
    tree.mkdir()
    (tree / "train.py").write_text(textwrap.dedent(source))
    return tree


def test_a_cuda_program_and_its_amp_run_on_the_cpu(tmp_path):
    tree = write(tmp_path, "probe", PROBE)
    (result,) = run([SideSpec("probe", tree, COMMAND)], tmp_path / "rec")
    line = next(ln for ln in result.stdout_tail.splitlines() if ln.startswith("CHECKS "))
    checks = json.loads(line[len("CHECKS ") :])
    assert len(checks) == 23 and [name for name, ok in checks.items() if not ok] == []


def test_without_mapping_cuda_amp_stays_disabled(tmp_path):
    tree = write(tmp_path, "probe", PROBE)
    (result,) = run([SideSpec("probe", tree, COMMAND)], tmp_path / "rec", device="cuda")
    assert "CHECKS" not in result.stdout_tail
    assert result.returncode != 0


def test_existing_sitecustomize_is_chain_loaded(tmp_path, monkeypatch):
    user_site = tmp_path / "usersite"
    user_site.mkdir()
    marker = tmp_path / "marker.txt"
    (user_site / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.setenv("PYTHONPATH", str(user_site))
    spec = SideSpec("rewritten", FIXTURES / "plain" / "rewritten", COMMAND)
    (result,) = run([spec], tmp_path / "rec", steps=2)
    assert marker.read_text() == "ran"
    assert result.status == "stopped"


def test_except_exception_cannot_swallow_the_stop(tmp_path):
    tree = write(
        tmp_path,
        "greedy",
        """
        import torch
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        done = 0
        for _ in range(50):
            try:
                opt.zero_grad()
                model(torch.ones(2, 3)).pow(2).mean().backward()
                opt.step()
                done += 1
            except Exception:
                pass
        print("finished", done)
    """,
    )
    (result,) = run([SideSpec("greedy", tree, COMMAND)], tmp_path / "rec", steps=5)
    assert result.status == "stopped" and result.returncode == 0
    assert "finished" not in result.stdout_tail
    steps = events(result, "step")
    assert [e["n"] for e in steps] == [0, 1, 2, 3, 4]
    assert all(e["applied"] and e["grad_norm"] > 0 for e in steps)
    losses = [e["loss"] for e in events(result, "backward")]
    assert len(losses) == 6 and losses[0] > losses[4]
    assert [e["src"] for e in events(result, "backward")] == ["plain"] * 6


def test_autograd_backward_and_early_exit_are_recorded(tmp_path):
    tree = write(
        tmp_path,
        "short",
        """
        import torch
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            torch.autograd.backward(model(torch.ones(2, 3)).sum())
            opt.step()
    """,
    )
    (result,) = run([SideSpec("short", tree, COMMAND)], tmp_path / "rec", steps=5)
    assert result.status == "finished"
    assert len(events(result, "backward")) == 2 and len(events(result, "step")) == 2
    assert events(result, "end")[0]["reason"] == "exit"


def test_crash_is_recorded(tmp_path):
    tree = write(
        tmp_path,
        "crash",
        """
        import torch
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model(torch.ones(2, 3)).sum().backward()
        opt.step()
        raise ValueError("late failure")
    """,
    )
    (result,) = run([SideSpec("crash", tree, COMMAND)], tmp_path / "rec")
    assert result.status == "crashed"
    assert result.error_summary() == "ValueError: late failure"
