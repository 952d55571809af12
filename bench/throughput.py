"""Training throughput on HalfCheetah: raw physics (the limit), tailor's PPO, SB3's PPO.

One run measures, on the same machine:

1. the raw physics rate of the task's MuJoCo model on one core: ``mj_step(model, data,
   nstep=frame_skip)`` in a tight loop, in environment steps per second (the upper bound of any
   one-core trainer);
2. tailor's PPO training rate at the default :class:`tailor.algos.ppo.PPOConfig` (plain
   no-entropy PPO, everything included: rollout, GAE, update, logging), ``--steps`` steps, with
   the envs stepped on ``num_workers = --cores`` threads and the update on ``--torch-threads``
   torch threads (1: two threads made the update slower here, see ``results/throughput_cores.md``);
3. Stable-Baselines3 PPO at its defaults (``MlpPolicy``, ``--sb3-envs`` envs of
   ``HalfCheetah-v5``, one torch thread) if ``stable_baselines3`` is importable (an optional
   bench dependency).

The physics rate is measured before and after the trainers and averaged, because a shared
machine's speed drifts; the load average (``os.getloadavg``) is printed before and after, for
the same reason. The last line reads ``ratio_to_physics=<x> speedup_vs_sb3=<y> cores=<n>``
(``ratio_to_physics``: tailor's rate over one core's physics; ``nan`` when SB3 is not
installed).

    OMP_NUM_THREADS=1 python bench/throughput.py --steps 200000
    OMP_NUM_THREADS=1 python bench/throughput.py --steps 300000 --cores 2
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def physics_rate(env_id: str, seconds: float) -> float:
    """Environment steps per second of raw ``mj_step`` on the env's model (frame skip included)."""
    import gymnasium as gym
    import mujoco

    env = gym.make(env_id)
    u = env.unwrapped
    model, data, skip = u.model, u.data, u.frame_skip
    env.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(500):
            mujoco.mj_step(model, data, nstep=skip)
        n += 500
    rate = n / (time.perf_counter() - t0)
    env.close()
    return rate


def tailor_rate(task: str, steps: int, cores: int, torch_threads: int) -> float:
    """Training steps/s of tailor's PPO at the default config (plain no-entropy PPO), the envs
    on ``cores`` threads, the networks on ``torch_threads``."""
    from tailor.algos.ppo import PPOConfig, train
    from tailor.methods import resolve

    method = resolve("no-entropy")
    own = {"tensorboard": False, "num_workers": cores, "torch_threads": torch_threads}
    warm = PPOConfig(**own)
    warm.total_steps = warm.batch_size  # one iteration: pays the lazy imports outside the clock
    train(task, method, warm, None)
    config = PPOConfig(total_steps=steps, **own)
    t0 = time.perf_counter()
    result = train(task, method, config, None)
    return result.steps / (time.perf_counter() - t0)


def sb3_rate(env_id: str, steps: int, n_envs: int) -> float:
    """Training steps/s of SB3 PPO at its defaults, or nan if it is not installed."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.logger import Logger
    except ImportError:
        return math.nan
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    model = PPO("MlpPolicy", env, seed=0, device="cpu", verbose=0)
    model.set_logger(Logger(folder=None, output_formats=[]))  # no SB3-* folder in the temp dir
    model.learn(total_timesteps=model.n_steps * n_envs)  # warm-up iteration, not timed
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, reset_num_timesteps=False)
    done = model.num_timesteps - model.n_steps * n_envs
    return done / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000, help="tailor training steps")
    parser.add_argument("--task", default="halfcheetah-hindleg", help="tailor task")
    parser.add_argument("--sb3-steps", type=int, default=16_384, help="SB3 training steps")
    parser.add_argument("--sb3-envs", type=int, default=1, help="SB3 parallel envs")
    parser.add_argument("--physics-seconds", type=float, default=3.0)
    parser.add_argument(
        "--cores", type=int, default=1, help="tailor's env threads (PPOConfig.num_workers)"
    )
    parser.add_argument("--torch-threads", type=int, default=1, help="tailor's torch threads")
    args = parser.parse_args()

    import torch

    from tailor.envs import get_task

    torch.set_num_threads(1)
    env_id = get_task(args.task).env_id

    load_before = os.getloadavg()
    phys_before = physics_rate(env_id, args.physics_seconds)
    ours = tailor_rate(args.task, args.steps, args.cores, args.torch_threads)
    torch.set_num_threads(1)
    sb3 = sb3_rate(env_id, args.sb3_steps, args.sb3_envs)
    phys_after = physics_rate(env_id, args.physics_seconds)
    physics = 0.5 * (phys_before + phys_after)
    load_after = os.getloadavg()

    print(
        f"task {args.task} ({env_id}), torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"load average {_load(load_before)} before, {_load(load_after)} after"
    )
    print(
        f"  raw physics (mj_step)      {physics:10.0f} steps/s  "
        f"(one core; before {phys_before:.0f}, after {phys_after:.0f})"
    )
    print(
        f"  tailor PPO (default)       {ours:10.0f} steps/s  ({args.steps} steps, "
        f"{args.cores} env thread(s), {args.torch_threads} torch thread(s))"
    )
    if math.isnan(sb3):
        print("  SB3 PPO (defaults)         not installed (pip install stable-baselines3)")
    else:
        print(
            f"  SB3 PPO (defaults)         {sb3:10.0f} steps/s  "
            f"({args.sb3_steps} steps, {args.sb3_envs} env(s), 1 torch thread)"
        )
    print(
        f"ratio_to_physics={ours / physics:.3f} speedup_vs_sb3={ours / sb3:.2f} cores={args.cores}"
    )


def _load(avg: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in avg)


if __name__ == "__main__":
    main()
