"""Fault injection: SIGKILL a checkpoint-writing process at many moments, then check that the run
directory is always consistent (tests/fault_writer.py's ``check``) and resumable.

Children are forked (cheap: torch is already imported) for the many kills, plus real
subprocesses for the kills timed by a watcher. The whole file runs in ~15 s.
"""

from __future__ import annotations

import csv
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


def _metrics_rows(run: Path) -> list[dict[str, str]]:
    try:
        with open(run / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_run_is_owned_and_a_stop_signal_checkpoints_then_exits(
    tmp_path: Path, capsys, stop: signal.Signals, code: int
) -> None:
    """A real `tailor train`: a second one on the same --out (or a --resume of it) is refused
    with the holder's pid while it runs; Ctrl-C (or SIGTERM, what schedulers and `docker stop`
    send) makes it finish the iteration, write a checkpoint (none was due: --checkpoint-every is
    huge) and exit 130 (143); the run resumes."""
    from tailor.cli import main

    run = tmp_path / "run"
    train = ["train", "--task", "pointmass", "--method", "soft", "--num-envs", "8", "--no-progress"]
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tailor.cli",
            *train,
            "--steps",
            "100000000",
            "--checkpoint-every",
            "1000000",
            "--out",
            str(run),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_metrics_rows(run)) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the training never logged two iterations"
            time.sleep(0.05)
        assert latest_checkpoint(run) is None  # nothing due yet
        for argv in (
            [*train, "--steps", "1024", "--out", str(run)],
            ["train", "--resume", str(run), "--steps", "1024", "--no-progress"],
        ):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"in use by another tailor process (pid {proc.pid}" in err, err
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code, err
    assert "interrupted: checkpoint at step" in err and "Traceback" not in err, err
    ckpt = latest_checkpoint(run)
    rows = _metrics_rows(run)
    assert ckpt is not None and ckpt.step == int(rows[-1]["steps"])  # the last whole iteration
    assert (
        main(["train", "--resume", str(run), "--steps", str(ckpt.step + 512), "--no-progress"]) == 0
    )
    assert latest_checkpoint(run).step == ckpt.step + 512
    assert [int(r["iteration"]) for r in _metrics_rows(run)] == list(range(1, len(rows) + 2))
