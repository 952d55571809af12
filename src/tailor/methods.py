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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tailor.errors import TailorError
from tailor.reward import RewardSpec

__all__ = [
    "CUSTOMIZATION_METHODS",
    "DEFAULT_TEMPERATURE",
    "FALLBACK_COEFFICIENTS",
    "METHODS",
    "OFFLINE_METHODS",
    "TRAINING_METHODS",
    "Method",
    "MethodInfo",
    "check_coefficient_table",
    "method_info",
    "resolve",
    "temperature_defaults",
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

# The offline (preference) family of the language-model path: the same reward setting, learnt
# from preference pairs instead of on-policy samples (reference section 3; tailor.losses).
OFFLINE_METHODS_INFO: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("dpo", "addon", True, ("beta",), "DPO: the offline form of KL PPO"),
        MethodInfo("ce-dpo", "addon", True, ("beta",), "DPO on labelled responses (cross-entropy)"),
        MethodInfo(
            "decoupled-dpo",
            "addon",
            True,
            ("omega_prime", "alpha_hat"),
            "DPO with omega' on the prior and alpha_hat on the policy (eq. 25)",
        ),
    )
}

TRAINING_METHODS: tuple[str, ...] = tuple(n for n, m in METHODS.items() if not m.customization)
CUSTOMIZATION_METHODS: tuple[str, ...] = tuple(n for n, m in METHODS.items() if m.customization)
OFFLINE_METHODS: tuple[str, ...] = tuple(OFFLINE_METHODS_INFO)
# Methods with one coefficient beta for both terms (omega' = alpha_hat = beta). On input, beta may
# also be spelled omega_prime or alpha_hat (the values must then agree): that equality *is* the
# KL reading; different values are the residual / decoupled method.
SINGLE_BETA = ("kl", "dpo", "ce-dpo")
_ALIASES = ("beta", "omega_prime", "alpha_hat")

# The temperature a method falls back to on a task that names no coefficient for it (a user task
# registered without ``coefficients``): our choice, not measured, for rewards of order 1 per step
# (the same value as the point-mass task's table). The built-in tasks all carry their own tables,
# which always come first.
DEFAULT_TEMPERATURE = 0.01
FALLBACK_COEFFICIENTS: dict[str, dict[str, float]] = {
    "no-entropy": {},
    "end-entropy": {"alpha": DEFAULT_TEMPERATURE},
    "repeat-entropy": {"alpha": DEFAULT_TEMPERATURE},
    "soft": {"alpha": DEFAULT_TEMPERATURE},
    "full": {"alpha": DEFAULT_TEMPERATURE},
    "greedy": {"alpha_hat": DEFAULT_TEMPERATURE},
    "kl": {"beta": DEFAULT_TEMPERATURE},
    # omega = 1 on a prior assumed to be at the default temperature: omega' = alpha_hat.
    "residual": {"omega_prime": DEFAULT_TEMPERATURE, "alpha_hat": DEFAULT_TEMPERATURE},
}

# Defaults for resolve(): one mapping, or layers (source, mapping) of which the first that holds
# a coefficient gives it.
Defaults = Mapping[str, float] | Sequence[tuple[str, Mapping[str, float] | None]]


def temperature_defaults(alpha: float, omega: float = 1.0) -> dict[str, float]:
    """The RQL reading of a prior at temperature ``alpha``: ``omega' = omega * alpha``,
    ``alpha_hat = alpha`` (and ``beta = alpha``: KL is ``omega = 1``).

    ``omega`` weighs the prior's own task against the add-on reward: the customized policy
    targets the soft-optimal policy of ``omega r + r_R`` at temperature ``alpha``.
    """
    return {
        "omega_prime": float(omega) * float(alpha),
        "alpha_hat": float(alpha),
        "beta": float(alpha),
    }


