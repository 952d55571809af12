"""Prior policies: what customization needs from the policy it starts from.

Customization only ever asks a prior two things (reference section 1): the log-probability of an
action, ``log pi_prior(a|s)``, for the reformulated reward, and an action, for evaluation. Any
object with those two methods and the two sizes is a :class:`Prior`; :func:`load_prior` makes one
from a checkpoint written by ``tailor train``/``tailor customize``, or imports a policy trained
with another library (format detected from the file's content, :mod:`tailor.priors.detect`):
Stable-Baselines3 zips (:mod:`~tailor.priors.sb3`), CleanRL ``agent.state_dict()`` files
(:mod:`~tailor.priors.cleanrl`), rsl-rl checkpoints (:mod:`~tailor.priors.rsl_rl`), skrl agent
checkpoints (:mod:`~tailor.priors.skrl`). Imported
Gaussian policies become a :class:`PolicyPrior` (a :class:`tailor.nets.Actor` plus a normalizer
with the source library's formula), so PPO customization starts from them as from a tailor policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from tailor.errors import TailorError
from tailor.losses import prior_log_probs
from tailor.nets import Actor, EmpiricalNormalization, gaussian_log_prob
from tailor.policyfile import load_policy

__all__ = ["PolicyPrior", "Prior", "QPrior", "check_spaces", "load_prior", "prior_temperature"]


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


def load_prior(
    path: str | Path,
    obs_dim: int | None = None,
    act_dim: int | None = None,
    task: str | None = None,
    *,
    format: str | None = None,
    normalizer: str | Path | None = None,
    std: float | Sequence[float] | None = None,
    temperature: float | None = None,
    activation: str | None = None,
) -> Any:
    """Load a frozen prior: a tailor run directory / ``policy.safetensors``, or an imported policy.

    If ``obs_dim``/``act_dim`` are given, the prior's sizes are checked against them (``task`` names
    the task in the error message).

    Args:
        path: the prior's file (or a tailor run directory).
        format: one of :data:`tailor.priors.detect.FORMATS` to skip detection.
        normalizer: a separate observation-statistics file (SB3 ``vecnormalize.pkl``, or a ``.npz``
            / safetensors file with ``mean`` and ``var``); imported priors only.
        std: the Gaussian's standard deviation around a deterministic policy (SB3 TD3/DDPG).
        temperature: ``tau`` of ``softmax(Q / tau)`` for a Q-network prior (SB3 DQN).
        activation: the hidden activation when the file does not say (rsl-rl without
            ``params/agent.yaml``, a CleanRL agent that is not Tanh, a custom SB3 one).

    Returns:
        a :class:`PolicyPrior` for Gaussian policies (tailor, SB3 PPO/A2C, CleanRL, rsl-rl), else
        a :class:`Prior` from :mod:`tailor.priors.policies` (SAC/TQC, TD3/DDPG, DQN, categorical).

    Raises:
        TailorError: missing, truncated, foreign or unsupported file; an option the format does not
            take; sizes that do not match the task.
    """
    from tailor.priors.detect import FORMATS, detect_format

    if format is not None and format not in FORMATS:
        raise TailorError(f"unknown prior format {format!r}; known: {', '.join(FORMATS)}")
    fmt = format or detect_format(path)
    if fmt == "tailor":
        given = [
            n
            for n, v in (
                ("normalizer", normalizer),
                ("std", std),
                ("temperature", temperature),
                ("activation", activation),
            )
            if v is not None
        ]
        if given:
            raise TailorError(
                f"{', '.join(given)} only apply to imported priors; {str(path)!r} is a tailor "
                "checkpoint, which carries its own normalizer and distribution"
            )
        actor, obs_norm, meta = load_policy(path)
        prior: Any = PolicyPrior(actor, obs_norm, meta)
    elif fmt == "sb3":
        from tailor.priors.sb3 import load_sb3

        prior = load_sb3(path, normalizer, std, temperature, activation)
    else:
        if std is not None or temperature is not None:
            raise TailorError(
                f"std and temperature only apply to SB3 TD3/DDPG and DQN priors, not {fmt}"
            )
        if fmt == "cleanrl":
            from tailor.priors.cleanrl import load_cleanrl

            prior = load_cleanrl(path, normalizer, activation)
        elif fmt == "rsl_rl":
            from tailor.priors.rsl_rl import load_rsl_rl

            prior = load_rsl_rl(path, normalizer, activation)
        else:
            from tailor.priors.skrl import load_skrl

            prior = load_skrl(path, normalizer, activation)
    if obs_dim is not None and act_dim is not None:
        check_spaces(prior, obs_dim, act_dim, task or "?")
    return prior


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
