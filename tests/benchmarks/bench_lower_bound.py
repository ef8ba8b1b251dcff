"""Issue 10: the least a cold `rewrite --check` must parse with LibCST, against ast-parse-all.

Not collected by pytest. Run:

    python tests/benchmarks/bench_lower_bound.py TREE [--repeat 3]

A rewrite edits a file's concrete syntax tree, so every file it changes (an apex file, or a
caller handed the scaler) is parsed by LibCST at least once. The fixed-point guard (issue 10 keeps it, and lets it be skipped only when the
output no longer mentions anything a rule matches) parses again every rewritten output that
still names apex: TODOs, held-back units, messages. Those two sets of parses are a floor under
any cold run at -j 1, before the interpreter starts, libcst is imported, the 2,592 files are
read and the plan is made.

The script copies TREE to a scratch folder (outside any git work tree, whose .gitignore would
hide `.bench/`), runs `apex2native rewrite -q --no-cache` on the copy once to get the outputs,
then times, in this process and in each round: `ast.parse` of every original file; LibCST
`parse_module` of the originals that change; LibCST `parse_module` of the outputs that
changed and still mention apex. One line per round and a line of medians.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libcst

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_monorepo import commit, python_files  # noqa: E402


def timed(parse, texts: list[bytes]) -> float:
    start = time.perf_counter()
    for text in texts:
        try:
            parse(text)
        except Exception:  # a file neither parser reads costs what it cost
            pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "tree"
        shutil.copytree(args.tree, copy)
        before = {p.relative_to(copy): p.read_bytes() for p in python_files(copy)}
        subprocess.run(
            [sys.executable, "-m", "apex2native", "rewrite", "-q", "--no-cache", str(copy)],
            capture_output=True,
            check=False,
        )
        after = {name: (copy / name).read_bytes() for name in before}
    inputs = [text for name, text in before.items() if after[name] != text]
    outputs = [text for name, text in after.items() if text != before[name] and b"apex" in text]
    mention = sum(b"apex" in text for text in before.values())
    print(
        f"commit {commit()}: {len(before)} files, {mention} mention apex, {len(inputs)} change, "
        f"{len(outputs)} changed outputs still mention apex"
    )
    rows = []
    for round_ in range(1, args.repeat + 1):
        everything = timed(ast.parse, list(before.values()))
        first = timed(libcst.parse_module, inputs)
        guard = timed(libcst.parse_module, outputs)
        rows.append((everything, first, guard))
        print(
            f"round {round_}: ast-parse-all {everything:.2f} s; LibCST inputs {first:.2f} s; "
            f"LibCST guard outputs {guard:.2f} s; floor {(first + guard) / everything:.2f}x"
        )
    everything, first, guard = (statistics.median(col) for col in zip(*rows))
    print(
        f"median: ast-parse-all {everything:.2f} s; LibCST inputs {first:.2f} s "
        f"({first / everything:.2f}x); LibCST guard outputs {guard:.2f} s "
        f"({guard / everything:.2f}x); floor at -j 1 {(first + guard) / everything:.2f}x"
    )


if __name__ == "__main__":
    main()
