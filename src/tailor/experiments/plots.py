"""Plots that only read results (``metrics.csv``, evaluation JSON); they never train."""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tailor.errors import TailorError
from tailor.output import write_figure

__all__ = ["plot_learning_curve", "plot_preset", "plot_runs", "read_metrics", "run_evaluation"]


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
    # The actor is frozen while the fresh critic warms up (tailor.algos.ppo METRIC_FIELDS).
    cols["warmup"] = np.asarray([row.get("phase") == "critic-warmup" for row in rows])
    return cols


def plot_learning_curve(
    metrics: str | Path | dict[str, str | Path],
    out: str | Path,
    title: str,
    reference: dict[str, Any] | None = None,
    statistic_name: str = "statistic",
) -> Path:
    """Learning curves over environment steps: basic and total returns, the add-on return, and
    the task's statistic (three panels); the critic warm-up is shaded, and ``reference`` (an
    evaluation summary, e.g. the prior's) is drawn as dashed levels. ``metrics`` is one run's
    ``metrics.csv`` (or run directory) or ``{label: path}`` for several runs (one line style
    each). Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = metrics if isinstance(metrics, dict) else {"": metrics}
    fig, (ax, ax_a, ax_s) = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110)
    # Basic and total share a scale; the add-on return is much smaller, so it gets its own panel.
    panels = (
        (ax, "return_total", "total (basic + add-on)", "black"),
        (ax, "return_basic", "basic", "tab:blue"),
        (ax_a, "return_addon", "add-on", "tab:orange"),
        (ax_s, "statistic", statistic_name, "tab:green"),
    )
    for (name, path), style in zip(runs.items(), ("-", ":", "-.", "--"), strict=False):
        m = read_metrics(path)
        steps = m["steps"]
        for a, key, label, color in panels:
            what = f"{name}: {label}" if name else label
            what = f"{what} (training episodes)"
            a.plot(steps, m[key], ls=style, label=what, color=color, lw=1.6)
    if reference is not None:
        for a, key, label, color in panels:
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
    return _save(fig, title, out)


def _seed_band(runs: list[Path], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean, min and max over seeds of a metrics column, on the shortest run's step grid."""
    cols = [read_metrics(r) for r in runs if (r / "metrics.csv").is_file()]
    if not cols:
        return None
    n = min(len(c["steps"]) for c in cols)
    ys = np.stack([c[key][:n] for c in cols])
    with warnings.catch_warnings():  # iterations before the first finished episode are all-nan
        warnings.simplefilter("ignore", RuntimeWarning)
        band = np.stack([np.nanmin(ys, 0), np.nanmax(ys, 0)])
        return cols[0]["steps"][:n], np.nanmean(ys, 0), band


def plot_preset(
    preset: Any,
    out: str | Path,
    budget: Any = "local",
    dest: str | Path | None = None,
    check: Callable[[Path], Any] | None = None,
) -> list[Path]:
    """Figures of a preset from a sweep directory; returns the PNG paths (each written by
    :func:`tailor.output.write_figure`; ``check(path)`` is called on each before any drawing,
    e.g. the command line's refusal of an existing file).

    - ``<preset>-curves.png``: one row per task, basic and add-on training-episode returns over
      environment steps; a line per method (and std type) is the mean over seeds, the band the
      min-max over seeds; the prior's evaluation is a dashed level (customization presets).
    - ``<preset>-tradeoff.png`` (customization presets): evaluation basic vs add-on reward per
      method, one small marker per seed and a large one for the pooled mean, per task.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tailor.experiments.presets import expand, get_budget, get_preset
    from tailor.experiments.sweep import finished_results

    preset = get_preset(preset) if isinstance(preset, str) else preset
    budget = get_budget(budget) if isinstance(budget, str) else budget
    out = Path(out)
    dest = Path(dest) if dest is not None else out / "plots"
    jobs = expand(preset, budget)
    names = ["curves", "tradeoff"] if preset.customize_methods else ["curves"]
    paths = [dest / f"{preset.name}-{name}.png" for name in names]
    results = finished_results(jobs, out, preset.name, budget.name)  # DIR checked first
    for path in paths if check is not None else ():
        check(path)
    groups: dict[tuple[str, str, str], list] = {}
    for job in jobs:
        groups.setdefault((job.task, job.method, job.std_type), []).append(job)
    sweep = _Sweep(preset, budget, groups, results, out)
    figures = {"curves": _curves_figure(plt, sweep)}
    if preset.customize_methods:
        figures["tradeoff"] = _tradeoff_figure(plt, sweep)
    for path, fig in zip(paths, figures.values(), strict=True):
        try:
            write_figure(fig, path)
        finally:
            plt.close(fig)
    return paths


class _Sweep(NamedTuple):
    """What the figures of :func:`plot_preset` show: the preset's jobs grouped by ``(task,
    method, std type)``, the finished ones' results, and the sweep directory."""

    preset: Any
    budget: Any
    groups: dict[tuple[str, str, str], list]
    results: dict[str, Any]
    out: Path


