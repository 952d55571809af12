"""Defaults for a prior whose temperature nobody knows, so that customizing it keeps its skill.

Most real priors (SB3 PPO/A2C, rsl-rl, CleanRL, skrl, TorchScript exports) were not trained as
max-entropy policies at a known temperature, so the residual reward's ``omega' = omega * alpha``
has no ``alpha`` to start from, and a task's coefficient table (made for tailor's own Soft-PPO
priors) means nothing for them. Measured on the RL Zoo's PPO HalfCheetah and Hopper
(``results/import.md``): the task's table or a fixed weight wrecks the prior (Hopper at
``omega' = alpha_hat = 0.1``: basic return 2439 -> 1197) and the default step (learning rate
1e-3) moves a narrow prior (std 0.05-0.14) far in one update. So, unless coefficients are given:

- **coefficients**: ``omega' = alpha_hat`` (a KL penalty to the prior), starting at 1 and
  adapted during the run to hold the per-step KL to the prior at :data:`KL_PER_ACTION_DIM`
  nats per action dimension (``PPOConfig.kl_target``, RLHF's adaptive KL controller): the
  add-on reward's scale then sets how much the policy moves, not a guessed weight;
- **step**: the learning rate (and its adaptive ceiling) scaled by the square root of the
  prior's action std against the std the defaults are tuned for (:data:`REFERENCE_STD`,
  ``PPOConfig.init_std``), and an update stops early once its KL passes ``1.5 * desired_kl``
  (``target_kl``); the critic warm-up is kept;
- **the iterate kept** (:mod:`tailor.experiments.selection`): a checkpoint every
  :data:`SELECT_EVERY` iterations, and after the run the prior and the last iterate on
  :data:`SELECT_EPISODES` deterministic episodes: the last iterate is kept unless it fails (the
  task's success rule: falls, misses the goal) more of them than the prior; then the latest
  checkpoint that does not, or the prior. Measured on the zoo's PPO Hopper: the last iterate fell
  in 2 of 10 episodes on one seed in five, after iterates that kept the skill
  (``results/import.md`` section 4);
- **the KL term in the loss** (``kl_estimator="exact-loss"``, both PPO loops): ``alpha_hat
  KL(pi_theta(.|s) || pi_prior(.|s))`` in closed form for the two Gaussians instead of its
  one-sample estimate ``alpha_hat (log pi_theta - log pi_prior)`` in the reward. Measured on the
  RL Zoo's PPO agents (``results/import.md`` section 4, 5 seeds each): with the sample in the
  reward the controller raised the weight to 1.4-3.6 on Hopper, where the sample's noise swamps
  the add-on signal, and 2 of 5 Hopper seeds fell in evaluation; with the KL in the loss a
  weight of 0.02-0.14 holds the same KL and 1 of 5 Hopper seeds falls (HalfCheetah: 5 of 5 keep
  it).

Every choice is said in the run's output with the rule that made it; config fields the user set
are kept. :func:`tensor_customization` applies the same rule to a customization on a
batched-tensor env (:func:`tailor.algos.tensor_ppo.train_tensor`), opt-in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch

from tailor.algos.ppo_config import PPOConfig
from tailor.algos.tensor_ppo import TensorPPOConfig
from tailor.errors import TailorError
from tailor.methods import Method, resolve
from tailor.priors import PolicyPrior, prior_temperature

__all__ = [
    "KL_HORIZON",
    "KL_PER_ACTION_DIM",
    "REFERENCE_STD",
    "SELECT_EPISODES",
    "SELECT_EVERY",
    "TensorCustomization",
    "applies",
    "coefficient_layer",
    "selection_settings",
    "step_settings",
    "tensor_customization",
]

KL_PER_ACTION_DIM = 0.05  # nats per step and action dimension (results/import.md)
REFERENCE_STD = PPOConfig.init_std  # the std the default learning rate is tuned for
# The controller's horizon: one default batch (64 x 64 steps), so the weight can move by up to
# 20% per iteration and reaches the KL target within the first quarter of a 200k-step run.
KL_HORIZON = 4096
SELECT_EVERY = 8  # iterations between checkpoints: 6 candidates (and the prior) in 200k steps
SELECT_EPISODES = 10
_RULE = "prior temperature unknown"


def applies(algo: str, method: str, meta: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    """The rule applies to PPO customizations (``residual``/``kl``) of an imported prior without
    a known temperature, when no coefficient was given."""
    return (
        algo == "ppo"
        and method in ("residual", "kl")
        and isinstance(meta.get("source"), dict)
        and prior_temperature(dict(meta)) is None
        and all(v is None for v in given.values())
    )


def coefficient_layer(method: str) -> tuple[str, dict[str, float]]:
    """The start of the coefficients (``omega' = alpha_hat = 1``) as a :func:`~tailor.methods.
    resolve` layer, labelled with the rule."""
    start = {"beta": 1.0} if method == "kl" else {"omega_prime": 1.0, "alpha_hat": 1.0}
    return f"{_RULE}: start of the KL-held weight", start


def step_settings(prior: PolicyPrior, config: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``(PPOConfig fields, the line that says them)`` of the rule for ``prior``; fields already
    in ``config`` (the user's) are left out."""
    device = next(prior.actor.parameters()).device  # a prior already moved to a GPU works too
    with torch.no_grad():  # [A] (global std) or [1, A] (state std, at the mean observation)
        _, log_std = prior.actor(torch.zeros(1, prior.obs_dim, device=device))
    std = math.exp(float(log_std.mean()))  # the geometric mean over action dimensions
    # Adam's step moves the mean about in proportion to the learning rate, and a mean shift
    # costs KL in proportion to (shift / std)^2: the square root keeps narrow priors movable
    # within the KL budget (a linear scaling left them all but frozen in 200k steps).
    lr = max(1e-5, 1e-3 * math.sqrt(min(1.0, std / REFERENCE_STD)))
    rule = {
        "kl_target": round(KL_PER_ACTION_DIM * prior.act_dim, 6),
        "kl_horizon": KL_HORIZON,
        "learning_rate": lr,
        "lr_max": 10.0 * lr,
        "target_kl": config.get("desired_kl", PPOConfig.desired_kl),
        "kl_estimator": "exact-loss",
    }
    chosen = {k: v for k, v in rule.items() if k not in config}
    words = [f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v}" for k, v in chosen.items()]
    line = (
        f"{_RULE}: KL to the prior held at {KL_PER_ACTION_DIM:g} nats/step per action dimension, "
        f"step scaled by the prior's std {std:.3g} (against {REFERENCE_STD:g}): "
        + (", ".join(words) if words else "all set by you")
    )
    return chosen, line


def selection_settings(config: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``(PPOConfig fields, the line that says them)`` of the rule's choice of the iterate to
    keep (:mod:`tailor.experiments.selection`; the numpy PPO loop's runs); fields already in
    ``config`` (the user's) are left out."""
    rule = {"select_episodes": SELECT_EPISODES, "checkpoint_every": SELECT_EVERY}
    chosen = {k: v for k, v in rule.items() if k not in config}
    words = ", ".join(f"{k}={v}" for k, v in chosen.items()) or "all set by you"
    line = (
        f"{_RULE}: after the run, the last iterate is kept unless it fails more deterministic "
        f"episodes than the prior (then the latest checkpoint that does not): {words}"
    )
    return chosen, line


@dataclasses.dataclass(frozen=True)
class TensorCustomization:
    """The rule's settings for a tensor customization (:func:`tensor_customization`).

    Attributes:
        config: the :class:`~tailor.algos.tensor_ppo.TensorPPOConfig` (the rule's fields and
            the user's).
        method: the method, its coefficients at the start of the KL-held weight
            (``Method.sources`` names the rule).
        sources: every config field and coefficient the rule chose -> the rule that chose it.
        line: what to print: the rule and each value it chose.
    """

    config: TensorPPOConfig
    method: Method
    sources: dict[str, str]
    line: str


def tensor_customization(
    prior: PolicyPrior,
    num_envs: int,
    method: str = "residual",
    given: Mapping[str, Any] | None = None,
) -> TensorCustomization:
    """The unknown-temperature rule for a customization with :func:`~tailor.algos.tensor_ppo.
    train_tensor` on ``num_envs`` envs: :func:`step_settings` (KL target, step) and
    :func:`coefficient_layer` (``omega' = alpha_hat = 1`` to start), with the controller's
    horizon one rollout batch (``num_envs * num_steps_per_env`` steps: the weight moves by at
    most 20% per iteration, as :data:`KL_HORIZON` is the numpy loop's default batch).

    Args:
        prior: the Gaussian prior.
        num_envs: the env's ``num_envs``.
        method: ``"residual"`` or ``"kl"`` (the methods with a KL term to hold).
        given: :class:`~tailor.algos.tensor_ppo.TensorPPOConfig` fields you set; they are kept.

    Raises:
        TailorError: another method, or a name that is no ``TensorPPOConfig`` field.
    """
    if method not in ("residual", "kl"):
        raise TailorError(f"the rule holds the KL term of residual or kl, not of {method!r}")
    given = dict(given or {})
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(TensorPPOConfig)})
    if unknown:
        raise TailorError(f"no TensorPPOConfig field named {', '.join(unknown)}")
    steps = given.get("num_steps_per_env", TensorPPOConfig.num_steps_per_env)
    # the horizon is the tensor loop's own (one batch); step_settings leaves out what is "set"
    chosen, line = step_settings(prior, {**given, "kl_horizon": None})
    rule = _RULE
    sources = {k: f"{rule}: {_WHY[k]}" for k in chosen}
    if "kl_horizon" not in given:
        chosen["kl_horizon"] = num_envs * steps
        sources["kl_horizon"] = f"{rule}: one rollout batch ({num_envs} envs x {steps} steps)"
        line += f"; kl_horizon={num_envs * steps} (one rollout batch)"
    label, start = coefficient_layer(method)
    resolved = resolve(method, [(label, start)])
    sources.update({k: resolved.sources.get(k, label) for k in resolved.coefficients})
    coefs = ", ".join(f"{k}={v:g}" for k, v in resolved.coefficients.items())
    line += f"; {coefs} ({label})"
    return TensorCustomization(TensorPPOConfig(**{**chosen, **given}), resolved, sources, line)


# Why each field of step_settings has its value (said with the rule).
_WHY = {
    "kl_target": f"{KL_PER_ACTION_DIM:g} nats/step per action dimension",
    "kl_horizon": "the controller's horizon",
    "learning_rate": f"scaled by sqrt(prior std / {REFERENCE_STD:g})",
    "lr_max": "10 x the learning rate",
    "target_kl": "an update stops once its KL passes 1.5 x desired_kl",
    "kl_estimator": "the KL to the prior in the loss, in closed form (no sampling noise)",
}
