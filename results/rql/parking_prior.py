"""One parking-boundary SAC prior with chosen settings, evaluated like the suite (README
"parking-boundary"). The committed figure (60k steps, no hindsight replay, seed 0: success 0.78,
train 1645 s with other jobs on the 2 cores) came from:
    OMP_NUM_THREADS=1 .venv/bin/python results/rql/parking_prior.py 60000 0 runs/rql/noher60k
Arguments: steps, seed, output directory, optional JSON of SACConfig overrides (the key
"alpha" sets the prior's temperature instead of the task's 0.05).
"""

import json
import sys
import time

import torch

from tailor.experiments import run

torch.set_num_threads(1)
steps, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
# the parking suite's prior settings without hindsight replay (experiment.py SUITES["parking"])
cfg = {"learning_starts": 2000, "explore_hold": 5, "train_freq": 1, "gamma": 0.95,
       "hidden": [128, 128], "log_interval": 5000}  # fmt: skip
alpha = extra.pop("alpha", None)
cfg.update(extra)
t = time.perf_counter()
run.train_prior("parking-boundary", "sac", steps, seed, out, alpha=alpha, **cfg)
print("train", time.perf_counter() - t, flush=True)
ev = run.evaluate(out, episodes=50, seed=1000)
keys = ("total", "basic", "addon", "statistic", "success_rate", "length")
print(json.dumps({"out": out, "alpha": alpha, **cfg, **{k: ev[k] for k in keys}}), flush=True)
