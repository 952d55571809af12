"""The MuJoCo fast path's per-robot formulas: gymnasium v5's ``_get_obs``, ``_get_rew``, ``info``,
termination and ``reset_model`` as batched numpy, one :class:`RobotSpec` per env class.

:class:`tailor.envs.backends.SpecBackend` steps one ``MjData`` per env and copies, after every
step and reset, the ``MjData`` arrays a spec names (``fields``) into batch arrays ``b[name]`` of
shape ``[N, *shape]``; the spec's functions compute everything else from those. Each function's
first argument ``u`` is the gymnasium env instance built with the task's ``env_kwargs`` (never
stepped): its weights, ranges, noise scale, ``init_qpos``/``init_qvel``, ``model`` and ``dt``
are read from it, so ``env_kwargs`` are honoured. The formulas repeat gymnasium's operation
order (float32 control costs where gymnasium squares the float32 action, float64 where it
squares ``data.ctrl``; strict or non-strict bounds as written there), which
``tests/test_envs.py`` checks step for step against gymnasium.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
from gymnasium.envs.mujoco.humanoidstandup_v5 import HumanoidStandupEnv
from gymnasium.envs.mujoco.inverted_double_pendulum_v5 import InvertedDoublePendulumEnv
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from gymnasium.envs.mujoco.pusher_v5 import PusherEnv
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
from gymnasium.envs.mujoco.swimmer_v5 import SwimmerEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

__all__ = ["ROBOTS", "Batch", "RobotSpec"]

# name -> [N, *shape] float64: the MjData arrays of every env after the last step / reset
Batch = dict[str, np.ndarray]
# (reward [N], terminated [N] bool, info {name: [N] or [N, k]})
RewardOut = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]


@dataclass(frozen=True)
class RobotSpec:
    """What makes one gymnasium MuJoCo v5 env, in batched form.

    Attributes:
        fields: ``MjData`` attributes copied into the batch besides ``qpos`` and ``qvel``
            (e.g. ``"cfrc_ext"`` -> ``b["cfrc_ext"]`` ``[N, nbody, 6]``).
        reset: ``reset(u, rng) -> (qpos [nq], qvel [nv])``, ``reset_model``'s draws from the
            env's generator, in gymnasium's order.
        before: ``before(u, b) -> array``, what the reward needs from before a step (``[N]`` or
            ``[N, 2]`` positions), or ``None``.
        obs: ``obs(u, b) -> [N, obs_dim]``, ``_get_obs``.
        reward: ``reward(u, b, action [N, act_dim] float32, before) -> (reward [N], terminated
            [N] bool, info)``: the step's reward, termination and every key of its ``info``.
        rne_post: run ``mj_rnePostConstraint`` after each step (as gymnasium always does): the
            spec reads ``cfrc_ext``. Without it the fast path skips that call, which changes no
            state, unless a task's scalar add-on (which may read any ``MjData`` field) runs.
    """

    fields: tuple[str, ...]
    reset: Callable[[Any, np.random.Generator], tuple[np.ndarray, np.ndarray]]
    before: Callable[[Any, Batch], Any]
    obs: Callable[[Any, Batch], np.ndarray]
    reward: Callable[[Any, Batch, np.ndarray, Any], RewardOut]
    rne_post: bool = False


# ---------------------------------------------------------------------------------------------
# Shared pieces


def uniform_reset(u: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """qpos and qvel both ``init + U(-s, s)`` (Walker2d, Swimmer, Humanoid(Standup), pendulum)."""
    s = u._reset_noise_scale
    qpos = u.init_qpos + rng.uniform(low=-s, high=s, size=u.model.nq)
    qvel = u.init_qvel + rng.uniform(low=-s, high=s, size=u.model.nv)
    return qpos, qvel


def _uniform_normal_reset(u: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """qpos ``init + U(-s, s)``, qvel ``init + N(0, 1) * s`` (HalfCheetah, Ant,
    InvertedDoublePendulum)."""
    s = u._reset_noise_scale
    qpos = u.init_qpos + rng.uniform(low=-s, high=s, size=u.model.nq)
    qvel = u.init_qvel + rng.standard_normal(u.model.nv) * s
    return qpos, qvel


def _no_before(u: Any, b: Batch) -> None:
    return None


def _x_before(u: Any, b: Batch) -> np.ndarray:
    return b["qpos"][:, 0].copy()


def _xy_before(u: Any, b: Batch) -> np.ndarray:
    return b["qpos"][:, :2].copy()


def _action_cost(weight: float, action: np.ndarray) -> np.ndarray:
    """``weight * sum(a^2)`` over the float32 action: float32, as gymnasium's ``control_cost``."""
    return weight * np.add.reduce(np.square(action), axis=1)


