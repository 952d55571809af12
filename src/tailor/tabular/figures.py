"""The averaging experiment (``tailor mdvi``): compute it to JSON, then plot from the JSON only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tailor.errors import TailorError
from tailor.output import write_figure, write_json
from tailor.tabular.mdp import garnet
from tailor.tabular.mdvi import approximate_vi, md_vi

__all__ = ["MdviSettings", "mdvi_experiment", "plot_mdvi", "save_json"]


@dataclass(frozen=True)
class MdviSettings:
    """The averaging experiment's settings (recorded as its output's ``"settings"``).

    Attributes:
        lams: MD-VI's KL coefficients, one curve each (positive).
        n_states, n_actions, branching, gamma: the Garnet MDP (its seed is ``seed``).
        noise_std: std of the i.i.d. Gaussian noise on every ``(s, a)`` at each iteration.
        iterations: ``K``, iterations per scheme.
        seeds: number of noise seeds, ``seed .. seed+seeds-1`` (>= 1).
        seed: the Garnet's seed and the first noise seed.
    """

    lams: tuple[float, ...] = (0.1, 1.0, 10.0)
    n_states: int = 30
    n_actions: int = 4
    branching: int = 3
    gamma: float = 0.9
    noise_std: float = 1.0
    iterations: int = 300
    seeds: int = 5
    seed: int = 0


def mdvi_experiment(settings: MdviSettings | None = None) -> dict:
    """``||q* - q_{pi_k}||_inf`` for approximate VI and MD-VI(lam, tau=0) on one Garnet.

    Every scheme sees the same noise draws for a given noise seed (``seed .. seed+seeds-1``).

    Args:
        settings: the experiment (:class:`MdviSettings`; ``None``: its defaults).

    Returns:
        A JSON-ready dict: the settings, ``"vi"`` errors ``[seeds][K+1]``, and for each lam
        ``"mdvi"[str(lam)] = {"errors": [seeds][K+1], "bound": [seeds][K+1]}``.
    """
    cfg = settings if settings is not None else MdviSettings()
    if not cfg.lams or any(lam <= 0 for lam in cfg.lams):
        raise TailorError(f"lams must be positive numbers, got {cfg.lams}")
    if cfg.seeds < 1:
        raise TailorError(f"seeds must be >= 1, got {cfg.seeds}")
    mdp = garnet(cfg.n_states, cfg.n_actions, cfg.branching, cfg.gamma, seed=cfg.seed)
    noise_seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    k, noise = cfg.iterations, cfg.noise_std
    out: dict = {
        "settings": {**asdict(cfg), "lams": list(cfg.lams)},
        "vi": [approximate_vi(mdp, k, noise, s).errors.tolist() for s in noise_seeds],
        "mdvi": {},
    }
    for lam in cfg.lams:
        runs = [md_vi(mdp, lam, 0.0, k, noise, s) for s in noise_seeds]
        out["mdvi"][str(lam)] = {
            "errors": [h.errors.tolist() for h in runs],
            # JSON has no NaN: the bound is undefined at k = 0, stored as null.
            "bound": [[None if np.isnan(b) else float(b) for b in h.bound] for h in runs],
        }
    return out


def plot_mdvi(data: dict, out: str | Path) -> Path:
    """Draw the averaging figure from :func:`mdvi_experiment`'s output (mean over noise seeds,
    shaded min-max), with each MD-VI curve's bound dashed. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = data["settings"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    k = np.arange(st["iterations"] + 1)

    def band(errors: list, label: str, color: str | None) -> str:
        e = np.asarray(errors, dtype=float)
        (line,) = ax.plot(k, e.mean(axis=0), label=label, color=color, lw=1.8)
        ax.fill_between(k, e.min(axis=0), e.max(axis=0), color=line.get_color(), alpha=0.15)
        return line.get_color()

    band(data["vi"], "approximate VI", "black")
    for lam, run in data["mdvi"].items():
        color = band(run["errors"], f"MD-VI  λ={lam}", None)
        bound = np.array([[np.nan if b is None else b for b in row] for row in run["bound"]])
        ax.plot(k, bound.mean(axis=0), ls="--", lw=1.0, color=color, label=f"bound  λ={lam}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration k")
    ax.set_ylabel(r"$\|q^* - q^{\pi_k}\|_\infty$")
    ax.set_title(
        f"KL regularization averages errors: Garnet S={st['n_states']}, A={st['n_actions']}, "
        f"γ={st['gamma']}, noise σ={st['noise_std']} ({st['seeds']} seeds)",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    try:
        return write_figure(fig, out)
    finally:
        plt.close(fig)


def save_json(data: dict, path: str | Path) -> Path:
    return write_json(path, data, indent=None)
