"""Shared helpers of the verify tests: fixture discovery, mutants, running sides."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from fork_server import ForkServer, Job

from apex2native.verify.resume import command_for, inspect_checkpoint, private_copy
from apex2native.verify.runner import Settings, SideRun, SideSpec, collect, run_sides, side_env

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "verify"
STEPS = 8
COMMAND = [sys.executable, "train.py"]


def cases() -> list[str]:
    """Fixture names: directories holding original/ and rewritten/."""
    return sorted(
        p.name
        for p in FIXTURES.iterdir()
        if (p / "original").is_dir() and (p / "rewritten").is_dir()
    )


def mutants(case: str) -> dict[str, dict]:
    return json.loads((FIXTURES / case / "mutants.json").read_text())


def all_mutants() -> list[tuple[str, str]]:
    return [(case, name) for case in cases() for name in mutants(case)]


def materialize(case: str, mutant: str, dest: Path) -> Path:
    """Copy the rewritten tree to dest and apply the mutant's edits, each exactly once."""
    tree = dest / f"{case}-{mutant}"
    shutil.copytree(
        FIXTURES / case / "rewritten", tree, ignore=shutil.ignore_patterns("__pycache__")
    )
    train = tree / "train.py"
    text = train.read_text()
    for old, new in mutants(case)[mutant]["edits"]:
        if text.count(old) != 1:
            raise AssertionError(f"{case}/{mutant}: edit target found {text.count(old)} times")
        text = text.replace(old, new)
    train.write_text(text)
    return tree


def config(case: str) -> dict:
    """How a fixture runs when not as plain `python train.py` (fixtures/verify/<case>/verify.json):
    extra program arguments, the checkpoint to resume from (as `--resume-from` would), and the
    comparison mode."""
    path = FIXTURES / case / "verify.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def compare_mode(case: str) -> str:
    """`exact` unless the fixture's rewrite changes the numbers by design (verify.json)."""
    return config(case).get("compare", "exact")


def checkpoint(case: str) -> Path | None:
    name = config(case).get("resume_from")
    return FIXTURES / case / name if name else None


def fixture_command(case: str) -> list[str]:
    ckpt = checkpoint(case)
    args = config(case).get("args", [])
    return COMMAND + [str(ckpt) if ckpt and arg == ckpt.name else arg for arg in args]


def fixture_specs(case: str, dest: Path) -> list[SideSpec]:
    """Original (stand-in apex), rewritten and every mutant of one fixture; each gets its own
    copy of the fixture's checkpoint, if it resumes from one."""
    command, ckpt_path = fixture_command(case), checkpoint(case)
    ckpt = inspect_checkpoint(str(ckpt_path)) if ckpt_path else None

    def spec(label: str, tree: Path, **kwargs) -> SideSpec:
        if ckpt is None:
            return SideSpec(label, tree, command, **kwargs)
        copy = private_copy(ckpt, dest / "checkpoints", label)
        return SideSpec(label, tree, command_for(command, ckpt, copy), resume=copy, **kwargs)

    specs = [
        spec("original", FIXTURES / case / "original", reference_apex=True),
        spec("rewritten", FIXTURES / case / "rewritten"),
    ]
    for name in mutants(case):
        specs.append(spec(f"mutant-{name}", materialize(case, name, dest)))
    return specs


def events(run: SideRun, kind: str, rank: str = "0") -> list[dict]:
    return [e for e in run.ranks[rank] if e["ev"] == kind]


def run(
    specs: list[SideSpec], record_dir: Path, steps: int = STEPS, device: str = "cpu"
) -> list[SideRun]:
    """Run sides concurrently, one intra-op thread each (many processes share 2 cores)."""
    record_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return run_sides(specs, Settings(steps, 0, device, 300.0), record_dir, base_env=env)


def run_forked(
    specs: list[SideSpec], record_dir: Path, server: ForkServer, steps: int = STEPS
) -> list[SideRun]:
    """`run` on the CPU, each side in a fork of a server that has imported torch: the same
    environment, hooks and records as `run_sides`, without an interpreter start per side.
    The sides must be in different trees (they run at the same time)."""
    assert len({spec.tree.resolve() for spec in specs}) == len(specs), "trees must differ"
    assert all(spec.command[0] == sys.executable for spec in specs), "python programs only"
    record_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(steps, 0, "cpu", 300.0)
    base = dict(os.environ, OMP_NUM_THREADS="1")
    jobs = [
        Job(
            str(spec.tree),
            spec.command[1:],
            side_env(spec, settings, record_dir, base),
            str(record_dir / f"{spec.label}.stdout"),
            str(record_dir / f"{spec.label}.stderr"),
            settings.timeout,
        )
        for spec in specs
    ]
    done = server.run(jobs)
    return [
        collect(
            spec,
            record_dir,
            result.returncode,
            result.timed_out,
            result.wall_s,
            result.stdout_tail,
            result.stderr_tail,
        )
        for spec, result in zip(specs, done)
    ]
