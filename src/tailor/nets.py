"""Networks of the PPO family: MLP, Gaussian actor, critic, empirical observation normalization.

Shapes: ``B`` batch, ``D`` observation size, ``A`` action size. Everything is plain ``torch.nn``;
the state dicts are what :mod:`tailor.checkpoint` saves (safetensors), so parameter names are part
of the checkpoint format.

The Gaussian policy is ``a ~ N(mu(s), diag(sigma^2))`` with ``log sigma`` either one learned vector
shared by all states (``std_type="global"``, the paper's default, Table III) or a second head of the
actor network (``std_type="state"``, the paper's ablation).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "NORM_MODES",
    "Actor",
    "Critic",
    "EmpiricalNormalization",
    "SquashedGaussianActor",
    "gaussian_entropy",
    "gaussian_kl",
    "gaussian_log_prob",
    "mlp",
    "non_finite_state",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    # The other activations of rsl-rl's ``resolve_nn_activation`` (names as rsl-rl spells them),
    # so that imported priors (tailor.priors) keep their network; all with torch's defaults.
    "selu": nn.SELU,
    "crelu": nn.CELU,
    "lrelu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "identity": nn.Identity,
}
STD_TYPES = ("global", "state")
_LOG_2PI = math.log(2.0 * math.pi)
# Bounds of a state-dependent log-std head, so that one bad state cannot give sigma = 0 or inf.
_LOG_STD_MIN, _LOG_STD_MAX = -7.0, 2.0


def non_finite_state(modules: dict[str, nn.Module]) -> str | None:
    """The name (``"<key>.<parameter or buffer>"``) of the first floating-point parameter or
    buffer of ``modules`` that holds a NaN or an infinity; ``None`` when all are finite."""
    for key, module in modules.items():
        for name, t in itertools.chain(module.named_parameters(), module.named_buffers()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"{key}.{name}"
    return None


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    out_gain: float | None = None,
    zero_last: bool = False,
) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``sizes`` (input, hidden..., output).

    With ``out_gain`` (PPO's actor and critic): orthogonal weights with gain ``sqrt(2)`` on hidden
    layers and ``out_gain`` on the output layer, zero biases (the PPO implementation details of
    Huang et al., 2022): a small ``out_gain`` makes the first policy's mean action close to 0
    everywhere. Without it (the Q-networks and the SAC actor): PyTorch's default initialization.
    ``zero_last`` then zeroes the output layer, so the network starts at exactly 0 (a residual
    ``Q_R`` that starts as the prior).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        linear = nn.Linear(int(n_in), int(n_out))
        if out_gain is not None:
            nn.init.orthogonal_(linear.weight, gain=out_gain if last else math.sqrt(2.0))
            nn.init.zeros_(linear.bias)
        elif last and zero_last:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def gaussian_log_prob(
    actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """``log N(a; mu, diag(sigma^2))`` summed over action dims.

    ``sum_j [-(a_j - mu_j)^2 / (2 sigma_j^2) - log sigma_j - log(2 pi) / 2]``.
    Shapes: ``actions, mean`` ``[B, A]``; ``log_std`` ``[B, A]`` or ``[A]``; returns ``[B]``.
    Written out rather than via ``torch.distributions`` to skip its per-call validation overhead
    (this runs every environment step).
    """
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std).sum(-1) - 0.5 * _LOG_2PI * actions.shape[-1]


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy ``sum_j [log sigma_j + (1 + log 2 pi) / 2]``; ``[B, A] -> [B]`` or ``[A] -> []``."""
    return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """``KL(p || q)`` of two diagonal Gaussians, summed over action dims; ``[B, A] -> [B]``.

    ``sum_j [log(sigma_q/sigma_p) + (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2) - 1/2]``.
    ``log_std`` arguments may be ``[A]`` (global std); they broadcast against ``[B, A]``.
    """
    var_q = torch.exp(2.0 * log_std_q)
    kl = (
        log_std_q
        - log_std_p
        + (torch.exp(2.0 * log_std_p) + (mean_p - mean_q).square()) / (2.0 * var_q)
        - 0.5
    )
    return kl.sum(-1)


