"""``tailor export POLICY --format onnx|torchscript --out F``: the deterministic policy as one file.

The exported graph maps raw observations ``obs [B, D]`` (float32) to the deterministic action
``action [B, A]`` (the Gaussian's mean, the squashed mean of a SAC actor, ``argmax Q`` as int64
``[B]`` for a Q-network; a residual DQN run: ``argmax Q_R + omega' log pi_prior``, as it is
evaluated): the observation normalizer is baked in, so the file runs on what the environment
returns. POLICY is a tailor run of any kind but MCTS (which searches at every step), or anything
``tailor customize --prior`` takes (an imported SB3 / rsl-rl / CleanRL / skrl / TorchScript
policy with the same ``--prior-*`` options).
"""

from __future__ import annotations

import argparse
from typing import Any

from tailor.cli.args import add_overwrite, check_output_arg, prior_path
from tailor.errors import TailorError

__all__ = ["register"]

EXPORT_FORMATS = ("onnx", "torchscript")


def register(subparsers: argparse._SubParsersAction) -> None:
    from tailor.cli.rl import add_prior_arguments

    p = subparsers.add_parser(
        "export",
        help="export a policy's deterministic action (normalizer baked in) to ONNX/TorchScript",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument(
        "policy",
        metavar="POLICY",
        type=prior_path,
        nargs="?",
        help="a run directory, policy file or prior file",
    )
    p.add_argument(  # as `tailor evaluate --policy` and `tailor video --policy` take it
        "--policy", dest="policy_flag", metavar="POLICY", type=prior_path, help="the same as POLICY"
    )
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True, dest="export_format")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    add_overwrite(p, "the --out file")
    add_prior_arguments(p)
    p.set_defaults(func=cmd_export)


def __getattr__(name: str) -> Any:
    """``DeterministicPolicy`` / ``export_policy`` live in :mod:`tailor.cli.exporter` (torch),
    imported on first use so that building the parser imports no torch."""
    if name in ("DeterministicPolicy", "export_policy"):
        from tailor.cli import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cmd_export(args: argparse.Namespace) -> int:
    from tailor.cli.exporter import export_policy
    from tailor.cli.rl import prior_options
    from tailor.experiments.evaluation import policy_module
    from tailor.policyfile import RQL_KINDS, policy_kind
    from tailor.priors import load_prior

    if (args.policy is None) == (args.policy_flag is None):
        raise TailorError("give the policy once: tailor export POLICY or --policy POLICY")
    args.policy, args.policy_flag = args.policy or args.policy_flag, None
    check_output_arg(args, args.out, what="--out")  # not the policy itself, nor an existing file
    if policy_kind(args.policy) in RQL_KINDS:  # a tailor DQN / SAC run: how it acts
        given = [k for k, v in prior_options(args).items() if v is not None]
        if given:
            raise TailorError(f"--prior-{given[0]} only applies to priors from other libraries")
        prior = policy_module(args.policy)
    else:
        prior = load_prior(args.policy, **prior_options(args))
    path = export_policy(prior, args.export_format, args.out)
    print(
        f"wrote {path} ({args.export_format}): obs [batch, {prior.obs_dim}] -> deterministic "
        "action, observation normalizer included"
    )
    return 0
