"""Building blocks shared by the importers: Gaussian priors from weights, normalizers from stats.

Shapes: ``D`` observation size, ``A`` action size, ``H_i`` hidden sizes. A network given as a list
of ``(weight [out, in], bias [out])`` pairs is ``Linear -> act -> ... -> Linear``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.errors import TailorError
from tailor.nets import ACTIVATIONS, Actor, EmpiricalNormalization
from tailor.paths import check_input_path
from tailor.priors.prior import PolicyPrior
from tailor.priors.validate import check_chain, linear

__all__ = [
    "Layers",
    "check_activation",
    "gaussian_prior",
    "identity_normalizer",
    "layers_from_state",
    "load_normalizer_file",
    "load_yaml",
    "mlp_from_layers",
    "var_eps_normalizer",
]

Layers = list[tuple[torch.Tensor, torch.Tensor]]


def load_yaml(path: Path) -> Any:
    """Read a YAML file with ``yaml.SafeLoader``, ``!!python/tuple`` and other ``!!python/`` tags
    read as plain lists/dicts/strings (Isaac Lab's ``params/agent.yaml`` holds such tags); no
    object is ever built.

    Raises:
        TailorError: pyyaml is not installed, or the file is not readable YAML.
    """
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml comes with most RL stacks
        raise TailorError(f"reading {str(path)!r} needs pyyaml: pip install pyyaml") from None

    class _Loader(yaml.SafeLoader):
        pass

    def python_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        return loader.construct_scalar(node)

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", python_tag)
    try:
        return yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader subclass
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise TailorError(f"{str(path)!r} is not a readable YAML file ({exc})") from None


# torch.nn class names (as SB3 writes them in policy_kwargs) -> tailor.nets.ACTIVATIONS names.
TORCH_ACTIVATIONS = {
    "ELU": "elu",
    "Tanh": "tanh",
    "ReLU": "relu",
    "SELU": "selu",
    "CELU": "crelu",
    "LeakyReLU": "lrelu",
    "Sigmoid": "sigmoid",
    "Softplus": "softplus",
    "GELU": "gelu",
    "SiLU": "swish",
    "Mish": "mish",
    "Identity": "identity",
}


def check_activation(name: str, source: str) -> str:
    """Lower-case ``name`` and check it is one of :data:`tailor.nets.ACTIVATIONS`."""
    key = str(name).lower()
    if key not in ACTIVATIONS:
        raise TailorError(
            f"{source}: activation {name!r} is not supported; supported: {', '.join(ACTIVATIONS)}"
        )
    return key


def layers_from_state(
    state: dict[str, torch.Tensor], prefix: str, source: str, bias_optional: bool = False
) -> Layers:
    """The ``Linear`` layers ``<prefix><i>.weight/.bias`` of a ``Sequential``, in index order.

    ``bias_optional``: a layer saved without its bias (``Linear(bias=False)``, e.g. ARS's
    ``with_bias=False``) gets a zero one instead of being refused.

    Raises:
        TailorError: no layer under ``prefix``, a weight without its bias, or consecutive layers
            whose sizes do not chain (``out`` of one != ``in`` of the next).
    """
    idx = sorted(
        {
            int(k[len(prefix) :].split(".")[0])
            for k in state
            if isinstance(k, str)
            and k.startswith(prefix)
            and k.endswith(".weight")
            and k[len(prefix) :].split(".")[0].isdigit()
            and len(k[len(prefix) :].split(".")[0]) < 9
        }
    )
    layers: Layers = []
    for i in idx:
        name = f"{prefix}{i}"
        if f"{name}.bias" not in state and not bias_optional:
            raise TailorError(f"{source}: {name} is not a Linear layer (no weight and bias)")
        layers.append(linear(state, name, source, bias_optional))
    check_chain(layers, f"{source} ({prefix}*)")
    if not layers:
        raise TailorError(f"{source}: no Linear layers under {prefix!r}")
    return layers


def mlp_from_layers(
    layers: Layers, activation: str, out_activation: str | None = None
) -> torch.nn.Sequential:
    """``Linear -> act -> ... -> Linear [-> out_activation]`` holding ``layers`` (frozen)."""
    mods: list[torch.nn.Module] = []
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        mods.append(lin)
        if i < len(layers) - 1:
            mods.append(ACTIVATIONS[activation]())
    if out_activation is not None:
        mods.append(ACTIVATIONS[out_activation]())
    return torch.nn.Sequential(*mods).eval().requires_grad_(False)


def gaussian_prior(
    layers: Layers,
    log_std: torch.Tensor,
    activation: str,
    obs_norm: EmpiricalNormalization,
    meta: dict[str, Any],
    source: str,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> PolicyPrior:
    """A :class:`tailor.priors.PolicyPrior`: ``N(mlp(norm(s)), diag(exp(log_std)^2))``.

    Args:
        layers: the mean network ``D -> H_1 -> ... -> A`` (the last layer is the mean head).
        log_std: ``[A]`` state-independent log standard deviation.
        activation: hidden activation (a :data:`tailor.nets.ACTIVATIONS` name).
        obs_norm: the observation normalizer (frozen).
        meta: the prior's metadata (JSON-able; ``source``, ``distribution``, action bounds ...).
        source: the file's name for error messages.
        bounds: ``(low [A], high [A])``: the mean is ``low + (tanh(mlp) + 1) / 2 * (high -
            low)`` instead (a deterministic TD3/DDPG actor; :class:`tailor.nets.Actor`).
    """
    obs_dim, act_dim = layers[0][0].shape[1], layers[-1][0].shape[0]
    log_std = log_std.detach().float().reshape(-1)
    if log_std.shape != (act_dim,):
        raise TailorError(
            f"{source}: the log-std has {log_std.numel()} entries but the mean head gives "
            f"{act_dim} actions"
        )
    if obs_norm.mean.shape != (obs_dim,):
        raise TailorError(
            f"{source}: the observation normalizer has size {obs_norm.mean.shape[0]} but the "
            f"network takes {obs_dim} observations"
        )
    hidden = [w.shape[0] for w, _ in layers[:-1]]
    actor = Actor(obs_dim, act_dim, hidden, activation, "global", action_bounds=bounds)
    state = {
        f"body.{2 * i}.{n}": t
        for i, (w, b) in enumerate(layers[:-1])
        for n, t in (("weight", w), ("bias", b))
    }
    state.update({"mean.weight": layers[-1][0], "mean.bias": layers[-1][1], "log_std": log_std})
    if bounds is not None:  # the buffers the Actor already holds; everything else must be given
        state.update(out_low=actor.out_low, out_high=actor.out_high)
    actor.load_state_dict(state)
    meta = {**meta, "obs_dim": obs_dim, "act_dim": act_dim}
    return PolicyPrior(actor, obs_norm, meta)


def global_std_meta(
    layers: Layers,
    log_std: torch.Tensor,
    act: str,
    act_source: str,
    norm_info: dict[str, Any],
    source: dict[str, Any],
) -> dict[str, Any]:
    """The metadata of an imported Gaussian prior with one global log-std vector ``[A]``:
    ``source`` (format, library, version, algorithm, path), architecture, activation and where
    it was read, the normalizer, the std range."""
    return {
        "task": None,
        "source": source,
        "architecture": {"hidden": [w.shape[0] for w, _ in layers[:-1]], "activation": act},
        "activation": act,
        "activation_source": act_source,
        "obs_normalizer": norm_info,
        "distribution": {
            "kind": "gaussian",
            "std": "global (state-independent)",
            "std_min": float(log_std.exp().min()),
            "std_max": float(log_std.exp().max()),
        },
    }


def identity_normalizer(dim: int) -> EmpiricalNormalization:
    """The exact identity (``eps=0``, mean 0, var 1, frozen): tailor's "no normalization"."""
    return EmpiricalNormalization(dim, eps=0.0).eval()


def check_statistics(mean: torch.Tensor, var: torch.Tensor, eps: float) -> None:
    """Raise unless an observation normalizer's statistics can normalize: finite ``mean`` and
    ``var``, ``var >= 0``, a finite ``eps >= 0``."""
    if not (math.isfinite(eps) and eps >= 0):
        raise TailorError(f"the normalizer's epsilon must be a finite number >= 0, got {eps}")
    if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(var).all())):
        raise TailorError("the normalizer's mean or var holds NaN or infinite values")
    if bool((var < 0).any()):
        raise TailorError("the normalizer's var has negative entries (a variance is >= 0)")


