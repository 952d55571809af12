"""Stable-Baselines3 2.x models (``model.save`` zips) as priors, without unpickling them.

An SB3 zip holds ``data`` (JSON; objects that JSON cannot hold are cloudpickled under
``":serialized:"`` keys, next to readable ``repr`` strings of their fields) and ``policy.pth``
(the policy's ``state_dict``). tailor reads the readable fields only (``policy_class``'s
``__module__``/``__init__`` reprs, ``policy_kwargs`` (``net_arch``, ``activation_fn``),
``observation_space``/``action_space`` (``_shape``, or gym-era ``shape``, ``low``, ``high``,
``n``), ``use_sde``) and
``policy.pth`` with ``torch.load(weights_only=True)``; the ``:serialized:`` blobs are never
loaded. Hidden sizes come from the weights (checked against ``net_arch`` when it is given); the
activation from ``activation_fn`` or, when the user left it out, SB3's default for that policy
class (``Tanh`` for ``ActorCriticPolicy``, ``ReLU`` for the others), unless ``activation=`` says
otherwise.

Supported (``MlpPolicy`` on flat ``Box`` observations):

- PPO / A2C / TRPO, ``Box`` actions: diagonal Gaussian with global ``log_std`` ->
  :class:`tailor.priors.PolicyPrior` (customizable with PPO); ``Discrete`` actions: categorical
  (:class:`~tailor.priors.policies.BoltzmannQPrior` over the logits at temperature 1); with gSDE
  (``use_sde=True``; ``full_std``, ``use_expln``, ``squash_output`` from ``policy_kwargs``) ->
  :class:`~tailor.priors.policies.GSDEPrior` (not customizable with PPO: state-dependent std).
- SAC / TQC: tanh-squashed Gaussian -> :class:`~tailor.priors.policies.SquashedGaussianPrior`.
- TD3 / DDPG: deterministic; with ``std`` -> :class:`tailor.priors.PolicyPrior`, the Gaussian
  ``N(actor(s), std^2)`` whose actor squashes its mean into the action bounds (customizable
  with PPO).
- ARS (sb3-contrib; ``ARSLinearPolicy``, ``ARSPolicy``): deterministic; on ``Box`` actions with
  ``std`` as TD3 (the mean squashed into the bounds when the policy squashes, else SB3's clip
  left to the environment), on ``Discrete`` actions with ``temperature``: ``softmax(logits /
  temperature)`` (:class:`~tailor.priors.policies.BoltzmannQPrior`).
- DQN: with ``temperature`` -> :class:`~tailor.priors.policies.BoltzmannQPrior`.

Observation normalization: an SB3 ``VecNormalize`` pickle (``normalizer=PATH``, else
``<zip stem>/vecnormalize.pkl`` (RL Zoo) or ``vecnormalize.pkl`` beside the zip), read by
:mod:`tailor.priors.unpickle`; normalized as SB3 does, ``clip((x - mean) / sqrt(var + eps),
-clip_obs, clip_obs)``.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.errors import DeterministicPolicyError, TailorError
from tailor.nets import EmpiricalNormalization
from tailor.priors.base import (
    TORCH_ACTIVATIONS,
    Layers,
    as_floats,
    check_activation,
    gaussian_prior,
    identity_normalizer,
    json_safe,
    layers_from_state,
    load_normalizer_file,
    mlp_from_layers,
)
from tailor.priors.detect import torch_load, zip_names
from tailor.priors.policies import (
    BoltzmannQPrior,
    GSDEPrior,
    GSDESpec,
    SquashedGaussianPrior,
)
from tailor.priors.prior import PolicyPrior
from tailor.priors.validate import (
    MAX_DIM,
    check_chain,
    count,
    linear,
    log_std_vector,
    parse_sb3_data,
    read_member,
    scalar,
    state_dict,
    weight,
)

__all__ = ["SUPPORTED", "find_vecnormalize", "load_sb3", "read_sb3_zip"]

# (policy-class module, class name) -> (kind, SB3's default activation for that class).
_POLICIES: dict[tuple[str, str], tuple[str, str]] = {
    ("stable_baselines3.common.policies", "ActorCriticPolicy"): ("actor_critic", "tanh"),
    ("stable_baselines3.sac.policies", "SACPolicy"): ("sac", "relu"),
    ("sb3_contrib.tqc.policies", "TQCPolicy"): ("sac", "relu"),
    ("stable_baselines3.td3.policies", "TD3Policy"): ("td3", "relu"),
    ("stable_baselines3.dqn.policies", "DQNPolicy"): ("dqn", "relu"),
    # The Residual Q-Learning authors' fork (chenran-li/RQL-release): SB3's QNetwork under
    # another name, acting by softmax(Q) (temperature 1) -- their released "_Pretrained" priors.
    ("stable_baselines3.dqn_ME.policies_ME", "DQNPolicy"): ("dqn", "relu"),
    ("sb3_contrib.qrdqn.policies", "QRDQNPolicy"): ("qrdqn", "relu"),
    # ARS: deterministic; the linear policy is the RL Zoo's for every MuJoCo robot.
    ("sb3_contrib.ars.policies", "ARSPolicy"): ("ars", "relu"),
    ("sb3_contrib.ars.policies", "ARSLinearPolicy"): ("ars", "relu"),
}
# The policy classes whose Boltzmann temperature is part of the algorithm (no flag needed).
_KNOWN_TEMPERATURE = {
    "stable_baselines3.dqn_ME.policies_ME": (
        1.0,
        "the RQL authors' DQN_ME acts by softmax(Q), temperature 1",
    ),
}
SUPPORTED = (
    "MlpPolicy of PPO/A2C/TRPO (Box or Discrete actions, gSDE), SAC and TQC (gSDE too), "
    "TD3/DDPG and ARS (with std; ARS on Discrete actions with temperature), DQN and QR-DQN "
    "(with temperature), on Box observations (flattened)"
)


def read_sb3_zip(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """``(data, policy_state_dict, sb3_version)`` from an SB3 zip, without unpickling.

    Raises:
        TailorError: not a valid zip, no ``data``/``policy.pth``, unreadable JSON or weights.
    """
    src = repr(str(path))
    if zip_names(path) is None:
        raise TailorError(f"{src} is not a valid zip file (truncated or corrupted?)")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = [m for m in ("data", "policy.pth") if m not in names]
            if missing:
                raise TailorError(
                    f"{src} is a zip but not an SB3 model: no {' or '.join(missing)} member"
                )
            raw_data = read_member(z, "data", src)
            raw_policy = read_member(z, "policy.pth", src)
            version = (
                read_member(z, "_stable_baselines3_version", src)
                .decode("utf-8", "replace")
                .strip()[:64]
                if "_stable_baselines3_version" in names
                else "unknown"
            )
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise TailorError(
            f"{src} is not a valid zip file (truncated or corrupted?): {exc}"
        ) from None
    data = parse_sb3_data(raw_data, f"{src}: the SB3 'data' member")
    state = state_dict(torch_load(raw_policy, f"{src} (policy.pth)"), f"{src} (policy.pth)")
    return data, state, version


def _policy_class(data: dict[str, Any]) -> tuple[str, str]:
    """``(module, class name)`` of the policy, from the reprs in ``data["policy_class"]``."""
    pc = data.get("policy_class")
    if not isinstance(pc, dict):
        return "?", "?"
    module = str(pc.get("__module__", "?"))
    m = re.match(r"<function (\w+)\.__init__ at", str(pc.get("__init__", "")))
    return module, (m.group(1) if m else "?")


def _algorithm(kind: str, module: str, data: dict[str, Any]) -> str:
    if kind == "actor_critic":
        if "clip_range" in data:
            return "PPO"
        return "TRPO" if "cg_max_steps" in data else "A2C"
    if kind == "sac":
        return "TQC" if module.startswith("sb3_contrib") else "SAC"
    if kind == "td3":
        ddpg = data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0
        return "DDPG" if ddpg else "TD3"
    if kind == "qrdqn":
        return "QR-DQN"
    if kind == "ars":
        return "ARS"
    return "DQN_ME" if module.endswith("dqn_ME.policies_ME") else "DQN"


def _space(data: dict[str, Any], key: str, src: str) -> dict[str, Any]:
    """``{"kind": "box", "shape": [...], "low": [...], "high": [...]}`` or discrete ``{"n"}``."""
    sp = data.get(key)
    if not isinstance(sp, dict):
        raise TailorError(f"{src}: the SB3 data has no readable {key}")
    typ = str(sp.get(":type:", ""))
    if typ.endswith(".Box'>"):
        shape = _shape(sp, key, src)
        low, high = _array_repr(sp.get("low"), shape), _array_repr(sp.get("high"), shape)
        return {"kind": "box", "shape": shape, "low": low, "high": high}
    if typ.endswith(".Discrete'>"):
        start = count(sp.get("start", 0), f"{key}.start", src, lo=-MAX_DIM)
        if start != 0:
            raise TailorError(f"{src}: Discrete {key} with start={start} is not supported")
        return {"kind": "discrete", "n": count(sp.get("n"), f"{key}.n", src)}
    name = re.sub(r"^<class '(.*)'>$", r"\1", typ) or "unknown"
    return {"kind": name.rsplit(".", 1)[-1].lower(), "type": name}


def _shape(space: dict[str, Any], key: str, src: str) -> list[int]:
    """A Box's shape: gymnasium spaces store ``_shape``, gym-era ones (SB3 <= 1.x, the RL Zoo's
    released agents) store ``shape``; both as a JSON list of non-negative ints."""
    raw = space.get("_shape", space.get("shape"))
    if raw is None:
        return []
    ok = isinstance(raw, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in raw
    )
    if not ok:
        raise TailorError(
            f"{src}: the SB3 data's {key} has shape {raw!r}, not a list of sizes "
            f"(non-negative integers up to {MAX_DIM})"
        )
    return list(raw)


def _array_repr(text: Any, shape: list[int]) -> list[float] | None:
    """numpy's ``repr``-like ``'[-1. -1. -8.]'`` -> floats (``inf`` kept); ``None`` if absent."""
    if not isinstance(text, str):
        return None
    tokens = text.replace("[", " ").replace("]", " ").split()
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    n = int(np.prod(shape)) if shape else 1
    if len(values) == 1 and n > 1:
        values = values * n
    return values if len(values) == n else None


