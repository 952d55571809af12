"""Numpy-only numerical helpers shared by the deep code and the numpy lab.

They live here, below both, so that :mod:`tailor.losses` (torch) and :mod:`tailor.tabular`
(numpy only) use the same function, bit for bit, without importing each other.
"""

from __future__ import annotations

import numpy as np

__all__ = ["logsumexp"]


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable ``log sum exp`` along ``axis``; all ``-inf`` gives ``-inf``."""
    m = np.max(x, axis=axis, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m_safe), axis=axis, keepdims=True)) + m_safe
    return np.squeeze(out, axis=axis)
