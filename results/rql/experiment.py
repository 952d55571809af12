"""Prior vs residual customization vs from-scratch on the full reward, 3 seeds (results/rql).

Usage (from the repository root, one thread):
    OMP_NUM_THREADS=1 .venv/bin/python results/rql/experiment.py dqn   # cartpole-centered
    OMP_NUM_THREADS=1 .venv/bin/python results/rql/experiment.py sac   # mountaincar-noleft
    OMP_NUM_THREADS=1 .venv/bin/python results/rql/experiment.py mcts  # cartpole, DQN priors
Writes runs/ (checkpoints, ignored by git) and results/rql/<algo>_results.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from tailor.rql import run

torch.set_num_threads(1)
ALGO = sys.argv[1]
SEEDS = (0, 1, 2)
EPISODES = 50
ROOT = Path("runs/rql")
OUT = Path("results/rql")
SETTINGS = {
    "dqn": dict(task="cartpole-centered", prior_steps=30_000, custom_steps=15_000,
                config={"train_freq": 2}),
    "sac": dict(task="mountaincar-noleft", prior_steps=15_000, custom_steps=8_000,
                config={}),
}


def record(rows, name, seed, path, wall, episodes=EPISODES):
    ev = run.evaluate(path, episodes=episodes, seed=1000)
    ev.pop("per_episode")
    rows.append({**ev, "path": ev["policy"], "policy": name, "seed": seed, "train_wall_s": wall})
    print(name, seed, f"total {ev['total']['mean']:.1f} basic {ev['basic']['mean']:.1f} "
          f"addon {ev['addon']['mean']:.2f} success {ev['success_rate']:.2f} "
          f"len {ev['length']['mean']:.0f} train {wall:.0f}s eval {ev['wall_s']:.0f}s",
          flush=True)


def main() -> None:
    rows: list[dict] = []
    if ALGO == "mcts":
        episodes = int(sys.argv[2]) if len(sys.argv) > 2 else 3
        for seed in SEEDS:
            prior = ROOT / f"dqn/prior_s{seed}"
            out = run.customize("cartpole-centered", "mcts", prior, 0, seed,
                                ROOT / f"mcts/s{seed}")
            record(rows, "residual MCTS", seed, out, 0.0, episodes)
    else:
        s = SETTINGS[ALGO]
        for seed in SEEDS:
            base = ROOT / ALGO
            t = time.perf_counter()
            prior = run.train_prior(s["task"], ALGO, s["prior_steps"], seed,
                                    base / f"prior_s{seed}", **s["config"])
            record(rows, "prior", seed, prior, time.perf_counter() - t)
            t = time.perf_counter()
            cust = run.customize(s["task"], ALGO, prior, s["custom_steps"], seed,
                                 base / f"residual_s{seed}", **s["config"])
            record(rows, "residual", seed, cust, time.perf_counter() - t)
            t = time.perf_counter()
            full = run.train_prior(s["task"], ALGO, s["prior_steps"], seed,
                                   base / f"full_s{seed}", method="full", **s["config"])
            record(rows, "full (scratch)", seed, full, time.perf_counter() - t)
    (OUT / f"{ALGO}_results.json").write_text(json.dumps(rows, indent=1) + "\n")




def table(algos: list[str]) -> str:
    """Markdown rows: mean over seeds of each seed's 50-episode means (+- std over seeds)."""
    import numpy as np

    lines = ["| task | policy | total | basic | add-on | statistic | success | length | "
             "train wall s/seed |", "|---|---|---|---|---|---|---|---|---|"]
    for algo in algos:
        f = OUT / f"{algo}_results.json"
        if not f.exists():
            continue
        rows = json.loads(f.read_text())
        for r in rows:  # first runs stored the path under "policy": name it from the path
            base = Path(r.get("path", r["policy"])).name.rsplit("_s", 1)[0]
            r["policy"] = {"prior": "prior", "residual": "residual",
                           "full": "full (scratch)"}.get(base, r["policy"])
        for name in dict.fromkeys(r["policy"] for r in rows):
            sel = [r for r in rows if r["policy"] == name]

            def ms(key, sub="mean", sel=sel):
                v = np.array([r[key][sub] if sub else r[key] for r in sel])
                return f"{v.mean():.2f} ± {v.std():.2f}"
            lines.append(
                f"| {sel[0]['task']} ({algo}) | {name} | {ms('total')} | {ms('basic')} | "
                f"{ms('addon')} | {ms('statistic')} | {ms('success_rate', None)} | "
                f"{ms('length')} | {np.mean([r['train_wall_s'] for r in sel]):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if ALGO == "table":
        print(table(["dqn", "mcts", "sac"]))
    else:
        main()
