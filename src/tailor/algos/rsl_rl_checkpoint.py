"""A PPO learner written as an rsl-rl 5 checkpoint, so ``OnPolicyRunner.load(path)`` resumes it.

rsl-rl 5.5.1's ``OnPolicyRunner.save`` writes ``torch.save`` of::

    {"actor_state_dict": ..., "critic_state_dict": ..., "optimizer_state_dict": ...,
     "iter": int, "infos": ...}

and ``load`` restores all of them (``strict=True`` by default). Its actor and critic are
``MLPModel``\\ s: ``mlp.<2i>.weight/.bias`` (Linear layers, activations between),
``obs_normalizer._mean/_var/_std`` ``[1, D]`` and ``count`` (int64) when ``obs_normalization`` is
on, and the actor's ``distribution.std_param`` (``std_type="scalar"``, the default) or
``distribution.log_std_param`` (``"log"``). Its Adam holds ``chain(actor.parameters(),
critic.parameters())`` in that order: the std parameter first (the distribution is registered
before the MLP), then ``mlp.*``, then the critic's ``mlp.*``.

tailor's :class:`~tailor.nets.Actor` (``body.*``, ``mean.*``, ``log_std``), :class:`~tailor.nets.
Critic` (``net.*``) and :class:`~tailor.nets.EmpiricalNormalization` map onto these exactly:

- the normalizer: rsl-rl computes ``(x - _mean) / (_std + 0.01)``, tailor ``(x - mean) /
  (sqrt(var) + eps)``; ``_std = sqrt(var) + eps - 0.01`` gives the same map for any ``eps``
  (exactly ``sqrt(var)`` for rsl-rl's and tailor's default ``eps = 0.01``). The same normalizer
  goes to the actor and the critic (tailor's critic reads the actor's normalized observations).
- Adam's moments follow their parameters into rsl-rl's order; the std's are exact with
  ``std_type="log"`` and, with ``"scalar"``, carried by the chain rule at the current std
  (``m / std``, ``v / std^2``: an approximation, since Adam's averages are over past stds).

The file is a pickle-format zip because that is rsl-rl's format; tailor itself only ever reads
such files with ``torch.load(weights_only=True)`` (:func:`tailor.priors.load_prior`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tailor.algos.ppo_learner import PPOLearner
from tailor.errors import TailorError
from tailor.nets import ACTIVATIONS, Actor, Critic, EmpiricalNormalization
from tailor.output import check_output, write_bytes

__all__ = ["RslRlLayout", "rsl_rl_model_config", "rsl_rl_state", "save_rsl_rl_checkpoint"]

RSL_RL_EPS = 1e-2  # rsl_rl.modules.EmpiricalNormalization's eps (not stored in checkpoints)


@dataclass(frozen=True)
class RslRlLayout:
    """How the runner that will load the file builds its models (``strict`` loading needs the
    same keys): the ``actor`` / ``critic`` entries of its train config.

    Attributes:
        std_type: the actor's ``distribution_cfg.std_type``: ``"scalar"`` (rsl-rl's default) or
            ``"log"``.
        actor_obs_normalization: the actor's ``obs_normalization``.
        critic_obs_normalization: the critic's ``obs_normalization``.
    """

    std_type: str = "scalar"
    actor_obs_normalization: bool = True
    critic_obs_normalization: bool = True

    def __post_init__(self) -> None:
        if self.std_type not in ("scalar", "log"):
            raise TailorError(f"std_type must be 'scalar' or 'log', got {self.std_type!r}")


def _linears(actor: Actor) -> list[nn.Linear]:
    """The mean network's Linear layers, input to output."""
    if actor.std_type != "global":
        raise TailorError(
            "rsl-rl's GaussianDistribution has one state-independent std; this actor's std "
            "depends on the state (std_type='state')"
        )
    if actor.bounded:
        raise TailorError(
            "rsl-rl's MLP actor has no output squash; this actor squashes its mean into action "
            "bounds (a customized SB3 TD3/DDPG prior), so rsl-rl would act differently; export "
            "it with `tailor export --format onnx` instead"
        )
    body = [m for m in actor.body.modules() if isinstance(m, nn.Linear)]
    if not body:
        raise TailorError("rsl-rl's MLP needs at least one hidden layer; this actor has none")
    return [*body, actor.mean]


