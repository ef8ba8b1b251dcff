"""`--plot`: a PNG of the loss and gradient-norm curves of every side (needs matplotlib)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .session import Outcome
from .trace import metrics

MISSING = (
    "--plot needs matplotlib, which is not installed; install it with "
    "`pip install 'apex2native[plot]'` (or `pip install matplotlib`)"
)


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _grad_series(series: dict):
    if series.get("clip_norm") and series["clip_norm"].values:
        return "pre-clip grad norm", series["clip_norm"]
    return "grad norm seen by optimizer 0", series.get("grad_norm/opt0")


def write_plot(path: Path, outcome: Outcome) -> None:
    """Two panels: unscaled loss per backward, and gradient norm per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(11, 4))
    grad_title = "grad norm"
    for run in outcome.sides:
        events = run.ranks.get("0") or next(iter(run.ranks.values()), [])
        series = metrics(events)
        loss = series["loss"]
        ax_loss.plot(
            range(len(loss.values)),
            [_num(v) for v in loss.values],
            marker=".",
            label=run.spec.label,
        )
        grad_title, grad = _grad_series(series)
        if grad is not None:
            ax_grad.plot(
                grad.steps, [_num(v) for v in grad.values], marker=".", label=run.spec.label
            )
    ax_loss.set(title="unscaled loss", xlabel="backward #")
    ax_grad.set(title=grad_title, xlabel="step", yscale="log")
    for ax in (ax_loss, ax_grad):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"apex2native verify: {outcome.verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _num(value):
    return float("nan") if value is None else value
