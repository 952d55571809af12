"""``tailor demo``: the README's main job (see :mod:`tailor.experiments.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tailor.cli import args as argtypes
from tailor.errors import TailorError
from tailor.methods import CUSTOMIZATION_METHODS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: customize a shipped prior (Residual vs KL PPO) and show the effect",
        description="Checks the theory on fresh Garnets (a few seconds), customizes the shipped "
        "Soft-PPO Ant prior to walk sideways with Residual PPO and, beside it, KL PPO (one "
        "process each), evaluates the prior and both policies on the same episodes, prints them "
        "side by side with the change against the prior, and saves the evaluations, the learning "
        "curves and a side-by-side video. --task halfcheetah-hindleg or hopper-jump for the "
        "other shipped priors.",
    )
    p.add_argument("--out", type=Path, default=Path("tailor-demo"), help="output directory")
    p.add_argument("--task", default="ant-sideways", help="task (default ant-sideways)")
    p.add_argument(
        "--prior",
        type=Path,
        default=None,
        help="the prior's run directory or policy.safetensors (default: the task's shipped one)",
    )
    p.add_argument("--method", default="residual", choices=CUSTOMIZATION_METHODS)
    p.add_argument(
        "--baseline",
        default="kl",
        choices=(*CUSTOMIZATION_METHODS, "none"),
        help="a second method run beside it with the paper's coefficients (default kl)",
    )
    p.add_argument(
        "--omega-prime",
        type=argtypes.nonnegative,
        default=None,
        help="weight of log pi_prior (default: the demo's choice for the task, see the README)",
    )
    p.add_argument(
        "--alpha-hat",
        type=argtypes.nonnegative,
        default=None,
        help="temperature of the customized policy (kl uses it as beta)",
    )
    p.add_argument(
        "--paper-coefficients",
        action="store_true",
        help="use the paper's coefficients for the task instead",
    )
    p.add_argument(
        "--steps", type=argtypes.count, default=None, help="customization steps of each method"
    )
    p.add_argument(
        "--episodes", type=argtypes.count, default=20, help="evaluation episodes per policy"
    )
    p.add_argument("--seed", type=argtypes.seed, default=0)
    p.add_argument(
        "--workers", type=argtypes.count, default=2, help="processes (default 2: one per core)"
    )
    p.add_argument("--no-verify", action="store_true", help="skip the quick theory check")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-video", action="store_true", help="skip the side-by-side video")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from tailor.experiments.demo import DemoConfig, run_demo

    if (args.steps is not None and args.steps < 1) or args.episodes < 1 or args.workers < 1:
        raise TailorError("--steps, --episodes and --workers must be positive")
    if args.paper_coefficients and (args.omega_prime is not None or args.alpha_hat is not None):
        raise TailorError("--paper-coefficients takes no --omega-prime / --alpha-hat")
    run_demo(
        DemoConfig(
            out=args.out,
            task=args.task,
            prior=args.prior,
            method=args.method,
            baseline=None if args.baseline == "none" else args.baseline,
            omega_prime=args.omega_prime,
            alpha_hat=args.alpha_hat,
            paper_coefficients=args.paper_coefficients,
            steps=args.steps,
            episodes=args.episodes,
            seed=args.seed,
            workers=args.workers,
            verify=not args.no_verify,
            progress=not args.no_progress,
            video=not args.no_video,
        )
    )
    return 0