def var_eps_normalizer(
    mean: np.ndarray | torch.Tensor,
    var: np.ndarray | torch.Tensor,
    eps: float,
    clip: float | None,
    count: float = 0.0,
) -> EmpiricalNormalization:
    """``clip((x - mean) / sqrt(var + eps), -clip, clip)`` (SB3 VecNormalize, gymnasium) frozen.

    Raises:
        TailorError: non-finite statistics, a negative variance or a negative ``eps``.
    """
    mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float64))
    var_t = torch.as_tensor(np.asarray(var, dtype=np.float64))
    check_statistics(mean_t, var_t, eps)
    norm = EmpiricalNormalization(mean_t.shape[0], eps=float(eps), mode="var_eps", clip=clip)
    norm.load_state_dict(
        {"mean": mean_t, "var": var_t, "count": torch.tensor(float(count), dtype=torch.float64)}
    )
    return norm.eval()


def std_eps_normalizer(
    mean: torch.Tensor, std: torch.Tensor, eps: float, count: float = 0.0
) -> EmpiricalNormalization:
    """``(x - mean) / (std + eps)`` (rsl-rl) frozen; stores ``var = std^2``.

    ``sqrt(fl(std * std)) == std`` exactly in IEEE arithmetic, so the formula is reproduced bit
    for bit from rsl-rl's ``_std`` buffer.
    """
    mean, std = mean.detach().float().reshape(-1), std.detach().float().reshape(-1)
    norm = EmpiricalNormalization(mean.shape[0], eps=float(eps))
    norm.load_state_dict(
        {"mean": mean, "var": std * std, "count": torch.tensor(float(count), dtype=torch.float64)}
    )
    return norm.eval()


