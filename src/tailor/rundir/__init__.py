"""Run directories: crash-consistent checkpoints, an append-only metrics log, and ownership.

One job per module; every public name is re-exported here, so ``from tailor.rundir import X``
is the way to use them:

- :mod:`~tailor.rundir.layout`: the file names of a run directory and the run kinds;
- :mod:`~tailor.rundir.store`: checkpoints committed through one manifest (``Checkpoint``,
  ``Retention``, ``commit_checkpoint``, ``latest_checkpoint``, ``list_checkpoints``,
  ``apply_retention``, ``collect_garbage``);
- :mod:`~tailor.rundir.metrics`: ``metrics.csv`` (``MetricsLog``);
- :mod:`~tailor.rundir.ownership`: ``claim_run_dir`` / ``RunDir``, the --out / --resume /
  --overwrite rules, ``describe_contents``;
- :mod:`~tailor.rundir.lock`: the run lock (``lock_holder``);
- :mod:`~tailor.rundir.interrupt`: Ctrl-C / SIGTERM / SIGHUP as a request a loop polls
  (``stop_on_interrupt``; ``Stopped`` carries the exit code);
- :mod:`~tailor.rundir.resume`: a resume's config changes (``config_diff``,
  ``config_change_error``);
- :mod:`~tailor.rundir.faults`: the fault-injection points the kill tests use.
"""

from __future__ import annotations

from tailor.paths import check_output_file
from tailor.rundir.interrupt import InterruptRequest, Stopped, stop_on_interrupt
from tailor.rundir.layout import (
    CHECKPOINTS_DIR,
    KINDS,
    LOCK_FILE,
    LOCK_PID_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    RUN_MARKER,
)
from tailor.rundir.lock import lock_holder
from tailor.rundir.metrics import MetricsLog
from tailor.rundir.ownership import RunDir, claim_run_dir, describe_contents, failed_start
from tailor.rundir.resume import config_change_error, config_diff
from tailor.rundir.store import (
    Checkpoint,
    Retention,
    apply_retention,
    collect_garbage,
    commit_checkpoint,
    latest_checkpoint,
    list_checkpoints,
)

__all__ = [
    "CHECKPOINTS_DIR",
    "KINDS",
    "LOCK_FILE",
    "LOCK_PID_FILE",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "RUN_MARKER",
    "Checkpoint",
    "InterruptRequest",
    "MetricsLog",
    "Retention",
    "RunDir",
    "Stopped",
    "apply_retention",
    "check_output_file",
    "claim_run_dir",
    "collect_garbage",
    "commit_checkpoint",
    "config_change_error",
    "config_diff",
    "describe_contents",
    "failed_start",
    "latest_checkpoint",
    "list_checkpoints",
    "lock_holder",
    "stop_on_interrupt",
]
