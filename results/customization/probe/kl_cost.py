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
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gaits import gait  # results/customization/gaits.py: the same rollouts


def per_step(policy_path: str, prior_path: str = "priors/halfcheetah") -> dict[str, float]:
    g = gait(policy_path, prior_path)
    return {
        "kl_to_prior": g["KL to prior / step"],
        "addon": g["add-on / step"],
        "basic": g["basic / step"],
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
