"""The one reward function behind every method.

Residual Policy Gradient reads every on-policy method as plain policy gradient on one
reformulated reward (reference section 2, eq. 8 of the paper)::

    r_t = r(s_t, a_t) + omega' * log pi_prior(a_t|s_t) - alpha_hat * log pi_theta(a_t|s_t)

``r`` is whichever reward the method optimises (the basic reward, the add-on reward ``r_R``, or
their sum), ``log pi_theta`` is the behaviour policy's log-probability recorded when the action was
sampled (a constant for the gradient), and ``log pi_prior`` is the frozen prior's log-probability of
the same action. Methods differ only in the two coefficients; see :mod:`tailor.methods`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from tailor.errors import TailorError

if TYPE_CHECKING:  # torch only for the type: the numpy lab (tailor.tabular) imports this module
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor", float)

__all__ = ["KL_ESTIMATORS", "RewardSpec", "reformulate", "split_kl"]


@dataclass(frozen=True)
class RewardSpec:
    """The two coefficients of the reformulated reward.

    Attributes:
        omega_prime: weight of ``log pi_prior`` (``omega * alpha`` in Residual Q-Learning's terms).
            Zero means the prior does not enter the reward. Any finite real number.
        alpha_hat: entropy temperature of the policy being trained; weight of ``-log pi_theta``.
            Finite and ``>= 0``.
    """

    omega_prime: float = 0.0
    alpha_hat: float = 0.0

    def __post_init__(self) -> None:
        for name in ("omega_prime", "alpha_hat"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TailorError(f"RewardSpec.{name} must be a real number, got {value!r}")
            if not math.isfinite(value):
                raise TailorError(f"RewardSpec.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.alpha_hat < 0:
            raise TailorError(
                f"RewardSpec.alpha_hat is an entropy temperature and must be >= 0, "
                f"got {self.alpha_hat!r}"
            )

    @property
    def uses_prior(self) -> bool:
        """Whether ``log pi_prior`` is needed to compute the reward."""
        return self.omega_prime != 0.0


def reformulate(
    r: Array,
    logp_prior: Array | None,
    logp_pi: Array,
    spec: RewardSpec,
) -> Array:
    """Reformulated reward ``r + omega' * logp_prior - alpha_hat * logp_pi``.

    Works element-wise on numpy arrays, torch tensors or Python floats; all inputs must have the
    same shape (broadcasting is refused so that a ``[T, N]`` reward is never silently combined with
    a ``[T]`` log-prob).

    Args:
        r: reward of the method, any shape ``[...]``.
        logp_prior: ``log pi_prior(a|s)`` of the executed actions, shape ``[...]``; may be ``None``
            only when ``spec.omega_prime == 0``.
        logp_pi: ``log pi_theta(a|s)`` recorded at sampling time, shape ``[...]``.
        spec: the coefficients.

    Returns:
        The reformulated reward, shape ``[...]``, same type as ``r``.
    """
    if not isinstance(spec, RewardSpec):
        raise TypeError(f"spec must be a RewardSpec, got {type(spec).__name__}")
    _check_shape("logp_pi", r, logp_pi)
    # `r + 0.0` returns a fresh array/tensor of r's type, so the caller's r is never aliased.
    out = r - spec.alpha_hat * logp_pi if spec.alpha_hat != 0.0 else r + 0.0
    if spec.omega_prime != 0.0:
        if logp_prior is None:
            raise TailorError(
                f"logp_prior is None but omega_prime={spec.omega_prime}: a method whose reward "
                "uses the prior needs the prior's log-probabilities"
            )
        _check_shape("logp_prior", r, logp_prior)
        out = out + spec.omega_prime * logp_prior
    elif logp_prior is not None:
        _check_shape("logp_prior", r, logp_prior)
    return out


def _shape(x: object) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else ()


def _check_shape(name: str, r: object, other: object) -> None:
    if _shape(r) != _shape(other):
        raise TailorError(
            f"{name} has shape {_shape(other)} but the reward has shape {_shape(r)}; "
            "reformulate() needs matching shapes"
        )


# Where the reward's KL part goes: sampled in the reward (k1: the paper's form, the default), or
# moved into the loss (``k3-loss`` for language models, TRL / verl's; ``exact-loss`` for Gaussian
# policies: the closed-form KL per state, no sampling noise).
KL_ESTIMATORS = ("k1-reward", "k3-loss", "exact-loss")


def split_kl(spec: RewardSpec, estimator: str) -> tuple[RewardSpec, float]:
    """``(reward spec, loss coefficient of KL(pi_theta || pi_prior))`` of a KL estimator.

    ``omega' log pi_prior - alpha_hat log pi_theta = (omega' - alpha_hat) log pi_prior
    - alpha_hat (log pi_theta - log pi_prior)``: the second term's expectation over the policy's
    own action is ``-alpha_hat KL(pi_theta(.|s) || pi_prior(.|s))``. ``k1-reward`` keeps it
    sampled in the reward (spec unchanged, coefficient 0); ``k3-loss`` / ``exact-loss`` leave
    ``(omega' - alpha_hat) log pi_prior`` in the reward and return ``alpha_hat``, the weight of the
    per-state KL the loop adds to its loss (per token as k3; per state in closed form).

    Example: ``split_kl(RewardSpec(0.3, 0.1), "exact-loss") == (RewardSpec(0.2, 0.0), 0.1)``.
    """
    if estimator not in KL_ESTIMATORS:
        allowed = ", ".join(KL_ESTIMATORS)
        raise TailorError(f"kl_estimator must be one of {allowed}, got {estimator!r}")
    if estimator == "k1-reward":
        return spec, 0.0
    return RewardSpec(spec.omega_prime - spec.alpha_hat, 0.0), spec.alpha_hat
