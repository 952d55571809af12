"""The KL budget of a residual SAC customization whose coefficients come from the prior's
known temperature (an SB3 SAC/TQC prior's ``ent_coef``).

RQL reads a known temperature ``alpha`` as ``omega' = omega * alpha``, ``alpha_hat = alpha``,
and with no ``--omega`` tailor takes ``omega = 1``: the soft-optimal policy of ``r + r_R``. How
far that moves the prior depends on the add-on reward's scale against the prior's unknown one.
Measured on the RL Zoo's SAC HalfCheetah (``results/import.md`` section 4): at ``omega = 1`` the
customized policy ends 0.08-0.12 nats/step from the prior (0.013-0.019 per action dimension)
and gains 0 to +5.6 add-on return in 200k steps, on one seed in five nothing. So, unless a
coefficient or ``--omega`` is given, the run holds the same KL budget as the PPO rule for priors
of unknown temperature (:data:`~tailor.experiments.unknown_temperature.KL_PER_ACTION_DIM` per
action dimension): ``omega'`` and ``alpha_hat`` are scaled together from the RQL rule's values
(``SACConfig.kl_target``; at scale ``s`` the run solves ``r + r_R / s``), so the add-on reward
gets the weight the budget allows: on the same prior, 5 seeds of 5 end at scale 0.31-0.32, keep
97-99.5% of the basic return and gain +17.5 to +25.9. The controller only lowers them
(``kl_scale_max = 1``): a narrow prior sits far above any budget at ``omega = 1`` and is still
kept there (the zoo's TQC Hopper, temperature 0.018: 9.8-22 nats/step through 200k steps,
while ``omega = 1`` keeps 105-113% of its basic return and gains add-on return on 3 seeds of
3), and pulling it back would only take the add-on's weight below RQL's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tailor.experiments.coefficients import PRIOR_TEMPERATURE
from tailor.experiments.unknown_temperature import KL_HORIZON, KL_PER_ACTION_DIM
from tailor.methods import Method

__all__ = ["applies", "sac_settings"]
_RULE = "prior temperature known, omega not given"


def applies(algo: str, method: Method, given: Mapping[str, Any], omega: float | None) -> bool:
    """The rule applies to a SAC customization whose coefficients all come from the prior's
    temperature (:func:`~tailor.experiments.coefficients.coefficient_layers`), none given."""
    return (
        algo == "sac"
        and method.customization
        and omega is None
        and all(v is None for v in given.values())
        and bool(method.sources)
        and all(src.startswith(PRIOR_TEMPERATURE) for src in method.sources.values())
    )


def sac_settings(act_dim: int, config: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``(SACConfig fields, the line that says them)`` for a prior with ``act_dim`` action
    dimensions; fields already in ``config`` (the user's) are left out. A ``kl_target`` of the
    user's (``tailor frontier``'s) is held both ways: no ``kl_scale_max``."""
    rule: dict[str, Any] = {"kl_horizon": KL_HORIZON}
    if "kl_target" not in config:  # the rule's budget only lowers; a target you set is held
        rule.update(kl_target=round(KL_PER_ACTION_DIM * act_dim, 6), kl_scale_max=1.0)
    chosen = {k: v for k, v in rule.items() if k not in config}
    words = ", ".join(f"{k}={v:g}" for k, v in chosen.items()) or "all set by you"
    line = (
        f"{_RULE}: KL to the prior held at {KL_PER_ACTION_DIM:g} nats/step per action dimension "
        "by lowering omega' and alpha_hat together from the prior's temperature (never above "
        f"it): {words}"
    )
    return chosen, line
