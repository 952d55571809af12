"""Env steps per second of tailor's highway-env tasks against highway-env's own envs, one thread.

    OMP_NUM_THREADS=1 .venv/bin/python bench/highway_throughput.py [--highway-steps 300]
        [--parking-steps 3000] [--repeats 3] [--seed 0]

For each task, in the same run:

* ``highway-env``: highway-env's own env class with the task's configuration
  (``HighwayEnvFast(config=HIGHWAY_CONFIG)``, ``ParkingEnv(config=PARKING_CONFIG)``): pandas
  observations, Python-object simulation;
* ``tailor fast=False``: the task env (``make_env(task, fast=False)``: flattening, add-on,
  statistic) on highway-env's own code, to show what the task wrappers cost;
* ``tailor``: the task env as the tasks make it (the numpy fast path of
  :mod:`tailor.envs.highway_fast`).

Every loop steps the same pre-drawn uniformly random actions from the same seed and resets when
an episode ends (random driving crashes often on the highway, so resets are part of the cost,
equally for all). Each figure is the best of ``--repeats`` interleaved rounds, in wall-clock
steps/s and in steps per second of this process's CPU time (the machine is shared; the loops are
single-threaded, so on an idle machine the two agree). The ratio is tailor's over highway-env's.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from env_throughput import best_rates  # the same interleaved best-of timing
from tailor.envs import highway as hw
from tailor.envs import make_env


def loop(env: gym.Env, actions: list, seed: int) -> Callable[[], int]:
    """A run: reset with ``seed``, step ``actions``, reset at the end of every episode."""

    def run() -> int:
        env.reset(seed=seed)
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        return len(actions)

    return run


def bench_task(name: str, steps: int, repeats: int, seed: int) -> list[tuple[str, float, float]]:
    from highway_env.envs.highway_env import HighwayEnvFast
    from highway_env.envs.parking_env import ParkingEnv

    rng = np.random.default_rng(seed)
    if name == "highway-keepright":
        reference = HighwayEnvFast(config=dict(hw.HIGHWAY_CONFIG))
        actions: list = [int(a) for a in rng.integers(0, 5, steps)]
    else:
        reference = ParkingEnv(config=dict(hw.PARKING_CONFIG))
        actions = list(rng.uniform(-1, 1, (steps, 2)).astype(np.float32))
    names = ["highway-env", "tailor fast=False", "tailor"]
    envs = [reference, make_env(name, fast=False), make_env(name)]
    rates = best_rates([loop(e, actions, seed) for e in envs], repeats)
    return [(n, w, c) for n, (w, c) in zip(names, rates, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--highway-steps", type=int, default=300)
    parser.add_argument("--parking-steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| task | env | steps/s (wall) | steps/s (CPU) | x highway-env (wall) | x (CPU) |")
    print("|---|---|---:|---:|---:|---:|")
    for task, steps in (
        ("parking-boundary", args.parking_steps),
        ("highway-keepright", args.highway_steps),
    ):
        rows = bench_task(task, steps, args.repeats, args.seed)
        ref_w, ref_c = rows[0][1], rows[0][2]
        for env_name, w, c in rows:
            ratios = f"{w / ref_w:.1f} | {c / ref_c:.1f}"
            print(f"| {task} | {env_name} | {w:.0f} | {c:.0f} | {ratios} |")


if __name__ == "__main__":
    main()
