"""Prior-protocol policies that are not a tailor Gaussian actor: squashed, gSDE, Q.

Each takes raw observations ``[B, D]``, applies its frozen observation normalizer, then its
network. ``B`` batch, ``D`` observation size, ``A`` action size, ``n`` discrete actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tailor.nets import EmpiricalNormalization, SquashedGaussianActor

__all__ = [
    "BoltzmannQPrior",
    "GSDEPrior",
    "GSDESpec",
    "SquashedGaussianPrior",
]

# SB3's constants: log-std clamp of the SAC actor, tanh-Jacobian epsilon, atanh clamp.
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_TANH_EPS = 1e-6


def unscale(y: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` -> ``[low, high]`` (SB3's ``unscale_action``), shapes ``[B, A]``."""
    return low + 0.5 * (y + 1.0) * (high - low)


class _Frozen:
    """Common part: frozen normalizer, sizes, metadata."""

    def __init__(
        self, obs_norm: EmpiricalNormalization, obs_dim: int, act_dim: int, meta: dict[str, Any]
    ) -> None:
        self.obs_norm = obs_norm.eval().requires_grad_(False)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.meta = {**meta, "obs_dim": self.obs_dim, "act_dim": self.act_dim}


class SquashedGaussianPrior(_Frozen):
    """SB3 SAC/TQC actor: ``a = low + (tanh(u) + 1) / 2 * (high - low)``, ``u ~ N(mu, sigma)(s)``.

    ``log sigma`` is clamped to ``[-20, 2]`` as in SB3. :meth:`log_prob` is the density of the
    action in environment units: SB3's ``log_prob`` of the action rescaled to ``[-1, 1]`` (atanh
    clamped to ``1 - eps``, tanh correction ``log(1 - y^2 + 1e-6)``) minus
    ``sum_j log((high_j - low_j) / 2)``, the Jacobian of the rescaling (the convention of
    :class:`tailor.rql.sac.SquashedGaussianActor`).

    Args:
        latent: ``[B, D] -> [B, H]`` (SB3 ``actor.latent_pi``), on normalized observations.
        mu, log_std: the two ``H -> A`` heads.
        low, high: ``[A]`` finite action bounds.
        obs_norm: observation normalizer.
        meta: metadata.
    """

    def __init__(
        self,
        latent: nn.Module,
        mu: nn.Linear,
        log_std: nn.Linear,
        low: torch.Tensor,
        high: torch.Tensor,
        obs_norm: EmpiricalNormalization,
        meta: dict[str, Any],
    ) -> None:
        super().__init__(obs_norm, obs_norm.mean.shape[0], mu.out_features, meta)
        self.latent, self.mu, self.log_std = (
            m.eval().requires_grad_(False) for m in (latent, mu, log_std)
        )
        self.low, self.high = low.float(), high.float()

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw obs ``[B, D]`` -> pre-squash ``(mean [B, A], log_std [B, A])``."""
        h = self.latent(self.obs_norm(obs))
        return self.mu(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def _unscale(self, y: torch.Tensor) -> torch.Tensor:
        return unscale(y, self.low, self.high)

    def act(
        self,
        obs: torch.Tensor,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``[B, D] -> [B, A]`` in the bounds: squashed mean, or a squashed sample."""
        mean, log_std = self.distribution(obs)
        u = (
            mean
            if deterministic
            else mean + log_std.exp() * torch.randn(mean.shape, generator=generator)
        )
        return self._unscale(torch.tanh(u))

    def to_actor(self) -> SquashedGaussianActor:
        """A trainable :class:`tailor.nets.SquashedGaussianActor` with this policy's weights (the
        start of a residual SAC actor).

        The same function: ``latent_pi`` and the two heads become the actor's trunk (the heads
        stacked into its last layer, ``mu`` first), the activation and SB3's log-std clamp
        ``[-20, 2]`` are kept, and the frozen normalizer becomes the actor's observation affine
        (``obs_bias = mean``, ``obs_scale = sqrt(var + eps)``, SB3's ``VecNormalize``; or
        ``sqrt(var) + eps``) with its clip. Its actions equal :meth:`act` up to float32
        rounding of the normalizer (SB3 normalizes in float64). Its own ``log_prob`` uses
        tailor's exact tanh Jacobian where SB3 adds ``1e-6`` inside the log; the residual
        reward's ``log pi_prior`` is always this prior's :meth:`log_prob`, SB3's formula.
        """
        layers = [m for m in self.latent.modules() if isinstance(m, nn.Linear)]
        hidden = [m.out_features for m in layers]
        low, high = self.low.double().numpy(), self.high.double().numpy()
        norm = self.obs_norm
        actor = SquashedGaussianActor(
            self.obs_dim,
            self.act_dim,
            hidden,
            (low, high),
            activation=self.meta.get("activation", "relu"),
            log_std_min=LOG_STD_MIN,
            obs_clip=norm.clip,
        )
        var = norm.var.double()
        scale = torch.sqrt(var + norm.eps) if norm.mode == "var_eps" else var.sqrt() + norm.eps
        state = {"obs_bias": norm.mean.float(), "obs_scale": scale.float()}
        for i, lin in enumerate(layers):
            state[f"trunk.{2 * i}.weight"] = lin.weight.detach().clone()
            state[f"trunk.{2 * i}.bias"] = lin.bias.detach().clone()
        last = 2 * len(layers)
        state[f"trunk.{last}.weight"] = torch.cat([self.mu.weight, self.log_std.weight]).detach()
        state[f"trunk.{last}.bias"] = torch.cat([self.mu.bias, self.log_std.bias]).detach()
        actor.load_state_dict({**actor.state_dict(), **state})
        return actor.requires_grad_(True)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)`` ``[B]`` of actions ``[B, A]`` in environment units (class docstring)."""
        mean, log_std = self.distribution(obs)
        y = 2.0 * ((action - self.low) / (self.high - self.low)) - 1.0
        eps = torch.finfo(y.dtype).eps
        y_in = y.clamp(-1.0 + eps, 1.0 - eps)
        u = 0.5 * (y_in.log1p() - (-y_in).log1p())  # SB3's TanhBijector.atanh
        logp = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
        logp = logp - torch.log(1.0 - y.square() + _TANH_EPS).sum(-1)
        return logp - torch.log((self.high - self.low) / 2.0).sum()


@dataclass(frozen=True)
class GSDESpec:
    """How SB3's gSDE noise and squashing are set up (``policy_kwargs`` and the action space).

    Attributes:
        use_expln: ``expln`` instead of ``exp`` for the std weights (``use_expln``).
        squash: ``tanh`` of the Gaussian, rescaled to ``bounds`` (PPO's ``squash_output``;
            always for SAC/TQC).
        bounds: the action bounds ``(low, high)``, ``[A]`` each (used with ``squash``).
        clip_mean: SAC/TQC's ``Hardtanh(-clip_mean, clip_mean)`` on the mean, or ``None``.
    """

    use_expln: bool
    squash: bool
    bounds: tuple[torch.Tensor, torch.Tensor]
    clip_mean: float | None = None


class GSDEPrior(_Frozen):
    """SB3 PPO/A2C/SAC/TQC with generalized state-dependent exploration (``use_sde=True``).

    With ``h = latent_pi(norm(s))`` ``[B, L]`` and ``W = std(log_std)`` ``[L, A]`` (``exp``, or
    ``expln`` with ``use_expln``; a ``[L, 1]`` parameter is broadcast when ``full_std=False``),
    the per-step distribution is SB3's ``N(mean(h), sqrt(h^2 @ W^2 + 1e-6))`` (SAC/TQC clip the
    mean to ``±clip_mean``). With ``squash`` the action is ``tanh`` of that Gaussian rescaled to
    the bounds, and :meth:`log_prob` subtracts SB3's correction ``log(1 - tanh(u)^2 + 1e-6)``
    and the rescaling's Jacobian ``sum_j log((high_j - low_j) / 2)`` (environment units, as
    :class:`SquashedGaussianPrior`).
    """

    def __init__(
        self,
        latent: nn.Module,
        mean: nn.Linear,
        log_std: torch.Tensor,
        spec: GSDESpec,
        obs_norm: EmpiricalNormalization,
        meta: dict[str, Any],
    ) -> None:
        super().__init__(obs_norm, obs_norm.mean.shape[0], mean.out_features, meta)
        self.latent, self.mean = (
            latent.eval().requires_grad_(False),
            mean.eval().requires_grad_(False),
        )
        self.log_std = log_std.detach().float()
        self.use_expln, self.squash = bool(spec.use_expln), bool(spec.squash)
        self.low, self.high = spec.bounds[0].float(), spec.bounds[1].float()
        self.clip_mean = spec.clip_mean

    def to_actor(self) -> SquashedGaussianActor:
        """A trainable SAC actor that starts from this (squashed: SAC/TQC) policy: its trunk and
        mean head (:meth:`SquashedGaussianPrior.to_actor`), with a state-independent std, the
        prior's std at the normalizer's mean observation (a SAC actor has no gSDE noise; the
        residual reward's ``log pi_prior`` is still this prior's exact :meth:`log_prob`). The
        mean's ``±clip_mean`` clip is not carried over (it only acts where ``|mean| >
        clip_mean``, i.e. beyond ``tanh(clip_mean)`` of the action range)."""
        if not self.squash:
            raise ValueError("only a squashed (SAC/TQC) gSDE policy starts a SAC actor")
        with torch.no_grad():
            h0 = self.latent(torch.zeros(1, self.obs_dim))  # the normalized mean observation
            std0 = torch.sqrt(torch.mm(h0**2, self._weights_std() ** 2) + _TANH_EPS)[0]
        log_std = nn.Linear(self.mean.in_features, self.act_dim)
        with torch.no_grad():
            log_std.weight.zero_()
            log_std.bias.copy_(std0.log())
        bounds = (self.low, self.high)
        start = SquashedGaussianPrior(
            self.latent, self.mean, log_std, *bounds, self.obs_norm, self.meta
        )
        return start.to_actor()

    def _weights_std(self) -> torch.Tensor:
        log_std = self.log_std
        if self.use_expln:
            below = torch.exp(log_std) * (log_std <= 0)
            safe = log_std * (log_std > 0) + _TANH_EPS
            std = below + (torch.log1p(safe) + 1.0) * (log_std > 0)
        else:
            std = torch.exp(log_std)
        return torch.ones(log_std.shape[0], self.act_dim) * std

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw obs ``[B, D]`` -> (pre-squash) ``(mean [B, A], std [B, A])``."""
        h = self.latent(self.obs_norm(obs))
        variance = torch.mm(h**2, self._weights_std() ** 2)
        mean = self.mean(h)
        if self.clip_mean is not None:
            mean = mean.clamp(-self.clip_mean, self.clip_mean)  # SB3's Hardtanh
        return mean, torch.sqrt(variance + _TANH_EPS)

    def act(
        self,
        obs: torch.Tensor,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        mean, std = self.distribution(obs)
        u = mean if deterministic else mean + std * torch.randn(mean.shape, generator=generator)
        if not self.squash:
            return u
        return self.low + 0.5 * (torch.tanh(u) + 1.0) * (self.high - self.low)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mean, std = self.distribution(obs)
        if not self.squash:
            return torch.distributions.Normal(mean, std).log_prob(action).sum(-1)
        y = 2.0 * ((action - self.low) / (self.high - self.low)) - 1.0
        eps = torch.finfo(y.dtype).eps
        y_in = y.clamp(-1.0 + eps, 1.0 - eps)
        u = 0.5 * (y_in.log1p() - (-y_in).log1p())
        logp = torch.distributions.Normal(mean, std).log_prob(u).sum(-1)
        logp = logp - torch.log(1.0 - torch.tanh(u) ** 2 + _TANH_EPS).sum(-1)
        return logp - torch.log((self.high - self.low) / 2.0).sum()


class BoltzmannQPrior(_Frozen):
    """A Q-network as the Boltzmann policy ``pi(a|s) = softmax(Q(s, .) / temperature)``.

    ``act_dim`` is the number of discrete actions ``n``; actions are integer indices ``[B]``
    (``[B, 1]`` is accepted too). :meth:`act` with ``deterministic`` is ``argmax Q``, the
    library's greedy action.
    """

    def __init__(
        self,
        qnet: nn.Module,
        temperature: float,
        obs_norm: EmpiricalNormalization,
        meta: dict[str, Any],
    ) -> None:
        n = _out(qnet)
        super().__init__(obs_norm, obs_norm.mean.shape[0], n, meta)
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        self.qnet = qnet.eval().requires_grad_(False)
        self.temperature, self.n_actions = float(temperature), n

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """``Q(s, .)`` ``[B, n]`` for raw obs ``[B, D]``."""
        return self.qnet(self.obs_norm(obs))

    def log_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """``log pi(.|s)`` ``[B, n]``."""
        return torch.log_softmax(self.q_values(obs) / self.temperature, dim=-1)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)`` ``[B]`` of integer actions ``[B]`` or ``[B, 1]``."""
        idx = action.reshape(-1, 1).long()
        return self.log_probs(obs).gather(1, idx).squeeze(1)

    def act(
        self,
        obs: torch.Tensor,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Integer actions ``[B]``: ``argmax Q`` or a Boltzmann sample."""
        if deterministic:
            return self.q_values(obs).argmax(-1)
        probs = self.log_probs(obs).exp()
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def _out(net: nn.Module) -> int:
    return _linears(net)[-1].out_features
