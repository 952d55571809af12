"""Fault injection for tests: the moments between two durable steps of a write.

:mod:`tailor.rundir.store` and :mod:`tailor.rundir.metrics` call :func:`fault` with the name of
each point ("written:<file>", "staged", "manifest", "published", "retained", "metrics-staged"),
so a test can set :data:`hook` and SIGKILL the process (or raise) at exactly that moment
(``tests/test_faults.py``, ``tests/fault_writer.py``). ``hook`` is ``None`` in normal use.
"""

from __future__ import annotations

from collections.abc import Callable

hook: Callable[[str], None] | None = None


def fault(point: str) -> None:
    """Call :data:`hook` with ``point`` if a test set one."""
    if hook is not None:
        hook(point)
