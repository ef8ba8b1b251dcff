"""Issue 10: `apex2native rewrite --check` on a real monorepo, against `ast.parse` of every file.

Not collected by pytest. Run:

    python tests/benchmarks/bench_monorepo.py TREE [--repeat 3] [--jobs 1 --jobs default]

TREE is the monorepo (NVIDIA DeepLearningExamples at 729963dd47e7c8bd462ad10bfac7a7b0b604e6dd,
extracted under the ignored `.bench/dle`). It is copied to a scratch folder outside any git work
tree first (`--in-place` skips that): inside this repository `.bench/` is ignored, and the tool
honours .gitignore. Each round times, in this order:
  - ast-parse-all: read + `ast.parse` of every .py file of the copy, in this process;
  - `apex2native rewrite --check -q TREE` as a whole command (a subprocess, interpreter start
    included) at each --jobs setting (`default` passes no -j: the tool uses the CPU count),
    twice: "cold" with an empty result cache, then "warm" with the cache the cold run filled.
One line per figure and round, then the median of the rounds for each figure and the ratios of
the medians. Peak RSS: from os.wait4 on the command, i.e. the kernel's max RSS over the command
and every worker it waited for (what resource.getrusage(RUSAGE_CHILDREN) reports for that one
child): the largest single process, not a sum. `rss-sum` is the largest sum of VmRSS over the
command's process tree, sampled from /proc every --sample seconds (psutil is not used); forked
workers share pages with the parent, so `pss-sum` (the same sum of Pss, shared pages split
between the processes) is the fairer "whole command" figure.

`--determinism` instead runs `rewrite --diff` on the copy twice at the default jobs and once at
-j 1 and says whether the diffs (and the error lines) are identical byte for byte.
`cpu` is user+sys seconds (wait4 for the command and its workers, process_time for ast): on a
shared, loaded machine it moves less than wall time, so both ratios are printed.

The command runs as an installed tool would: with bytecode caching on (PYTHONDONTWRITEBYTECODE
unset, PYTHONPYCACHEPREFIX pointing at a scratch folder so nothing is written into the source
tree, warmed by one untimed `import apex2native.cli`). `--as-is` keeps this shell's environment.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "apex2native"],
        capture_output=True,
        text=True,
        check=False,
    )
    if not dirty.stdout.strip():
        return out.stdout.strip()
    diff = subprocess.run(
        ["git", "-C", str(ROOT), "diff", "HEAD", "--", "apex2native"],
        capture_output=True,
        check=False,
    )
    return (
        f"{out.stdout.strip()}+dirty(apex2native diff {hashlib.sha1(diff.stdout).hexdigest()[:8]})"
    )


def python_files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*.py") if p.is_file())


def ast_parse_all(paths: list[Path]) -> tuple[float, float, int]:
    """Wall and cpu seconds to read and parse every file, and how many did not parse."""
    bad = 0
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        try:
            ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            bad += 1
    return time.perf_counter() - start, time.process_time() - cpu, bad


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                kids.extend(int(k) for k in fh.read().split())
    except OSError:
        pass
    return kids


def _memory_kb(pid: int) -> tuple[int, int]:
    """VmRSS and Pss (shared pages split between the processes that map them) of one process."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def tree_memory_kb(pid: int) -> tuple[int, int]:
    """Sums of VmRSS and of Pss over `pid` and its descendants."""
    rss = pss = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        one_rss, one_pss = _memory_kb(current)
        rss, pss = rss + one_rss, pss + one_pss
        todo.extend(_children(current))
    return rss, pss


def tool_env(as_is: bool, cache: Path | None = None) -> dict[str, str]:
    """The environment for the timed commands (see the module docstring), warmed once."""
    env = dict(os.environ)
    if as_is:
        return env
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache or Path(tempfile.gettempdir()) / "a2n-bench-pycache")
    subprocess.run([sys.executable, "-c", "import apex2native.cli"], env=env, check=True)
    return env


