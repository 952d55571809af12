"""Backends of :class:`tailor.envs.VecEnv`: how a batch of envs is stepped.

* :class:`MujocoBackend`: every gymnasium MuJoCo v5 robot (HalfCheetah, Hopper, Ant, Walker2d,
  Swimmer, InvertedPendulum, InvertedDoublePendulum, Reacher, Pusher, Humanoid, HumanoidStandup;
  their formulas in :mod:`tailor.envs.robots`). It steps one ``MjData`` per env on a shared
  ``MjModel`` with ``mujoco.mj_step(model, data, nstep=frame_skip)`` and computes observations,
  rewards, terminations and every ``info`` term with batched numpy, exactly as gymnasium's
  ``*_v5.py`` do (same float32 control cost, same strict/non-strict healthy bounds, same
  reset-noise draws from a ``np.random.default_rng(seed + i)`` per env, which is what
  ``env.reset(seed=seed + i)`` seeds). Every parameter (weights, ranges, noise scale, frame
  skip, model) is read from a gymnasium instance built with the task's ``env_kwargs``, so they
  are honoured too. The Python per-env loop does only ``ctrl`` + ``mj_step`` + a few array
  copies; the rest is batched, which keeps the loop close to raw physics
  (``bench/env_throughput.py``). A task runs here with its ``vector_terms`` or, without them,
  with its scalar ``addon``/``statistic`` called per env on the gymnasium env object whose
  ``unwrapped.data`` is that env's ``MjData`` (see :meth:`MujocoBackend._terms`).
  With ``num_workers > 1`` that per-env loop runs in ``num_workers`` contiguous slices of the
  envs at once, one on the calling thread and the others on persistent worker threads
  (``mujoco``'s functions release the GIL while they run): every env's arithmetic is the same
  whatever the slicing, so the numbers do not depend on ``num_workers``.
* :class:`PointMassBackend`: the point mass, fully batched.
* :class:`GymBackend`: the fallback for any other task, a loop over :func:`make_env` envs.

A backend does physics, observation, basic reward, termination and the task's add-on/statistic;
:class:`VecEnv` does action clipping, time limits, auto-reset and the finiteness check.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from tailor.envs import pointmass
from tailor.envs.robots import ROBOTS, RobotSpec
from tailor.envs.tasks import BatchState, Task
from tailor.envs.wrappers import TaskInfoWrapper, make_env
from tailor.errors import TailorError

__all__ = [
    "SLOW_PATH_NOTICE",
    "Backend",
    "EnvState",
    "GymBackend",
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


# Chunks of envs per stepping thread (see MujocoBackend): more balance the threads' loads
# better when a core is shared; each costs a little bookkeeping.
CHUNKS_PER_WORKER = 4


def _slices(num_envs: int, parts: int) -> list[tuple[int, int]]:
    """``min(parts, num_envs)`` contiguous ``(lo, hi)`` ranges covering ``range(num_envs)``,
    their sizes differing by at most one (the first ones the larger)."""
    k = max(1, min(parts, num_envs))
    size, extra = divmod(num_envs, k)
    bounds = [i * size + min(i, extra) for i in range(k + 1)]
    return list(itertools.pairwise(bounds))


class _Chunks:
    """The ``(lo, hi)`` chunks of one step, handed out once each to whichever thread asks."""

    def __init__(self, chunks: list[tuple[int, int]]) -> None:
        self._it = iter(chunks)
        self._lock = threading.Lock()

    def take(self) -> tuple[int, int] | None:
        with self._lock:
            return next(self._it, None)


# ---------------------------------------------------------------------------------------------
# MuJoCo


class MujocoBackend(Backend):
    """The MuJoCo fast path of any robot of :data:`tailor.envs.robots.ROBOTS`: one ``MjData``
    per env on the shared ``MjModel``, the formulas from the robot's
    :class:`~tailor.envs.robots.RobotSpec`.

    Batch arrays ``self.b[name]`` ``[N, *shape]`` hold ``qpos``, ``qvel`` and the spec's
    ``fields`` of every env after its last step or reset (saved by :meth:`get_state`).

    A task without ``vector_terms`` runs here too (see :meth:`_terms`); then every step also
    runs ``mj_rnePostConstraint``, as gymnasium does, so its add-on reads the same ``MjData``.

    ``num_workers`` (at most ``num_envs`` are used): the calling thread and ``num_workers - 1``
    worker threads, which live until :meth:`close`, step the envs at once. The envs are cut
    into :data:`CHUNKS_PER_WORKER` contiguous chunks per thread which the threads take in turn
    until none is left, so that a thread slowed down (a core shared with another process) gets
    fewer. A chunk's thread sets ``ctrl``, runs ``mj_step`` (and ``mj_rnePostConstraint``) and
    copies its envs' rows into the batch arrays; the batched numpy formulas, the task's terms
    and resets stay on the calling thread: they are a few dozen small array operations per step
    whose cost is the interpreter's, which only one thread at a time can run. Each env's
    computation is the same whichever thread runs it, so the results are bit for bit those of
    one thread.
    """

    name = "mujoco"

    def __init__(
        self,
        env: gym.Env,
        task: Task,
        num_envs: int,
        seed: int,
        spec: RobotSpec,
        num_workers: int = 1,
    ) -> None:
        u = env.unwrapped
        self.env = u  # kept for its parameters; never stepped
        self.gym_env = env  # what a task's scalar add-on receives
        self.task = task
        self.spec = spec
        self.model = u.model
        self.frame_skip = int(u.frame_skip)
        self.num_envs = num_envs
        self.obs_dim = int(u.observation_space.shape[0])
        self.action_low, self.action_high = _box_bounds(u.action_space, task)
        self.act_dim = self.action_low.shape[0]
        self.max_episode_steps = env.spec.max_episode_steps if env.spec is not None else None
        self.rne_post = spec.rne_post or task.vector_terms is None
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.rngs = [np.random.default_rng(seed + i) for i in range(num_envs)]
        self.b: dict[str, np.ndarray] = {
            "qpos": np.zeros((num_envs, self.model.nq)),
            "qvel": np.zeros((num_envs, self.model.nv)),
        }
        for name in spec.fields:
            self.b[name] = np.zeros((num_envs, *getattr(self.datas[0], name).shape))
        self.qpos, self.qvel = self.b["qpos"], self.b["qvel"]
        # Per env: its MjData, ctrl, and (MjData array, batch row) pairs, fetched once: attribute
        # access costs more than the copy.
        self._views = [
            (d, d.ctrl, [(getattr(d, name), buf[i]) for name, buf in self.b.items()])
            for i, d in enumerate(self.datas)
        ]
        self.num_workers = max(1, min(num_workers, num_envs))
        self._chunks = _slices(num_envs, self.num_workers * CHUNKS_PER_WORKER)
        self._pool: ThreadPoolExecutor | None = None
        if self.num_workers > 1:
            self._pool = ThreadPoolExecutor(self.num_workers - 1, thread_name_prefix="tailor-env")

    def close(self) -> None:
        """Stop the worker threads (waits for them); the backend cannot step afterwards."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- state (exact resume) -------------------------------------------------------------------
    _STATE_SPEC = int(mujoco.mjtState.mjSTATE_INTEGRATION)

    def get_state(self) -> EnvState:
        """Each env's full integration state (``mj_getState(mjSTATE_INTEGRATION)``: time, qpos,
        qvel, act, warm start, ctrl, ...), the batch arrays and the reset generators."""
        size = mujoco.mj_stateSize(self.model, self._STATE_SPEC)
        mj = np.zeros((self.num_envs, size))
        for i, d in enumerate(self.datas):
            mujoco.mj_getState(self.model, d, mj[i], self._STATE_SPEC)
        arrays = {"mj": mj, **{k: v.copy() for k, v in self.b.items()}}
        return arrays, {"backend": self.name, "rngs": _rngs_state(self.rngs)}

    def set_state(self, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        size = mujoco.mj_stateSize(self.model, self._STATE_SPEC)
        mj = np.zeros((self.num_envs, size))
        _copy_into(mj, arrays, "mj")
        for name, buf in self.b.items():
            _copy_into(buf, arrays, name)
        _set_rngs(self.rngs, info.get("rngs"))
        for i, d in enumerate(self.datas):
            mujoco.mj_setState(self.model, d, mj[i], self._STATE_SPEC)

    # -- per-env work (the only Python loop) -------------------------------------------------
    def reset(self, rows: np.ndarray) -> np.ndarray:
        m = self.model
        for i in rows:
            d, _, pairs = self._views[i]
            mujoco.mj_resetData(m, d)  # also clears warm-start, time and ctrl, as gymnasium does
            qpos, qvel = self.spec.reset(self.env, self.rngs[i])
            d.qpos[:] = qpos
            d.qvel[:] = qvel
            mujoco.mj_forward(m, d)
            for src, dst in pairs:
                dst[...] = src
        return self.spec.obs(self.env, self.b)[rows]

    def _simulate(self, action: np.ndarray) -> None:
        """Step every env: the chunks of envs shared by this thread and the worker threads."""
        if self._pool is None:
            if self.num_workers > 1:
                raise RuntimeError("the MuJoCo backend is closed")
            self._simulate_rows(action, 0, self.num_envs)
            return
        chunks = _Chunks(self._chunks)
        pending = [
            self._pool.submit(self._simulate_chunks, action, chunks)
            for _ in range(self.num_workers - 1)
        ]
        try:
            self._simulate_chunks(action, chunks)
        finally:
            wait(pending)  # every worker done before the batch arrays are read or reused
        for future in pending:
            future.result()  # re-raises a worker's exception

    def _simulate_chunks(self, action: np.ndarray, chunks: _Chunks) -> None:
        """Step the chunks not yet taken, one at a time, until none is left."""
        while (chunk := chunks.take()) is not None:
            self._simulate_rows(action, *chunk)

    def _simulate_rows(self, action: np.ndarray, lo: int, hi: int) -> None:
        """The per-env loop over envs ``lo:hi``: set ``ctrl``, ``mj_step`` ``frame_skip`` times
        (then, if needed, ``mj_rnePostConstraint``, which fills ``cfrc_ext`` and changes no
        state), copy out into the envs' own rows of the batch arrays."""
        m, fs, mj_step = self.model, self.frame_skip, mujoco.mj_step
        rne_post = mujoco.mj_rnePostConstraint if self.rne_post else None
        for (d, ctrl, pairs), a in zip(self._views[lo:hi], action[lo:hi], strict=True):
            ctrl[:] = a
            mj_step(m, d, fs)
            if rne_post is not None:
                rne_post(m, d)
            for src, dst in pairs:
                dst[...] = src

    def step(self, action: np.ndarray) -> StepArrays:
        spec, u = self.spec, self.env
        before = spec.before(u, self.b)
        self._simulate(action)
        basic, terminated, info = spec.reward(u, self.b, action, before)
        addon, stat = self._terms(action, basic, info)
        # Copies: the terms may be views of the buffers, which an auto-reset overwrites.
        obs = spec.obs(u, self.b)
        return obs, basic, np.array(addon, float), np.array(stat, float), terminated, None

    def _obs(self) -> np.ndarray:
        """The current observations ``[N, obs_dim]`` float64 (rows reset since: their first)."""
        return self.spec.obs(self.env, self.b)

    def _terms(self, action: np.ndarray, basic: np.ndarray, info: dict) -> tuple[Any, Any]:
        """The task's ``(addon [N], statistic [N])``: its ``vector_terms`` on the batch, or
        without them its scalar ``addon``/``statistic`` called per env as
        :class:`~tailor.envs.wrappers.TaskInfoWrapper` calls them: with the gymnasium env (whose
        ``unwrapped.data`` is, for the call, env ``i``'s ``MjData``), the executed action
        ``[act_dim]`` float32 and the step's ``info`` (every key gymnasium gives, plus
        ``basic_reward``, and ``addon_reward`` for the statistic)."""
        if self.task.vector_terms is not None:
            batch = BatchState(self.model, self.qpos, self.qvel, action, info)
            return _vector_terms(self.task, batch)
        n, u = self.num_envs, self.env
        addon, stat = np.zeros(n), np.zeros(n)
        own = u.data
        try:
            for i, d in enumerate(self.datas):
                u.data = d
                step_info = {k: v[i] for k, v in info.items()}
                step_info["basic_reward"] = float(basic[i])
                addon[i] = step_info["addon_reward"] = self._scalar("addon", action[i], step_info)
                stat[i] = self._scalar("statistic", action[i], step_info)
        finally:
            u.data = own
        return addon, stat

    def _scalar(self, part: str, action: np.ndarray, info: dict) -> float:
        try:
            return float(getattr(self.task, part)(self.gym_env, action, info))
        except Exception as exc:  # user code: name the task, no traceback
            raise TailorError(
                f"task {self.task.name!r}: its {part} function failed: {type(exc).__name__}: {exc}"
            ) from None


# ---------------------------------------------------------------------------------------------
# Point mass


class PointMassBackend(Backend):
    """The point mass, all envs at once with :func:`tailor.envs.pointmass.pointmass_step`
    (a few array operations per step, on the calling thread: ``num_workers`` is ignored)."""

    name = "numpy"

    def __init__(
        self, env: gym.Env, task: Task, num_envs: int, seed: int, num_workers: int = 1
    ) -> None:
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


# (gymnasium instance, task, num_envs, seed, num_workers=...) -> backend
BackendFactory = Callable[..., Backend]

_FAST: dict[type, BackendFactory] = {
    pointmass.PointMassEnv: PointMassBackend,
    **{cls: partial(MujocoBackend, spec=spec) for cls, spec in ROBOTS.items()},
}


def _fast_backend(env: gym.Env, task: Task) -> BackendFactory | None:
    """The fast backend for ``task`` on ``env`` (its gymnasium instance), or ``None``: the
    :data:`~tailor.envs.robots.ROBOTS` with or without ``vector_terms``, the point mass with."""
    cls = type(env.unwrapped)
    if task.vector_terms is None and cls not in ROBOTS:
        return None
    # Extra wrappers of the registration would change what the env does: play safe.
    wrapped = env.spec is not None and bool(env.spec.additional_wrappers)
    return None if wrapped else _FAST.get(cls)


def _may_be_fast(task: Task) -> bool:
    """Cheap test before building a gymnasium instance: a task with ``vector_terms``, or one
    whose id gymnasium registers to a class of :data:`~tailor.envs.robots.ROBOTS`."""
    if task.vector_terms is not None:
        return True
    entry = getattr(gym.registry.get(task.env_id), "entry_point", None)
    return isinstance(entry, str) and entry.rpartition(":")[2] in {c.__name__ for c in ROBOTS}


def make_backend(task: Task, num_envs: int, seed: int, num_workers: int = 1) -> Backend:
    """The fast backend when the task's env has one (see :func:`_fast_backend`), else the
    gymnasium loop. ``num_workers``: threads that step the MuJoCo envs (the other backends run
    on the calling thread)."""
    if _may_be_fast(task):
        env = _gym_instance(task)
        fast = _fast_backend(env, task)
        if fast is not None:
            return fast(env, task, num_envs, seed, num_workers=num_workers)
        env.close()
    return GymBackend(task, num_envs, seed)


def has_fast_path(task: Task) -> bool:
    """Whether :func:`make_backend` runs ``task`` on a fast path (batched numpy / MuJoCo, exact
    ``--resume``) rather than the gymnasium loop (:class:`GymBackend`)."""
    if not _may_be_fast(task):
        return False
    env = _gym_instance(task)
    try:
        return _fast_backend(env, task) is not None
    finally:
        env.close()


# What `tailor train/customize` prints (stderr) for a PPO run of a task without a fast path.
SLOW_PATH_NOTICE = (
    "note: task {task!r} has no fast path (see `A task` in docs/ARCHITECTURE.md): PPO runs "
    "it on the gymnasium loop, about 2.4x slower, and a --resume of this run will not continue "
    "it exactly"
)
