"""The HalfCheetah trade-off, basic against add-on return, of every evaluated policy we have.

    .venv/bin/python results/customization/tradeoff.py   (from the repository root)

Reads the evaluation JSONs (20 deterministic episodes each, seed 0) of results/customization/
(the prior, Residual PPO at three omega', the one-knob probes of probe/run.sh and probe2/run.sh,
the omega' = alpha_hat = beta runs of probe3/run.sh), the local sweep's
Greedy / KL / Residual customizations (300k steps, 10 episodes x 2 seeds) and, when they exist,
the paper-budget sweep's jobs (results/sweeps/paper: 5M steps, 100 episodes, last and best
checkpoint), and writes results/customization/tradeoff.png. Points are means over episodes.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path("results/customization")
TASK = "halfcheetah-hindleg"


def point(path: Path) -> tuple[float, float] | None:
    ev = json.loads(path.read_text())
    ev = ev.get("eval", ev)
    return (ev["basic"]["mean"], ev["addon"]["mean"]) if "basic" in ev else None


def main() -> None:
    groups: dict[str, list[tuple[str, tuple[float, float]]]] = {}
    singles = {
        "prior": "prior.json",
        "Residual ω'=0.17 (paper), 2M": "paper-coefficients-2m.json",
        "Residual ω'=0.1, α̂=0.08, 600k": "demo-coefficients-600k.json",
        "Residual ω'=0.05, α̂=0.04, 614k": "small-coefficients-614k.json",
    }
    for label, name in singles.items():
        if (HERE / name).exists():
            groups.setdefault(label, []).append((label, point(HERE / name)))
    for f in sorted((HERE / "probe").glob("*.json")):
        if not f.stem.startswith("hopper"):
            groups.setdefault("Residual 1M, one knob each (probe/)", []).append((f.stem, point(f)))
    for f in sorted((HERE / "probe2").glob("*.json")):
        groups.setdefault("Residual 2M, one knob each (probe2/)", []).append((f.stem, point(f)))
    for f in sorted((HERE / "probe3").glob("beta*.json")):
        groups.setdefault("Residual 5M, ω'=α̂=β (probe3/)", []).append((f.stem, point(f)))
    budgets = {"local": ("300k", "150k from scratch"), "paper": ("5M", "5M from scratch")}
    for sweep, (custom_steps, scratch_steps) in budgets.items():
        for method in ("greedy", "kl", "residual", "full"):
            steps = scratch_steps if method == "full" else custom_steps
            for f in sorted(Path(f"results/sweeps/{sweep}/{TASK}").glob(f"{method}-*/result.json")):
                r = json.loads(f.read_text())
                label = f"{method} ({sweep} sweep, {steps})"
                groups.setdefault(label, []).append((f.parent.name, point(f)))
                if r.get("eval_best"):
                    ev = r["eval_best"]
                    best = (ev["basic"]["mean"], ev["addon"]["mean"])
                    groups.setdefault(f"{method} best checkpoint ({sweep})", []).append(("", best))
    # left: everything; right: the region around the prior, where the customizations end
    fig, axes = plt.subplots(1, 2, figsize=(14, 6), dpi=110)
    markers = "o*sDv^<>phHX"
    for ax, zoom in zip(axes, (False, True), strict=True):
        for (label, pts), m in zip(groups.items(), markers * 3, strict=False):
            xs = [p[1][0] for p in pts if p[1]]
            ys = [p[1][1] for p in pts if p[1]]
            ax.scatter(xs, ys, marker=m, s=90 if label == "prior" else 40, label=label)
            if zoom and label.startswith(("Residual 1M, one knob", "Residual 2M", "Residual 5M")):
                for name, p in pts:
                    ax.annotate(name, p, fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("basic return (HalfCheetah's own reward)")
        ax.set_ylabel("add-on return (−|θ_bthigh| per step)")
        ax.grid(alpha=0.3)
        if zoom:
            ax.set_xlim(6800, 7800)
            ax.set_ylim(-460, -375)
            ax.set_title("zoom: around the prior, where the customizations end")
        else:
            ax.set_title("halfcheetah-hindleg: customization from the shipped prior")
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(HERE / "tradeoff.png")
    print(f"wrote {HERE / 'tradeoff.png'}")


if __name__ == "__main__":
    main()
