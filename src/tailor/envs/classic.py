"""The Residual Q-Learning tasks (reference section 4), registered with the other tasks.

Importing :mod:`tailor.envs` registers:

* ``cartpole-centered``: env ``tailor/CartPoleBalance-v1`` (CartPole, 500 steps) whose basic
  reward is ``1 - 10|theta|/0.2095`` per step; add-on ``-|x| / 2.4`` (stay centred); success:
  survived all 500 steps (not terminated); statistic: mean ``|x|``.
* ``mountaincar-noleft``: ``MountainCarContinuous-v0`` (gymnasium's reward, 999 steps); add-on
  ``-0.1 if a < 0`` (avoid pushing left); success: reached the goal (terminated); statistic:
  fraction of steps with a left push.

The basic reward of ``cartpole-centered`` replaces gymnasium's constant ``+1``: it rewards an
upright pole, ``1 - 10 |theta| / theta_max`` with ``theta_max = 0.2095`` rad (the termination
angle), computed from the angle *after* the step, on every step including the terminating one.

``success(task_name, terminated, truncated, length)`` gives the success rule of each task.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from tailor.envs.tasks import Task, get_task, register_task
from tailor.errors import TailorError

__all__ = [
    "CARTPOLE_ENV_ID",
    "CARTPOLE_STEPS",
    "SUCCESS_RULES",
    "THETA_MAX",
    "CartPoleBalanceEnv",
    "success",
]

CARTPOLE_ENV_ID = "tailor/CartPoleBalance-v1"
CARTPOLE_STEPS = 500
THETA_MAX = 0.2095  # rad, CartPole's termination angle (12 degrees)
X_MAX = 2.4  # CartPole's termination position


class CartPoleBalanceEnv(CartPoleEnv):
    """CartPole-v1 whose reward is ``1 - 10 |theta| / 0.2095`` (the RQL paper's basic reward).

    Dynamics, observations, termination and the reset distribution are gymnasium's.
    """

    def step(self, action):  # type: ignore[override]
        obs, _, terminated, truncated, info = super().step(action)
        theta = float(self.state[2])
        return obs, 1.0 - 10.0 * abs(theta) / THETA_MAX, terminated, truncated, info


if CARTPOLE_ENV_ID not in gym.registry:
    gym.register(
        id=CARTPOLE_ENV_ID,
        entry_point=CartPoleBalanceEnv,
        max_episode_steps=CARTPOLE_STEPS,
    )


def _cart_x(env, action, info) -> float:
    return float(env.unwrapped.state[0])


def _left(action) -> bool:
    return float(np.asarray(action, dtype=np.float64).reshape(-1)[0]) < 0.0


# Our coefficients (not the paper's: the public code fixed omega' = alpha_hat = 1 with its own
# reward scales). `soft` / `full`: the temperature alpha of prior training and of the
# from-scratch baseline; `residual`: omega' = alpha (omega = 1) and alpha_hat = alpha, so the
# customized policy targets the soft-optimal policy of r + r_R at the prior's temperature.
CARTPOLE_COEFFICIENTS = {
    "soft": {"alpha": 0.05},
    "full": {"alpha": 0.05},
    "residual": {"omega_prime": 0.05, "alpha_hat": 0.05},
}
MOUNTAINCAR_COEFFICIENTS = {
    "soft": {"alpha": 0.1},
    "full": {"alpha": 0.1},
    "residual": {"omega_prime": 0.1, "alpha_hat": 0.1},
}

TASKS = (
    Task(
        name="cartpole-centered",
        env_id=CARTPOLE_ENV_ID,
        addon=lambda env, action, info: -abs(_cart_x(env, action, info)) / X_MAX,
        statistic=lambda env, action, info: abs(_cart_x(env, action, info)),
        description="CartPole keeps the pole upright (basic 1 - 10|theta|/0.2095 per step) "
        "while staying near the centre of the track",
        statistic_name="mean |x|",
        coefficients=CARTPOLE_COEFFICIENTS,
        addon_formula="-|x| / 2.4 (x = cart position)",
    ),
    Task(
        name="mountaincar-noleft",
        env_id="MountainCarContinuous-v0",
        addon=lambda env, action, info: -0.1 if _left(action) else 0.0,
        statistic=lambda env, action, info: 1.0 if _left(action) else 0.0,
        description="MountainCarContinuous reaches the flag while avoiding left pushes",
        statistic_name="fraction of left pushes",
        coefficients=MOUNTAINCAR_COEFFICIENTS,
        addon_formula="-0.1 if a < 0 else 0",
    ),
)

SuccessFn = Callable[[bool, bool, int], bool]

SUCCESS_RULES: dict[str, SuccessFn] = {
    # Survived: the episode ended by the 500-step limit, never by a fall or leaving the track.
    "cartpole-centered": lambda terminated, truncated, length: not terminated,
    # Reached the flag: MountainCar terminates only at the goal (position >= 0.45).
    "mountaincar-noleft": lambda terminated, truncated, length: bool(terminated),
}


def success(task: Task | str, terminated: bool, truncated: bool, length: int) -> bool:
    """Whether an episode of ``task`` that ended with these flags counts as a success.

    Tasks without a rule of their own count an episode as a success when it was not terminated
    (i.e. it ran to its time limit).

    Raises:
        TailorError: unknown task.
    """
    name = get_task(task).name
    rule = SUCCESS_RULES.get(name)
    if rule is None:
        return not terminated
    return bool(rule(bool(terminated), bool(truncated), int(length)))


def _register() -> None:
    for task in TASKS:
        try:
            get_task(task.name)
        except TailorError:
            register_task(task)


_register()
