"""Validation of the config dataclasses, field by field, before any work starts.

Every config of :mod:`tailor.algos` (``SoftDQNConfig``, ``SACConfig``, ``MCTSConfig``,
``LMPPOConfig``, ``LMDPOConfig``; ``PPOConfig.validate`` adds its own cross-field rules) calls
:func:`check_config` from ``__post_init__``: the field's annotated type is enforced (``bool`` is
not an ``int``, numbers are finite, ``hidden`` sizes are positive integers, a ``seed`` is in
``[0, 2**32 - 1]``) and the given :class:`Bound` applies. So ``--set gamma=NaN`` is refused up
front with the field's name instead of surfacing as "loss is nan at step 1000", and
``--set lr=x`` is not a ``TypeError`` deep inside the loop.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tailor.errors import TailorError

__all__ = ["MAX_SEED", "Bound", "check_config"]

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Bound:
    """An allowed range: ``lo <= value <= hi`` (``lo < value`` when ``lo_open``)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False

    def allows(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or value <= self.hi

    def text(self) -> str:
        lo = "" if self.lo is None else (f"> {self.lo:g}" if self.lo_open else f">= {self.lo:g}")
        hi = "" if self.hi is None else f"<= {self.hi:g}"
        return " and ".join(t for t in (lo, hi) if t)


POSITIVE = Bound(0.0, lo_open=True)
NONNEGATIVE = Bound(0.0)
UNIT = Bound(0.0, 1.0)
COUNT = Bound(1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(where: str, kind: str, value: Any, bound: Bound | None) -> None:
    """Raise unless ``value`` has the annotated ``kind`` and lies in ``bound``."""
    optional = kind.endswith("| None")
    base = kind.removesuffix("| None").strip()
    if value is None and optional:
        return
    if base == "bool":
        if not isinstance(value, bool):
            raise TailorError(f"{where} must be true or false, got {value!r}")
        return
    if base == "str":
        if not isinstance(value, str):
            raise TailorError(f"{where} must be text, got {value!r}")
        return
    if base.startswith("tuple[int"):
        if not isinstance(value, (tuple, list)) or not all(_is_int(v) and v >= 1 for v in value):
            raise TailorError(f"{where} must be a list of positive integers, got {value!r}")
        return
    if base == "int" and not _is_int(value):
        raise TailorError(f"{where} must be an integer, got {value!r}")
    if base == "float" and not (_is_number(value) and math.isfinite(value)):
        raise TailorError(f"{where} must be a finite number, got {value!r}")
    if bound is not None and not bound.allows(value):
        raise TailorError(f"{where} must be {bound.text()}, got {value!r}")


def check_config(config: Any, bounds: Mapping[str, Bound]) -> None:
    """Check every field of the dataclass ``config`` (see the module docstring).

    Args:
        config: a config dataclass instance.
        bounds: the range of each numeric field that has one (field name -> :class:`Bound`);
            ``seed`` is always ``[0, 2**32 - 1]``.

    Raises:
        TailorError: naming the config, the field, what it must be and what it got.
    """
    cls = type(config)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = _kind_text(hints[f.name])
        bound = Bound(0, MAX_SEED) if f.name == "seed" else bounds.get(f.name)
        _check_value(f"{cls.__name__}.{f.name}", kind, getattr(config, f.name), bound)


def _kind_text(hint: Any) -> str:
    """``int``, ``float``, ``bool``, ``str``, ``tuple[int, ...]``, each maybe ``| None``."""
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return f"{_kind_text(inner)} | None"
    if typing.get_origin(hint) is tuple:
        return "tuple[int, ...]"
    return getattr(hint, "__name__", str(hint))
