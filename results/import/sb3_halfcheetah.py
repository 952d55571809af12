"""Bring your own prior, end to end: an SB3 PPO HalfCheetah-v5 prior (RL-Zoo hyperparameters,
VecNormalize) customized with ``tailor customize --method residual`` on halfcheetah-hindleg.

Steps (every command is printed before it runs):

1. train SB3 PPO on HalfCheetah-v5 with RL-Zoo's tuned PPO hyperparameters (the zoo's
   ``hyperparams/ppo.yml`` HalfCheetah entry: ``normalize: true``, 1 env, ``n_steps`` 512,
   ``batch_size`` 64, ``gamma`` 0.98, ``learning_rate`` 2.0633e-05, ``ent_coef`` 0.000401762,
   ``clip_range`` 0.1, ``n_epochs`` 20, ``gae_lambda`` 0.92, ``max_grad_norm`` 0.8, ``vf_coef``
   0.58096, ``log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU,
   net_arch=dict(pi=[256, 256], vf=[256, 256])``; the zoo trains 1M steps) and save it in the
   RL-Zoo layout: ``<out>/ppo/HalfCheetah-v5_1/HalfCheetah-v5.zip`` +
   ``HalfCheetah-v5/vecnormalize.pkl``;
2. ``tailor inspect`` it against the task;
3. evaluate the prior with SB3 itself (``model.predict(deterministic=True)`` on
   ``VecNormalize``-normalized observations, the library's own numbers) and with
   ``tailor evaluate`` (the imported prior), then ``tailor customize --method residual`` (the
   task's coefficients unless ``--omega-prime``/``--alpha-hat``) and ``tailor evaluate`` the
   customized policy;
4. write ``<out>/summary[-<tag>].json`` with the commands and the evaluations.

Usage::

    python results/import/sb3_halfcheetah.py --out runs/import/sb3-halfcheetah \\
        --prior-steps 1000000 --custom-steps 2000000 --episodes 20
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ENV_ID = "HalfCheetah-v5"
TASK = "halfcheetah-hindleg"


def train_prior(run_dir: Path, steps: int, seed: int) -> Path:
    """SB3 PPO with RL-Zoo's HalfCheetah hyperparameters; returns the zip's path."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=seed), gamma=0.98)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=512,
        batch_size=64,
        gamma=0.98,
        learning_rate=2.0633e-05,
        ent_coef=0.000401762,
        clip_range=0.1,
        n_epochs=20,
        gae_lambda=0.92,
        max_grad_norm=0.8,
        vf_coef=0.58096,
        policy_kwargs={
            "log_std_init": -2,
            "ortho_init": False,
            "activation_fn": torch.nn.ReLU,
            "net_arch": {"pi": [256, 256], "vf": [256, 256]},
        },
        seed=seed,
        device="cpu",
    )
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    print(f"SB3 PPO: {steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{ENV_ID}.zip"
    model.save(path)
    (run_dir / ENV_ID).mkdir(exist_ok=True)
    env.save(str(run_dir / ENV_ID / "vecnormalize.pkl"))
    return path


def sb3_evaluate(run_dir: Path, episodes: int, seed: int) -> dict[str, float]:
    """Mean/std of the env's return of the SB3 model itself, deterministic, over ``episodes``."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    model = PPO.load(run_dir / f"{ENV_ID}.zip", device="cpu")
    stats = VecNormalize.load(
        str(run_dir / ENV_ID / "vecnormalize.pkl"), DummyVecEnv([lambda: gym.make(ENV_ID)])
    )
    env = gym.make(ENV_ID)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(stats.normalize_obs(obs[None]), deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns))}


def tailor(*args: str) -> None:
    cmd = [sys.executable, "-m", "tailor.cli", *args]
    print("$ tailor " + shlex.join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--prior-steps", type=int, default=1_000_000)
    p.add_argument("--custom-steps", type=int, default=2_000_000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--omega-prime", type=float, help="default: the task's residual coefficient")
    p.add_argument("--alpha-hat", type=float, help="default: the task's residual coefficient")
    args = p.parse_args()
    coefs: list[str] = []
    tag = ""
    if args.omega_prime is not None or args.alpha_hat is not None:
        for flag, value in (("--omega-prime", args.omega_prime), ("--alpha-hat", args.alpha_hat)):
            if value is not None:
                coefs += [flag, str(value)]
        tag = f"-w{args.omega_prime}-a{args.alpha_hat}"
    run_dir = args.out / "ppo" / f"{ENV_ID}_1"
    zip_path = run_dir / f"{ENV_ID}.zip"
    if not zip_path.is_file():
        zip_path = train_prior(run_dir, args.prior_steps, args.seed)
    custom = args.out / f"residual{tag}"
    tailor("inspect", str(zip_path), "--task", TASK, "--json", str(args.out / "inspect.json"))
    ev = ("--task", TASK, "--episodes", str(args.episodes), "--seed", "1")
    if not (args.out / "eval_prior.json").is_file():
        sb3_basic = sb3_evaluate(run_dir, args.episodes, seed=1)
        print(f"SB3's own evaluation (basic return): {sb3_basic}", flush=True)
        (args.out / "eval_prior_sb3.json").write_text(json.dumps(sb3_basic, indent=2) + "\n")
        prior_json = str(args.out / "eval_prior.json")
        tailor("evaluate", "--policy", str(zip_path), *ev, "--json", prior_json)
    tailor(
        "customize", "--task", TASK, "--prior", str(zip_path), "--method", "residual", *coefs,
        "--steps", str(args.custom_steps), "--seed", str(args.seed), "--out", str(custom),
        "--no-progress",
    )  # fmt: skip
    custom_json = args.out / f"eval_custom{tag}.json"
    tailor("evaluate", "--policy", str(custom), *ev, "--json", str(custom_json))
    summary = {
        "prior_steps": args.prior_steps,
        "custom_steps": args.custom_steps,
        "episodes": args.episodes,
        "seed": args.seed,
        "command": shlex.join(sys.argv),
    }
    sb3_json = args.out / "eval_prior_sb3.json"
    if sb3_json.is_file():
        summary["prior_sb3_basic"] = json.loads(sb3_json.read_text())
    for name, file in (("prior", args.out / "eval_prior.json"), ("custom", custom_json)):
        result = json.loads(file.read_text())
        summary[name] = {k: result[k] for k in ("total", "basic", "addon", "statistic")}
    (args.out / f"summary{tag}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