def _activation(
    data: dict[str, Any], default: str, override: str | None, src: str
) -> tuple[str, str]:
    """``(activation, where it came from)``."""
    if override is not None:
        return check_activation(override, src), "activation argument"
    kwargs = data.get("policy_kwargs") or {}
    raw = kwargs.get("activation_fn") if isinstance(kwargs, dict) else None
    if raw is None:
        return default, "SB3's default for the policy class; activation_fn not in policy_kwargs"
    m = re.match(r"<class '(?:[\w.]+\.)?(\w+)'>", str(raw))
    name = m.group(1) if m else str(raw)
    if name not in TORCH_ACTIVATIONS:
        raise TailorError(
            f"{src}: activation_fn {raw!r} is not supported; supported: "
            + ", ".join(TORCH_ACTIVATIONS)
        )
    return TORCH_ACTIVATIONS[name], "policy_kwargs.activation_fn"


def _check_net_arch(data: dict[str, Any], key: str, hidden: list[int], src: str) -> None:
    """If ``policy_kwargs.net_arch`` is readable, it must agree with the weights' hidden sizes."""
    kwargs = data.get("policy_kwargs") or {}
    arch = kwargs.get("net_arch") if isinstance(kwargs, dict) else None
    if isinstance(arch, dict):
        arch = arch.get(key)
    if isinstance(arch, list) and all(isinstance(h, int) for h in arch) and list(arch) != hidden:
        raise TailorError(
            f"{src}: policy_kwargs.net_arch says {key} layers {arch} but the weights have {hidden}"
        )


