"""Per-process record of one side: JSON lines flushed per step, and the N-step stop.

A "step opportunity" is one call that could update an optimizer's parameters: an applied
`optimizer.step`, a `GradScaler.step` that skipped, or apex's one-shot skip. After N of them
for some optimizer, the next one raises `StopTraining`.

Training records carry the optimizer step they belong to (`step`: opportunities of optimizer
0 so far; a step record, its own opportunity number) and the micro-step within it (`micro`:
the backward pass a clip follows, the last one a step accumulated), so the harness can pair
records by step instead of by call count.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import weakref

import torch

from .protocol import record_name


class StopTraining(BaseException):
    """Ends the run after N steps; a BaseException so `except Exception` cannot swallow it."""


def _value(x) -> float | None:
    if isinstance(x, torch.Tensor):
        if x.dim() == 0:
            return float(x.item())
        return float(x.detach().float().sum().item())
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _tensor_hash(t: torch.Tensor) -> str:
    flat = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    try:
        data = flat.numpy().tobytes()
    except (RuntimeError, TypeError):
        data = bytes(flat.tolist())
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def grad_norm(optimizer) -> float | None:
    """L2 norm over all gradients of the optimizer's params, in fp32 (foreach per group)."""
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return None
    groups: dict = {}
    for g in grads:
        groups.setdefault((g.device, g.dtype, g.is_sparse), []).append(g)
    norms = []
    for (_, dtype, sparse), members in groups.items():
        if sparse:
            members = [m.coalesce()._values() for m in members]
        if dtype is not torch.float32:
            members = [m.float() for m in members]
        norms.extend(torch._foreach_norm(members))
    device = norms[0].device
    if len(groups) > 1:
        norms = [n.to(device) for n in norms]
    return float(torch.linalg.vector_norm(torch.stack(norms)).item())


def params_fingerprint(optimizers) -> list:
    """Per optimizer, per param in param_groups order: [L2 norm, sum, byte hash]."""
    result = []
    for optimizer in optimizers:
        entries = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                d = p.detach().double()
                entries.append([d.norm().item(), d.sum().item(), _tensor_hash(p)])
        result.append(entries)
    return result


