"""A tiny 2-D point mass: a pure-numpy gymnasium env for fast learning tests.

The point starts at a uniformly random position in ``[-1, 1]^2`` at rest and is pushed by a force
``a in [-1, 1]^2``; the basic reward is the negative distance to the goal at the origin. One
semi-implicit Euler step with linear damping (``dt = 0.1``, ``damping = 1``, so the top speed is
``1`` per second = ``0.1`` per step)::

    v' = v + dt * (a - damping * v)
    p' = clip(p + dt * v', -BOUND, BOUND)       (a wall: the velocity across it is zeroed)
    r  = -||p' - goal||

Episodes last :data:`MAX_EPISODE_STEPS` = 100 steps and never terminate early. A proportional
controller ``a = -k p`` solves it, so PPO learns it in a few thousand steps. The dynamics live in
the batched pure function :func:`pointmass_step`, shared by the gymnasium env (batch of 1) and the
vectorized fast path of :class:`tailor.envs.VecEnv`, so both step bit-identically.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "BOUND",
    "DAMPING",
    "DT",
    "ENV_ID",
    "GOAL",
    "MAX_EPISODE_STEPS",
    "PointMassEnv",
    "pointmass_obs",
    "pointmass_reset",
    "pointmass_step",
]

ENV_ID = "tailor/PointMass-v0"
DT = 0.1
DAMPING = 1.0
BOUND = 2.0
GOAL = np.zeros(2)
MAX_EPISODE_STEPS = 100


def pointmass_step(
    pos: np.ndarray, vel: np.ndarray, force: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of the point mass, batched.

    Args:
        pos: positions ``[N, 2]``.
        vel: velocities ``[N, 2]``.
        force: forces ``[N, 2]``, already clipped to ``[-1, 1]``.

    Returns:
        ``(pos' [N, 2], vel' [N, 2], reward [N])`` with ``reward = -||pos' - GOAL||``.
    """
    vel = vel + DT * (force - DAMPING * vel)
    moved = pos + DT * vel
    pos = np.clip(moved, -BOUND, BOUND)
    vel = np.where(pos != moved, 0.0, vel)  # hit the wall: stop along that axis
    reward = -np.sqrt(np.sum(np.square(pos - GOAL), axis=-1))
    return pos, vel, reward


def pointmass_reset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Initial state ``(pos [2], vel [2])``: uniform position in ``[-1, 1]^2``, at rest."""
    return rng.uniform(-1.0, 1.0, size=2), np.zeros(2)


def pointmass_obs(pos: np.ndarray, vel: np.ndarray) -> np.ndarray:
    """Observation ``[..., 4] = (x, y, vx, vy)``."""
    return np.concatenate([pos, vel], axis=-1)


class PointMassEnv(gym.Env):
    """Gymnasium env of the point mass (see the module docstring).

    Attributes:
        pos: current position ``[2]`` (what the ``pointmass`` task's add-on reads).
        vel: current velocity ``[2]``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.pos = np.zeros(2)
        self.vel = np.zeros(2)

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos, self.vel = pointmass_reset(self.np_random)
        return pointmass_obs(self.pos, self.vel), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        # Like MuJoCo's ctrlrange, the env itself clips: a policy's raw Gaussian sample is valid.
        force = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        pos, vel, reward = pointmass_step(self.pos[None], self.vel[None], force[None])
        self.pos, self.vel = pos[0], vel[0]
        return pointmass_obs(self.pos, self.vel), float(reward[0]), False, False, {}


if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID,
        entry_point="tailor.envs.pointmass:PointMassEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )
