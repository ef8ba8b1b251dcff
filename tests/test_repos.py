"""Whole fixture repositories: the scaler reaches every use across functions, classes, files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fork_server import Job
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
    kept = re.compile(rb"^\s*(from apex[ .]|import apex\b)", re.M)
    return any(kept.search(p.read_bytes()) for p in tree.rglob("*.py"))


RUNNABLE = [
    c for c in CASES if (c / "after" / "main.py").is_file() and not _needs_apex(c / "after")
]


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory, fork_server):
    """Every runnable repo's `main.py`, run on first use in forks of one process that has
    imported torch (the import is most of each run)."""
    results: dict[str, tuple] = {}

    def get(case) -> tuple:
        if not results:
            jobs = []
            for runnable in RUNNABLE:
                work = tmp_path_factory.mktemp(runnable.name) / runnable.name
                rewrite_tree(runnable / "after", work)
                err = work.parent / "stderr.txt"
                jobs.append(Job(str(work), ["main.py"], stderr=str(err), timeout=600))
            done = fork_server.run(jobs)
            for runnable, result in zip(RUNNABLE, done):
                results[runnable.name] = (result.returncode, result.stderr_tail)
        return results[case.name]

    return get


@pytest.mark.parametrize("case", RUNNABLE, ids=lambda c: c.name)
def test_rewritten_repo_runs_on_cpu(case, cpu_runs):
    returncode, stderr = cpu_runs(case)
    assert returncode == 0, stderr
