"""What moving away from the prior costs in Residual PPO's own reward, per step.

    OMP_NUM_THREADS=1 .venv/bin/python results/customization/probe/kl_cost.py RUN_DIR [RUN_DIR ...]

For each customized policy (run directories of probe/run.sh) and for the prior itself: 5
deterministic episodes (seeds 0-4) of halfcheetah-hindleg; on the states the policy visits, the
mean per step of the add-on reward, of the basic reward and of KL(pi_theta(.|s) || pi_prior(.|s))
(Gaussians: exact). In Residual PPO's reward r_R + omega' log pi_prior - alpha_hat log pi_theta,
the expected prior and entropy terms per step are -omega' KL(pi || pi_prior) + (omega' -
alpha_hat) E[log pi]: a policy that moves KL nats per step away from the prior pays about
omega' * KL per step, to be bought with add-on reward.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from tailor.envs import VecEnv
from tailor.nets import gaussian_kl
from tailor.priors import load_prior

TASK = "halfcheetah-hindleg"


def per_step(policy_path: str, prior_path: str = "priors/halfcheetah") -> dict[str, float]:
    policy, prior = load_prior(policy_path), load_prior(prior_path)
    kls, basic, addon = [], [], []
    with VecEnv(TASK, 5, seed=0) as env:
        obs = env.reset()
        for _ in range(1000):
            o = torch.from_numpy(obs)
            with torch.no_grad():
                mean, log_std = policy.distribution(o)
                pmean, plog_std = prior.distribution(o)
                kls.append(gaussian_kl(mean, log_std, pmean, plog_std).numpy())
            step = env.step(mean.numpy())
            basic.append(step.basic)
            addon.append(step.addon)
            obs = step.obs
    return {
        "kl_to_prior": float(np.mean(kls)),
        "addon": float(np.mean(addon)),
        "basic": float(np.mean(basic)),
    }


def main() -> None:
    base = per_step("priors/halfcheetah")
    print("| policy | KL(pi||prior) per step | add-on per step | basic per step |")
    print("|---|---:|---:|---:|")
    print(f"| prior | {base['kl_to_prior']:.4f} | {base['addon']:.4f} | {base['basic']:.3f} |")
    for path in sys.argv[1:]:
        r = per_step(path)
        print(f"| {path} | {r['kl_to_prior']:.4f} | {r['addon']:.4f} | {r['basic']:.3f} |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
