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
    """Learning curves of a run: basic, add-on and total episode returns (left) and the task's
    statistic (right) over environment steps; the critic warm-up is shaded, and ``reference``
    (an evaluation summary, e.g. the prior's) is drawn as dashed levels. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_metrics(metrics)
    steps = m["steps"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for key, label, color in (
        ("return_total", "total (basic + add-on)", "black"),
        ("return_basic", "basic", "tab:blue"),
        ("return_addon", "add-on", "tab:orange"),
    ):
        ax.plot(steps, m[key], label=label, color=color, lw=1.6)
        if reference is not None:
            ref_key = key.removeprefix("return_")
            ax.axhline(reference[ref_key]["mean"], color=color, ls="--", lw=0.9, alpha=0.8)
    ax2.plot(steps, m["statistic"], color="tab:green", lw=1.6, label="customized (training)")
    if reference is not None:
        ax2.axhline(
            reference["statistic"]["mean"],
            color="tab:green",
            ls="--",
            lw=0.9,
            label="prior (evaluation)",
        )
    for a in (ax, ax2):
        if m["warmup"].any():
            a.axvspan(
                steps[0] - (steps[1] - steps[0] if len(steps) > 1 else 0),
                steps[m["warmup"]][-1],
                color="grey",
                alpha=0.15,
                lw=0,
                label="critic warm-up",
            )
        a.set_xlabel("environment steps")
        a.grid(alpha=0.3)
    ax.set_ylabel("episode return (training episodes)")
    ax.set_title("returns (dashed: the prior's evaluation)", fontsize=9)
    ax2.set_ylabel(statistic_name)
    ax2.set_title(statistic_name, fontsize=9)
    ax.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
