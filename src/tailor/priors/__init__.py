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

from tailor.priors.load import PriorOptions, load_acting_policy, load_prior
from tailor.priors.prior import PolicyPrior, Prior, QPrior, check_spaces, prior_temperature

__all__ = [
    "PolicyPrior",
    "Prior",
    "PriorOptions",
    "QPrior",
    "check_spaces",
    "load_acting_policy",
    "load_prior",
    "prior_temperature",
]
