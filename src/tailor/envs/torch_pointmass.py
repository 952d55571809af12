"""The point mass of :mod:`tailor.envs.pointmass` as a pure-torch batched env on any device.

Same dynamics, reward and episode length (100 steps, time-outs only), the ``pointmass`` task's
add-on reward ``r_R = -|y|`` in ``extras["addon"]``; it implements the batched-tensor contract
(:mod:`tailor.envs.tensor_vec`, rsl-rl's ``VecEnv``), so tailor's tensor PPO and rsl-rl's
``OnPolicyRunner`` step the very same env (``bench/gpu_throughput.py``). The resets draw from
a ``torch.Generator`` on ``device``: not the numpy env's streams. :meth:`TorchPointMass.get_state`
/ :meth:`TorchPointMass.set_state` save and restore all of it (positions, velocities, step
counters, the generator), so a tensor PPO run on it resumes exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from tailor.envs.pointmass import BOUND, DAMPING, DT, MAX_EPISODE_STEPS
from tailor.envs.tensor_vec import as_groups
from tailor.errors import TailorError

__all__ = ["TorchPointMass"]


class TorchPointMass:
    """``num_envs`` point masses stepped as ``[N, 2]`` tensors on ``device``.

    Observations ``{"policy": [N, 4]}`` = ``(x, y, vx, vy)``; actions ``[N, 2]`` clipped to
    ``[-1, 1]``; reward ``-||p'||``; ``extras``: ``time_outs``, ``addon`` (``-|y'|``), ``log``.
    """

    def __init__(self, num_envs: int, seed: int = 0, device: str | torch.device = "cpu") -> None:
        self.num_envs = int(num_envs)
        self.num_actions = 2
        self.num_obs = 4
        self.device = torch.device(device)
        self.max_episode_length = MAX_EPISODE_STEPS
        self.cfg: dict[str, Any] = {"task": "pointmass (torch)"}
        self.gen = torch.Generator(self.device).manual_seed(int(seed))
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.pos = torch.zeros(self.num_envs, 2, device=self.device)
        self.vel = torch.zeros(self.num_envs, 2, device=self.device)
        self._reset(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))

    def _reset(self, rows: torch.Tensor) -> None:
        """Uniform positions in ``[-1, 1]^2`` at rest where ``rows [N]`` (drawn for every env,
        kept where ``rows``: no host sync)."""
        fresh = torch.rand(self.num_envs, 2, generator=self.gen, device=self.device) * 2.0 - 1.0
        self.pos = torch.where(rows[:, None], fresh, self.pos)
        self.vel = torch.where(rows[:, None], torch.zeros_like(self.vel), self.vel)
        self.episode_length_buf = torch.where(
            rows, torch.zeros_like(self.episode_length_buf), self.episode_length_buf
        )

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything the next :meth:`step` depends on, as ``(tensors, json)``: ``pos``,
        ``vel`` ``[N, 2]``, ``episode_length_buf`` ``[N]`` and the reset generator's state
        (copies, on the CPU)."""
        tensors = {
            "pos": self.pos,
            "vel": self.vel,
            "episode_length_buf": self.episode_length_buf,
            "gen": self.gen.get_state(),
        }
        info = {"env": type(self).__name__, "num_envs": self.num_envs}
        return {k: v.detach().cpu().clone() for k, v in tensors.items()}, info

    def set_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Continue from :meth:`get_state`'s ``(tensors, info)``.

        Raises:
            TailorError: a state of another env or number of envs, or tensors that do not fit.
        """
        mine = {"env": type(self).__name__, "num_envs": self.num_envs}
        if {k: info.get(k) for k in mine} != mine:
            raise TailorError(f"saved env state is of {info}, not of {mine}")
        try:
            pos, vel, steps = (tensors[k] for k in ("pos", "vel", "episode_length_buf"))
            if pos.shape != self.pos.shape or vel.shape != self.vel.shape:
                raise ValueError(f"positions {tuple(pos.shape)}, velocities {tuple(vel.shape)}")
            if steps.shape != self.episode_length_buf.shape:
                raise ValueError(f"episode_length_buf {tuple(steps.shape)}")
            self.gen.set_state(tensors["gen"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise TailorError(f"saved env state does not fit this TorchPointMass ({exc})") from None
        self.pos = pos.to(self.device, torch.float32).clone()
        self.vel = vel.to(self.device, torch.float32).clone()
        self.episode_length_buf = steps.to(self.device, torch.long).clone()

    def get_observations(self) -> Any:
        return as_groups(torch.cat([self.pos, self.vel], dim=-1), self.num_envs)

    def step(self, actions: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, dict]:
        force = actions.to(self.device, torch.float32).clamp(-1.0, 1.0)
        vel = self.vel + DT * (force - DAMPING * self.vel)
        moved = self.pos + DT * vel
        self.pos = moved.clamp(-BOUND, BOUND)
        self.vel = torch.where(self.pos != moved, torch.zeros_like(vel), vel)
        reward = -self.pos.square().sum(-1).sqrt()
        addon = -self.pos[:, 1].abs()
        self.episode_length_buf += 1
        time_outs = self.episode_length_buf >= self.max_episode_length
        self._reset(time_outs)
        extras = {"time_outs": time_outs, "addon": addon, "log": {}}
        return self.get_observations(), reward, time_outs.clone(), extras
