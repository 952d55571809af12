"""Evaluate a policy on a task: both sides of the trade-off, per episode, then mean and std.

For every episode: the basic return ``sum_t r_t``, the add-on return ``sum_t r_R,t``, their sum
``total``, and the episode mean of the task's per-step statistic (e.g. mean ``|theta|``). The
result (and the JSON of ``tailor evaluate --json``) is::

    {"total": {"mean": .., "std": ..}, "basic": {...}, "addon": {...}, "statistic": {...},
     "episodes": N, "task": .., "policy": .., "deterministic": .., "seed": ..,
     "per_episode": {"total": [...], "basic": [...], "addon": [...], "statistic": [...],
                     "length": [...]}}

``std`` is the population standard deviation over episodes (``numpy.std``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.envs import Task, VecEnv, get_task
from tailor.errors import TailorError
from tailor.priors import PolicyPrior, Prior, check_spaces, load_prior

__all__ = ["evaluate"]

_MAX_ENVS = 16


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
    """Run ``episodes`` episodes of ``policy`` on ``task``; return the summary dict above.

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
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise TailorError(f"episodes must be a positive integer, got {episodes!r}")
    task = get_task(task)
    source = str(policy) if isinstance(policy, (str, Path)) else type(policy).__name__
    if isinstance(policy, (str, Path)):
        policy = load_prior(policy)
    n = min(episodes, num_envs or _MAX_ENVS)
    quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
    gen = torch.Generator().manual_seed(seed)
    per_env: list[list[tuple[float, float, float, int]]] = [[] for _ in range(n)]
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
                    per_env[i].append((ret_b[i], ret_a[i], stat[i] / length[i], int(length[i])))
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
    basic, addon, statistic, lengths = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    total = basic + addon

    def summary(x: np.ndarray) -> dict[str, float]:
        return {"mean": float(x.mean()), "std": float(x.std())}

    return {
        "total": summary(total),
        "basic": summary(basic),
        "addon": summary(addon),
        "statistic": summary(statistic),
        "episodes": int(rows.shape[0]),
        "task": task.name,
        "statistic_name": task.statistic_name,
        "policy": source,
        "deterministic": deterministic,
        "seed": seed,
        "per_episode": {
            "total": total.tolist(),
            "basic": basic.tolist(),
            "addon": addon.tolist(),
            "statistic": statistic.tolist(),
            "length": lengths.astype(int).tolist(),
        },
    }
