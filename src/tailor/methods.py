"""Named methods: each one is a setting of the one reward function, nothing more.

Reference section 2 (Table IV/V of the paper). Every algorithm in tailor (PPO, the tabular policy
gradient, DQN/SAC targets, token-level PPO) asks this module what a method means:

=================  ============  ==========  ===============  ======================
method             reward used   omega'      alpha_hat        entropy bonus in loss
=================  ============  ==========  ===============  ======================
no-entropy         basic         0           0                0
end-entropy        basic         0           0                alpha
repeat-entropy     basic         0           alpha            alpha
soft               basic         0           alpha            0
full               basic+add-on  0           alpha            0
greedy             add-on        0           alpha_hat        0
kl                 add-on        beta        beta             0
residual           add-on        omega'      alpha_hat        0
=================  ============  ==========  ===============  ======================

``greedy``, ``kl`` and ``residual`` are *customization* methods: they start from a prior policy
and never see the basic reward. ``full`` is the upper bound that does see both rewards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from tailor.errors import TailorError
from tailor.reward import RewardSpec

__all__ = [
    "CUSTOMIZATION_METHODS",
    "METHODS",
    "TRAINING_METHODS",
    "Method",
    "MethodInfo",
    "resolve",
]

RewardKind = Literal["basic", "addon", "both"]


@dataclass(frozen=True)
class MethodInfo:
    """Static description of a named method (what it needs, before coefficients are chosen).

    Attributes:
        name: the method's name as used on the command line.
        reward: which environment reward it optimises: ``"basic"`` (the task's own reward ``r``),
            ``"addon"`` (the add-on reward ``r_R`` only) or ``"both"`` (``r + r_R``).
        customization: whether it customizes a prior (starts from the prior's weights).
        coefficients: the keyword arguments :func:`resolve` requires.
        summary: one line for help texts.
    """

    name: str
    reward: RewardKind
    customization: bool
    coefficients: tuple[str, ...]
    summary: str


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("no-entropy", "basic", False, (), "plain PPO, no entropy anywhere"),
        MethodInfo(
            "end-entropy",
            "basic",
            False,
            ("alpha",),
            "entropy bonus in the loss only (first-step entropy, A3C style)",
        ),
        MethodInfo(
            "repeat-entropy",
            "basic",
            False,
            ("alpha",),
            "soft reward plus an extra entropy bonus in the loss (first step counted twice)",
        ),
        MethodInfo(
            "soft",
            "basic",
            False,
            ("alpha",),
            "Soft PPO: reward r - alpha log pi_theta, no loss bonus",
        ),
        MethodInfo(
            "full",
            "both",
            False,
            ("alpha",),
            "Soft PPO on the full reward r + r_R (upper bound; sees the basic reward)",
        ),
        MethodInfo(
            "greedy",
            "addon",
            True,
            ("alpha_hat",),
            "Greedy PPO: Soft PPO on r_R alone, starting from the prior",
        ),
        MethodInfo(
            "kl",
            "addon",
            True,
            ("beta",),
            "KL PPO (classic RLHF): r_R - beta log(pi_theta / pi_prior)",
        ),
        MethodInfo(
            "residual",
            "addon",
            True,
            ("omega_prime", "alpha_hat"),
            "Residual PPO: r_R + omega' log pi_prior - alpha_hat log pi_theta",
        ),
    )
}

TRAINING_METHODS: tuple[str, ...] = tuple(n for n, m in METHODS.items() if not m.customization)
CUSTOMIZATION_METHODS: tuple[str, ...] = tuple(n for n, m in METHODS.items() if m.customization)


@dataclass(frozen=True)
class Method:
    """A named method with its coefficients resolved.

    Attributes:
        name: the method's name.
        spec: coefficients of :func:`tailor.reward.reformulate`.
        entropy_bonus: coefficient ``c`` of the entropy bonus in the policy loss
            (``loss = -surrogate - c * H(pi_theta)``); 0 for none.
        reward: which environment reward the method optimises (see :class:`MethodInfo`).
        customization: whether it starts from a prior policy.
    """

    name: str
    spec: RewardSpec
    entropy_bonus: float
    reward: RewardKind
    customization: bool

    @property
    def needs_prior_logp(self) -> bool:
        """Whether the reward needs ``log pi_prior`` of every executed action."""
        return self.spec.uses_prior

    def env_reward(self, basic, addon):
        """The environment reward this method optimises, from the two parts (same shape)."""
        if self.reward == "basic":
            return basic
        if self.reward == "addon":
            return addon
        return basic + addon


def resolve(
    name: str,
    *,
    alpha: float | None = None,
    alpha_hat: float | None = None,
    omega_prime: float | None = None,
    beta: float | None = None,
) -> Method:
    """Resolve a method name and its coefficients into a :class:`Method`.

    Each method takes the coefficients listed in ``METHODS[name].coefficients`` (see the module
    table). For ``kl`` the one coefficient ``beta`` may also be given as ``omega_prime`` and/or
    ``alpha_hat``, which must then be equal (that equality *is* KL PPO; different values are
    Residual PPO).

    Raises:
        TailorError: unknown name, a missing or unexpected coefficient, a non-finite value, a
            negative temperature, or ``kl`` with two different values.
    """
    if name not in METHODS:
        raise TailorError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    given = {
        k: v
        for k, v in (
            ("alpha", alpha),
            ("alpha_hat", alpha_hat),
            ("omega_prime", omega_prime),
            ("beta", beta),
        )
        if v is not None
    }
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TailorError(f"{name}: {key} must be a real number, got {value!r}")
        if not math.isfinite(value):
            raise TailorError(f"{name}: {key} must be finite, got {value!r}")

    if name == "kl":
        values = set(given.values())
        unexpected = set(given) - {"beta", "omega_prime", "alpha_hat"}
        if unexpected:
            raise TailorError(f"kl does not take {', '.join(sorted(unexpected))}")
        if not values:
            raise TailorError("kl needs its coefficient beta (omega' = alpha_hat = beta)")
        if len(values) > 1:
            raise TailorError(
                "kl uses one coefficient for both the prior and the entropy term "
                f"(omega' = alpha_hat = beta), got {given}; "
                "use the 'residual' method to set them separately"
            )
        required = {"beta": values.pop()}
    else:
        info = METHODS[name]
        missing = [c for c in info.coefficients if c not in given]
        unexpected = [c for c in given if c not in info.coefficients]
        if missing:
            raise TailorError(f"{name} needs {', '.join(missing)}")
        if unexpected:
            raise TailorError(
                f"{name} does not take {', '.join(unexpected)} "
                f"(it takes: {', '.join(info.coefficients) or 'no coefficients'})"
            )
        required = given

    for key in ("alpha", "alpha_hat", "beta"):
        if key in required and required[key] < 0:
            raise TailorError(
                f"{name}: {key} is an entropy temperature and must be >= 0, got {required[key]}"
            )

    a = float(required.get("alpha", 0.0))
    if name == "no-entropy":
        spec, bonus = RewardSpec(0.0, 0.0), 0.0
    elif name == "end-entropy":
        spec, bonus = RewardSpec(0.0, 0.0), a
    elif name == "repeat-entropy":
        spec, bonus = RewardSpec(0.0, a), a
    elif name in ("soft", "full"):
        spec, bonus = RewardSpec(0.0, a), 0.0
    elif name == "greedy":
        spec, bonus = RewardSpec(0.0, required["alpha_hat"]), 0.0
    elif name == "kl":
        spec, bonus = RewardSpec(required["beta"], required["beta"]), 0.0
    else:  # residual
        spec, bonus = RewardSpec(required["omega_prime"], required["alpha_hat"]), 0.0
    info = METHODS[name]
    return Method(name, spec, bonus, info.reward, info.customization)