def find_vecnormalize(zip_path: Path) -> Path | None:
    """The normalizer saved with an SB3 zip, in the two documented layouts only: the RL Zoo's
    ``<zip stem>/vecnormalize.pkl`` (``HalfCheetah-v3.zip`` + ``HalfCheetah-v3/``) and
    ``vecnormalize.pkl`` beside the zip (``env.save("vecnormalize.pkl")`` next to
    ``model.save``). Nothing else is guessed: a ``vecnormalize.pkl`` in some other sub-directory
    may belong to another model, and a wrong normalizer changes every action silently; pass it
    with ``normalizer=`` (``--prior-normalizer``) instead. The one used is recorded in the
    prior's ``meta["obs_normalizer"]["file"]`` and shown by ``tailor inspect`` and
    ``tailor customize``."""
    for cand in (
        zip_path.parent / zip_path.stem / "vecnormalize.pkl",
        zip_path.parent / "vecnormalize.pkl",
    ):
        if cand.is_file():
            return cand
    return None


def _normalizer(
    path: Path, normalizer: str | Path | None, obs_dim: int
) -> tuple[EmpiricalNormalization, dict[str, Any]]:
    file = Path(normalizer) if normalizer is not None else find_vecnormalize(path)
    if file is None:
        note = (
            f"no vecnormalize.pkl in {path.stem}/ or beside the zip (pass --prior-normalizer "
            "if the model was trained with VecNormalize)"
        )
        return identity_normalizer(obs_dim), {"kind": "none", "note": note}
    norm = load_normalizer_file(file, default_eps=1e-8, default_clip=10.0)
    if norm.mean.shape != (obs_dim,):
        raise TailorError(
            f"normalizer {str(file)!r} has observation size {norm.mean.shape[0]} but the SB3 "
            f"model {str(path)!r} takes {obs_dim}"
        )
    if norm.mode == "std_eps":  # a VecNormalize with norm_obs=False: identity
        return norm, {"kind": "none", "file": str(file), "note": "VecNormalize with norm_obs=False"}
    info = {
        "kind": "sb3-vecnormalize" if file.suffix == ".pkl" else "mean/var file",
        "file": str(file),
        "formula": "clip((x - mean) / sqrt(var + eps), -clip, clip)",
        "eps": norm.eps,
        "clip": norm.clip,
        "count": float(norm.count),
    }
    return norm, info


def _box_bounds(
    space: dict[str, Any], src: str, need_finite: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = space.get("low"), space.get("high")
    if low is None or high is None:
        raise TailorError(f"{src}: the action space's bounds are not readable")
    lo, hi = torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)
    if need_finite and not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise TailorError(f"{src}: a squashed policy needs finite action bounds, got {low}, {high}")
    return lo, hi


