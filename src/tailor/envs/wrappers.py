"""``make_env``: one gymnasium env of a task, reporting basic reward, add-on and statistic."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from tailor.envs.tasks import Task, get_task
from tailor.errors import TailorError

__all__ = ["TaskInfoWrapper", "make_env"]


class TaskInfoWrapper(gym.Wrapper):
    """Clip the action, step, and add the task's three reward parts to ``info``.

    ``step`` returns the env's own (basic) reward and sets, on every step,
    ``info["basic_reward"]``, ``info["addon_reward"]`` and ``info["statistic"]`` (floats).
    The action is clipped to the action space first (a policy's raw Gaussian sample is valid
    input, as for MuJoCo's ``ctrlrange``), and the *clipped* action is what the env executes
    and what ``task.addon`` / ``task.statistic`` receive.

    Args:
        env: the gymnasium env of ``task.env_id``.
        task: the task.
        check_finite: raise :class:`TailorError` when the add-on reward or statistic is NaN or
            infinite. :class:`VecEnv` turns it off and checks itself (to name the env index).
    """

    def __init__(self, env: gym.Env, task: Task, check_finite: bool = True) -> None:
        super().__init__(env)
        self.task = task
        self.check_finite = check_finite
        self.episode_step = 0
        space = env.action_space
        self._box = isinstance(space, gym.spaces.Box)
        if self._box:
            self._low, self._high, self._dtype = space.low, space.high, space.dtype

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self.episode_step = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        if self._box:
            action = np.clip(np.asarray(action, dtype=self._dtype), self._low, self._high)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_step += 1
        info = dict(info)
        info["basic_reward"] = float(reward)
        info["addon_reward"] = self._term("addon", action, info)
        info["statistic"] = self._term("statistic", action, info)
        return obs, reward, terminated, truncated, info

    def _term(self, part: str, action: Any, info: dict) -> float:
        fn = getattr(self.task, part)
        try:
            value = float(fn(self.env, action, info))
        except Exception as exc:  # user code: say which task and step, not a traceback
            raise TailorError(
                f"task {self.task.name!r}: its {part} function failed at step "
                f"{self.episode_step} of the episode: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if self.check_finite and not math.isfinite(value):
            raise TailorError(
                f"task {self.task.name!r}: {part} is {value} (not finite) at step "
                f"{self.episode_step} of the episode"
            )
        return value


def make_env(task: Task | str, **gym_kwargs: Any) -> gym.Env:
    """The task's gymnasium env, wrapped by :class:`TaskInfoWrapper`.

    ``gymnasium.make(task.env_id, **task.env_kwargs, **gym_kwargs)`` (``gym_kwargs`` wins, e.g.
    ``render_mode="rgb_array"``), so the time limit is the env's registered one (1000 steps for
    the MuJoCo tasks) and ``truncated`` marks it.

    Raises:
        TailorError: unknown task, or gymnasium cannot make the env.
    """
    task = get_task(task)
    kwargs = {**task.env_kwargs, **gym_kwargs}
    try:
        env = gym.make(task.env_id, **kwargs)
    except Exception as exc:
        raise TailorError(
            f"task {task.name!r}: cannot make gymnasium env {task.env_id!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return TaskInfoWrapper(env, task)
