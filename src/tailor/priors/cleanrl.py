"""CleanRL ``ppo_continuous_action`` agents: ``torch.save(agent.state_dict(), path)`` files.

The agent's actor is ``actor_mean`` (``Linear -> Tanh -> ... -> Linear``, parameters
``actor_mean.<i>.weight/.bias``) and ``actor_logstd`` (``[1, A]``, state-independent); the policy
is ``N(actor_mean(s), diag(exp(actor_logstd)^2))``. The file is read with
``torch.load(weights_only=True)``. Hidden sizes come from the weights, the activation is the
script's ``Tanh`` unless ``activation=`` says otherwise.

CleanRL normalizes observations in the environment (gymnasium's ``NormalizeObservation``, then a
clip to ``[-10, 10]``), so the statistics are not in the file: pass them as ``normalizer=`` (a
``.npz`` or safetensors file with ``mean``, ``var`` and optionally ``epsilon`` (default 1e-8) and
``clip`` (default 10), e.g. ``np.savez(f, mean=env.obs_rms.mean, var=env.obs_rms.var)``).
Without one, a warning says the prior sees raw observations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.priors.base import (
    check_activation,
    gaussian_prior,
    global_std_meta,
    identity_normalizer,
    layers_from_state,
    load_normalizer_file,
    warn_no_normalizer,
)
from tailor.priors.detect import torch_load
from tailor.priors.validate import log_std_vector, state_dict, weight

__all__ = ["load_cleanrl"]


def load_cleanrl(
    path: str | Path, normalizer: str | Path | None = None, activation: str | None = None
) -> Any:
    """A :class:`tailor.priors.PolicyPrior` from a CleanRL agent state dict (module docstring).

    Raises:
        TailorError: not a CleanRL agent state dict, inconsistent sizes, unreadable normalizer.
    """
    path = Path(path)
    src = repr(str(path))
    state = torch_load(path)
    if not isinstance(state, dict) or "actor_logstd" not in state:
        raise TailorError(
            f"{src} is not a CleanRL ppo_continuous_action agent.state_dict() (no actor_logstd)"
        )
    state = state_dict(state, src, "agent.state_dict()")
    layers = layers_from_state(state, "actor_mean.", src)
    act = check_activation(activation or "tanh", src)
    obs_dim = layers[0][0].shape[1]
    if normalizer is None:
        warn_no_normalizer(src, "CleanRL's NormalizeObservation wrapper")
        obs_norm = identity_normalizer(obs_dim)
        norm_info: dict[str, Any] = {"kind": "none", "note": "no normalizer file given"}
    else:
        obs_norm = load_normalizer_file(normalizer, default_eps=1e-8, default_clip=10.0)
        norm_info = {
            "kind": "mean/var file",
            "file": str(normalizer),
            "formula": "clip((x - mean) / sqrt(var + eps), -clip, clip)",
            "eps": obs_norm.eps,
            "clip": obs_norm.clip,
        }
    log_std = log_std_vector(weight(state, "actor_logstd", src), layers[-1][0].shape[0], src)
    source = {
        "format": "cleanrl",
        "library": "CleanRL",
        "version": "unknown (state dicts carry no version)",
        "algorithm": "PPO (ppo_continuous_action)",
        "path": str(path),
    }
    meta = global_std_meta(
        layers,
        log_std,
        act,
        "activation argument" if activation else "CleanRL's Tanh",
        norm_info,
        source,
    )
    return gaussian_prior(layers, log_std, act, obs_norm, meta, src)
