"""Crash-consistent checkpoints: commit, read back, list, thin out, collect garbage.

**Why a manifest.** A checkpoint is several files (policy + trainer state) that must match. Each
file on its own can be replaced atomically, but two files cannot, so a kill between them used
to leave a policy of one step next to a trainer of another. Here every file of a checkpoint is
written (and fsynced) into a fresh directory first; only then is the single small manifest
switched with ``os.replace``. Before the switch readers see the old checkpoint, after it the new
one, never a mix. Whatever a kill leaves behind (a half-written staging directory, a step
directory the manifest never named) is garbage that :func:`collect_garbage` removes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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
from tailor.meta import MANIFEST_SCHEMA, parse_meta, validate_meta
from tailor.output import copy_file
from tailor.rundir.faults import fault
from tailor.rundir.layout import (
    _MANIFEST_DIR,
    _STAGING_PREFIX,
    _STEP_DIR,
    _TMP_FILE,
    _TRASH_PREFIX,
    CHECKPOINTS_DIR,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
)

__all__ = [
    "Checkpoint",
    "Retention",
    "apply_retention",
    "collect_garbage",
    "commit_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
]


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
            fault(f"written:{name}")
            if name in json_copies:
                write_json(staging / _json_name(name), {"format_version": FORMAT_VERSION, **meta})
                fault(f"written:{_json_name(name)}")
        fsync_path(staging)
        final = _free_step_dir(root, step, current)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_path(root)
    fault("staged")
    ckpt = _write_manifest(run_dir, final, step)
    fault("manifest")
    for name in publish:
        _publish(run_dir, ckpt, name)
    fault("published")
    _drop_stale_top_level(run_dir, files, publish)
    apply_retention(run_dir, keep, ckpt)
    fault("retained")
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
            copy_file(ckpt.files[file], run_dir / file)


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