def load_sb3(
    path: str | Path,
    normalizer: str | Path | None = None,
    std: float | Sequence[float] | None = None,
    temperature: float | None = None,
    activation: str | None = None,
) -> Any:
    """A prior from an SB3 zip (module docstring for what is supported).

    Args:
        path: the ``.zip`` that ``model.save`` wrote.
        normalizer: a ``vecnormalize.pkl`` (or ``.npz``/safetensors mean/var file); default: the
            one beside the zip, if any.
        std: TD3/DDPG only: the Gaussian's standard deviation around the deterministic action
            (a number or one per action dimension, environment units).
        temperature: DQN only: ``tau`` of the Boltzmann policy ``softmax(Q / tau)``.
        activation: override the activation (when the model used a custom one SB3 did not write).

    Raises:
        TailorError: an unsupported policy (CNN, MultiInput, recurrent, gSDE), a missing ``std``
            or ``temperature``, unreadable files.
    """
    m = _read_model(Path(path), normalizer, activation)
    discrete = m.act_space["kind"] == "discrete"
    if std is not None and not (m.kind == "td3" or (m.kind == "ars" and not discrete)):
        raise TailorError(
            f"{m.src}: std= is for deterministic (TD3/DDPG, ARS on Box actions) priors, not "
            f"{m.algorithm}" + (" on Discrete actions (pass temperature=)" if discrete else "")
        )
    if temperature is not None and not (
        m.kind in ("dqn", "qrdqn") or (m.kind == "ars" and discrete)
    ):
        raise TailorError(
            f"{m.src}: temperature= is for Q-network (DQN) and Discrete-action ARS priors, not "
            f"{m.algorithm}" + (" on Box actions (pass std=)" if m.kind == "ars" else "")
        )
    prior = _prior(m, std, temperature)
    _check_actions(m, prior.act_dim)
    return prior


def _prior(m: _Model, std: float | Sequence[float] | None, temperature: float | None) -> Any:
    """The prior of the model's kind (options already checked)."""
    if m.kind == "actor_critic":
        return _actor_critic_prior(m)
    if m.kind in ("dqn", "qrdqn"):
        return _dqn_prior(m, temperature)
    if m.kind == "ars":
        return _ars_prior(m, std, temperature)
    if m.act_space["kind"] != "box":
        raise TailorError(f"{m.src}: {m.algorithm} needs Box actions, found {m.act_space['kind']}")
    low, high = _box_bounds(m.act_space, m.src, need_finite=True)
    m.meta.update(action_low=as_floats(low), action_high=as_floats(high))
    if m.kind == "sac":
        return _sac_gsde_prior(m, low, high) if m.data.get("use_sde") else _sac_prior(m, low, high)
    return _td3_prior(m, low, high, std)  # td3 / ddpg


@dataclass
class _Model:
    """A supported SB3 policy read from its zip, before it becomes a prior.

    Attributes:
        path: the zip.
        src: the zip's name for messages.
        data: the zip's ``data`` JSON.
        state: the policy's weights.
        kind: ``actor_critic``, ``dqn``, ``sac`` or ``td3`` (a key of ``_POLICIES``' values).
        algorithm: the algorithm's name (``PPO``, ``SAC``, ...).
        act_fn: the hidden activation (a :data:`tailor.nets.ACTIVATIONS` name).
        act_space: the action space as :func:`_space` describes it.
        obs_dim: the observation size ``D``.
        obs_norm: the observation normalizer (frozen; identity without statistics).
        meta: the prior's metadata so far (source, activation, normalizer, policy_kwargs).
    """

    path: Path
    src: str
    data: dict[str, Any]
    state: dict[str, torch.Tensor]
    kind: str
    algorithm: str
    act_fn: str
    act_space: dict[str, Any]
    obs_dim: int
    obs_norm: EmpiricalNormalization
    meta: dict[str, Any]


def _why(cls: str, module: str) -> str:
    """Why a policy class is refused, in a few words (empty when there is nothing to add)."""
    if "Recurrent" in cls or "recurrent" in module:
        return " (a recurrent policy: its action depends on a hidden state)"
    if cls.startswith(("Cnn", "ActorCriticCnn")):
        return " (a CNN policy on images)"
    if cls.startswith(("MultiInput",)):
        return " (a MultiInput policy on Dict observations, e.g. HER goals)"
    return ""


