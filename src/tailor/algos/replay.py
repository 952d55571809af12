"""The replay buffer of the off-policy loops (soft DQN, SAC)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """A fixed-size ring buffer of transitions ``(s, a, r, s', terminated)`` in numpy.

    Args:
        obs_dim: observation size.
        act_shape: ``()`` for a discrete action index, ``(act_dim,)`` for a continuous action.
        size: capacity; the oldest transitions are overwritten.
    """

    def __init__(self, obs_dim: int, act_shape: tuple[int, ...], size: int) -> None:
        self.obs = np.zeros((size, obs_dim), np.float32)
        self.next_obs = np.zeros((size, obs_dim), np.float32)
        discrete = act_shape == ()
        self.act = np.zeros((size, *act_shape), np.int64 if discrete else np.float32)
        self.rew = np.zeros(size, np.float32)
        self.done = np.zeros(size, np.float32)
        self.size, self.ptr, self.full = size, 0, False

    def __len__(self) -> int:
        return self.size if self.full else self.ptr

    def add(self, obs, act, rew: float, next_obs, terminated: bool) -> None:
        i = self.ptr
        self.obs[i], self.act[i], self.rew[i] = obs, act, rew
        self.next_obs[i], self.done[i] = next_obs, float(terminated)
        self.ptr = (i + 1) % self.size
        self.full = self.full or self.ptr == 0

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, len(self), size=n)
        return {
            "obs": torch.from_numpy(self.obs[idx]),
            "act": torch.from_numpy(self.act[idx]),
            "rew": torch.from_numpy(self.rew[idx]),
            "next_obs": torch.from_numpy(self.next_obs[idx]),
            "done": torch.from_numpy(self.done[idx]),
        }
