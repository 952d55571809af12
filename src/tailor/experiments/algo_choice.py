"""Which ``--algo`` customizes a prior: read from the prior itself when ``--algo`` is not given.

A tailor run says its kind in its policy's metadata (:func:`tailor.experiments.run.policy_kind`);
a policy from another library is loaded (:func:`tailor.priors.load_prior`) and its class says
which loops can use it: a Gaussian actor (tailor PPO, SB3 PPO/A2C on Box actions, rsl-rl, CleanRL,
skrl) customizes with PPO, a tanh-squashed Gaussian (SB3 SAC/TQC) with SAC, a Q-network or
categorical policy (SB3 DQN / QR-DQN, SB3 PPO/A2C on Discrete actions) with soft DQN or MCTS.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tailor.errors import TailorError

__all__ = ["algo_for_prior", "customize_algos"]


def customize_algos(prior: Any) -> list[str]:
    """The ``--algo`` values that customize a loaded ``prior``, the default first (what its
    class supports; empty for a prior no loop takes)."""
    from tailor.priors import PolicyPrior
    from tailor.priors.policies import BoltzmannQPrior, GSDEPrior, SquashedGaussianPrior

    if isinstance(prior, PolicyPrior):
        return ["ppo"]
    if isinstance(prior, SquashedGaussianPrior) or (isinstance(prior, GSDEPrior) and prior.squash):
        return ["sac"]
    if isinstance(prior, BoltzmannQPrior):
        return ["dqn", "mcts"]
    return []


def algo_for_prior(prior: str | Path, options: Mapping[str, Any] | None = None) -> str:
    """The ``--algo`` that customizes the prior at ``prior`` (a tailor run directory or policy
    file, or a policy from another library; ``options`` are :func:`tailor.priors.load_prior`'s
    ``--prior-*`` options). A tailor run gives its own kind (``ppo``, ``dqn``, ``sac``); the
    loop then checks that it fits, as with an explicit ``--algo``.

    Raises:
        TailorError: the prior is unreadable, or no loop customizes it.
    """
    from tailor.experiments.run import policy_kind
    from tailor.priors import load_prior

    kind = policy_kind(prior)
    if kind is not None:
        return kind
    given = {k: v for k, v in dict(options or {}).items() if v is not None}
    with warnings.catch_warnings():  # the run loads it again and warns then
        warnings.simplefilter("ignore")
        loaded = load_prior(prior, **given)
    algos = customize_algos(loaded)
    if not algos:
        raise TailorError(
            f"no --algo customizes {str(prior)!r} ({type(loaded).__name__}); "
            "see `tailor inspect` for what tailor reads from it"
        )
    return algos[0]