def _ctrl_cost(weight: float, action: np.ndarray) -> np.ndarray:
    """``weight * sum(ctrl^2)`` over ``data.ctrl`` (the action as float64): Humanoid's."""
    return weight * np.add.reduce(np.square(action.astype(np.float64)), axis=1)


def _norm(v: np.ndarray) -> np.ndarray:
    """Row norms ``[N]`` of ``v [N, k]``."""
    return np.sqrt(np.add.reduce(v * v, axis=1))


def _terminated(u: Any, healthy: np.ndarray) -> np.ndarray:
    return ~healthy if u._terminate_when_unhealthy else np.zeros_like(healthy)


def _body(u: Any, name: str) -> int:
    return int(u.model.body(name).id)


# ---------------------------------------------------------------------------------------------
# HalfCheetah, Hopper, Walker2d, Swimmer


def _cheetah_obs(u: Any, b: Batch) -> np.ndarray:
    pos = b["qpos"][:, 1:] if u._exclude_current_positions_from_observation else b["qpos"]
    return np.concatenate([pos, b["qvel"]], axis=1)


def _cheetah_reward(u: Any, b: Batch, action: np.ndarray, x_before: np.ndarray) -> RewardOut:
    qpos = b["qpos"]
    x_velocity = (qpos[:, 0] - x_before) / u.dt
    forward = u._forward_reward_weight * x_velocity
    ctrl_cost = _action_cost(u._ctrl_cost_weight, action)
    info = {
        "x_position": qpos[:, 0].copy(),
        "x_velocity": x_velocity,
        "reward_forward": forward,
        "reward_ctrl": -ctrl_cost,
    }
    return forward - ctrl_cost, np.zeros(len(qpos), dtype=bool), info


def _walker_obs(u: Any, b: Batch) -> np.ndarray:
    """Walker2d and Hopper: ``(qpos[1:], clip(qvel, -10, 10))``."""
    pos = b["qpos"][:, 1:] if u._exclude_current_positions_from_observation else b["qpos"]
    return np.concatenate([pos, np.clip(b["qvel"], -10, 10)], axis=1)


def _walker_healthy(u: Any, b: Batch) -> np.ndarray:
    """Strict z and angle ranges on ``qpos[1]``, ``qpos[2]``; Hopper also its state range on
    ``(qpos[2:], qvel)``."""
    qpos = b["qpos"]
    z, angle = qpos[:, 1], qpos[:, 2]
    zlo, zhi = u._healthy_z_range
    alo, ahi = u._healthy_angle_range
    healthy = (zlo < z) & (z < zhi) & (alo < angle) & (angle < ahi)
    if isinstance(u, HopperEnv):
        lo, hi = u._healthy_state_range
        state = np.concatenate([qpos[:, 2:], b["qvel"]], axis=1)
        healthy &= np.all((lo < state) & (state < hi), axis=1)
    return healthy


def _walker_reward(u: Any, b: Batch, action: np.ndarray, x_before: np.ndarray) -> RewardOut:
    """Walker2d and Hopper."""
    qpos = b["qpos"]
    x_velocity = (qpos[:, 0] - x_before) / u.dt
    healthy = _walker_healthy(u, b)
    forward = u._forward_reward_weight * x_velocity
    survive = healthy * u._healthy_reward
    ctrl_cost = _action_cost(u._ctrl_cost_weight, action)
    reward = forward + survive - ctrl_cost
    info = {
        "x_position": qpos[:, 0].copy(),
        "z_distance_from_origin": qpos[:, 1] - u.init_qpos[1],
        "x_velocity": x_velocity,
        "reward_forward": forward,
        "reward_ctrl": -ctrl_cost,
        "reward_survive": survive,
    }
    return reward, _terminated(u, healthy), info


def _swimmer_obs(u: Any, b: Batch) -> np.ndarray:
    pos = b["qpos"][:, 2:] if u._exclude_current_positions_from_observation else b["qpos"]
    return np.concatenate([pos, b["qvel"]], axis=1)


def _swimmer_reward(u: Any, b: Batch, action: np.ndarray, xy_before: np.ndarray) -> RewardOut:
    xy = b["qpos"][:, :2].copy()
    xy_velocity = (xy - xy_before) / u.dt
    forward = u._forward_reward_weight * xy_velocity[:, 0]
    ctrl_cost = _action_cost(u._ctrl_cost_weight, action)
    info = {
        "x_position": xy[:, 0],
        "y_position": xy[:, 1],
        "distance_from_origin": _norm(xy),
        "x_velocity": xy_velocity[:, 0],
        "y_velocity": xy_velocity[:, 1],
        "reward_forward": forward,
        "reward_ctrl": -ctrl_cost,
    }
    return forward - ctrl_cost, np.zeros(len(xy), dtype=bool), info


