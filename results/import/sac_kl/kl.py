"""KL per step of a customized SAC actor to its prior, on the customized policy's own states.

Usage: PYTHONPATH=src python results/import/sac_kl/kl.py ZOO_ZIP TASK RUN_DIR...
(per run: 1 episode from env seed 123 acting with the actor's mean; at each state 64 actions
sampled from the customized actor, torch seed 0: the mean of log pi_theta - log pi_prior)
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from tailor.envs import get_task, make_env
from tailor.experiments.prior_adapters import read_prior, sac_prior
from tailor.policyfile import load_rql_policy, resolve_policy_path, sac_actor


def main() -> None:
    zoo, name, *runs = sys.argv[1:]
    task = get_task(name)
    prior, _, info = sac_prior(read_prior(zoo, {}), task)
    for run in runs:
        torch.manual_seed(0)
        meta, tensors = load_rql_policy(resolve_policy_path(run))
        actor = sac_actor(meta, tensors)
        env = make_env(task)
        obs, _ = env.reset(seed=123)
        kls = []
        with torch.no_grad():
            for _ in range(1000):
                o = torch.as_tensor(obs, dtype=torch.float32)[None].expand(64, -1)
                a, logp = actor.sample(o)
                kls.append(float((logp - prior.log_prob(o, a)).mean()))
                obs, _, term, trunc, _ = env.step(actor.mean_action(o[:1])[0].numpy())
                if term or trunc:
                    break
        kl = float(np.mean(kls))
        print(f"{run}: KL/step {kl:.4f} ({kl / actor.act_dim:.4f} per action dimension) over "
              f"{len(kls)} steps; prior temperature {info['prior_alpha']:.4g}")  # fmt: skip


if __name__ == "__main__":
    main()
