"""``tailor frontier``: what each unit of the new requirement costs in the old skill.

A few customizations of one prior side by side, each holding a different KL to the prior per step
(``kl_target`` of PPO, or of residual SAC for a tanh-squashed prior: the adaptive controller
scales ``omega'`` and ``alpha_hat`` together), or, for a Q-network / categorical prior (residual
soft DQN, which holds no KL target), each with a different basic-task weight ``omega``; run as
one sweep (local worker processes or Ray, resumable). Each point is evaluated on the
add-on return, the basic return (the task's own reward, which tailor never trains on) and the KL
to the prior per step the run held (``E[log pi_theta - log pi_prior]`` over its last rollouts);
the prior itself is the point at KL 0. The *knee* is the setting that gains the most add-on
return among those keeping at least :data:`KEEP` of the prior's basic return (or, where nothing
keeps it, the point farthest from the chord between the two ends of the frontier).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tailor.checkpoint import POLICY_JSON
from tailor.errors import TailorError
from tailor.experiments.presets import Job
from tailor.experiments.sweep import load_results

__all__ = [
    "DEFAULT_KL_PER_DIM",
    "DEFAULT_OMEGAS",
    "KEEP",
    "frontier_jobs",
    "frontier_points",
    "frontier_table",
    "held_kl",
    "keeps_basic",
    "knee",
    "omega_jobs",
    "plot_frontier",
    "setting_name",
]

DEFAULT_KL_PER_DIM = (0.01, 0.03, 0.1, 0.3)  # nats per step and action dimension
DEFAULT_OMEGAS = (1.0, 0.5, 0.25, 0.1)  # a Q-network prior's basic-task weights
KEEP = 0.9  # the share of the prior's basic return the knee must keep
_LAST_ROWS = 5  # the KL a run held: the mean over its last iterations


def frontier_jobs(
    task: str,
    prior: str,
    kl_per_dim: Sequence[float],
    act_dim: int,
    base: Job,
) -> list[Job]:
    """The prior's evaluation and one customization per KL target (``kl_per_dim * act_dim``
    nats per step); ``base`` gives seed, steps, episodes, method, the loop (``algo``: PPO, or
    SAC for a tanh-squashed prior), the prior's options and extra config fields."""
    if not kl_per_dim or any(not (math.isfinite(k) and k > 0) for k in kl_per_dim):
        raise TailorError(f"--kl takes positive numbers (nats per step per action dimension), "
                          f"got {list(kl_per_dim)}")  # fmt: skip
    options = base.prior_options
    jobs = [Job("prior", task, "prior", base.seed, 0, base.episodes, prior=prior,
                prior_options=options)]  # fmt: skip
    for k in sorted(set(kl_per_dim)):
        ppo = (*base.ppo, ("kl_target", round(k * act_dim, 9)))
        jobs.append(Job("customize", task, base.method, base.seed, base.steps, base.episodes,
                        prior=prior, ppo=ppo, algo=base.algo, prior_options=options))  # fmt: skip
    return jobs


def omega_jobs(task: str, prior: str, omegas: Sequence[float], base: Job) -> list[Job]:
    """The prior's evaluation and one residual soft DQN customization per basic-task weight
    ``omega`` (``omega' = omega * tau``, ``alpha_hat = tau`` at the prior's temperature ``tau``),
    the frontier of a Q-network or categorical prior, whose loop holds no KL target; ``base``
    as for :func:`frontier_jobs`."""
    if not omegas or any(not (math.isfinite(w) and w > 0) for w in omegas):
        raise TailorError(f"--omega takes positive numbers, got {list(omegas)}")
    options = base.prior_options
    jobs = [Job("prior", task, "prior", base.seed, 0, base.episodes, prior=prior,
                prior_options=options)]  # fmt: skip
    for w in sorted(set(omegas), reverse=True):
        jobs.append(Job("customize", task, "residual", base.seed, base.steps, base.episodes,
                        prior=prior, ppo=(*base.ppo, ("omega", w)), algo=base.algo,
                        prior_options=options))  # fmt: skip
    return jobs


def setting_name(job: Job) -> str:
    """``"kl_target 0.3"`` or ``"omega 0.5"``: what a frontier job varies; ``"prior"``."""
    if job.kind == "prior":
        return "prior"
    given = dict(job.ppo)
    key = "kl_target" if "kl_target" in given else "omega"
    return f"{key} {given[key]:g}"


