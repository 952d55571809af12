"""SAC throughput: tailor's SAC against Stable-Baselines3's SAC on the same config, one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/sac_throughput.py [--steps 6000] [--task ...]

Both train from scratch on the same environment (tailor's task env; SB3 on its gymnasium id,
the same env) with the same settings: 64-64 ReLU actor and critics, batch 128, buffer 100k,
``learning_starts`` 1000, one gradient step every ``train_freq`` = 2 env steps, gamma 0.99, tau
0.01, a fixed temperature 0.1 (SB3 ``ent_coef=0.1``: tailor's SAC has no automatic tuning), one
torch thread. Measured: wall seconds of the learning phase (after ``learning_starts``), from
which env steps/s and gradient steps/s; the printed ratio is tailor / SB3. Best of ``--rounds``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time

import torch

from tailor.algos.sac import SACConfig, train_sac
from tailor.envs import get_task, make_env
from tailor.experiments.run import task_method

START, TRAIN_FREQ, BATCH = 1000, 2, 128


def tailor_seconds(task: str, steps: int, seed: int) -> float:
    """Seconds of tailor's SAC for ``steps`` learning steps (minus its warm-up phase)."""
    method = task_method(task, "soft", alpha=0.1)

    def run(total: int) -> float:
        cfg = SACConfig(
            total_steps=total,
            learning_starts=START,
            train_freq=TRAIN_FREQ,
            batch_size=BATCH,
            buffer_size=100_000,
            gamma=0.99,
            tau=0.01,
            hidden=(64, 64),
            log_interval=0,
            seed=seed,
        )
        t0 = time.perf_counter()
        train_sac(task, method, cfg, log=None)
        return time.perf_counter() - t0

    return run(START + steps) - run(START)


def sb3_seconds(task: str, steps: int, seed: int) -> float:
    """Seconds of SB3's SAC for ``steps`` learning steps (minus its warm-up phase)."""
    from stable_baselines3 import SAC

    def run(total: int) -> float:
        env = make_env(get_task(task))
        model = SAC(
            "MlpPolicy",
            env,
            learning_rate=3e-4,
            buffer_size=100_000,
            learning_starts=START,
            batch_size=BATCH,
            tau=0.01,
            gamma=0.99,
            train_freq=TRAIN_FREQ,
            gradient_steps=1,
            ent_coef=0.1,
            policy_kwargs={"net_arch": [64, 64], "activation_fn": torch.nn.ReLU},
            seed=seed,
            device="cpu",
        )
        t0 = time.perf_counter()
        model.learn(total)
        return time.perf_counter() - t0

    return run(START + steps) - run(START)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="mountaincar-noleft")
    parser.add_argument("--steps", type=int, default=6000, help="learning steps per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ours = min(tailor_seconds(args.task, args.steps, args.seed) for _ in range(args.rounds))
    theirs = min(sb3_seconds(args.task, args.steps, args.seed) for _ in range(args.rounds))
    grads = args.steps // TRAIN_FREQ
    print(f"SAC on {args.task}: {args.steps} env steps, {grads} gradient steps (batch {BATCH}),")
    print(f"best of {args.rounds}, one thread")
    print()
    print("| | env steps/s | gradient steps/s |")
    print("|---|---:|---:|")
    print(f"| tailor | {args.steps / ours:,.0f} | {grads / ours:,.0f} |")
    print(f"| Stable-Baselines3 | {args.steps / theirs:,.0f} | {grads / theirs:,.0f} |")
    print()
    print(f"sac_speedup_vs_sb3={theirs / ours:.2f}")


if __name__ == "__main__":
    main()
