"""Which library wrote a prior file: detection from the file's content, never its name.

- ``tailor``: a run directory with ``policy.safetensors``, or a safetensors file (8-byte
  little-endian header length, then a JSON header starting with ``{``).
- ``sb3``: a zip with the members ``data`` and ``policy.pth`` (``model.save`` of SB3 2.x).
- ``torchscript``: a TorchScript archive (``torch.jit.script/trace(...).save``: a zip with
  ``<root>/code/__torch__/...`` sources, or ``<root>/constants.pkl`` beside ``<root>/data.pkl``),
  read without running it (:mod:`tailor.priors.torchscript`).
- ``rsl_rl`` / ``cleanrl`` / ``skrl``: a ``torch.save`` file (zip with ``*/data.pkl``, or a
  legacy pickle), classified by its keys after a ``weights_only=True`` load
  (:func:`classify_torch`): ``model_state_dict`` / ``actor_state_dict`` (rsl-rl),
  ``actor_mean.*`` + ``actor_logstd`` (CleanRL), ``policy`` + ``state_preprocessor`` (skrl).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from tailor.errors import TailorError
from tailor.paths import check_input_path
from tailor.priors.validate import check_zip

__all__ = [
    "FORMATS",
    "classify_torch",
    "detect_format",
    "is_safetensors",
    "is_torchscript",
    "torch_load",
]

FORMATS = ("tailor", "sb3", "rsl_rl", "cleanrl", "skrl", "torchscript")


def is_safetensors(path: Path) -> bool:
    """A safetensors header: a plausible ``u64`` header length, then ``{`` (truncated files too)."""
    try:
        with path.open("rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 1 < n < 100_000_000


def zip_names(path: Path) -> list[str] | None:
    """The members of a zip that starts at byte 0, else ``None``.

    A truncated SB3 zip can still *look* valid: its stored ``policy.pth`` is a zip too, and
    ``zipfile`` finds that inner archive's directory (treating the bytes before it as a prefix).
    A real SB3 or ``torch.save`` file has its first member at offset 0.

    Raises:
        TailorError: the zip's directory promises too many or too large members
            (:func:`tailor.priors.validate.check_zip`), checked before anything is inflated.
    """
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None
    if not infos or min(i.header_offset for i in infos) != 0:
        return None
    check_zip(infos, repr(str(path)))
    return [i.filename for i in infos]


def is_torchscript(names: list[str]) -> bool:
    """A TorchScript archive's members: ``<root>/code/__torch__...`` sources, or
    ``<root>/constants.pkl`` beside ``<root>/data.pkl`` (``torch.save`` files have neither)."""
    roots = {n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/data.pkl")}
    return any(
        n.split("/")[0] in roots
        and (n.endswith("/constants.pkl") or n.split("/", 1)[1].startswith("code/__torch__"))
        for n in names
    )


def detect_format(path: str | Path) -> str:
    """The format of the prior at ``path``: one of :data:`FORMATS`.

    Raises:
        TailorError: missing path, a directory without a policy, a corrupt zip ("not a valid
            zip"), or content that matches no supported format.
    """
    path = check_input_path(path, "policy")
    if path.is_dir():
        if (path / "policy.safetensors").is_file():
            return "tailor"
        raise TailorError(
            f"{str(path)!r} is a directory without a policy.safetensors; pass a tailor run "
            "directory, or the prior file itself (an SB3 .zip, an rsl-rl/CleanRL .pt)"
        )
    if not path.exists():
        raise TailorError(
            f"policy {str(path)!r} does not exist (expected a tailor run directory or "
            "policy.safetensors, or a policy file from SB3, rsl-rl, CleanRL or skrl)"
        )
    with path.open("rb") as f:
        magic = f.read(8)
    if is_safetensors(path):
        return "tailor"
    if magic[:2] == b"PK":
        names = zip_names(path)
        if names is None:
            raise TailorError(
                f"{str(path)!r} is not a valid zip file (truncated or corrupted?); an SB3 model "
                "is the .zip that model.save wrote, a torch.save file is a zip too"
            )
        if "data" in names and "policy.pth" in names:
            return "sb3"
        if is_torchscript(names):
            return "torchscript"
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return classify_torch(torch_load(path), path)
        raise TailorError(
            f"{str(path)!r} is a zip but neither an SB3 model (members 'data' and 'policy.pth') "
            f"nor a torch.save file; members: {', '.join(names[:8])}"
        )
    if magic[:1] == b"\x80":  # a pickle protocol byte: a legacy (non-zip) torch.save file
        with path.open("rb") as f:
            if b"VecNormalize" in f.read(256):
                raise TailorError(
                    f"{str(path)!r} is SB3 VecNormalize statistics, not a policy; pass the model's "
                    "zip as the prior and this file as normalizer= (--prior-normalizer)"
                )
        return classify_torch(torch_load(path), path)
    if path.suffix == ".zip":
        raise TailorError(f"{str(path)!r} is not a valid zip file (it does not start like one)")
    raise TailorError(
        f"cannot tell the format of {str(path)!r}: not a tailor safetensors checkpoint, an SB3 "
        "zip, nor a torch.save file; supported formats: " + ", ".join(FORMATS)
    )


def torch_load(path: Path | bytes, source: str | None = None) -> Any:
    """``torch.load(..., weights_only=True)``: tensors and plain containers only, no code.

    A zip (a file, or the bytes of a member) is checked by
    :func:`tailor.priors.validate.check_zip` first: ``torch.load`` never inflates an oversized
    member.

    Raises:
        TailorError: the file needs more than tensors and containers (a pickled class), is not
            a torch file, or is a zip whose members are too large.
    """
    src = source or repr(str(path))
    if isinstance(path, bytes) and path[:2] == b"PK":  # a member of a checked zip: check its own
        try:
            with zipfile.ZipFile(io.BytesIO(path)) as z:
                check_zip(z.infolist(), src)
        except (zipfile.BadZipFile, EOFError, ValueError):
            pass  # torch.load says what is wrong with it
    if isinstance(path, Path) and is_torchscript(zip_names(path) or []):
        raise TailorError(
            f"{src} is a TorchScript export (torch.jit.script/trace), not a torch.save file; "
            "tailor reads it as format 'torchscript' (leave out --prior-format)"
        )
    buf = io.BytesIO(path) if isinstance(path, bytes) else path
    try:
        return torch.load(buf, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TailorError(
            f"{src} is not loadable with torch.load(weights_only=True) (only tensors and plain "
            f"containers are read, never pickled code): {msg}"
        ) from None


def classify_torch(obj: Any, path: Path) -> str:
    """``rsl_rl``, ``cleanrl`` or ``skrl`` from the keys of a loaded ``torch.save`` object."""
    if isinstance(obj, dict):
        keys = set(obj)
        if "actor_state_dict" in keys or "model_state_dict" in keys:
            return "rsl_rl"
        if any(str(k).startswith("actor_mean.") for k in keys) and "actor_logstd" in keys:
            return "cleanrl"
        if "policy" in keys and isinstance(obj["policy"], dict):
            return "skrl"
        shown = json.dumps(sorted(str(k) for k in keys)[:10])
    else:
        shown = type(obj).__name__
    raise TailorError(
        f"{str(path)!r} is a torch.save file but not a prior tailor recognizes (keys {shown}); "
        "expected an rsl-rl checkpoint (model_state_dict / actor_state_dict), a CleanRL "
        "agent.state_dict() (actor_mean.*, actor_logstd) or an skrl agent checkpoint (policy)"
    )
