"""Generalized advantage estimation with correct bootstrapping at time limits.

Notation (rollout of ``T`` steps from ``N`` parallel environments; index ``[t, i]``)::

    delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}          (A_T = 0)
    R_t     = A_t + V(s_t)                                            (the value target)

``s'_t`` is the *true* next state of step ``t``: the first state of the next step when the episode
goes on, the last observation of the episode (``final_obs``) when it ended at ``t``. The two cuts
are different on purpose:

- the bootstrap ``V(s'_t)`` is dropped only on **termination** (the MDP really ended, the future
  is worth 0). A **truncation** at the time limit is not part of the MDP, so the value of the state
  the agent was left in still counts (Pardo et al., 2018, "Time limits in reinforcement learning");
- the GAE trace ``A_{t+1}`` is cut at **any** episode end (``done_t = terminated_t or
  truncated_t``), because the next row of the buffer then belongs to a new episode.
"""

from __future__ import annotations

import torch

__all__ = ["discounted_returns", "gae"]


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets by GAE(gamma, lambda).

    Args:
        rewards: ``r_t``, shape ``[T, N]``.
        values: ``V(s_t)``, shape ``[T, N]``.
        next_values: ``V(s'_t)`` of the true next state (``V(final_obs)`` where the episode ended
            at ``t``), shape ``[T, N]``. Its entries are ignored where ``terminated`` is true.
        terminated: episode ended at ``t`` by termination (no bootstrap), shape ``[T, N]``, bool or
            0/1.
        dones: episode ended at ``t`` for any reason (termination or truncation; cuts the trace),
            shape ``[T, N]``, bool or 0/1. Must be true wherever ``terminated`` is.
        gamma: discount factor in ``[0, 1]``.
        lam: GAE lambda in ``[0, 1]``; 0 gives one-step TD errors, 1 Monte-Carlo returns minus V.

    Returns:
        ``(advantages, returns)``, both shape ``[T, N]`` and dtype of ``rewards``; ``returns =
        advantages + values``.
    """
    if not (rewards.shape == values.shape == next_values.shape == terminated.shape == dones.shape):
        raise ValueError(
            "gae needs equal [T, N] shapes, got rewards "
            f"{tuple(rewards.shape)}, values {tuple(values.shape)}, next_values "
            f"{tuple(next_values.shape)}, terminated {tuple(terminated.shape)}, dones "
            f"{tuple(dones.shape)}"
        )
    not_terminated = 1.0 - terminated.to(rewards.dtype)
    not_done = 1.0 - dones.to(rewards.dtype)
    # All TD errors at once (vectorized); only the trace below needs the backward loop.
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = torch.empty_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = deltas[t] + gamma * lam * not_done[t] * last
        advantages[t] = last
    return advantages, advantages + values


def discounted_returns(
    rewards: torch.Tensor, dones: torch.Tensor, gamma: float, carry: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running discounted return ``G_t = r_t + gamma * G_{t-1}``, restarted after episode ends.

    Used only to measure the scale of the returns (reward normalization divides rewards by the
    running std of ``G``, as SB3's ``VecNormalize`` and CleanRL's ``NormalizeReward`` do).

    Args:
        rewards: ``[T, N]``.
        dones: ``[T, N]`` episode ended at ``t`` (``G`` restarts at ``t + 1``).
        gamma: discount factor.
        carry: ``[N]``, ``G`` after the previous rollout (0 where an episode just ended).

    Returns:
        ``(G [T, N], carry [N])``, ``carry`` ready for the next rollout.
    """
    out = torch.empty_like(rewards)
    g = carry
    for t in range(rewards.shape[0]):
        g = rewards[t] + gamma * g
        out[t] = g
        g = torch.where(dones[t], torch.zeros_like(g), g)
    return out, g
