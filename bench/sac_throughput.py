"""SAC throughput: tailor's SAC against Stable-Baselines3's SAC on the same config, one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/sac_throughput.py [--config small|authors|both]
        [--steps 6000] [--rounds 2] [--task ...]

Both train from scratch on the same environment (tailor's task env, for SB3 in
``make_vec_env``'s ``DummyVecEnv``) with the same settings, one torch thread, buffer 100k,
``learning_starts`` 1000 env steps, tau 0.01, a fixed temperature 0.1 (SB3 ``ent_coef=0.1``:
tailor's SAC has no automatic tuning), ReLU networks. Two cases:

- ``small`` (tailor's defaults): 1 env, 64-64, batch 128, lr 3e-4 (actor; tailor's critic
  1e-3), gamma 0.99, one gradient step every ``train_freq`` = 2 env steps.
- ``authors`` (the RQL release's ``sac_residual.yml``, parking): 4 envs, 256-256-256, batch
  256, lr 1e-3, gamma 0.95, ``train_freq`` 1 (vector step), ``gradient_steps`` 1: one
  gradient step per 4 env steps.

Measured: wall seconds of the learning phase (a run of ``learning_starts + steps`` minus one of
``learning_starts``), from which env steps/s and gradient steps/s; the ratio printed per case is
SB3's seconds / tailor's. Best of ``--rounds``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
from dataclasses import dataclass

import torch

from tailor.algos.sac import SACConfig, train_sac
from tailor.envs import get_task, make_env
from tailor.experiments.run import task_method

START = 1000


@dataclass(frozen=True)
class Case:
    """One configuration, run by both libraries."""

    n_envs: int
    hidden: tuple[int, ...]
    batch: int
    actor_lr: float
    critic_lr: float
    gamma: float
    train_freq: int  # vector steps between gradient steps (one each)

    def gradient_steps(self, steps: int) -> int:
        return steps // (self.n_envs * self.train_freq)


CASES = {
    "small": Case(1, (64, 64), 128, 3e-4, 1e-3, 0.99, 2),
    "authors": Case(4, (256, 256, 256), 256, 1e-3, 1e-3, 0.95, 1),
}


def tailor_seconds(case: Case, task: str, steps: int, seed: int) -> float:
    """Seconds of tailor's SAC for ``steps`` learning env steps (minus its warm-up phase)."""
    method = task_method(task, "soft", alpha=0.1)

    def run(total: int) -> float:
        cfg = SACConfig(
            total_steps=total,
            n_envs=case.n_envs,
            learning_starts=START,
            train_freq=case.train_freq,
            batch_size=case.batch,
            buffer_size=100_000,
            actor_lr=case.actor_lr,
            critic_lr=case.critic_lr,
            gamma=case.gamma,
            tau=0.01,
            hidden=case.hidden,
            log_interval=0,
            seed=seed,
        )
        t0 = time.perf_counter()
        train_sac(task, method, cfg, log=None)
        return time.perf_counter() - t0

    return run(START + steps) - run(START)


def sb3_seconds(case: Case, task: str, steps: int, seed: int) -> float:
    """Seconds of SB3's SAC for ``steps`` learning env steps (minus its warm-up phase)."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env

    def run(total: int) -> float:
        env = make_vec_env(lambda: make_env(get_task(task)), n_envs=case.n_envs, seed=seed)
        model = SAC(
            "MlpPolicy",
            env,
            learning_rate=case.actor_lr,  # one rate for actor and critic in SB3
            buffer_size=100_000,
            learning_starts=START,
            batch_size=case.batch,
            tau=0.01,
            gamma=case.gamma,
            train_freq=case.train_freq,
            gradient_steps=1,
            ent_coef=0.1,
            policy_kwargs={"net_arch": list(case.hidden), "activation_fn": torch.nn.ReLU},
            seed=seed,
            device="cpu",
        )
        t0 = time.perf_counter()
        model.learn(total)
        return time.perf_counter() - t0

    return run(START + steps) - run(START)


def report(name: str, case: Case, task: str, steps: int, rounds: int, seed: int) -> None:
    ours = min(tailor_seconds(case, task, steps, seed) for _ in range(rounds))
    theirs = min(sb3_seconds(case, task, steps, seed) for _ in range(rounds))
    grads = case.gradient_steps(steps)
    nets = "-".join(map(str, case.hidden))
    print(
        f"[{name}] SAC on {task}: {case.n_envs} env(s), {nets}, batch {case.batch}, "
        f"{steps} env steps, {grads} gradient steps, best of {rounds}, one thread"
    )
    print()
    print("| | env steps/s | gradient steps/s |")
    print("|---|---:|---:|")
    print(f"| tailor | {steps / ours:,.0f} | {grads / ours:,.0f} |")
    print(f"| Stable-Baselines3 | {steps / theirs:,.0f} | {grads / theirs:,.0f} |")
    print()
    print(f"sac_speedup_vs_sb3_{name}={theirs / ours:.2f}")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=("small", "authors", "both"), default="both")
    parser.add_argument("--task", default="mountaincar-noleft")
    parser.add_argument("--steps", type=int, default=6000, help="learning env steps per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = list(CASES) if args.config == "both" else [args.config]
    for name in names:
        report(name, CASES[name], args.task, args.steps, args.rounds, args.seed)


if __name__ == "__main__":
    main()