def _read_magic(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(16)


def load_normalizer_file(
    path: str | Path, default_eps: float, default_clip: float | None
) -> EmpiricalNormalization:
    """An observation normalizer from a separate statistics file.

    Accepted files:

    - an SB3 ``vecnormalize.pkl`` (read by the restricted unpickler, :mod:`tailor.priors.unpickle`);
    - a ``.npz`` (``numpy.savez``) or a safetensors file with arrays ``mean [D]`` and ``var [D]``,
      optional scalars ``epsilon`` and ``clip`` (``clip <= 0`` or ``inf``: no clipping) and
      ``count``. Normalization is ``clip((x - mean) / sqrt(var + epsilon), -clip, clip)``
      (gymnasium's ``NormalizeObservation`` followed by CleanRL's clip); ``default_eps`` and
      ``default_clip`` apply when the file has no ``epsilon``/``clip``.

    Raises:
        TailorError: missing, unreadable or incomplete file.
    """
    path = check_input_path(path, "normalizer file")
    if not path.is_file():
        raise TailorError(f"normalizer file {str(path)!r} does not exist")
    from tailor.priors.detect import is_safetensors

    magic = _read_magic(path)
    if magic[:1] == b"\x80":
        from tailor.priors.unpickle import load_vecnormalize

        st = load_vecnormalize(path)
        if not st["norm_obs"]:
            return identity_normalizer(st["mean"].shape[0])
        return var_eps_normalizer(st["mean"], st["var"], st["epsilon"], st["clip_obs"], st["count"])
    arrays: dict[str, np.ndarray] = {}
    if magic[:4] == b"PK\x03\x04":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: np.asarray(z[k]) for k in z.files}
        except (ValueError, OSError) as exc:
            raise TailorError(f"{str(path)!r} is not a readable .npz file ({exc})") from None
    elif is_safetensors(path):
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(path))
        except Exception as exc:
            raise TailorError(
                f"{str(path)!r} is not a readable safetensors file (truncated or corrupted?): {exc}"
            ) from None
    else:
        raise TailorError(
            f"{str(path)!r} is not a normalizer file tailor reads: pass a vecnormalize.pkl, a .npz "
            "or a safetensors file with arrays 'mean' and 'var'"
        )
    missing = [k for k in ("mean", "var") if k not in arrays]
    if missing:
        raise TailorError(
            f"{str(path)!r} has no {' or '.join(missing)} array (found: "
            f"{', '.join(sorted(arrays)) or 'none'}); a normalizer file needs 'mean' and 'var' [D] "
            "(optional 'epsilon', 'clip', 'count')"
        )
    mean, var = arrays["mean"].reshape(-1), arrays["var"].reshape(-1)
    if mean.shape != var.shape:
        raise TailorError(f"{str(path)!r}: mean {mean.shape} and var {var.shape} differ in size")
    eps = float(arrays["epsilon"]) if "epsilon" in arrays else default_eps
    clip = float(arrays["clip"]) if "clip" in arrays else default_clip
    if clip is not None and (clip <= 0 or not np.isfinite(clip)):
        clip = None
    return var_eps_normalizer(mean, var, eps, clip, float(arrays.get("count", 0.0)))


def warn_no_normalizer(source: str, what: str) -> None:
    """Warn that a prior is used on raw observations (its training may have normalized them)."""
    warnings.warn(
        f"{source}: no observation normalizer given; the prior sees raw observations. If it was "
        f"trained with normalized observations ({what}), pass its statistics with "
        "normalizer=PATH (--prior-normalizer PATH)",
        stacklevel=3,
    )


def as_floats(x: Sequence[float] | np.ndarray | torch.Tensor) -> list[float]:
    """A JSON-able list of floats."""
    return [float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)]


def json_safe(obj: Any) -> Any:
    """``obj`` if it survives ``json.dumps``, else its ``repr``."""
    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError):
        return repr(obj)
