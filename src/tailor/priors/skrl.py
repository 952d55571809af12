"""skrl agent checkpoints (``agent.save(path)``, e.g. Isaac Lab's ``checkpoints/agent_<step>.pt``).

Written from skrl's documented names (skrl itself is not a dependency): the checkpoint is a dict
of state dicts, ``policy`` (a ``GaussianMixin`` model) and ``state_preprocessor`` (a
``RunningStandardScaler``: ``running_mean``, ``running_variance``, ``current_count``). Two policy
layouts are read:

- skrl's model instantiators (Isaac Lab's ``agent.yaml`` ``models.policy.network``):
  ``net_container.<i>.*`` hidden layers, ``policy_layer.*`` the mean head, ``log_std_parameter``;
- the documentation's hand-written models: ``net.<i>.*`` ending in the mean layer,
  ``log_std_parameter``.

The policy is ``N(mean(s), exp(clamp(log_std, min_log_std, max_log_std)))`` (skrl's defaults
``clip_log_std=True``, ``[-20, 2]``, or ``models.policy`` of ``params/agent.yaml``); the mean is
the deterministic action. The scaler is reproduced exactly, ``clamp((x - mean) / (sqrt(var) +
1e-8), -5, 5)`` in float32 (its defaults ``epsilon=1e-8``, ``clip_threshold=5``). The activation
comes from ``params/agent.yaml`` (``models.policy.network[0].activations``, next to or one
directory above the ``checkpoints/`` folder) or ``activation=``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tailor.errors import TailorError
from tailor.meta import validate_meta
from tailor.nets import EmpiricalNormalization
from tailor.priors.base import (
    check_activation,
    gaussian_prior,
    global_std_meta,
    identity_normalizer,
    layers_from_state,
    load_yaml,
)
from tailor.priors.detect import torch_load
from tailor.priors.validate import (
    SKRL_POLICY_SCHEMA,
    check_chain,
    linear,
    log_std_vector,
    normalizer_halves,
    scalar,
    state_dict,
    weight,
)

__all__ = ["load_skrl"]

_SCALER_EPS, _SCALER_CLIP = 1e-8, 5.0  # skrl RunningStandardScaler defaults
_LOG_STD_RANGE = (-20.0, 2.0)  # skrl GaussianMixin defaults


def _agent_yaml(path: Path) -> dict[str, Any] | None:
    for cand in (
        path.parent / "params" / "agent.yaml",
        path.parent.parent / "params" / "agent.yaml",
    ):
        if cand.is_file():
            cfg = load_yaml(cand)
            if isinstance(cfg, dict):
                return {"file": str(cand), **cfg}
    return None


def _policy_cfg(cfg: dict[str, Any] | None) -> dict[str, Any]:
    models = (cfg or {}).get("models")
    policy = models.get("policy") if isinstance(models, dict) else None
    return policy if isinstance(policy, dict) else {}


def _scaler(state: dict[str, torch.Tensor], obs_dim: int, src: str) -> EmpiricalNormalization:
    halves = normalizer_halves(state, "running_mean", "running_variance", obs_dim, src)
    if halves is None:
        raise TailorError(
            f"{src}: state_preprocessor has no running_mean/running_variance (only skrl's "
            "RunningStandardScaler is supported)"
        )
    mean, var = halves
    norm = EmpiricalNormalization(obs_dim, eps=_SCALER_EPS, clip=_SCALER_CLIP)
    count = scalar(state, "current_count", src)
    # skrl computes with running_mean.float() and sqrt(running_variance.float()): same here.
    norm.load_state_dict(
        {
            "mean": mean.float(),
            "var": var.float(),
            "count": torch.tensor(count, dtype=torch.float64),
        }
    )
    return norm.eval()


def load_skrl(
    path: str | Path, normalizer: str | Path | None = None, activation: str | None = None
) -> Any:
    """A :class:`tailor.priors.PolicyPrior` from an skrl agent checkpoint (module docstring).

    Raises:
        TailorError: no ``policy`` state dict, a layout other than the two documented ones, no
            activation, an ``output`` other than ``ACTIONS``, a non-Gaussian policy.
    """
    path = Path(path)
    src = repr(str(path))
    if normalizer is not None:
        raise TailorError(
            f"{src}: skrl checkpoints carry their state_preprocessor; drop normalizer="
        )
    ckpt = torch_load(path)
    policy = ckpt.get("policy") if isinstance(ckpt, dict) else None
    if not isinstance(policy, dict):
        raise TailorError(f"{src} is not an skrl agent checkpoint (no 'policy' state dict)")
    policy = state_dict(policy, src, "policy")
    if "log_std_parameter" not in policy:
        raise TailorError(
            f"{src}: the skrl policy has no log_std_parameter; only GaussianMixin policies with a "
            "state-independent log-std are supported"
        )
    if "policy_layer.weight" in policy:
        hidden = (
            layers_from_state(policy, "net_container.", src)
            if any(k.startswith("net_container.") for k in policy)
            else []
        )
        layers = [*hidden, linear(policy, "policy_layer", src)]
        check_chain(layers, src)
        layout = "model instantiator (net_container + policy_layer)"
    elif any(k.startswith("net.") for k in policy):
        layers, layout = layers_from_state(policy, "net.", src), "hand-written (net)"
    else:
        shown = ", ".join(sorted(policy)[:8])
        raise TailorError(
            f"{src}: unknown skrl policy layout (keys {shown}); supported: net_container.* + "
            "policy_layer.* (skrl's model instantiators) or net.* (the documentation's models)"
        )
    cfg = _agent_yaml(path)
    pcfg = validate_meta(_policy_cfg(cfg), SKRL_POLICY_SCHEMA, f"{(cfg or {}).get('file')!r}")
    output = pcfg.get("output", "ACTIONS")
    if str(output).strip() != "ACTIONS":
        raise TailorError(
            f"{cfg['file']!r}: policy output {output!r} is not supported (only ACTIONS)"
        )
    net_cfg = pcfg.get("network")
    yaml_act = None
    if isinstance(net_cfg, list) and net_cfg and isinstance(net_cfg[0], dict):
        acts = net_cfg[0].get("activations")
        acts = acts if isinstance(acts, list) else [acts]
        if len({str(a) for a in acts if a is not None}) > 1:
            raise TailorError(
                f"{cfg['file']!r}: one activation per network is supported, got {acts}"
            )
        yaml_act = acts[0]
    if activation is not None:
        act, act_src = check_activation(activation, src), "activation argument"
    elif yaml_act is not None:
        act, act_src = check_activation(yaml_act, cfg["file"]), cfg["file"]
    else:
        raise TailorError(
            f"{src}: the activation of the skrl policy is not stored in the checkpoint and no "
            f"params/agent.yaml was found beside it or above its checkpoints/ folder; pass it: "
            "activation='elu' (--prior-activation elu)"
        )
    log_std = weight(policy, "log_std_parameter", src)
    log_std = log_std_vector(log_std, layers[-1][0].shape[0], src)
    if pcfg.get("clip_log_std", True):
        lo = float(pcfg.get("min_log_std", _LOG_STD_RANGE[0]))
        hi = float(pcfg.get("max_log_std", _LOG_STD_RANGE[1]))
        log_std = log_std.clamp(lo, hi)
    obs_dim = layers[0][0].shape[1]
    pre = ckpt.get("state_preprocessor")
    if isinstance(pre, dict) and pre:
        obs_norm = _scaler(state_dict(pre, src, "state_preprocessor"), obs_dim, src)
        norm_info: dict[str, Any] = {
            "kind": "skrl RunningStandardScaler",
            "formula": "clip((x - mean) / (sqrt(var) + eps), -clip, clip)",
            "eps": _SCALER_EPS,
            "clip": _SCALER_CLIP,
            "count": float(obs_norm.count),
        }
    else:
        obs_norm, norm_info = identity_normalizer(obs_dim), {"kind": "none"}
    source = {
        "format": "skrl",
        "library": "skrl",
        "version": f"unknown ({layout})",
        "algorithm": "PPO" if "value" in ckpt else "unknown",
        "path": str(path),
    }
    meta = global_std_meta(layers, log_std, act, act_src, norm_info, source)
    return gaussian_prior(layers, log_std, act, obs_norm, meta, src)