@dataclass(frozen=True)
class Method:
    """A named method with its coefficients resolved.

    Attributes:
        name: the method's name.
        coefficients: exactly the coefficients it takes, as floats (``{"beta": 0.1}`` for kl):
            what checkpoints store, and ``resolve(name, **coefficients)`` gives this method back.
        spec: coefficients of :func:`tailor.reward.reformulate`.
        entropy_bonus: coefficient ``c`` of the entropy bonus in the policy loss
            (``loss = -surrogate - c * H(pi_theta)``); 0 for none.
        reward: which environment reward the method optimises (see :class:`MethodInfo`).
        customization: whether it starts from a prior policy.
        offline: whether it learns from preference data (the DPO family) instead of rollouts.
        sources: where each coefficient came from (``"--omega-prime"``, ``"task 'x'"``, ``"prior
            temperature ..."``, ...): what :func:`resolve` merged; not part of equality.
    """

    name: str
    coefficients: dict[str, float]
    spec: RewardSpec
    entropy_bonus: float
    reward: RewardKind
    customization: bool
    offline: bool = False
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

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

    def to_json(self) -> dict[str, Any]:
        """``{"method": name, "coefficients": {...}}``, the form checkpoints store."""
        return {"method": self.name, "coefficients": dict(self.coefficients)}


