"""The hooks in .pre-commit-hooks.yaml, run by pre-commit itself (`try-repo`) in a user's repo.

pre-commit clones the hook repository and pip-installs it into a virtual environment of its
own, so each `try-repo` takes a while (about 20 s); one run per hook.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import BASIC, PLAIN

ROOT = Path(__file__).resolve().parent.parent
SHEBANG_SCRIPT = b"#!/usr/bin/env python\nprint('a python script without .py')\n"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory) -> Path:
    """What pre-commit installs from this repository, as committed files of a git repo."""
    repo = tmp_path_factory.mktemp("hook_repo")
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(
        ROOT / "apex2native", repo / "apex2native", ignore=shutil.ignore_patterns("__pycache__")
    )
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "hooks", cwd=repo)
    return repo


@pytest.fixture
def user_repo(tmp_path) -> Path:
    """A user's repository: apex code to migrate, a plain file, an extensionless script."""
    repo = tmp_path / "user"
    repo.mkdir()
    (repo / "train.py").write_bytes(BASIC)
    (repo / "plain.py").write_bytes(PLAIN)
    (repo / "tool").write_bytes(SHEBANG_SCRIPT)
    (repo / "tool").chmod(0o755)
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    return repo


def try_repo(hook_repo: Path, hook: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRE_COMMIT_HOME": str(cwd.parent / "pre-commit-home")}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(hook_repo), hook, "--all-files"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_check_hook_fails_on_pending_work_and_writes_nothing(hook_repo, user_repo):
    result = try_repo(hook_repo, "apex2native-check", user_repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "apex2native (check)" in result.stdout and "Failed" in result.stdout
    assert "- exit code: 1" in result.stdout
    assert "would rewrite train.py" in result.stdout
    assert "not a Python file" not in result.stdout, "the shebang script is not passed"
    assert (user_repo / "train.py").read_bytes() == BASIC


def test_rewrite_hook_rewrites_and_fails_because_files_changed(hook_repo, user_repo):
    result = try_repo(hook_repo, "apex2native", user_repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "- files were modified by this hook" in result.stdout
    assert "- exit code:" not in result.stdout, "the rewrite itself succeeded"
    assert "GradScaler" in (user_repo / "train.py").read_text()
    assert (user_repo / "plain.py").read_bytes() == PLAIN
