"""Regenerate every `.out.py` from its `.in.py` (review the git diff before committing!)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fixture_cases import cases, expected_path, rewrite_bytes
from repo_cases import repo_cases, rewrite_tree

if __name__ == "__main__":
    for case in cases():
        out = expected_path(case)
        new = rewrite_bytes(case.read_bytes())
        if not out.exists() or out.read_bytes() != new:
            out.write_bytes(new)
            print(f"updated {out}")
    for repo in repo_cases():
        work = Path(tempfile.mkdtemp()) / repo.name
        rewrite_tree(repo / "before", work)
        shutil.rmtree(repo / "after", ignore_errors=True)
        shutil.copytree(work, repo / "after", ignore=shutil.ignore_patterns("__pycache__"))
        print(f"regenerated {repo / 'after'}")
