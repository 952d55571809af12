"""Plots that only read results (``metrics.csv``, evaluation JSON); they never train."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from tailor.errors import TailorError

__all__ = ["plot_learning_curve", "read_metrics"]


def read_metrics(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a run's ``metrics.csv`` as float arrays (empty cells become ``nan``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise TailorError(f"no metrics file at {str(path)!r}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise TailorError(f"{str(path)!r} has no rows yet")

    def column(key: str) -> np.ndarray:
        out = []
        for row in rows:
            try:
                out.append(float(row[key]))
            except (TypeError, ValueError):
                out.append(np.nan)
        return np.asarray(out)

    cols = {key: column(key) for key in rows[0] if key != "phase"}
    cols["warmup"] = np.asarray([row.get("phase") == "warmup" for row in rows])
    return cols


def plot_learning_curve(
    metrics: str | Path,
    out: str | Path,
    title: str,
    reference: dict[str, Any] | None = None,
    statistic_name: str = "statistic",
) -> Path:
    """Learning curves of a run over environment steps: basic and total returns, the add-on
    return, and the task's statistic (three panels); the critic warm-up is shaded, and
    ``reference`` (an evaluation summary, e.g. the prior's) is drawn as dashed levels. Returns the
    PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_metrics(metrics)
    steps = m["steps"]
    fig, (ax, ax_a, ax_s) = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110)
    # Basic and total share a scale; the add-on return is much smaller, so it gets its own panel.
    for a, key, label, color in (
        (ax, "return_total", "total (basic + add-on)", "black"),
        (ax, "return_basic", "basic", "tab:blue"),
        (ax_a, "return_addon", "add-on", "tab:orange"),
        (ax_s, "statistic", statistic_name, "tab:green"),
    ):
        a.plot(steps, m[key], label=f"{label} (training episodes)", color=color, lw=1.6)
        if reference is not None:
            ref = reference[key.removeprefix("return_")]["mean"]
            a.axhline(ref, color=color, ls="--", lw=0.9, label=f"{label}: prior (evaluation)")
    last_warmup = steps[m["warmup"]][-1] if m["warmup"].any() else None
    for a, ylabel in ((ax, "episode return"), (ax_a, "add-on return"), (ax_s, statistic_name)):
        if last_warmup is not None:
            a.axvspan(0, last_warmup, color="grey", alpha=0.15, lw=0, label="critic warm-up")
        a.set_xlabel("environment steps")
        a.set_ylabel(ylabel)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
