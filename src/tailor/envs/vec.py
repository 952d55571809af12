"""``VecEnv``: ``num_envs`` copies of a task stepped together, the fast path PPO trains on.

Semantics (same-step auto-reset, like rsl-rl and SB3)::

    obs = venv.reset()                        # [N, obs_dim] float32
    res = venv.step(actions)                  # raw sampled actions [N, act_dim]; clipped inside
    # res.obs: next observations, already reset where an episode ended
    # res.final_obs: the true last observation of an episode that just ended (else == res.obs),
    #   to bootstrap V(final_obs) at truncation
    # res.terminated: the MDP ended (e.g. Hopper fell): no bootstrap
    # res.truncated: the time limit (max_episode_steps) hit: bootstrap; not a termination
    #   (both can be True on the same step; terminated wins)

Env ``i`` is seeded like ``gymnasium``'s vector envs: its first reset equals
``env.reset(seed=seed + i)`` of the gymnasium env, later resets continue that generator; so a
:class:`VecEnv` is deterministic given ``seed`` and the actions. See :mod:`tailor.envs.backends`
for the fast paths (MuJoCo, point mass) and the gymnasium fallback used for other tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tailor.envs.backends import EnvState, make_backend
from tailor.envs.tasks import Task, get_task
from tailor.errors import TailorError

__all__ = ["StepResult", "VecEnv"]


@dataclass
class StepResult:
    """One step of a :class:`VecEnv` (all numpy, ``N = num_envs``).

    Attributes:
        obs: ``[N, obs_dim]`` float32, next observations (reset ones where an episode ended).
        basic: ``[N]`` float64, the env's own reward ``r``.
        addon: ``[N]`` float64, the task's add-on reward ``r_R``.
        statistic: ``[N]`` float64, the task's per-step statistic.
        terminated: ``[N]`` bool, the episode ended in a terminal state (no bootstrap).
        truncated: ``[N]`` bool, the time limit ended the episode (bootstrap from ``final_obs``).
        final_obs: ``[N, obs_dim]`` float32, the last observation of the episode that just ended
            where ``terminated | truncated``, else equal to ``obs`` (the very same array object
            when no episode ended: treat both as read-only).
    """

    obs: np.ndarray
    basic: np.ndarray
    addon: np.ndarray
    statistic: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray

    @property
    def done(self) -> np.ndarray:
        """``[N]`` bool, ``terminated | truncated``."""
        return self.terminated | self.truncated


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class VecEnv:
    """``num_envs`` envs of ``task`` with auto-reset (see the module docstring).

    Args:
        task: a :class:`Task` or a registered task's name.
        num_envs: number of envs ``N >= 1``.
        seed: env ``i`` is seeded with ``seed + i``.
        num_workers: threads that step the MuJoCo envs, taking chunks of them in turn (the
            calling thread and ``num_workers - 1`` worker threads, which :meth:`close` stops).
            The results do not depend on it. The point mass and the gymnasium fallback always
            step on the calling thread.

    Attributes:
        task, num_envs, obs_dim, act_dim: as named.
        action_low, action_high: float32 ``[act_dim]`` action bounds (actions are clipped to them).
        max_episode_steps: the time limit (1000 for the MuJoCo tasks; ``None`` if the env has none).
        backend: ``"mujoco"`` / ``"numpy"`` (fast paths) or ``"gymnasium"`` (fallback loop).
        num_steps: calls of :meth:`step` so far (vector steps; env-steps = ``num_steps * N``).
    """

    def __init__(
        self, task: Task | str, num_envs: int, seed: int = 0, num_workers: int = 1
    ) -> None:
        self.task = get_task(task)
        checks = (("num_envs", num_envs, 1), ("seed", seed, 0), ("num_workers", num_workers, 1))
        for name, value, least in checks:
            if not _is_int(value) or value < least:
                kind = "positive" if least else "non-negative"
                raise TailorError(f"{name} must be a {kind} integer, got {value!r}")
        self.num_envs = int(num_envs)
        self.seed = int(seed)
        self._backend = make_backend(self.task, self.num_envs, self.seed, int(num_workers))
        b = self._backend
        self.backend = b.name
        self.obs_dim = b.obs_dim
        self.act_dim = b.act_dim
        self.action_low = b.action_low
        self.action_high = b.action_high
        self.max_episode_steps = b.max_episode_steps
        self._limit = self.max_episode_steps if self.max_episode_steps is not None else np.inf
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._obs: np.ndarray | None = None
        self.num_steps = 0

    def reset(self) -> np.ndarray:
        """Reset every env; return ``obs [N, obs_dim]`` float32.

        The first reset of env ``i`` uses seed ``seed + i``; later resets (this method again, or
        the auto-reset in :meth:`step`) continue that env's random generator.
        """
        rows = np.arange(self.num_envs)
        self._obs = self._backend.reset(rows).astype(np.float32)
        self._elapsed[:] = 0
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every env with ``actions [N, act_dim]`` (clipped to the bounds first).

        Raises:
            TailorError: wrong action shape, non-finite actions, or a non-finite add-on reward
                or statistic (naming the task, the step and the env index).
        """
        if self._obs is None:
            raise RuntimeError("call VecEnv.reset() before step()")
        a = np.asarray(actions, dtype=np.float32)
        if a.shape != (self.num_envs, self.act_dim):
            raise TailorError(
                f"task {self.task.name!r}: actions must have shape "
                f"({self.num_envs}, {self.act_dim}), got {a.shape}"
            )
        # One sum tests all values for NaN/inf (an overflowing sum of finite values falls
        # through to the exact test); cheaper than np.isfinite(a).all() on this hot path.
        if not math.isfinite(np.add.reduce(a, axis=None)) and not np.isfinite(a).all():
            i = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
            raise TailorError(
                f"task {self.task.name!r}: non-finite action {a[i].tolist()} for "
                f"env {i} at vector step {self.num_steps + 1}"
            )
        # np.minimum/np.maximum == np.clip for finite values, without np.clip's Python overhead.
        a = np.minimum(np.maximum(a, self.action_low), self.action_high)

        obs64, basic, addon, stat, terminated, env_truncated = self._backend.step(a)
        self.num_steps += 1
        if not math.isfinite(np.add.reduce(addon) + np.add.reduce(stat)):
            self._check_finite("add-on reward", addon)
            self._check_finite("statistic", stat)
        self._elapsed += 1
        truncated = self._elapsed >= self._limit
        if env_truncated is not None:
            truncated |= env_truncated
        obs = final_obs = obs64.astype(np.float32)
        done = terminated | truncated
        if done.any():
            final_obs = obs.copy()
            rows = np.flatnonzero(done)
            obs[rows] = self._backend.reset(rows)
            self._elapsed[rows] = 0
        self._obs = obs
        return StepResult(
            obs=obs,
            basic=np.asarray(basic, dtype=np.float64),
            addon=addon,
            statistic=stat,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
        )

    def _check_finite(self, what: str, values: np.ndarray) -> None:
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TailorError(
                f"task {self.task.name!r}: {what} is {values[i]} (not finite) at vector step "
                f"{self.num_steps} (global env-step {self.num_steps * self.num_envs}), "
                f"env index {i}; check the task's add-on definition"
            )

    def get_state(self) -> EnvState | None:
        """The state the next :meth:`step` continues from, as ``(arrays, json)``: the backend's
        (MuJoCo integration state or point-mass positions, the reset generators), the episode
        step counters, the current observations and :attr:`num_steps`. ``None`` before
        :meth:`reset` or when the backend cannot capture its envs (the gymnasium fallback)."""
        if self._obs is None:
            return None
        inner = self._backend.get_state()
        if inner is None:
            return None
        arrays, info = inner
        arrays = {f"backend.{k}": v for k, v in arrays.items()}
        arrays.update(elapsed=self._elapsed.copy(), obs=self._obs.copy())
        info = {
            "backend": info,
            "task": self.task.name,
            "num_envs": self.num_envs,
            "num_steps": self.num_steps,
        }
        return arrays, info

    def set_state(self, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """Continue from :meth:`get_state`'s ``(arrays, info)`` instead of :meth:`reset`;
        returns the current observations ``[N, obs_dim]``.

        Raises:
            TailorError: the state is of another task, another number of envs, another backend,
                or does not fit these envs.
        """
        for key, mine in (("task", self.task.name), ("num_envs", self.num_envs)):
            if info.get(key) != mine:
                raise TailorError(
                    f"saved env state is of {key} {info.get(key)!r}, these envs have {mine!r}"
                )
        inner = info.get("backend")
        if not isinstance(inner, dict) or inner.get("backend") != self.backend:
            found = inner.get("backend") if isinstance(inner, dict) else None
            raise TailorError(f"saved env state is of backend {found!r}, not {self.backend!r}")
        prefix = "backend."
        own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        self._backend.set_state(own, inner)
        obs = np.zeros((self.num_envs, self.obs_dim), dtype=np.float32)
        for target, name in ((self._elapsed, "elapsed"), (obs, "obs")):
            value = arrays.get(name)
            if value is None or np.shape(value) != target.shape:
                raise TailorError(f"saved env state: {name!r} is missing or of the wrong shape")
            target[...] = value
        steps = info.get("num_steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise TailorError(f"saved env state: num_steps must be a count, got {steps!r}")
        self.num_steps = steps
        self._obs = obs
        return obs.copy()

    def close(self) -> None:
        """Release the envs and stop the worker threads (see ``num_workers``)."""
        self._backend.close()

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
