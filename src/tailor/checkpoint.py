"""Checkpoints: safetensors for tensors, JSON for everything else. Never pickle.

A run directory holds:

- ``policy.safetensors``: the policy (``actor.*`` parameters, ``obs_norm.*`` normalizer
  statistics) with its JSON metadata stored in the safetensors header under the key ``"tailor"``,
  so the single file is enough to use the policy as a prior or to evaluate it. Metadata keys:
  ``format`` (``"tailor-policy"``), ``format_version``, ``tailor_version``, ``task``, ``env_id``,
  ``obs_dim``, ``act_dim``, ``action_low``, ``action_high``, ``architecture`` (``hidden``,
  ``activation``, ``std_type``), ``normalizer`` (``eps``, ``count``; ``mode`` and ``clip`` when
  not the default formula: imported priors, :class:`tailor.nets.EmpiricalNormalization`),
  ``method``, ``coefficients``, ``steps``, ``seed``.
- ``policy.json``: a human-readable copy of that metadata (the header is authoritative).
- ``trainer.safetensors``: what ``--resume`` needs besides the policy (critic, optimizer moments,
  random generator state) with its own JSON header (``format`` ``"tailor-trainer"``).

Every file is written atomically: to a temporary file in the same directory, then
``os.replace`` onto the final name, so a crash mid-write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from tailor.errors import TailorError
from tailor.nets import Actor, EmpiricalNormalization

__all__ = [
    "POLICY_FILE",
    "POLICY_FORMAT",
    "TRAINER_FILE",
    "TRAINER_FORMAT",
    "flatten_optimizer",
    "load_policy",
    "load_tensors",
    "resolve_policy_path",
    "save_policy",
    "save_tensors",
    "unflatten_optimizer",
    "write_json",
]

POLICY_FILE = "policy.safetensors"
TRAINER_FILE = "trainer.safetensors"
POLICY_FORMAT = "tailor-policy"
TRAINER_FORMAT = "tailor-trainer"
FORMAT_VERSION = 1
_META_KEY = "tailor"


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and the JSON-able ``meta`` to a safetensors file, atomically.

    ``meta`` must contain ``format``; ``format_version`` is added.
    """
    path = Path(path)
    header = {"format_version": FORMAT_VERSION, **meta}
    clean = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        save_file(clean, tmp, metadata={_META_KEY: json.dumps(header)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: str | Path, expect_format: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a tailor safetensors file, validating it; returns ``(tensors, meta)``.

    Raises:
        TailorError: missing file, not a safetensors file, truncated, not written by tailor, the
            wrong kind of tailor file, or a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise TailorError(f"checkpoint file {str(path)!r} does not exist")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise TailorError(
            f"{str(path)!r} is not a readable safetensors checkpoint (truncated or corrupted "
            f"file?): {exc}"
        ) from None
    if raw is None:
        raise TailorError(
            f"{str(path)!r} is a safetensors file but not a tailor checkpoint (no tailor "
            f"metadata); expected a {POLICY_FILE} written by `tailor train` or `tailor customize`"
        )
    try:
        meta = json.loads(raw)
    except ValueError:
        raise TailorError(f"{str(path)!r}: the tailor metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != expect_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise TailorError(f"{str(path)!r} is a {found!r} file, expected a {expect_format!r} file")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise TailorError(
            f"{str(path)!r} has format version {meta['format_version']}, newer than this tailor "
            f"understands ({FORMAT_VERSION}); upgrade tailor"
        )
    return tensors, meta


def resolve_policy_path(path: str | Path) -> Path:
    """A run directory or a ``policy.safetensors`` file -> the policy file's path.

    Raises:
        TailorError: the path does not exist, or is a directory without a policy file.
    """
    path = Path(path)
    if path.is_dir():
        candidate = path / POLICY_FILE
        if not candidate.is_file():
            raise TailorError(
                f"{str(path)!r} is a directory without a {POLICY_FILE}; pass a run directory "
                "written by `tailor train`/`tailor customize` or the policy file itself"
            )
        return candidate
    if not path.exists():
        raise TailorError(
            f"policy {str(path)!r} does not exist (expected a run directory or a "
            f"{POLICY_FILE} file)"
        )
    return path


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


def save_policy(
    run_dir: str | Path, actor: Actor, obs_norm: EmpiricalNormalization, meta: dict[str, Any]
) -> Path:
    """Write ``policy.safetensors`` (+ ``policy.json``) into ``run_dir``; returns the file path.

    ``meta`` holds the run's description (task, spaces, method, coefficients, steps, seed, ...);
    the architecture, normalizer and format fields are filled in here from the modules.
    """
    from tailor import __version__

    run_dir = Path(run_dir)
    full = {
        "format": POLICY_FORMAT,
        "tailor_version": __version__,
        **meta,
        "obs_dim": actor.obs_dim,
        "act_dim": actor.act_dim,
        "architecture": {
            "hidden": list(actor.hidden),
            "activation": actor.activation,
            "std_type": actor.std_type,
        },
        "normalizer": {"eps": obs_norm.eps, "count": float(obs_norm.count)},
    }
    if obs_norm.mode != "std_eps" or obs_norm.clip is not None:  # an imported prior's formula
        full["normalizer"].update(mode=obs_norm.mode, clip=obs_norm.clip)
    tensors = {f"actor.{k}": v for k, v in actor.state_dict().items()}
    tensors.update({f"obs_norm.{k}": v for k, v in obs_norm.state_dict().items()})
    path = run_dir / POLICY_FILE
    save_tensors(path, tensors, full)
    write_json(run_dir / "policy.json", {"format_version": FORMAT_VERSION, **full})
    return path


def load_policy(path: str | Path) -> tuple[Actor, EmpiricalNormalization, dict[str, Any]]:
    """Load a policy from a run directory or its ``policy.safetensors``.

    Returns ``(actor, obs_norm, meta)``; both modules are in eval mode (the normalizer frozen).

    Raises:
        TailorError: missing/truncated/foreign file, or tensors that do not match the architecture
            the metadata describes.
    """
    file = resolve_policy_path(path)
    tensors, meta = load_tensors(file, POLICY_FORMAT)
    try:
        arch = meta["architecture"]
        actor = Actor(
            int(meta["obs_dim"]),
            int(meta["act_dim"]),
            [int(h) for h in arch["hidden"]],
            activation=arch["activation"],
            std_type=arch["std_type"],
        )
        norm = meta["normalizer"]
        obs_norm = EmpiricalNormalization(
            int(meta["obs_dim"]),
            eps=float(norm["eps"]),
            mode=norm.get("mode", "std_eps"),
            clip=None if norm.get("clip") is None else float(norm["clip"]),
        )
        actor.load_state_dict(_strip(tensors, "actor."))
        obs_norm.load_state_dict(_strip(tensors, "obs_norm."))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise TailorError(
            f"{str(file)!r}: the tensors do not match the architecture in its metadata ({exc})"
        ) from None
    return actor.eval(), obs_norm.eval(), meta


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
