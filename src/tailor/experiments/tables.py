"""The paper's tables as Markdown, our numbers beside the paper's. Reads ``result.json`` only.

Conventions (the paper's, as far as it states them):

- **avg**: mean ± std over *all* evaluation episodes of all seeds pooled (paper: 500 episodes
  across 5 seeds).
- **best**: the seed whose mean of the preset's metric (basic reward for Tables I and III, total
  reward for Table II) is highest; mean ± std over that seed's episodes.
- Table II's policies are evaluated at the end of their runs (the paper picked the
  best-performing checkpoints); "avg" pools the seeds and "best" is the best seed.

A cell whose jobs are not all finished says how many seeds it has, e.g. ``(1/2 seeds)``; a cell
without any finished job is ``-``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tailor.experiments import paper
from tailor.experiments.presets import Budget, Job, Preset, expand, get_budget, get_preset
from tailor.experiments.sweep import finished_results

__all__ = ["cell", "fmt", "preset_table"]

METHOD_NAMES = {
    "no-entropy": "No-Entropy PPO",
    "end-entropy": "End-Entropy PPO",
    "repeat-entropy": "Repeat-Entropy PPO",
    "soft": "Soft PPO",
    "prior": "Prior",
    "greedy": "Greedy PPO",
    "kl": "KL PPO",
    "residual": "Residual PPO",
    "full": "Full policy",
}


def fmt(ms: tuple[float, float] | None, digits: int = 1) -> str:
    """``(mean, std)`` -> ``"mean ± std"``; ``None`` -> ``"-"``."""
    if ms is None:
        return "-"
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def cell(
    results: Sequence[dict[str, Any]], key: str, metric: str, evaluation: str = "eval"
) -> dict[str, Any] | None:
    """Statistics of one table cell from the results of its seeds.

    Args:
        results: ``result.json`` records of the same config, one per seed.
        key: evaluation field: ``total``, ``basic``, ``addon`` or ``statistic``.
        metric: the field that picks the best seed.
        evaluation: ``"eval"`` (the last policy) or ``"eval_best"`` (the best snapshot, chosen on
            other seeds; records without one, e.g. the prior's, use their ``eval``).

    Returns:
        ``{"avg": (mean, std) over all pooled episodes, "best": (mean, std) of the best seed,
        "best_seed": int, "seeds": n, "episodes": pooled count}`` or ``None`` without results.
    """
    if not results:
        return None
    evals = [r.get(evaluation) or r["eval"] for r in results]
    pooled = np.concatenate([e["per_episode"][key] for e in evals]).astype(np.float64)
    i = max(range(len(evals)), key=lambda j: float(np.mean(evals[j]["per_episode"][metric])))
    best, b = results[i], np.asarray(evals[i]["per_episode"][key], dtype=np.float64)
    return {
        "avg": (float(pooled.mean()), float(pooled.std())),
        "best": (float(b.mean()), float(b.std())),
        "best_seed": int(best["job"]["seed"]),
        "seeds": len(results),
        "episodes": int(pooled.size),
    }


def _group(jobs: Sequence[Job], results: dict[str, dict[str, Any]]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for job in jobs:
        key = (job.task, job.method, job.std_type)
        groups.setdefault(key, [])
        if job.id in results:
            groups[key].append(results[job.id])
    return groups


def _seeds_note(c: dict[str, Any] | None, budget: Budget) -> str:
    if c is None or c["seeds"] == len(budget.seeds):
        return ""
    return f" ({c['seeds']}/{len(budget.seeds)} seeds)"


def _header(preset: Preset, budget: Budget, results: dict, jobs: Sequence[Job]) -> list[str]:
    return [
        f"## {preset.title}",
        "",
        f"Budget `{budget.name}`: seeds {', '.join(map(str, budget.seeds))}; "
        f"{budget.train_steps:,} steps per run from scratch, {budget.customize_steps:,} per "
        f"customization; {budget.episodes} deterministic evaluation episodes per seed. "
        f"Finished jobs: {len(results)}/{len(jobs)}. Paper: 500 episodes across 5 seeds.",
        "",
    ]


def preset_table(preset: Preset | str, out: str | Path, budget: Budget | str = "local") -> str:
    """The Markdown table of ``preset`` from the sweep directory ``out``."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    budget = get_budget(budget) if isinstance(budget, str) else budget
    jobs = expand(preset, budget)
    results = finished_results(jobs, out, preset.name, budget.name)
    groups = _group(jobs, results)
    lines = _header(preset, budget, results, jobs)
    if preset.name == "table2":
        lines += _table2(preset, budget, groups)
    else:
        lines += _training_table(preset, budget, groups)
    return "\n".join(lines)


def _training_table(preset: Preset, budget: Budget, groups: dict) -> list[str]:
    """Tables I and III: basic reward, avg and best seed, one row per (task, method, std)."""
    by_std = preset.name == "table3"
    ref = paper.TABLE3 if by_std else paper.TABLE1
    public = budget.name == "1m"  # beside the public 1M-step PPO benchmark numbers
    lines = [
        "| env | " + ("std" if by_std else "method") + " | ours avg | paper avg | ours best seed "
        "| paper best |" + (" single-file PPO, 1M |" if public else ""),
        "|---|---|---|---|---|---|" + ("---|" if public else ""),
    ]
    for task in preset.tasks:
        for method in preset.train_methods:
            for std in preset.std_types:
                c = cell(groups[(task, method, std)], "basic", preset.metric)
                p = ref.get(task, {}).get(std if by_std else method)
                name = std if by_std else METHOD_NAMES.get(method, method)
                best = "-" if c is None else f"{fmt(c['best'])} (seed {c['best_seed']})"
                row = (
                    f"| {task} | {name} | {fmt(c and c['avg'])}{_seeds_note(c, budget)} | "
                    f"{fmt(p and p['avg'])} | {best} | {fmt(p and p['best'])} |"
                )
                if public:
                    row += f" {fmt(paper.PUBLIC_PPO_1M.get(task), 0)} |"
                lines.append(row)
    return lines


def _table2(preset: Preset, budget: Budget, groups: dict) -> list[str]:
    """Table II: total, basic, statistic, add-on; pooled over seeds, then the best seed."""
    fields = (("total", 1), ("basic", 1), ("statistic", 2), ("addon", 1))
    methods = ["prior", *preset.customize_methods, *preset.train_methods]
    out: list[str] = []
    variants = [
        ("avg", "eval", "last checkpoint, pooled over seeds"),
        ("best", "eval", "last checkpoint, best seed (by total reward)"),
    ]
    if any(r.get("eval_best") for rs in groups.values() for r in rs):
        variants.append(("avg", "eval_best", "best checkpoint (chosen on other seeds), pooled"))
    for which, evaluation, title in variants:
        out += [
            f"### Ours: {title}; paper: best checkpoints",
            "",
            "| env | policy | total | paper | basic | paper | statistic | paper | add-on | paper |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for task in preset.tasks:
            for method in methods:
                std = "global"
                rs = groups.get((task, method, std), [])
                p = paper.TABLE2.get(task, {}).get(method)
                cols = []
                for key, digits in fields:
                    c = cell(rs, key, preset.metric, evaluation)
                    ours = fmt(c and c[which], digits)
                    if which == "best" and c is not None and key == "total":
                        ours += f" (seed {c['best_seed']})"
                    elif key == "total":
                        ours += _seeds_note(c, budget)
                    cols += [ours, fmt(p and p[key], digits)]
                out.append(f"| {task} | {METHOD_NAMES[method]} | " + " | ".join(cols) + " |")
        out.append("")
    return out
