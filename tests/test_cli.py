"""`apex2native rewrite` as a user runs it: exit codes, diffs git accepts, bad input, reports."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixture_cases import REWRITE

from apex2native.cli import main

BASIC = (REWRITE / "initialize" / "literal_o1_training_loop.in.py").read_bytes()
TODO_CASE = (REWRITE / "scale_loss" / "no_scaler_in_reach.in.py").read_bytes()
CRLF = (REWRITE / "engine" / "crlf_line_endings.in.py").read_bytes()
BOM = (REWRITE / "engine" / "utf8_bom.in.py").read_bytes()
NO_EOL = (REWRITE / "engine" / "no_newline_at_end_of_file.in.py").read_bytes()
PLAIN = b"import torch\n\nprint(torch.ones(1))\n"


def run(*args: str, cwd: Path | None = None):
    runner = CliRunner()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        return runner.invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_bytes(BASIC)
    (tmp_path / "pkg" / "plain.py").write_bytes(PLAIN)
    return tmp_path


def test_check_reports_pending_changes_and_writes_nothing(tree):
    result = run("rewrite", "--check", ".", cwd=tree)
    assert result.exit_code == 1
    assert (tree / "pkg" / "train.py").read_bytes() == BASIC
    assert "would rewrite pkg/train.py" in result.stderr
    assert "2 files scanned, 1 would change, 0 unchanged, 1 skipped, 0 failed" in result.stderr


def test_rewrite_writes_then_a_second_run_has_nothing_to_do(tree):
    first = run("rewrite", str(tree))
    assert first.exit_code == 0, first.stderr
    written = (tree / "pkg" / "train.py").read_text()
    assert "torch.amp.GradScaler" in written and "apex" not in written
    assert (tree / "pkg" / "plain.py").read_bytes() == PLAIN
    second = run("rewrite", "--check", str(tree))
    assert second.exit_code == 0
    assert (tree / "pkg" / "train.py").read_text() == written


def test_rewrite_keeps_the_file_mode(tree):
    target = tree / "pkg" / "train.py"
    target.chmod(0o750)
    assert run("rewrite", str(target)).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o750


def test_todo_markers_left_exit_1_even_when_written(tmp_path):
    (tmp_path / "step.py").write_bytes(TODO_CASE)
    result = run("rewrite", ".", cwd=tmp_path)
    assert result.exit_code == 1
    assert "step.py:8: A2N103" in result.stderr
    assert "# TODO(apex2native): A2N103" in (tmp_path / "step.py").read_text()


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
@pytest.mark.parametrize("content", [BASIC, CRLF, BOM, NO_EOL], ids=["lf", "crlf", "bom", "no-eol"])
def test_diff_applies_with_git_apply(tmp_path, content):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "train.py").write_bytes(content)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    diff = run("rewrite", "--diff", str(repo / "src"), cwd=repo)
    assert diff.exit_code == 1
    assert diff.stdout.startswith("diff --git a/src/train.py b/src/train.py\n--- a/src/train.py\n")
    assert (repo / "src" / "train.py").read_bytes() == content
    patch = tmp_path / "change.patch"
    patch.write_bytes(diff.stdout_bytes)
    subprocess.run(["git", "apply", "--check", str(patch)], cwd=repo, check=True)
    subprocess.run(["git", "apply", str(patch)], cwd=repo, check=True)
    applied = (repo / "src" / "train.py").read_bytes()
    (repo / "src" / "train.py").write_bytes(content)
    assert run("rewrite", str(repo / "src"), cwd=repo).exit_code == 0
    assert (repo / "src" / "train.py").read_bytes() == applied


def test_diff_order_is_stable(tmp_path):
    for name in ("b.py", "a.py", "c.py"):
        (tmp_path / name).write_bytes(BASIC)
    out = run("rewrite", "--diff", str(tmp_path), cwd=tmp_path).stdout
    heads = [line for line in out.splitlines() if line.startswith("diff --git")]
    assert heads == [f"diff --git a/{n} b/{n}" for n in ("a.py", "b.py", "c.py")]


def test_missing_path_is_one_line_and_others_still_run(tree):
    result = run("rewrite", str(tree / "nope"), str(tree))
    assert result.exit_code == 2
    assert f"error: {tree / 'nope'}: no such file or directory" in result.stderr
    assert "GradScaler" in (tree / "pkg" / "train.py").read_text()


def test_non_python_file_named_explicitly(tmp_path):
    (tmp_path / "notes.txt").write_text("apex\n")
    result = run("rewrite", "--check", str(tmp_path / "notes.txt"))
    assert result.exit_code == 2
    assert "notes.txt: not a Python file" in result.stderr


def test_syntax_error_next_to_a_good_file(tree):
    bad = tree / "pkg" / "broken.py"
    bad.write_bytes(b"from apex import amp\ndef broken(:\n    pass\n")
    result = run("rewrite", ".", cwd=tree)
    assert result.exit_code == 2
    assert bad.read_bytes() == b"from apex import amp\ndef broken(:\n    pass\n"
    assert "GradScaler" in (tree / "pkg" / "train.py").read_text()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pkg/broken.py: syntax error" in errors[0]


def test_undecodable_file_is_reported_and_left(tmp_path):
    bad = tmp_path / "latin.py"
    bad.write_bytes(b"# apex caf\xe9\nx = 1\n")
    result = run("rewrite", str(tmp_path))
    assert result.exit_code == 2
    assert "latin.py: cannot decode" in result.stderr
    assert bad.read_bytes() == b"# apex caf\xe9\nx = 1\n"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_a_diff_of_files_outside_the_cwd_and_git_applies_from_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "train.py").write_bytes(BASIC)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    diff = run("rewrite", "--diff", "--no-cache", str(outside), cwd=elsewhere)
    name = (outside / "train.py").as_posix().lstrip("/")
    assert diff.stdout.startswith(f"diff --git a/{name} b/{name}\n--- a/{name}\n")
    patch = tmp_path / "change.patch"
    patch.write_bytes(diff.stdout_bytes)
    subprocess.run(["git", "apply", "--check", str(patch)], cwd="/", check=True)


def test_gitignore_and_exclude_are_respected(tmp_path):
    (tmp_path / ".gitignore").write_text("build/\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "gen.py").write_bytes(BASIC)
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "lib.py").write_bytes(BASIC)
    (tmp_path / "train.py").write_bytes(BASIC)
    result = run("rewrite", "--check", "--exclude", "vendor/*", str(tmp_path), cwd=tmp_path)
    assert "1 files scanned, 1 would change" in result.stderr


@pytest.mark.parametrize("project", ["git work tree", "pyproject.toml, no git"])
def test_a_folder_whose_files_are_all_ignored_is_named_in_a_warning(tmp_path, project):
    if project == "git work tree":
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    else:
        (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (tmp_path / ".gitignore").write_text("build/\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "gen.py").write_bytes(BASIC)
    result = run("rewrite", "--check", "build", cwd=tmp_path)
    assert result.exit_code == 0
    assert "warning: build: every Python file under it is ignored by .gitignore" in result.stderr
    included = run("rewrite", "--check", "--no-gitignore", "build", cwd=tmp_path)
    assert included.exit_code == 1 and "warning" not in included.stderr


def test_select_and_ignore_rule_codes(tmp_path):
    (tmp_path / "t.py").write_bytes(
        (REWRITE / "apex_modules" / "fused_layer_norm_from_its_submodule.in.py").read_bytes()
    )
    ignored = run("rewrite", "--check", "--ignore", "A2N201", "--ignore", "A2N190", str(tmp_path))
    assert "0 would change" in ignored.stderr
    selected = run("rewrite", "--check", "--select", "A2N201,A2N101", str(tmp_path))
    assert "1 would change" in selected.stderr and "0 TODOs left" in selected.stderr


@pytest.mark.parametrize("suffix", [".json", ".md"])
def test_report_files(tree, suffix):
    path = tree / f"report{suffix}"
    run("rewrite", "--check", "--report", str(path), "pkg", cwd=tree)
    text = path.read_text()
    if suffix == ".json":
        data = json.loads(text)
        assert data["summary"]["changed"] == 1
        codes = {f["code"] for f in data["files"][0]["findings"]}
        assert {"A2N102", "A2N103", "A2N104"} <= codes
    else:
        assert "## `pkg/train.py`: changed" in text


def test_rules_lists_and_explains():
    listing = run("rules")
    assert "A2N103" in listing.stdout and "scale-loss" in listing.stdout
    one = run("rules", "a2n105")
    assert "Before:" in one.stdout and "scaler.unscale_(optimizer)" in one.stdout
    assert run("rules", "A2N999").exit_code == 2


def test_installed_command_and_module_entry_point(tree):
    exe = shutil.which("apex2native")
    assert exe is not None, "the console script is installed with the package"
    result = subprocess.run([exe, "rewrite", "--check", str(tree)], capture_output=True, text=True)
    assert result.returncode == 1
    module = subprocess.run(
        [sys.executable, "-m", "apex2native", "--version"], capture_output=True, text=True
    )
    assert module.returncode == 0 and "apex2native" in module.stdout


def test_docs_rules_md_is_generated_from_the_rules():
    expected = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text()
    assert (
        run("rules", "--markdown").stdout == expected
    ), "run: apex2native rules --markdown > docs/rules.md"


def test_markers_left_by_an_earlier_run_keep_check_failing(tmp_path):
    (tmp_path / "step.py").write_bytes(TODO_CASE)
    assert run("rewrite", ".", cwd=tmp_path).exit_code == 1
    text = (tmp_path / "step.py").read_text()
    (tmp_path / "step.py").write_text(text.replace("from apex import amp\n", ""))
    again = run("rewrite", "--check", ".", cwd=tmp_path)
    assert again.exit_code == 1
    assert "step.py:8: A2N103" in again.stderr
    (tmp_path / "step.py").write_text("x = 1\n")
    assert run("rewrite", "--check", ".", cwd=tmp_path).exit_code == 0


def test_a_marker_made_again_by_a_second_run_counts_once(tmp_path):
    (tmp_path / "m.py").write_text(
        'import torch\nfrom apex import amp\n\namp.register_half_function(torch, "einsum")\n'
    )
    first = run("rewrite", ".", cwd=tmp_path)
    assert "1 TODOs left" in first.stderr
    again = run("rewrite", "--check", ".", cwd=tmp_path)
    assert again.exit_code == 1
    assert "1 TODOs left" in again.stderr
    assert again.stderr.count("A2N190 `apex.amp.register_half_function`") == 1


@pytest.mark.parametrize(
    "source",
    [
        "import torch, amp_C\n",
        "if True: import amp_C\n",
        "from fused_layer_norm_cuda import forward\n",
        'ext = importlib.import_module("fused_adam_cuda")\n',
    ],
)
def test_a_file_that_imports_an_apex_extension_without_naming_apex_is_read(tmp_path, source):
    (tmp_path / "m.py").write_text("import importlib\n" + source)
    result = run("rewrite", "--check", ".", cwd=tmp_path)
    assert result.exit_code == 1
    assert "A2N190" in result.stderr and "compiled extension" in result.stderr


def test_a_folder_above_the_run_named_like_an_apex_extension_is_not_the_project(tmp_path):
    project = tmp_path / "amp_C" / "proj"
    project.mkdir(parents=True)
    (project / "a.py").write_text("import amp_C\n")
    result = run("rewrite", "--check", str(project), cwd=tmp_path)
    assert result.exit_code == 1
    assert "compiled extension" in result.stderr


def test_progress_is_reported_once_per_file(tree):
    from apex2native import engine
    from apex2native.discover import discover
    from apex2native.options import Options

    ticks = []
    found = discover([str(tree)])
    engine.run(found.files, Options(), jobs=1, progress=ticks.append)
    assert sum(ticks) == len(found.files) == 2


def test_a_file_held_back_by_another_says_which_and_why(tmp_path):
    before = REWRITE.parent / "repos" / "caller_file_fails_so_callee_keeps_its_signature" / "before"
    shutil.copytree(before, tmp_path / "repo")
    result = run("rewrite", "--check", "--report", "report.json", "repo", cwd=tmp_path)
    assert result.exit_code == 2
    assert (
        "repo/train.py: held back: migration unit main.py:12 stays apex: its unit is held "
        "back by main.py, which could not be rewritten"
    ) in result.stderr
    files = {f["path"]: f for f in json.loads((tmp_path / "report.json").read_text())["files"]}
    assert files["repo/train.py"]["held_back"] == {
        "main.py:12": "its unit is held back by main.py, which could not be rewritten"
    }


def test_an_excluded_caller_holds_back_the_unit_whose_signature_it_would_need(tmp_path):
    """`--exclude` keeps a file from being written, not from being read: a helper whose
    caller there would need the new scaler argument keeps its signature, and its unit
    stays apex with a TODO that names the file (as it does when the file is in the run
    and has no scaler to pass)."""
    case = REWRITE.parent / "cli" / "excluded_caller"
    shutil.copytree(case, tmp_path / "repo")
    repo = tmp_path / "repo"
    left_out = run("rewrite", "--diff", "--no-cache", "--exclude", "export.py", str(repo))
    assert "held back by export.py, which the run leaves out" in left_out.stderr
    assert "+def save_checkpoint" not in left_out.stdout
    assert left_out.exit_code == 1
    whole = run("rewrite", "--diff", "--no-cache", str(repo))
    assert "held back by export.py, export.export (A2N110" in whole.stderr
