"""`--against REV`: the original tree is a temporary git worktree of a revision."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import HarnessError


def _git(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


@contextmanager
def revision_tree(rev: str, path: Path) -> Iterator[Path]:
    """Yield the directory in a temporary worktree of `rev` that corresponds to `path`."""
    path = path.resolve()
    try:
        top = Path(_git(["rev-parse", "--show-toplevel"], path)).resolve()
    except FileNotFoundError as exc:
        raise HarnessError("--against needs git on PATH") from exc
    _git(["rev-parse", "--verify", f"{rev}^{{commit}}"], top)
    tmp = Path(tempfile.mkdtemp(prefix="a2n-verify-rev-"))
    tree = tmp / "tree"
    _git(["worktree", "add", "--detach", str(tree), rev], top)
    try:
        yield tree / path.relative_to(top)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=top, capture_output=True
        )
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=top, capture_output=True)
