"""Checkpoints: safetensors for tensors, JSON for everything else. Never pickle.

The files of a run directory (the policy formats are :mod:`tailor.policyfile`'s):

- ``policy.safetensors``: the policy, tensors with their JSON metadata stored in the safetensors
  header under the key ``"tailor"`` (:data:`META_KEY`), so the single file is enough to use the
  policy as a prior or to evaluate it.
- ``policy.json``: a human-readable copy of that metadata (the header is authoritative).
- ``trainer.safetensors``: what ``--resume`` needs besides the policy (critic, optimizer moments,
  random generator state) with its own JSON header (``format`` ``"tailor-trainer"``).

Every file is written atomically by :mod:`tailor.output` (``fsync_path`` and ``write_json`` are
its, re-exported here): to a temporary file in the same directory, fsynced, then ``os.replace``
onto the final name, so a crash or a full disk mid-write never leaves a truncated checkpoint.
A checkpoint made of several files (policy + trainer) is committed as one unit by
:func:`tailor.rundir.commit_checkpoint`: the files go to ``checkpoints/step-<N>/`` and the
manifest ``checkpoint.json`` names the consistent set; the top-level ``policy.safetensors`` is a
convenience copy of the latest policy. Run directories written before the manifest existed (only
top-level files, like the shipped ``priors/``) still load.

Headers are validated (:mod:`tailor.meta`) before any field is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from tailor.errors import TailorError
from tailor.meta import parse_meta, schema_for, validate_meta
from tailor.output import fsync_path, publishing, write_json
from tailor.paths import check_input_path

__all__ = [
    "META_KEY",
    "POLICY_FILE",
    "POLICY_JSON",
    "TRAINER_FILE",
    "TRAINER_FORMAT",
    "flatten_optimizer",
    "fsync_path",
    "load_tensors",
    "save_tensors",
    "unflatten_optimizer",
    "write_json",
]

POLICY_FILE = "policy.safetensors"
POLICY_JSON = "policy.json"
TRAINER_FILE = "trainer.safetensors"
TRAINER_FORMAT = "tailor-trainer"
FORMAT_VERSION = 1
META_KEY = "tailor"


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and the JSON-able ``meta`` to a safetensors file, atomically
    (:func:`tailor.output.publishing`; a full disk is a :class:`TailorError`).

    ``meta`` must contain ``format``; ``format_version`` is added.
    """
    header = {"format_version": FORMAT_VERSION, **meta}
    clean = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    with publishing(path) as tmp:
        save_file(clean, str(tmp), metadata={META_KEY: json.dumps(header)})


def load_meta(path: str | Path, expect_format: str) -> dict:
    """Only the validated JSON header of a tailor safetensors file (no tensor is read): the
    checks of :func:`load_tensors` but the finite-weights one. Raises as it does."""
    return _read(path, expect_format, with_tensors=False)[1]


def load_tensors(path: str | Path, expect_format: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a tailor safetensors file, validating it; returns ``(tensors, meta)``.

    The header is checked against :func:`tailor.meta.schema_for` ``(expect_format)`` (types,
    ranges, nesting depth) before it is returned, so callers may index it without guarding.

    Raises:
        TailorError: missing file, not a safetensors file, truncated, not written by tailor, the
            wrong kind of tailor file, metadata of the wrong shape, or a newer format version.
    """
    return _read(path, expect_format, with_tensors=True)


def _read(
    path: str | Path, expect_format: str, with_tensors: bool
) -> tuple[dict[str, torch.Tensor], dict]:
    path = check_input_path(path, "checkpoint file")
    where = repr(str(path))
    if not path.is_file():
        raise TailorError(f"checkpoint file {where} does not exist")
    try:
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
        tensors = load_file(str(path)) if with_tensors else {}
    except (SafetensorError, OSError, ValueError, OverflowError) as exc:
        raise TailorError(
            f"{where} is not a readable safetensors checkpoint (truncated or corrupted "
            f"file?): {exc}"
        ) from None
    if raw is None:
        raise TailorError(
            f"{where} is a safetensors file but not a tailor checkpoint (no tailor "
            f"metadata); expected a {POLICY_FILE} written by `tailor train` or `tailor customize`"
        )
    meta = parse_meta(raw, where)
    if meta.get("format") != expect_format:
        found = meta.get("format")
        raise TailorError(f"{where} is a {found!r} file, expected a {expect_format!r} file")
    validate_meta(meta, schema_for(expect_format), where)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise TailorError(
            f"{where} has format version {meta['format_version']}, newer than this tailor "
            f"understands ({FORMAT_VERSION}); upgrade tailor"
        )
    _check_finite(where, tensors)
    return tensors, meta


def _check_finite(where: str, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse a file whose floating-point tensors hold NaN or infinity (a diverged run's)."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise TailorError(
                f"{where}: tensor {name!r} holds NaN or infinite values (written by a run that "
                "diverged, or corrupted); tailor does not use such a policy or checkpoint"
            )


def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """``optimizer.state_dict()`` -> ``(tensors, json_obj)`` for safetensors + JSON.

    Tensor entries of the per-parameter state go to ``optim.<param index>.<key>``; everything else
    (scalars, ``param_groups``) to the JSON object.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], obj: dict) -> dict:
    """Inverse of :func:`flatten_optimizer` (ignores tensors not named ``optim.*``)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in obj.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": obj["param_groups"]}
