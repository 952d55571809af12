"""Run directories: crash-consistent checkpoints, an append-only metrics log, and ownership.

A run directory (``--out``) written through this module looks like::

    run.json                  marker: {"format": "tailor-run", "kind": "ppo", ...}
    .lock  .lock.pid          advisory lock held for the whole run; the holder's pid
    checkpoint.json           manifest: the ONE consistent checkpoint (directory, step, files)
    checkpoints/step-<N>/     policy.safetensors, policy.json, trainer.safetensors of step N
    policy.safetensors        convenience copy of the latest policy (+ policy.json)
    metrics.csv               one row per iteration, appended, never rewritten in place

**Why a manifest.** A checkpoint is several files (policy + trainer state) that must match. Each
file on its own can be replaced atomically, but two files cannot, so a kill between them used
to leave a policy of one step next to a trainer of another. Here every file of a checkpoint is
written (and fsynced) into a fresh directory first; only then is the single small manifest
switched with ``os.replace``. Before the switch readers see the old checkpoint, after it the new
one, never a mix. Whatever a kill leaves behind (a half-written staging directory, a step
directory the manifest never named) is garbage that :func:`collect_garbage` removes.

**Why a lock.** Two processes writing one run directory interleave ``metrics.csv`` and race on
the manifest. :func:`claim_run_dir` takes an exclusive ``flock`` on ``.lock`` for the whole run
and refuses ``--out`` onto another run or model unless asked to resume or overwrite it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import torch

from tailor.checkpoint import (
    FORMAT_VERSION,
    POLICY_FILE,
    POLICY_JSON,
    TRAINER_FILE,
    fsync_path,
    load_tensors,
    save_tensors,
    write_json,
)
from tailor.errors import TailorError
from tailor.meta import MANIFEST_SCHEMA, RUN_MARKER_SCHEMA, parse_meta, validate_meta
from tailor.paths import check_output_dir, check_output_file, probe_writable

__all__ = [
    "CHECKPOINTS_DIR",
    "KINDS",
    "LOCK_FILE",
    "LOCK_PID_FILE",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "RUN_MARKER",
    "Checkpoint",
    "InterruptRequest",
    "MetricsLog",
    "Retention",
    "RunDir",
    "apply_retention",
    "check_output_file",
    "claim_run_dir",
    "collect_garbage",
    "commit_checkpoint",
    "config_change_error",
    "config_diff",
    "describe_contents",
    "latest_checkpoint",
    "list_checkpoints",
    "lock_holder",
    "stop_on_interrupt",
]

RUN_MARKER = "run.json"
MANIFEST_FILE = "checkpoint.json"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = ".lock"
LOCK_PID_FILE = ".lock.pid"
METRICS_FILE = "metrics.csv"
RUN_FORMAT = "tailor-run"
MANIFEST_FORMAT = "tailor-checkpoint"

# What `run.json` may call a run. One kind per trainer whose run directories differ.
KINDS = ("ppo", "dqn", "sac", "mcts", "lm-ppo", "lm-dpo", "lm-model")

_STEP_DIR = re.compile(r"^step-(\d+)(?:-r(\d+))?$")
_MANIFEST_DIR = re.compile(rf"^{CHECKPOINTS_DIR}/step-\d+(?:-r\d+)?$")
_STAGING_PREFIX = ".staging-"
_TRASH_PREFIX = ".trash-"
# Leftovers of the atomic writes of tailor's own files (".<name>.<8 random chars>.tmp", see
# tailor.checkpoint) and of the writability probe. Only these: a user's own hidden files in an
# --out directory are none of our business.
_TMP_FILE = re.compile(
    r"^\.(policy\.safetensors|policy\.json|trainer\.safetensors|checkpoint\.json|run\.json"
    r"|\.lock\.pid|metrics\.csv)\.[A-Za-z0-9_]{8}\.tmp$|^\.tailor-probe-"
)

# Names a run directory may hold that `overwrite=True` clears (globs), and those of a Hugging
# Face model directory, cleared only where there is a model (a bare config.json may well belong
# to something else). Anything else in the directory (a user's notes, data) is left alone.
_RUN_NAMES = (
    RUN_MARKER,
    MANIFEST_FILE,
    CHECKPOINTS_DIR,
    POLICY_FILE,
    POLICY_JSON,
    TRAINER_FILE,
    METRICS_FILE,
    "tb",
    "prior",
    "eval.json",
)
_MODEL_WEIGHTS = ("model.safetensors", "model-*.safetensors", "pytorch_model*.bin")
_MODEL_NAMES = (
    *_MODEL_WEIGHTS,
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "tailor.json",
)

# Fault injection for tests: called with the name of each point of commit_checkpoint and
# MetricsLog between two durable steps ("written:<file>", "staged", "manifest", ...), so a test
# can SIGKILL the process at exactly that moment. None in normal use.
_fault_hook: Callable[[str], None] | None = None


def _fault(point: str) -> None:
    if _fault_hook is not None:
        _fault_hook(point)


# ---- checkpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """One consistent checkpoint: files that belong to the same step.

    Attributes:
        step: the step it was committed at (for a legacy run directory the policy header's
            ``steps``; ``None`` if that is unreadable).
        directory: where its files are (``checkpoints/step-<N>`` or, legacy, the run directory).
        files: file name -> path, e.g. ``{"policy.safetensors": ..., "trainer.safetensors": ...}``.
        legacy: read from a run directory without a manifest (written before it existed).
    """

    step: int | None
    directory: Path
    files: Mapping[str, Path]
    legacy: bool = False

    def path(self, name: str) -> Path:
        """The path of file ``name`` of this checkpoint.

        Raises:
            TailorError: the checkpoint has no such file (e.g. an old snapshot whose trainer
                state was dropped, or a legacy directory whose trainer file is from another step).
        """
        if name not in self.files:
            why = (
                " (a legacy run directory whose files are from different steps: it was "
                "interrupted while saving)"
                if self.legacy
                else ""
            )
            raise TailorError(
                f"the checkpoint at step {self.step} in {str(self.directory)!r} has no {name}{why}"
            )
        return self.files[name]

    def load(self, name: str, expect_format: str) -> tuple[dict[str, torch.Tensor], dict]:
        """``load_tensors`` of file ``name``: validated ``(tensors, meta)``."""
        return load_tensors(self.path(name), expect_format)


@dataclass(frozen=True)
class Retention:
    """Which old checkpoints :func:`commit_checkpoint` keeps.

    Counts include the checkpoint just committed. Old policy snapshots are small (a few KB for
    the RL policies) and let a "best checkpoint" evaluation pick an earlier step; the trainer
    state (critic, optimizer moments) is the bulk and only the latest is needed to resume.

    Attributes:
        full: the newest ``full`` checkpoints keep all their files (>= 1).
        policies: the newest ``policies`` checkpoints keep at least ``snapshot_files``; older
            ones are deleted. ``None`` keeps every snapshot.
        snapshot_files: the files an old checkpoint keeps once it is past ``full``.
    """

    full: int = 1
    policies: int | None = None
    snapshot_files: tuple[str, ...] = (POLICY_FILE, POLICY_JSON)

    def __post_init__(self) -> None:
        if self.full < 1:
            raise TailorError(f"Retention.full must be >= 1, got {self.full}")
        if self.policies is not None and self.policies < self.full:
            raise TailorError(
                f"Retention.policies ({self.policies}) must be None or >= full ({self.full})"
            )


def commit_checkpoint(
    run_dir: str | Path,
    files: Mapping[str, tuple[dict[str, torch.Tensor], dict[str, Any]]],
    step: int,
    keep: Retention | None = None,
    *,
    json_copies: Iterable[str] = (POLICY_FILE,),
    publish: Iterable[str] = (POLICY_FILE,),
) -> Checkpoint:
    """Write one checkpoint of several files so that a kill at any moment leaves either the
    previous checkpoint or this one, never a mix.

    Steps: every file into a fresh staging directory (each fsynced) -> rename it to
    ``checkpoints/step-<step>`` -> switch the manifest ``checkpoint.json`` atomically (the commit
    point) -> refresh the top-level convenience copies (``publish``) -> apply ``keep``.

    Args:
        run_dir: the run directory (the caller should hold it through :func:`claim_run_dir`).
        files: file name -> ``(tensors, header)``, each written with
            :func:`tailor.checkpoint.save_tensors`; the header must contain ``format``.
        step: the step the checkpoint belongs to (recorded in the manifest).
        keep: retention of older checkpoints (default :class:`Retention` ``()``: keep every
            policy snapshot, trainer state of the latest only).
        json_copies: files that also get a human-readable ``<stem>.json`` copy of their header.
        publish: files copied to the top level of ``run_dir`` after the commit (with their JSON
            copy), so ``run_dir/policy.safetensors`` is always a complete, recent policy.

    Returns:
        The committed :class:`Checkpoint`.
    """
    run_dir = Path(run_dir)
    keep = keep or Retention()
    _check_files(files, step)
    json_copies, publish = set(json_copies), list(publish)
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    current = latest_checkpoint(run_dir) if (run_dir / MANIFEST_FILE).is_file() else None
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}step-{step}-", dir=root))
    try:
        for name, (tensors, meta) in files.items():
            save_tensors(staging / name, tensors, meta)
            _fault(f"written:{name}")
            if name in json_copies:
                write_json(staging / _json_name(name), {"format_version": FORMAT_VERSION, **meta})
                _fault(f"written:{_json_name(name)}")
        fsync_path(staging)
        final = _free_step_dir(root, step, current)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_path(root)
    _fault("staged")
    ckpt = _write_manifest(run_dir, final, step)
    _fault("manifest")
    for name in publish:
        _publish(run_dir, ckpt, name)
    _fault("published")
    _drop_stale_top_level(run_dir, files, publish)
    apply_retention(run_dir, keep, ckpt)
    _fault("retained")
    return ckpt


def _check_files(files: Mapping[str, tuple[dict, dict]], step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise TailorError(f"a checkpoint step must be a non-negative integer, got {step!r}")
    if not files:
        raise TailorError("a checkpoint needs at least one file")
    for name, (_, meta) in files.items():
        if not _simple_name(name) or not name.endswith(".safetensors"):
            raise TailorError(
                f"checkpoint file names are plain '*.safetensors' names, got {name!r}"
            )
        if "format" not in meta:
            raise TailorError(f"the header of checkpoint file {name!r} lacks 'format'")


def _simple_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def _json_name(name: str) -> str:
    return name.removesuffix(".safetensors") + ".json"


def _free_step_dir(root: Path, step: int, current: Checkpoint | None) -> Path:
    """``step-<N>``, or ``step-<N>-r<k>`` if the current checkpoint already uses that name
    (committing the same step twice must not touch the files the manifest still names).

    A ``step-<N>`` the manifest does not name is a leftover of a kill between the rename and the
    manifest switch: it is discarded.
    """
    candidate, revision = root / f"step-{step}", 0
    while candidate.exists():
        if current is not None and candidate == current.directory:
            revision += 1
            candidate = root / f"step-{step}-r{revision}"
        else:
            _discard(candidate)
    return candidate


def _write_manifest(run_dir: Path, directory: Path, step: int) -> Checkpoint:
    from tailor import __version__

    entries = {
        p.name: {"size": p.stat().st_size} for p in sorted(directory.iterdir()) if p.is_file()
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": FORMAT_VERSION,
        "tailor_version": __version__,
        "step": step,
        "directory": f"{CHECKPOINTS_DIR}/{directory.name}",
        "files": entries,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(run_dir / MANIFEST_FILE, manifest)  # tempfile + fsync + os.replace
    fsync_path(run_dir)  # make the rename itself durable
    return Checkpoint(step, directory, {name: directory / name for name in entries})


def _publish(run_dir: Path, ckpt: Checkpoint, name: str) -> None:
    """Copy ``name`` (and its JSON copy) of ``ckpt`` to the top level, each atomically.

    The copy of ``policy.json`` may lag the ``policy.safetensors`` beside it by one checkpoint
    if a kill falls between the two; the safetensors header is the authoritative one.
    """
    for file in (name, _json_name(name)):
        if file in ckpt.files:
            _atomic_copy(ckpt.files[file], run_dir / file)


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _drop_stale_top_level(run_dir: Path, files: Mapping[str, Any], publish: Sequence[str]) -> None:
    """Remove top-level copies of checkpoint files that are not published (the legacy layout's
    ``trainer.safetensors``): once a manifest exists they are stale, and a reader that paired
    them with the fresh top-level policy would mix steps."""
    for name in files:
        if name not in publish:
            for file in (name, _json_name(name)):
                (run_dir / file).unlink(missing_ok=True)


def apply_retention(run_dir: str | Path, keep: Retention, current: Checkpoint) -> None:
    """Thin out old step directories per ``keep``; the current checkpoint is never touched."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if current.step is None:
        return
    old = []
    for step, rev, path in _step_dirs(root):
        if path == current.directory:
            continue
        if step >= current.step:  # newer or a duplicate: left by a kill, never committed
            _discard(path)
        else:
            old.append((step, rev, path))
    old.sort(reverse=True)  # newest first; rank 1 is the newest after the current one
    for rank, (_, _, path) in enumerate(old, start=1):
        if keep.policies is not None and rank >= keep.policies:
            _discard(path)
        elif rank >= keep.full:
            for file in path.iterdir():
                if file.name not in keep.snapshot_files:
                    file.unlink(missing_ok=True)


