"""Fault injection: SIGKILL a checkpoint-writing process at many moments, then check that the run
directory is always consistent (tests/fault_writer.py's ``check``) and resumable.

Children are forked (cheap: torch is already imported) for the many kills, plus real
subprocesses for the kills timed by a watcher. The whole file runs in ~15 s.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

import fault_writer
from tailor.rundir import CHECKPOINTS_DIR, MANIFEST_FILE, latest_checkpoint

pytestmark = pytest.mark.slow

FOREVER = 10**9  # a last step no child reaches before it is killed
SRC = Path(__file__).resolve().parents[1] / "src"


def fork_write(
    run_dir: Path, last_step: int, kill_at: int | None = None, kill_after_s: float | None = None
) -> int:
    """Run fault_writer.write in a forked child; returns its wait status."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            fault_writer.write(run_dir, last_step, kill_at)
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    if kill_after_s is not None:
        time.sleep(kill_after_s)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status


def killed(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_kill_at_every_fault_point(tmp_path: Path) -> None:
    """Each child resumes the run and is killed at its k-th fault point, for k = 1..28: that is
    every point of the metrics trim, the first commits and later ones (staged files, renamed
    step directory, switched manifest, refreshed top-level copy, retention)."""
    run, step = tmp_path / "run", 0
    for k in range(1, 29):
        status = fork_write(run, FOREVER, kill_at=k)
        assert killed(status), f"child {k} exited with status {status} instead of being killed"
        step = fault_writer.check(run, min_step=step)
    assert step >= 5  # the kills did let the run progress
    status = fork_write(run, step + 3)  # and it finishes cleanly afterwards
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert fault_writer.check(run, min_step=step) == step + 3


def test_kill_between_rename_and_manifest_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert fork_write(run, 2) == 0
    # A child on a resumed run passes: metrics-staged, row, written:policy.safetensors,
    # written:policy.json, written:trainer.safetensors, staged <- killed here.
    assert killed(fork_write(run, FOREVER, kill_at=6))
    assert latest_checkpoint(run).step == 2
    assert (run / CHECKPOINTS_DIR / "step-3").is_dir()  # renamed, never committed
    assert fork_write(run, 4) == 0  # resuming collects it and redoes step 3
    assert fault_writer.check(run) == 4
    assert latest_checkpoint(run).step == 4


def test_kill_at_random_moments(tmp_path: Path) -> None:
    run, rng = tmp_path / "run", random.Random(13)
    assert fork_write(run, 2) == 0  # so that early kills hit a resume, not an empty directory
    step = 2
    for _ in range(30):
        fork_write(run, FOREVER, kill_after_s=rng.uniform(0.0, 0.06))
        step = fault_writer.check(run, min_step=step)
    assert fork_write(run, step + 2) == 0
    assert fault_writer.check(run, min_step=step) == step + 2


def _watch_and_kill(run: Path, wanted: str, timeout: float = 60.0) -> bool:
    """Start the writer as a real subprocess; SIGKILL it as soon as a staged checkpoint file
    named ``wanted`` appears (or, if none is seen in time, at the timeout). True if seen."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("fault_writer.py")), str(run), str(FOREVER)],
        env=env,
    )
    seen, deadline = False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None and not seen:
            root = run / CHECKPOINTS_DIR
            if root.is_dir() and (run / MANIFEST_FILE).exists():
                seen = any((d / wanted).exists() for d in root.glob(".staging-*"))
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return seen


@pytest.mark.parametrize("wanted", ["policy.safetensors", "trainer.safetensors"])
def test_subprocess_killed_when_a_checkpoint_file_appears(tmp_path: Path, wanted: str) -> None:
    run = tmp_path / "run"
    step = 0
    for _ in range(2):
        _watch_and_kill(run, wanted)
        step = fault_writer.check(run, min_step=step)
    assert step > 0
