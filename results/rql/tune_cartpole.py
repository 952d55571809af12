"""How the cartpole-centered residual settings were chosen (seed 0 only; README "Tuning").

Usage (after `experiment.py dqn` wrote runs/rql/dqn/prior_s0):
    OMP_NUM_THREADS=1 .venv/bin/python results/rql/tune_cartpole.py [name ...]
Each run customizes the seed-0 prior with residual soft DQN and evaluates 20 episodes (reset
seeds 1000..1019, i.e. the first 20 of the final evaluation). Names: a..l as in the README.
"""

from __future__ import annotations

import sys
import time

import torch

from tailor.experiments import run

torch.set_num_threads(1)
PRIOR = "runs/rql/dqn/prior_s0"
BASE = {"lr": 5e-4, "batch_size": 128, "hidden": [128, 128], "target_update_interval": 1000}
EPS = {"epsilon_start": 0.1, "epsilon_end": 0.1}
EPS3 = {"epsilon_start": 0.3, "epsilon_end": 0.3, "target_update_interval": 100}
# name: (steps, omega', alpha_hat, extra config)
RUNS = {
    "a": (20_000, 0.05, 0.05, {}),
    "b": (20_000, 0.025, 0.05, {}),
    "c": (20_000, 0.01, 0.05, {}),
    "d": (20_000, 0.01, 0.01, {}),
    "e": (20_000, 0.005, 0.05, {}),
    "f": (20_000, 0.005, 0.005, {}),
    "g": (30_000, 0.005, 0.05, EPS),
    "h": (30_000, 0.05, 0.05, EPS),
    "k": (30_000, 0.05, 0.05, EPS3),
    "l": (30_000, 0.02, 0.05, EPS3),
}

for name in sys.argv[1:] or list(RUNS):
    steps, omega, alpha_hat, extra = RUNS[name]
    t = time.perf_counter()
    out = run.customize(
        "cartpole-centered", "dqn", PRIOR, steps, 0, f"runs/rql/tune/{name}",
        omega_prime=omega, alpha_hat=alpha_hat, log=None, **{**BASE, **extra},
    )  # fmt: skip
    wall = time.perf_counter() - t
    ev = run.evaluate(out, episodes=20, seed=1000)
    print(
        f"{name}: {steps} steps omega' {omega} alpha_hat {alpha_hat} {extra} train {wall:.0f}s "
        f"total {ev['total']['mean']:.1f} basic {ev['basic']['mean']:.1f} addon "
        f"{ev['addon']['mean']:.2f} success {ev['success_rate']:.2f}",
        flush=True,
    )
