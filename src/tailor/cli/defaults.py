"""Defaults of the command line that a new user never has to type: the step budget of each
``--algo`` and the run directory when ``--out`` is not given.

The budgets are the ones the project's own experiments use: PPO the public benchmarks' 1M
steps (``tailor.experiments.presets``, budget ``benchmark``); soft DQN and SAC the RQL suite's
(``results/rql/README.md``: soft-DQN priors 50k steps and customizations 30k on
cartpole-centered, SAC priors 60k and customizations 30k on parking-boundary). MCTS does not
train: its steps are ignored.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

__all__ = ["DEFAULT_STEPS", "RUNS_ROOT", "default_steps", "new_run_dir", "steps_help"]

# command -> algo -> environment steps in total.
DEFAULT_STEPS: dict[str, dict[str, int]] = {
    "train": {"ppo": 1_000_000, "dqn": 50_000, "sac": 60_000},
    "customize": {"ppo": 1_000_000, "dqn": 30_000, "sac": 30_000, "mcts": 0},
}
# Where runs go when --out is not given (relative to the working directory).
RUNS_ROOT = Path("runs")


def default_steps(command: str, algo: str) -> int:
    """The ``--steps`` of ``tailor COMMAND --algo ALGO`` when it is not given."""
    return DEFAULT_STEPS[command][algo]


def steps_help(command: str) -> str:
    """The ``--steps`` help of ``tailor COMMAND``, its defaults included."""
    shown = ", ".join(
        f"{algo} {n:,}" if n else f"{algo}: no training"
        for algo, n in DEFAULT_STEPS[command].items()
    )
    return f"environment steps in total (default by --algo: {shown})"


def _safe(text: str) -> str:
    """``text`` as one path component: runs of other characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"


def new_run_dir(
    group: str, name: str, seed: int, root: Path = RUNS_ROOT, now: dt.datetime | None = None
) -> Path:
    """A directory for a new run that does not exist yet:
    ``root/<group>/<name>-<seed>-<YYYYmmdd-HHMMSS>``, with ``-1``, ``-2``, ... appended when a
    run of the same second is already there (an existing directory is never reused)."""
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / _safe(group) / f"{_safe(name)}-{seed}-{stamp}"
    path, n = base, 0
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path
