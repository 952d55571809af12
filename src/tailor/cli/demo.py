"""``tailor demo``: the README's main job (see :mod:`tailor.experiments.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tailor.errors import TailorError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: customize the shipped HalfCheetah prior with Residual PPO",
        description="Checks the theory on fresh Garnets (a few seconds), customizes the shipped "
        "Soft-PPO HalfCheetah prior with Residual PPO so that it keeps its hind thigh straighter, "
        "evaluates prior and customized policy side by side and saves the learning curve.",
    )
    p.add_argument("--out", type=Path, default=Path("tailor-demo"), help="output directory")
    p.add_argument(
        "--prior",
        type=Path,
        default=Path("priors/halfcheetah"),
        help="the prior's run directory or policy.safetensors",
    )
    p.add_argument("--method", default="residual", choices=("residual", "kl", "greedy"))
    p.add_argument(
        "--omega-prime",
        type=float,
        default=0.1,
        help="weight of log pi_prior (default 0.1; the paper's is 0.17, see the README)",
    )
    p.add_argument(
        "--alpha-hat",
        type=float,
        default=0.08,
        help="temperature of the customized policy (default 0.08; kl uses it as beta)",
    )
    p.add_argument(
        "--paper-coefficients",
        action="store_true",
        help="use the paper's coefficients for the task instead",
    )
    p.add_argument("--steps", type=int, default=600_000, help="customization steps")
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes per policy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-verify", action="store_true", help="skip the quick theory check")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from tailor.experiments.demo import DemoConfig, run_demo

    if args.steps < 1 or args.episodes < 1:
        raise TailorError("--steps and --episodes must be positive")
    run_demo(
        DemoConfig(
            out=args.out,
            prior=args.prior,
            method=args.method,
            steps=args.steps,
            episodes=args.episodes,
            seed=args.seed,
            verify=not args.no_verify,
            progress=not args.no_progress,
        )
    )
    return 0
