"""Logging of the training loops: PPO's metrics.csv, TensorBoard and progress bar; the progress
lines and episode summaries of the off-policy loops (soft DQN, SAC)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.algos.rollout import Rollout
from tailor.methods import Method
from tailor.rundir import METRICS_FILE, InterruptRequest, MetricsLog

__all__ = [
    "METRIC_FIELDS",
    "IterationStats",
    "LoopControl",
    "RunLog",
    "episode_summary",
    "log_line",
    "metrics_row",
    "tensorboard_writer",
]

# Columns of metrics.csv, one row per iteration. `sps` and `wall_s` are the only ones that depend
# on the machine; everything else is a deterministic function of (task, method, config, seed).
METRIC_FIELDS = (
    "iteration",  # 1-based iteration index
    "steps",  # environment steps so far (all envs)
    "phase",  # "critic-warmup" (customization, actor frozen) or "ppo"
    "episodes",  # episodes finished during this iteration
    "return_total",  # mean over the episode window of basic + add-on return
    "return_basic",  # ... of the basic return (the env's own reward)
    "return_addon",  # ... of the add-on return
    "statistic",  # ... of the per-episode mean of the task's statistic
    "episode_length",  # ... of the episode length
    "reward",  # mean reformulated reward per step in this rollout
    "logp_prior",  # mean log pi_prior(a|s) of the executed actions ("" without a prior)
    "value_loss",  # mean over minibatches
    "policy_loss",  # mean clipped-surrogate loss over minibatches ("" in critic warm-up)
    "entropy",  # mean policy entropy (nats)
    "kl",  # mean KL(behaviour || current) over minibatches ("" in warm-up)
    "clip_fraction",  # fraction of samples whose ratio was clipped ("" in warm-up)
    "learning_rate",  # learning rate at the end of the iteration
    "action_std",  # mean action standard deviation
    "sps",  # environment steps per second of this iteration (wall clock)
    "wall_s",  # seconds since the start of this training session
)


@dataclass(frozen=True)
class LoopControl:
    """How a caller watches, stops and records a language-model loop.

    Attributes:
        progress: show a tqdm bar.
        interrupt: polled before every iteration: once ``requested`` (Ctrl-C, SIGTERM, SIGHUP:
            :func:`tailor.rundir.stop_on_interrupt`) the loop returns what it has learnt so far.
        hooks: the run directory of a DPO-family run
            (:class:`tailor.algos.lm_ppo_state.LMRunState`: metrics, checkpoints, resume),
            called before, after each and after all steps; ``None``: no run directory. (LM PPO
            takes it as its own ``hooks`` argument.)
    """

    progress: bool = False
    interrupt: InterruptRequest | None = None
    hooks: Any = None

    def stop(self) -> bool:
        """Whether the loop should stop before its next iteration."""
        return self.interrupt is not None and self.interrupt.requested

    def bar(self, total: int, desc: str, unit: str) -> Any:
        """A tqdm bar over ``total`` iterations when ``progress``, else ``None``."""
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)


@dataclass(frozen=True)
class IterationStats:
    """What one PPO iteration produced, for its metrics row.

    Attributes:
        it: the iteration's index (0-based; the row says ``it + 1``).
        steps: environment steps in total after it.
        warmup: whether it was a critic-warmup iteration.
        episodes: episodes that ended during its rollout.
        rewards: ``[T, N]`` the method's reward of its rollout.
        stats: the update's statistics (loss terms, KL, ...), in the row's order.
    """

    it: int
    steps: int
    warmup: bool
    episodes: int
    rewards: torch.Tensor
    stats: dict[str, Any]


def metrics_row(
    done: IterationStats,
    ep_window: deque,
    buf: Rollout,
    lr: float,
    sps: float,
    wall_s: float,
) -> dict[str, Any]:
    """One row of ``metrics.csv`` (columns :data:`METRIC_FIELDS`) for PPO iteration ``done``;
    ``ep_window`` holds the recent episodes' ``(basic, addon, statistic, length)``."""
    if ep_window:
        ep = np.asarray(ep_window, dtype=np.float64)
        basic, addon, stat, length = (float(x) for x in ep.mean(0))
        total = float((ep[:, 0] + ep[:, 1]).mean())
    else:
        total = basic = addon = stat = length = ""
    with torch.no_grad():
        action_std = float(buf.log_std.exp().mean())
    return {
        "iteration": done.it + 1,
        "steps": done.steps,
        "phase": "critic-warmup" if done.warmup else "ppo",
        "episodes": done.episodes,
        "return_total": total,
        "return_basic": basic,
        "return_addon": addon,
        "statistic": stat,
        "episode_length": length,
        "reward": float(done.rewards.mean()),
        "logp_prior": float(buf.logp_prior.mean()) if buf.logp_prior is not None else "",
        **done.stats,
        "learning_rate": lr,
        "action_std": action_std,
        "sps": round(sps, 1),
        "wall_s": round(wall_s, 3),
    }


class RunLog:
    """Where a PPO run's metrics go: ``metrics.csv`` (appended and flushed every iteration, so it
    is readable while training), TensorBoard in ``<run>/tb`` and a tqdm progress bar.

    Args:
        run_dir: the run directory (``None``: no files).
        start_iter: iterations already done (a resume drops the rows written after them).
        resume: continue an existing ``metrics.csv``.
        tensorboard: also write TensorBoard logs (when ``tensorboard`` is installed).
        progress: show a progress bar over ``total`` steps starting at ``initial``.
    """

    def __init__(
        self,
        run_dir: Path | None,
        start_iter: int,
        resume: bool,
        tensorboard: bool,
        progress: bool,
        total: int,
        initial: int,
    ) -> None:
        self.csv = _open_metrics(run_dir, start_iter, resume)
        self.tb = tensorboard_writer(run_dir) if tensorboard else None
        self.bar = _progress_bar(progress, total, initial)

    def write(self, row: dict[str, Any], batch: int) -> None:
        """Log one iteration's row; ``batch`` steps advance the progress bar."""
        if self.csv is not None:
            self.csv.write(row)
        if self.tb is not None:
            for key in METRIC_FIELDS[3:]:
                if isinstance(row[key], float):
                    self.tb.add_scalar(key, row[key], row["steps"])
        if self.bar is not None:
            self.bar.update(batch)
            self.bar.set_postfix(
                basic=_fmt(row["return_basic"]),
                addon=_fmt(row["return_addon"]),
                phase=row["phase"],
                refresh=False,
            )

    def close(self) -> None:
        for part in (self.bar, self.tb, self.csv):
            if part is not None:
                part.close()


def _fmt(x: Any) -> str:
    return f"{x:.1f}" if isinstance(x, float) else "-"


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True)


def tensorboard_writer(run_dir: Path | None, purge_step: int | None = None) -> Any:
    """A SummaryWriter in ``run_dir/tb`` (``tensorboard`` is a dependency; a trimmed install
    without it still trains, with metrics.csv only). ``purge_step``: a resumed run's first
    step; TensorBoard then hides the events at and after it that the stopped run wrote."""
    if run_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)


def _open_metrics(run_dir: Path | None, start_iter: int, resume: bool) -> MetricsLog | None:
    """``metrics.csv`` through :class:`tailor.rundir.MetricsLog`: appended, and on resume the rows
    after the checkpoint (redone by this session) dropped by an atomic replace, never by
    truncating the file in place (a kill then used to leave it empty)."""
    if run_dir is None:
        return None
    return MetricsLog(
        run_dir / METRICS_FILE,
        METRIC_FIELDS,
        resume_at=start_iter if resume else None,
        key="iteration",
    )


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