# ---------------------------------------------------------------------------------------------
# Ant


def _ant_before(u: Any, b: Batch) -> np.ndarray:
    """The main body's x, y ``[N, 2]``."""
    return b["xpos"][:, _body(u, u._main_body), :2].copy()


def _ant_contact(u: Any, b: Batch) -> np.ndarray:
    lo, hi = u._contact_force_range
    return np.clip(b["cfrc_ext"], lo, hi)


def _ant_obs(u: Any, b: Batch) -> np.ndarray:
    parts = [b["qpos"][:, 2:] if u._exclude_current_positions_from_observation else b["qpos"]]
    parts.append(b["qvel"])
    if u._include_cfrc_ext_in_observation:
        parts.append(_ant_contact(u, b)[:, 1:].reshape(len(b["qpos"]), -1))
    return np.concatenate(parts, axis=1)


def _ant_reward(u: Any, b: Batch, action: np.ndarray, xy_before: np.ndarray) -> RewardOut:
    qpos, qvel = b["qpos"], b["qvel"]
    xy_velocity = (_ant_before(u, b) - xy_before) / u.dt
    x_velocity = xy_velocity[:, 0]
    zlo, zhi = u._healthy_z_range
    z = qpos[:, 2]
    finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
    healthy = finite & (zlo <= z) & (z <= zhi)
    contact = _ant_contact(u, b).reshape(len(qpos), -1)
    contact_cost = u._contact_cost_weight * np.sum(np.square(contact), axis=1)
    forward = x_velocity * u._forward_reward_weight
    survive = healthy * u._healthy_reward
    ctrl_cost = _action_cost(u._ctrl_cost_weight, action)
    reward = (forward + survive) - (ctrl_cost + contact_cost)
    info = {
        "x_position": qpos[:, 0].copy(),
        "y_position": qpos[:, 1].copy(),
        "distance_from_origin": _norm(qpos[:, :2]),
        "x_velocity": x_velocity,
        "y_velocity": xy_velocity[:, 1],
        "reward_forward": forward,
        "reward_ctrl": -ctrl_cost,
        "reward_contact": -contact_cost,
        "reward_survive": survive,
    }
    return reward, _terminated(u, healthy), info


# ---------------------------------------------------------------------------------------------
# InvertedPendulum, InvertedDoublePendulum


def _pendulum_obs(u: Any, b: Batch) -> np.ndarray:
    return np.concatenate([b["qpos"], b["qvel"]], axis=1)


def _pendulum_reward(u: Any, b: Batch, action: np.ndarray, before: None) -> RewardOut:
    obs = _pendulum_obs(u, b)
    terminated = ~np.isfinite(obs).all(axis=1) | (np.abs(obs[:, 1]) > 0.2)
    reward = (~terminated).astype(np.int64)
    return reward, terminated, {"reward_survive": reward}


def _double_pendulum_obs(u: Any, b: Batch) -> np.ndarray:
    qpos = b["qpos"]
    parts = [
        qpos[:, :1],
        np.sin(qpos[:, 1:]),
        np.cos(qpos[:, 1:]),
        np.clip(b["qvel"], -10, 10),
        np.clip(b["qfrc_constraint"], -10, 10)[:, :1],
    ]
    return np.concatenate(parts, axis=1)


def _double_pendulum_reward(u: Any, b: Batch, action: np.ndarray, before: None) -> RewardOut:
    site = b["site_xpos"][:, 0]
    x, y = site[:, 0], site[:, 2]
    terminated = y <= 1
    v1, v2 = b["qvel"][:, 1], b["qvel"][:, 2]
    dist_penalty = 0.01 * x**2 + (y - 2) ** 2
    vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
    alive = u._healthy_reward * (~terminated).astype(np.int64)
    info = {
        "reward_survive": alive,
        "distance_penalty": -dist_penalty,
        "velocity_penalty": -vel_penalty,
    }
    return alive - dist_penalty - vel_penalty, terminated, info


# ---------------------------------------------------------------------------------------------
# Reacher, Pusher


