"""Turn the JSON-lines records of one side into per-metric series.

Series compared between sides: `loss` and `loss_scale` (one entry per backward), `clip_norm`
(one per `clip_grad_norm_` call), `applied/optK` and `grad_norm/optK` (one per step
opportunity of optimizer K), `init_params` / `final_params` (per parameter: norm, sum, hash)
The final scale is not a series: the stop falls between apex's per-backward scale update
and native's per-step one, so the scale used by the backward after step N (in `loss_scale`)
is what is compared.

Each entry has a key that pairs it with the other side's entry: (step, micro-step, k) for
backward and clip records, (n,) for step opportunities, (optimizer, i) for parameters.
`clip_norm` is a diagnostic: a reading of the gradients, not something that shapes training,
so a rewrite may legitimately record it at other micro-steps (see `align.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIAGNOSTICS = ("clip_norm",)


def is_diagnostic(name: str) -> bool:
    """Diagnostics read training state; a difference in how often they were read is no fault."""
    return name.rsplit("/", 1)[-1] in DIAGNOSTICS


@dataclass
class Series:
    """One metric: values in order, the training step each belongs to, the key that pairs
    it with the other side, and its position in the trace (which record came first)."""

    name: str
    kind: str
    values: list[Any] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    keys: list[tuple] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)

    def add(self, value: Any, step: int, key: tuple | None = None, seq: int = 0) -> None:
        self.values.append(value)
        self.steps.append(step)
        self.keys.append(key if key is not None else (len(self.keys),))
        self.seq.append(seq)

    def key_list(self) -> list[tuple]:
        """Keys of every entry; hand-built series without keys pair by position."""
        if len(self.keys) == len(self.values):
            return self.keys
        return [(i,) for i in range(len(self.values))]

    def subset(self, indices: list[int]) -> Series:
        keys, seq = self.key_list(), self.seq
        out = Series(self.name, self.kind)
        for i in indices:
            out.add(self.values[i], self.steps[i], keys[i], seq[i] if i < len(seq) else i)
        return out


def read_events(path: Path) -> list[dict]:
    """Parse a record file, ignoring a torn last line of a killed process."""
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def load_ranks(directory: Path, side: str) -> tuple[dict[str, list[dict]], list[str]]:
    """Events per rank for one side; with several recording processes per rank, the one
    with the most step events wins and a note says so."""
    per_rank: dict[str, list[list[dict]]] = {}
    for path in sorted(directory.glob(f"{side}.rank*.pid*.jsonl")):
        rank = path.name[len(side) + len(".rank") :].split(".pid", 1)[0]
        per_rank.setdefault(rank, []).append(read_events(path))
    chosen, notes = {}, []
    for rank, candidates in sorted(per_rank.items()):
        candidates.sort(key=lambda evs: -sum(e.get("ev") == "step" for e in evs))
        chosen[rank] = candidates[0]
        if len(candidates) > 1:
            notes.append(
                f"{side} rank {rank}: {len(candidates)} processes recorded; "
                "compared the one with the most steps"
            )
    return chosen, notes


def end_event(events: list[dict]) -> dict | None:
    return next((e for e in reversed(events) if e.get("ev") == "end"), None)


def crash_event(events: list[dict]) -> dict | None:
    return next((e for e in events if e.get("ev") == "crash"), None)


def step_counts(events: list[dict]) -> list[int]:
    counts: list[int] = []
    for e in events:
        if e.get("ev") == "step":
            while len(counts) <= e["opt"]:
                counts.append(0)
            counts[e["opt"]] += 1
    return counts


def _occurrence(seen: dict, key: tuple) -> tuple:
    """The key made unique: how many entries with the same (step, micro) came before."""
    k = seen.get(key, 0)
    seen[key] = k + 1
    return (*key, k)


def metrics(events: list[dict]) -> dict[str, Series]:
    """All comparable series of one rank's events, in a stable order."""
    out: dict[str, Series] = {
        "loss": Series("loss", "float"),
        "loss_scale": Series("loss_scale", "float"),
        "clip_norm": Series("clip_norm", "float"),
    }
    per_opt: dict[int, tuple[Series, Series]] = {}
    seen: dict[str, dict] = {"backward": {}, "clip": {}}
    for seq, e in enumerate(events):
        kind = e.get("ev")
        if kind == "backward":
            key = _occurrence(seen["backward"], (e["step"], e.get("micro", 0)))
            out["loss"].add(e["loss"], e["step"], key, seq)
            out["loss_scale"].add(e["scale"], e["step"], key, seq)
        elif kind == "clip":
            key = _occurrence(seen["clip"], (e["step"], e.get("micro", 0)))
            out["clip_norm"].add(e["norm"], e["step"], key, seq)
        elif kind == "step":
            idx = e["opt"]
            if idx not in per_opt:
                per_opt[idx] = (
                    Series(f"applied/opt{idx}", "bool"),
                    Series(f"grad_norm/opt{idx}", "float"),
                )
            per_opt[idx][0].add(e["applied"], e["n"], (e["n"],), seq)
            per_opt[idx][1].add(e["grad_norm"], e["n"], (e["n"],), seq)
        elif kind == "params":
            name = f"{e['when']}_params"
            series = out[name] = Series(name, "params")
            for opt_idx, entries in enumerate(e["params"]):
                for i, entry in enumerate(entries):
                    series.add(entry, opt_idx, (opt_idx, i), seq)
    for idx in sorted(per_opt):
        out[per_opt[idx][0].name], out[per_opt[idx][1].name] = per_opt[idx]
    return out
