"""A restricted unpickler for the one pickle tailor reads: Stable-Baselines3's ``vecnormalize.pkl``.

A pickle can run any callable it names, so :class:`RestrictedUnpickler` resolves only an allowlist
of globals (:meth:`RestrictedUnpickler.find_class`):

- numpy's array and scalar reconstruction (``numpy.core.multiarray._reconstruct`` /
  ``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype`` (not the object
  dtype), ``...multiarray.scalar``);
- inert stand-ins (:class:`Inert`: no methods run, the pickled state is only stored as a ``dict``)
  for the classes a ``vecnormalize.pkl`` names: SB3's ``VecNormalize`` and ``RunningMeanStd``,
  gym/gymnasium spaces, and the numpy random generators of seeded spaces (their classes and
  constructors ``numpy.random._pickle.__*_ctor`` become inert objects; no generator is rebuilt).

Any other global raises ``TailorError("refusing to unpickle <module>.<name> ...")`` before
anything is called, so a hostile file executes nothing.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]

from tailor.errors import TailorError
from tailor.paths import check_input_path

__all__ = ["Inert", "RestrictedUnpickler", "load_vecnormalize", "restricted_loads"]


class Inert:
    """A stand-in for a pickled class: holds the pickled state, runs nothing.

    Attributes:
        qualname: ``"<module>.<name>"`` of the class it stands in for.
        state: the pickled instance state (``{}`` when none was given).
    """

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if (
            isinstance(state, tuple)
            and len(state) == 2
            and all(isinstance(s, dict) or s is None for s in state)
        ):  # (dict state, slots state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state) if isinstance(state, dict) else {"state": state}

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__.get("state", {})
        if name in state:
            return state[name]
        raise AttributeError(f"{self.qualname} stand-in has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<inert {self.qualname}>"


def _stand_in(qualname: str) -> type[Inert]:
    return type(qualname.rsplit(".", 1)[-1], (Inert,), {"qualname": qualname})


def _inert_ctor(*args: Any, **kwargs: Any) -> Inert:
    """Stands in for numpy's random-generator constructors: the generator is not rebuilt."""
    return _stand_in("numpy.random.Generator")()


def _safe_dtype(*args: Any, **kwargs: Any) -> np.dtype:
    dtype = np.dtype(*args, **kwargs)
    if dtype.hasobject:
        raise TailorError("refusing to unpickle an array of Python objects (dtype 'O')")
    return dtype


_NUMPY_CORES = ("numpy.core.multiarray", "numpy._core.multiarray")
_STAND_INS = (
    "stable_baselines3.common.vec_env.vec_normalize.VecNormalize",
    "stable_baselines3.common.running_mean_std.RunningMeanStd",
    *(
        f"{pkg}.spaces.{mod}.{cls}"
        for pkg in ("gym", "gymnasium")
        for mod, cls in (
            ("box", "Box"),
            ("discrete", "Discrete"),
            ("dict", "Dict"),
            ("multi_discrete", "MultiDiscrete"),
            ("multi_binary", "MultiBinary"),
            ("tuple", "Tuple"),
        )
    ),
    # A seeded space pickles its numpy Generator: kept inert, never rebuilt.
    "numpy.random._pcg64.PCG64",
    "numpy.random._pcg64.PCG64DXSM",
    "numpy.random._mt19937.MT19937",
    "numpy.random._philox.Philox",
    "numpy.random._sfc64.SFC64",
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random._generator.Generator",
    "numpy.random.mtrand.RandomState",
)
_RANDOM_CTORS = (
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__randomstate_ctor",
)


def _allowed() -> dict[str, Any]:
    table: dict[str, Any] = {"numpy.ndarray": np.ndarray, "numpy.dtype": _safe_dtype}
    for core in _NUMPY_CORES:
        table[f"{core}._reconstruct"] = _reconstruct
        table[f"{core}.scalar"] = scalar
    for name in _STAND_INS:
        table[name] = _stand_in(name)
    for name in _RANDOM_CTORS:
        table[name] = _inert_ctor
    table["collections.OrderedDict"] = dict
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the allowlisted globals (module docstring)."""

    _table: dict[str, Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if RestrictedUnpickler._table is None:
            RestrictedUnpickler._table = _allowed()
        key = f"{module}.{name}"
        if key in RestrictedUnpickler._table:
            return RestrictedUnpickler._table[key]
        raise TailorError(
            f"refusing to unpickle {key}: tailor only reads numpy arrays and the VecNormalize "
            "statistics from a pickle (a pickle can run arbitrary code; this file names a "
            "global outside that allowlist)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise TailorError("refusing to unpickle a persistent id (not a vecnormalize.pkl)")


def restricted_loads(data: bytes, source: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Raises:
        TailorError: a disallowed global, or a file that is not a readable pickle (``source``
            names it in the message).
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except TailorError as exc:
        raise TailorError(f"{source}: {exc}") from None
    except Exception as exc:  # malformed pickles raise many types; none of them is ours
        raise TailorError(
            f"{source} is not a readable pickle ({type(exc).__name__}: {exc})"
        ) from None


def _np(value: Any, what: str, source: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise TailorError(f"{source}: {what} is not a numeric array")
    return value.astype(np.float64)


def load_vecnormalize(path: str | Path) -> dict[str, Any]:
    """Read SB3 ``VecNormalize`` statistics from ``path`` through the restricted unpickler.

    Returns:
        ``{"norm_obs": bool, "mean": [D] float64, "var": [D] float64, "count": float,
        "epsilon": float, "clip_obs": float}``; SB3 normalizes
        ``clip((x - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)``.

    Raises:
        TailorError: missing file, disallowed content, not a VecNormalize pickle, dict
            observations (one statistic per key: not supported).
    """
    path = check_input_path(path, "normalizer file")
    if not path.is_file():
        raise TailorError(f"normalizer file {str(path)!r} does not exist")
    obj = restricted_loads(path.read_bytes(), repr(str(path)))
    if not isinstance(obj, Inert) or not obj.qualname.endswith("VecNormalize"):
        raise TailorError(
            f"{str(path)!r} is a pickle but not an SB3 VecNormalize (found {obj!r}); pass the "
            "vecnormalize.pkl that VecNormalize.save wrote"
        )
    st = obj.state
    rms = st.get("obs_rms")
    if isinstance(rms, dict):
        raise TailorError(
            f"{str(path)!r} normalizes dict observations (one statistic per key); tailor priors "
            "take flat Box observations only"
        )
    if not isinstance(rms, Inert) or "mean" not in rms.state or "var" not in rms.state:
        raise TailorError(f"{str(path)!r}: VecNormalize has no obs_rms statistics")
    src = repr(str(path))
    mean, var = (
        _np(rms.state["mean"], "obs_rms.mean", src),
        _np(rms.state["var"], "obs_rms.var", src),
    )
    if mean.ndim != 1 or mean.shape != var.shape:
        raise TailorError(f"{src}: obs_rms mean {mean.shape} and var {var.shape} must be [D]")
    return {
        "norm_obs": bool(st.get("norm_obs", True)),
        "mean": mean,
        "var": var,
        "count": float(rms.state.get("count", 0.0)),
        "epsilon": float(st.get("epsilon", 1e-8)),
        "clip_obs": float(st.get("clip_obs", 10.0)),
    }
