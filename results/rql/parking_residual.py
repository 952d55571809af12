"""One parking-boundary residual SAC run from a prior, evaluated like the suite (README
"parking-boundary at scale"). Arguments: prior directory, steps, seed, output directory, optional
JSON of SACConfig overrides (keys "omega_prime" / "alpha_hat" set the coefficients instead of the
task's 0.05 / 0.05). Prints one JSON line with the settings and the 50-episode evaluation.
"""

import json
import sys
import time

import torch

from tailor.experiments import run

torch.set_num_threads(1)
prior, steps, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
# the prior's network and optimiser settings (parking_prior.py at the 60k scale), no hindsight
# replay, a warm start with omega' x 10
cfg = {"learning_starts": 1000, "train_freq": 1, "gamma": 0.95, "hidden": [256, 256, 256],
       "batch_size": 256, "critic_lr": 1e-3, "her_k": 0, "log_interval": 5000}  # fmt: skip
cfg.update(extra)
t = time.perf_counter()
run.customize("parking-boundary", "sac", prior, steps, seed, out, **cfg)
wall = time.perf_counter() - t
print("train", wall, flush=True)
ev = run.evaluate(out, episodes=50, seed=1000)
keys = ("total", "basic", "addon", "statistic", "success_rate", "length")
print(json.dumps({"out": out, "prior": prior, "steps": steps, "seed": seed, **cfg,
                  "train_wall_s": wall, **{k: ev[k] for k in keys}}), flush=True)  # fmt: skip
