"""Wall time per real step of residual MCTS on cartpole-centered: sequential vs batched search.

Usage (after `experiment.py dqn`, which writes the prior): OMP_NUM_THREADS=1 .venv/bin/python
results/rql/mcts_speed.py. Both searches use the paper's settings (150 simulations, horizon 6,
gamma 0.8) with omega' = 0.02, tau = 0.05 and act from the same prior (seed 0).
"""

from __future__ import annotations

import time

from tailor.algos.mcts import (
    BatchedResidualMCTS,
    MCTSConfig,
    ResidualMCTS,
    TaskModel,
    batch_model,
    numpy_log_prior,
)
from tailor.envs import make_env
from tailor.experiments import run
from tailor.policyfile import qnet_from

meta, tensors = run.load_policy("runs/rql/dqn/prior_s0")
log_prior = numpy_log_prior(qnet_from(tensors, "q.", meta), 0.05)
cfg = MCTSConfig(omega_prime=0.02, tau=0.05)
env = make_env("cartpole-centered")
model = TaskModel("cartpole-centered")
sequential = ResidualMCTS(model, log_prior, cfg)
batched = BatchedResidualMCTS(batch_model("cartpole-centered"), log_prior, cfg)


def act_sequential(obs, env):
    model.sync(env)
    return sequential.act(obs)


for name, act, n in (("sequential", act_sequential, 40), ("batched", batched.act, 400)):
    obs, _ = env.reset(seed=1000)
    t0 = time.perf_counter()
    for _ in range(n):
        obs, *_ = env.step(act(obs, env))
    print(f"{name}: {(time.perf_counter() - t0) / n * 1e3:.1f} ms per real step ({n} steps)")
