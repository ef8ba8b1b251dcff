"""What `rewrite` prints for CI: `--quiet`, `--output-format json|github`, and how they meet --diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import BASIC, PLAIN, TODO_CASE, run

from apex2native.annotations import command, escape_data, escape_property

BROKEN = b"from apex import amp\ndef broken(:\n    pass\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """One file to rewrite, one TODO the rewrite cannot resolve, one broken file, one plain."""
    (tmp_path / "train.py").write_bytes(BASIC)
    (tmp_path / "step.py").write_bytes(TODO_CASE)
    (tmp_path / "broken.py").write_bytes(BROKEN)
    (tmp_path / "plain.py").write_bytes(PLAIN)
    return tmp_path


def test_quiet_prints_only_errors(repo):
    result = run("rewrite", "--check", "-q", ".", "missing.py", cwd=repo)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "error: missing.py: no such file or directory"
    assert lines[1].startswith("error: broken.py: ")
    assert len(lines) == 2


def test_quiet_run_with_nothing_wrong_is_silent(repo):
    (repo / "broken.py").unlink()
    (repo / "step.py").unlink()
    result = run("rewrite", "--quiet", ".", cwd=repo)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert "GradScaler" in (repo / "train.py").read_text()


def test_quiet_keeps_the_diff_that_was_asked_for(repo):
    result = run("rewrite", "--diff", "-q", "train.py", cwd=repo)
    assert result.exit_code == 1
    assert result.stdout.startswith("diff --git a/train.py b/train.py\n")
    assert result.stderr == ""


def test_json_on_stdout_is_the_report_file(repo):
    result = run(
        "rewrite", "--check", "--output-format", "json", "--report", "r.json", ".", cwd=repo
    )
    assert result.exit_code == 2
    assert result.stdout == (repo / "r.json").read_text()
    data = json.loads(result.stdout)
    files = {f["path"]: f for f in data["files"]}
    assert set(files) == {"broken.py", "step.py", "train.py"}
    assert files["broken.py"]["status"] == "failed"
    assert files["broken.py"]["error"]
    assert files["train.py"]["status"] == "changed" and files["train.py"]["error"] is None
    todos = [f for file in data["files"] for f in file["findings"] if f["todo"]]
    assert any(f["todo"] for f in files["step.py"]["findings"])
    assert set(todos[0]) == {"line", "code", "message", "tier", "todo"}
    assert data["summary"]["todos"] == len(todos) and data["dry_run"] is True


def test_json_replaces_the_text_lines_but_keeps_errors_and_summary(repo):
    result = run("rewrite", "--check", "--output-format", "json", ".", "missing.py", cwd=repo)
    assert json.loads(result.stdout)["errors"] == ["missing.py: no such file or directory"]
    assert "would rewrite" not in result.stderr and "step.py:8:" not in result.stderr
    assert "error: broken.py: " in result.stderr
    assert "apex2native: 4 files scanned" in result.stderr
    quiet = run("rewrite", "-q", "--check", "--output-format", "json", ".", cwd=repo)
    assert (
        quiet.stdout == run("rewrite", "--check", "--output-format", "json", ".", cwd=repo).stdout
    )
    assert "apex2native:" not in quiet.stderr


def test_github_annotates_pending_rewrites_todos_and_failures(repo):
    result = run("rewrite", "--check", "--output-format", "github", ".", cwd=repo)
    assert result.exit_code == 2
    data = json.loads(run("rewrite", "--check", "--output-format", "json", ".", cwd=repo).stdout)
    expected = []
    for file in data["files"]:
        if file["status"] == "failed":
            expected.append(f"::error file={file['path']}::apex2native: {file['error']}")
        for f in file["findings"]:
            if f["todo"]:
                title = f"apex2native {f['code']} TODO"
            elif file["status"] == "changed":
                title = f"apex2native {f['code']} ({f['tier']}) would rewrite"
            else:
                continue
            where = f"file={file['path']},line={f['line']}"
            expected.append(f"::warning {where},title={title}::{f['code']} {f['message']}")
    assert result.stdout.splitlines() == expected
    kinds = {line.split("::")[1].split(",")[0] for line in expected}
    assert kinds == {"error file=broken.py", "warning file=step.py", "warning file=train.py"}
    assert any(" TODO::" in line for line in expected), "the TODO step.py keeps is annotated"


def test_github_annotates_todo_markers_left_in_an_unchanged_file(tmp_path):
    (tmp_path / "step.py").write_bytes(TODO_CASE)
    run("rewrite", ".", cwd=tmp_path)
    result = run("rewrite", "--check", "--output-format", "github", ".", cwd=tmp_path)
    assert result.exit_code == 1
    assert result.stdout.startswith("::warning file=step.py,line=")
    assert all(" TODO::" in line for line in result.stdout.splitlines())


def test_github_prints_nothing_when_nothing_is_left(tmp_path):
    (tmp_path / "plain.py").write_bytes(PLAIN)
    result = run("rewrite", "--check", "--output-format", "github", ".", cwd=tmp_path)
    assert (result.exit_code, result.stdout) == (0, "")


def test_a_missing_path_is_an_error_annotation_without_a_file(tmp_path):
    result = run("rewrite", "--check", "--output-format", "github", "a,b:c.py", cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stdout == "::error::apex2native: a,b:c.py: no such file or directory\n"


@pytest.mark.parametrize("output_format", ["json", "github"])
def test_machine_formats_refuse_diff_because_both_use_stdout(repo, output_format):
    result = run("rewrite", "--diff", "--output-format", output_format, ".", cwd=repo)
    assert result.exit_code == 2
    assert "cannot be combined with --diff" in result.stderr
    assert result.stdout == ""


def test_text_format_is_the_default(repo):
    with_flag = run("rewrite", "--check", "--output-format", "text", ".", cwd=repo)
    default = run("rewrite", "--check", ".", cwd=repo)
    assert (with_flag.stdout, with_flag.stderr) == (default.stdout, default.stderr)
    assert "would rewrite train.py" in default.stderr and default.stdout == ""


def test_annotation_escaping_follows_the_workflow_command_syntax():
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("a,b:c%\n") == "a%2Cb%3Ac%25%0A"
    assert (
        command("warning", "x: 1,2", file="dir,1/a:b.py", line=3)
        == "::warning file=dir%2C1/a%3Ab.py,line=3::x: 1,2"
    )
    assert command("error", "bare") == "::error::bare"


def test_paths_with_commas_are_escaped_in_annotations(tmp_path):
    (tmp_path / "a,b.py").write_bytes(BASIC)
    result = run("rewrite", "--check", "--output-format", "github", ".", cwd=tmp_path)
    assert result.stdout.startswith("::warning file=a%2Cb.py,line=")
