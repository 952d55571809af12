"""Cost of residual MCTS on highway-keepright (README "Residual MCTS on the highway task").

Usage (after `experiment.py highway` wrote runs/rql/highway/prior_s0):
    OMP_NUM_THREADS=1 .venv/bin/python results/rql/mcts_highway_probe.py 0 1 5
Arguments: seed, episodes, steps per episode. Prints the evaluation wall time in seconds and the
returns of those steps. The committed figure (211 s for 5 steps) was measured with 3 other jobs
on the 2 cores.
"""

import json
import sys
import time

import torch

from tailor.experiments import run

torch.set_num_threads(1)
seed, episodes, steps = (int(x) for x in sys.argv[1:4])
out = run.customize("highway-keepright", "mcts", f"runs/rql/highway/prior_s{seed}", 0, seed,
                    f"runs/rql/mcts_hw/s{seed}", log=None)  # fmt: skip
t = time.perf_counter()
ev = run.evaluate(out, episodes=episodes, seed=1000, max_steps=steps)
keys = ("total", "basic", "addon", "success_rate", "length")
print(time.perf_counter() - t, json.dumps({k: ev[k] for k in keys}), flush=True)
