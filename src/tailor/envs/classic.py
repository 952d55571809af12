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

:func:`cartpole_step_batch` is gymnasium's CartPole step for a batch of states in numpy (the
simulator copy residual MCTS searches with), and :data:`BATCH_ADDONS` the add-on rewards of
tasks on that env for such a batch.

Importing this module also registers the highway-env tasks (``highway-keepright``,
``parking-boundary``, see :mod:`tailor.envs.highway`) without importing highway-env itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from tailor.envs.tasks import Task, get_task, register_task
from tailor.errors import TailorError

__all__ = [
    "BATCH_ADDONS",
    "CARTPOLE_ENV_ID",
    "CARTPOLE_STEPS",
    "SUCCESS_RULES",
    "THETA_MAX",
    "CartPoleBalanceEnv",
    "cartpole_step_batch",
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


def cartpole_step_batch(states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gymnasium's CartPole-v1 step (Euler integration, its constants) for a batch of states.

    Args:
        states: ``[N, 4]`` float64 ``(x, x_dot, theta, theta_dot)``, as ``env.unwrapped.state``.
        actions: ``[N]`` in ``{0, 1}`` (push left / right).

    Returns:
        ``(next_states [N, 4] float64, terminated [N] bool)``; the observation is
        ``next_states.astype(float32)``, as the env returns it. Agrees with the env's own step to
        float64 rounding (tested).
    """
    # The constants of gymnasium.envs.classic_control.cartpole.CartPoleEnv.__init__.
    gravity, masspole, total_mass, length, force_mag, tau = 9.8, 0.1, 1.1, 0.5, 10.0, 0.02
    polemass_length = masspole * length
    x, x_dot, theta, theta_dot = (states[:, k] for k in range(4))
    force = np.where(np.asarray(actions) == 1, force_mag, -force_mag)
    costheta, sintheta = np.cos(theta), np.sin(theta)
    temp = (force + polemass_length * np.square(theta_dot) * sintheta) / total_mass
    thetaacc = (gravity * sintheta - costheta * temp) / (
        length * (4.0 / 3.0 - masspole * np.square(costheta) / total_mass)
    )
    xacc = temp - polemass_length * thetaacc * costheta / total_mass
    nxt = np.stack(
        [x + tau * x_dot, x_dot + tau * xacc, theta + tau * theta_dot, theta_dot + tau * thetaacc],
        axis=1,
    )
    theta_max = 12 * 2 * math.pi / 360  # the env's threshold (THETA_MAX rounds it)
    terminated = (np.abs(nxt[:, 0]) > X_MAX) | (np.abs(nxt[:, 2]) > theta_max)
    return nxt, terminated


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
# from-scratch baseline. CartPole `residual`: alpha_hat = alpha and omega' = 0.4 alpha, i.e. the
# customized policy targets the soft-optimal policy of 0.4 r + r_R. The basic reward's action
# gaps are ~10x the add-on's (a wrong push costs ~0.5 of basic return, -|x|/2.4 moves by
# ~0.2), so with omega = 1 the optimum of r + r_R barely re-centres the cart; omega = 0.4 keeps
# the pole up (0.4 * ~0.85 per step still dwarfs the add-on) while making centring worth it
# (results/rql/README.md).
CARTPOLE_COEFFICIENTS = {
    "soft": {"alpha": 0.05},
    "full": {"alpha": 0.05},
    "residual": {"omega_prime": 0.02, "alpha_hat": 0.05},
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

BatchAddonFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

# The add-on reward of a task on tailor/CartPoleBalance-v1 for a batch: (next states [N, 4],
# actions [N]) -> [N]. Must agree with the task's `addon` (tested); residual MCTS uses it.
BATCH_ADDONS: dict[str, BatchAddonFn] = {
    "cartpole-centered": lambda states, actions: -np.abs(states[:, 0]) / X_MAX,
}

SuccessFn = Callable[[bool, bool, int, dict], bool]

SUCCESS_RULES: dict[str, SuccessFn] = {
    # Survived: the episode ended by the 500-step limit, never by a fall or leaving the track.
    "cartpole-centered": lambda terminated, truncated, length, info: not terminated,
    # Reached the flag: MountainCar terminates only at the goal (position >= 0.45).
    "mountaincar-noleft": lambda terminated, truncated, length, info: bool(terminated),
    # No crash (highway-env terminates only on a crash here; the 40 s limit truncates).
    "highway-keepright": lambda terminated, truncated, length, info: (
        not info.get("crashed", terminated)
    ),
    # Parked: highway-env's is_success (weighted distance to the goal < 0.12), not crashed.
    "parking-boundary": lambda terminated, truncated, length, info: (
        bool(info.get("is_success", False)) and not info.get("crashed", False)
    ),
}


def success(
    task: Task | str,
    terminated: bool,
    truncated: bool,
    length: int,
    info: dict | None = None,
) -> bool:
    """Whether an episode of ``task`` that ended with these flags counts as a success.

    ``info`` is the env's info dict of the last step (the highway-env tasks read ``crashed`` /
    ``is_success`` from it). Tasks without a rule of their own count an episode as a success
    when it was not terminated (i.e. it ran to its time limit).

    Raises:
        TailorError: unknown task.
    """
    name = get_task(task).name
    rule = SUCCESS_RULES.get(name)
    if rule is None:
        return not terminated
    return bool(rule(bool(terminated), bool(truncated), int(length), dict(info or {})))


def _register() -> None:
    for task in TASKS:
        try:
            get_task(task.name)
        except TailorError:
            register_task(task)


_register()

# The highway-env tasks register here too (their module imports highway-env only when one of
# their envs is made), so `import tailor.envs` lists them without requiring highway-env.
from tailor.envs import highway as _highway  # noqa: E402, F401
