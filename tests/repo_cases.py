"""Fixture repositories: `before/` trees that must rewrite into `after/`, byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

from apex2native import engine
from apex2native.discover import discover
from apex2native.findings import FileOutcome
from apex2native.options import Options

ROOT = Path(__file__).resolve().parent.parent
REPOS = ROOT / "fixtures" / "repos"


def repo_cases() -> list[Path]:
    return sorted(p for p in REPOS.iterdir() if (p / "before").is_dir())


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def rewrite_tree(src: Path, work: Path) -> list[FileOutcome]:
    """Copy `src` to `work` and migrate it in place, as `apex2native rewrite work` does."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work)
    found = discover([str(work)], respect_gitignore=False)
    outcomes = engine.run(found.files, Options(), jobs=1)
    paths = {display: path for path, display in found.files}
    for outcome in outcomes:
        if outcome.status == "changed":
            engine.write_atomic(paths[outcome.path], outcome)
    return outcomes
