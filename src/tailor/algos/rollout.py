"""PPO's rollout storage and episode bookkeeping (in the manner of rsl-rl's RolloutStorage):
:class:`Rollout` for the numpy envs, :class:`TensorRollout` for batched-tensor envs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["EpisodeStats", "Rollout", "TensorRollout"]


@dataclass
class Rollout:
    """The rollout buffer of one iteration: ``T = num_steps`` steps of ``N = num_envs`` envs.

    Policy-side fields are torch tensors (filled under ``inference_mode``); env-side fields are
    numpy arrays (the env returns numpy; one conversion per rollout instead of one per step).

    Attributes:
        obs: ``[T, N, D]`` raw observations (the normalizer's statistics do not change during a
            rollout, so ``obs_norm.normalize(obs)`` is exactly what the actor and critic saw).
        actions: ``[T, N, A]`` executed actions: the raw Gaussian samples, before the env clips.
        logp: ``[T, N]`` ``log pi_theta(a_t|s_t)`` of the behaviour policy at sampling time.
        mean: ``[T, N, A]`` behaviour mean (for the KL of the adaptive learning rate).
        log_std: ``[T, N, A]`` behaviour log-std.
        values: ``[T, N]`` ``V(s_t)`` at sampling time.
        final_values: ``[T, N]`` ``V(final_obs)`` where an episode was truncated at ``t`` (the
            bootstrap value at a time limit), 0 elsewhere.
        logp_prior: ``[T, N]`` ``log pi_prior(a_t|s_t)`` when the method's reward uses the prior.
        basic: ``[T, N]`` basic (environment) reward.
        addon: ``[T, N]`` add-on reward.
        terminated: ``[T, N]`` episode ended at ``t`` by termination (no bootstrap).
        dones: ``[T, N]`` episode ended at ``t`` (termination or truncation; cuts GAE).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    mean: torch.Tensor
    log_std: torch.Tensor
    values: torch.Tensor
    final_values: torch.Tensor
    logp_prior: torch.Tensor | None
    basic: np.ndarray
    addon: np.ndarray
    terminated: np.ndarray
    dones: np.ndarray

    @classmethod
    def empty(cls, t: int, n: int, d: int, a: int, with_prior: bool) -> Rollout:
        return cls(
            obs=torch.zeros(t, n, d),
            actions=torch.zeros(t, n, a),
            logp=torch.zeros(t, n),
            mean=torch.zeros(t, n, a),
            log_std=torch.zeros(t, n, a),
            values=torch.zeros(t, n),
            final_values=torch.zeros(t, n),
            logp_prior=torch.zeros(t, n) if with_prior else None,
            basic=np.zeros((t, n), np.float32),
            addon=np.zeros((t, n), np.float32),
            terminated=np.zeros((t, n), bool),
            dones=np.zeros((t, n), bool),
        )


@dataclass
class TensorRollout:
    """The rollout buffer of a batched-tensor env (:mod:`tailor.algos.tensor_ppo`): every field
    a torch tensor on the env's device, filled in place step by step (no host round trip).

    The policy-side fields are those of :class:`Rollout` (what :meth:`PPOLearner.update
    <tailor.algos.ppo_learner.PPOLearner.update>` reads); the env side:

    Attributes:
        obs, actions, logp, mean, log_std, values, logp_prior: as in :class:`Rollout`.
        reward: ``[T, N]`` the env reward the method optimises (before the log-prob terms).
        dones: ``[T, N]`` bool, any episode end at ``t`` (cuts GAE).
        time_outs: ``[T, N]`` bool, the ends at ``t`` that were time limits (bootstrapped).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    mean: torch.Tensor
    log_std: torch.Tensor
    values: torch.Tensor
    logp_prior: torch.Tensor | None
    reward: torch.Tensor
    dones: torch.Tensor
    time_outs: torch.Tensor

    @classmethod
    def empty(
        cls, t: int, n: int, d: int, a: int, with_prior: bool, device: torch.device
    ) -> TensorRollout:
        def z(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        return cls(
            obs=z(t, n, d),
            actions=z(t, n, a),
            logp=z(t, n),
            mean=z(t, n, a),
            log_std=z(t, n, a),
            values=z(t, n),
            logp_prior=z(t, n) if with_prior else None,
            reward=z(t, n),
            dones=z(t, n, dtype=torch.bool),
            time_outs=z(t, n, dtype=torch.bool),
        )


@dataclass
class EpisodeStats:
    """Running returns of the ``N`` envs and the window of finished episodes for the metrics.

    Attributes:
        basic, addon, statistic: ``[N]`` running sums of the current episodes.
        length: ``[N]`` steps of the current episodes.
        window: the last finished episodes as ``(basic, addon, statistic mean, length)``.
    """

    basic: np.ndarray
    addon: np.ndarray
    statistic: np.ndarray
    length: np.ndarray
    window: deque = field(default_factory=deque)

    @classmethod
    def empty(cls, n: int, window: int) -> EpisodeStats:
        z = np.zeros(n)
        return cls(z.copy(), z.copy(), z.copy(), np.zeros(n, dtype=np.int64), deque(maxlen=window))

    def add(
        self, basic: np.ndarray, addon: np.ndarray, statistic: np.ndarray, done: np.ndarray
    ) -> int:
        """Add one vector step ``[N]``; returns how many episodes it finished."""
        self.basic += basic
        self.addon += addon
        self.statistic += statistic
        self.length += 1
        if not done.any():
            return 0
        ended = np.flatnonzero(done)
        for i in ended:
            self.window.append(
                (
                    self.basic[i],
                    self.addon[i],
                    self.statistic[i] / self.length[i],
                    float(self.length[i]),
                )
            )
        self.basic[done], self.addon[done], self.statistic[done], self.length[done] = 0, 0, 0, 0
        return int(ended.size)
