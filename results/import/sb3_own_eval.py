"""The RL Zoo's agents evaluated by Stable-Baselines3 itself (``evaluate_policy``) beside
``tailor evaluate`` of the same files, on the same gymnasium v5 envs and seeds.

Usage (a clone of DLR-RM/rl-trained-agents, kept out of this repository):
    .venv/bin/python results/import/sb3_own_eval.py ZOO_DIR [--episodes 10] [--out FILE.md]

SB3 loads each zip with its spaces and schedules given as ``custom_objects`` (the zips were
saved with gym, which is not installed); the ``VecNormalize`` statistics come from the zoo's
``vecnormalize.pkl`` through tailor's allowlisted reader (SB3's own ``VecNormalize.load`` would
need gym to unpickle). Each episode ``i`` resets with seed ``i``, as ``tailor evaluate --seed 0``
does, and SB3's return is the env's own reward, tailor's "basic return".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np

AGENTS = [  # (algo, zoo dir, gymnasium env, tailor task)
    ("ppo", "ppo/HalfCheetah-v3_1/HalfCheetah-v3.zip", "HalfCheetah-v5", "halfcheetah-hindleg"),
    ("ppo", "ppo/Hopper-v3_1/Hopper-v3.zip", "Hopper-v5", "hopper-jump"),
    ("sac", "sac/HalfCheetah-v3_1/HalfCheetah-v3.zip", "HalfCheetah-v5", "halfcheetah-hindleg"),
    ("tqc", "tqc/Hopper-v3_1/Hopper-v3.zip", "Hopper-v5", "hopper-jump"),
    ("ars", "ars/HalfCheetah-v3_1/HalfCheetah-v3.zip", "HalfCheetah-v5", "halfcheetah-hindleg"),
    ("ars", "ars/Hopper-v3_1/Hopper-v3.zip", "Hopper-v5", "hopper-jump"),
]
# ARS is deterministic: tailor reads it as a prior only with a std (the mean is what acts here).
STD = {"ars": ["--prior-std", "0.1"]}


def sb3_returns(algo: str, zip_path: Path, env_id: str, episodes: int) -> list[float]:
    import importlib

    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from tailor.priors.unpickle import load_vecnormalize

    env = gym.make(env_id)
    if algo == "ars":  # ARS.load cannot take the zoo's old linear layout: sb3-contrib's class
        sys.path.insert(0, str(Path(__file__).parent))
        from zoo_exactness import ars_model

        from tailor.priors import load_prior

        model = ars_model(zip_path, load_prior(zip_path, std=0.1)).policy
    else:
        module = "sb3_contrib" if algo == "tqc" else "stable_baselines3"
        cls = getattr(importlib.import_module(module), algo.upper())
        custom = {
            "observation_space": env.observation_space,
            "action_space": env.action_space,
            "lr_schedule": lambda _: 0.0,
            "learning_rate": 0.0,
            "clip_range": lambda _: 0.2,
        }
        model = cls.load(zip_path, custom_objects=custom, device="cpu")  # fmt: skip
    venv = DummyVecEnv([lambda: env])
    pkl = zip_path.parent / zip_path.stem / "vecnormalize.pkl"
    if pkl.is_file():
        stats = load_vecnormalize(pkl)
        venv = VecNormalize(venv, training=False, norm_reward=False, clip_obs=stats["clip_obs"],
                            epsilon=stats["epsilon"])  # fmt: skip
        venv.obs_rms.mean, venv.obs_rms.var = stats["mean"], stats["var"]
    returns = []
    for i in range(episodes):
        venv.seed(i)
        obs, done, total = venv.reset(), False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, dones, _ = venv.step(action)
            total += float(reward[0])
            done = bool(dones[0])
        returns.append(total)
    return returns


def tailor_basic(zip_path: Path, task: str, episodes: int, options: list[str]) -> dict:
    tailor = str(Path(sys.executable).with_name("tailor"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        subprocess.run([tailor, "evaluate", "--policy", str(zip_path), "--task", task,
                        "--episodes", str(episodes), "--json", str(out), *options], check=True,
                       capture_output=True)  # fmt: skip
        return json.loads(out.read_text())["basic"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    lines = ["| agent | env | SB3 evaluate_policy | tailor evaluate (basic) | difference |",
             "|---|---|---|---|---|"]  # fmt: skip
    for algo, rel, env_id, task in AGENTS:
        r = np.asarray(sb3_returns(algo, args.zoo / rel, env_id, args.episodes))
        t = tailor_basic(args.zoo / rel, task, args.episodes, STD.get(algo, []))
        lines.append(f"| {algo.upper()} {rel.split('/')[1]} | {env_id} | {r.mean():.1f} ± "
                     f"{r.std():.1f} | {t['mean']:.1f} ± {t['std']:.1f} | "
                     f"{(t['mean'] - r.mean()) / abs(r.mean()):+.2%} |")  # fmt: skip
        print(lines[-1], flush=True)
    text = "\n".join(lines) + f"\n\ncommand: .venv/bin/python {' '.join(sys.argv)}\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