def _read_model(path: Path, normalizer: str | Path | None, activation: str | None) -> _Model:
    """Read the zip, refuse what is not supported, find the activation and the normalizer."""
    src = repr(str(path))
    data, state, version = read_sb3_zip(path)
    module, cls = _policy_class(data)
    entry = _POLICIES.get((module, cls))
    obs_space = _space(data, "observation_space", src)
    act_space = _space(data, "action_space", src)
    if entry is None or obs_space["kind"] != "box" or not obs_space["shape"]:
        what = f"{module}.{cls}"
        if obs_space["kind"] != "box" or not obs_space.get("shape"):
            what += f" on {obs_space.get('type', 'Box')} observations {obs_space.get('shape', '')}"
        raise TailorError(f"{src}: SB3 policy {what} is not supported{_why(cls, module)}; "
                          f"supported: {SUPPORTED}")  # fmt: skip
    extractor = [k for k in state if "features_extractor." in k]
    if extractor:
        raise TailorError(
            f"{src}: the policy has a features extractor with weights ({extractor[0]}, ...); "
            f"only the flatten extractor of MlpPolicy is supported; supported: {SUPPORTED}"
        )
    kind, default_act = entry
    algorithm = _algorithm(kind, module, data)
    if data.get("use_sde") and kind not in ("actor_critic", "sac"):
        raise TailorError(
            f"{src}: {algorithm} with gSDE (use_sde=True) is not supported (PPO/A2C/SAC/TQC with "
            f"gSDE are); supported: {SUPPORTED}"
        )
    act_fn, act_src = _activation(data, default_act, activation, src)
    # MlpPolicy's FlattenExtractor: a Box of any shape is its flattened vector (row-major).
    obs_dim = int(np.prod(obs_space["shape"]))
    obs_norm, norm_info = _normalizer(path, normalizer, obs_dim)
    meta: dict[str, Any] = {
        "task": None,
        "source": {
            "format": "sb3",
            "library": "sb3-contrib" if module.startswith("sb3_contrib") else "stable-baselines3",
            "version": version,
            "algorithm": algorithm,
            "policy_class": f"{module}.{cls}",
            "path": str(path),
        },
        "activation": act_fn,
        "activation_source": act_src,
        "obs_normalizer": norm_info,
        "observation_shape": obs_space["shape"],
        "policy_kwargs": json_safe(
            {k: v for k, v in (data.get("policy_kwargs") or {}).items() if not k.startswith(":")}
        ),
    }
    return _Model(
        path, src, data, state, kind, algorithm, act_fn, act_space, obs_dim, obs_norm, meta
    )


def _actor_critic_prior(m: _Model) -> Any:
    """PPO / A2C: a Gaussian (global std or gSDE) or, on Discrete actions, a categorical prior."""
    src, state, meta = m.src, m.state, m.meta
    layers = _concat(state, ("mlp_extractor.shared_net.", "mlp_extractor.policy_net."), src)
    layers.append(_linear(state, "action_net", src))
    check_chain(layers, src)
    hidden = [w.shape[0] for w, _ in layers[:-1]]
    _check_net_arch(m.data, "pi", hidden, src)
    meta["architecture"] = {"hidden": hidden, "activation": m.act_fn}
    if m.act_space["kind"] == "discrete":
        meta["distribution"] = {"kind": "categorical", "n": m.act_space["n"]}
        return BoltzmannQPrior(mlp_from_layers(layers, m.act_fn), 1.0, m.obs_norm, meta)
    if m.act_space["kind"] != "box" or "log_std" not in state:
        raise TailorError(
            f"{src}: {m.algorithm} with {m.act_space['kind']} actions is not supported; "
            f"supported: {SUPPORTED}"
        )
    low, high = _box_bounds(m.act_space, src, need_finite=False)
    meta.update(action_low=as_floats(low), action_high=as_floats(high))
    if m.data.get("use_sde"):
        return _gsde(m, layers, low, high)
    log_std = log_std_vector(weight(state, "log_std", src), layers[-1][0].shape[0], src)
    meta["distribution"] = {
        "kind": "gaussian",
        "std": "global (state-independent)",
        "std_min": float(log_std.exp().min()),
        "std_max": float(log_std.exp().max()),
    }
    return gaussian_prior(layers, log_std, m.act_fn, m.obs_norm, meta, src)


def _dqn_prior(m: _Model, temperature: float | None) -> BoltzmannQPrior:
    """DQN / QR-DQN: the Boltzmann policy ``softmax(Q / temperature)`` of its Q-network (QR-DQN:
    ``Q(s, a)`` the mean of its quantiles, folded exactly into the last layer)."""
    src, meta = m.src, m.meta
    if m.act_space["kind"] != "discrete":
        raise TailorError(f"{src}: a DQN needs Discrete actions, found {m.act_space['kind']}")
    source = "temperature given"
    known = _KNOWN_TEMPERATURE.get(meta["source"]["policy_class"].rsplit(".", 1)[0])
    if temperature is None and known is not None:
        temperature, source = known
    if temperature is None:
        raise DeterministicPolicyError(
            f"{src} is an SB3 {m.algorithm} (a Q-network); pass temperature=TAU "
            "(--prior-temperature TAU) to use the Boltzmann policy softmax(Q / TAU) as the prior",
            "temperature",
        )
    if m.kind == "qrdqn":
        layers = _quantile_mean(m, layers_from_state(m.state, "quantile_net.quantile_net.", src))
    else:
        layers = layers_from_state(m.state, "q_net.q_net.", src)
    _check_net_arch(m.data, "qf", [w.shape[0] for w, _ in layers[:-1]], src)
    meta["architecture"] = {
        "hidden": [w.shape[0] for w, _ in layers[:-1]],
        "activation": m.act_fn,
    }
    meta["distribution"] = {
        "kind": "boltzmann",
        "temperature": float(temperature),
        "n": m.act_space["n"],
    }
    meta["temperature"] = {"value": float(temperature), "source": source}
    _check_in(layers, m.obs_dim, src)
    return BoltzmannQPrior(mlp_from_layers(layers, m.act_fn), float(temperature), m.obs_norm, meta)


