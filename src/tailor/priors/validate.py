"""One validation layer for the foreign files tailor imports: nothing in them is trusted.

Every check raises a :class:`~tailor.errors.TailorError` naming the file and what is wrong, so a
malformed or hostile file ends as ``error: ...`` (exit 2), never as a traceback or a huge
allocation:

- zips (SB3 models, ``torch.save`` files): the member count, each member's declared size, the
  total and the compression ratio are checked from the zip directory *before* anything is
  inflated (:func:`check_zip`), and a member is read no further than its declared size
  (:func:`read_member`); ``torch.load`` only ever sees a checked zip
  (:func:`tailor.priors.detect.torch_load`).
- SB3's ``data`` JSON: its nesting depth before parsing, then the types of the fields tailor
  reads (:data:`SB3_DATA_SCHEMA`, checked by :func:`tailor.meta.validate_meta`).
- state dicts (SB3 ``policy.pth``, rsl-rl ``model_state_dict`` / ``actor_state_dict``, CleanRL,
  skrl ``policy`` / ``state_preprocessor``): string keys, tensor values, no complex tensors
  (:func:`state_dict`); the tensors read as weights are real floating tensors of the expected
  shape (:func:`weight`, :func:`linear`), the layers chain (:func:`check_chain`), a normalizer
  has both halves (:func:`normalizer_halves`).
- agent configs (``params/agent.yaml`` of rsl-rl and skrl): :data:`RSL_RL_ACTOR_SCHEMA`,
  :data:`SKRL_POLICY_SCHEMA`.
- the loaded prior: every weight finite (:func:`check_finite`), for every format.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from tailor.errors import TailorError
from tailor.meta import MAX_DEPTH, Field, json_depth, validate_meta

__all__ = [
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "RSL_RL_ACTOR_SCHEMA",
    "SB3_DATA_SCHEMA",
    "SKRL_POLICY_SCHEMA",
    "check_chain",
    "check_finite",
    "check_zip",
    "count",
    "linear",
    "log_std_vector",
    "normalizer_halves",
    "parse_sb3_data",
    "read_member",
    "scalar",
    "state_dict",
    "weight",
]

# Zip limits. Real priors are a few MB (the RL Zoo's largest policy.pth is ~4 MB, Isaac Lab
# checkpoints with optimizer state ~20 MB); torch.save stores members uncompressed, SB3 deflates
# them (ratios of 1-10 for weights). A zip bomb declares gigabytes behind a few MB of zeros.
MAX_MEMBERS = 10_000
MAX_MEMBER_BYTES = 1 << 30  # one member's uncompressed size
MAX_TOTAL_BYTES = 2 << 30  # all members together
MAX_RATIO = 200  # uncompressed / compressed, for members over _RATIO_FLOOR bytes
_RATIO_FLOOR = 1 << 20
# The largest size of one dimension tailor builds anything for (observations, actions, layers).
MAX_DIM = 1 << 24

_NUMBER = (int, float)
_SPACE: dict[str, Field] = {
    ":type:": Field((str,)),
    "n": Field((int, str)),
    "start": Field((int, str)),
}
SB3_DATA_SCHEMA: dict[str, Field] = {
    "policy_class": Field(
        (dict,), required=True, fields={"__module__": Field((str,)), "__init__": Field((str,))}
    ),
    "policy_kwargs": Field(
        (dict,),
        nullable=True,
        fields={
            "net_arch": Field((list, dict), nullable=True),
            "activation_fn": Field((str,), nullable=True),
            "use_expln": Field((bool,)),
            "squash_output": Field((bool,)),
            "full_std": Field((bool,)),
            "clip_mean": Field(_NUMBER, min=0.0, max=1e6),
        },
    ),
    "observation_space": Field((dict,), required=True, fields=_SPACE),
    "action_space": Field((dict,), required=True, fields=_SPACE),
    "use_sde": Field((bool,), nullable=True),
    "ent_coef": Field((int, float, str), nullable=True),
}
RSL_RL_ACTOR_SCHEMA: dict[str, Field] = {
    "activation": Field((str,), nullable=True),
    "hidden_dims": Field((list,), nullable=True, items=(int,)),
    "actor_hidden_dims": Field((list,), nullable=True, items=(int,)),
    "distribution_cfg": Field(
        (dict,), nullable=True, fields={"std_range": Field((list,), nullable=True, items=_NUMBER)}
    ),
}
SKRL_POLICY_SCHEMA: dict[str, Field] = {
    "output": Field((str,), nullable=True),
    "clip_log_std": Field((bool,), nullable=True),
    "min_log_std": Field(_NUMBER, min=-1e6, max=1e6),
    "max_log_std": Field(_NUMBER, min=-1e6, max=1e6),
    "network": Field((list,), nullable=True),
}


def check_zip(infos: Sequence[zipfile.ZipInfo], where: str) -> None:
    """Refuse a zip whose directory promises more than a prior can need, before inflating it.

    Raises:
        TailorError: too many members, a member (or all together) larger than the limits, or a
            member compressed more than :data:`MAX_RATIO` times (a zip bomb).
    """
    if len(infos) > MAX_MEMBERS:
        raise TailorError(f"{where}: the zip has {len(infos)} members (at most {MAX_MEMBERS})")
    total = 0
    for info in infos:
        size = info.file_size
        if size > MAX_MEMBER_BYTES:
            raise TailorError(
                f"{where}: zip member {info.filename!r} declares {size} bytes uncompressed "
                f"(at most {MAX_MEMBER_BYTES}); refusing to inflate it"
            )
        ratio = size / max(info.compress_size, 1)
        if size > _RATIO_FLOOR and ratio > MAX_RATIO:
            raise TailorError(
                f"{where}: zip member {info.filename!r} inflates {ratio:.0f} times "
                f"({info.compress_size} -> {size} bytes; at most {MAX_RATIO}): a zip bomb?"
            )
        total += size
    if total > MAX_TOTAL_BYTES:
        raise TailorError(
            f"{where}: the zip's members declare {total} bytes uncompressed "
            f"(at most {MAX_TOTAL_BYTES} in all)"
        )


def read_member(z: zipfile.ZipFile, name: str, where: str) -> bytes:
    """Member ``name`` of a zip :func:`check_zip` accepted, read no further than its declared size.

    Raises:
        TailorError: the member inflates to more bytes than its directory entry says.
    """
    info = z.getinfo(name)
    check_zip([info], where)
    with z.open(info) as f:
        raw = f.read(info.file_size + 1)
    if len(raw) > info.file_size:
        raise TailorError(
            f"{where}: zip member {name!r} inflates beyond its declared {info.file_size} bytes"
        )
    return raw


def parse_sb3_data(raw: bytes, where: str) -> dict[str, Any]:
    """SB3's ``data`` member -> a dict whose fields tailor reads have the right types.

    The nesting depth is bounded before :func:`json.loads` (which recurses once per level).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TailorError(f"{where} is not UTF-8 text") from None
    if json_depth(text) > MAX_DEPTH:
        raise TailorError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TailorError(f"{where} is not valid JSON ({exc})") from None
    return validate_meta(data, SB3_DATA_SCHEMA, where)


