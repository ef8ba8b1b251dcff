"""Whole fixture repositories: the scaler reaches every use across functions, classes, files."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from repo_cases import repo_cases, rewrite_tree, tree_bytes

CASES = repo_cases()


def test_there_is_a_fixture_repo_per_flow_shape():
    names = {case.name for case in CASES}
    assert {
        "three_file_script",
        "helper_returns_model_and_optimizer",
        "trainer_base_and_subclass",
        "runner_hook_object",
        "gan_two_models",
        "dual_backend",
        "amp_as_value",
        "reinitialize_on_resume",
        "old_handle_api",
    } <= names


def expected_errors(case) -> dict[str, str]:
    """`errors.txt` beside before/ and after/: `path: start of the error` per line."""
    listing = case / "errors.txt"
    if not listing.is_file():
        return {}
    pairs = (line.split(": ", 1) for line in listing.read_text().splitlines() if line.strip())
    return dict(pairs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_repo_rewrites_to_the_expected_tree(case, tmp_path):
    work = tmp_path / case.name
    outcomes = rewrite_tree(case / "before", work)
    failed = {
        Path(o.path).relative_to(work).as_posix(): o.error for o in outcomes if o.status == "failed"
    }
    expected = expected_errors(case)
    assert failed.keys() == expected.keys(), failed
    for path, start in expected.items():
        assert failed[path].startswith(start), failed[path]
    assert tree_bytes(work) == tree_bytes(case / "after")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_second_run_over_the_rewritten_repo_changes_nothing(case, tmp_path):
    work = tmp_path / case.name
    outcomes = rewrite_tree(case / "after", work)
    failed = {Path(o.path).relative_to(work).as_posix() for o in outcomes if o.status == "failed"}
    assert [o.path for o in outcomes if o.status == "changed"] == []
    assert failed == expected_errors(case).keys()


def _needs_apex(tree) -> bool:
    """An `after/` that keeps a unit apex (by design) cannot run without apex."""
    return any(b"from apex import" in p.read_bytes() for p in tree.rglob("*.py"))


RUNNABLE = [
    c for c in CASES if (c / "after" / "main.py").is_file() and not _needs_apex(c / "after")
]


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory):
    """Every runnable repo's `main.py`, run on as many cores as there are (each run is mostly
    the interpreter importing torch), on first use."""
    results: dict[str, subprocess.CompletedProcess] = {}

    def run(case):
        work = tmp_path_factory.mktemp(case.name) / case.name
        rewrite_tree(case / "after", work)
        return subprocess.run(
            [sys.executable, "-W", "ignore", "main.py"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )

    def get(case) -> subprocess.CompletedProcess:
        if not results:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                results.update(zip((c.name for c in RUNNABLE), pool.map(run, RUNNABLE)))
        return results[case.name]

    return get


@pytest.mark.parametrize("case", RUNNABLE, ids=lambda c: c.name)
def test_rewritten_repo_runs_on_cpu(case, cpu_runs):
    result = cpu_runs(case)
    assert result.returncode == 0, result.stderr[-3000:]
