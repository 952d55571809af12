"""The deterministic policy of a prior as an ONNX / TorchScript file (``tailor export``).

Kept apart from :mod:`tailor.cli.export` so that registering the command imports no torch.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tailor.cli.export import EXPORT_FORMATS
from tailor.errors import TailorError
from tailor.output import write_bytes

__all__ = ["DeterministicPolicy", "export_policy"]


class DeterministicPolicy(nn.Module):
    """``obs [B, D]`` (raw) -> ``prior.act(obs, deterministic=True)``, as an ``nn.Module``.

    The prior's modules (normalizer, networks) are registered as sub-modules so that their
    tensors are exported as weights; the prior must not be changed afterwards.
    """

    def __init__(self, prior: Any) -> None:
        super().__init__()
        self.prior = prior
        for name, value in vars(prior).items():
            if isinstance(value, nn.Module):
                self.add_module(name, value)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.prior.act(obs, deterministic=True)


def export_policy(prior: Any, fmt: str, out: str | Path) -> Path:
    """Write the deterministic policy of ``prior`` to ``out`` as ONNX or TorchScript.

    ONNX: input ``obs`` ``[batch, D]`` float32, output ``action``, dynamic batch axis.
    TorchScript: ``torch.jit.trace`` of :class:`DeterministicPolicy` (load with
    ``torch.jit.load``).

    The file is made in memory and written by :func:`tailor.output.write_bytes` (atomically: a
    full disk leaves the old file as it was, and is an error, not libtorch's abort).

    Raises:
        TailorError: unknown format, the exporter failed, or no space left on the disk.
    """
    if fmt not in EXPORT_FORMATS:
        raise TailorError(f"unknown export format {fmt!r}; one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    # A tailor DQN / SAC run's acting module already is one; a prior gets wrapped.
    module = prior if isinstance(prior, nn.Module) else DeterministicPolicy(prior)
    module.eval()
    example = torch.zeros(2, prior.obs_dim)
    try:
        # The TorchScript-based exporters are deprecated in favour of torch.export, which takes
        # seconds per export and prints progress; these graphs are plain MLPs, traced exactly.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if fmt == "torchscript":
                traced = torch.jit.trace(module, (example,), check_trace=False)
                data = traced.save_to_buffer()
            else:
                buf = io.BytesIO()
                torch.onnx.export(
                    module,
                    (example,),
                    buf,
                    input_names=["obs"],
                    output_names=["action"],
                    dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                    dynamo=False,
                )
                data = buf.getvalue()
    except (RuntimeError, ValueError, TypeError) as exc:
        raise TailorError(f"exporting to {fmt} failed: {exc}") from None
    return write_bytes(out, data)
