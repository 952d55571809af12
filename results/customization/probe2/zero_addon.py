"""`halfcheetah-zero`: halfcheetah-hindleg with the add-on reward set to zero (statistic kept).

The control of probe2: customizing the prior on this task has nothing to gain, so whatever the
run gives up in basic return is what the optimization itself costs. Load with `--tasks-file`.
"""

import dataclasses

import numpy as np

from tailor.envs import register_task
from tailor.envs.tasks import halfcheetah_hindleg

_hindleg = halfcheetah_hindleg()


def _vector_terms(batch):
    _, theta = _hindleg.vector_terms(batch)
    return np.zeros_like(theta), theta


register_task(
    dataclasses.replace(
        _hindleg,
        name="halfcheetah-zero",
        addon=lambda env, action, info: 0.0,
        description="halfcheetah-hindleg with a zero add-on reward (a control)",
        addon_formula="0",
        vector_terms=_vector_terms,
    )
)
