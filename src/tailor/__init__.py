"""tailor: policy customization.

Take a prior policy that does a basic task well, add a requirement as an add-on reward ``r_R``, and
get a policy that meets it while keeping what the prior was good at, without knowing the prior's
reward. Every method is one reformulated reward (:func:`tailor.reward.reformulate`)::

    r_t = r_R + omega' * log pi_prior(a_t|s_t) - alpha_hat * log pi_theta(a_t|s_t)
"""

from tailor.errors import TailorError
from tailor.methods import METHODS, Method, resolve
from tailor.reward import RewardSpec, reformulate

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Method",
    "RewardSpec",
    "TailorError",
    "__version__",
    "reformulate",
    "resolve",
]
