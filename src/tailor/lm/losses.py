"""The offline (preference) family as pure loss functions on sequence log-probabilities.

Appendix V-B of the Residual Policy Gradient paper reads DPO as the offline form of KL PPO at the
token level: the policy's log-ratio to the prior *is* the reward. Decoupling the two coefficients
(``omega'`` on the prior, ``alpha_hat`` on the policy) gives eq. 25, whose optimum under a
Bradley-Terry model of ``r_R`` is the same target as Residual PPO::

    pi_hat(y|x)  ∝  pi_prior(y|x) ** (omega' / alpha_hat) * exp(r_R(x, y) / alpha_hat)

Every function takes *sequence* log-probabilities ``log pi(y|x) = sum_t log pi(y_t|x, y_<t)``
(torch tensors of shape ``[B]``) and returns the per-example loss to MINIMISE, shape ``[B]``;
reduce it (``.mean()``) yourself. All use ``F.logsigmoid`` so large margins neither overflow nor
lose the gradient.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F

from tailor.errors import TailorError

__all__ = ["ce_dpo_loss", "decoupled_dpo_loss", "dpo_loss"]


def dpo_loss(
    logp_w: torch.Tensor,
    logp_l: torch.Tensor,
    ref_w: torch.Tensor,
    ref_l: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """DPO loss (eq. 22, negated)::

        loss = -log sigmoid(beta * [(logp_w - ref_w) - (logp_l - ref_l)])

    Args:
        logp_w: ``log pi_theta(y_w|x)`` of the chosen responses, shape ``[B]``.
        logp_l: ``log pi_theta(y_l|x)`` of the rejected responses, shape ``[B]``.
        ref_w: ``log pi_prior(y_w|x)`` (the frozen reference), shape ``[B]``.
        ref_l: ``log pi_prior(y_l|x)``, shape ``[B]``.
        beta: KL coefficient, finite and ``> 0``.

    Returns:
        Per-example loss, shape ``[B]``; ``log 2`` where the margin is zero.
    """
    _check_positive("dpo_loss", "beta", beta)
    _check_tensors("dpo_loss", logp_w=logp_w, logp_l=logp_l, ref_w=ref_w, ref_l=ref_l)
    # DPO *is* the decoupled loss with omega' = alpha_hat = beta; computing it through the same
    # arithmetic makes that identity exact to the last bit rather than merely up to rounding.
    return _decoupled(logp_w, logp_l, ref_w, ref_l, float(beta), float(beta))


def ce_dpo_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    label: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Cross-entropy DPO loss (eq. 24, negated): one labelled response per example::

        m    = beta * (logp - ref_logp)
        loss = -(label * log sigmoid(m) + (1 - label) * log sigmoid(-m))

    ``log sigmoid(-m) = log(1 - sigmoid(m))`` is the paper's second term written stably. A label
    of 1 (a good response) pushes ``logp`` up, a label of 0 pushes it down.

    Args:
        logp: ``log pi_theta(y|x)``, shape ``[B]``.
        ref_logp: ``log pi_prior(y|x)``, shape ``[B]``.
        label: 1 for a good response, 0 for a bad one; float, int or bool tensor, shape ``[B]``.
        beta: coefficient, finite and ``> 0``.

    Returns:
        Per-example loss, shape ``[B]``.
    """
    _check_positive("ce_dpo_loss", "beta", beta)
    _check_tensors("ce_dpo_loss", logp=logp, ref_logp=ref_logp, label=label)
    lab = label.detach()
    if not bool(((lab == 0) | (lab == 1)).all()):
        bad = lab[(lab != 0) & (lab != 1)].flatten()[:3].tolist()
        raise TailorError(f"ce_dpo_loss: label must contain only 0 and 1, got values such as {bad}")
    lab = label.to(logp.dtype)
    m = float(beta) * (logp - ref_logp)
    return -(lab * F.logsigmoid(m) + (1.0 - lab) * F.logsigmoid(-m))


def decoupled_dpo_loss(
    logp_w: torch.Tensor,
    logp_l: torch.Tensor,
    prior_w: torch.Tensor,
    prior_l: torch.Tensor,
    omega_prime: float,
    alpha_hat: float,
) -> torch.Tensor:
    """Decoupled DPO loss (eq. 25, negated)::

        loss = -log sigmoid(alpha_hat * (logp_w - logp_l) - omega' * (prior_w - prior_l))

    With ``omega' = alpha_hat = beta`` it is :func:`dpo_loss` exactly. Under Bradley-Terry
    preferences ``P(y1 > y2) = sigmoid(r_R(y1) - r_R(y2))`` its expected value is minimised by
    ``pi_theta ∝ pi_prior ** (omega'/alpha_hat) * exp(r_R / alpha_hat)``.

    Args:
        logp_w: ``log pi_theta(y_w|x)``, shape ``[B]``.
        logp_l: ``log pi_theta(y_l|x)``, shape ``[B]``.
        prior_w: ``log pi_prior(y_w|x)``, shape ``[B]``.
        prior_l: ``log pi_prior(y_l|x)``, shape ``[B]``.
        omega_prime: weight of the prior's log-ratio; any finite real (0 ignores the prior).
        alpha_hat: weight of the policy's log-ratio (its temperature), finite and ``> 0``.

    Returns:
        Per-example loss, shape ``[B]``.
    """
    _check_finite("decoupled_dpo_loss", "omega_prime", omega_prime)
    _check_positive("decoupled_dpo_loss", "alpha_hat", alpha_hat)
    _check_tensors(
        "decoupled_dpo_loss", logp_w=logp_w, logp_l=logp_l, prior_w=prior_w, prior_l=prior_l
    )
    return _decoupled(logp_w, logp_l, prior_w, prior_l, float(omega_prime), float(alpha_hat))


def _decoupled(
    logp_w: torch.Tensor,
    logp_l: torch.Tensor,
    prior_w: torch.Tensor,
    prior_l: torch.Tensor,
    omega_prime: float,
    alpha_hat: float,
) -> torch.Tensor:
    margin = alpha_hat * (logp_w - logp_l) - omega_prime * (prior_w - prior_l)
    return -F.logsigmoid(margin)


def _check_finite(fn: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TailorError(f"{fn}: {name} must be a real number, got {value!r}")
    if not math.isfinite(float(value)):
        raise TailorError(f"{fn}: {name} must be finite, got {value!r}")


def _check_positive(fn: str, name: str, value: object) -> None:
    _check_finite(fn, name, value)
    if float(value) <= 0:  # type: ignore[arg-type]
        raise TailorError(f"{fn}: {name} must be > 0, got {value!r}")


def _check_tensors(fn: str, **tensors: object) -> None:
    shape = None
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TailorError(
                f"{fn}: {name} must be a torch tensor of shape [B], got {type(t).__name__}"
            )
        if name != "label" and not t.is_floating_point():
            raise TailorError(
                f"{fn}: {name} holds log-probabilities and must be a floating-point "
                f"tensor, got dtype {t.dtype}"
            )
        if t.ndim != 1:
            raise TailorError(
                f"{fn}: {name} must have shape [B] (one value per example), got "
                f"shape {tuple(t.shape)}"
            )
        if shape is None:
            shape = tuple(t.shape)
        elif tuple(t.shape) != shape:
            first = next(iter(tensors))
            raise TailorError(
                f"{fn}: {name} has shape {tuple(t.shape)} but {first} has shape "
                f"{shape}; all inputs must have the same shape [B]"
            )
