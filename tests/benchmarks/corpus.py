"""The real-code corpus: run apex2native over every corpus repository, as a user would.

Not collected by pytest. Build the corpus first (`../shared/corpus/build.sh MIRRORS OUT`, with
OUT in an ignored folder such as `.corpus/`), then:

    python tests/benchmarks/corpus.py .corpus [--out .corpus/run] [--only REPO] [--jobs N]

Each repository of `OUT/trees/` is copied to a scratch folder and migrated in place with the
installed command (`python -m apex2native rewrite --report ...`); a second run over the result
checks idempotence. One line per file that mentions apex (or was changed):

    verdict  status  TODOs  compiles  idempotent  violations  path

verdict: migrated (changed, no TODO, no apex left in the code: comments and docstrings that
name apex do not count), partial (changed, something left and marked), refused (apex left and nothing but markers changed), nothing (apex only in comments,
strings or option names: nothing to migrate), failed (the tool reported an error), caller (a
file without apex that the migration touched or looked at).
For each maintainer migration (`OUT/human/`), the tool's result on their `before` side is
compared with their `after` side: lines that differ, and whether either still uses apex.
Diffs of every repository land in `--out` for review.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

APEX_IMPORT = ("import apex", "from apex")


def run_tool(tree: Path, report: Path, jobs: int, check: bool = False) -> tuple[int, float]:
    args = [sys.executable, "-m", "apex2native", "rewrite", "--no-cache", "--report", str(report)]
    args += ["--jobs", str(jobs), "--quiet"]
    if check:
        args.append("--check")
    start = time.perf_counter()
    done = subprocess.run(
        [*args, str(tree)], capture_output=True, text=True, cwd=tree.parent, timeout=3600
    )
    return done.returncode, time.perf_counter() - start


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return path.read_bytes().decode("latin-1")


def compiles(text: str) -> bool:
    try:
        compile(text, "<corpus>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


AMP_API = {"initialize", "scale_loss", "master_params", "state_dict", "load_state_dict"}


def only_markers_added(old: str, new: str) -> bool:
    """True when the only difference is TODO marker lines."""
    ops = difflib.ndiff(old.splitlines(), new.splitlines())
    changed = [line for line in ops if line[:1] in "+-"]
    return all(
        line.startswith("+") and line[1:].strip().startswith("# TODO(apex2native)")
        for line in changed
    )


def uses_apex(text: str) -> bool:
    """The code (not a comment, string or option name) imports apex."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "apex" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "apex":
            return True
        if isinstance(node, ast.Call):  # importlib.import_module("apex.amp"), find_spec("apex")
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if arg.value == "apex" or arg.value.startswith("apex."):
                        return True
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "amp" and node.attr in AMP_API:
                return True  # amp bound some other way (a star import, another function)
    return False


def verdict(old: str, new: str, entry: dict) -> str:
    if entry.get("status") == "failed":
        return "failed"
    mentions = "apex" in old
    if not mentions:
        return "caller"
    if old == new and not entry.get("held_back") and not uses_apex(old):
        return "nothing"  # apex only in comments, strings or option names
    if old == new or only_markers_added(old, new):
        return "refused"
    todos = sum(1 for f in entry.get("findings", []) if f.get("todo"))
    return "partial" if todos or uses_apex(new) else "migrated"


def migrate(src: Path, scratch: Path, jobs: int) -> tuple[Path, dict, dict, float]:
    """Copy `src`, migrate it in place, run again; the tree and both reports."""
    work = scratch / src.name
    shutil.copytree(src, work)
    first, second = scratch / f"{src.name}.1.json", scratch / f"{src.name}.2.json"
    _, seconds = run_tool(work, first, jobs)
    run_tool(work, second, jobs, check=True)
    return work, load_report(first, work), load_report(second, work), seconds


def load_report(path: Path, work: Path) -> dict:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    out = {}
    for entry in data.get("files", []):
        rel = os.path.relpath((work.parent / entry["path"]).resolve(), work.resolve())
        out[rel] = entry
    return out


