"""The one writer of every file tailor writes: results (``--json``), exports, videos, figures,
tables, checkpoints and the files of a run directory.

Every write goes the same way (:func:`publishing`): into a temporary file in the destination's
directory, fsynced, then ``os.replace`` onto the final name, then the directory fsynced. A
crash, a kill or a full disk at any moment leaves either the old file or the new one, never a
truncated file, and no temporary file behind. A full disk (``ENOSPC``, ``EDQUOT``, also when a
producer such as safetensors, ffmpeg or the TorchScript writer reports it in its own words)
becomes ``error: no space left on <mount point> writing <file>`` (:class:`TailorError`, exit 2).

Before long work starts, :func:`check_output` checks a user-named output file: writable, not
an existing file unless ``overwrite``, and **not an input of the same command** (the same file,
a hard link to it, or a file tailor reads inside an input directory, such as ``RUN/checkpoint.json``
when ``RUN`` is being evaluated). :func:`check_output_tree` does the same for output directories.

Pure standard library (no torch): the numpy lab and the CLI use it without a slow import.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.paths import check_output_file

__all__ = [
    "READ_NAMES",
    "check_not_input",
    "check_output",
    "check_output_tree",
    "copy_file",
    "fsync_path",
    "no_space_error",
    "publishing",
    "write_bytes",
    "write_figure",
    "write_json",
    "write_text",
]

# What tailor reads in a directory it is given (a run, a model, a sweep): an output inside an
# input directory is refused where one of these is on its way (``RUN/checkpoint.json``,
# ``SWEEP/<job>/result.json``, ``RUN/checkpoints/...``); other names (``RUN/plot.png``,
# ``SWEEP/plots/``) are free. ``tests/test_output.py`` checks this covers the run and model
# names of :mod:`tailor.rundir.layout`.
READ_NAMES = frozenset(
    {
        # a run directory (tailor.rundir.layout)
        "run.json", "checkpoint.json", "checkpoints", "policy.safetensors", "policy.json",
        "trainer.safetensors", "metrics.csv", "eval.json", "prior", "tb", ".lock", ".lock.pid",
        "rsl-rl",  # a tensor PPO run's rsl-rl checkpoints
        # a sweep directory (tailor.experiments.sweep)
        "result.json", "failed.json", "sweeps.jsonl",
        # a Hugging Face model directory (an LM run's model)
        "config.json", "generation_config.json", "model.safetensors",
        "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
        "chat_template.jinja", "tailor.json",
        # a LoRA run's adapter (peft's save_pretrained)
        "adapter_config.json", "adapter_model.safetensors",
    }
)  # fmt: skip
_READ_PATTERNS = ("model-*.safetensors", "pytorch_model*.bin")

# How producers that are not Python (safetensors, ffmpeg, libtorch) report a full disk.
_NO_SPACE_TEXTS = ("no space left on device", "disk quota exceeded", "storagefull", "os error 28")


# ---- checks before the work ---------------------------------------------------------------------


def _is_read_name(name: str) -> bool:
    from fnmatch import fnmatch

    return name in READ_NAMES or any(fnmatch(name, pat) for pat in _READ_PATTERNS)


def _tailor_dir(directory: Path, depth: int = 2) -> bool:
    """A directory tailor knows the layout of (a run or a model; a sweep, whose <task>/<job>
    are runs): only its read names are inputs. Of anything else given as an input directory
    every existing file may be read."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return False
    if any(_is_read_name(p.name) for p in entries):
        return True
    return depth > 0 and any(p.is_dir() and _tailor_dir(p, depth - 1) for p in entries)


def _inside(path: Path, directory: Path) -> Path | None:
    """``path`` relative to ``directory`` if it is strictly inside it (both resolved)."""
    path, directory = path.resolve(), directory.resolve()
    if directory in path.parents:
        return path.relative_to(directory)
    return None


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def check_not_input(
    path: str | Path, inputs: Iterable[str | Path | None], what: str = "--json"
) -> None:
    """Refuse ``path`` as an output if writing it would destroy an input of the same command.

    Refused: an input file itself (also through a symbolic or hard link), an input directory,
    and inside an input directory what tailor reads there (:data:`READ_NAMES` on the way, or
    any existing file of a directory whose layout tailor does not know).

    Raises:
        TailorError: naming the input and what to do instead.
    """
    out = Path(path)
    for given in inputs:
        if given is None or str(given) == "":
            continue
        inp = Path(given)
        if _same(out, inp):
            raise TailorError(
                f"{what} {str(out)!r} is an input of this command ({str(inp)!r}): writing it "
                "would destroy what the command reads; choose another file"
            )
        rel = _inside(out, inp) if inp.is_dir() else None
        if rel is None:
            continue
        read = [part for part in rel.parts if _is_read_name(part)]
        if read or (out.exists() and not _tailor_dir(inp)):
            why = f"its {read[0]!r}" if read else "a file it may read"
            raise TailorError(
                f"{what} {str(out)!r} is inside the input directory {str(inp)!r} ({why}): "
                "writing it would destroy what the command reads; choose another file"
            )


