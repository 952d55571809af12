"""Non-finite means stop: the checks the off-policy and language-model loops share.

A NaN or an infinity in a reward, a loss or a parameter never reaches a saved file: the loop
raises :class:`~tailor.errors.TailorError` (``error: ...``, exit code 2) and the run directory
keeps what it had (its last good checkpoint, or nothing). PPO's own checks, which name the
iteration and the checkpoint kept, are in :mod:`tailor.algos.ppo`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tailor.errors import TailorError
from tailor.nets import non_finite_state

__all__ = ["check_acting", "check_reward", "check_trained"]

_ADVICE = "lower the learning rate or check the task's rewards"


def check_reward(algo: str, reward: float, step: int) -> None:
    """Raise unless the reward of environment step ``step`` (0-based) is a finite number."""
    if not math.isfinite(reward):
        raise TailorError(
            f"{algo}: the reward is {reward} at environment step {step + 1}; rewards must be "
            "finite numbers (check the task's rewards); nothing was saved"
        )


def check_acting(algo: str, values: torch.Tensor, modules: dict[str, nn.Module], step: int) -> None:
    """Raise when the values a policy acts on (action probabilities, sampled actions) at
    environment step ``step`` (0-based) are not finite, naming the parameter to blame if any."""
    if bool(torch.isfinite(values).all()):
        return
    check_trained(algo, modules, where=f"environment step {step + 1}")
    raise TailorError(
        f"{algo}: the policy's output became NaN or infinite at environment step {step + 1} "
        f"(overflow in the networks or the prior); nothing was saved: {_ADVICE}"
    )


def check_trained(algo: str, modules: dict[str, nn.Module], where: str = "the end") -> None:
    """Raise when a parameter or buffer of ``modules`` holds a NaN or infinity (at ``where``)."""
    name = non_finite_state(modules)
    if name is not None:
        raise TailorError(
            f"{algo}: {name} became NaN or infinite by {where} of training; nothing was "
            f"saved: {_ADVICE}"
        )
