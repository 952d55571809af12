"""One exception type for bad input, so the CLI can turn it into a clear message and exit code 2."""

from __future__ import annotations

__all__ = ["TailorError"]


class TailorError(ValueError):
    """Bad input from the user: a wrong coefficient, shape, file, task name, ...

    The message must say what is wrong and, where possible, what would be right. The command line
    prints it as ``error: <message>`` and exits with code 2, never with a traceback.
    """
