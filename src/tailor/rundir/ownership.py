"""Ownership of run directories: claim (lock + marker), the --out/--resume/--overwrite rules.

**Why a lock.** Two processes writing one run directory interleave ``metrics.csv`` and race on
the manifest. :func:`claim_run_dir` takes an exclusive ``flock`` on ``.lock`` for the whole run
(:mod:`tailor.rundir.lock`) and refuses ``--out`` onto another run or model unless asked to
resume or overwrite it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from tailor.checkpoint import FORMAT_VERSION, POLICY_FILE, TRAINER_FILE, fsync_path, write_json
from tailor.errors import TailorError
from tailor.meta import RUN_MARKER_SCHEMA, parse_meta, validate_meta
from tailor.paths import check_output_dir, probe_writable
from tailor.rundir.layout import (
    _MODEL_NAMES,
    _MODEL_WEIGHTS,
    _RUN_NAMES,
    _TRASH_PREFIX,
    CHECKPOINTS_DIR,
    KINDS,
    LOCK_FILE,
    LOCK_PID_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    RUN_FORMAT,
    RUN_MARKER,
)
from tailor.rundir.lock import _lock, _read_holder, _unlock
from tailor.rundir.store import Checkpoint, collect_garbage, latest_checkpoint

__all__ = ["RunDir", "claim_run_dir", "describe_contents", "failed_start"]


@dataclass
class RunDir:
    """A claimed run directory; holds its lock until :meth:`release` (or the ``with`` block, or
    the process, ends: the kernel drops an flock when its holder dies, even by SIGKILL, so a crash
    never leaves a stale lock).

    A ``with`` block that ends in an exception before the run wrote any checkpoint or model, in a
    directory the claim created, removes that directory again: a run that could not get going
    leaves nothing behind (and no half-made run directory to refuse the next attempt).
    """

    path: Path
    kind: str
    resumed: bool
    _fd: int | None = field(default=None, repr=False)
    created: bool = False

    def latest(self) -> Checkpoint | None:
        """:func:`latest_checkpoint` of this run."""
        return latest_checkpoint(self.path)

    def release(self) -> None:
        """Drop the lock (idempotent). The pid sidecar goes first, while the lock is still
        held, so the next holder's sidecar is never deleted by us."""
        if self._fd is None:
            return
        sidecar = self.path / LOCK_PID_FILE
        try:
            if _read_holder(sidecar).get("pid") == os.getpid():
                sidecar.unlink()
        except OSError:
            pass
        _unlock(self._fd)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        failed = exc_type is not None and self.created and failed_start(self.path)
        if failed:
            _clear_owned(self.path)  # while still holding the lock
        self.release()
        if failed:
            # After the unlock: a process that opened the lock file meanwhile finds the
            # directory gone when it tries to write, and fails cleanly.
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            try:
                self.path.rmdir()  # only if empty: a user's file put there meanwhile stays
            except OSError:
                pass

    def __del__(self) -> None:  # a forgotten release must not keep the run locked
        try:
            self.release()
        except Exception:  # interpreter shutdown
            pass


def claim_run_dir(
    path: str | Path,
    kind: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    prior_path: str | Path | None = None,
) -> RunDir:
    """Take ownership of the run directory ``path`` for a run of ``kind`` (see :data:`KINDS`).

    Checks, in order: the path is usable (not a file, not under /proc, /sys or /dev, writable:
    a probe file is created and removed) and not the prior's directory (nor inside it, nor
    containing it); then the exclusive lock; then the contents. A directory that holds a run or a
    model (``run.json``, a manifest, ``policy.safetensors``, ``trainer.safetensors``,
    ``config.json`` / ``model.safetensors``, ``metrics.csv``) is refused unless

    - ``resume``: it must hold a run of the same ``kind`` (a legacy one without ``run.json`` is
      accepted if its kind is unknown or matches); garbage of a killed writer is collected;
    - ``overwrite``: the files tailor writes (see ``_RUN_NAMES``; a model's files too where
      there is a model) are moved aside and deleted;
      other files in the directory are left alone.

    Writes ``run.json`` (unless resuming a run that has one). Returns the held :class:`RunDir`.

    Raises:
        TailorError: every refusal above, with what to do instead; another process holds the
            directory (naming its pid).
    """
    if kind not in KINDS:
        raise TailorError(f"unknown run kind {kind!r}; one of {', '.join(KINDS)}")
    if resume and overwrite:
        raise TailorError("--resume continues a run and --overwrite replaces it: pass only one")
    run_dir = Path(path)
    check_output_dir(run_dir)
    if prior_path is not None:
        _check_not_prior(run_dir, Path(prior_path))
    if resume and not run_dir.is_dir():
        raise TailorError(f"cannot resume {str(run_dir)!r}: the directory does not exist")
    created = not run_dir.exists()
    _make_dir(run_dir)
    probe_writable(run_dir)
    fd = _lock(run_dir)
    claimed = RunDir(run_dir, kind, resume, fd, created=created)
    try:
        _take_over(claimed, overwrite)
    except BaseException:
        claimed.release()
        raise
    return claimed