def review_repo(src: Path, jobs: int, out_dir: Path | None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        work, first, second, seconds = migrate(src, scratch, jobs)
        diff_lines: list[str] = []
        for path in sorted(p for p in src.rglob("*.py")):
            rel = path.relative_to(src).as_posix()
            old, new = read(path), read(work / rel)
            entry = first.get(rel, {"status": "skipped" if old == new else "changed"})
            if "apex" not in old and old == new and rel not in first:
                continue
            again = second.get(rel, {}).get("status", "skipped")
            rows.append(
                {
                    "repo": src.name,
                    "path": rel,
                    "verdict": verdict(old, new, entry),
                    "status": entry.get("status"),
                    "error": entry.get("error"),
                    "todos": sum(1 for f in entry.get("findings", []) if f.get("todo")),
                    "compiles": compiles(new),
                    "idempotent": again in ("unchanged", "skipped"),
                    "violations": len(entry.get("violations", [])),
                    "seconds": round(seconds, 2),
                }
            )
            if old != new:
                diff_lines += difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"a/{rel}",
                    f"b/{rel}",
                )
        if out_dir is not None:
            (out_dir / f"{src.name}.diff").write_text("".join(diff_lines))
            (out_dir / f"{src.name}.json").write_text(json.dumps(first, indent=1))
    return rows


def compare_human(corpus: Path, jobs: int, out_dir: Path | None) -> list[dict]:
    """The tool on the maintainers' `before` side, against their `after` side."""
    before_root, after_root = corpus / "human" / "before", corpus / "human" / "after"
    rows = []
    if not before_root.is_dir():
        return rows
    for repo in sorted(p for p in before_root.iterdir() if p.is_dir()):
        with tempfile.TemporaryDirectory() as tmp:
            work, first, _, _ = migrate(repo, Path(tmp), jobs)
            for path in sorted(repo.rglob("*.py")):
                rel = path.relative_to(repo).as_posix()
                ours, theirs = read(work / rel), read(after_root / repo.name / rel)
                diff = list(
                    difflib.unified_diff(theirs.splitlines(), ours.splitlines(), lineterm="", n=0)
                )
                rows.append(
                    {
                        "repo": repo.name,
                        "path": rel,
                        "status": first.get(rel, {}).get("status", "skipped"),
                        "differs": sum(
                            1 for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---"))
                        ),
                        "ours_apex": any(m in ours for m in APEX_IMPORT),
                        "theirs_apex": any(m in theirs for m in APEX_IMPORT),
                    }
                )
                if out_dir is not None:
                    name = f"human__{repo.name}__{rel.replace('/', '__')}.diff"
                    (out_dir / name).write_text("\n".join(diff) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="the OUT folder of build.sh")
    parser.add_argument("--out", type=Path, help="folder for diffs and the JSON summary")
    parser.add_argument("--only", action="append", default=[], help="repository folder name")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--no-human", action="store_true")
    args = parser.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    repos = sorted(p for p in (args.corpus / "trees").iterdir() if p.is_dir())
    if args.only:
        repos = [r for r in repos if r.name in args.only]
    rows: list[dict] = []
    print(f"{'verdict':<9} {'status':<9} todo comp idem viol  path")
    for repo in repos:
        for row in review_repo(repo, args.jobs, args.out):
            rows.append(row)
            print(
                f"{row['verdict']:<9} {row['status'] or '-':<9} {row['todos']:>4} "
                f"{'y' if row['compiles'] else 'N':>4} {'y' if row['idempotent'] else 'N':>4} "
                f"{row['violations']:>4}  {row['repo']}/{row['path']}"
                + (f"  ({row['error']})" if row["error"] else "")
            )
    apex_rows = [r for r in rows if r["verdict"] != "caller"]
    totals = Counter(r["verdict"] for r in apex_rows)
    print(
        f"\n{len(apex_rows)} apex files: "
        + ", ".join(
            f"{k} {totals[k]}" for k in ("migrated", "partial", "refused", "nothing", "failed")
        )
        + f"; not compiling {sum(not r['compiles'] for r in rows)}"
        + f"; not idempotent {sum(not r['idempotent'] for r in rows)}"
        + f"; violations {sum(r['violations'] for r in rows)}"
    )
    human = [] if args.no_human else compare_human(args.corpus, args.jobs, args.out)
    if human:
        print(f"\n{'differs':>7} ours_apex theirs_apex  maintainer pair")
        for row in human:
            print(
                f"{row['differs']:>7} {str(row['ours_apex']):>9} {str(row['theirs_apex']):>11}  "
                f"{row['repo']}/{row['path']}"
            )
    if args.out:
        (args.out / "summary.json").write_text(
            json.dumps({"files": rows, "human": human}, indent=1)
        )


if __name__ == "__main__":
    main()