def _sac_prior(m: _Model, low: torch.Tensor, high: torch.Tensor) -> SquashedGaussianPrior:
    """SAC / TQC: the tanh-squashed Gaussian actor, with the entropy coefficient if saved."""
    src, state, meta = m.src, m.state, m.meta
    latent = (
        layers_from_state(state, "actor.latent_pi.", src)
        if any(k.startswith("actor.latent_pi.0.") for k in state)
        else []
    )
    _check_net_arch(m.data, "pi", [w.shape[0] for w, _ in latent], src)
    mu, log_std = _linear(state, "actor.mu", src), _linear(state, "actor.log_std", src)
    check_chain([*latent, mu], src)
    check_chain([*latent, log_std], src)
    if mu[0].shape != log_std[0].shape:
        raise TailorError(f"{src}: actor.mu and actor.log_std differ in shape")
    meta["architecture"] = {"hidden": [w.shape[0] for w, _ in latent], "activation": m.act_fn}
    meta["distribution"] = {
        "kind": "tanh-squashed gaussian",
        "std": "state-dependent",
        "log_std_clamp": [-20.0, 2.0],
    }
    _check_in(latent or [mu], m.obs_dim, src)
    temperature = _sac_temperature(m.path, m.data, src)
    if temperature is not None:
        meta["temperature"] = temperature
    body = _hidden_mlp(latent, m.act_fn)
    return SquashedGaussianPrior(body, _lin(mu), _lin(log_std), low, high, m.obs_norm, meta)


def _quantile_mean(m: _Model, layers: Layers) -> Layers:
    """QR-DQN's quantile network ``[B, N * A]`` (viewed ``[B, N, A]``, as sb3-contrib's
    ``QuantileNetwork``) as a Q-network ``[B, A]``: the mean over the ``N`` quantiles of a linear
    last layer is the linear layer with the quantiles' weights and biases averaged."""
    n_actions = int(m.act_space["n"])
    w, b = layers[-1]
    if w.shape[0] % n_actions:
        raise TailorError(
            f"{m.src}: the quantile network has {w.shape[0]} outputs, not a multiple of the "
            f"{n_actions} actions"
        )
    n_quantiles = w.shape[0] // n_actions
    m.meta["quantiles"] = n_quantiles
    w_mean = w.reshape(n_quantiles, n_actions, w.shape[1]).mean(0)
    return [*layers[:-1], (w_mean, b.reshape(n_quantiles, n_actions).mean(0))]


def _sac_gsde_prior(m: _Model, low: torch.Tensor, high: torch.Tensor) -> GSDEPrior:
    """SAC / TQC with gSDE: SB3's ``StateDependentNoiseDistribution`` (``learn_features``,
    squashed) on ``latent_pi``; the mean head ``mu`` is clipped to ``±clip_mean``
    (``policy_kwargs``, default 2.0, a ``Hardtanh`` saved as ``mu.0``)."""
    src, state, meta = m.src, m.state, m.meta
    kwargs = m.data.get("policy_kwargs") or {}
    latent = layers_from_state(state, "actor.latent_pi.", src)
    _check_net_arch(m.data, "pi", [w.shape[0] for w, _ in latent], src)
    clipped = "actor.mu.0.weight" in state
    mu = _linear(state, "actor.mu.0" if clipped else "actor.mu", src)
    check_chain([*latent, mu], src)
    clip_mean = float(kwargs.get("clip_mean", 2.0)) if clipped else None
    _check_in(latent, m.obs_dim, src)
    log_std = state.get("actor.log_std")
    latent_dim = latent[-1][0].shape[0]
    if log_std is None or log_std.shape not in ((latent_dim, mu[0].shape[0]), (latent_dim, 1)):
        got = None if log_std is None else tuple(log_std.shape)
        raise TailorError(
            f"{src}: gSDE actor.log_std is {got}, expected [{latent_dim}, {mu[0].shape[0]}]"
        )
    log_std = weight(state, "actor.log_std", src)
    expln = bool(kwargs.get("use_expln", False))
    meta["architecture"] = {"hidden": [w.shape[0] for w, _ in latent], "activation": m.act_fn}
    meta["distribution"] = {
        "kind": "tanh-squashed gaussian (gSDE, state-dependent std)",
        "use_expln": expln,
        "clip_mean": clip_mean,
    }
    temperature = _sac_temperature(m.path, m.data, src)
    if temperature is not None:
        meta["temperature"] = temperature
    spec = GSDESpec(use_expln=expln, squash=True, bounds=(low, high), clip_mean=clip_mean)
    return GSDEPrior(_hidden_mlp(latent, m.act_fn), _lin(mu), log_std, spec, m.obs_norm, meta)


