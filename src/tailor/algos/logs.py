"""Progress lines and episode summaries shared by the off-policy loops (soft DQN, SAC)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from tailor.methods import Method

__all__ = ["episode_summary", "log_line"]


def episode_summary(
    history: Sequence[tuple[float, float, int]], last: int = 20
) -> dict[str, float]:
    """Mean basic return, add-on return and length of the ``last`` finished episodes
    (``history`` holds ``(basic, addon, length)`` per episode; ``nan`` before the first)."""
    recent = list(history[-last:]) or [(float("nan"), float("nan"), 0)]
    basic, addon, length = (float(np.mean(x)) for x in zip(*recent, strict=True))
    return {
        "episodes": len(history),
        f"last{last}_basic": basic,
        f"last{last}_addon": addon,
        f"last{last}_length": length,
    }


def log_line(
    algo: str,
    method: Method,
    step: int,
    total: int,
    history: Sequence[tuple[float, float, int]],
    extra: str,
    t0: float,
) -> str:
    """One progress line of an RQL training loop."""
    s = episode_summary(history)
    return (
        f"[{algo} {method.name}] step {step}/{total}  episodes {s['episodes']}  basic "
        f"{s['last20_basic']:.1f}  addon {s['last20_addon']:.1f}  len {s['last20_length']:.0f}"
        f"  {extra}  {time.perf_counter() - t0:.0f}s"
    )