def _is_identity(norm: EmpiricalNormalization) -> bool:
    return (
        norm.eps == 0.0
        and norm.clip is None
        and bool((norm.mean == 0).all())
        and bool((norm.var == 1).all())
    )


def _normalizer_state(norm: EmpiricalNormalization, on: bool, who: str) -> dict[str, torch.Tensor]:
    """``obs_normalizer.*`` of an rsl-rl ``MLPModel`` (empty when its normalization is off)."""
    if not on:
        if not _is_identity(norm):
            raise TailorError(
                f"the policy normalizes its observations but the {who} is laid out without "
                f"obs_normalization: set {who}_obs_normalization=True (and obs_normalization: "
                f"true in the runner's {who} config)"
            )
        return {}
    if norm.mode != "std_eps" or norm.clip is not None:
        raise TailorError(
            f"rsl-rl's normalizer is (x - mean) / (std + eps) without clipping; this policy's "
            f"is {norm.mode!r} (clip {norm.clip}), which rsl-rl cannot express"
        )
    mean = norm.mean.detach().float().cpu()[None]
    var = norm.var.detach().float().cpu()[None]
    return {
        "obs_normalizer._mean": mean,
        "obs_normalizer._var": var.clone(),
        "obs_normalizer._std": var.sqrt() + (norm.eps - RSL_RL_EPS),
        "obs_normalizer.count": torch.tensor(round(float(norm.count)), dtype=torch.long),
    }


def _optimizer_state(
    optimizer: torch.optim.Optimizer,
    order: list[nn.Parameter],
    scale: dict[int, torch.Tensor],
    lr: float,
) -> dict[str, Any]:
    """Adam's ``state_dict`` with its parameters in rsl-rl's ``order``; ``scale[j]`` multiplies
    the first moment of parameter ``j`` (and its square the second)."""
    if len(optimizer.param_groups) != 1:
        raise TailorError("the optimizer has several parameter groups; rsl-rl's has one")
    params = optimizer.param_groups[0]["params"]
    if {id(p) for p in params} != {id(p) for p in order} or len(params) != len(order):
        raise TailorError("the optimizer's parameters are not the actor's and the critic's")
    index = {id(p): i for i, p in enumerate(params)}
    full = optimizer.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for j, p in enumerate(order):
        saved = full["state"].get(index[id(p)])
        if saved is None:  # never stepped (e.g. the actor during a critic warm-up only)
            continue
        moved = {k: v.detach().clone().cpu() if torch.is_tensor(v) else v for k, v in saved.items()}
        if j in scale:
            s = scale[j].cpu()
            moved["exp_avg"] = moved["exp_avg"] * s
            moved["exp_avg_sq"] = moved["exp_avg_sq"] * s.square()
        state[j] = moved
    group = {k: v for k, v in full["param_groups"][0].items() if k != "params"}
    group.update(lr=float(lr), params=list(range(len(order))))
    return {"state": state, "param_groups": [group]}