def _td3_prior(
    m: _Model, low: torch.Tensor, high: torch.Tensor, std: float | Sequence[float] | None
) -> PolicyPrior:
    """TD3 / DDPG: ``N(actor(s), std^2)`` around the deterministic action (``std`` required):
    a Gaussian actor whose mean is SB3's ``unscale_action(tanh(mu(s)))``, with
    ``log_std = log std``."""
    src, meta = m.src, m.meta
    layers = layers_from_state(m.state, "actor.mu.", src)
    _check_net_arch(m.data, "pi", [w.shape[0] for w, _ in layers[:-1]], src)
    _check_in(layers, m.obs_dim, src)
    act_dim = layers[-1][0].shape[0]
    if std is None:
        raise DeterministicPolicyError(
            f"{src} is an SB3 {m.algorithm} policy, which is deterministic and has no "
            "log-probability; pass std=SIGMA (--prior-std SIGMA) to use N(its action, SIGMA^2) "
            "as the prior",
            "std",
        )
    std_t = _std_vector(std, act_dim)
    meta["architecture"] = {"hidden": [w.shape[0] for w, _ in layers[:-1]], "activation": m.act_fn}
    meta["distribution"] = {
        "kind": "gaussian around the deterministic action",
        "std_min": float(std_t.min()),
        "std_max": float(std_t.max()),
    }
    log_std = torch.log(std_t)
    return gaussian_prior(layers, log_std, m.act_fn, m.obs_norm, meta, src, bounds=(low, high))


def _ars_prior(m: _Model, std: float | Sequence[float] | None, temperature: float | None) -> Any:
    """ARS (sb3-contrib): ``action_net`` maps the (normalized) observation to the action (Box:
    through a final ``Tanh`` when the policy squashes, and SB3's ``predict`` then rescales it
    into the bounds; unsquashed, ``predict`` clips) or to logits (Discrete: ``argmax``). As a
    prior: ``N(action, std^2)`` (Box) or ``softmax(logits / temperature)`` (Discrete)."""
    src, meta, kwargs = m.src, m.meta, m.data.get("policy_kwargs") or {}
    layers = _ars_layers(m.state, src)
    hidden = [w.shape[0] for w, _ in layers[:-1]]
    _check_net_arch(m.data, "pi", hidden, src)
    _check_in(layers, m.obs_dim, src)
    linear_class = m.meta["source"]["policy_class"].endswith("ARSLinearPolicy")
    squash = kwargs.get("squash_output", not linear_class) if isinstance(kwargs, dict) else True
    if hidden and not squash and m.act_space["kind"] == "box":
        # sb3-contrib < 1.7 put the Tanh in every ARSPolicy network on Box actions whatever
        # squash_output said; later versions leave it out: the file does not say which.
        raise TailorError(
            f"{src}: an ARS MlpPolicy saved with squash_output=False: whether its network ends "
            "in a Tanh depends on the sb3-contrib version that saved it, which the file does not "
            "record; re-save it with squash_output=True"
        )
    meta["architecture"] = {"hidden": hidden, "activation": m.act_fn, "squash_output": squash}
    if m.act_space["kind"] == "discrete":
        if temperature is None:
            raise DeterministicPolicyError(
                f"{src} is an SB3 ARS policy on Discrete actions (argmax of its logits); pass "
                "temperature=TAU (--prior-temperature TAU) to use softmax(logits / TAU) as the "
                "prior",
                "temperature",
            )
        n, tau = m.act_space["n"], float(temperature)
        meta["distribution"] = {"kind": "boltzmann over ARS's logits", "temperature": tau, "n": n}
        meta["temperature"] = {"value": tau, "source": "temperature given"}
        net = mlp_from_layers(layers, m.act_fn)
        return BoltzmannQPrior(net, tau, m.obs_norm, meta)
    if m.act_space["kind"] != "box":
        raise TailorError(f"{src}: ARS with {m.act_space['kind']} actions is not supported")
    low, high = _box_bounds(m.act_space, src, need_finite=squash)
    meta.update(action_low=as_floats(low), action_high=as_floats(high))
    if std is None:
        raise DeterministicPolicyError(
            f"{src} is an SB3 ARS policy, which is deterministic and has no log-probability; "
            "pass std=SIGMA (--prior-std SIGMA) to use N(its action, SIGMA^2) as the prior",
            "std",
        )
    std_t = _std_vector(std, layers[-1][0].shape[0])
    meta["distribution"] = {
        "kind": "gaussian around the deterministic action"
        + ("" if squash else " (unsquashed: SB3 clips it to the bounds, as the environment does)"),
        "std_min": float(std_t.min()),
        "std_max": float(std_t.max()),
    }
    bounds = (low, high) if squash else None
    return gaussian_prior(layers, torch.log(std_t), m.act_fn, m.obs_norm, meta, src, bounds)


def _ars_layers(state: dict[str, torch.Tensor], src: str) -> Layers:
    """ARS's ``action_net``: a ``Sequential`` (``action_net.0``, ``.2``, ...) or, as sb3-contrib
    < 1.7's ``ARSLinearPolicy`` saved it, one bare ``Linear`` (``action_net.weight``, read as
    ``action_net.0``); ``with_bias=False`` saves no biases (zeros here)."""
    if "action_net.weight" in state:
        state = {
            "action_net.0." + k[len("action_net.") :] if k.startswith("action_net.") else k: v
            for k, v in state.items()
        }
    return layers_from_state(state, "action_net.", src, bias_optional=True)


