"""Issue 10: per-file cost of `apex2native rewrite --check FILE`, as a ratio to LibCST.

Not collected by pytest. Run:

    python tests/benchmarks/bench_per_file.py DIR [--repeat 3] [--jobs default]
        [--script .corpus/trees/microsoft__unilm/s2s-ft/run_seq2seq.py] [--limit N]

For every .py file under DIR (the issue 5 corpus: `.corpus/trees`, an ignored folder; a file
named on the command line is processed even where .gitignore excludes it):
  - cmd: `python -m apex2native rewrite --check -q [-j J] FILE` as a whole command (a subprocess,
    interpreter start and imports included), the median of --repeat runs;
  - ref: in this process, `libcst.parse_module` of the file plus `MetadataWrapper(module)
    .resolve_many` of ScopeProvider, QualifiedNameProvider, PositionProvider and
    ParentNodeProvider (the reference of issue 10), the median of --repeat runs;
  - ratio = cmd / ref (target for a ~500-line training script: <= 2x).
One line per file (ratio, cmd, ref, exit code, lines, path), then median and max of the ratios,
then --script measured the same way at -j 1 and at the default jobs, then the fixed start-up
costs (`python -c pass`, `python -c "import apex2native.cli"`) for context. `cpu-ratio` is the
same ratio in user+sys seconds (steadier on a shared machine). Commands run with bytecode caching
on, as an installed tool would (see bench_monorepo.py; `--as-is` keeps this shell's environment).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import libcst as cst
from bench_monorepo import commit, run_command, tool_env, tool_location
from libcst.metadata import (
    MetadataWrapper,
    ParentNodeProvider,
    PositionProvider,
    QualifiedNameProvider,
    ScopeProvider,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".corpus" / "trees" / "microsoft__unilm" / "s2s-ft" / "run_seq2seq.py"
PROVIDERS = [ScopeProvider, QualifiedNameProvider, PositionProvider, ParentNodeProvider]


def reference(path: Path) -> tuple[float, float] | None:
    """Wall and cpu seconds for LibCST parse + the four metadata providers (None: no parse)."""
    data = path.read_bytes()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        module = cst.parse_module(data)
    except Exception:  # noqa: BLE001 - any parser failure means no reference
        return None
    MetadataWrapper(module).resolve_many(PROVIDERS)
    return time.perf_counter() - start, time.process_time() - cpu


def command(path: Path, jobs: str, env: dict[str, str]) -> dict:
    args = [sys.executable, "-m", "apex2native", "rewrite", "--check", "-q", "--no-cache"]
    if jobs != "default":
        args += ["-j", jobs]
    return run_command([*args, str(path)], path.parent, 0.0, env)


def startup(code: str, repeat: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(path: Path, jobs: str, repeat: int, env: dict[str, str]) -> dict | None:
    """Medians over interleaved rounds: command wall/cpu, reference wall/cpu; exit codes."""
    cmds, refs = [], []
    for _ in range(repeat):
        ref = reference(path)
        if ref is not None:
            refs.append(ref)
        cmds.append(command(path, jobs, env))
    return {
        "cmd": statistics.median(r["seconds"] for r in cmds),
        "cmd_cpu": statistics.median(r["cpu"] for r in cmds),
        "ref": statistics.median(r[0] for r in refs) if refs else None,
        "ref_cpu": statistics.median(r[1] for r in refs) if refs else None,
        "codes": sorted({r["rc"] for r in cmds}),
        "maxrss": max(r["maxrss"] for r in cmds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", default="default", help="-j for the per-file runs")
    parser.add_argument("--script", type=Path, default=SCRIPT)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (0: all)")
    parser.add_argument("--skip-files", action="store_true", help="only --script and start-up")
    parser.add_argument("--as-is", action="store_true", help="this shell's env (see docstring)")
    args = parser.parse_args()

    print(f"commit: {commit()}  python {sys.version.split()[0]}  cpus {os.cpu_count()}")
    env = tool_env(args.as_is)
    print(f"bytecode cache: {'as this shell has it' if args.as_is else 'on (scratch prefix)'}")
    print(f"apex2native imported from: {tool_location(env)}")
    reference(Path(__file__))  # import and warm LibCST's parser once, untimed
    ratios: list[tuple[float, str]] = []
    cpu_ratios: list[float] = []
    if not args.skip_files:
        root = args.dir.resolve()
        files = sorted(p for p in root.rglob("*.py") if p.is_file())
        if args.limit:
            files = files[: args.limit]
        print(f"files: {len(files)} under {args.dir}  jobs {args.jobs}  repeat {args.repeat}")
        print("ratio  cpu-ratio     cmd s     ref s  exit  lines  path")
        skipped = 0
        for path in files:
            m = measure(path, args.jobs, args.repeat, env)
            lines = path.read_bytes().count(b"\n")
            rel = path.relative_to(root).as_posix()
            code = "/".join(str(c) for c in m["codes"])
            if m["ref"] is None:
                skipped += 1
                print(
                    f"{'-':>5}  {'-':>9}  {m['cmd']:8.3f}  {'-':>8}  {code:>4}  {lines:5d}  {rel}",
                    flush=True,
                )
                continue
            ratio, cpu_ratio = m["cmd"] / m["ref"], m["cmd_cpu"] / m["ref_cpu"]
            ratios.append((ratio, rel))
            cpu_ratios.append(cpu_ratio)
            print(
                f"{ratio:5.2f}  {cpu_ratio:9.2f}  {m['cmd']:8.3f}  {m['ref']:8.3f}  {code:>4}  "
                f"{lines:5d}  {rel}",
                flush=True,
            )
        if ratios:
            values = [r for r, _ in ratios]
            worst = max(ratios)
            print(
                f"per-file ratio median: {statistics.median(values):.2f}x over {len(values)} files"
            )
            print(f"per-file ratio max: {worst[0]:.2f}x ({worst[1]})")
            print(
                f"per-file cpu ratio median: {statistics.median(cpu_ratios):.2f}x, "
                f"max {max(cpu_ratios):.2f}x"
            )
        if skipped:
            print(f"files LibCST cannot parse (no ratio): {skipped}")

    script = args.script.resolve()
    lines = script.read_bytes().count(b"\n")
    for jobs in ("1", "default"):
        m = measure(script, jobs, max(args.repeat, 3), env)
        print(
            f"script {script.name} ({lines} lines) -j {jobs}: cmd {m['cmd']:.3f} s "
            f"(cpu {m['cmd_cpu']:.3f}), ref {m['ref']:.3f} s (cpu {m['ref_cpu']:.3f}), "
            f"ratio {m['cmd'] / m['ref']:.2f}x (target <= 2), "
            f"cpu ratio {m['cmd_cpu'] / m['ref_cpu']:.2f}x, exit {m['codes']}, "
            f"maxrss {m['maxrss']:.0f} MB"
        )
    print(f"start-up python -c pass: {startup('pass', 5, env):.3f} s")
    print(f"start-up import apex2native.cli: {startup('import apex2native.cli', 5, env):.3f} s")


if __name__ == "__main__":
    main()