class Recorder:
    """Collects events of one process and writes them as JSON lines."""

    def __init__(self, directory: str, side: str, steps: int, skip_mask: dict | None = None):
        self.directory = directory
        self.side = side
        self.steps = steps
        self.skip_mask = skip_mask
        self.rank = os.environ.get("RANK", "0")
        self._file = None
        self.optimizers: list = []
        self._index: dict[int, int] = {}
        self.counts: list[int] = []
        self.scalers: list = []
        self.n_backward = 0
        self.n_clip = 0
        self._micro_step = 0
        self._micro = 0
        self.pending: tuple | None = None
        self.last_scale: float | None = None
        self.current: dict | None = None
        self.in_backward = False
        self.params_recorded = False
        self.ended = False
        self.cuda = torch.cuda.is_available()  # before `--device cpu` answers True

    def emit(self, event: dict, flush: bool = False) -> None:
        """Append one JSON line; lines reach the file at least once per step."""
        if self._file is None:
            path = os.path.join(self.directory, record_name(self.side, self.rank, os.getpid()))
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115
            self._file.write(json.dumps(self._start_event()) + "\n")
        self._file.write(json.dumps(event) + "\n")
        if flush:
            self._file.flush()

    def _start_event(self) -> dict:
        apex = sys.modules.get("apex")
        apex_kind = None
        if apex is not None:
            apex_kind = "reference" if getattr(apex, "A2N_REFERENCE", False) else "installed"
        cuda = self.cuda
        return {
            "ev": "start",
            "side": self.side,
            "rank": self.rank,
            "pid": os.getpid(),
            "argv": list(sys.argv),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "apex": apex_kind,
            "apex_version": getattr(apex, "__version__", None) if apex is not None else None,
        }

    def step_index(self) -> int:
        return self.counts[0] if self.counts else 0

    def _backwards_in_step(self, step: int) -> int:
        if step != self._micro_step:
            self._micro_step, self._micro = step, 0
        return self._micro

    def index(self, optimizer) -> int:
        idx = self._index.get(id(optimizer))
        if idx is None:
            idx = len(self.optimizers)
            self._index[id(optimizer)] = idx
            self.optimizers.append(optimizer)
            self.counts.append(0)
        return idx

    def track_scaler(self, scaler) -> None:
        self.scalers.append(weakref.ref(scaler))

    def set_pending(self, loss, scale: float, source: str) -> None:
        self.pending = (_value(loss), scale, source)

    def on_backward(self, tensor) -> None:
        if self.pending is not None:
            loss, scale, source = self.pending
            self.pending = None
        else:
            loss = _value(tensor) if tensor.numel() == 1 else None
            scale, source = 1.0, "plain"
        self.last_scale = scale
        step = self.step_index()
        micro = self._backwards_in_step(step)
        self._micro = micro + 1
        self.emit(
            {
                "ev": "backward",
                "n": self.n_backward,
                "step": step,
                "micro": micro,
                "loss": loss,
                "scale": scale,
                "src": source,
            }
        )
        self.n_backward += 1

    def on_clip(self, norm) -> None:
        step = self.step_index()
        micro = max(self._backwards_in_step(step) - 1, 0)
        self.emit(
            {"ev": "clip", "n": self.n_clip, "step": step, "micro": micro, "norm": _value(norm)}
        )
        self.n_clip += 1

    def on_resume(self) -> None:
        self.emit({"ev": "resume", "step": self.step_index()}, flush=True)

    def begin(self, optimizer, direct: bool) -> bool:
        """Start a step opportunity; raises StopTraining once N were taken."""
        if self.current is not None:
            return False
        optimizer = _wrapped(optimizer)
        idx = self.index(optimizer)
        if self.counts[idx] >= self.steps:
            self.stop()
        if not self.params_recorded:
            self.params_recorded = True
            self.emit(
                {"ev": "params", "when": "init", "params": params_fingerprint(self.optimizers)}
            )
        self.current = {
            "opt": optimizer,
            "idx": idx,
            "direct": direct,
            "applied": False,
            "grad_norm": None,
        }
        return True

    def end(self) -> None:
        cur, self.current = self.current, None
        if cur is None:
            return
        idx = cur["idx"]
        n = self.counts[idx]
        micro = max(self._backwards_in_step(self.step_index()) - 1, 0)
        self.counts[idx] += 1
        self.emit(
            {
                "ev": "step",
                "opt": idx,
                "n": n,
                "step": n,
                "micro": micro,
                "applied": cur["applied"],
                "grad_norm": cur["grad_norm"],
                "scale": self.last_scale,
            },
            flush=True,
        )

    def on_pre_step(self, optimizer) -> None:
        if self.current is None:
            self.begin(optimizer, direct=True)
        cur = self.current
        if cur is not None and cur["opt"] is optimizer and not cur["applied"]:
            cur["applied"] = True
            cur["grad_norm"] = grad_norm(optimizer)

    def on_post_step(self, optimizer) -> None:
        cur = self.current
        if cur is not None and cur["direct"] and cur["opt"] is optimizer:
            self.end()

    def replay_skips(self, optimizer) -> bool:
        """In the fp32 envelope run: True when the original skipped this opportunity."""
        if not self.skip_mask:
            return False
        idx = self.index(optimizer)
        mask = self.skip_mask.get(str(idx), [])
        n = self.counts[idx]
        return n < len(mask) and not mask[n]

    def scaler_state(self) -> dict:
        grad_scalers = []
        for ref in self.scalers:
            scaler = ref()
            if scaler is not None:
                grad_scalers.append(float(scaler.get_scale()))
        apex_scalers = []
        amp = sys.modules.get("apex.amp")
        for scaler in getattr(getattr(amp, "_amp_state", None), "loss_scalers", []) or []:
            apex_scalers.append(float(scaler.loss_scale()))
        return {"grad_scalers": grad_scalers, "apex_scalers": apex_scalers}

    def finish(self, reason: str) -> None:
        if self.ended or (self._file is None and not self.optimizers):
            return
        self.ended = True
        self.emit({"ev": "params", "when": "final", "params": params_fingerprint(self.optimizers)})
        self.emit(
            {
                "ev": "end",
                "reason": reason,
                "counts": list(self.counts),
                "backwards": self.n_backward,
                **self.scaler_state(),
            },
            flush=True,
        )

    def crash(self, error: str) -> None:
        if self._file is not None or self.optimizers:
            self.emit({"ev": "crash", "error": error}, flush=True)

    def stop(self) -> None:
        self.finish("stopped")
        raise StopTraining(f"apex2native verify: stopped after {self.steps} step opportunities")


def _wrapped(optimizer):
    """The optimizer inside a wrapper that is not one itself (LARC keeps it as `.optim`):
    its step is the one that changes the parameters, on either side."""
    inner = getattr(optimizer, "optim", None)
    if not isinstance(optimizer, torch.optim.Optimizer) and isinstance(
        inner, torch.optim.Optimizer
    ):
        return inner
    return optimizer