class Actor(nn.Module):
    """Gaussian policy ``pi(a|s) = N(mu(s), diag(sigma^2))`` on *normalized* observations.

    Args:
        obs_dim: ``D``.
        act_dim: ``A``.
        hidden: hidden layer sizes of the mean network.
        activation: one of :data:`ACTIVATIONS`.
        std_type: ``"global"`` (one learned ``log sigma`` vector, state-independent) or
            ``"state"`` (a linear head on the last hidden layer gives ``log sigma(s)``).
        init_std: initial ``sigma`` (both types start with ``log sigma = log init_std``).
        action_bounds: ``(low [A], high [A])`` finite, ``low < high``, or ``None`` (default).
            With bounds the mean is squashed into them, ``mu = low + (tanh(raw) + 1) / 2 *
            (high - low)`` (SB3's ``unscale_action``: a TD3/DDPG actor as a Gaussian prior, its
            std around the squashed mean); ``None`` leaves the forward exactly as without.

    Parameters (checkpoint names): ``body.*`` (hidden layers), ``mean.*`` (output layer),
    ``log_std`` (``[A]``, global) or ``log_std_head.*`` (state); with bounds the buffers
    ``out_low``, ``out_high`` (``[A]``).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        activation: str = "elu",
        std_type: str = "global",
        init_std: float = 1.0,
        action_bounds: tuple[Any, Any] | None = None,
    ) -> None:
        super().__init__()
        if std_type not in STD_TYPES:
            raise ValueError(f"std_type must be one of {STD_TYPES}, got {std_type!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std}")
        self.obs_dim, self.act_dim, self.std_type = obs_dim, act_dim, std_type
        hidden = [int(h) for h in hidden]
        self.hidden, self.activation = tuple(hidden), activation
        # body = all hidden layers (each followed by the activation), so both heads can share it.
        body = mlp([obs_dim, *hidden, 1], activation, 1.0)[:-1] if hidden else nn.Identity()
        self.body = body
        last = hidden[-1] if hidden else obs_dim
        self.mean = mlp([last, act_dim], activation, out_gain=0.01)[0]
        if std_type == "global":
            self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        else:
            self.log_std_head = mlp([last, act_dim], activation, out_gain=0.01)[0]
            nn.init.constant_(self.log_std_head.bias, math.log(init_std))
        self.bounded = action_bounds is not None
        if action_bounds is not None:
            low, high = (torch.as_tensor(b, dtype=torch.float32).reshape(-1) for b in action_bounds)
            ok = low.shape == high.shape == (act_dim,) and bool(torch.isfinite(low).all())
            if not (ok and bool(torch.isfinite(high).all()) and bool((low < high).all())):
                raise ValueError(
                    f"action_bounds must be finite (low [{act_dim}], high [{act_dim}]) with "
                    f"low < high, got {action_bounds!r}"
                )
            self.register_buffer("out_low", low.clone())
            self.register_buffer("out_high", high.clone())

    def _out(self, raw: torch.Tensor) -> torch.Tensor:
        """The mean head's output ``[B, A]``, squashed into the bounds when there are some."""
        if not self.bounded:
            return raw
        return self.out_low + 0.5 * (torch.tanh(raw) + 1.0) * (self.out_high - self.out_low)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized observations ``[B, D]`` -> ``(mean [B, A], log_std [A] or [B, A])``."""
        h = self.body(obs)
        if self.std_type == "global":
            return self._out(self.mean(h)), self.log_std
        log_std = self.log_std_head(h).clamp(_LOG_STD_MIN, _LOG_STD_MAX)
        return self._out(self.mean(h)), log_std

    def bounds(self) -> tuple[list[float], list[float]] | None:
        """The output bounds ``(low, high)`` as lists (``None`` without)."""
        if not self.bounded:
            return None
        return self.out_low.tolist(), self.out_high.tolist()


class Critic(nn.Module):
    """State-value function ``V(s)`` on normalized observations: ``[B, D] -> [B]``.

    Parameters (checkpoint names): ``net.*``.
    """

    def __init__(self, obs_dim: int, hidden: Sequence[int], activation: str = "elu") -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


NORM_MODES = ("std_eps", "var_eps")


class EmpiricalNormalization(nn.Module):
    """Running mean/variance observation normalizer (rsl-rl's ``EmpiricalNormalization``).

    ``normalize(x) = (x - mean) / (std + eps)``. In training mode every :meth:`forward` first folds
    the batch into the running statistics (parallel/Chan update of mean and population variance);
    in eval mode (``.eval()``, the *frozen* mode) the statistics never change.

    ``mode`` chooses the formula, so that a prior imported from another library is normalized
    exactly as that library did (:mod:`tailor.priors`):

    - ``"std_eps"`` (default; tailor, rsl-rl, skrl's ``RunningStandardScaler`` with ``clip``):
      ``(x - mean) / (sqrt(var) + eps)``, float32 statistics, clipped to ``[-clip, clip]`` when
      ``clip`` is given (the default ``None`` does not clip).
    - ``"var_eps"`` (Stable-Baselines3 ``VecNormalize``, gymnasium's ``NormalizeObservation`` as
      CleanRL uses it): ``clip((x - mean) / sqrt(var + eps), -clip, clip)`` (no clipping when
      ``clip`` is ``None``), computed in float64 from float64 statistics and cast back to the
      input's dtype, as those libraries do in numpy.

    Buffers (checkpoint names): ``mean [D]``, ``var [D]``, ``count []`` (float64 so that a count of
    tens of millions stays exact).
    """

    def __init__(
        self, dim: int, eps: float = 1e-2, mode: str = "std_eps", clip: float | None = None
    ) -> None:
        super().__init__()
        if mode not in NORM_MODES:
            raise ValueError(f"mode must be one of {NORM_MODES}, got {mode!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < math.inf:
            raise ValueError(f"the normalizer's eps must be a finite number >= 0, got {eps!r}")
        if clip is not None and not (isinstance(clip, (int, float)) and 0 < clip < math.inf):
            raise ValueError(f"the normalizer's clip must be a finite number > 0, got {clip!r}")
        self.eps, self.mode, self.clip = eps, mode, clip
        dtype = torch.float64 if mode == "var_eps" else torch.float32
        self.register_buffer("mean", torch.zeros(dim, dtype=dtype))
        self.register_buffer("var", torch.ones(dim, dtype=dtype))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B, D]``; updates the statistics first when training."""
        if self.training:
            self.update(x)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The mode's formula without touching the statistics; ``[B, D] -> [B, D]``."""
        if self.mode == "var_eps":
            y = (x.double() - self.mean) / torch.sqrt(self.var + self.eps)
            if self.clip is not None:
                y = y.clamp(-self.clip, self.clip)
            return y.to(x.dtype)
        y = (x - self.mean) / (self.var.sqrt() + self.eps)
        return y if self.clip is None else y.clamp(-self.clip, self.clip)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``[B, D]`` into the running mean and (population) variance."""
        x = x.to(self.mean.dtype)
        n = x.shape[0]
        self.count += n
        rate = float(n / self.count)
        mean_x = x.mean(0)
        var_x = x.var(0, unbiased=False)
        delta = mean_x - self.mean
        self.mean += rate * delta
        # Chan et al.: var = (1-rate) var + rate var_x + rate (1-rate) delta^2, written with the
        # updated mean as rsl-rl does (delta * (mean_x - new_mean) = (1 - rate) delta^2).
        self.var += rate * (var_x - self.var + delta * (mean_x - self.mean))


# ---- the tanh-squashed Gaussian of SAC ---------------------------------------------------------

# SAC's log-std bounds (wider below than PPO's state head needs: SAC anneals towards small std).
_SAC_LOG_STD_MIN, _SAC_LOG_STD_MAX = -5.0, 2.0
_SQUASH_EPS = 1e-6
_2LOG2 = 2.0 * math.log(2.0)


class SquashedGaussianActor(nn.Module):
    """``a = low + (tanh(u) + 1)/2 * (high - low)``, ``u ~ N(mu(s), sigma(s))``.

    Args:
        obs_dim, act_dim: sizes.
        hidden: hidden layer sizes of the shared trunk.
        action_bounds: ``(low, high)``, each ``[act_dim]`` (finite).
        obs_bounds: ``(obs_low, obs_high)``, each ``[obs_dim]``, used to scale inputs to
            ``[-1, 1]`` where finite (unbounded dimensions are passed through); ``None``: no
            scaling. The buffers ``obs_bias`` / ``obs_scale`` may be overwritten (an imported
            prior's normalizer, :meth:`tailor.priors.policies.SquashedGaussianPrior.to_actor`).
        activation: hidden activation (a :data:`ACTIVATIONS` name; tailor's SAC: ``relu``).
        log_std_min: lower clamp of ``log sigma`` (tailor's SAC: -5; SB3's: -20).
        obs_clip: clip the scaled observations to ``[-obs_clip, obs_clip]`` (SB3
            ``VecNormalize``'s ``clip_obs``); ``None``: no clipping.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        action_bounds: tuple[np.ndarray, np.ndarray],
        obs_bounds: tuple[np.ndarray, np.ndarray] | None = None,
        *,
        activation: str = "relu",
        log_std_min: float = _SAC_LOG_STD_MIN,
        obs_clip: float | None = None,
    ) -> None:
        super().__init__()
        low, high = action_bounds
        obs_low, obs_high = obs_bounds if obs_bounds is not None else (None, None)
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(int(h) for h in hidden)
        self.activation, self.log_std_min, self.obs_clip = activation, float(log_std_min), obs_clip
        self.trunk = mlp([obs_dim, *self.hidden, 2 * act_dim], activation)
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))
        o_scale, o_bias = obs_affine(obs_dim, obs_low, obs_high)
        self.register_buffer("obs_scale", o_scale)
        self.register_buffer("obs_bias", o_bias)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        x = (obs - self.obs_bias) / self.obs_scale
        return x if self.obs_clip is None else x.clamp(-self.obs_clip, self.obs_clip)

    def options(self) -> dict[str, Any]:
        """The constructor's keyword options, JSON-able (what a checkpoint must record)."""
        return {
            "activation": self.activation,
            "log_std_min": self.log_std_min,
            "obs_clip": self.obs_clip,
        }

    def _dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.trunk(self.normalize(obs)).chunk(2, dim=-1)
        return mu, log_std.clamp(self.log_std_min, _SAC_LOG_STD_MAX)

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized sample ``(action [B, act_dim], log pi(action|s) [B])``.

        The density is :meth:`_log_prob_u`'s with ``(u - mu) / sigma = eps`` known and the
        constants summed apart: half the ops (and autograd nodes), as this runs twice in every
        SAC gradient step.
        """
        mu, log_std = self._dist(obs)
        eps = torch.randn(mu.shape, generator=generator)
        u = mu + log_std.exp() * eps
        # -eps^2/2 - log sigma - log(1 - tanh(u)^2), the last as in _log_prob_u; the constants
        # -log(2 pi)/2 - 2 log 2 - log(scale) of each dimension go into `const`.
        per_dim = 2.0 * (u + nn.functional.softplus(-2.0 * u)) - log_std - 0.5 * eps.square()
        const = torch.log(self.scale).sum() + self.act_dim * (0.5 * math.log(2 * math.pi) + _2LOG2)
        return self._squash(u), per_dim.sum(-1) - const

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``log pi(action|s)`` ``[B]`` of given (in-bounds) actions ``[B, act_dim]``."""
        mu, log_std = self._dist(obs)
        y = ((action - self.bias) / self.scale).clamp(-1.0 + _SQUASH_EPS, 1.0 - _SQUASH_EPS)
        return self._log_prob_u(torch.atanh(y), mu, log_std)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``squash(mu(s))`` used for evaluation."""
        return self._squash(self._dist(obs)[0])

    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.bias + self.scale * torch.tanh(u)

    def _log_prob_u(self, u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        # Gaussian log-density of u, minus log|da/du| = log(scale * (1 - tanh(u)^2)), written
        # with softplus for stability: log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
        z = (u - mu) / log_std.exp()
        gauss = -0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        log_det = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return (gauss - log_det - torch.log(self.scale)).sum(-1)


def obs_affine(
    obs_dim: int, low: np.ndarray | None, high: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, bias)`` ``[obs_dim]`` that map finite observation bounds to ``[-1, 1]`` (1, 0
    where a bound is infinite): SAC's input scaling, ``(obs - bias) / scale``."""
    scale, bias = torch.ones(obs_dim), torch.zeros(obs_dim)
    if low is not None and high is not None:
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        ok = np.isfinite(low) & np.isfinite(high) & (high > low)
        scale[ok] = torch.as_tensor((high[ok] - low[ok]) / 2.0, dtype=torch.float32)
        bias[ok] = torch.as_tensor((high[ok] + low[ok]) / 2.0, dtype=torch.float32)
    return scale, bias
