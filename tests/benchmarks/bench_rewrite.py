"""Speed of `apex2native rewrite --check` on a large tree, against `ast.parse` of every file.

Not collected by pytest. Run: python tests/benchmarks/bench_rewrite.py [--files 3000] [--apex 0.03]

It builds a synthetic repository of plain Python modules, a few percent of which use apex in
the cross-file shapes of fixtures/repos, then times in one process:
  - ast.parse of every file (the reference),
  - phase 1 (the repo-wide plan) alone,
  - the whole `rewrite --check` (discovery, plan, rules, guards), with --jobs 1 and 2,
and prints the peak memory of the process.
"""

from __future__ import annotations

import argparse
import ast
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from apex2native.cli import main
from apex2native.discover import discover
from apex2native.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
APEX_REPOS = sorted((ROOT / "fixtures" / "repos").glob("*/before"))
APEX_FILES = sorted((ROOT / "fixtures" / "rewrite").rglob("*.in.py"))


def plain_module(rng: random.Random, index: int) -> str:
    """A realistic-looking module of 150-400 lines with no apex in it."""
    lines = [f'"""Module {index}."""', "import math", "import torch", ""]
    for f in range(rng.randint(10, 25)):
        lines.append(f"def helper_{index}_{f}(x, y=2, *args, **kwargs):")
        lines.append(f'    """Compute something {f}."""')
        for k in range(rng.randint(6, 14)):
            lines.append(
                f"    x = x * {k} + math.sqrt(abs(y)) - torch.tensor([{k}, {f}]).sum().item()"
            )
        lines.append("    return {'value': x, 'items': [i for i in range(10) if i % 2]}")
        lines.append("")
    return "\n".join(lines) + "\n"


def build_tree(target: Path, files: int, apex_share: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    apex_count = 0
    for i in range(files):
        folder = target / f"pkg{i % 40}"
        folder.mkdir(parents=True, exist_ok=True)
        if rng.random() < apex_share:
            apex_count += 1
            if rng.random() < 0.3 and APEX_REPOS:
                repo = rng.choice(APEX_REPOS)
                shutil.copytree(repo, folder / f"repo{i}")
                continue
            (folder / f"apex_{i}.py").write_bytes(rng.choice(APEX_FILES).read_bytes())
        else:
            (folder / f"mod_{i}.py").write_text(plain_module(rng, i))
    return apex_count


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main_bench() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--apex", type=float, default=0.03)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="a2n-bench-"))
    apex_count = build_tree(work, args.files, args.apex)
    paths = sorted(work.rglob("*.py"))
    size = sum(p.stat().st_size for p in paths)
    print(f"tree: {len(paths)} files, {size / 1e6:.1f} MB, {apex_count} apex files or repos")

    def parse_all():
        for p in paths:
            ast.parse(p.read_bytes())

    t_ast, _ = timed(parse_all)
    found = discover([str(work)])
    t_plan, plan = timed(lambda: build_plan(found.files))
    runner = CliRunner()
    t_check1, r1 = timed(
        lambda: runner.invoke(
            main, ["rewrite", "--check", "-q", "--no-cache", "-j", "1", str(work)]
        )
    )
    t_check2, r2 = timed(
        lambda: runner.invoke(
            main, ["rewrite", "--check", "-q", "--no-cache", "-j", "2", str(work)]
        )
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ast.parse of every file : {t_ast:6.2f} s")
    print(f"phase 1 (plan) alone    : {t_plan:6.2f} s  ({len(plan.facts)} files with plan facts)")
    print(
        f"rewrite --check -j 1    : {t_check1:6.2f} s  ({t_check1 / t_ast:.2f}x ast)  exit {r1.exit_code}"
    )
    print(
        f"rewrite --check -j 2    : {t_check2:6.2f} s  ({t_check2 / t_ast:.2f}x ast)  exit {r2.exit_code}"
    )
    for result in (r1, r2):
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            print(f"error: {result.exception!r}")
        tail = result.stderr.strip().splitlines()
        if tail:
            print(tail[-1])
    print(f"peak memory (this process): {peak:.0f} MB")
    shutil.rmtree(work)


if __name__ == "__main__":
    main_bench()
