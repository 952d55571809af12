"""Checks of output paths, done before long work starts: a run that trains for an hour and then
cannot write its result is the worst way to learn that ``--out`` was wrong; and of input paths
(:func:`check_input_path`), so that a named pipe is never opened (it would block) and a
symbolic-link loop is called what it is instead of "does not exist".

Pure standard library (no torch), so that every command can use it without a slow import.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from tailor.errors import TailorError

__all__ = [
    "check_input_path",
    "check_output_dir",
    "check_output_file",
    "existing_ancestor",
    "probe_writable",
]

_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def check_input_path(path: str | Path, what: str = "input") -> Path:
    """``path`` as a :class:`Path` if it is a regular file, a directory or does not exist (the
    caller says "does not exist" in its own words); raise for anything else.

    Raises:
        TailorError: a symbolic-link loop, a broken symbolic link, or a special file (named
            pipe, socket, device): reading one would block or read a stream, not a file.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TailorError(
                f"{what} {str(path)!r} is a symbolic link loop (its links lead back to "
                "themselves), not a file or directory"
            ) from None
        if exc.errno == errno.ENOENT and p.is_symlink():
            raise TailorError(
                f"{what} {str(path)!r} is a broken symbolic link (its target "
                f"{os.readlink(p)!r} does not exist)"
            ) from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return p
        raise
    for test, kind in _SPECIAL_FILES:
        if test(st.st_mode):
            raise TailorError(f"{what} {str(path)!r} is {kind}, not a file or directory")
    return p


# Pseudo filesystems: writing a run or a result there is always a mistake, and some writes
# "succeed" without storing anything.
PSEUDO_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def _pseudo_root(path: Path) -> Path | None:
    resolved = path.resolve()
    for root in PSEUDO_ROOTS:
        if resolved == root or root in resolved.parents:
            return root
    return None


def existing_ancestor(path: str | Path) -> Path:
    """``path`` itself if it exists, else its nearest existing parent (absolute)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def probe_writable(directory: str | Path, what: str = "--out") -> None:
    """Create and remove a file in ``directory``: the only test that is right for read-only
    mounts, ACLs and root alike (``os.access`` says yes to root on a read-only bind mount).

    Raises:
        TailorError: the probe cannot be created, with the system's reason.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".tailor-probe-", dir=directory)
    except OSError as exc:
        raise TailorError(
            f"{what} {str(directory)!r} is not writable: {exc.strerror or exc}"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """Check that ``path`` can be (or is) a directory to write into, without creating it.

    Raises:
        TailorError: under /proc, /sys or /dev; an existing file; below a file.
    """
    path = Path(path)
    root = _pseudo_root(path)
    if root is not None:
        raise TailorError(
            f"{what} {str(path)!r} is under {root}, a pseudo filesystem; choose a directory on "
            "a real disk"
        )
    if path.exists() and not path.is_dir():
        raise TailorError(f"{what} {str(path)!r} is an existing file, not a directory")
    ancestor = existing_ancestor(path)
    if not ancestor.is_dir():
        raise TailorError(
            f"{what} {str(path)!r}: {str(ancestor)!r} is a file, so no directory can be made there"
        )
    return path


def check_output_file(path: str | Path, what: str = "--json") -> Path:
    """Check, before long work starts, that an output file (``--json FILE``) can be written.

    Creates and removes a probe file in the nearest existing parent directory (missing parents
    are made by the writers later); the file itself is not created.

    Raises:
        TailorError: the path is a directory, under a pseudo filesystem, has a file as a
            parent, is an existing read-only file, or its directory is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise TailorError(f"{what} {str(path)!r} is a directory; give a file name")
    root = _pseudo_root(path)
    if root is not None:
        raise TailorError(f"{what} {str(path)!r} is under {root}, a pseudo filesystem")
    ancestor = existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise TailorError(f"{what} {str(path)!r}: {str(ancestor)!r} is a file, not a directory")
    probe_writable(ancestor, what=f"{what} {str(path)!r}: the directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise TailorError(f"{what} {str(path)!r} exists and is not writable")
    return path