def rsl_rl_state(
    learner: PPOLearner,
    iteration: int,
    layout: RslRlLayout | None = None,
    infos: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict rsl-rl 5's ``OnPolicyRunner.save`` writes, of ``learner`` (all tensors on CPU).

    Args:
        learner: a PPO learner (:func:`tailor.algos.tensor_ppo.train_tensor`'s, or the numpy
            loop's): Gaussian actor with a global std, critic, normalizer, Adam.
        iteration: the ``iter`` entry (the runner continues counting from it).
        layout: the runner's model options (:class:`RslRlLayout`).
        infos: the ``infos`` entry (returned by ``OnPolicyRunner.load``); tailor adds
            ``infos["tailor"]`` with the architecture.

    Raises:
        TailorError: an actor or normalizer rsl-rl cannot express (module docstring).
    """
    layout = layout or RslRlLayout()
    actor, critic, norm = learner.actor, learner.critic, learner.obs_norm
    if not isinstance(actor, Actor) or not isinstance(critic, Critic):
        raise TailorError("rsl_rl_state needs tailor's Actor and Critic")
    log_std = actor.log_std.detach().float().cpu()
    if layout.std_type == "scalar":
        actor_state = {"distribution.std_param": log_std.exp()}
        scale = {0: 1.0 / log_std.exp()}  # d/d std = (d/d log std) / std
    else:
        actor_state, scale = {"distribution.log_std_param": log_std.clone()}, {}
    order: list[nn.Parameter] = [actor.log_std]
    for i, lin in enumerate(_linears(actor)):
        actor_state[f"mlp.{2 * i}.weight"] = lin.weight.detach().float().cpu().clone()
        actor_state[f"mlp.{2 * i}.bias"] = lin.bias.detach().float().cpu().clone()
        order += [lin.weight, lin.bias]
    actor_state.update(_normalizer_state(norm, layout.actor_obs_normalization, "actor"))
    critic_state = _normalizer_state(norm, layout.critic_obs_normalization, "critic")
    for idx, module in enumerate(critic.net):
        if isinstance(module, nn.Linear):
            critic_state[f"mlp.{idx}.weight"] = module.weight.detach().float().cpu().clone()
            critic_state[f"mlp.{idx}.bias"] = module.bias.detach().float().cpu().clone()
            order += [module.weight, module.bias]
    arch = rsl_rl_model_config(learner, layout)
    return {
        "actor_state_dict": actor_state,
        "critic_state_dict": critic_state,
        "optimizer_state_dict": _optimizer_state(learner.optimizer, order, scale, learner.lr),
        "iter": int(iteration),
        "infos": {**(infos or {}), "tailor": {"models": arch}},
    }


def rsl_rl_model_config(learner: PPOLearner, layout: RslRlLayout | None = None) -> dict[str, Any]:
    """The ``actor`` and ``critic`` entries of an rsl-rl 5 train config whose models take this
    learner's weights (``OnPolicyRunner(env, {..., **rsl_rl_model_config(learner)})``)."""
    layout = layout or RslRlLayout()
    actor = learner.actor
    hidden = [lin.out_features for lin in _linears(actor)[:-1]]
    critic_hidden = [m.out_features for m in learner.critic.net if isinstance(m, nn.Linear)][:-1]
    critic_act = next(
        (type(m).__name__ for m in learner.critic.net if not isinstance(m, nn.Linear)), None
    )
    return {
        "actor": {
            "class_name": "MLPModel",
            "hidden_dims": hidden,
            "activation": actor.activation,
            "obs_normalization": layout.actor_obs_normalization,
            "distribution_cfg": {
                "class_name": "GaussianDistribution",
                "init_std": 1.0,
                "std_type": layout.std_type,
            },
        },
        "critic": {
            "class_name": "MLPModel",
            "hidden_dims": critic_hidden,
            "activation": _activation_name(critic_act, actor.activation),
            "obs_normalization": layout.critic_obs_normalization,
        },
    }


def _activation_name(torch_name: str | None, fallback: str) -> str:
    """rsl-rl's name of a torch activation class (tailor's ACTIVATIONS spell them so)."""
    for name, cls in ACTIVATIONS.items():
        if cls.__name__ == torch_name:
            return name
    return fallback


def save_rsl_rl_checkpoint(
    path: str | Path,
    learner: PPOLearner,
    iteration: int,
    layout: RslRlLayout | None = None,
    *,
    infos: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write :func:`rsl_rl_state` to ``path`` (``torch.save``, atomically, through
    :mod:`tailor.output`); ``OnPolicyRunner.load(path)`` then resumes from it.

    Raises:
        TailorError: an existing file without ``overwrite``, an unwritable place, or an actor
            rsl-rl cannot express.
    """
    path = check_output(path, overwrite=overwrite, what="rsl-rl checkpoint")
    buffer = io.BytesIO()
    torch.save(rsl_rl_state(learner, iteration, layout, infos), buffer)
    return write_bytes(path, buffer.getvalue())
