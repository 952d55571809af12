"""parking-boundary: residual SAC settings on the seed-0 prior (README "parking-boundary").

Usage (after `experiment.py parking` wrote runs/rql/parking/prior_s0):
    OMP_NUM_THREADS=1 .venv/bin/python results/rql/parking_tradeoff.py [name ...]
Each run customizes the seed-0 prior with residual SAC (the suite's residual settings plus the
variant's) and evaluates 50 episodes (reset seeds 1000..1049, as the suite does). Prints one line
per run; the lines of the committed run are in parking_tradeoff.log.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from tailor.envs import Task, get_task, register_task
from tailor.experiments import run

torch.set_num_threads(1)
PRIOR = "runs/rql/parking/prior_s0"
# experiment.py SUITES["parking"]: config + custom_config (log_interval only adds progress lines)
BASE = {
    "learning_starts": 500,
    "warm_start_steps": 1000,
    "her_k": 0,
    "explore_hold": 5,
    "train_freq": 1,
    "gamma": 0.95,
    "hidden": [128, 128],
    "log_interval": 4000,
}
# name: overrides (omega_prime / alpha_hat default to the task's 0.05 / 0.05; steps 8000)
RUNS = {
    "om25": {"omega_prime": 0.25, "alpha_hat": 0.05},
    "cw3k": {"critic_warmup_steps": 3000},
    "om10cw": {"omega_prime": 0.1, "alpha_hat": 0.05, "critic_warmup_steps": 3000},
    "cw20k": {"critic_warmup_steps": 3000, "steps": 20000},
    "om25cw": {"omega_prime": 0.25, "alpha_hat": 0.05, "critic_warmup_steps": 3000},
    # omega' = alpha_hat: the customized policy is the prior reweighted by exp(Q_R / alpha_hat)
    # (the soft-optimal policy of omega r + r_R, omega = omega' / 0.05), not a power of it
    "eq10": {"omega_prime": 0.1, "alpha_hat": 0.1},
    "eq25": {"omega_prime": 0.25, "alpha_hat": 0.25},
    # diagnostic: the same residual run with the add-on reward replaced by 0, whose exact
    # solution is the prior itself (evaluated on parking-boundary's rewards and success rule)
    "zero": {"task": "parking-zero-addon", "omega_prime": 0.05, "alpha_hat": 0.05},
    # the critics start at Q_R = 0 (SACConfig.critic_zero_init)
    "zero-z": {
        "task": "parking-zero-addon",
        "omega_prime": 0.05,
        "alpha_hat": 0.05,
        "critic_zero_init": True,
    },
    "z": {"critic_zero_init": True},
    # a 10x smaller actor step size (3e-5)
    "lr": {"actor_lr": 3e-5},
    "om10lr": {"omega_prime": 0.1, "alpha_hat": 0.05, "actor_lr": 3e-5},
    "eq25lr": {"omega_prime": 0.25, "alpha_hat": 0.25, "actor_lr": 3e-5},
    "zero-lr": {
        "task": "parking-zero-addon",
        "omega_prime": 0.05,
        "alpha_hat": 0.05,
        "actor_lr": 3e-5,
    },
}
register_task(
    Task(
        name="parking-zero-addon",
        env_id=get_task("parking-boundary").env_id,
        addon=lambda env, action, info: 0.0,
        statistic=get_task("parking-boundary").statistic,
        relabel_goal=get_task("parking-boundary").relabel_goal,
    )
)

for name in sys.argv[1:] or list(RUNS):
    kw = RUNS[name]
    cfg = {**BASE, **kw}
    steps = cfg.pop("steps", 8000)
    task = cfg.pop("task", "parking-boundary")
    t = time.perf_counter()
    out = run.customize(task, "sac", PRIOR, steps, 0, f"runs/rql/tune_parking/{name}",
                        **cfg)  # fmt: skip
    wall = time.perf_counter() - t
    ev = run.evaluate(out, "parking-boundary", episodes=50, seed=1000)
    ev.pop("per_episode")
    keys = ("total", "basic", "addon", "success_rate", "length")
    print(name, kw, round(wall), json.dumps({k: ev[k] for k in keys}), flush=True)