def _std_vector(std: float | Sequence[float], act_dim: int) -> torch.Tensor:
    """``std`` as ``[A]`` (one number broadcast), each > 0 and finite."""
    std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
    if std_t.numel() == 1:
        std_t = std_t.expand(act_dim).clone()
    if std_t.shape != (act_dim,) or not (torch.isfinite(std_t).all() and (std_t > 0).all()):
        raise TailorError(f"std must be > 0, one number or {act_dim} (one per action), got {std}")
    return std_t


def _sac_temperature(path: Path, data: dict[str, Any], src: str) -> dict[str, Any] | None:
    """SAC/TQC's entropy coefficient ``alpha`` (the prior's temperature), or ``None``.

    A fixed ``ent_coef`` is a number in ``data``; ``ent_coef="auto"`` learns ``log_ent_coef``,
    which SB3 saves in the zip's ``pytorch_variables.pth`` (read with ``weights_only=True``).
    """
    ent = data.get("ent_coef")
    if isinstance(ent, (int, float)) and not isinstance(ent, bool) and ent > 0:
        return {"value": float(ent), "source": "SB3 ent_coef (fixed)"}
    try:
        with zipfile.ZipFile(path) as z:
            if "pytorch_variables.pth" not in z.namelist():
                return None
            raw = read_member(z, "pytorch_variables.pth", src)
    except (zipfile.BadZipFile, OSError, EOFError):
        return None
    where = f"{src} (pytorch_variables.pth)"
    variables = torch_load(raw, where)
    if not isinstance(variables, dict):
        return None
    if torch.is_tensor(variables.get("log_ent_coef")):
        value = math.exp(min(scalar(variables, "log_ent_coef", where), 700.0))
        source = f"SB3 log_ent_coef (learned, ent_coef={ent!r})"
    elif torch.is_tensor(variables.get("ent_coef_tensor")):
        value = scalar(variables, "ent_coef_tensor", where)
        source = "SB3 ent_coef_tensor (fixed)"
    else:
        return None
    return {"value": value, "source": source} if value > 0 and np.isfinite(value) else None


def _gsde(m: _Model, layers: Layers, low: torch.Tensor, high: torch.Tensor) -> GSDEPrior:
    """PPO/A2C with gSDE: ``log_std`` is ``[latent, A]`` (``full_std``) or ``[latent, 1]``."""
    src, meta = m.src, m.meta
    kwargs = m.data.get("policy_kwargs") or {}  # learn_features changes gradients only
    log_std = weight(m.state, "log_std", src)
    latent_dim, act_dim = layers[-1][0].shape[1], layers[-1][0].shape[0]
    if log_std.shape not in ((latent_dim, act_dim), (latent_dim, 1)):
        raise TailorError(
            f"{src}: gSDE log_std has shape {tuple(log_std.shape)}, expected [{latent_dim}, A]"
        )
    squash, expln = bool(kwargs.get("squash_output", False)), bool(kwargs.get("use_expln", False))
    if squash and not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise TailorError(f"{src}: squash_output needs finite action bounds")
    meta["distribution"] = {
        "kind": "gaussian (gSDE, state-dependent std)" + (", tanh-squashed" if squash else ""),
        "full_std": log_std.shape[1] != 1 or layers[-1][0].shape[0] == 1,
        "use_expln": expln,
        "squash_output": squash,
    }
    latent = _hidden_mlp(layers[:-1], m.act_fn)
    spec = GSDESpec(use_expln=expln, squash=squash, bounds=(low, high))
    return GSDEPrior(latent, _lin(layers[-1]), log_std, spec, m.obs_norm, meta)


def _concat(state: dict[str, torch.Tensor], prefixes: Sequence[str], src: str) -> Layers:
    layers: Layers = []
    for p in prefixes:
        if any(k.startswith(p) for k in state):
            layers += layers_from_state(state, p, src)
    return layers


def _linear(
    state: dict[str, torch.Tensor], name: str, src: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if f"{name}.weight" not in state or f"{name}.bias" not in state:
        raise TailorError(f"{src}: policy.pth has no {name}.weight/.bias; supported: {SUPPORTED}")
    return linear(state, name, f"{src} (policy.pth)")


def _lin(layer: tuple[torch.Tensor, torch.Tensor]) -> torch.nn.Linear:
    return mlp_from_layers([layer], "identity")[0]


def _hidden_mlp(layers: Layers, activation: str) -> torch.nn.Module:
    """``Linear -> act`` for every layer (SB3's ``latent_pi``: activation after the last too)."""
    if not layers:
        return torch.nn.Identity()
    return mlp_from_layers(layers, activation, out_activation=activation)


def _check_actions(m: _Model, act_dim: int) -> None:
    """The network's action size is the action space's (``n`` of a Discrete, a Box's size)."""
    space = m.act_space
    want = space["n"] if space["kind"] == "discrete" else int(np.prod(space["shape"]))
    if act_dim != want:
        raise TailorError(
            f"{m.src}: the network gives {act_dim} actions but the action space has {want}"
        )


def _check_in(layers: Layers, obs_dim: int, src: str) -> None:
    if layers[0][0].shape[1] != obs_dim:
        raise TailorError(
            f"{src}: the network takes {layers[0][0].shape[1]} inputs but the observation space "
            f"has {obs_dim}"
        )