def _take_over(claimed: RunDir, overwrite: bool) -> None:
    """The content checks of :func:`claim_run_dir`, done while holding the lock."""
    run_dir, kind = claimed.path, claimed.kind
    contents = describe_contents(run_dir)
    saved_kind = _saved_kind(run_dir)
    if claimed.resumed:
        if not contents:
            raise TailorError(f"cannot resume {str(run_dir)!r}: it holds no tailor run")
        if saved_kind is not None and saved_kind != kind:
            raise TailorError(
                f"cannot resume {str(run_dir)!r} as a {kind!r} run: it is a {saved_kind!r} run"
            )
        collect_garbage(run_dir)
        if not (run_dir / RUN_MARKER).is_file():
            _write_marker(run_dir, kind)
        return
    if contents and not overwrite and not failed_start(run_dir):
        what = f"a {saved_kind!r} run" if saved_kind else "; ".join(contents)
        raise TailorError(
            f"--out {str(run_dir)!r} already holds a run or model ({what}); continue it with "
            "--resume, choose another --out, or pass --overwrite to replace it"
        )
    if contents:
        _clear_owned(run_dir)
    collect_garbage(run_dir)
    _write_marker(run_dir, kind)


def failed_start(run_dir: str | Path) -> bool:
    """A run tailor started here (``run.json``) that never wrote a checkpoint or model: it failed
    or was killed early (e.g. the disk was full at its first checkpoint), holds nothing worth
    keeping, and a new run may take its place without ``--overwrite`` (its metrics.csv and prior
    copy go). A ``checkpoints/`` directory without the manifest holds only the leftovers of
    uncommitted checkpoints (:func:`collect_garbage` removes them), not a result."""
    run_dir = Path(run_dir)
    results = (
        MANIFEST_FILE,
        POLICY_FILE,
        TRAINER_FILE,
        "config.json",
        "model.safetensors",
    )
    marked = (run_dir / RUN_MARKER).is_file()
    return marked and not any((run_dir / name).exists() for name in results)


def describe_contents(run_dir: str | Path) -> list[str]:
    """What in ``run_dir`` makes it a run or model directory (empty: nothing, safe to use)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    checks = (
        ((RUN_MARKER,), "a tailor run marker (run.json)"),
        ((MANIFEST_FILE, CHECKPOINTS_DIR), "tailor checkpoints"),
        ((POLICY_FILE,), f"a policy ({POLICY_FILE})"),
        ((TRAINER_FILE,), f"trainer state ({TRAINER_FILE})"),
        (("config.json", "model.safetensors"), "a language model (config.json, model.safetensors)"),
        ((METRICS_FILE,), f"training metrics ({METRICS_FILE})"),
    )
    return [label for names, label in checks if any((run_dir / n).exists() for n in names)]


def _saved_kind(run_dir: Path) -> str | None:
    """The kind in ``run.json``; for a legacy directory the kind its files imply, if any."""
    marker = run_dir / RUN_MARKER
    if marker.is_file():
        where = repr(str(marker))
        try:
            raw = marker.read_bytes()
        except OSError as exc:
            raise TailorError(f"cannot read {where}: {exc.strerror}") from None
        meta = validate_meta(parse_meta(raw, where), RUN_MARKER_SCHEMA, where)
        return meta["kind"]
    if (run_dir / TRAINER_FILE).is_file():
        return "ppo"  # only PPO wrote trainer state before run.json existed
    if (run_dir / POLICY_FILE).is_file():
        # Imported here: tailor.policyfile builds on this package (it follows the manifest).
        from tailor.policyfile import policy_kind

        return policy_kind(run_dir / POLICY_FILE)
    return None


def _write_marker(run_dir: Path, kind: str) -> None:
    from tailor import __version__

    write_json(
        run_dir / RUN_MARKER,
        {
            "format": RUN_FORMAT,
            "format_version": FORMAT_VERSION,
            "tailor_version": __version__,
            "kind": kind,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _clear_owned(run_dir: Path) -> None:
    """Move every tailor-owned entry into one trash directory (renames: atomic, quick), then
    delete it. A kill midway leaves a ``.trash-*`` directory that the next claim removes, and
    never a directory that looks like a valid old run: the manifest and marker go first."""
    names = _RUN_NAMES + (_MODEL_NAMES if _holds_model(run_dir) else ())
    trash = Path(tempfile.mkdtemp(prefix=_TRASH_PREFIX, dir=run_dir))
    first = (MANIFEST_FILE, RUN_MARKER)
    entries = sorted(
        (p for p in run_dir.iterdir() if any(fnmatch(p.name, pat) for pat in names)),
        key=lambda p: p.name not in first,
    )
    for entry in entries:
        os.rename(entry, trash / entry.name)  # a symlink moves as a link, its target untouched
    fsync_path(run_dir)
    shutil.rmtree(trash, ignore_errors=True)


def _holds_model(run_dir: Path) -> bool:
    """A Hugging Face model directory: weights next to a config, or an LM run's marker."""
    names = [p.name for p in run_dir.iterdir()]
    weights = any(fnmatch(n, pat) for n in names for pat in _MODEL_WEIGHTS)
    marker = run_dir / RUN_MARKER
    lm_run = marker.is_file() and (_saved_kind(run_dir) or "").startswith("lm-")
    return lm_run or (weights and "config.json" in names)


def _check_not_prior(run_dir: Path, prior: Path) -> None:
    """--out must not be the prior's directory, inside it, or contain it: writing there would
    overwrite (or clear, with --overwrite) the policy being customized."""
    if prior.is_file() or (not prior.exists() and prior.suffix):
        prior = prior.parent  # the prior given as its policy file: its run directory
    out, base = run_dir.resolve(), prior.resolve()
    if out == base or base in out.parents or out in base.parents:
        relation = "is" if out == base else "is inside" if base in out.parents else "contains"
        raise TailorError(
            f"--out {str(run_dir)!r} {relation} the prior's directory {str(prior)!r}: the run "
            "would overwrite the prior; choose another --out"
        )


def _make_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TailorError(f"cannot create --out {str(run_dir)!r}: {exc.strerror or exc}") from None
