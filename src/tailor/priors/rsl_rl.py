"""rsl-rl checkpoints (``OnPolicyRunner.save``, e.g. Isaac Lab's ``model_<iter>.pt``) as priors.

Two layouts, both read with ``torch.load(weights_only=True)``:

- rsl-rl 4 and later (``actor_state_dict``, the ``MLPModel`` actor): ``mlp.<i>.*`` (the mean
  network), and, with ``obs_normalization``, ``obs_normalizer._mean/_var/_std/count``. The std:
  rsl-rl 5's ``GaussianDistribution`` parameter ``distribution.std_param`` (``std_type
  "scalar"``) or ``distribution.log_std_param`` (``"log"``), clamped to the distribution's
  ``std_range`` (``params/agent.yaml``'s ``actor.distribution_cfg.std_range``, else rsl-rl's
  default ``(1e-6, 1e6)``) as rsl-rl does on every forward; or rsl-rl 4's ``std`` / ``log_std``
  (the names rsl-rl 5 migrates to the distribution's).
- rsl-rl 1 to 3 (``model_state_dict``, the ``ActorCritic`` module): ``actor.<i>.*``, ``std`` or
  ``log_std``; the normalizer either in the model (``actor_obs_normalizer.*``, v3) or beside it
  (``obs_norm_state_dict``, v2).

The normalizer is rsl-rl's ``EmpiricalNormalization``: ``(x - _mean) / (_std + eps)`` with its
default ``eps = 1e-2`` (not stored in checkpoints), which is tailor's default formula.

Hidden sizes come from the weights; the activation from Isaac Lab's ``params/agent.yaml`` beside
the checkpoint's directory (``actor.activation`` or ``policy.activation``; hidden sizes there are
checked against the weights) or from ``activation=``; without either, a TailorError says which.
Recurrent (``rnn.*``/``memory_a.*``), CNN, state-dependent-std and Beta actors are refused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from tailor.errors import TailorError
from tailor.meta import validate_meta
from tailor.priors.base import (
    check_activation,
    gaussian_prior,
    identity_normalizer,
    layers_from_state,
    load_yaml,
    std_eps_normalizer,
)
from tailor.priors.detect import torch_load
from tailor.priors.validate import (
    RSL_RL_ACTOR_SCHEMA,
    log_std_vector,
    normalizer_halves,
    scalar,
    state_dict,
    weight,
)

__all__ = ["find_agent_yaml", "load_rsl_rl", "read_agent_yaml"]

_EPS = 1e-2  # rsl_rl.modules.EmpiricalNormalization's default eps
_STD_RANGE = (1e-6, 1e6)  # rsl_rl.modules.distribution.GaussianDistribution's default std_range


def find_agent_yaml(checkpoint: Path) -> Path | None:
    """Isaac Lab's ``<run>/params/agent.yaml`` for ``<run>/model_<i>.pt`` (or beside the file)."""
    for cand in (checkpoint.parent / "params" / "agent.yaml", checkpoint.parent / "agent.yaml"):
        if cand.is_file():
            return cand
    return None


def read_agent_yaml(path: Path) -> dict[str, Any]:
    """``{"activation", "hidden", "std_range"}`` (each possibly ``None``) from an agent.yaml."""
    cfg = load_yaml(path)
    if not isinstance(cfg, dict):
        raise TailorError(f"{str(path)!r} is not an rsl-rl agent config (not a mapping)")
    actor = cfg.get("actor") if isinstance(cfg.get("actor"), dict) else None
    policy = cfg.get("policy") if isinstance(cfg.get("policy"), dict) else None
    for key, section in (("actor", actor), ("policy", policy)):
        if section is not None:
            validate_meta(section, RSL_RL_ACTOR_SCHEMA, f"{str(path)!r} ({key})")
    out: dict[str, Any] = {"activation": None, "hidden": None, "std_range": None}
    if actor is not None:
        out["activation"] = actor.get("activation")
        out["hidden"] = actor.get("hidden_dims")
        dist = actor.get("distribution_cfg")
        if isinstance(dist, dict):
            out["std_range"] = dist.get("std_range")
    elif policy is not None:
        out["activation"] = policy.get("activation")
        out["hidden"] = policy.get("actor_hidden_dims")
    return out


def _log_std_v4(
    state: dict[str, torch.Tensor], std_range: Any, src: str
) -> tuple[torch.Tensor, str]:
    """``(log_std [A], std_type)`` of an ``actor_state_dict``: rsl-rl 5's distribution
    parameters (clamped to ``std_range``), or rsl-rl 4's ``std``/``log_std``."""
    if "std" in state:  # rsl-rl 4 (stochastic MLPModel, noise_std_type "scalar")
        return weight(state, "std", src).log(), "scalar"
    if "log_std" in state:  # rsl-rl 4, noise_std_type "log"
        return weight(state, "log_std", src), "log"
    std_range = std_range or _STD_RANGE
    if len(std_range) != 2 or not 0 <= std_range[0] <= std_range[1]:
        raise TailorError(
            f"{src}: std_range {std_range!r} is not [low, high] with 0 <= low <= high"
        )
    lo, hi = max(float(std_range[0]), 1e-6), float(std_range[1])  # rsl-rl raises low to 1e-6 too
    if "distribution.std_param" in state:
        return weight(state, "distribution.std_param", src).clamp(lo, hi).log(), "scalar"
    if "distribution.log_std_param" in state:
        log_std = weight(state, "distribution.log_std_param", src)
        return log_std.clamp(math.log(lo), math.log(hi)), "log"
    raise TailorError(
        f"{src}: the rsl-rl actor has no distribution.std_param / log_std_param; only the "
        "GaussianDistribution with a state-independent std is supported (not the heteroscedastic "
        "Gaussian or the Beta distribution)"
    )


