"""Ctrl-C as a request that a training loop polls between iterations."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["InterruptRequest", "stop_on_interrupt"]


@dataclass
class InterruptRequest:
    """Set by :func:`stop_on_interrupt` when Ctrl-C was pressed once."""

    requested: bool = False


@contextmanager
def stop_on_interrupt(notice: str | None = None) -> Iterator[InterruptRequest]:
    """Turn the first Ctrl-C inside the block into a request a training loop polls.

    The loop finishes the iteration it is in (its state is then whole, unlike at an arbitrary
    point inside an update), writes a final checkpoint and raises ``KeyboardInterrupt``, so the
    command exits with 130 and ``--resume`` continues from that iteration. ``notice`` is printed
    to stderr at the first Ctrl-C; a second one raises ``KeyboardInterrupt`` at once (the
    previous checkpoint is intact). Outside the main thread the block runs unguarded.
    """
    state = InterruptRequest()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: Any) -> None:
        if state.requested:
            raise KeyboardInterrupt
        state.requested = True
        if notice:
            print(notice, file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