def method_info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` of an online or offline method; TailorError for an unknown one."""
    if name in METHODS:
        return METHODS[name]
    if name in OFFLINE_METHODS_INFO:
        return OFFLINE_METHODS_INFO[name]
    raise TailorError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _layers(defaults: Defaults | None, where: str) -> list[tuple[str, Mapping[str, float]]]:
    """``defaults`` as ``[(source, mapping), ...]`` (a single mapping's source is ``where``)."""
    if defaults is None:
        return []
    if isinstance(defaults, Mapping):
        return [(where or "defaults", defaults)]
    return [(str(src), layer) for src, layer in defaults if layer]


def resolve(
    name: str,
    defaults: Defaults | None = None,
    *,
    where: str = "",
    flags: bool = False,
    **given: float | None,
) -> Method:
    """Resolve a method name and its coefficients into a :class:`Method`: the one place that
    merges defaults, applies the kl aliasing and validates.

    Each method takes the coefficients listed in its :class:`MethodInfo` (see the module table).
    ``given`` values that are ``None`` are ignored; the others override ``defaults`` (a task's
    ``coefficients[name]``, or the language model's defaults). ``defaults`` may also be a
    sequence of layers ``(source, mapping)``, highest precedence first: each coefficient comes
    from the first layer that holds it (a prior's temperature, then the task's table, then
    :data:`FALLBACK_COEFFICIENTS`, as :func:`tailor.experiments.run.customize` stacks them).
    ``Method.sources`` records where each coefficient came from. For ``kl``, ``dpo`` and ``ce-dpo``
    the one coefficient ``beta`` may also be given as ``omega_prime`` and/or ``alpha_hat``, which
    must then be equal; a given one replaces the default ``beta``.

    Args:
        name: method name.
        defaults: default coefficients of this method, or layers ``(source, mapping)``
            (``None``: no defaults).
        where: prefix of error messages, e.g. ``"task 'hopper-jump'"``.
        flags: name coefficients as command-line flags (``--omega-prime``) in error messages.
        **given: explicit coefficients (``alpha``, ``alpha_hat``, ``omega_prime``, ``beta``).

    Raises:
        TailorError: unknown name, a missing or unexpected coefficient, a non-finite value, a
            negative temperature, or a single-beta method with two different values.
    """
    info = method_info(name)
    prefix = f"{where}: " if where else ""
    show = _flag if flags else str

    def fail(message: str) -> TailorError:
        return TailorError(prefix + message)

    given = {k: v for k, v in given.items() if v is not None}
    layers = _layers(defaults, where)
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"{name}: {key} must be a real number, got {value!r}")
        if not math.isfinite(value):
            raise fail(f"{name}: {key} must be finite, got {value!r}")

    if name in SINGLE_BETA:
        unexpected = set(given) - set(_ALIASES)
        if unexpected:
            raise fail(f"{name} does not take {', '.join(show(k) for k in sorted(unexpected))}")
        values = set(given.values())
        if len(values) > 1:
            shown = {show(k): v for k, v in given.items()}
            other = "residual" if name == "kl" else "decoupled-dpo"
            raise fail(
                f"{name} uses one coefficient for both the prior and the entropy term "
                f"(omega' = alpha_hat = beta), got {shown}; "
                f"use the {other!r} method to set them separately"
            )
        if values:
            required = {"beta": values.pop()}
            sources = {"beta": ", ".join(_flag(k) for k in given) if flags else "given"}
        elif any("beta" in layer for _, layer in layers):
            src, layer = next((s, la) for s, la in layers if "beta" in la)
            required, sources = {"beta": layer["beta"]}, {"beta": src}
        else:
            raise fail(f"{name} needs its coefficient beta (omega' = alpha_hat = beta)")
    else:
        unexpected = [c for c in given if c not in info.coefficients]
        if unexpected:
            raise fail(
                f"{name} does not take {', '.join(show(c) for c in unexpected)} "
                f"(it takes: {', '.join(show(c) for c in info.coefficients) or 'no coefficients'})"
            )
        required, sources = {}, {}
        for src, layer in reversed(layers):  # the first layer wins: apply it last
            for c, v in layer.items():
                if c in info.coefficients:
                    required[c], sources[c] = v, src
        required.update(given)
        sources.update({c: _flag(c) if flags else "given" for c in given})
        missing = [c for c in info.coefficients if c not in required]
        if missing:
            hint = f"; pass {', '.join(_flag(c) for c in missing)}" if flags else ""
            raise fail(f"{name} needs {', '.join(missing)}{hint}")

    for key, value in required.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise fail(f"{name}: {key} must be a finite real number, got {value!r}")
        if key in ("alpha", "alpha_hat", "beta") and value < 0:
            raise fail(f"{name}: {key} is an entropy temperature and must be >= 0, got {value}")
    coefs = {k: float(v) for k, v in required.items()}

    a = coefs.get("alpha", 0.0)
    if name == "no-entropy":
        spec, bonus = RewardSpec(0.0, 0.0), 0.0
    elif name == "end-entropy":
        spec, bonus = RewardSpec(0.0, 0.0), a
    elif name == "repeat-entropy":
        spec, bonus = RewardSpec(0.0, a), a
    elif name in ("soft", "full"):
        spec, bonus = RewardSpec(0.0, a), 0.0
    elif name == "greedy":
        spec, bonus = RewardSpec(0.0, coefs["alpha_hat"]), 0.0
    elif name in SINGLE_BETA:
        spec, bonus = RewardSpec(coefs["beta"], coefs["beta"]), 0.0
    else:  # residual, decoupled-dpo
        spec, bonus = RewardSpec(coefs["omega_prime"], coefs["alpha_hat"]), 0.0
    offline = name in OFFLINE_METHODS_INFO
    return Method(name, coefs, spec, bonus, info.reward, info.customization, offline, sources)


def check_coefficient_table(table: object, where: str) -> None:
    """Validate a ``{method: {coefficient: value}}`` table (a task's ``coefficients``).

    Raises:
        TailorError: not a dict, an unknown method name, or a value that is not a finite number.
    """
    if not isinstance(table, dict):
        raise TailorError(
            f"{where}: coefficients must be a dict {{method: {{coefficient: value}}}}"
        )
    for method, coefs in table.items():
        if method not in METHODS and method not in OFFLINE_METHODS_INFO:
            raise TailorError(
                f"{where}: coefficients for unknown method {method!r}; "
                f"known methods: {', '.join(METHODS)}"
            )
        if not isinstance(coefs, dict) or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in coefs.values()
        ):
            raise TailorError(
                f"{where}: coefficients[{method!r}] must map coefficient names to finite "
                f"numbers, got {coefs!r}"
            )
