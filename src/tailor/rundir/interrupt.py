"""Ctrl-C, SIGTERM and SIGHUP as a request that a training loop polls between iterations.

Schedulers and containers stop a job with SIGTERM (``timeout``, Slurm, Kubernetes, ``docker
stop``) and a closed terminal sends SIGHUP: each is handled like Ctrl-C, so the work since the
last periodic checkpoint is kept, and the command exits with ``128 + signal`` (130 for SIGINT,
143 for SIGTERM, 129 for SIGHUP), as a process killed by that signal would.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["STOP_SIGNALS", "InterruptRequest", "Stopped", "stop_on_interrupt"]

# SIGHUP does not exist on Windows.
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@dataclass
class InterruptRequest:
    """Set by :func:`stop_on_interrupt` when a stop signal arrived once.

    Attributes:
        requested: a stop was requested; the loop finishes its iteration and saves.
        signum: which signal asked (``signal.SIGINT``, ``SIGTERM`` or ``SIGHUP``), or ``None``.
    """

    requested: bool = False
    signum: int | None = None


class Stopped(KeyboardInterrupt):
    """The ``KeyboardInterrupt`` of a guarded block that a stop signal ended, with the exit code
    the command returns: ``128 + signal`` (130, 143, 129), as a process killed by it would."""

    def __init__(self, *args: object, exit_code: int = 130) -> None:
        super().__init__(*args)
        self.exit_code = exit_code


@contextmanager
def stop_on_interrupt(notice: str | None = None) -> Iterator[InterruptRequest]:
    """Turn the first Ctrl-C, SIGTERM or SIGHUP inside the block into a request a loop polls.

    The loop finishes the iteration it is in (its state is then whole, unlike at an arbitrary
    point inside an update), writes a final checkpoint and raises ``KeyboardInterrupt`` (which
    leaves the block as :class:`Stopped`), so the command exits with ``128 + signal`` (130, 143
    or 129) and ``--resume`` continues from that iteration. ``notice`` is printed to stderr at
    the first signal; a second one raises ``KeyboardInterrupt`` at once (the previous checkpoint
    is intact). Outside the main thread the block runs unguarded.
    """
    state = InterruptRequest()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: Any) -> None:
        if state.requested:
            raise KeyboardInterrupt
        state.requested, state.signum = True, signum
        if notice:
            name = signal.Signals(signum).name
            print(notice if signum == signal.SIGINT else f"{name}: {notice}", file=sys.stderr,
                  flush=True)  # fmt: skip

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield state
    except KeyboardInterrupt as exc:
        if state.signum is None or isinstance(exc, Stopped):
            raise
        raise Stopped(*exc.args, exit_code=128 + int(state.signum)) from None
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
