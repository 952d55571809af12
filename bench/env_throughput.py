"""Environment stepping throughput, one thread: raw MuJoCo vs gymnasium vs tailor's VecEnv.

    .venv/bin/python bench/env_throughput.py [--task halfcheetah-hindleg] [--steps 40000]
        [--num-envs 1,8,32] [--repeats 3]
    .venv/bin/python bench/env_throughput.py --all [--steps 8000] [--num-envs 8]

``--all``: one table over every gymnasium MuJoCo v5 robot, each with a README-style user task
(add-on ``-|qpos[1]|`` as a scalar ``addon`` only, and the same as ``vector_terms``): gymnasium
single env, VecEnv on the gymnasium loop (what a task without a fast path gets: a loop over
``make_env`` envs), VecEnv with ``vector_terms``, VecEnv with the scalar add-on (the README's
form). The speedups are against the gymnasium loop.

Measures env-steps per second (wall clock, and per second of this process's CPU time) with
uniformly random actions (drawn before timing), no policy:

* ``raw mj_step``: one ``MjData``, ``ctrl`` set and
  ``mujoco.mj_step(model, data, nstep=frame_skip)``
  per env-step, reset every ``max_episode_steps``: the physics limit;
* ``gymnasium``: ``gymnasium.make(env_id)`` single env, ``reset()`` when an episode ends;
* ``VecEnv N``: :class:`tailor.envs.VecEnv` with ``N`` envs (observations, rewards, add-on,
  statistic, time limit and auto-reset included).

Each figure is the best of ``--repeats`` interleaved rounds (the machine is shared; the best run
is the least disturbed one). For tasks that terminate (Hopper, Ant) the raw loop keeps stepping
fallen robots, so compare its figure with care; HalfCheetah never terminates.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
from collections.abc import Callable

import gymnasium as gym
import mujoco
import numpy as np

from tailor.envs import Task, VecEnv, get_task
from tailor.envs.backends import GymBackend
from tailor.envs.robots import ROBOTS


def best_rates(runs: list[Callable[[], int]], repeats: int) -> list[tuple[float, float]]:
    """Best ``(wall, cpu)`` env-steps/s of each run over ``repeats`` rounds.

    Each ``run()`` returns its step count. ``cpu`` divides by this process's CPU time, which other
    processes on a shared machine disturb far less than the wall time (the loops are
    single-threaded, so on an idle machine both agree). The rounds interleave the runs, so a
    burst of load does not fall on one of them only.
    """
    best = [(0.0, 0.0)] * len(runs)
    for _ in range(repeats):
        for k, run in enumerate(runs):
            w0, c0 = time.perf_counter(), time.process_time()
            n = run()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            best[k] = (max(best[k][0], n / wall), max(best[k][1], n / cpu))
    return best


def raw_mujoco(env_id: str, env_kwargs: dict, steps: int, seed: int) -> Callable[[], int]:
    env = gym.make(env_id, **env_kwargs)
    u = env.unwrapped
    model, frame_skip = u.model, u.frame_skip
    limit = env.spec.max_episode_steps or steps
    low, high = u.action_space.low, u.action_space.high
    actions = np.random.default_rng(seed).uniform(low, high, size=(steps, len(low)))
    data = mujoco.MjData(model)

    def run() -> int:
        mujoco.mj_resetData(model, data)
        mujoco.mj_forward(model, data)
        for t in range(steps):
            if t % limit == limit - 1:
                mujoco.mj_resetData(model, data)
                mujoco.mj_forward(model, data)
            data.ctrl[:] = actions[t]
            mujoco.mj_step(model, data, nstep=frame_skip)
        return steps

    return run


def gymnasium_single(env_id: str, env_kwargs: dict, steps: int, seed: int) -> Callable[[], int]:
    env = gym.make(env_id, **env_kwargs)
    space = env.action_space
    actions = (
        np.random.default_rng(seed)
        .uniform(space.low, space.high, size=(steps, *space.shape))
        .astype(space.dtype)
    )

    def run() -> int:
        env.reset(seed=seed)
        for t in range(steps):
            _, _, terminated, truncated, _ = env.step(actions[t])
            if terminated or truncated:
                env.reset()
        return steps

    return run


def vec_env(
    task_name: str | Task, num_envs: int, steps: int, seed: int, loop: bool = False
) -> tuple[Callable[[], int], str]:
    venv = VecEnv(task_name, num_envs, seed)
    if loop:  # the gymnasium-loop fallback, as a task without a fast path gets it
        venv._backend.close()
        venv._backend = GymBackend(venv.task, num_envs, seed)
        venv.backend = venv._backend.name
    # At least one full episode per env: physics cost depends on the state (contacts), so a
    # batch of only early-episode states would not be comparable with the other loops.
    n_iter = max(1, steps // num_envs, venv.max_episode_steps or 1)
    actions = (
        np.random.default_rng(seed)
        .uniform(venv.action_low, venv.action_high, size=(n_iter, num_envs, venv.act_dim))
        .astype(np.float32)
    )

    def run() -> int:
        venv.reset()
        for t in range(n_iter):
            venv.step(actions[t])
        return n_iter * num_envs

    return run, venv.backend


def robot_tasks(env_id: str) -> tuple[Task, Task]:
    """A README-style task on ``env_id``: (scalar add-on only, the same with vector_terms)."""

    def terms(b: object) -> tuple[np.ndarray, np.ndarray]:
        z = np.abs(b.qpos[:, 1])  # type: ignore[attr-defined]
        return -z, z

    scalar = Task(
        name=f"{env_id}-bench",
        env_id=env_id,
        addon=lambda env, action, info: -abs(env.unwrapped.data.qpos[1]),
        statistic=lambda env, action, info: abs(env.unwrapped.data.qpos[1]),
    )
    vector = Task(
        name=f"{env_id}-bench-vector",
        env_id=env_id,
        addon=scalar.addon,
        statistic=scalar.statistic,
        vector_terms=terms,
    )
    return scalar, vector


def all_robots(steps: int, num_envs: int, repeats: int, seed: int) -> None:
    """Print a markdown table: each robot's env-steps/s, gymnasium vs the two fast paths."""
    print(
        f"1 thread, >= {steps} env-steps per run (VecEnv: >= one episode per env), "
        f"best of {repeats}, random actions; VecEnv N={num_envs}\n"
    )
    print(
        "| env | gymnasium 1 env | VecEnv gymnasium loop | VecEnv fast, vector_terms "
        "| speedup | VecEnv fast, scalar addon | speedup |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for cls in ROBOTS:
        env_id = next(k for k, v in gym.registry.items() if _is_v5(v, cls))
        scalar, vector = robot_tasks(env_id)
        run_v, backend_v = vec_env(vector, num_envs, steps, seed)
        run_s, backend_s = vec_env(scalar, num_envs, steps, seed)
        assert backend_v == backend_s == "mujoco", (backend_v, backend_s)
        run_loop, _ = vec_env(scalar, num_envs, steps, seed, loop=True)
        gym_run = gymnasium_single(env_id, {}, steps, seed)
        rates = best_rates([gym_run, run_loop, run_v, run_s], repeats)
        (g, _), (lo, _), (v, _), (sc, _) = rates
        print(
            f"| {env_id} | {g:,.0f} | {lo:,.0f} | {v:,.0f} | {v / lo:.1f}x | {sc:,.0f} "
            f"| {sc / lo:.1f}x |"
        )


def _is_v5(spec: gym.envs.registration.EnvSpec, cls: type) -> bool:
    entry = spec.entry_point
    return isinstance(entry, str) and entry.endswith(f":{cls.__name__}") and spec.version == 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="halfcheetah-hindleg", help="a tailor task name")
    parser.add_argument("--steps", type=int, default=40000, help="env-steps per measurement")
    parser.add_argument("--num-envs", default="1,8,32", help="comma-separated VecEnv sizes")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all", action="store_true", help="every MuJoCo robot, one table")
    args = parser.parse_args()
    if args.all:
        all_robots(args.steps, int(args.num_envs.split(",")[0]), args.repeats, args.seed)
        return
    task = get_task(args.task)
    sizes = [int(s) for s in args.num_envs.split(",")]

    names: list[str] = []
    runs: list[Callable[[], int]] = []
    is_mujoco = isinstance(
        getattr(gym.make(task.env_id, **task.env_kwargs).unwrapped, "model", None), mujoco.MjModel
    )
    if is_mujoco:
        names.append("raw mj_step (physics limit)")
        runs.append(raw_mujoco(task.env_id, task.env_kwargs, args.steps, args.seed))
    names.append("gymnasium single env")
    runs.append(gymnasium_single(task.env_id, task.env_kwargs, args.steps, args.seed))
    for n in sizes:
        run, backend = vec_env(task.name, n, args.steps, args.seed)
        names.append(f"tailor VecEnv N={n} ({backend})")
        runs.append(run)
    rows = list(zip(names, best_rates(runs, args.repeats), strict=True))

    ref_wall, ref_cpu = rows[0][1]
    print(
        f"task {task.name} ({task.env_id}), 1 thread, >= {args.steps} env-steps per run, "
        f"best of {args.repeats}, random actions"
    )
    ref = "raw" if is_mujoco else "gym"
    print(
        f"{'what':<36} {'env-steps/s':>12} {'vs ' + ref:>7} {'CPU-time steps/s':>17} "
        f"{'vs ' + ref:>7}"
    )
    for what, (wall, cpu) in rows:
        print(
            f"{what:<36} {wall:>12,.0f} {wall / ref_wall:>7.2f} {cpu:>17,.0f} {cpu / ref_cpu:>7.2f}"
        )


if __name__ == "__main__":
    main()
