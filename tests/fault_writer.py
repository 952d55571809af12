"""A checkpoint writer to kill, and the invariants a killed run directory must satisfy.

Used by tests/test_faults.py, both in forked children and as ``python tests/fault_writer.py
RUN_DIR LAST_STEP [KILL_AT]`` in a real subprocess. The writer mimics a training loop: claim the
run directory (resuming if it was claimed before), append a metrics row per step, commit a
two-file checkpoint (policy + trainer) per step. Every tensor of step ``s`` is filled with ``s``,
so a reader can tell which step each file really belongs to.
"""

from __future__ import annotations

import csv
import os
import signal
import sys
from pathlib import Path

import torch

from tailor import rundir
from tailor.checkpoint import POLICY_FILE, TRAINER_FILE, load_tensors
from tailor.rundir import (
    METRICS_FILE,
    RUN_MARKER,
    MetricsLog,
    Retention,
    claim_run_dir,
    commit_checkpoint,
    latest_checkpoint,
)

FIELDS = ("step", "value")
POLICY_FORMAT = "tailor-test-policy"
TRAINER_FORMAT = "tailor-test-trainer"


def files_for(step: int) -> dict:
    """The two files of the checkpoint of ``step``; the trainer is the bigger one, as in PPO."""
    return {
        POLICY_FILE: (
            {"w": torch.full((8, 8), float(step))},
            {"format": POLICY_FORMAT, "steps": step},
        ),
        TRAINER_FILE: (
            {"m": torch.full((20_000,), float(step)), "rng": torch.full((16,), float(step))},
            {"format": TRAINER_FORMAT, "steps": step},
        ),
    }


def write(run_dir: str | Path, last_step: int, kill_at: int | None = None) -> list[str]:
    """Run the loop up to ``last_step``; SIGKILL itself at the ``kill_at``-th fault point.

    Fault points are those of :mod:`tailor.rundir` (``written:<file>``, ``staged``,
    ``manifest``, ``published``, ``retained``, ``metrics-staged``) plus ``row`` after each metrics
    row. Returns the points passed (when not killed).
    """
    run_dir = Path(run_dir)
    events: list[str] = []

    def hook(point: str) -> None:
        events.append(point)
        if kill_at is not None and len(events) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    rundir.faults.hook = hook
    resume = (run_dir / RUN_MARKER).is_file()
    with claim_run_dir(run_dir, "ppo", resume=resume) as claimed:
        ckpt = claimed.latest()
        start = ckpt.step if ckpt is not None else 0
        with MetricsLog(
            run_dir / METRICS_FILE, FIELDS, resume_at=start if resume else None, key="step"
        ) as log:
            for step in range(start + 1, last_step + 1):
                log.write({"step": step, "value": step / 2})
                hook("row")
                commit_checkpoint(run_dir, files_for(step), step, Retention(full=2, policies=4))
    return events


def check(run_dir: str | Path, min_step: int = 0) -> int:
    """Assert the invariants of a run directory after any kill; returns the checkpoint's step.

    - the checkpoint is consistent: both files exist, load, and hold the manifest's step;
    - its step never goes back (``>= min_step``, the step seen after the previous kill);
    - the top-level policy copy, if any, is a complete file of a step not after the checkpoint;
    - metrics.csv has its header and the rows 1..M without gaps, M >= the checkpoint's step.
    """
    run_dir = Path(run_dir)
    ckpt = latest_checkpoint(run_dir)
    step = 0
    if ckpt is not None:
        step = ckpt.step
        for name, fmt in ((POLICY_FILE, POLICY_FORMAT), (TRAINER_FILE, TRAINER_FORMAT)):
            tensors, meta = ckpt.load(name, fmt)
            assert meta["steps"] == step, (name, meta, step)
            assert all(bool((t == step).all()) for t in tensors.values()), (name, step)
        if (run_dir / POLICY_FILE).exists():  # absent only if killed before the first refresh
            top, meta = load_tensors(run_dir / POLICY_FILE, POLICY_FORMAT)
            assert meta["steps"] <= step and bool((top["w"] == meta["steps"]).all())
    assert step >= min_step, f"checkpoint went back from {min_step} to {step}"
    metrics = run_dir / METRICS_FILE
    if metrics.exists() or step > 0:
        with open(metrics, newline="") as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames or ()) == FIELDS, reader.fieldnames
            steps = [int(r["step"]) for r in reader]
        assert steps == list(range(1, len(steps) + 1)), steps
        assert len(steps) >= step, f"metrics has {len(steps)} rows, checkpoint is at {step}"
    return step


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