def held_kl(run: Path) -> float | None:
    """The per-step KL to the prior a run held: ``-entropy - logp_prior`` of a PPO run's last
    rows; a SAC or DQN run's ``kl_held`` (its last measurements, in ``policy.json``)."""
    try:
        with open(run / "metrics.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("logp_prior") and r.get("entropy")]
    except FileNotFoundError:
        return _stats_held_kl(run)
    except OSError:
        return None
    rows = rows[-_LAST_ROWS:]
    if not rows:
        return None
    return sum(-float(r["entropy"]) - float(r["logp_prior"]) for r in rows) / len(rows)


def _stats_held_kl(run: Path) -> float | None:
    try:
        stats = json.loads((run / POLICY_JSON).read_text()).get("train_stats", {})
    except (OSError, ValueError):
        return None
    kl = stats.get("kl_held")
    return float(kl) if isinstance(kl, int | float) and math.isfinite(kl) else None


def frontier_points(jobs: Sequence[Job], out: str | Path) -> list[dict[str, Any]]:
    """One point per finished job, the prior first: ``setting`` (:func:`setting_name`), ``kl``
    (held), ``basic``, ``addon`` (evaluation means) and the run directory."""
    results = load_results(jobs, out)
    points = []
    for job in jobs:
        if job.id not in results:
            continue
        ev = results[job.id]["eval"]
        kl = 0.0 if job.kind == "prior" else held_kl(Path(out) / job.id)
        points.append({"setting": setting_name(job), "kl": kl, "basic": ev["basic"]["mean"],
                       "addon": ev["addon"]["mean"], "run": str(Path(out) / job.id)})  # fmt: skip
    if not points or jobs[0].id not in results:
        raise TailorError(f"no evaluation of the prior in {str(out)!r} yet: run the frontier first")
    return points


def keeps_basic(basic: float, prior_basic: float) -> bool:
    """Whether a basic return loses at most ``1 - KEEP`` of the prior's, measured on its size
    (``prior - basic <= (1 - KEEP) |prior|``): ``basic >= KEEP * prior`` for a positive prior
    return; for a negative one (a cost, e.g. the point mass's -16) ``basic >= (2 - KEEP) *
    prior``, 10% more cost, where ``basic >= KEEP * prior`` would refuse even the prior itself."""
    return basic >= prior_basic * (KEEP if prior_basic >= 0 else 2.0 - KEEP)


def knee(points: Sequence[dict[str, Any]]) -> tuple[int, str]:
    """``(index, rule)`` of the knee among the customizations (``points[0]`` is the prior)."""
    prior, runs = points[0], list(enumerate(points))[1:]
    if not runs:
        raise TailorError("no finished customization on the frontier yet")
    keeping = [(i, p) for i, p in runs if keeps_basic(p["basic"], prior["basic"])]
    if keeping:
        i = max(keeping, key=lambda ip: ip[1]["addon"])[0]
        return i, f"most add-on return while keeping >= {KEEP:.0%} of the prior's basic return"
    # The point farthest above the chord from the prior to the last point, in (KL, add-on)
    # scaled to the unit square.
    kls = [p["kl"] or 0.0 for p in points]
    adds = [p["addon"] for p in points]
    kx, ax = (max(kls) - min(kls)) or 1.0, (max(adds) - min(adds)) or 1.0
    x0, y0 = 0.0, (adds[0] - min(adds)) / ax
    x1, y1 = (kls[-1] - min(kls)) / kx, (adds[-1] - min(adds)) / ax

    def distance(i: int) -> float:
        x, y = (kls[i] - min(kls)) / kx, (adds[i] - min(adds)) / ax
        return (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)

    i = max((i for i, _ in runs), key=distance)
    return i, (f"no setting keeps {KEEP:.0%} of the basic return: the point farthest above the "
               "KL / add-on chord")  # fmt: skip


def frontier_table(points: Sequence[dict[str, Any]], at: int, rule: str) -> str:
    """Markdown: one row per point, the knee marked, each run's cost in basic return per unit of
    add-on gained."""
    prior = points[0]
    lines = [
        "| setting | KL/step held | basic | add-on | basic lost per add-on gained | |",
        "|---|---|---|---|---|---|",
    ]
    for i, p in enumerate(points):
        name = p["setting"]
        kl = "-" if p["kl"] is None else f"{p['kl']:.3f}"
        gained = p["addon"] - prior["addon"]
        lost = prior["basic"] - p["basic"]
        cost = "-" if i == 0 or gained <= 0 else f"{lost / gained:.2f}"
        mark = "**knee**" if i == at else ""
        lines.append(f"| {name} | {kl} | {p['basic']:.1f} | {p['addon']:.1f} | {cost} | {mark} |")
    return "\n".join(lines) + f"\n\nknee: {rule}\n"


def plot_frontier(points: Sequence[dict[str, Any]], at: int, out: str | Path, title: str) -> Path:
    """Two panels: add-on vs KL per step, and add-on vs basic return; the knee circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tailor.experiments.plots import _save

    fig, (ax_kl, ax_basic) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    kls = [p["kl"] or 0.0 for p in points]
    adds = [p["addon"] for p in points]
    basics = [p["basic"] for p in points]
    for ax, xs, label in ((ax_kl, kls, "KL to the prior per step (nats)"),
                          (ax_basic, basics, "basic return (evaluation)")):  # fmt: skip
        ax.plot(xs, adds, "o-", color="tab:blue")
        ax.scatter([xs[0]], [adds[0]], color="black", zorder=3, label="prior")
        ax.scatter([xs[at]], [adds[at]], s=160, facecolors="none", edgecolors="tab:red",
                   zorder=3, label="knee")  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel("add-on return (evaluation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, title, out)
