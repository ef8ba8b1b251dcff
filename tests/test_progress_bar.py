"""The progress bar, seen as a user sees it: on a terminal (a pseudo-terminal here), for big runs only."""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import BASIC, PLAIN

from apex2native.cli import PROGRESS_THRESHOLD

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


def make_tree(root: Path, files: int) -> Path:
    """`files` Python files: one to rewrite, the rest plain."""
    (root / "train.py").write_bytes(BASIC)
    for i in range(files - 1):
        (root / f"plain_{i:03d}.py").write_bytes(PLAIN)
    return root


def run_on_terminal(*args: str, cwd: Path) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; return (exit code, stdout, terminal text)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "apex2native", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError as exc:  # Linux: EIO once the child closed the terminal
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=120), stdout, seen.decode(errors="replace")


def test_a_big_run_on_a_terminal_shows_a_bar_that_reaches_100_percent(tmp_path):
    make_tree(tmp_path, PROGRESS_THRESHOLD)
    code, stdout, terminal = run_on_terminal("rewrite", "--diff", ".", cwd=tmp_path)
    assert code == 1
    assert "apex2native  [" in terminal
    percents = [int(p) for p in re.findall(r"(\d+)%", terminal)]
    assert percents == sorted(percents) and percents[-1] == 100, "it only moves forward"
    assert f"{PROGRESS_THRESHOLD} files scanned, 1 would change" in terminal
    assert stdout.startswith("diff --git a/train.py b/train.py\n")
    assert "100%" not in stdout, "the bar stays off stdout"


def test_quiet_hides_the_bar(tmp_path):
    make_tree(tmp_path, PROGRESS_THRESHOLD)
    code, _, terminal = run_on_terminal("rewrite", "--check", "--quiet", ".", cwd=tmp_path)
    assert (code, terminal) == (1, "")


def test_a_small_run_has_no_bar(tmp_path):
    make_tree(tmp_path, PROGRESS_THRESHOLD - 1)
    code, _, terminal = run_on_terminal("rewrite", "--check", ".", cwd=tmp_path)
    assert code == 1
    assert "would rewrite train.py" in terminal
    assert "apex2native  [" not in terminal and "100%" not in terminal
