"""Every fixture pair under fixtures/rewrite: byte-exact output, idempotent, compiles, binds."""

from __future__ import annotations

import pytest
from fixture_cases import case_id, cases, expected_path, rewrite_bytes
from fork_server import Job

from apex2native.engine import decode
from apex2native.guards import unbound_names

CASES = cases()


def test_there_are_fixtures_for_every_rule_family():
    families = {case.parent.name for case in CASES}
    assert {"imports", "initialize", "scale_loss", "step", "unscale", "autocast"} <= families
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rewrite_matches_expected_bytes(case):
    assert rewrite_bytes(case.read_bytes()).decode("latin-1") == expected_path(
        case
    ).read_bytes().decode("latin-1")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_second_run_changes_nothing(case):
    expected = expected_path(case).read_bytes()
    assert rewrite_bytes(expected) == expected


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_output_compiles_and_binds_every_name_the_input_bound(case):
    before = decode(case.read_bytes())[0]
    after = decode(expected_path(case).read_bytes())[0]
    compile(after, str(expected_path(case)), "exec")
    assert unbound_names(after) <= unbound_names(before)


RUNNABLE = [c for c in CASES if b'__name__ == "__main__"' in expected_path(c).read_bytes()]


@pytest.mark.parametrize("case", RUNNABLE, ids=case_id)
def test_rewritten_program_runs_on_cpu(case, tmp_path, fork_server):
    (tmp_path / "program.py").write_bytes(expected_path(case).read_bytes())
    job = Job(str(tmp_path), ["program.py"], stderr=str(tmp_path / "stderr.txt"), timeout=120)
    (result,) = fork_server.run([job])
    assert result.returncode == 0, result.stderr_tail
