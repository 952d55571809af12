"""Backends of :class:`tailor.envs.VecEnv`: how a batch of envs is stepped.

* :class:`MujocoBackend` (HalfCheetah-v5, Hopper-v5, Ant-v5): steps one ``MjData`` per env on a
  shared ``MjModel`` with ``mujoco.mj_step(model, data, nstep=frame_skip)`` and computes
  observations, rewards and terminations with batched numpy, exactly as gymnasium's ``*_v5.py``
  do (same float32 control cost, same strict/non-strict healthy bounds, same reset-noise draws
  from a ``np.random.default_rng(seed + i)`` per env, which is what ``env.reset(seed=seed + i)``
  seeds). Every parameter (weights, ranges, noise scale, frame skip, model) is read from a
  gymnasium instance built with the task's ``env_kwargs``, so they are honoured too.
  The Python per-env loop does only ``ctrl`` + ``mj_step`` + two/four array copies; the rest is
  batched, which keeps the loop within a few percent of raw physics (``bench/env_throughput.py``).
* :class:`PointMassBackend`: the point mass, fully batched.
* :class:`GymBackend`: the fallback for any other task, a loop over :func:`make_env` envs.

A backend does physics, observation, basic reward, termination and the task's add-on/statistic;
:class:`VecEnv` does action clipping, time limits, auto-reset and the finiteness check.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

from tailor.envs import pointmass
from tailor.envs.tasks import BatchState, Task
from tailor.envs.wrappers import TaskInfoWrapper, make_env
from tailor.errors import TailorError

__all__ = [
    "SLOW_PATH_NOTICE",
    "AntBackend",
    "Backend",
    "EnvState",
    "GymBackend",
    "HalfCheetahBackend",
    "HopperBackend",
    "MujocoBackend",
    "PointMassBackend",
    "has_fast_path",
    "make_backend",
]

# (obs [N, obs_dim] float64, basic [N], addon [N], statistic [N], terminated [N],
#  truncated [N] by the env itself, or None when only VecEnv's time limit truncates)
StepArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class Backend:
    """Interface: ``reset(rows) -> obs rows``, ``step(action) -> StepArrays``, spaces, close.

    Attributes:
        name: ``"mujoco"``, ``"numpy"`` or ``"gymnasium"`` (which path is used).
        num_envs, obs_dim, act_dim: sizes.
        action_low, action_high: float32 ``[act_dim]`` bounds.
        max_episode_steps: time limit (``None``: none).
    """

    name = "abstract"
    num_envs: int
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    max_episode_steps: int | None

    def reset(self, rows: np.ndarray) -> np.ndarray:
        """Reset envs ``rows`` (int array); return their observations ``[len(rows), obs_dim]``."""
        raise NotImplementedError

    def step(self, action: np.ndarray) -> StepArrays:
        """Step every env with the clipped float32 ``action [N, act_dim]``; no auto-reset.

        The time limit is VecEnv's; a backend reports ``truncated`` only when its env truncates
        by itself (the gymnasium fallback), else ``None``.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release resources."""

    def get_state(self) -> EnvState | None:
        """Everything the next steps depend on, as ``(arrays, json)``; ``None`` when this backend
        cannot capture its envs' state (then a resumed run starts fresh episodes)."""
        return None

    def set_state(self, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (same task and ``num_envs``).

        Raises:
            TailorError: the state does not fit these envs (other sizes, a missing part).
        """
        raise TailorError(f"the {self.name} backend cannot restore an env state")


# (named numpy arrays, JSON-able data): how a backend's state travels in a checkpoint
EnvState = tuple[dict[str, np.ndarray], dict[str, Any]]


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """``rng``'s bit-generator state as JSON (its 128-bit integers as decimal strings)."""
    st = rng.bit_generator.state
    if st.get("bit_generator") != "PCG64":
        raise TailorError(f"cannot save a {st.get('bit_generator')!r} random generator")
    inner = {k: str(int(v)) for k, v in st["state"].items()}
    return {**st, "state": inner}


def set_rng_state(rng: np.random.Generator, saved: Any) -> None:
    """Restore :func:`rng_state`'s ``saved`` into ``rng`` (a PCG64 generator)."""
    try:
        inner = {k: int(saved["state"][k]) for k in ("state", "inc")}
        rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": inner,
            "has_uint32": int(saved["has_uint32"]),
            "uinteger": int(saved["uinteger"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise TailorError(f"saved env state: unreadable random generator state ({exc})") from None


def _rngs_state(rngs: list[np.random.Generator]) -> list[dict[str, Any]]:
    return [rng_state(r) for r in rngs]


def _set_rngs(rngs: list[np.random.Generator], saved: Any) -> None:
    if not isinstance(saved, list) or len(saved) != len(rngs):
        raise TailorError(
            f"saved env state: expected {len(rngs)} random generators, got "
            f"{len(saved) if isinstance(saved, list) else type(saved).__name__}"
        )
    for rng, st in zip(rngs, saved, strict=True):
        set_rng_state(rng, st)


def _copy_into(target: np.ndarray, arrays: dict[str, np.ndarray], name: str) -> None:
    """``target[...] = arrays[name]`` after checking that it is there with ``target``'s shape."""
    value = arrays.get(name)
    if value is None or np.shape(value) != target.shape:
        found = None if value is None else np.shape(value)
        raise TailorError(
            f"saved env state: {name!r} has shape {found}, these envs need {target.shape}"
        )
    target[...] = value


def _vector_terms(task: Task, batch: BatchState) -> tuple[Any, Any]:
    """``task.vector_terms(batch)``; an exception from the task's code (a ``--tasks-file`` is
    the user's Python) becomes a TailorError naming the task, as on the gymnasium path."""
    try:
        addon, stat = task.vector_terms(batch)
    except TailorError:
        raise
    except Exception as exc:
        raise TailorError(
            f"task {task.name!r}: its vector_terms function failed: {type(exc).__name__}: {exc}"
        ) from None
    return addon, stat


def _gym_instance(task: Task) -> gym.Env:
    return make_env(task).env  # the gymnasium env inside the TaskInfoWrapper


def _box_bounds(space: gym.Space, task: Task) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise TailorError(
            f"task {task.name!r}: VecEnv needs a 1-D Box action space, {task.env_id} has {space}"
        )
    return space.low.astype(np.float32), space.high.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# MuJoCo


class MujocoBackend(Backend):
    """Shared part of the MuJoCo fast path; subclasses define obs, reward and reset noise."""

    name = "mujoco"

    def __init__(self, env: gym.Env, task: Task, num_envs: int, seed: int) -> None:
        u = env.unwrapped
        self.env = u  # kept for its parameters; never stepped
        self.task = task
        self.vector_terms = task.vector_terms
        self.model = u.model
        self.frame_skip = int(u.frame_skip)
        self.dt = u.dt
        self.num_envs = num_envs
        self.obs_dim = int(u.observation_space.shape[0])
        self.action_low, self.action_high = _box_bounds(u.action_space, task)
        self.act_dim = self.action_low.shape[0]
        self.max_episode_steps = env.spec.max_episode_steps if env.spec is not None else None
        self.init_qpos = u.init_qpos.copy()
        self.init_qvel = u.init_qvel.copy()
        self.noise_scale = u._reset_noise_scale
        self.exclude = bool(u._exclude_current_positions_from_observation)
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.rngs = [np.random.default_rng(seed + i) for i in range(num_envs)]
        # Views into each MjData, fetched once: attribute access costs more than the copy.
        self._views = [(d, d.ctrl, d.qpos, d.qvel) for d in self.datas]
        self.qpos = np.zeros((num_envs, self.model.nq))
        self.qvel = np.zeros((num_envs, self.model.nv))

    # -- state (exact resume) -------------------------------------------------------------------
    _STATE_SPEC = int(mujoco.mjtState.mjSTATE_INTEGRATION)

    def _buffers(self) -> dict[str, np.ndarray]:
        """The batch buffers the next step reads (subclasses add theirs)."""
        return {"qpos": self.qpos, "qvel": self.qvel}

    def get_state(self) -> EnvState:
        """Each env's full integration state (``mj_getState(mjSTATE_INTEGRATION)``: time, qpos,
        qvel, act, warm start, ctrl, ...), the batch buffers and the reset generators."""
        size = mujoco.mj_stateSize(self.model, self._STATE_SPEC)
        mj = np.zeros((self.num_envs, size))
        for i, d in enumerate(self.datas):
            mujoco.mj_getState(self.model, d, mj[i], self._STATE_SPEC)
        arrays = {"mj": mj, **{k: v.copy() for k, v in self._buffers().items()}}
        return arrays, {"backend": self.name, "rngs": _rngs_state(self.rngs)}

    def set_state(self, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        size = mujoco.mj_stateSize(self.model, self._STATE_SPEC)
        mj = np.zeros((self.num_envs, size))
        _copy_into(mj, arrays, "mj")
        for name, buf in self._buffers().items():
            _copy_into(buf, arrays, name)
        _set_rngs(self.rngs, info.get("rngs"))
        for i, d in enumerate(self.datas):
            mujoco.mj_setState(self.model, d, mj[i], self._STATE_SPEC)

    # -- per-env work (the only Python loop) -------------------------------------------------
    def _reset_noise(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(qpos, qvel)`` of a reset: HalfCheetah/Ant draw uniform qpos and normal qvel."""
        s = self.noise_scale
        qpos = self.init_qpos + rng.uniform(low=-s, high=s, size=self.model.nq)
        qvel = self.init_qvel + s * rng.standard_normal(self.model.nv)
        return qpos, qvel

    def _gather(self, i: int) -> None:
        """Copy env ``i``'s state into the batch buffers (subclasses copy more)."""
        _, _, qpos, qvel = self._views[i]
        self.qpos[i] = qpos
        self.qvel[i] = qvel

    def reset(self, rows: np.ndarray) -> np.ndarray:
        m = self.model
        for i in rows:
            d = self.datas[i]
            mujoco.mj_resetData(m, d)  # also clears warm-start, time and ctrl, as gymnasium does
            qpos, qvel = self._reset_noise(self.rngs[i])
            d.qpos[:] = qpos
            d.qvel[:] = qvel
            mujoco.mj_forward(m, d)
            self._gather(i)
        return self._obs()[rows]

    def _simulate(self, action: np.ndarray) -> None:
        """The per-env loop: set ``ctrl``, ``mj_step`` ``frame_skip`` times, copy the state."""
        m, fs, mj_step = self.model, self.frame_skip, mujoco.mj_step
        qpos_buf, qvel_buf = self.qpos, self.qvel
        for i, (d, ctrl, qpos, qvel) in enumerate(self._views):
            ctrl[:] = action[i]
            mj_step(m, d, fs)
            qpos_buf[i] = qpos
            qvel_buf[i] = qvel

    def step(self, action: np.ndarray) -> StepArrays:
        before = self._before_step()
        self._simulate(action)
        m = self.model
        basic, terminated, info = self._reward(action, before)
        addon, stat = _vector_terms(self.task, BatchState(m, self.qpos, self.qvel, action, info))
        # Copies: the terms may be views of the buffers, which an auto-reset overwrites.
        return self._obs(), basic, np.array(addon, float), np.array(stat, float), terminated, None

    # -- batched formulas (subclasses) -------------------------------------------------------
    def _before_step(self) -> Any:
        """What the reward needs from before the step: the x position [N]."""
        return self.qpos[:, 0].copy()

    def _ctrl_cost(self, action: np.ndarray) -> np.ndarray:
        # float32 action, as in gymnasium: the weight times a float32 sum stays float32.
        return self.env._ctrl_cost_weight * np.add.reduce(np.square(action), axis=1)

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

    def _reward(self, action: np.ndarray, before: Any) -> tuple[np.ndarray, np.ndarray, dict]:
        """``(basic [N], terminated [N] bool, info {name: [N]})``."""
        raise NotImplementedError


class HalfCheetahBackend(MujocoBackend):
    """HalfCheetah-v5: obs ``(qpos[1:], qvel)``; reward ``w_f * v_x - w_c * |a|^2``; no end."""

    def _obs(self) -> np.ndarray:
        pos = self.qpos[:, 1:] if self.exclude else self.qpos
        return np.concatenate([pos, self.qvel], axis=1)

    def _reward(self, action: np.ndarray, x_before: np.ndarray) -> tuple:
        x_velocity = (self.qpos[:, 0] - x_before) / self.dt
        reward = self.env._forward_reward_weight * x_velocity - self._ctrl_cost(action)
        return reward, np.zeros(self.num_envs, dtype=bool), {"x_velocity": x_velocity}


class HopperBackend(MujocoBackend):
    """Hopper-v5: obs ``(qpos[1:], clip(qvel, -10, 10))``; reward ``w_f v_x + healthy - cost``.

    Healthy (all strict): ``qpos[2:]`` and ``qvel`` inside the state range, ``z = qpos[1]`` inside
    the z range, ``angle = qpos[2]`` inside the angle range; unhealthy terminates.
    """

    def _reset_noise(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = self.noise_scale  # Hopper draws both uniformly
        qpos = self.init_qpos + rng.uniform(low=-s, high=s, size=self.model.nq)
        qvel = self.init_qvel + rng.uniform(low=-s, high=s, size=self.model.nv)
        return qpos, qvel

    def _obs(self) -> np.ndarray:
        pos = self.qpos[:, 1:] if self.exclude else self.qpos
        return np.concatenate([pos, np.clip(self.qvel, -10, 10)], axis=1)

    def _healthy(self) -> np.ndarray:
        u = self.env
        state = np.concatenate([self.qpos[:, 2:], self.qvel], axis=1)
        lo, hi = u._healthy_state_range
        zlo, zhi = u._healthy_z_range
        alo, ahi = u._healthy_angle_range
        z, angle = self.qpos[:, 1], self.qpos[:, 2]
        return (
            np.all((lo < state) & (state < hi), axis=1)
            & (zlo < z)
            & (z < zhi)
            & (alo < angle)
            & (angle < ahi)
        )

    def _reward(self, action: np.ndarray, x_before: np.ndarray) -> tuple:
        u = self.env
        x_velocity = (self.qpos[:, 0] - x_before) / self.dt
        healthy = self._healthy()
        rewards = u._forward_reward_weight * x_velocity + healthy * u._healthy_reward
        reward = rewards - self._ctrl_cost(action)
        terminated = ~healthy if u._terminate_when_unhealthy else np.zeros_like(healthy)
        return reward, terminated, {"x_velocity": x_velocity}


class AntBackend(MujocoBackend):
    """Ant-v5: obs ``(qpos[2:], qvel, clip(cfrc_ext[1:]))``; reward
    ``w_f v_x + healthy - w_c |a|^2 - w_contact |clip(cfrc_ext)|^2``; velocity from the main
    body's ``xpos``; healthy: finite state and ``z_lo <= qpos[2] <= z_hi``.
    """

    def __init__(self, env: gym.Env, task: Task, num_envs: int, seed: int) -> None:
        super().__init__(env, task, num_envs, seed)
        u = self.env
        self.body = int(self.model.body(u._main_body).id)
        self.cfrc = np.zeros((num_envs, self.model.nbody, 6))
        self.xy = np.zeros((num_envs, 2))
        self._extra = [(d.cfrc_ext, d.xpos[self.body, :2]) for d in self.datas]

    def _buffers(self) -> dict[str, np.ndarray]:
        return {**super()._buffers(), "cfrc": self.cfrc, "xy": self.xy}

    def _gather(self, i: int) -> None:
        super()._gather(i)
        cfrc, xy = self._extra[i]
        self.cfrc[i] = cfrc
        self.xy[i] = xy

    def _simulate(self, action: np.ndarray) -> None:
        # As gymnasium: mj_rnePostConstraint after the step fills cfrc_ext (contact forces) for
        # the obs and contact cost. It changes no state, so HalfCheetah/Hopper skip it (their
        # exactness tests check that nothing else differs).
        m, fs = self.model, self.frame_skip
        mj_step, rne_post = mujoco.mj_step, mujoco.mj_rnePostConstraint
        for i, (d, ctrl, _, _) in enumerate(self._views):
            ctrl[:] = action[i]
            mj_step(m, d, fs)
            rne_post(m, d)
            self._gather(i)

    def _before_step(self) -> np.ndarray:
        return self.xy.copy()

    def _contact_forces(self) -> np.ndarray:
        lo, hi = self.env._contact_force_range
        return np.clip(self.cfrc, lo, hi)

    def _obs(self) -> np.ndarray:
        parts = [self.qpos[:, 2:] if self.exclude else self.qpos, self.qvel]
        if self.env._include_cfrc_ext_in_observation:
            parts.append(self._contact_forces()[:, 1:].reshape(self.num_envs, -1))
        return np.concatenate(parts, axis=1)

    def _reward(self, action: np.ndarray, xy_before: np.ndarray) -> tuple:
        u = self.env
        xy_velocity = (self.xy - xy_before) / self.dt
        x_velocity, y_velocity = xy_velocity[:, 0], xy_velocity[:, 1]
        zlo, zhi = u._healthy_z_range
        z = self.qpos[:, 2]
        healthy = (
            np.isfinite(self.qpos).all(axis=1)
            & np.isfinite(self.qvel).all(axis=1)
            & (zlo <= z)
            & (z <= zhi)
        )
        contact = self._contact_forces().reshape(self.num_envs, -1)
        contact_cost = u._contact_cost_weight * np.sum(np.square(contact), axis=1)
        rewards = x_velocity * u._forward_reward_weight + healthy * u._healthy_reward
        costs = self._ctrl_cost(action) + contact_cost
        reward = rewards - costs
        terminated = ~healthy if u._terminate_when_unhealthy else np.zeros_like(healthy)
        return reward, terminated, {"x_velocity": x_velocity, "y_velocity": y_velocity}


# ---------------------------------------------------------------------------------------------
# Point mass


class PointMassBackend(Backend):
    """The point mass, all envs at once with :func:`tailor.envs.pointmass.pointmass_step`."""

    name = "numpy"

    def __init__(self, env: gym.Env, task: Task, num_envs: int, seed: int) -> None:
        u = env.unwrapped
        self.task = task
        self.num_envs = num_envs
        self.obs_dim = int(u.observation_space.shape[0])
        self.action_low, self.action_high = _box_bounds(u.action_space, task)
        self.act_dim = self.action_low.shape[0]
        self.max_episode_steps = env.spec.max_episode_steps if env.spec is not None else None
        self.rngs = [np.random.default_rng(seed + i) for i in range(num_envs)]
        self.pos = np.zeros((num_envs, 2))
        self.vel = np.zeros((num_envs, 2))

    def get_state(self) -> EnvState:
        """Positions, velocities and the reset generators."""
        arrays = {"pos": self.pos.copy(), "vel": self.vel.copy()}
        return arrays, {"backend": self.name, "rngs": _rngs_state(self.rngs)}

    def set_state(self, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        _copy_into(self.pos, arrays, "pos")
        _copy_into(self.vel, arrays, "vel")
        _set_rngs(self.rngs, info.get("rngs"))

    def reset(self, rows: np.ndarray) -> np.ndarray:
        for i in rows:
            self.pos[i], self.vel[i] = pointmass.pointmass_reset(self.rngs[i])
        return pointmass.pointmass_obs(self.pos[rows], self.vel[rows])

    def step(self, action: np.ndarray) -> StepArrays:
        self.pos, self.vel, basic = pointmass.pointmass_step(self.pos, self.vel, action)
        addon, stat = _vector_terms(self.task, BatchState(None, self.pos, self.vel, action, {}))
        no = np.zeros(self.num_envs, dtype=bool)
        obs = pointmass.pointmass_obs(self.pos, self.vel)
        return obs, basic, np.array(addon, float), np.array(stat, float), no, None


# ---------------------------------------------------------------------------------------------
# Fallback


class GymBackend(Backend):
    """Any task: a loop over ``num_envs`` :func:`make_env` envs (``env.reset(seed=seed + i)``)."""

    name = "gymnasium"

    def __init__(self, task: Task, num_envs: int, seed: int) -> None:
        self.task = task
        self.num_envs = num_envs
        self.seed = seed
        self.envs = []
        for _ in range(num_envs):
            env = make_env(task)
            # VecEnv checks finiteness itself, to name the env index.
            self.envs.append(TaskInfoWrapper(env.env, task, check_finite=False))
        first = self.envs[0]
        self.action_low, self.action_high = _box_bounds(first.action_space, task)
        self.act_dim = self.action_low.shape[0]
        if not isinstance(first.observation_space, gym.spaces.Box):
            raise TailorError(
                f"task {task.name!r}: VecEnv needs a Box observation space, "
                f"{task.env_id} has {first.observation_space}"
            )
        self.obs_dim = int(np.prod(first.observation_space.shape))
        spec = first.spec
        self.max_episode_steps = spec.max_episode_steps if spec is not None else None
        self._seeded = np.zeros(num_envs, dtype=bool)

    def reset(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.obs_dim))
        for k, i in enumerate(rows):
            seed = None if self._seeded[i] else self.seed + int(i)
            obs, _ = self.envs[i].reset(seed=seed)
            self._seeded[i] = True
            out[k] = np.asarray(obs, dtype=np.float64).reshape(-1)
        return out

    def step(self, action: np.ndarray) -> StepArrays:
        n = self.num_envs
        obs = np.zeros((n, self.obs_dim))
        basic, addon, stat = np.zeros(n), np.zeros(n), np.zeros(n)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for i, env in enumerate(self.envs):
            o, _, term, trunc, info = env.step(action[i])
            obs[i] = np.asarray(o, dtype=np.float64).reshape(-1)
            basic[i], addon[i] = info["basic_reward"], info["addon_reward"]
            stat[i] = info["statistic"]
            terminated[i], truncated[i] = term, trunc
        return obs, basic, addon, stat, terminated, truncated

    def close(self) -> None:
        for env in self.envs:
            env.close()


_FAST: dict[type, type] = {
    HalfCheetahEnv: HalfCheetahBackend,
    HopperEnv: HopperBackend,
    AntEnv: AntBackend,
    pointmass.PointMassEnv: PointMassBackend,
}


def _fast_backend(env: gym.Env) -> type | None:
    """The fast backend class for ``env`` (a task's gymnasium instance), or ``None``."""
    fast = _FAST.get(type(env.unwrapped))
    # Extra wrappers of the registration would change what the env does: play safe.
    wrapped = env.spec is not None and bool(env.spec.additional_wrappers)
    return None if wrapped else fast


def make_backend(task: Task, num_envs: int, seed: int) -> Backend:
    """The fast backend when the task has ``vector_terms`` and a supported env, else the loop."""
    if task.vector_terms is not None:
        env = _gym_instance(task)
        fast = _fast_backend(env)
        if fast is not None:
            return fast(env, task, num_envs, seed)
        env.close()
    return GymBackend(task, num_envs, seed)


def has_fast_path(task: Task) -> bool:
    """Whether :func:`make_backend` runs ``task`` on a fast path (batched numpy / MuJoCo, exact
    ``--resume``) rather than the gymnasium loop (:class:`GymBackend`)."""
    if task.vector_terms is None:
        return False
    env = _gym_instance(task)
    try:
        return _fast_backend(env) is not None
    finally:
        env.close()


# What `tailor train/customize` prints (stderr) for a PPO run of a task without a fast path.
SLOW_PATH_NOTICE = (
    "note: task {task!r} has no fast path (vector_terms on a supported env): PPO runs it on the "
    "gymnasium loop, about 2.4x slower, and a --resume of this run will not continue it exactly"
)