def _arm_qvel(u: Any, rng: np.random.Generator, still: int) -> np.ndarray:
    """Reacher/Pusher qvel: ``init + U(-0.005, 0.005)``, the last ``still`` entries zero."""
    qvel = u.init_qvel + rng.uniform(low=-0.005, high=0.005, size=u.model.nv)
    qvel[-still:] = 0
    return qvel


def _reacher_reset(u: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Joint noise ``U(-0.1, 0.1)``, a goal drawn in the disc of radius 0.2, qvel noise."""
    qpos = rng.uniform(low=-0.1, high=0.1, size=u.model.nq) + u.init_qpos
    while True:
        goal = rng.uniform(low=-0.2, high=0.2, size=2)
        if np.linalg.norm(goal) < 0.2:
            break
    qpos[-2:] = goal
    return qpos, _arm_qvel(u, rng, 2)


def _reacher_vec(u: Any, b: Batch) -> np.ndarray:
    """``fingertip - target`` body positions ``[N, 3]``."""
    xpos = b["xpos"]
    return xpos[:, _body(u, "fingertip")] - xpos[:, _body(u, "target")]


def _reacher_obs(u: Any, b: Batch) -> np.ndarray:
    qpos = b["qpos"]
    theta = qpos[:, :2]
    parts = [np.cos(theta), np.sin(theta), qpos[:, 2:], b["qvel"][:, :2], _reacher_vec(u, b)[:, :2]]
    return np.concatenate(parts, axis=1)


def _reacher_reward(u: Any, b: Batch, action: np.ndarray, before: None) -> RewardOut:
    reward_dist = -_norm(_reacher_vec(u, b)) * u._reward_dist_weight
    reward_ctrl = -np.add.reduce(np.square(action), axis=1) * u._reward_control_weight
    info = {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl}
    return reward_dist + reward_ctrl, np.zeros(len(action), dtype=bool), info


def _pusher_reset(u: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The cylinder drawn until farther than 0.17 from the goal (0, 0); qvel noise."""
    qpos = u.init_qpos.copy()
    goal = np.asarray([0, 0])
    while True:
        cylinder = np.concatenate(
            [rng.uniform(low=-0.3, high=0, size=1), rng.uniform(low=-0.2, high=0.2, size=1)]
        )
        if np.linalg.norm(cylinder - goal) > 0.17:
            break
    qpos[-4:-2] = cylinder
    qpos[-2:] = goal
    return qpos, _arm_qvel(u, rng, 4)


def _pusher_obs(u: Any, b: Batch) -> np.ndarray:
    xpos = b["xpos"]
    bodies = [xpos[:, _body(u, name)] for name in ("tips_arm", "object", "goal")]
    return np.concatenate([b["qpos"][:, :7], b["qvel"][:, :7], *bodies], axis=1)


def _pusher_reward(u: Any, b: Batch, action: np.ndarray, before: None) -> RewardOut:
    xpos = b["xpos"]
    obj = xpos[:, _body(u, "object")]
    reward_near = -_norm(obj - xpos[:, _body(u, "tips_arm")]) * u._reward_near_weight
    reward_dist = -_norm(obj - xpos[:, _body(u, "goal")]) * u._reward_dist_weight
    reward_ctrl = -np.add.reduce(np.square(action), axis=1) * u._reward_control_weight
    info = {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl, "reward_near": reward_near}
    reward = reward_dist + reward_ctrl + reward_near
    return reward, np.zeros(len(action), dtype=bool), info


# ---------------------------------------------------------------------------------------------
# Humanoid, HumanoidStandup

_HUMANOID_FIELDS = (
    "cinert",
    "cvel",
    "qfrc_actuator",
    "cfrc_ext",
    "xipos",
    "ten_length",
    "ten_velocity",
)


def _humanoid_obs(u: Any, b: Batch) -> np.ndarray:
    n = len(b["qpos"])
    parts = [b["qpos"][:, 2:] if u._exclude_current_positions_from_observation else b["qpos"]]
    parts.append(b["qvel"])
    if u._include_cinert_in_observation is True:
        parts.append(b["cinert"][:, 1:].reshape(n, -1))
    if u._include_cvel_in_observation is True:
        parts.append(b["cvel"][:, 1:].reshape(n, -1))
    if u._include_qfrc_actuator_in_observation is True:
        parts.append(b["qfrc_actuator"][:, 6:])
    if u._include_cfrc_ext_in_observation is True:
        parts.append(b["cfrc_ext"][:, 1:].reshape(n, -1))
    return np.concatenate(parts, axis=1)


def _mass_center(u: Any, b: Batch) -> np.ndarray:
    """gymnasium's ``mass_center``: the mass-weighted mean of ``xipos``, its x and y ``[N, 2]``."""
    mass = u.model.body_mass
    return (np.einsum("b,nbj->nj", mass, b["xipos"]) / mass.sum())[:, :2]


def _contact_sq(b: Batch) -> np.ndarray:
    """``sum(cfrc_ext^2)`` over all bodies ``[N]``."""
    n = len(b["cfrc_ext"])
    return np.add.reduce(np.square(b["cfrc_ext"].reshape(n, -1)), axis=1)


def _humanoid_reward(u: Any, b: Batch, action: np.ndarray, xy_before: np.ndarray) -> RewardOut:
    qpos = b["qpos"]
    xy_velocity = (_mass_center(u, b) - xy_before) / u.dt
    zlo, zhi = u._healthy_z_range
    healthy = (zlo < qpos[:, 2]) & (qpos[:, 2] < zhi)
    forward = u._forward_reward_weight * xy_velocity[:, 0]
    survive = healthy * u._healthy_reward
    ctrl_cost = _ctrl_cost(u._ctrl_cost_weight, action)
    contact_cost = np.clip(u._contact_cost_weight * _contact_sq(b), *u._contact_cost_range)
    reward = (forward + survive) - (ctrl_cost + contact_cost)
    info = {
        "x_position": qpos[:, 0].copy(),
        "y_position": qpos[:, 1].copy(),
        "tendon_length": b["ten_length"].copy(),
        "tendon_velocity": b["ten_velocity"].copy(),
        "distance_from_origin": _norm(qpos[:, :2]),
        "x_velocity": xy_velocity[:, 0],
        "y_velocity": xy_velocity[:, 1],
        "reward_survive": survive,
        "reward_forward": forward,
        "reward_ctrl": -ctrl_cost,
        "reward_contact": -contact_cost,
    }
    return reward, _terminated(u, healthy), info


def _standup_reward(u: Any, b: Batch, action: np.ndarray, before: None) -> RewardOut:
    qpos = b["qpos"]
    uph_cost = (qpos[:, 2] - 0) / u.model.opt.timestep
    quad_ctrl_cost = _ctrl_cost(u._ctrl_cost_weight, action)
    impact = np.clip(u._impact_cost_weight * _contact_sq(b), *u._impact_cost_range)
    reward = uph_cost - quad_ctrl_cost - impact + 1
    info = {
        "x_position": qpos[:, 0].copy(),
        "y_position": qpos[:, 1].copy(),
        "z_distance_from_origin": qpos[:, 2] - u.init_qpos[2],
        "tendon_length": b["ten_length"].copy(),
        "tendon_velocity": b["ten_velocity"].copy(),
        "reward_linup": uph_cost,
        "reward_quadctrl": -quad_ctrl_cost,
        "reward_impact": -impact,
    }
    return reward, np.zeros(len(qpos), dtype=bool), info


# ---------------------------------------------------------------------------------------------

ROBOTS: dict[type, RobotSpec] = {
    HalfCheetahEnv: RobotSpec((), _uniform_normal_reset, _x_before, _cheetah_obs, _cheetah_reward),
    HopperEnv: RobotSpec((), uniform_reset, _x_before, _walker_obs, _walker_reward),
    AntEnv: RobotSpec(
        ("cfrc_ext", "xpos"), _uniform_normal_reset, _ant_before, _ant_obs, _ant_reward, True
    ),
    Walker2dEnv: RobotSpec((), uniform_reset, _x_before, _walker_obs, _walker_reward),
    SwimmerEnv: RobotSpec((), uniform_reset, _xy_before, _swimmer_obs, _swimmer_reward),
    InvertedPendulumEnv: RobotSpec((), uniform_reset, _no_before, _pendulum_obs, _pendulum_reward),
    InvertedDoublePendulumEnv: RobotSpec(
        ("site_xpos", "qfrc_constraint"),
        _uniform_normal_reset,
        _no_before,
        _double_pendulum_obs,
        _double_pendulum_reward,
    ),
    ReacherEnv: RobotSpec(("xpos",), _reacher_reset, _no_before, _reacher_obs, _reacher_reward),
    PusherEnv: RobotSpec(("xpos",), _pusher_reset, _no_before, _pusher_obs, _pusher_reward),
    HumanoidEnv: RobotSpec(
        _HUMANOID_FIELDS, uniform_reset, _mass_center, _humanoid_obs, _humanoid_reward, True
    ),
    HumanoidStandupEnv: RobotSpec(
        _HUMANOID_FIELDS, uniform_reset, _no_before, _humanoid_obs, _standup_reward, True
    ),
}
