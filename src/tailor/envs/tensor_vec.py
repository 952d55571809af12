"""Batched-tensor environments: the contract tailor trains on (rsl-rl's ``VecEnv``) and an
adapter that puts tailor's own tasks behind it.

The contract is rsl-rl 5's ``rsl_rl.env.VecEnv`` (what Isaac Lab's ``RslRlVecEnvWrapper`` and
mjlab's wrapper implement), read by duck typing so that neither rsl-rl nor tensordict is needed::

    env.num_envs                 N
    env.num_actions              A
    env.max_episode_length       int (or a tensor [N])
    env.episode_length_buf       [N] steps of the running episodes
    env.device                   where every tensor lives
    env.get_observations()       observations (below)
    env.step(actions [N, A])     -> (observations, rewards [N], dones [N], extras)
    extras["time_outs"]          [N] bool: the ends that were time limits (bootstrapped)

Observations are what rsl-rl 5 passes around: a ``TensorDict`` (or a plain ``dict``) of groups
``{"policy": [N, D], "critic": ..., ...}`` of which the actor reads one group
(:func:`observation_tensor`; Isaac Lab's is ``"policy"``), or a plain ``[N, D]`` tensor. ``dones``
is ``terminated | time_outs`` and the env resets the ended envs inside ``step`` (the returned
observations are the new episodes' first ones), as Isaac Lab does.

Optional, for an exact resume of a tensor PPO run (:mod:`tailor.algos.tensor_ppo_state`)::

    env.get_state()              -> (tensors: dict[str, Tensor], info: JSON-able dict) or None
    env.set_state(tensors, info) continue from that state; get_observations() then returns
                                 the observations the saved run would have stepped from

An env without them (Isaac Lab, mjlab) is the user's to re-create: a resumed run continues
with the env as it is handed in (fresh episodes), so its numbers differ from an uninterrupted
run. :class:`TaskTensorEnv` and :class:`~tailor.envs.torch_pointmass.TorchPointMass` have them.

:class:`TaskTensorEnv` steps a tailor :class:`~tailor.envs.Task` (numpy
:class:`~tailor.envs.VecEnv`) and hands out torch tensors on ``device``: its reward is the task's
basic reward and its add-on reward ``r_R`` rides in ``extras["addon"]`` (:func:`extras_addon`
reads it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from tailor.envs.tasks import Task, get_task
from tailor.envs.vec import VecEnv
from tailor.errors import TailorError

__all__ = [
    "AddonFn",
    "AddonInputs",
    "EnvStep",
    "TaskTensorEnv",
    "TensorVecEnv",
    "as_groups",
    "check_env",
    "extras_addon",
    "observation_tensor",
    "step_env",
]


@runtime_checkable
class TensorVecEnv(Protocol):
    """What tailor needs of a batched-tensor env (rsl-rl 5's ``VecEnv``; module docstring)."""

    num_envs: int
    num_actions: int
    max_episode_length: int | torch.Tensor
    episode_length_buf: torch.Tensor
    device: torch.device | str

    def get_observations(self) -> Any:
        """The current observations: groups (``TensorDict`` / ``dict``) or an ``[N, D]`` tensor."""
        ...

    def step(self, actions: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, dict]:
        """``actions [N, A]`` -> ``(observations, rewards [N], dones [N], extras)``."""
        ...


_REQUIRED = ("num_envs", "num_actions", "device", "get_observations", "step")


def check_env(env: object) -> None:
    """Raise a :class:`TailorError` naming what ``env`` lacks of the contract."""
    missing = [name for name in _REQUIRED if not hasattr(env, name)]
    if missing:
        raise TailorError(
            f"{type(env).__name__} is not a batched-tensor env: it has no "
            f"{', '.join(missing)} (tailor takes rsl-rl's VecEnv: num_envs, num_actions, device, "
            "get_observations(), step(actions) -> (obs, rewards, dones, extras))"
        )


def observation_tensor(obs: Any, group: str) -> torch.Tensor:
    """The actor's observations ``[N, D]``: ``obs`` itself when it is a tensor, else its group
    ``group`` (a ``TensorDict`` or ``dict`` of groups, as rsl-rl 5 passes them).

    Raises:
        TailorError: no such group, or not a 2-D floating-point tensor.
    """
    if isinstance(obs, torch.Tensor):
        out = obs
    elif hasattr(obs, "keys") and hasattr(obs, "__getitem__"):
        keys = list(obs.keys())
        if group not in keys:
            raise TailorError(
                f"the observations have no group {group!r} (groups: {', '.join(map(str, keys))}); "
                "set the actor's observation group (TensorPPOConfig.obs_group)"
            )
        out = obs[group]
    else:
        raise TailorError(
            f"observations must be a tensor or a TensorDict / dict of tensors, got "
            f"{type(obs).__name__}"
        )
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or not out.is_floating_point():
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TailorError(f"the actor's observations must be a float tensor [N, D], got {shape}")
    return out


@dataclass
class EnvStep:
    """One checked step of a batched-tensor env (all on the env's device).

    Attributes:
        obs: what ``step`` returned (groups or a tensor), for the next step.
        actor_obs: ``[N, D]`` the actor's group of ``obs``.
        reward: ``[N]`` float32 env reward.
        dones: ``[N]`` bool, any episode end.
        time_outs: ``[N]`` bool, the ends that were time limits (zeros when the env gives none).
        extras: the env's ``extras``.
    """

    obs: Any
    actor_obs: torch.Tensor
    reward: torch.Tensor
    dones: torch.Tensor
    time_outs: torch.Tensor
    extras: dict


def step_env(env: TensorVecEnv, actions: torch.Tensor, group: str) -> EnvStep:
    """``env.step(actions)`` with its outputs checked and cast (shapes only: no host sync).

    Raises:
        TailorError: rewards, dones or time_outs not of shape ``[N]``.
    """
    obs, rewards, dones, extras = env.step(actions)
    n = env.num_envs
    extras = extras if isinstance(extras, dict) else {}
    time_outs = extras.get("time_outs")
    for name, value in (("rewards", rewards), ("dones", dones), ("time_outs", time_outs)):
        if value is None and name == "time_outs":
            continue
        if not isinstance(value, torch.Tensor) or value.reshape(-1).shape != (n,):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise TailorError(f"env.step returned {name} of shape {shape}; expected [{n}]")
    dones = dones.reshape(n).bool()
    time_outs = (
        torch.zeros_like(dones) if time_outs is None else time_outs.reshape(n).bool() & dones
    )
    return EnvStep(
        obs,
        observation_tensor(obs, group),
        rewards.reshape(n).float(),
        dones,
        time_outs,
        extras,
    )


@dataclass
class AddonInputs:
    """What an add-on reward callable sees after one step (tensors on the env's device).

    Attributes:
        env: the env (its own state tensors, e.g. Isaac Lab's ``env.unwrapped.scene``; note
            that ended envs are already reset: per-step terms are better computed in the env).
        obs: ``[N, D]`` the actor's observations the actions were taken in.
        actions: ``[N, A]`` the actions (raw samples, before the env clips).
        next_obs: ``[N, D]`` the observations after the step (reset ones where ``dones``).
        reward: ``[N]`` the env's reward.
        dones: ``[N]`` bool.
        extras: the env's ``extras``.
    """

    env: Any
    obs: torch.Tensor
    actions: torch.Tensor
    next_obs: torch.Tensor
    reward: torch.Tensor
    dones: torch.Tensor
    extras: dict


AddonFn = Callable[[AddonInputs], torch.Tensor]


def extras_addon(key: str = "addon") -> AddonFn:
    """An add-on reward read from ``extras[key]`` ``[N]`` (what :class:`TaskTensorEnv` writes)."""

    def addon(inputs: AddonInputs) -> torch.Tensor:
        value = inputs.extras.get(key)
        if not isinstance(value, torch.Tensor):
            raise TailorError(f"the env's extras have no tensor {key!r} (the add-on reward)")
        return value

    return addon


def as_groups(obs: torch.Tensor, n: int) -> Any:
    """``{"policy": obs}`` as a TensorDict when tensordict is installed (rsl-rl 5's type), else a
    plain dict (tailor reads both)."""
    try:
        from tensordict import TensorDict
    except ImportError:
        return {"policy": obs}
    return TensorDict({"policy": obs}, batch_size=[n], device=obs.device)


class TaskTensorEnv:
    """A tailor task behind the batched-tensor contract (numpy envs, torch tensors out).

    ``rewards`` are the task's basic reward; ``extras`` holds ``time_outs`` (truncations that
    were not terminations), ``addon`` (``r_R``), ``statistic`` (all ``[N]`` on ``device``), and
    ``log`` (empty). Observations are ``{"policy": [N, D]}`` (a TensorDict when tensordict is
    installed), float32.

    Args:
        task: a :class:`~tailor.envs.Task` or a registered task's name.
        num_envs: ``N``.
        seed: env ``i`` is seeded with ``seed + i`` (as :class:`~tailor.envs.VecEnv`).
        device: where the tensors go.
        num_workers: MuJoCo stepping threads (:class:`~tailor.envs.VecEnv`).
    """

    def __init__(
        self,
        task: Task | str,
        num_envs: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        num_workers: int = 1,
    ) -> None:
        self.task = get_task(task)
        self.venv = VecEnv(self.task, num_envs, seed=seed, num_workers=num_workers)
        self.num_envs = self.venv.num_envs
        self.num_actions = self.venv.act_dim
        self.num_obs = self.venv.obs_dim
        self.device = torch.device(device)
        limit = self.venv.max_episode_steps
        self.max_episode_length = int(limit) if limit is not None else np.iinfo(np.int32).max
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.cfg: dict[str, Any] = {"task": self.task.name}
        self._obs = self._tensor(self.venv.reset())

    def _tensor(self, x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype).to(self.device)

    def get_observations(self) -> Any:
        return as_groups(self._obs, self.num_envs)

    def step(self, actions: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, dict]:
        """``actions [N, A]`` (any device) -> ``(obs, basic reward [N], dones [N], extras)``."""
        res = self.venv.step(actions.detach().to("cpu", torch.float32).numpy())
        self._obs = self._tensor(res.obs)
        dones = self._tensor(res.done, torch.bool)
        self.episode_length_buf += 1
        self.episode_length_buf[dones] = 0
        extras = {
            "time_outs": self._tensor(res.truncated & ~res.terminated, torch.bool),
            "addon": self._tensor(res.addon),
            "statistic": self._tensor(res.statistic),
            "log": {},
        }
        return self.get_observations(), self._tensor(res.basic), dones, extras

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The numpy envs' state (:meth:`tailor.envs.VecEnv.get_state`: MuJoCo integration
        states or point-mass positions, reset generators, step counters, observations) and
        ``episode_length_buf`` as CPU tensors + JSON; ``None`` where the task's backend cannot
        capture its envs (the gymnasium fallback)."""
        state = self.venv.get_state()
        if state is None:
            return None
        arrays, info = state
        tensors = {
            f"venv.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()
        }
        tensors["episode_length_buf"] = self.episode_length_buf.detach().cpu().clone()
        return tensors, {"venv": info}

    def set_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Continue from :meth:`get_state`'s ``(tensors, info)``.

        Raises:
            TailorError: a state of another task, number of envs or backend.
        """
        prefix = "venv."
        arrays = {k[len(prefix) :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
        steps = tensors.get("episode_length_buf")
        if not isinstance(info.get("venv"), dict) or steps is None:
            raise TailorError("saved env state is not a TaskTensorEnv's")
        if steps.shape != self.episode_length_buf.shape:
            raise TailorError(f"saved env state has {steps.shape[0]} envs, not {self.num_envs}")
        self._obs = self._tensor(self.venv.set_state(arrays, info["venv"]))
        self.episode_length_buf = steps.to(self.device, torch.long).clone()

    def close(self) -> None:
        self.venv.close()
