"""Bring your own SAC prior: an SB3 SAC MountainCarContinuous-v0 policy customized with
``tailor customize --algo sac`` (residual SAC) on ``mountaincar-noleft``.

``mountaincar-noleft`` runs gymnasium's ``MountainCarContinuous-v0`` itself (observation
``(position, velocity)``, action ``[-1, 1]``, gymnasium's reward as the basic reward, 999 steps),
so an SB3 policy trained on that env id fits it as it is; the add-on reward is ``-0.1`` per left
push (``a < 0``).

Steps (every tailor command is printed before it runs):

1. train SB3 SAC on MountainCarContinuous-v0 with RL-Zoo's SAC settings for this env
   (``ent_coef`` 0.1, ``train_freq`` = ``gradient_steps`` = 32, ``gamma`` 0.9999, ``tau`` 0.01,
   ``learning_starts`` 0, ``net_arch`` [64, 64], buffer 50k) except two things: RL-Zoo explores with
   gSDE, which tailor does not import for SAC, so exploration here is Ornstein-Uhlenbeck action
   noise (sigma 0.5, as RL-Zoo's TD3 entry uses), and the batch is 256 (RL-Zoo: 512) to fit one
   core; saved with ``model.save`` to ``<out>/sb3/sac_mountaincar.zip``;
2. ``tailor inspect`` it against the task;
3. evaluate the prior with SB3 itself (``model.predict(deterministic=True)``) and with
   ``tailor evaluate`` (the imported prior), ``tailor customize --algo sac`` (the coefficients
   come from the prior's temperature, SB3's ``ent_coef``, unless ``--omega``/``--omega-prime``/
   ``--alpha-hat`` are given), then ``tailor evaluate`` the customized policy;
4. write ``<out>/summary[-<tag>].json`` with the commands and the evaluations.

Usage::

    python results/import/sb3_sac_mountaincar.py --out /tmp/imp/mc --prior-steps 20000 \\
        --custom-steps 30000 --episodes 20
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ENV_ID = "MountainCarContinuous-v0"
TASK = "mountaincar-noleft"


def train_prior(path: Path, steps: int, seed: int) -> Path:
    """SB3 SAC (module docstring for the settings); returns the zip's path."""
    import numpy as np
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise

    torch.set_num_threads(1)
    model = SAC(
        "MlpPolicy",
        ENV_ID,
        learning_rate=3e-4,
        buffer_size=50_000,
        batch_size=256,
        ent_coef=0.1,
        train_freq=32,
        gradient_steps=32,
        gamma=0.9999,
        tau=0.01,
        learning_starts=0,
        action_noise=OrnsteinUhlenbeckActionNoise(np.zeros(1), 0.5 * np.ones(1)),
        policy_kwargs={"net_arch": [64, 64]},
        seed=seed,
        device="cpu",
    )
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    print(f"SB3 SAC: {steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def sb3_evaluate(path: Path, episodes: int, seed: int) -> dict[str, float]:
    """The SB3 model itself, deterministic: mean/std of the env's return, success rate."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import SAC

    model = SAC.load(path, device="cpu")
    env = gym.make(ENV_ID)
    returns, successes = [], 0
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done, terminated = 0.0, False, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        successes += bool(terminated)
    return {
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "success_rate": successes / episodes,
    }


def tailor(*args: str) -> None:
    cmd = [sys.executable, "-m", "tailor.cli", *args]
    print("$ tailor " + shlex.join(args), flush=True)
    subprocess.run(cmd, check=True)


def _coefficient_flags(args: argparse.Namespace) -> tuple[list[str], str]:
    flags: list[str] = []
    tag = ""
    for flag, value in (
        ("--omega", args.omega),
        ("--omega-prime", args.omega_prime),
        ("--alpha-hat", args.alpha_hat),
    ):
        if value is not None:
            flags += [flag, str(value)]
            tag += f"-{flag.strip('-')}{value}"
    return flags, tag


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--prior-steps", type=int, default=20_000)
    p.add_argument("--custom-steps", type=int, default=30_000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--omega", type=float, help="weight of the prior's task (default 1)")
    p.add_argument("--omega-prime", type=float, help="default: omega * the prior's temperature")
    p.add_argument("--alpha-hat", type=float, help="default: the prior's temperature")
    args = p.parse_args()
    coefs, tag = _coefficient_flags(args)
    zip_path = args.out / "sb3" / "sac_mountaincar.zip"  # not --out itself: runs go beside it
    if not zip_path.is_file():
        train_prior(zip_path, args.prior_steps, args.seed)
    tailor("inspect", str(zip_path), "--task", TASK, "--json", str(args.out / "inspect.json"))
    ev = ("--task", TASK, "--episodes", str(args.episodes), "--seed", "1")
    if not (args.out / "eval_prior.json").is_file():
        sb3_result = sb3_evaluate(zip_path, args.episodes, seed=1)
        print(f"SB3's own evaluation (basic return): {sb3_result}", flush=True)
        (args.out / "eval_prior_sb3.json").write_text(json.dumps(sb3_result, indent=2) + "\n")
        tailor(
            "evaluate", "--policy", str(zip_path), *ev, "--json", str(args.out / "eval_prior.json")
        )
    custom = args.out / f"residual-sac{tag}"
    t0 = time.perf_counter()
    tailor(
        "customize", "--algo", "sac", "--task", TASK, "--prior", str(zip_path), *coefs,
        "--steps", str(args.custom_steps), "--seed", str(args.seed), "--out", str(custom),
        "--no-progress", "--overwrite",
    )  # fmt: skip
    custom_wall = time.perf_counter() - t0
    custom_json = args.out / f"eval_custom{tag}.json"
    tailor("evaluate", "--policy", str(custom), *ev, "--json", str(custom_json))
    policy = json.loads((custom / "policy.json").read_text())
    summary = {
        "prior_steps": args.prior_steps,
        "custom_steps": args.custom_steps,
        "custom_wall_s": round(custom_wall, 1),
        "episodes": args.episodes,
        "seed": args.seed,
        "command": shlex.join(sys.argv),
        "coefficients": policy["coefficients"],
        "coefficient_sources": policy["coefficient_sources"],
        "prior_alpha": policy["prior_alpha"],
        "prior_sb3": json.loads((args.out / "eval_prior_sb3.json").read_text()),
    }
    keys = ("total", "basic", "addon", "statistic", "success_rate", "length")
    for name, file in (("prior", args.out / "eval_prior.json"), ("custom", custom_json)):
        result = json.loads(file.read_text())
        summary[name] = {k: result[k] for k in keys if k in result}
    (args.out / f"summary{tag}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