def check_output(
    path: str | Path,
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    what: str = "--json",
) -> Path:
    """Check, before long work starts, that the output file ``path`` may be written.

    Raises:
        TailorError: ``path`` is an input of the command (:func:`check_not_input`); an existing
            file and not ``overwrite``; a directory, under a pseudo filesystem, below a file,
            read-only, or in a directory that is not writable
            (:func:`tailor.paths.check_output_file`).
    """
    path = Path(path)
    check_not_input(path, inputs, what)
    if (path.exists() or path.is_symlink()) and not path.is_dir() and not overwrite:
        raise TailorError(
            f"{what} {str(path)!r} exists; pass --overwrite to replace it, or choose another file"
        )
    return check_output_file(path, what)


def check_output_tree(
    path: str | Path, inputs: Iterable[str | Path | None], what: str = "--out"
) -> Path:
    """Refuse an output directory that is an input, holds an input tailor would write over or
    clear (a read name at its top), or lies where an input directory is read.

    Raises:
        TailorError: naming the input.
    """
    out = Path(path)
    for given in inputs:
        if given is None or str(given) == "":
            continue
        inp = Path(given)
        rel = _inside(inp, out)
        if rel is not None and _is_read_name(rel.parts[0]):
            raise TailorError(
                f"{what} {str(out)!r} holds the input {str(inp)!r}, which the run would write "
                f"over; choose another {what}"
            )
    check_not_input(out, inputs, what)
    return out


# ---- the writer --------------------------------------------------------------------------------


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or directory's) data to disk, where the filesystem supports it.

    ``os.replace`` alone survives a killed process but not a power cut: without fsync the rename
    can reach the disk before the data, leaving an empty file under the final name.
    """
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if Path(path).is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except (IsADirectoryError, PermissionError):  # platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # not supported by some filesystems (and directories on some OSes)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise  # delayed allocation: the data did not reach the disk
    finally:
        os.close(fd)


def _mount_point(path: Path) -> Path:
    """The mount point of the filesystem ``path`` (an existing directory) is on."""
    path = path.resolve()
    try:
        dev = path.stat().st_dev
        while path != path.parent and path.parent.stat().st_dev == dev:
            path = path.parent
    except OSError:
        pass
    return path


def _disk_full(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
    except (OSError, AttributeError):
        return False
    return st.f_bavail == 0 or st.f_bfree == 0


def no_space_error(exc: BaseException, path: str | Path) -> TailorError | None:
    """``exc`` as ``no space left on <mount point> writing <path>`` if it is a full disk or an
    exceeded quota (an ``OSError`` or a producer's own exception saying so, or any failure of a
    producer on a filesystem with no free block left), else ``None``."""
    if isinstance(exc, (TailorError, KeyboardInterrupt, SystemExit, GeneratorExit)):
        return None
    path = Path(path)
    chain, cause = [], exc
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    quota = any(isinstance(e, OSError) and e.errno == errno.EDQUOT for e in chain)
    full = quota or any(
        (isinstance(e, OSError) and e.errno == errno.ENOSPC)
        or any(text in str(e).lower() for text in _NO_SPACE_TEXTS)
        for e in chain
    )
    if not full and not _disk_full(path.parent if path.parent.is_dir() else Path(".")):
        return None
    where = _mount_point(path.parent if path.parent.is_dir() else Path("."))
    what = "no space left (disk quota exceeded)" if quota else "no space left"
    kept = f"; {str(path)!r} was left as it was" if path.exists() else ""
    return TailorError(
        f"{what} on {where} writing {str(path)!r}{kept}: free some space or write elsewhere"
    )


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def publishing(path: str | Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` for a producer to write; on a clean exit it is fsynced
    and atomically renamed onto ``path`` (and the directory fsynced). On an exception the
    temporary file is removed and ``path`` is untouched; a full disk raises :class:`TailorError`.

    Args:
        path: the file to publish (its missing parents are made).
        keep_suffix: end the temporary name with ``path``'s suffix, for producers that choose
            the format by it (``.<name>.<random>.tmp.mp4``); else ``.<name>.<random>.tmp``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = ".tmp" + (path.suffix if keep_suffix else "")
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise (no_space_error(exc, path) or exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # what open() would give, not mkstemp's 0600
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = no_space_error(exc, path)
        if full is not None:
            raise full from None
        raise
    fsync_path(path.parent)  # make the rename itself durable


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`publishing`); returns ``path``."""
    path = Path(path)
    with publishing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, **dumps: Any) -> Path:
    """Write ``obj`` as JSON (and a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=indent, **dumps) + "\n")


def write_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Render a matplotlib figure in memory in the format ``path``'s suffix names (PNG if none),
    then write it atomically."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".").lower() or "png", **savefig)
    return write_bytes(path, buf.getvalue())


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` atomically (streamed, not read into memory)."""
    import shutil

    dst = Path(dst)
    with publishing(dst) as tmp, open(src, "rb") as inp, open(tmp, "wb") as out:
        shutil.copyfileobj(inp, out)
    return dst
