"""Optional: HalfCheetah on MuJoCo Warp (``mujoco_warp``), behind the batched-tensor contract.

``num_envs`` worlds of gymnasium's ``half_cheetah.xml`` stepped by MJWarp on the torch device's
warp twin (``cpu`` or ``cuda:<i>``); ``qpos``, ``qvel`` and ``ctrl`` are torch views of the warp
arrays (``wp.to_torch``, no copy), so observations, rewards and resets stay on the device.
HalfCheetah-v5's definitions: ``frame_skip`` 5, observation ``(qpos[1:], qvel)`` ``[N, 17]``,
reward ``dx/dt - 0.1 |a|^2`` (``a`` clipped to ``[-1, 1]``), resets ``qpos0 + U(-0.1, 0.1)``,
``qvel = 0.1 N(0, 1)``, 1000 steps, no termination; the ``halfcheetah-hindleg`` add-on
``-|theta_bthigh|`` in ``extras["addon"]``. The reset noise comes from a ``torch.Generator`` (not
gymnasium's streams), and MJWarp's arithmetic is not MuJoCo C's bit for bit.

Needs ``pip install mujoco-warp`` (not a tailor dependency); on a CPU the first step compiles
MJWarp's kernels (about a minute; warp caches them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tailor.envs.tensor_vec import as_groups
from tailor.errors import TailorError

__all__ = ["WarpHalfCheetah"]

FRAME_SKIP = 5
CTRL_COST = 0.1
RESET_NOISE = 0.1


def _xml() -> Path:
    import gymnasium

    return Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "half_cheetah.xml"


class WarpHalfCheetah:
    """``num_envs`` HalfCheetah worlds on MJWarp (module docstring); rsl-rl's ``VecEnv``."""

    def __init__(
        self,
        num_envs: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        joint: str = "bthigh",
    ) -> None:
        try:
            import mujoco
            import mujoco_warp as mjw
            import warp as wp
        except ImportError as exc:
            raise TailorError(f"WarpHalfCheetah needs mujoco-warp ({exc})") from None
        self._wp, self._mjw = wp, mjw
        self.device = torch.device(device)
        index = self.device.index or 0
        self._wp_device = "cpu" if self.device.type == "cpu" else f"cuda:{index}"
        model = mujoco.MjModel.from_xml_path(str(_xml()))
        with wp.ScopedDevice(self._wp_device):
            self._model = mjw.put_model(model)
            self._data = mjw.put_data(model, mujoco.MjData(model), nworld=int(num_envs))
        self.qpos = wp.to_torch(self._data.qpos)  # [N, 9], shares memory with the warp array
        self.qvel = wp.to_torch(self._data.qvel)  # [N, 9]
        self.ctrl = wp.to_torch(self._data.ctrl)  # [N, 6]
        self.num_envs, self.num_actions, self.num_obs = int(num_envs), int(model.nu), 17
        self.max_episode_length = 1000
        self.cfg: dict[str, Any] = {"task": "halfcheetah (mujoco-warp)"}
        self.dt = float(model.opt.timestep) * FRAME_SKIP
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
        if jid < 0:
            raise TailorError(f"HalfCheetah has no joint {joint!r}")
        self._theta = int(model.jnt_qposadr[jid])
        self._qpos0 = torch.as_tensor(model.qpos0, dtype=torch.float32, device=self.device)
        self.gen = torch.Generator(self.device).manual_seed(int(seed))
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._reset(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))

    def _reset(self, rows: torch.Tensor) -> None:
        """Fresh states where ``rows [N]`` (drawn for every world, kept where ``rows``)."""
        n, nq = self.qpos.shape
        u = torch.rand(n, nq, generator=self.gen, device=self.device)
        qpos = self._qpos0 + RESET_NOISE * (2.0 * u - 1.0)
        qvel = RESET_NOISE * torch.randn(n, nq, generator=self.gen, device=self.device)
        keep = rows[:, None]
        self.qpos.copy_(torch.where(keep, qpos, self.qpos))
        self.qvel.copy_(torch.where(keep, qvel, self.qvel))
        self.episode_length_buf.masked_fill_(rows, 0)

    def get_observations(self) -> Any:
        return as_groups(torch.cat([self.qpos[:, 1:], self.qvel], dim=-1), self.num_envs)

    def step(self, actions: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, dict]:
        a = actions.to(self.device, torch.float32).clamp(-1.0, 1.0)
        self.ctrl.copy_(a)
        x0 = self.qpos[:, 0].clone()
        with self._wp.ScopedDevice(self._wp_device):
            for _ in range(FRAME_SKIP):
                self._mjw.step(self._model, self._data)
            self._wp.synchronize_device()
        reward = (self.qpos[:, 0] - x0) / self.dt - CTRL_COST * a.square().sum(-1)
        addon = -self.qpos[:, self._theta].abs()
        self.episode_length_buf += 1
        time_outs = self.episode_length_buf >= self.max_episode_length
        self._reset(time_outs)
        extras = {"time_outs": time_outs, "addon": addon, "log": {}}
        return self.get_observations(), reward, time_outs.clone(), extras
