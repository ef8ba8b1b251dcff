"""Measure what the `apex2native verify` hooks cost per training step.

Runs a small MLP training loop (native AMP, and apex style on the reference stand-in) with
and without the injected hooks, alternating runs, and prints the median time per step and
the overhead. Runs use one intra-op thread (OMP_NUM_THREADS=1) and time each step in process
CPU time, so that other load on a small machine does not dominate the numbers; each run
reports the lower quartile of its 20-step block means (other processes only ever add time, so
the faster blocks are the ones measured without their interference). The program is
written for CUDA where it has a choice: with the hooks (`--device cpu` mapping) it takes its
GPU path, so the cost of the CPU mapping of "cuda" (factories, `.to`, `synchronize`) is in the
hooked numbers.
Usage: python tests/benchmarks/verify_overhead.py [--repeats 5] [--steps 300] [--widths 64,128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from apex2native.verify.runner import REFERENCE_APEX_DIR, Settings, SideSpec, side_env

PROGRAM = """
import json, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

APEX = sys.argv[1] == "apex"
WARMUP, STEPS, WIDTH = 20, int(sys.argv[2]), int(sys.argv[3])
device = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.GELU(), nn.Linear(WIDTH, WIDTH), nn.GELU(),
                      nn.Linear(WIDTH, 16)).to(device)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
if APEX:
    from apex import amp
    model, opt = amp.initialize(model, opt, opt_level="O1", verbosity=0)
else:
    scaler = torch.amp.GradScaler(device)
x = torch.randn(256, WIDTH, device=device)
y = torch.randint(0, 16, (256,), device=device)
times = []
for it in range(WARMUP + STEPS):
    start = time.process_time()
    opt.zero_grad()
    if APEX:
        loss = F.cross_entropy(model(x), y)
        with amp.scale_loss(loss, opt) as scaled:
            scaled.backward()
        torch.nn.utils.clip_grad_norm_(amp.master_params(opt), 1.0)
        opt.step()
    else:
        with torch.amp.autocast(device, dtype=torch.float16):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
    if device == "cuda":
        torch.cuda.synchronize()
    if it >= WARMUP:
        times.append(time.process_time() - start)
blocks = sorted(sum(times[i : i + 20]) / 20 for i in range(0, len(times) - 19, 20))
print("RESULT " + json.dumps(blocks[len(blocks) // 4]))
"""


def run_once(
    program: Path, flavour: str, hooked: bool, steps: int, width: int, record_dir: Path
) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if hooked:
        spec = SideSpec("bench", program.parent, [], reference_apex=flavour == "apex")
        env = side_env(spec, Settings(10**9, 0, "cpu", 600.0), record_dir, base=env)
    elif flavour == "apex":
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REFERENCE_APEX_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
    proc = subprocess.run(
        [sys.executable, str(program), flavour, str(steps), str(width)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--widths", default="64,128", help="MLP widths (batch 256)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / "bench.py"
        program.write_text(PROGRAM)
        for width in (int(w) for w in args.widths.split(",")):
            for flavour in ("native", "apex"):
                samples: dict[bool, list[float]] = {False: [], True: []}
                for i in range(args.repeats):
                    for hooked in (False, True):
                        record_dir = Path(tmp) / f"rec-{width}-{flavour}-{i}-{hooked}"
                        record_dir.mkdir()
                        samples[hooked].append(
                            run_once(program, flavour, hooked, args.steps, width, record_dir)
                        )
                base = statistics.median(samples[False])
                hooked_s = statistics.median(samples[True])
                overhead = (hooked_s / base - 1) * 100
                results[f"{flavour}-w{width}"] = {
                    "ms_per_step_without_hooks": round(base * 1e3, 3),
                    "ms_per_step_with_hooks": round(hooked_s * 1e3, 3),
                    "overhead_percent": round(overhead, 2),
                }
                print(
                    f"{flavour:7s} width {width:4d}: without hooks {base * 1e3:8.3f} ms/step, "
                    f"with hooks {hooked_s * 1e3:8.3f} ms/step, overhead {overhead:+.2f} %",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
