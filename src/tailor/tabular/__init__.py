"""The tabular lab: exact, float64 checks of the theory behind every deep method."""

from tailor.tabular.mdp import FiniteMDP, evaluate_policy, garnet
from tailor.tabular.solvers import residual_soft_value_iteration, soft_value_iteration

__all__ = [
    "FiniteMDP",
    "evaluate_policy",
    "garnet",
    "residual_soft_value_iteration",
    "soft_value_iteration",
]