def _step_dirs(root: Path) -> list[tuple[int, int, Path]]:
    if not root.is_dir():
        return []
    out = []
    for path in root.iterdir():
        m = _STEP_DIR.match(path.name)
        if m and path.is_dir():
            out.append((int(m.group(1)), int(m.group(2) or 0), path))
    return out


def _discard(path: Path) -> None:
    """Delete a directory tree so that a kill midway leaves only an obvious ``.trash-*``
    directory (renamed first, atomically), never a half-deleted ``step-<N>``."""
    trash = path.parent / f"{_TRASH_PREFIX}{path.name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def collect_garbage(run_dir: str | Path) -> list[Path]:
    """Remove what a killed writer left behind; returns the removed paths.

    Garbage: staging and trash directories, step directories the manifest does not name that are
    newer than (or a duplicate of) its step, all step directories if no manifest was ever
    written, and temporary files of interrupted atomic writes. Only the run's owner (the holder
    of :func:`claim_run_dir`'s lock) may call it: a live writer's staging directory looks the same.
    """
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS_DIR
    current = latest_checkpoint(run_dir) if (run_dir / MANIFEST_FILE).is_file() else None
    removed: list[Path] = []
    for base in (run_dir, root):
        if not base.is_dir():
            continue
        for path in base.iterdir():
            if path.name.startswith((_STAGING_PREFIX, _TRASH_PREFIX)) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif _TMP_FILE.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    for step, _, path in _step_dirs(root):
        if current is None or current.step is None:
            orphan = True
        else:
            orphan = path != current.directory and step >= current.step
        if orphan:
            _discard(path)
            removed.append(path)
    return removed


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The run's consistent checkpoint, or ``None`` if it has none.

    With a manifest: the files it names (all checked to exist with the recorded sizes). Without
    one (a run directory written before manifests, like the shipped ``priors/``): the top-level
    ``policy.safetensors``, plus ``trainer.safetensors`` only if its header's ``steps`` equals
    the policy's (otherwise the legacy directory was interrupted between the two writes).
    Never modifies the directory, so it is safe on a run another process is writing.

    Raises:
        TailorError: the manifest is unreadable, malformed, or names files that are missing or
            changed (the directory was edited by hand).
    """
    run_dir = Path(run_dir)
    manifest = run_dir / MANIFEST_FILE
    if manifest.is_file():
        return _read_manifest(run_dir, manifest)
    return _legacy_checkpoint(run_dir)


def _read_manifest(run_dir: Path, manifest: Path) -> Checkpoint:
    where = repr(str(manifest))
    try:
        raw = manifest.read_bytes()
    except OSError as exc:
        raise TailorError(f"cannot read the checkpoint manifest {where}: {exc.strerror}") from None
    meta = validate_meta(parse_meta(raw, where), MANIFEST_SCHEMA, where)
    if meta["format"] != MANIFEST_FORMAT:
        raise TailorError(f"{where} is a {meta['format']!r} file, not a checkpoint manifest")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise TailorError(f"{where} has a newer format version; upgrade tailor")
    # The directory must be one of ours: a crafted "../../etc" must not redirect loads.
    if not _MANIFEST_DIR.match(meta["directory"]):
        raise TailorError(f"{where}: 'directory' {meta['directory']!r} is not a checkpoint dir")
    directory = run_dir / meta["directory"]
    files: dict[str, Path] = {}
    for name, entry in meta["files"].items():
        size = entry.get("size") if isinstance(entry, dict) else None
        if not _simple_name(name) or isinstance(size, bool) or not isinstance(size, int):
            raise TailorError(f"{where}: malformed entry for file {name!r}")
        path = directory / name
        try:
            actual = path.stat().st_size
        except OSError:
            actual = None
        if actual != size:
            raise TailorError(
                f"{where} names {str(path)!r} ({size} bytes), which is "
                f"{'missing' if actual is None else f'{actual} bytes'}: the run directory was "
                "modified outside tailor"
            )
        files[name] = path
    return Checkpoint(meta["step"], directory, files)


def _legacy_checkpoint(run_dir: Path) -> Checkpoint | None:
    policy = run_dir / POLICY_FILE
    if not policy.is_file():
        return None
    step = _header_steps(policy)
    files = {POLICY_FILE: policy}
    if (run_dir / POLICY_JSON).is_file():
        files[POLICY_JSON] = run_dir / POLICY_JSON
    trainer = run_dir / TRAINER_FILE
    if step is not None and trainer.is_file() and _header_steps(trainer) == step:
        files[TRAINER_FILE] = trainer
    return Checkpoint(step, run_dir, files, legacy=True)


def _header_steps(path: Path) -> int | None:
    """The ``steps`` of a safetensors file's tailor header, ``None`` if unreadable (the loader
    reports the precise problem later)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get("tailor")
        steps = parse_meta(raw, str(path)).get("steps") if raw is not None else None
    except Exception:  # any unreadable header just means "step unknown"
        return None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def list_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """Every checkpoint still on disk, oldest first: the kept snapshots (often only their policy
    files, see :class:`Retention`) and the current one. For a "best checkpoint" evaluation."""
    run_dir = Path(run_dir)
    current = latest_checkpoint(run_dir)
    if current is None or current.legacy or current.step is None:
        return [current] if current is not None else []
    out = []
    for step, _, path in sorted(_step_dirs(run_dir / CHECKPOINTS_DIR)):
        if path == current.directory:
            out.append(current)
        elif step < current.step:
            files = {
                p.name: p for p in sorted(path.iterdir()) if p.is_file() and _simple_name(p.name)
            }
            if files:
                out.append(Checkpoint(step, path, files))
    return out


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


