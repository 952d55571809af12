"""What customization needs from a prior: the :class:`Prior` protocol and the two frozen priors
the loops use, :class:`PolicyPrior` (a Gaussian actor + its normalizer) and :class:`QPrior` (a
Q-network and its temperature); :func:`check_spaces` and :func:`prior_temperature`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from tailor.errors import TailorError
from tailor.losses import prior_log_probs
from tailor.nets import Actor, EmpiricalNormalization, gaussian_log_prob

__all__ = ["PolicyPrior", "Prior", "QPrior", "check_spaces", "prior_temperature"]


@runtime_checkable
class Prior(Protocol):
    """A fixed policy over raw (un-normalized) observations.

    Attributes:
        obs_dim: observation size ``D``.
        act_dim: action size ``A``.
    """

    obs_dim: int
    act_dim: int

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)``: obs ``[B, D]``, action ``[B, A]`` (executed, unclipped) -> ``[B]``."""
        ...

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """An action ``[B, A]`` for obs ``[B, D]``: the mean if ``deterministic``, else a sample."""
        ...


class PolicyPrior:
    """A frozen Gaussian policy (actor + its observation normalizer) from a checkpoint.

    Both modules are put in eval mode and ``requires_grad_(False)``: nothing that customization
    does can change them (the normalizer statistics stay frozen too).

    Attributes:
        actor: the Gaussian actor (on normalized observations).
        obs_norm: its observation normalizer (frozen).
        meta: the checkpoint's metadata (task, method, coefficients, steps, ...).
    """

    def __init__(
        self, actor: Actor, obs_norm: EmpiricalNormalization, meta: dict[str, Any] | None = None
    ) -> None:
        self.actor = actor.eval().requires_grad_(False)
        self.obs_norm = obs_norm.eval().requires_grad_(False)
        self.meta = dict(meta or {})
        self.obs_dim, self.act_dim = actor.obs_dim, actor.act_dim

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw obs ``[B, D]`` -> ``(mean [B, A], log_std [A] or [B, A])``."""
        return self.actor(self.obs_norm(obs))

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.distribution(obs)
        return gaussian_log_prob(action, mean, log_std)

    def act(
        self,
        obs: torch.Tensor,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        mean, log_std = self.distribution(obs)
        if deterministic:
            return mean
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + torch.exp(log_std) * noise


def check_spaces(prior: Prior, obs_dim: int, act_dim: int, task: str, what: str = "prior") -> None:
    """Raise a :class:`TailorError` unless the prior's sizes match the task's.

    Args:
        prior: the policy to check.
        obs_dim: the task's observation size.
        act_dim: the task's action size.
        task: the task's name (for the message).
        what: how to call the policy in the message (``"prior"``, ``"policy"``).
    """
    if (prior.obs_dim, prior.act_dim) != (obs_dim, act_dim):
        trained = getattr(prior, "meta", {}).get("task")
        on = f" (it was trained on {trained!r})" if trained else ""
        raise TailorError(
            f"the {what} has observation size {prior.obs_dim} and action size {prior.act_dim}"
            f"{on}, but task {task!r} has observation size {obs_dim} and action size {act_dim}; "
            f"use a {what} trained on this task's environment"
        )


# The coefficient that is a tailor policy's temperature, per training/customization method (an
# RQL checkpoint records ``alpha_hat`` for every method). no-entropy and end-entropy policies
# have none: their log-probabilities are not those of a soft-optimal policy.
_TEMPERATURE_KEY = {
    "soft": "alpha",
    "full": "alpha",
    "repeat-entropy": "alpha",
    "greedy": "alpha_hat",
    "residual": "alpha_hat",
    "kl": "beta",
}


def prior_temperature(meta: dict[str, Any]) -> tuple[float, str] | None:
    """The temperature ``alpha`` a prior's log-probabilities are at, and where it was read.

    From an imported prior's ``meta["temperature"]`` (SB3 SAC/TQC ``ent_coef`` /
    ``log_ent_coef``, a Boltzmann prior's given ``temperature``), or from a tailor checkpoint's
    method and coefficients (``soft``/``full``: ``alpha``; ``residual``/``greedy``:
    ``alpha_hat``; ``kl``: ``beta``). ``None`` when unknown or not ``> 0`` (a greedy or
    no-entropy policy, an SB3 PPO/A2C, TD3, CleanRL or rsl-rl policy).
    """
    found = meta.get("temperature")
    if isinstance(found, dict):
        value, source = found.get("value"), str(found.get("source", "the prior's file"))
    else:
        method, coefs = meta.get("method"), meta.get("coefficients")
        key = _TEMPERATURE_KEY.get(str(method))
        if key is None or not isinstance(coefs, dict):
            return None
        key = key if key in coefs else "alpha_hat"  # RQL checkpoints: alpha_hat for every method
        value, source = coefs.get(key), f"the prior's metadata ({method}, {key})"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not (math.isfinite(value) and value > 0):
        return None
    return float(value), source


@dataclass
class QPrior:
    """A frozen soft-DQN prior: its Q-network and the temperature it was trained at.

    Attributes:
        qnet: maps observations ``[B, obs_dim]`` to q-values ``[B, A]``.
        alpha: the prior's temperature; its policy is ``softmax(Q / alpha)``.
    """

    qnet: nn.Module
    alpha: float

    def log_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """``log pi(.|s)`` ``[B, A]`` for observations ``[B, obs_dim]`` (no gradient)."""
        with torch.no_grad():
            return prior_log_probs(self.qnet(obs), self.alpha)
