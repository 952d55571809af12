"""The run lock: an exclusive ``flock`` on ``<run>/.lock`` and the holder's pid sidecar."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tailor.checkpoint import write_json
from tailor.errors import TailorError
from tailor.rundir.layout import LOCK_FILE, LOCK_PID_FILE

__all__ = ["held", "lock_holder"]


# The lock: fcntl.flock rather than filelock.FileLock. flock is in the standard library, the
# kernel drops it when the holding process dies (even by SIGKILL), and it conflicts between two
# opens in the same process too, which keeps tests honest. filelock (4.x) would add a dependency
# whose defaults keep changing: e.g. its "soft" fallback on filesystems without flock is a
# lock *file* that a SIGKILL leaves behind, i.e. a stale lock. On Windows (no fcntl) msvcrt's
# byte-range lock has the same released-on-exit semantics.
try:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _lock(run_dir: Path, in_use: str | None = None, busy: type[TailorError] = TailorError) -> int:
    """Take the run's exclusive lock, or raise ``busy`` (a TailorError) naming the holder
    (``in_use``: the message's start instead of "run directory ... is in use by another tailor
    process")."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise TailorError(
            f"cannot create the lock file in {str(run_dir)!r}: {exc.strerror or exc}"
        ) from None
    try:
        _try_lock(fd)
    except OSError as exc:
        os.close(fd)
        if isinstance(exc, (BlockingIOError, PermissionError)):  # held (EWOULDBLOCK / EACCES)
            holder = _holder_text(run_dir / LOCK_PID_FILE)
            if in_use is not None:
                raise busy(f"{in_use} ({holder})") from None
            raise TailorError(
                f"run directory {str(run_dir)!r} is in use by another tailor process "
                f"({holder}); wait for it to finish or choose another --out"
            ) from None
        raise TailorError(
            f"cannot lock {str(run_dir)!r} ({exc.strerror or exc}); the filesystem may not "
            "support locks"
        ) from None
    write_json(
        run_dir / LOCK_PID_FILE,
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)[:300],
        },
    )
    return fd


@contextmanager
def held(
    directory: str | Path, in_use: str, busy: type[TailorError] = TailorError
) -> Iterator[None]:
    """Hold ``directory``'s lock (made if missing) for the block: the same flock and pid sidecar
    as a run's, for work that must not run twice at once (a sweep's job). Raises ``busy``
    ``"<in_use> (pid ... on host ...)"`` if another process holds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = _lock(directory, in_use, busy)
    try:
        yield
    finally:
        _unlock(fd)
        os.close(fd)


def lock_holder(run_dir: str | Path) -> str | None:
    """Who holds ``run_dir``'s lock (``"pid 123 on host, since ..."``), or ``None`` if nobody.

    For messages about a directory a process only reads (e.g. "it has no checkpoint yet"):
    probing takes the lock for an instant and drops it again.
    """
    lock = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:  # no lock file: never claimed (or not ours to open)
        return None
    try:
        _try_lock(fd)
    except OSError:
        return _holder_text(Path(run_dir) / LOCK_PID_FILE)
    else:
        _unlock(fd)
        return None
    finally:
        os.close(fd)


def _read_holder(sidecar: Path) -> dict[str, Any]:
    try:
        obj = json.loads(sidecar.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _holder_text(sidecar: Path) -> str:
    holder = _read_holder(sidecar)
    if not isinstance(holder.get("pid"), int):
        return "pid unknown: it has just started"
    text = f"pid {holder['pid']}"
    if holder.get("host"):
        text += f" on {holder['host']}"
    if holder.get("since"):
        text += f", since {holder['since']}"
    if holder.get("command"):
        text += f": {holder['command']}"
    return text
