"""One exception type for bad input, so the CLI can turn it into a clear message and exit code 2."""

from __future__ import annotations

import errno

__all__ = ["DeterministicPolicyError", "TailorError", "describe_os_error"]


class TailorError(ValueError):
    """Bad input from the user: a wrong coefficient, shape, file, task name, ...

    The message must say what is wrong and, where possible, what would be right. The command line
    prints it as ``error: <message>`` and exits with code 2, never with a traceback.
    """


class DeterministicPolicyError(TailorError):
    """A deterministic policy (SB3 TD3/DDPG/ARS, a DQN's argmax, a deploy export) read as a prior
    without the number that makes it a distribution.

    Attributes:
        option: the :func:`tailor.priors.load_prior` option that is missing, ``"std"`` (Box
            actions) or ``"temperature"`` (Discrete); a deterministic evaluation does not need
            it (the action is the mean / the argmax whatever its value).
    """

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


# What to do about the OS errors a user can fix; the rest get the system's message alone.
_OS_HINTS = {
    errno.ENOSPC: "free some disk space or write elsewhere",
    errno.EDQUOT: "over the disk quota: free some space or write elsewhere",
    errno.EACCES: "check the permissions, or write elsewhere",
    errno.EPERM: "check the permissions, or write elsewhere",
    errno.EROFS: "the filesystem is read-only: write elsewhere",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
    errno.ENAMETOOLONG: "use a shorter path",
}


def describe_os_error(exc: OSError) -> str:
    """An ``OSError`` as one line for ``error: ...``: the system's message, the path(s) it names,
    and what to do where there is an obvious remedy."""
    text = exc.strerror or str(exc) or type(exc).__name__
    paths = [repr(str(p)) for p in (exc.filename, exc.filename2) if p is not None]
    if paths:
        text += ": " + " -> ".join(paths)
    hint = _OS_HINTS.get(exc.errno) if exc.errno is not None else None
    return f"{text} ({hint})" if hint else text
