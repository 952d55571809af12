"""Evaluate a policy on a task: both sides of the trade-off, per episode, then mean and std.

The one evaluator of tailor, with one result schema for every policy kind (PPO's Gaussian
policies through :func:`evaluate`, batched over a :class:`~tailor.envs.VecEnv`; soft DQN, SAC and
MCTS policies through :func:`evaluate_stepwise`, one env stepped by an ``act(obs, env)``
function; :func:`tailor.experiments.evaluation.evaluate` picks one from a policy file's kind).
For every episode: the basic return ``sum_t r_t``, the add-on return ``sum_t r_R,t``, their sum
``total``, the episode mean of the task's per-step statistic (e.g. mean ``|theta|``), the length
and whether it succeeded (:func:`tailor.envs.classic.success`: the task's rule, else "not
terminated"). The result (and the JSON of ``tailor evaluate --json``) is::

    {"total": {"mean": .., "std": ..}, "basic": {...}, "addon": {...}, "statistic": {...},
     "length": {...}, "success_rate": .., "episodes": N, "task": .., "statistic_name": ..,
     "policy": .., "seed": .., (evaluate: "deterministic"),
     "per_episode": {"total": [...], "basic": [...], "addon": [...], "statistic": [...],
                     "length": [...], "success": [...]}}

``std`` is the population standard deviation over episodes (``numpy.std``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.envs import Task, VecEnv, get_task, make_env
from tailor.envs.classic import success as episode_success
from tailor.errors import TailorError
from tailor.priors import PolicyPrior, Prior, check_spaces, load_prior

__all__ = ["evaluate", "evaluate_stepwise", "summarize"]

_MAX_ENVS = 16

# One row per episode: total, basic, add-on, statistic (episode mean), length, success.
EPISODE_COLUMNS = ("total", "basic", "addon", "statistic", "length", "success")


def summarize(rows: np.ndarray, task: Task, **extra: Any) -> dict[str, Any]:
    """The result schema from episode rows ``[E, 6]`` (columns :data:`EPISODE_COLUMNS`)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(EPISODE_COLUMNS))

    def summary(x: np.ndarray) -> dict[str, float]:
        return {"mean": float(x.mean()), "std": float(x.std())}

    return {
        "total": summary(rows[:, 0]),
        "basic": summary(rows[:, 1]),
        "addon": summary(rows[:, 2]),
        "statistic": summary(rows[:, 3]),
        "length": summary(rows[:, 4]),
        "success_rate": float(rows[:, 5].mean()),
        "episodes": int(rows.shape[0]),
        "task": task.name,
        "statistic_name": task.statistic_name,
        **extra,
        "per_episode": {
            "total": rows[:, 0].tolist(),
            "basic": rows[:, 1].tolist(),
            "addon": rows[:, 2].tolist(),
            "statistic": rows[:, 3].tolist(),
            "length": rows[:, 4].astype(int).tolist(),
            "success": rows[:, 5].astype(bool).tolist(),
        },
    }


def _check_episodes(episodes: object) -> None:
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise TailorError(f"episodes must be a positive integer, got {episodes!r}")


def evaluate(
    policy: Prior | str | Path,
    task: Task | str,
    episodes: int = 10,
    *,
    deterministic: bool = True,
    seed: int = 0,
    num_envs: int | None = None,
    max_steps: int = 1_000_000,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of a Gaussian ``policy`` on ``task``; the summary dict above.

    Args:
        policy: a :class:`tailor.priors.Prior` or a run directory / ``policy.safetensors``.
        task: a task or its registered name.
        episodes: number of episodes ``>= 1``.
        deterministic: act with the Gaussian's mean (default) instead of sampling.
        seed: seed of the envs (env ``i`` gets ``seed + i``) and of the action noise.
        num_envs: parallel envs (default ``min(episodes, 16)``). Env ``i`` runs a fixed quota of
            episodes, so short episodes are not over-represented (taking the first ``N`` episodes
            to finish would bias the mean towards short, e.g. falling, episodes).
        max_steps: give up (TailorError) after this many vector steps, for envs without a limit.

    Raises:
        TailorError: bad ``episodes``, unreadable policy file, spaces that do not match the task.
    """
    _check_episodes(episodes)
    task = get_task(task)
    source = str(policy) if isinstance(policy, (str, Path)) else type(policy).__name__
    if isinstance(policy, (str, Path)):
        policy = load_prior(policy)
    n = min(episodes, num_envs or _MAX_ENVS)
    quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
    gen = torch.Generator().manual_seed(seed)
    per_env: list[list[tuple[float, ...]]] = [[] for _ in range(n)]
    with VecEnv(task, n, seed=seed) as env:
        check_spaces(policy, env.obs_dim, env.act_dim, task.name, what="policy")
        obs = env.reset()
        ret_b, ret_a, stat, length = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, np.int64)
        for _ in range(max_steps):
            with torch.inference_mode():
                obs_t = torch.from_numpy(obs)
                if isinstance(policy, PolicyPrior):
                    action = policy.act(obs_t, deterministic, generator=gen)
                else:
                    action = policy.act(obs_t, deterministic)
            step = env.step(action.numpy())
            ret_b += step.basic
            ret_a += step.addon
            stat += step.statistic
            length += 1
            for i in np.flatnonzero(step.done):
                if len(per_env[i]) < quota[i]:
                    ok = episode_success(
                        task, bool(step.terminated[i]), bool(step.truncated[i]), int(length[i])
                    )
                    per_env[i].append(
                        (
                            ret_b[i] + ret_a[i],
                            ret_b[i],
                            ret_a[i],
                            stat[i] / length[i],
                            int(length[i]),
                            float(ok),
                        )
                    )
                ret_b[i] = ret_a[i] = stat[i] = 0.0
                length[i] = 0
            if all(len(p) >= q for p, q in zip(per_env, quota, strict=True)):
                break
            obs = step.obs
        else:
            raise TailorError(
                f"evaluation gave up after {max_steps} steps: the episodes of "
                f"task {task.name!r} did not end"
            )
    rows = np.asarray([e for p in per_env for e in p], dtype=np.float64)
    return summarize(rows, task, policy=source, deterministic=deterministic, seed=seed)


def evaluate_stepwise(
    act: Callable[[np.ndarray, Any], Any],
    task: Task | str,
    episodes: int = 50,
    *,
    seed: int = 0,
    max_steps: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Run ``episodes`` episodes on one env, acting with ``act(obs, env) -> action``.

    For policies that act one observation at a time or need the env itself (MCTS searches from
    its true state). Episode ``i`` resets with ``seed + i``; ``max_steps`` cuts an episode short.
    ``extra`` keys are added to the result (e.g. ``policy``, ``algo``, ``method``).

    Returns:
        The summary dict of the module docstring, with ``wall_s`` (seconds of acting).
    """
    _check_episodes(episodes)
    task = get_task(task)
    env = make_env(task)
    rows = []
    t0 = time.perf_counter()
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            basic = addon = stat = 0.0
            n = 0
            while True:
                obs, _, terminated, truncated, info = env.step(act(obs, env))
                basic += info["basic_reward"]
                addon += info["addon_reward"]
                stat += info["statistic"]
                n += 1
                if terminated or truncated or (max_steps is not None and n >= max_steps):
                    break
            ok = episode_success(task, terminated, truncated, n, info)
            rows.append((basic + addon, basic, addon, stat / n, n, float(ok)))
    finally:
        env.close()
    return summarize(np.asarray(rows), task, **extra, seed=seed, wall_s=time.perf_counter() - t0)