# ---- metrics.csv -------------------------------------------------------------------------------


class MetricsLog:
    """``metrics.csv``: rows appended and flushed one by one (readable while training), never
    truncated or rewritten in place.

    Opened fresh it starts a file with just the header; opened with ``resume_at`` it keeps the rows
    whose ``key`` column is ``<= resume_at`` (rows after the checkpoint are redone by the resumed
    run) and drops a torn last line. Both go through a temporary file and ``os.replace``, so a
    kill at any moment leaves either the old file or the new one, never an empty one.
    """

    def __init__(
        self,
        path: str | Path,
        fields: Sequence[str],
        *,
        resume_at: float | None = None,
        key: str = "iteration",
    ) -> None:
        self.path = Path(path)
        self.fields = tuple(fields)
        if key not in self.fields:
            raise TailorError(f"MetricsLog key {key!r} is not one of the fields {self.fields}")
        kept = []
        if resume_at is not None and self.path.is_file():
            kept = self._rows_upto(resume_at, key)
        self._replace_with(kept)
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fields, restval="")

    def _rows_upto(self, resume_at: float, key: str) -> list[dict[str, str]]:
        text = self.path.read_text(encoding="utf-8", errors="replace")
        if text and not text.endswith("\n"):
            # A torn last row (a write cut short): its truncated numbers could pass as an
            # earlier step, so it is dropped, not parsed.
            text = text[: text.rfind("\n") + 1]
        kept = []
        for row in csv.DictReader(io.StringIO(text, newline="")):
            try:
                value = float(row.get(key) or "nan")
            except ValueError:
                continue
            if value <= resume_at:
                kept.append({f: row.get(f) or "" for f in self.fields})
        return kept

    def _replace_with(self, rows: list[dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields, restval="")
                writer.writeheader()
                writer.writerows(rows)
                f.flush()
                os.fsync(f.fileno())
            _fault("metrics-staged")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_path(self.path.parent)

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (unknown keys are an error, missing ones are left empty) and flush it,
        so a kill right after loses nothing."""
        self._writer.writerow(dict(row))
        self._file.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- ownership of run directories --------------------------------------------------------------


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
        failed = exc_type is not None and self.created and _failed_start(self.path)
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
    if contents and not overwrite and not _failed_start(run_dir):
        what = f"a {saved_kind!r} run" if saved_kind else "; ".join(contents)
        raise TailorError(
            f"--out {str(run_dir)!r} already holds a run or model ({what}); continue it with "
            "--resume, choose another --out, or pass --overwrite to replace it"
        )
    if contents:
        _clear_owned(run_dir)
    collect_garbage(run_dir)
    _write_marker(run_dir, kind)


def _failed_start(run_dir: Path) -> bool:
    """A run tailor started here (``run.json``) that never wrote a checkpoint or model: it failed
    or was killed early, holds nothing worth keeping, and a new run may take its place without
    ``--overwrite`` (its metrics.csv and prior copy go)."""
    results = (
        MANIFEST_FILE,
        CHECKPOINTS_DIR,
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
        # Imported here: tailor.policyfile builds on this module (it follows the manifest).
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


def _lock(run_dir: Path) -> int:
    """Take the run's exclusive lock, or raise TailorError naming the holder."""
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
            raise TailorError(
                f"run directory {str(run_dir)!r} is in use by another tailor process "
                f"({_holder_text(run_dir / LOCK_PID_FILE)}); wait for it to finish or choose "
                "another --out"
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


# ---- config changes on resume ------------------------------------------------------------------


def config_diff(saved: Mapping[str, Any], given: Mapping[str, Any], mutable: set[str]) -> list[str]:
    """The fields (in ``given``'s order, then ``saved``-only ones) whose values differ between the
    saved and the given config, ignoring the ``mutable`` ones (e.g. ``total_steps``).

    Values are compared in their JSON form: a saved ``[64, 64]`` equals a given ``(64, 64)``.
    A field present on one side only counts as a difference.
    """
    names = list(dict.fromkeys([*given, *saved]))
    return [n for n in names if n not in mutable and _json_form(saved, n) != _json_form(given, n)]


_MISSING = object()


def _json_form(config: Mapping[str, Any], name: str) -> Any:
    if name not in config:
        return _MISSING
    try:
        return json.loads(json.dumps(config[name]))
    except (TypeError, ValueError):
        return config[name]


def config_change_error(
    run_dir: str | Path, saved: Mapping[str, Any], given: Mapping[str, Any], fields: Sequence[str]
) -> TailorError:
    """The TailorError for resuming ``run_dir`` with a changed config (``fields`` from
    :func:`config_diff`), naming each field with the given and the saved value."""

    def show(config: Mapping[str, Any], name: str) -> str:
        return repr(config[name]) if name in config else "not set"

    changes = ", ".join(f"{n}={show(given, n)} (saved {show(saved, n)})" for n in fields)
    return TailorError(
        f"cannot resume {str(run_dir)!r} with a different config: {changes}; resume with the "
        "saved settings or start a new run with another --out"
    )