def tool_location(env: dict[str, str]) -> str:
    """Where the timed commands import apex2native from (PYTHONPATH can pin a snapshot)."""
    out = subprocess.run(
        [sys.executable, "-c", "import apex2native; print(apex2native.__file__)"],
        env=env,
        cwd=tempfile.gettempdir(),  # not this checkout: the timed commands run elsewhere too
        capture_output=True,
        text=True,
        check=False,
    )
    return str(Path(out.stdout.strip()).parent)


def run_command(
    args: list[str], cwd: Path, sample: float = 0.0, env: dict[str, str] | None = None
) -> dict:
    """Run `args`: wall and cpu seconds, exit code, max RSS (wait4), sampled tree RSS sum (MB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=err, env=env)
        peak_sum = [0, 0]
        done = threading.Event()

        def sampler() -> None:
            while not done.wait(sample):
                rss, pss = tree_memory_kb(proc.pid)
                peak_sum[0], peak_sum[1] = max(peak_sum[0], rss), max(peak_sum[1], pss)

        thread = threading.Thread(target=sampler, daemon=True)
        if sample > 0:
            thread.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        if sample > 0:
            thread.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        out.seek(0)
        stdout = out.read()
    return {
        "seconds": seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rc": proc.returncode,
        "maxrss": usage.ru_maxrss / 1024,
        "rss_sum": peak_sum[0] / 1024,
        "pss_sum": peak_sum[1] / 1024,
        "errors": [line for line in stderr.splitlines() if line.startswith("error:")],
        "stderr_tail": stderr.strip().splitlines()[-3:],
        "stdout": stdout,
    }


def determinism(tree: Path, env: dict[str, str]) -> None:
    """`rewrite --diff` (which writes nothing) run three times; identical stdout and errors?"""
    runs = []
    for jobs in ("default", "default", "1"):
        cmd = [sys.executable, "-m", "apex2native", "rewrite", "--diff", "-q", "--no-cache"]
        if jobs != "default":
            cmd += ["-j", jobs]
        res = run_command([*cmd, str(tree)], tree.parent, 0.0, env)
        digest = hashlib.sha256(res["stdout"]).hexdigest()[:16]
        lines = res["stdout"].count(b"\n")
        print(
            f"diff run -j {jobs}: commit {commit()}  {res['seconds']:.1f} s  exit {res['rc']}  "
            f"{len(res['stdout'])} bytes  {lines} lines  sha256 {digest}  "
            f"{len(res['errors'])} error lines",
            flush=True,
        )
        runs.append((jobs, res))
    first_jobs, first = runs[0]
    for jobs, res in runs[1:]:
        same = res["stdout"] == first["stdout"]
        same_errors = res["errors"] == first["errors"]
        print(
            f"deterministic -j {jobs} vs -j {first_jobs}: diff {'identical' if same else 'DIFFERS'}"
            f", error lines {'identical' if same_errors else 'DIFFER'}"
        )
        if not same:
            a = first["stdout"].decode("utf-8", "replace").splitlines()
            b = res["stdout"].decode("utf-8", "replace").splitlines()
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            print(f"    first difference at line {at + 1}:")
            print(f"    - {a[at] if at < len(a) else '<end>'}")
            print(f"    + {b[at] if at < len(b) else '<end>'}")
        if not same_errors:
            for line in sorted(set(first["errors"]) ^ set(res["errors"])):
                print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--jobs",
        action="append",
        help="a -j value or 'default' (repeatable; default: 1 and default)",
    )
    parser.add_argument("--in-place", action="store_true", help="time TREE itself, no copy")
    parser.add_argument("--sample", type=float, default=0.1, help="RSS sampling period (0: off)")
    parser.add_argument("--show-errors", type=int, default=10, help="error lines shown per run")
    parser.add_argument("--as-is", action="store_true", help="this shell's env (see docstring)")
    parser.add_argument(
        "--determinism",
        action="store_true",
        help="instead of timing: `rewrite --diff` twice at the default jobs and once at -j 1, "
        "then compare the outputs byte for byte",
    )
    args = parser.parse_args()
    jobs = args.jobs or ["1", "default"]

    scratch = None
    tree = args.tree.resolve()
    if not args.in_place:
        scratch = Path(tempfile.mkdtemp(prefix="a2n-monorepo-"))
        shutil.copytree(tree, scratch / tree.name, symlinks=True)
        tree = scratch / tree.name
    try:
        paths = python_files(tree)
        lines = sum(p.read_bytes().count(b"\n") for p in paths)
        apex = sum(1 for p in paths if b"apex" in p.read_bytes())
        print(f"commit: {commit()}  python {sys.version.split()[0]}  cpus {os.cpu_count()}")
        print(f"tree: {tree}  {len(paths)} .py files, {lines} lines, {apex} mention apex")
        env = tool_env(args.as_is, scratch / "pycache" if scratch else None)
        print(f"bytecode cache: {'as this shell has it' if args.as_is else 'on (scratch prefix)'}")
        print(f"apex2native imported from: {tool_location(env)}")
        if args.determinism:
            determinism(tree, env)
            return
        ast_parse_all(paths)  # warm the page cache and the parser once, untimed

        # each jobs setting twice: "cold" with an empty result cache, then "warm" with the
        # cache that run filled (a CI job that keeps the cache between runs)
        modes = [f"{j} {state}" for j in jobs for state in ("cold", "warm")]
        results: dict[str, list] = {"ast": []}
        for mode in modes:
            results[mode] = []
        for round_ in range(1, args.repeat + 1):
            print(f"round {round_}: commit {commit()}")  # the code may change between rounds
            seconds, cpu, bad = ast_parse_all(paths)
            results["ast"].append((seconds, cpu))
            print(
                f"round {round_}: ast-parse-all           {seconds:8.2f} s  cpu {cpu:7.2f} s  "
                f"({bad} unparsable)"
            )
            for mode in modes:
                j, state = mode.split()
                cmd = [sys.executable, "-m", "apex2native", "rewrite", "--check", "-q"]
                if j != "default":
                    cmd += ["-j", j]
                cache = Path(tempfile.gettempdir()) / f"a2n-bench-cache-{os.getpid()}-{j}"
                if state == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                env["APEX2NATIVE_CACHE_DIR"] = str(cache)
                res = run_command([*cmd, str(tree)], tree.parent, args.sample, env)
                results[mode].append(res)
                print(
                    f"round {round_}: rewrite --check -j {mode:<12} {res['seconds']:8.2f} s  "
                    f"cpu {res['cpu']:7.2f} s  exit {res['rc']}  maxrss {res['maxrss']:.0f} MB  "
                    f"rss-sum {res['rss_sum']:.0f} MB  pss-sum {res['pss_sum']:.0f} MB  "
                    f"{len(res['errors'])} error lines",
                    flush=True,
                )
                for line in res["errors"][: args.show_errors]:
                    print(f"    {line}")

        t_ast = statistics.median(t for t, _ in results["ast"])
        c_ast = statistics.median(c for _, c in results["ast"])
        print(f"median ast-parse-all: {t_ast:.2f} s (cpu {c_ast:.2f} s)")
        for j in modes:
            runs = results[j]
            t = statistics.median(r["seconds"] for r in runs)
            c = statistics.median(r["cpu"] for r in runs)
            codes = sorted({r["rc"] for r in runs})
            print(f"median rewrite --check -j {j}: {t:.2f} s (cpu {c:.2f} s)")
            print(f"ratio rewrite --check -j {j} / ast-parse-all: {t / t_ast:.2f}x (target <= 1.0)")
            print(f"cpu ratio rewrite --check -j {j} / ast-parse-all: {c / c_ast:.2f}x")
            print(f"exit codes -j {j}: {codes} (target 1)")
            print(
                f"peak RSS -j {j} (max single process, wait4): "
                f"{max(r['maxrss'] for r in runs):.0f} MB (target <= 300)"
            )
            if args.sample > 0:
                print(
                    f"peak RSS -j {j} (sum over process tree, sampled): "
                    f"{max(r['rss_sum'] for r in runs):.0f} MB; Pss sum (shared pages "
                    f"counted once): {max(r['pss_sum'] for r in runs):.0f} MB"
                )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        for j in jobs:
            shutil.rmtree(
                Path(tempfile.gettempdir()) / f"a2n-bench-cache-{os.getpid()}-{j}",
                ignore_errors=True,
            )


if __name__ == "__main__":
    main()
