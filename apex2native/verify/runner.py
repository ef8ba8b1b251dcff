"""Launch the sides as separate processes with the hooks injected through PYTHONPATH.

Sides in different trees run concurrently; sides sharing a tree run one after the other so
files a script writes into its working directory cannot collide.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .hooks.a2n_verify_hooks import protocol
from .trace import crash_event, end_event, load_ranks

HOOKS_DIR = Path(__file__).resolve().parent / "hooks"
REFERENCE_APEX_DIR = Path(__file__).resolve().parent / "reference_apex"
TAIL_CHARS = 4000


@dataclass(frozen=True)
class Settings:
    """What every side shares: step budget, seed, device mapping, time limit."""

    steps: int
    seed: int
    device: str
    timeout: float


@dataclass
class SideSpec:
    label: str
    tree: Path
    command: list[str]
    reference_apex: bool = False
    amp_off: bool = False
    skip_mask: dict | None = None
    resume: Path | None = None


@dataclass
class SideRun:
    """What one side did: exit status, output tails and the recorded events per rank."""

    spec: SideSpec
    returncode: int | None
    timed_out: bool
    wall_s: float
    stdout_tail: str
    stderr_tail: str
    loaded: bool
    hook_errors: list[str] = field(default_factory=list)
    ranks: dict[str, list[dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """stopped (N steps reached), finished (exited early), crashed, timeout, no-hooks."""
        if self.timed_out:
            return "timeout"
        if not self.loaded:
            return "no-hooks"
        ends = [end_event(events) for events in self.ranks.values()]
        if self.ranks and all(e is not None and e.get("reason") == "stopped" for e in ends):
            return "stopped"
        if any(crash_event(events) for events in self.ranks.values()) or self.returncode:
            return "crashed"
        return "finished"

    def error_summary(self) -> str:
        crash = next((crash_event(ev) for ev in self.ranks.values() if crash_event(ev)), None)
        if crash:
            return crash["error"]
        lines = [ln for ln in self.stderr_tail.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit status {self.returncode}"


def side_env(
    spec: SideSpec, settings: Settings, record_dir: Path, base: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment of one side: hooks (and the stand-in apex) first on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    paths = [str(HOOKS_DIR)]
    if spec.reference_apex:
        paths.append(str(REFERENCE_APEX_DIR))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env[protocol.ENV_DIR] = str(record_dir)
    env[protocol.ENV_SIDE] = spec.label
    env[protocol.ENV_STEPS] = str(settings.steps)
    env[protocol.ENV_SEED] = str(settings.seed)
    env[protocol.ENV_DEVICE] = settings.device
    env.pop(protocol.ENV_AMP_OFF, None)
    env.pop(protocol.ENV_SKIP_MASK, None)
    env.pop(protocol.ENV_RESUME, None)
    if spec.resume is not None:
        env[protocol.ENV_RESUME] = str(spec.resume)
    if spec.amp_off:
        env[protocol.ENV_AMP_OFF] = "1"
    if spec.skip_mask is not None:
        mask_path = record_dir / f"{spec.label}.skipmask.json"
        mask_path.write_text(json.dumps(spec.skip_mask), encoding="utf-8")
        env[protocol.ENV_SKIP_MASK] = str(mask_path)
    env["PYTHONHASHSEED"] = str(settings.seed)
    env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    env["TORCHDYNAMO_DISABLE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tail(path: Path) -> str:
    data = path.read_bytes()[-TAIL_CHARS:]
    return data.decode("utf-8", errors="replace")


class _Running:
    def __init__(
        self, spec: SideSpec, settings: Settings, record_dir: Path, base_env: dict[str, str] | None
    ):
        self.spec, self.record_dir = spec, record_dir
        self.out_path = record_dir / f"{spec.label}.stdout"
        self.err_path = record_dir / f"{spec.label}.stderr"
        self.start = time.monotonic()
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                spec.command,
                cwd=spec.tree,
                env=side_env(spec, settings, record_dir, base_env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def wait(self, deadline: float) -> SideRun:
        timed_out = False
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.proc.kill()
            self.proc.wait()
        return collect(
            self.spec,
            self.record_dir,
            self.proc.returncode,
            timed_out,
            time.monotonic() - self.start,
            _tail(self.out_path),
            _tail(self.err_path),
        )


def collect(
    spec: SideSpec,
    record_dir: Path,
    returncode: int | None,
    timed_out: bool,
    wall_s: float,
    stdout_tail: str = "",
    stderr_tail: str = "",
) -> SideRun:
    """Gather a finished side's records from the record directory."""
    label = spec.label
    loaded = any(record_dir.glob(f"{label}.pid*{protocol.LOADED_SUFFIX}"))
    errors = [p.read_text() for p in sorted(record_dir.glob(f"{label}.pid*.error"))]
    ranks, notes = load_ranks(record_dir, label)
    return SideRun(
        spec, returncode, timed_out, wall_s, stdout_tail, stderr_tail, loaded, errors, ranks, notes
    )


def launches_distributed(command: list[str]) -> bool:
    """torchrun-style launchers pick fixed rendezvous ports: never run two at once."""
    names = {Path(part).name for part in command}
    return bool(names & {"torchrun", "torch.distributed.run", "torch.distributed.launch"})


def run_sides(
    specs: list[SideSpec],
    settings: Settings,
    record_dir: Path,
    parallel: bool = True,
    base_env: dict[str, str] | None = None,
) -> list[SideRun]:
    """Run the sides and return their results in order. With `parallel`, sides in
    different trees run at the same time; sides sharing a tree never do."""
    results: dict[str, SideRun] = {}
    pending = list(specs)
    while pending:
        batch, seen = [], set()
        for spec in list(pending):
            key = spec.tree.resolve()
            if key not in seen and (parallel or not batch):
                seen.add(key)
                batch.append(spec)
                pending.remove(spec)
        running = [_Running(spec, settings, record_dir, base_env) for spec in batch]
        deadline = time.monotonic() + settings.timeout
        for run in running:
            results[run.spec.label] = run.wait(deadline)
    return [results[spec.label] for spec in specs]


def skip_mask(run: SideRun, rank: str = "0") -> dict[str, list[bool]]:
    """Per optimizer index, whether each step opportunity was applied (for the fp32 replay)."""
    mask: dict[str, list[bool]] = {}
    for event in run.ranks.get(rank, []):
        if event.get("ev") == "step":
            mask.setdefault(str(event["opt"]), []).append(bool(event["applied"]))
    return mask