def count(value: Any, what: str, where: str, lo: int = 1) -> int:
    """An integer field (an int, or its decimal text as old SB3 versions wrote ``n``) in
    ``[lo, MAX_DIM]``."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= MAX_DIM:
        raise TailorError(f"{where}: {what} is {value!r}, not an integer in [{lo}, {MAX_DIM}]")
    return value


def state_dict(obj: Any, where: str, what: str = "state dict") -> dict[str, torch.Tensor]:
    """``obj`` when it is a state dict: string keys, tensor values, none complex."""
    if not isinstance(obj, dict):
        raise TailorError(f"{where}: the {what} is a {type(obj).__name__}, not a dict of tensors")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TailorError(f"{where}: the {what} has a key {key!r} that is not a string")
        if not torch.is_tensor(value):
            raise TailorError(
                f"{where}: {what} entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        if value.is_complex():
            raise TailorError(f"{where}: {what} entry {key!r} is a complex tensor ({value.dtype})")
    return obj


def weight(
    state: dict[str, torch.Tensor], key: str, where: str, shape: Sequence[int] | None = None
) -> torch.Tensor:
    """``state[key]`` as float32: a real floating tensor, of ``shape`` when given."""
    if key not in state:
        raise TailorError(f"{where}: no tensor {key!r}")
    t = state[key]
    if not torch.is_tensor(t) or not t.is_floating_point():
        got = t.dtype if torch.is_tensor(t) else type(t).__name__
        raise TailorError(f"{where}: {key!r} is {got}, not a floating-point tensor")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise TailorError(f"{where}: {key!r} has shape {list(t.shape)}, expected {list(shape)}")
    return t.detach().float()


def log_std_vector(log_std: torch.Tensor, act_dim: int, where: str) -> torch.Tensor:
    """A state-independent log-std (``[A]``, CleanRL's ``[1, A]``) as a float32 vector ``[A]``."""
    if log_std.numel() != act_dim:
        raise TailorError(
            f"{where}: the log-std has {log_std.numel()} entries but the mean head gives "
            f"{act_dim} actions"
        )
    return log_std.detach().float().reshape(-1)


def scalar(state: dict[str, Any], key: str, where: str, default: float = 0.0) -> float:
    """A one-element tensor or a number (a normalizer's ``count``) as a finite float."""
    value = state.get(key, default)
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_complex():
        value = float(value.detach().reshape(-1)[0])  # e.g. SB3's log_ent_coef, a parameter
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
        raise TailorError(f"{where}: {key!r} is not one finite number")
    return float(value)


def linear(
    state: dict[str, torch.Tensor], name: str, where: str, bias_optional: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight [out, in], bias [out])`` of the ``Linear`` layer ``name``, float32; with
    ``bias_optional``, zeros for a layer saved without bias (``Linear(bias=False)``)."""
    w = weight(state, f"{name}.weight", where)
    if w.ndim != 2 or not (0 < w.shape[0] <= MAX_DIM and 0 < w.shape[1] <= MAX_DIM):
        raise TailorError(f"{where}: {name} is not a Linear layer (weight {list(w.shape)})")
    if bias_optional and f"{name}.bias" not in state:
        return w, torch.zeros(w.shape[0])
    return w, weight(state, f"{name}.bias", where, (w.shape[0],))


def check_chain(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], where: str) -> None:
    """Consecutive ``(weight, bias)`` layers chain: one's outputs are the next one's inputs."""
    for i in range(1, len(layers)):
        out, inp = layers[i - 1][0].shape[0], layers[i][0].shape[1]
        if out != inp:
            raise TailorError(
                f"{where}: layer {i} takes {inp} inputs but the layer before it gives {out}"
            )


def normalizer_halves(
    state: dict[str, torch.Tensor], first: str, second: str, size: int, where: str
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A normalizer's two statistics (``mean`` and ``std``/``var``) of size ``[size]``, or
    ``None`` when neither is present; one without the other is an error."""
    present = [k for k in (first, second) if k in state]
    if not present:
        return None
    if len(present) == 1:
        missing = second if present == [first] else first
        raise TailorError(f"{where}: the normalizer has {present[0]!r} but no {missing!r}")
    halves = (weight(state, first, where).reshape(-1), weight(state, second, where).reshape(-1))
    for key, t in zip((first, second), halves, strict=True):
        if t.numel() != size:
            raise TailorError(
                f"{where}: the normalizer's {key!r} has {t.numel()} entries, the network takes "
                f"{size} observations"
            )
    return halves


def _tensors(prior: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """The weights of a loaded prior: every module's parameters and buffers and the bare tensor
    attributes, except action bounds (a Box may be unbounded)."""
    for attr, value in vars(prior).items():
        if isinstance(value, nn.Module):
            for name, t in [*value.named_parameters(), *value.named_buffers()]:
                yield f"{attr}.{name}", t
        elif torch.is_tensor(value) and attr not in ("low", "high"):
            yield attr, value


def check_finite(prior: Any, where: str) -> None:
    """Refuse a prior with a NaN or infinite weight, naming the first one."""
    for name, t in _tensors(prior):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise TailorError(
                f"{where}: the prior's tensor {name} has {bad} NaN or infinite value(s) of "
                f"{t.numel()}; a prior must have finite weights"
            )
