"""``tailor export POLICY --format onnx|torchscript --out F``: the deterministic policy as one file.

The exported graph maps raw observations ``obs [B, D]`` (float32) to the deterministic action
``action [B, A]`` (the Gaussian's mean, the squashed mean of a SAC actor, ``argmax Q`` as int64
``[B]`` for a Q-network): the observation normalizer is baked in, so the file runs on what the
environment returns. POLICY is anything ``tailor customize --prior`` takes (a tailor run, or an
imported SB3 / rsl-rl / CleanRL policy with the same ``--prior-*`` options).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tailor.errors import TailorError

__all__ = ["DeterministicPolicy", "export_policy", "register"]

EXPORT_FORMATS = ("onnx", "torchscript")


def register(subparsers: argparse._SubParsersAction) -> None:
    from tailor.cli.rl import add_prior_arguments

    p = subparsers.add_parser(
        "export",
        help="export a policy's deterministic action (normalizer baked in) to ONNX/TorchScript",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("policy", metavar="POLICY", help="a run directory, policy file or prior file")
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True, dest="export_format")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    add_prior_arguments(p)
    p.set_defaults(func=cmd_export)


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

    Raises:
        TailorError: unknown format, or the exporter failed.
    """
    if fmt not in EXPORT_FORMATS:
        raise TailorError(f"unknown export format {fmt!r}; one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = DeterministicPolicy(prior).eval()
    example = torch.zeros(2, prior.obs_dim)
    try:
        # The TorchScript-based exporters are deprecated in favour of torch.export, which takes
        # seconds per export and prints progress; these graphs are plain MLPs, traced exactly.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if fmt == "torchscript":
                traced = torch.jit.trace(module, (example,), check_trace=False)
                traced.save(str(out))
            else:
                torch.onnx.export(
                    module,
                    (example,),
                    str(out),
                    input_names=["obs"],
                    output_names=["action"],
                    dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                    dynamo=False,
                )
    except (RuntimeError, ValueError, TypeError) as exc:
        raise TailorError(f"exporting to {fmt} failed: {exc}") from None
    return out


def cmd_export(args: argparse.Namespace) -> int:
    from tailor.cli.rl import prior_options
    from tailor.priors import load_prior

    prior = load_prior(args.policy, **prior_options(args))
    path = export_policy(prior, args.export_format, args.out)
    print(
        f"wrote {path} ({args.export_format}): obs [batch, {prior.obs_dim}] -> deterministic "
        "action, observation normalizer included"
    )
    return 0
