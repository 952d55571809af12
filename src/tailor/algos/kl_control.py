"""The adaptive KL controller (Ziegler et al. 2019, "Fine-Tuning Language Models from Human
Preferences"; TRL's ``AdaptiveKLController``) as one pure function.

A customization's reward ``r_R + omega' log pi_prior - alpha_hat log pi_theta`` penalises the
per-step KL to the prior with weight ``alpha_hat`` when ``omega' = alpha_hat`` (and a mixture of
KL and entropy otherwise). For a prior whose temperature nobody knows there is no right weight in
advance: the scale of the add-on reward decides how far any weight lets the policy move. So the
weight is adapted to hold the measured KL near a target, as RLHF does with its ``beta``.
"""

from __future__ import annotations

import dataclasses
import math

from tailor.methods import Method
from tailor.reward import RewardSpec

__all__ = ["adapt_scale", "scaled_method"]


def adapt_scale(scale: float, kl: float, target: float, n_steps: int, horizon: int) -> float:
    """The coefficients' next scale after a rollout of ``n_steps`` steps with mean KL ``kl``.

    ``e = clip(kl / target - 1, -0.2, 0.2)``, ``scale * (1 + e * n_steps / horizon)``: a KL above
    the target raises the weight of the KL terms (pulls the policy back to the prior), one below
    it lowers the weight (lets the add-on reward move it). A non-finite ``kl`` leaves the scale.

    Args:
        scale: the current multiplier of ``(omega', alpha_hat)`` (> 0).
        kl: measured ``E[log pi_theta - log pi_prior]`` per step (nats).
        target: the KL per step to hold (nats, > 0).
        n_steps: environment steps in the rollout (its batch size).
        horizon: the controller's horizon in steps (> 0).
    """
    if not math.isfinite(kl):
        return scale
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return scale * (1.0 + error * n_steps / horizon)


def scaled_method(method: Method, scale: float) -> Method:
    """``method`` with its reward's ``omega'`` and ``alpha_hat`` times ``scale`` (the adaptive
    KL controller's multiplier; ``method`` itself at 1). Their ratio is kept."""
    if scale == 1.0:
        return method
    spec = RewardSpec(method.spec.omega_prime * scale, method.spec.alpha_hat * scale)
    return dataclasses.replace(method, spec=spec)