def _normalizer_from(state: dict[str, torch.Tensor], prefix: str, obs_dim: int, src: str) -> Any:
    halves = normalizer_halves(state, f"{prefix}_mean", f"{prefix}_std", obs_dim, src)
    if halves is None:
        return None
    return std_eps_normalizer(*halves, _EPS, scalar(state, f"{prefix}count", src))


def load_rsl_rl(
    path: str | Path, normalizer: str | Path | None = None, activation: str | None = None
) -> Any:
    """A :class:`tailor.priors.PolicyPrior` from an rsl-rl checkpoint (module docstring).

    Raises:
        TailorError: unsupported actor (recurrent, CNN, state-dependent std, Beta), activation
            not known (names the agent.yaml file and the ``activation`` flag), inconsistent sizes.
    """
    path = Path(path)
    src = repr(str(path))
    ckpt = torch_load(path)
    if normalizer is not None:
        raise TailorError(
            f"{src}: rsl-rl checkpoints carry their own observation normalizer; drop normalizer="
        )
    if not isinstance(ckpt, dict):
        raise TailorError(f"{src} is not an rsl-rl checkpoint (not a dict)")
    if isinstance(ckpt.get("actor_state_dict"), dict):
        state, layout = (
            state_dict(ckpt["actor_state_dict"], src, "actor_state_dict"),
            ">= 4 (actor_state_dict)",
        )
        mlp_prefix, norm_prefix = "mlp.", "obs_normalizer."
        bad = [k for k in state if k.startswith(("rnn.", "cnns.", "cnn."))]
    elif isinstance(ckpt.get("model_state_dict"), dict):
        state = state_dict(ckpt["model_state_dict"], src, "model_state_dict")
        layout = "1-3 (model_state_dict)"
        mlp_prefix, norm_prefix = "actor.", "actor_obs_normalizer."
        bad = [
            k for k in state if k.startswith(("memory_a.", "memory_c.", "student.", "actor_cnn"))
        ]
    else:
        raise TailorError(
            f"{src}: no actor_state_dict or model_state_dict: not an rsl-rl checkpoint"
        )
    if bad:
        raise TailorError(
            f"{src}: the rsl-rl actor has {bad[0].split('.')[0]} layers (recurrent, CNN or "
            "distillation student); only MLP actors are supported"
        )
    layers = layers_from_state(state, mlp_prefix, src)
    hidden = [w.shape[0] for w, _ in layers[:-1]]
    yaml_path = find_agent_yaml(path)
    cfg = (
        read_agent_yaml(yaml_path)
        if yaml_path
        else {"activation": None, "hidden": None, "std_range": None}
    )
    obs_in = layers[0][0].shape[1]  # rsl-rl's MLP reads a hidden size of -1 as the input size
    if cfg["hidden"] is not None and [obs_in if h == -1 else h for h in cfg["hidden"]] != hidden:
        raise TailorError(
            f"{str(yaml_path)!r} says hidden sizes {list(cfg['hidden'])} but the weights in {src} "
            f"have {hidden}"
        )
    if activation is not None:
        act, act_src = check_activation(activation, src), "activation argument"
    elif cfg["activation"] is not None:
        act, act_src = check_activation(cfg["activation"], str(yaml_path)), str(yaml_path)
    else:
        raise TailorError(
            f"{src}: the activation of the rsl-rl actor (hidden sizes {hidden}, read from the "
            f"weights) is not stored in the checkpoint and there is no params/agent.yaml beside "
            f"it ({path.parent / 'params' / 'agent.yaml'}); pass it: activation='elu' "
            "(--prior-activation elu), or copy Isaac Lab's params/agent.yaml there"
        )
    if layout.startswith(">= 4"):
        log_std, std_type = _log_std_v4(state, cfg["std_range"], src)
    elif "std" in state:
        log_std, std_type = weight(state, "std", src).log(), "scalar"
    elif "log_std" in state:
        log_std, std_type = weight(state, "log_std", src), "log"
    else:
        raise TailorError(f"{src}: the rsl-rl ActorCritic has no std / log_std parameter")
    log_std = log_std_vector(log_std, layers[-1][0].shape[0], src)
    obs_dim = layers[0][0].shape[1]
    obs_norm = _normalizer_from(state, norm_prefix, obs_dim, src)
    if obs_norm is None and isinstance(ckpt.get("obs_norm_state_dict"), dict):
        norm_state = state_dict(ckpt["obs_norm_state_dict"], src, "obs_norm_state_dict")
        obs_norm = _normalizer_from(norm_state, "", obs_dim, src)
    norm_info: dict[str, Any]
    if obs_norm is None:
        obs_norm, norm_info = identity_normalizer(obs_dim), {"kind": "none"}
    else:
        norm_info = {
            "kind": "rsl-rl EmpiricalNormalization",
            "formula": "(x - mean) / (std + eps)",
            "eps": _EPS,
            "count": float(obs_norm.count),
        }
    meta = {
        "task": None,
        "source": {
            "format": "rsl_rl",
            "library": "rsl-rl",
            "version": layout,
            "algorithm": "PPO",
            "iteration": int(ckpt["iter"]) if isinstance(ckpt.get("iter"), int) else None,
            "path": str(path),
        },
        "architecture": {"hidden": hidden, "activation": act},
        "activation": act,
        "activation_source": act_src,
        "obs_normalizer": norm_info,
        "distribution": {
            "kind": "gaussian",
            "std": f"global (state-independent, rsl-rl std_type {std_type!r})",
            "std_min": float(log_std.exp().min()),
            "std_max": float(log_std.exp().max()),
        },
    }
    return gaussian_prior(layers, log_std, act, obs_norm, meta, src)
