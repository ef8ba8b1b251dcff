"""docs/ci.md is copy-pasted into pipelines, so its YAML must parse and its commands must run."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_cli import run

from apex2native.verify.command import verify

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "ci.md").read_text()
BLOCKS = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)]
GITHUB, GITLAB, PRE_COMMIT = BLOCKS
EXAMPLE = ROOT / "fixtures" / "examples" / "video_recognition"


def shell_lines() -> list[str]:
    """Every command the pipelines run, one string each."""
    github = [
        step["run"] for job in GITHUB["jobs"].values() for step in job["steps"] if "run" in step
    ]
    gitlab = [line for job in GITLAB.values() for line in job["script"]]
    return github + gitlab


def tool_args(line: str, command: str) -> list[str]:
    """The arguments of an `apex2native <command>` line, without shell redirections and `||`."""
    words = shlex.split(re.split(r" > | \|\| ", line)[0])
    assert words[:2] == ["apex2native", command], line
    return words[2:]


def test_the_readme_links_here_and_there_are_three_yaml_blocks():
    assert "(docs/ci.md)" in (ROOT / "README.md").read_text()
    assert set(GITHUB["jobs"]) == {"migrate", "verify"}
    assert set(GITLAB) == {"apex2native", "apex2native-verify"}


def test_every_step_is_explained_in_one_comment_line():
    github, gitlab, _ = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)
    steps = [(github, r"      - (uses|run): "), (gitlab, r"    - ")]
    for block, step in steps:
        lines = block.splitlines()
        starts = [i for i, line in enumerate(lines) if re.match(step, line)]
        assert starts
        for i in starts:
            assert lines[i - 1].strip().startswith("# "), f"no explanation above: {lines[i]}"


@pytest.mark.parametrize(
    "line", sorted({line for line in shell_lines() if line.startswith("apex2native rewrite")})
)
def test_rewrite_commands_run(tmp_path, line):
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    result = run("rewrite", *tool_args(line, "rewrite"), cwd=tmp_path / "repo")
    dry_run = "--diff" in line or "--check" in line
    assert result.exit_code == (1 if dry_run else 0), result.stderr
    if "--output-format github" in line:
        assert result.stdout.startswith("::warning file=main.py,line=")


@pytest.mark.parametrize(
    "line", sorted({line for line in shell_lines() if line.startswith("apex2native verify")})
)
def test_verify_commands_parse(line):
    args = tool_args(line, "verify")
    context = verify.make_context("verify", args)
    assert context.params["device"] == "cuda" and context.params["against"] == "HEAD"
    assert args[args.index("--") + 1 :] == ["python", "train.py"]


def test_gitlab_code_quality_snippet_turns_the_report_into_issues(tmp_path):
    diff_line = next(line for line in GITLAB["apex2native"]["script"] if "--diff" in line)
    snippet = next(line for line in GITLAB["apex2native"]["script"] if "<<'EOF'" in line)
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    run("rewrite", *tool_args(diff_line, "rewrite"), cwd=tmp_path / "repo")
    python = snippet.split("<<'EOF'\n", 1)[1].rsplit("EOF", 1)[0]
    subprocess.run([sys.executable, "-c", python], cwd=tmp_path / "repo", check=True)
    issues = json.loads((tmp_path / "repo" / "gl-code-quality.json").read_text())
    report = json.loads((tmp_path / "repo" / "apex2native.json").read_text())
    assert len(issues) == sum(len(f["findings"]) for f in report["files"]) > 0
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    first = issues[0]
    assert first["location"] == {
        "path": "main.py",
        "lines": {"begin": first["location"]["lines"]["begin"]},
    }
    assert first["check_name"].startswith("A2N") and first["severity"] == "minor"


def test_pre_commit_snippet_names_a_hook_this_repository_provides():
    provided = {
        hook["id"] for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    }
    used = {hook["id"] for repo in PRE_COMMIT["repos"] for hook in repo["hooks"]}
    assert provided == {"apex2native", "apex2native-check"}
    assert used <= provided