def _curves_figure(plt: Any, sweep: _Sweep) -> Any:
    """The figure ``<preset>-curves.png`` of :func:`plot_preset`."""
    from tailor.experiments.tables import METHOD_NAMES

    preset, budget, groups, results, out = sweep

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(len(preset.tasks), 2, figsize=(11, 3.2 * len(preset.tasks)), dpi=100)
    axes = np.atleast_2d(axes)
    for row, task in enumerate(preset.tasks):
        k = 0
        for (t, method, std), gjobs in groups.items():
            if t != task:
                continue
            finished = [out / j.id for j in gjobs if j.id in results]
            label = METHOD_NAMES.get(method, method) + (
                f" ({std} std)" if len(preset.std_types) > 1 else ""
            )
            if method == "prior":
                for col, key in enumerate(("basic", "addon")):
                    vals = [results[j.id]["eval"][key]["mean"] for j in gjobs if j.id in results]
                    if vals:
                        axes[row, col].axhline(
                            np.mean(vals), color="black", ls="--", lw=1, label="prior (evaluation)"
                        )
                continue
            color = colors[k % len(colors)]
            k += 1
            for col, key in enumerate(("return_basic", "return_addon")):
                band = _seed_band(finished, key)
                if band is None:
                    continue
                steps, mean, (lo, hi) = band
                ax = axes[row, col]
                ax.plot(steps, mean, color=color, lw=1.5, label=f"{label} ({len(finished)} seeds)")
                ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
        for col, name in enumerate(("basic return", "add-on return")):
            ax = axes[row, col]
            ax.set_title(f"{task}: {name} (training episodes)", fontsize=9)
            ax.set_xlabel("environment steps")
            ax.grid(alpha=0.3)
        if axes[row, 0].get_legend_handles_labels()[0]:
            axes[row, 0].legend(fontsize=7)
    fig.suptitle(
        f"{preset.title} - budget {budget.name}: mean over seeds, band = min-max", fontsize=10
    )
    fig.tight_layout()
    return fig


def _tradeoff_figure(plt: Any, sweep: _Sweep) -> Any:
    """The figure ``<preset>-tradeoff.png`` of :func:`plot_preset` (customization presets)."""
    from tailor.experiments.tables import METHOD_NAMES

    preset, budget, groups, results, _ = sweep

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes1 = plt.subplots(1, len(preset.tasks), figsize=(5 * len(preset.tasks), 4.2), dpi=100)
    for ax, task in zip(np.atleast_1d(axes1), preset.tasks, strict=True):
        k = 0
        for (t, method, _std), gjobs in groups.items():
            if t != task:
                continue
            rs = [results[j.id] for j in gjobs if j.id in results]
            color = "black" if method == "prior" else colors[k % len(colors)]
            k += method != "prior"
            if not rs:
                continue
            b = [r["eval"]["basic"]["mean"] for r in rs]
            a = [r["eval"]["addon"]["mean"] for r in rs]
            ax.scatter(b, a, color=color, s=14, alpha=0.6)
            pb = np.concatenate([r["eval"]["per_episode"]["basic"] for r in rs])
            pa = np.concatenate([r["eval"]["per_episode"]["addon"] for r in rs])
            ax.errorbar(
                pb.mean(),
                pa.mean(),
                xerr=pb.std(),
                yerr=pa.std(),
                color=color,
                marker="o",
                ms=8,
                capsize=3,
                label=METHOD_NAMES.get(method, method),
            )
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("basic reward (evaluation)")
        ax.set_ylabel("add-on reward (evaluation)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(
        f"{preset.title} - budget {budget.name}: basic vs add-on "
        "(small: seeds; large: pooled mean ± std)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def run_evaluation(run: str | Path) -> dict[str, Any] | None:
    """The evaluation a sweep recorded for the run in ``run`` (its ``result.json``'s ``eval``:
    means of basic and add-on return over the episodes), or ``None`` when it has none."""
    path = Path(run) / "result.json"
    if not path.is_file():
        return None
    try:
        evaluation = json.loads(path.read_text()).get("eval")
    except (json.JSONDecodeError, AttributeError):
        return None
    return evaluation if isinstance(evaluation, dict) and "addon" in evaluation else None


def _run_labels(runs: list[Path]) -> list[str]:
    """Short labels for runs: their directory names, or the whole paths if two names clash."""
    names = [r.name or str(r) for r in runs]
    return names if len(set(names)) == len(names) else [str(r) for r in runs]


def plot_runs(runs: list[str | Path], out: str | Path, title: str | None = None) -> Path:
    """One figure of a few runs (``tailor plot RUN [RUN ...]``): basic and add-on returns of the
    training episodes over environment steps (``metrics.csv``), a line per run; and, when some
    of the runs were evaluated (a sweep job's ``result.json``), a third panel with evaluation
    add-on vs basic return, a marker per run. Returns the PNG path.

    Raises:
        TailorError: a run without a readable ``metrics.csv``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [Path(r) for r in runs]
    metrics = [read_metrics(r) for r in paths]  # a missing or empty table fails before drawing
    evaluations = [run_evaluation(r) for r in paths]
    evaluated = any(e is not None for e in evaluations)
    fig, axes = plt.subplots(1, 3 if evaluated else 2, figsize=(15 if evaluated else 10, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, m, ev) in enumerate(zip(_run_labels(paths), metrics, evaluations, strict=True)):
        color = colors[i % len(colors)]
        for ax, key in zip(axes[:2], ("return_basic", "return_addon"), strict=True):
            ax.plot(m["steps"], m[key], color=color, lw=1.5, label=label)
        if ev is not None:
            axes[2].scatter(ev["basic"]["mean"], ev["addon"]["mean"], color=color, label=label)
    for ax, name in zip(axes[:2], ("basic return", "add-on return"), strict=True):
        ax.set_title(f"{name} (training episodes)", fontsize=9)
        ax.set_xlabel("environment steps")
    if evaluated:
        axes[2].set_title("evaluation: add-on vs basic (mean over episodes)", fontsize=9)
        axes[2].set_xlabel("basic return")
        axes[2].set_ylabel("add-on return")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, title or ", ".join(_run_labels(paths)), out)


def _save(fig: Any, title: str, out: str | Path) -> Path:
    """Title, lay out and write ``fig`` to ``out`` (parents made); close it, written or not."""
    import matplotlib.pyplot as plt

    out = Path(out)
    try:
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        write_figure(fig, out)
    finally:
        plt.close(fig)
    return out
