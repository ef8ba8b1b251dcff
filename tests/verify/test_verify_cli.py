"""The `verify` command end to end: verdicts, exit statuses, report, plot, --against, -m."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from verify_helpers import FIXTURES, REPO, materialize

from apex2native.verify import plot as plotting
from apex2native.verify.command import verify

PY = [sys.executable, "train.py"]


@pytest.fixture(autouse=True)
def _one_thread_per_side(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def invoke(*args: str):
    result = CliRunner().invoke(verify, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def trees(case: str):
    return FIXTURES / case / "original", FIXTURES / case / "rewritten"


def test_pass_writes_report(tmp_path):
    report = tmp_path / "r.json"
    code, out = invoke(
        *trees("clipping"), "--steps", 4, "--device", "cpu", "--report", report, "--", *PY
    )
    assert code == 0, out
    assert out.startswith("PASS-EXACT: bitwise equal over 4 steps")
    doc = json.loads(report.read_text())
    assert doc["verdict"] == "PASS-EXACT" and doc["mode"] == "exact"
    assert doc["apex"] == "reference" and doc["device"] == "cpu"
    assert set(doc["sides"]) == {"original", "rewritten"}
    steps = [e for e in doc["sides"]["original"]["ranks"]["0"] if e["ev"] == "step"]
    assert len(steps) == 4
    assert {r["metric"] for r in doc["rows"]} >= {"loss", "clip_norm", "grad_norm/opt0"}
    assert doc["rewrite_report"].endswith("apex2native-report.json")
    assert {a["code"] for a in doc["announcements"]} == {"A2N106"}


def test_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    code, out = invoke(*trees("plain"), "--steps", 2, "--device", "cpu", "--plot", png, "--", *PY)
    assert code == 0, out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_micro_step_clip_passes_with_its_announced_difference_listed():
    code, out = invoke(
        *trees("micro_step_clip"), "--steps", 3, "--device", "cpu", "--rtol", 0, "--", *PY
    )
    assert code == 0 and out.startswith("PASS-EXACT"), out
    clip = next(line for line in out.splitlines() if line.startswith("clip_norm "))
    assert " extra " in clip
    assert "original recorded 12, rewritten 4; only in the original: 8 at micro-steps 0, 1" in clip
    assert "announced: A2N105 (train.py:37)" in clip
    assert "A2N105 train.py:37: clipping moved to the step boundary" in out


def test_a_difference_the_rewrite_announced_passes_as_announced(tmp_path):
    """num_losses=2: apex halves only the overflowing loss's scale, the one GradScaler halves
    the scale of both losses. The rewrite report announces it; nothing else differs."""
    for side, tree in zip(("original", "rewritten"), trees("two_models")):
        shutil.copytree(tree, tmp_path / side)
        train = tmp_path / side / "train.py"
        critic = "logits = critic(z.detach())"
        overflow = "logits = critic(z.detach() * (1e5 if it == 2 else 1.0))"
        train.write_text(train.read_text().replace(critic, overflow))
    code, out = invoke(
        tmp_path / "original", tmp_path / "rewritten", "--steps", 4, "--device", "cpu", "--", *PY
    )
    assert code == 0 and out.startswith("PASS-ANNOUNCED"), out
    scale = next(line for line in out.splitlines() if line.startswith("loss_scale "))
    assert " announced " in scale and "65536 " in scale and "32768 " in scale
    assert "A2N102 (train.py:21)" in scale
    assert "A2N102 train.py:21: num_losses: one GradScaler serves every loss" in out


def test_mutant_fails_with_table(tmp_path):
    rewritten = materialize("accumulation", "no_accum_division", tmp_path)
    code, out = invoke(
        trees("accumulation")[0], rewritten, "--steps", 3, "--device", "cpu", "--", *PY
    )
    assert code == 1, out
    assert out.startswith("FAIL: differs in loss")
    loss_row = next(line for line in out.splitlines() if line.startswith("loss "))
    assert "differs" in loss_row and " 0 " in loss_row


def test_rewritten_crash_is_not_equivalent(tmp_path):
    rewritten = materialize("plain", "no_update", tmp_path)
    code, out = invoke(trees("plain")[0], rewritten, "--steps", 3, "--device", "cpu", "--", *PY)
    assert code == 1
    assert "rewritten side crashed" in out and "step() has already been called" in out


def test_rewritten_stopping_early_is_not_equivalent(tmp_path):
    rewritten = tmp_path / "short"
    shutil.copytree(trees("plain")[1], rewritten)
    train = rewritten / "train.py"
    train.write_text(train.read_text().replace("range(args.iters)", "range(2)"))
    code, out = invoke(trees("plain")[0], rewritten, "--steps", 4, "--device", "cpu", "--", *PY)
    assert code == 1
    assert "rewritten side stopped early" in out


def test_original_failure_is_a_harness_error(tmp_path):
    original = tmp_path / "broken"
    original.mkdir()
    (original / "train.py").write_text("raise SystemExit('boom')\n")
    code, out = invoke(original, trees("plain")[1], "--steps", 2, "--device", "cpu", "--", *PY)
    assert code == 2
    assert out.startswith("ERROR: original side crashed")


def test_isolated_python_is_reported(tmp_path):
    code, out = invoke(
        *trees("plain"), "--steps", 2, "--device", "cpu", "--", sys.executable, "-I", "train.py"
    )
    assert code == 2
    assert "no-hooks" in out and "-I" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a", "b", "--steps", "2"], "missing COMMAND"),
        (["only-one", "--", "python", "x.py"], "give ORIGINAL and REWRITTEN"),
        (["--against", "HEAD", "a", "b", "--", "python"], "at most one tree"),
        (["--steps", "0", "a", "b", "--", "python"], "--steps"),
    ],
)
def test_usage_errors(args, message):
    code, out = invoke(*args)
    assert code == 2
    assert message in out


def test_missing_tree_and_real_apex_on_cpu(tmp_path):
    code, out = invoke(tmp_path / "nope", tmp_path, "--device", "cpu", "--", *PY)
    assert code == 2 and "REWRITTEN is not a directory" not in out and "ORIGINAL" in out
    code, out = invoke(*trees("plain"), "--device", "cpu", "--apex", "installed", "--", *PY)
    assert code == 2 and "needs --device cuda" in out


def test_plot_without_matplotlib_is_a_clear_usage_error(tmp_path, monkeypatch):
    monkeypatch.setattr(plotting, "available", lambda: False)
    code, out = invoke(*trees("plain"), "--plot", tmp_path / "x.png", "--", *PY)
    assert code == 2
    assert "pip install 'apex2native[plot]'" in out


def test_envelope_mode_replays_skips(tmp_path):
    report = tmp_path / "r.json"
    original, rewritten = trees("forced_overflow")
    code, out = invoke(
        original,
        rewritten,
        "--steps",
        8,
        "--device",
        "cpu",
        "--compare",
        "envelope",
        "--report",
        report,
        "--",
        *PY,
    )
    assert code == 0, out
    assert out.startswith("PASS-ENVELOPE")
    sides = json.loads(report.read_text())["sides"]

    def mask(side):
        return [e["applied"] for e in sides[side]["ranks"]["0"] if e["ev"] == "step"]

    assert mask("fp32") == mask("original") == [True, True, False, False, True, True, False, True]
    fp32_scales = {e["scale"] for e in sides["fp32"]["ranks"]["0"] if e["ev"] == "backward"}
    assert fp32_scales == {1.0}

    mutant = materialize("forced_overflow", "step_on_scaled_grads", tmp_path)
    code, out = invoke(
        original, mutant, "--steps", 8, "--device", "cpu", "--compare", "envelope", "--", *PY
    )
    assert code == 1 and out.startswith("FAIL"), out


def test_fixed_mode(tmp_path):
    code, out = invoke(
        *trees("plain"), "--steps", 3, "--device", "cpu", "--compare", "fixed", "--", *PY
    )
    assert code == 0 and out.startswith("PASS-FIXED"), out


def _git(repo, *args):
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


def test_against_head_uses_a_temporary_worktree(tmp_path):
    repo = tmp_path / "repo"
    (repo / "project").mkdir(parents=True)
    _git(repo, "init", "-q")
    train = repo / "project" / "train.py"
    shutil.copy(trees("plain")[0] / "train.py", train)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "apex version")
    shutil.copy(trees("plain")[1] / "train.py", train)
    code, out = invoke(
        "--against", "HEAD", repo / "project", "--steps", 3, "--device", "cpu", "--", *PY
    )
    assert code == 0, out
    assert "a2n-verify-rev-" in out
    assert len(_git(repo, "worktree", "list").splitlines()) == 1
    code, out = invoke("--against", "no-such-rev", repo / "project", "--", *PY)
    assert code == 2 and "no-such-rev" in out


def test_python_dash_m_entry_point_and_module_command():
    original, rewritten = trees("two_models")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "apex2native.verify",
            str(original),
            str(rewritten),
            "--steps",
            "3",
            "--device",
            "cpu",
            "--",
            sys.executable,
            "-m",
            "train",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("PASS-EXACT")
    assert "applied/opt1" in proc.stdout


def test_torchrun_ranks_are_each_compared():
    code, out = invoke(
        *trees("ddp"),
        "--steps",
        3,
        "--device",
        "cpu",
        "--",
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "train.py",
    )
    assert code == 0, out
    assert "rank0/loss" in out and "rank1/loss" in out


def test_stop_right_after_an_overflowing_backward():
    """apex has already halved its scale at the stop, native has not: still equal."""
    code, out = invoke(
        *trees("forced_overflow"), "--steps", 2, "--device", "cpu", "--rtol", 0, "--", *PY
    )
    assert code == 0 and out.startswith("PASS-EXACT"), out


def test_resume_from_an_apex_checkpoint():
    ckpt = FIXTURES / "resume" / "checkpoint.pt"
    code, out = invoke(
        *trees("resume"),
        "--steps",
        4,
        "--device",
        "cpu",
        "--rtol",
        0,
        "--resume-from",
        ckpt,
        "--",
        *PY,
        "--resume",
        ckpt,
    )
    assert code == 0 and out.startswith("PASS-EXACT"), out
    resumed = next(line for line in out.splitlines() if line.startswith("resume/scale "))
    assert " equal " in resumed
    assert "checkpoint['amp']: loss_scale 1024, unskipped 1997" in resumed


def test_resume_needs_an_apex_checkpoint_that_command_passes(tmp_path):
    ckpt = FIXTURES / "resume" / "checkpoint.pt"
    code, out = invoke(*trees("resume"), "--resume-from", ckpt, "--", *PY)
    assert code == 2 and "COMMAND does not pass it to the program" in out

    native = tmp_path / "native.pt"
    torch.save({"scaler": {"scale": 1024.0, "_growth_tracker": 3}}, native)
    code, out = invoke(*trees("resume"), "--resume-from", native, "--", *PY, "--resume", native)
    assert code == 2 and "holds no apex amp state" in out
