"""Wall time to reach a HalfCheetah return of 1500: tailor's PPO vs Stable-Baselines3 PPO.

One run trains both, ``--seeds`` seeds each, on the same machine and one CPU thread, until the
mean basic return of recent episodes reaches ``--threshold`` (1500), and prints the wall time of
each, their means, and the ratio. "Recent episodes": SB3, the last 10 episodes of its Monitor
buffer (raw returns, unnormalized); tailor, the episodes that ended in the last iteration
(its 64 envs end their 1000-step episodes together; the mean over those 64 is at least as strict
as a mean over 10 of them). Plain no-entropy PPO on both sides; SB3 as its zoo runs MuJoCo, with
``VecNormalize`` (observations and rewards), otherwise at its defaults, one env.
``stable_baselines3`` is an optional bench dependency (``pip install -e '.[bench]'``); without it
only tailor's side runs. The last line reads ``tailor_s=<a> sb3_s=<b> ratio=<b/a>``.

    OMP_NUM_THREADS=1 python bench/time_to_return.py --seeds 3
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def tailor_time(seed: int, threshold: float, max_steps: int) -> tuple[float, int]:
    """(wall seconds, steps) for tailor's PPO to reach ``threshold``; ``nan`` if it did not."""
    from tailor.algos.ppo import PPOConfig, train
    from tailor.methods import resolve

    hit: dict[str, float] = {}

    def reached(row: dict) -> bool:
        ret = row["return_basic"]
        if isinstance(ret, float) and ret >= threshold and row["episodes"] > 0:
            hit.update(wall=row["wall_s"], steps=row["steps"])
            return True
        return False

    config = PPOConfig(total_steps=max_steps, seed=seed, tensorboard=False)
    train("halfcheetah-hindleg", resolve("no-entropy"), config, None, callback=reached)
    return (hit.get("wall", math.nan), int(hit.get("steps", -1)))


def sb3_time(seed: int, threshold: float, max_steps: int) -> tuple[float, int]:
    """(wall seconds, steps) for SB3 PPO + VecNormalize to reach ``threshold``."""
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    hit: dict[str, float] = {}

    class Reached(BaseCallback):
        def _on_step(self) -> bool:
            buf = self.model.ep_info_buffer
            if len(buf) >= 10 and np.mean([e["r"] for e in list(buf)[-10:]]) >= threshold:
                hit.update(wall=time.perf_counter() - t0, steps=self.num_timesteps)
                return False
            return True

    env = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=1, seed=seed))
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=max_steps, callback=Reached())
    return (hit.get("wall", math.nan), int(hit.get("steps", -1)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threshold", type=float, default=1500.0)
    p.add_argument("--max-steps", type=int, default=2_000_000, help="give up after this many")
    p.add_argument("--no-sb3", action="store_true", help="only tailor's side")
    args = p.parse_args()

    try:
        import stable_baselines3  # noqa: F401

        have_sb3 = not args.no_sb3
    except ImportError:
        have_sb3 = False
        print("stable_baselines3 is not installed: measuring tailor only", flush=True)

    ours, theirs = [], []
    for seed in range(args.seeds):
        wall, steps = tailor_time(seed, args.threshold, args.max_steps)
        ours.append(wall)
        print(f"tailor PPO seed {seed}: {wall:.1f} s, {steps} steps", flush=True)
        if have_sb3:
            wall, steps = sb3_time(seed, args.threshold, args.max_steps)
            theirs.append(wall)
            print(f"SB3 PPO + VecNormalize seed {seed}: {wall:.1f} s, {steps} steps", flush=True)
    a = sum(ours) / len(ours)
    b = sum(theirs) / len(theirs) if theirs else math.nan
    print(f"mean wall time to a return of {args.threshold:g}: tailor {a:.1f} s, SB3 {b:.1f} s")
    print(f"tailor_s={a:.1f} sb3_s={b:.1f} ratio={b / a:.2f}")


if __name__ == "__main__":
    main()
