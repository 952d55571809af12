"""``tailor tasks | train | customize | evaluate``: the PPO family on the command line.

Every bad input (unknown task or method, a prior whose spaces do not match, a truncated or
foreign checkpoint, a customization without a prior, a non-finite add-on reward, a loss that turns
NaN) raises :class:`tailor.errors.TailorError`, which ``tailor.cli.main`` prints as
``error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tailor.cli import args as argtypes
from tailor.cli.defaults import default_steps, steps_help
from tailor.errors import TailorError
from tailor.methods import CUSTOMIZATION_METHODS, METHODS, TRAINING_METHODS

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tasks", help="list the customization tasks and their definitions")
    _tasks_file(p)
    p.add_argument("--json", action="store_true", help="print the task list as JSON")
    p.set_defaults(func=cmd_tasks)

    p = subparsers.add_parser(
        "train",
        help="train a policy from scratch (PPO, or soft DQN / SAC with --algo)",
        description="Train a policy from scratch with PPO (default), soft DQN (--algo dqn, "
        "discrete actions) or SAC (--algo sac). --method: "
        + "; ".join(f"{m}: {METHODS[m].summary}" for m in TRAINING_METHODS),
    )
    p.add_argument("--task", help="task name (see `tailor tasks`)")
    p.add_argument("--algo", choices=("ppo", "dqn", "sac"), default="ppo", help="default ppo")
    p.add_argument(
        "--method", metavar="{" + ",".join(TRAINING_METHODS) + "}", help="training method"
    )
    p.add_argument(
        "--std-type",
        choices=("global", "state"),
        help="global (state-independent, default) or state-dependent action std",
    )
    p.add_argument(
        "--alpha",
        type=argtypes.nonnegative,
        help="entropy coefficient (default: the task's paper coefficient; for a task without "
        "one, tailor's default temperature 0.01)",
    )
    _common_train(p, "train")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "customize",
        help="customize a prior policy to the task's add-on reward",
        description="Customize a prior to the add-on reward with PPO (default) or, with --algo, "
        "residual soft DQN, residual SAC or residual max-entropy MCTS (online, no training; "
        "needs a Q-network prior: a tailor DQN run or SB3 DQN). --method: "
        + "; ".join(f"{m}: {METHODS[m].summary}" for m in CUSTOMIZATION_METHODS),
    )
    p.add_argument("--task", help="task name (see `tailor tasks`)")
    p.add_argument(
        "--prior",
        type=argtypes.prior_path,
        help="the prior: a run directory or its policy.safetensors, or a policy from another "
        "library (SB3 .zip, rsl-rl, CleanRL or skrl .pt; see `tailor inspect`)",
    )
    add_prior_arguments(p)
    p.add_argument(
        "--algo",
        choices=("ppo", "dqn", "sac", "mcts"),
        help="default: from the prior's kind (ppo for a Gaussian policy, sac for a "
        "tanh-squashed one such as SB3 SAC/TQC, dqn for a Q-network or categorical one)",
    )
    p.add_argument(
        "--method",
        metavar="{" + ",".join(CUSTOMIZATION_METHODS) + "}",
        help="customization method (default residual)",
    )
    p.add_argument(
        "--omega-prime",
        type=argtypes.finite,  # any finite weight (RewardSpec); negative pushes away from the prior
        help="weight of log pi_prior (default: omega * alpha, alpha the prior's temperature, "
        "unless the task's coefficient was made for a prior at alpha or alpha is unknown: then "
        "the task's coefficient, or tailor's default 0.01)",
    )
    p.add_argument(
        "--alpha-hat",
        type=argtypes.nonnegative,
        help="entropy temperature of the customized policy (default: the prior's temperature "
        "alpha, with the same exceptions as --omega-prime)",
    )
    p.add_argument(
        "--omega",
        type=argtypes.nonnegative,
        help="--method residual: weight of the prior's own task, omega' = omega * alpha with "
        "alpha the prior's temperature (default 1 when the temperature rule applies)",
    )
    p.add_argument(
        "--warmup-fraction",
        type=argtypes.fraction,
        help="fraction of the steps that fit the fresh critic alone (default 0.05)",
    )
    _common_train(p, "customize")
    p.set_defaults(func=cmd_customize)

    p = subparsers.add_parser("evaluate", help="evaluate a policy: total, basic, add-on, statistic")
    p.add_argument(
        "--policy",
        required=True,
        type=argtypes.prior_path,
        help="a run directory or its policy.safetensors, or a policy from another library (an "
        "SB3 zip, an rsl-rl/CleanRL/skrl checkpoint, a TorchScript export; --prior-* options)",
    )
    p.add_argument("--task", help="task name (default: the task the policy was trained on)")
    p.add_argument(
        "--episodes", type=argtypes.count, default=10, help="number of episodes (default 10)"
    )
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the episodes (default 0)")
    p.add_argument(
        "--stochastic",
        action="store_true",
        help="sample actions instead of taking the Gaussian's mean",
    )
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    argtypes.add_overwrite(p, "the --json file")
    p.add_argument(
        "--best",
        action="store_true",
        help="PPO runs: also evaluate the best policy snapshot, chosen on 5 selection episodes "
        "of other seeds (the paper reports best checkpoints); the JSON gets 'best'",
    )
    add_prior_arguments(p)
    _tasks_file(p)
    p.set_defaults(func=cmd_evaluate)


def add_prior_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--prior-*`` options of :func:`tailor.priors.load_prior` (imported priors)."""
    p.add_argument("--prior-format", choices=prior_formats(), help="skip format detection")
    p.add_argument(
        "--prior-normalizer",
        metavar="PATH",
        help="observation statistics of an imported prior: SB3 vecnormalize.pkl (default: the "
        "one beside the zip) or a .npz/safetensors with mean and var (CleanRL)",
    )
    p.add_argument(
        "--prior-std",
        type=argtypes.positive,
        metavar="SIGMA",
        help="std of the Gaussian around a deterministic prior's action (SB3 TD3/DDPG)",
    )
    p.add_argument(
        "--prior-temperature",
        type=argtypes.positive,
        metavar="TAU",
        help="temperature of softmax(Q/TAU) for a Q-network prior (SB3 DQN)",
    )
    p.add_argument(
        "--prior-activation",
        metavar="NAME",
        help="hidden activation of an imported prior when its files do not say (e.g. rsl-rl "
        "without params/agent.yaml): elu, tanh, relu, ...",
    )


def prior_formats() -> tuple[str, ...]:
    """:data:`tailor.priors.detect.FORMATS`, read from that module's source: importing it
    imports torch, which building the parser (``tailor --help``) should not."""
    import ast

    import tailor

    source = (Path(tailor.__file__).parent / "priors" / "detect.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "FORMATS" for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("tailor.priors.detect defines no FORMATS")  # pragma: no cover


def prior_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--prior-*`` values as :func:`tailor.priors.load_prior` keyword arguments."""
    return {
        "format": getattr(args, "prior_format", None),
        "normalizer": getattr(args, "prior_normalizer", None),
        "std": getattr(args, "prior_std", None),
        "temperature": getattr(args, "prior_temperature", None),
        "activation": getattr(args, "prior_activation", None),
    }


def _tasks_file(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tasks-file",
        metavar="FILE.py",
        help="a Python file that registers more tasks (tailor.envs.register_task)",
    )


def _common_train(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--steps", type=argtypes.count, help=steps_help(command))
    p.add_argument("--seed", type=argtypes.seed, help="random seed (default 0)")
    p.add_argument(
        "--out",
        help="run directory to write (policy, metrics.csv, checkpoints; default: a new "
        "runs/<task>/<method>-<seed>-<YYYYmmdd-HHMMSS>)",
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR up to --steps (default: the run's own total)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run or model already in --out (by default it is refused)",
    )
    p.add_argument(
        "--num-envs", type=argtypes.count, help="parallel environments (default: PPOConfig's)"
    )
    p.add_argument(
        "--checkpoint-every",
        type=argtypes.count,
        help="iterations between checkpoints (default 50; on --resume: the run's)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--help-config",
        action="store_true",
        help="list every field of the --algo's config (PPOConfig, SoftDQNConfig, SACConfig, "
        "MCTSConfig): each is a flag too, e.g. --num-epochs 3 --hidden 32 32",
    )
    p.set_defaults(config_flags=True)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--algo dqn|sac|mcts: set a field of SoftDQNConfig / SACConfig / MCTSConfig "
        "(repeatable; VALUE is read as JSON, else as text), e.g. --set her_k=4 "
        "--set hidden=[128,128]",
    )
    _tasks_file(p)


# Defaults of the train/customize flags whose argparse default is None, so that `--resume` can
# tell a flag the user gave from one left at its default (only given flags are compared).
_FLAG_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "std_type": "global",
    "warmup_fraction": 0.05,
    "checkpoint_every": 50,
}
# Flags a resumed PPO run takes from its checkpoint: dest -> (flag, PPOConfig field).
_RESUME_CONFIG_FLAGS: dict[str, tuple[str, str]] = {
    "seed": ("--seed", "seed"),
    "std_type": ("--std-type", "std_type"),
    "num_envs": ("--num-envs", "num_envs"),
    "warmup_fraction": ("--warmup-fraction", "critic_warmup_fraction"),
}
# Coefficient flags: dest -> (flag, coefficient name of the method).
_RESUME_COEFFICIENT_FLAGS: dict[str, tuple[str, str]] = {
    "alpha": ("--alpha", "alpha"),
    "omega_prime": ("--omega-prime", "omega_prime"),
    "alpha_hat": ("--alpha-hat", "alpha_hat"),
}


def _given_flags(args: argparse.Namespace) -> set[str]:
    """The destinations of the defaulted flags the user gave, then fill in their defaults."""
    given = set()
    for dest, default in _FLAG_DEFAULTS.items():
        if getattr(args, dest, None) is not None:
            given.add(dest)
        elif hasattr(args, dest):
            setattr(args, dest, default)
    return given


def _settings(pairs: list[str]) -> dict[str, Any]:
    """``["gamma=0.95", "hidden=[128,128]"]`` -> ``{"gamma": 0.95, "hidden": [128, 128]}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TailorError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


# ---- tasks --------------------------------------------------------------------------------------


def cmd_tasks(args: argparse.Namespace) -> int:
    from tailor.envs import list_tasks

    _load_tasks(args)
    described = [t.describe() for t in list_tasks()]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for d in described:
        print(f"{d['name']}  ({d['env_id']})")
        if d["description"]:
            print(f"    {d['description']}")
        print(f"    add-on reward: {d['addon']}")
        print(f"    statistic:     {d['statistic']}")
        if d["coefficients"]:
            coefs = ", ".join(
                f"{m}: " + (" ".join(f"{k}={v:g}" for k, v in c.items()) or "-")
                for m, c in d["coefficients"].items()
            )
            print(f"    coefficients:  {coefs}")
    return 0


# ---- train / customize --------------------------------------------------------------------------


def _load_tasks(args: argparse.Namespace) -> None:
    if getattr(args, "tasks_file", None):
        from tailor.experiments.run import load_user_tasks

        load_user_tasks(args.tasks_file)


def _check_steps(args: argparse.Namespace) -> None:
    if isinstance(args.steps, int) and args.steps < 1:
        raise TailorError(
            f"--steps must be a positive number of environment steps, got {args.steps}"
        )


def _config_settings(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` plus the config fields given as flags (``--num-epochs 3``, tyro)."""
    from tailor.experiments.run import config_flags

    argv = list(getattr(args, "extra", []))
    if getattr(args, "help_config", False):
        argv.append("--help")
    if not argv:
        return base
    # The defaults shown are the ones --steps and --seed give: never one that is then refused.
    steps = args.steps if args.steps is not None else default_steps(args.command, args.algo)
    seeded = {"total_steps": steps, "seed": args.seed, **base}
    prog = f"tailor {args.command} --algo {args.algo}"
    return {**base, **config_flags(args.algo, argv, seeded, prog=prog)}


def _ppo_settings(args: argparse.Namespace, given: set[str]) -> dict[str, Any]:
    """PPOConfig fields from the flags (``given``: the defaulted flags the user typed)."""
    out: dict[str, Any] = {"std_type": getattr(args, "std_type", "global")}
    if "checkpoint_every" in given:  # left out, a rule may choose it (else PPOConfig's 50)
        out["checkpoint_every"] = args.checkpoint_every
    if args.num_envs is not None:
        out["num_envs"] = args.num_envs
    if getattr(args, "warmup_fraction", None) is not None:
        out["critic_warmup_fraction"] = args.warmup_fraction
    return out


def _resume_changes(
    args: argparse.Namespace, given: set[str], run_dir: Path, info: dict[str, Any]
) -> dict[str, Any]:
    """The config changes a resume may make (``tensorboard`` and ``num_workers`` through their
    config flags); raise naming every flag the user gave that would change what the saved run
    trains."""
    from tailor.experiments import run

    config = info["config"]
    changed: list[str] = []
    for dest, (flag, name) in _RESUME_CONFIG_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None and (dest in given or dest not in _FLAG_DEFAULTS):
            if value != getattr(config, name):
                changed.append(f"{flag} {value} (the run has {getattr(config, name)!r})")
    for dest, (flag, name) in _RESUME_COEFFICIENT_FLAGS.items():
        value = getattr(args, dest, None)
        saved = info["coefficients"].get(name)
        if value is not None and value != saved:
            changed.append(f"{flag} {value} (the run has {name}={saved!r})")
    for flag, value in (("--prior", getattr(args, "prior", None)), *_prior_flags(args)):
        if value is not None:
            changed.append(f"{flag} (the run continues from its copy of the prior)")
    flags = run.config_flags("ppo", list(args.extra), config.to_json()) if args.extra else {}
    # A flag typed with the run's own value changes nothing.
    flags = {k: v for k, v in flags.items() if v != getattr(config, k)}
    mutable = {k: v for k, v in flags.items() if k in ("tensorboard", "num_workers")}
    changed.extend(
        f"--{k.replace('_', '-')} {_shown(v)} (the run has {_shown(getattr(config, k))})"
        for k, v in flags.items()
        if k not in mutable
    )
    if changed:
        raise TailorError(
            f"cannot resume {str(run_dir)!r} with another config: "
            + "; ".join(changed)
            + ". A resume continues the saved run as it was set up (only --steps, "
            "--checkpoint-every, --tensorboard and --num-workers may change); start a new run "
            "with --out to train with other settings"
        )
    return mutable


def _shown(value: Any) -> str:
    """A config value as the user would type it (``(32, 32)`` -> ``32 32``)."""
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return repr(value) if isinstance(value, str) else str(value)


def _prior_flags(args: argparse.Namespace) -> list[tuple[str, Any]]:
    return [("--prior-" + k, v) for k, v in prior_options(args).items()]


def _resume(args: argparse.Namespace, customization: bool, given: set[str]) -> int:
    from tailor.experiments import run

    run_dir = Path(args.resume)
    if args.out and Path(args.out).resolve() != run_dir.resolve():
        raise TailorError(
            "--resume continues the run in its own directory; drop --out or give the same directory"
        )
    info = run.read_ppo_run(run_dir)
    for flag, value, saved in (
        ("--task", args.task, info["task"]),
        ("--method", args.method, info["method"]),
    ):
        if value is not None and value != saved:
            raise TailorError(
                f"{flag} {value} does not match the run in {str(run_dir)!r} ({saved})"
            )
    if METHODS[info["method"]].customization != customization:
        other = "customize" if METHODS[info["method"]].customization else "train"
        raise TailorError(
            f"{str(run_dir)!r} is a {info['method']!r} run; "
            f"resume it with `tailor {other} --resume`"
        )
    changes = _resume_changes(args, given, run_dir, info)
    every = args.checkpoint_every if "checkpoint_every" in given else None
    steps = args.steps if args.steps is not None else info["config"].total_steps
    _slow_path_notice(info["task"])
    run.resume(run_dir, steps, checkpoint_every=every, progress=not args.no_progress, **changes)
    return 0


def _start(args: argparse.Namespace, customization: bool) -> int:
    """``tailor train`` / ``tailor customize``: every --algo through tailor.experiments.run."""
    from tailor.experiments import run

    given = _given_flags(args)
    if args.algo is None:  # `customize` without --algo: the prior's kind says
        args.algo = _algo_from_prior(args)
    if args.help_config:
        _config_settings(args, {})  # prints every config field and exits
    _load_tasks(args)
    ppo = args.algo == "ppo"
    if ppo and args.set:
        raise TailorError(
            "--set sets SoftDQNConfig/SACConfig/MCTSConfig fields: use it with --algo dqn|sac|mcts"
        )
    _check_steps(args)
    if args.resume:
        if not ppo:
            raise TailorError(f"--resume is only supported with --algo ppo, not {args.algo}")
        if args.overwrite:
            raise TailorError("--resume continues a run and --overwrite replaces it: pass one")
        return _resume(args, customization, given)
    if not args.task:
        raise TailorError("--task is required (see `tailor tasks`)")
    if args.steps is None:
        args.steps = default_steps(args.command, args.algo)
    settings = _config_settings(args, _ppo_settings(args, given) if ppo else _settings(args.set))
    for field, flag in (("total_steps", "--steps"), ("seed", "--seed")):
        if field in settings:
            raise TailorError(f"set {field} with {flag}")
    progress = {"progress": not args.no_progress} if ppo else {}
    if customization and args.method is None:
        args.method = "residual"  # the method of the paper; --method kl / greedy are baselines
    if ppo:
        run.check_method_kind(args.method, customization)
    imported = {k: v for k, v in prior_options(args).items() if v is not None}
    if customization:
        method = args.method or "residual"
        if not args.prior:
            if ppo:
                raise TailorError(
                    f"method {method!r} customizes a prior policy: pass "
                    "--prior RUN_DIR (or its policy.safetensors)"
                )
            raise TailorError(f"--algo {args.algo} customizes a prior: pass --prior RUN_DIR")
        _default_out(args, "residual" if args.algo == "mcts" else method)
        if ppo:
            _slow_path_notice(args.task)
        out = run.customize(
            args.task,
            args.algo,
            args.prior,
            args.steps,
            args.seed,
            args.out,
            args.omega_prime,
            args.alpha_hat,
            method=method,
            omega=args.omega,
            overwrite=args.overwrite,
            prior_options=imported,
            **progress,
            **settings,
        )
    else:
        _default_out(args, args.method or "soft")
        if ppo:
            _slow_path_notice(args.task)
        out = run.train_prior(
            args.task,
            args.algo,
            args.steps,
            args.seed,
            args.out,
            method=args.method or "soft",
            alpha=args.alpha,
            overwrite=args.overwrite,
            **progress,
            **settings,
        )
    if not ppo:
        print(f"saved {out}")
    return 0


def _algo_from_prior(args: argparse.Namespace) -> str:
    """``--algo`` for a ``customize`` without one: the prior's kind, said in one line; ``ppo``
    (the default before) for a ``--resume``, without a ``--prior`` or when the prior cannot be
    read: the run then reports that as it did, after the cheaper checks of the other flags."""
    if args.resume or not args.prior:
        return "ppo"
    from tailor.experiments.algo_choice import algo_for_prior

    try:
        algo = algo_for_prior(args.prior, prior_options(args))
    except TailorError:
        return "ppo"
    print(f"--algo {algo} (from the prior's kind; pass --algo to choose)")
    return algo


def _slow_path_notice(task_name: str) -> None:
    """One line on stderr when a PPO run's task has no fast path (the gymnasium loop)."""
    from tailor.envs import get_task
    from tailor.envs.backends import SLOW_PATH_NOTICE, has_fast_path

    task = get_task(task_name)
    if not has_fast_path(task):
        print(SLOW_PATH_NOTICE.format(task=task.name), file=sys.stderr)


def _default_out(args: argparse.Namespace, method: str) -> None:
    """Without ``--out``: a new runs/<task>/<method>-<seed>-<time> (``<algo>-<method>`` for
    DQN/SAC/MCTS), never an existing directory, said in one line."""
    if args.out:
        return
    from tailor.cli.defaults import new_run_dir

    name = method if args.algo == "ppo" else f"{args.algo}-{method}"
    args.out = str(new_run_dir(args.task, name, args.seed))
    print(f"run directory: {args.out}")


def cmd_train(args: argparse.Namespace) -> int:
    return _start(args, customization=False)


def cmd_customize(args: argparse.Namespace) -> int:
    return _start(args, customization=True)


# ---- evaluate -----------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tailor.experiments import run
    from tailor.output import write_json

    _load_tasks(args)
    if args.episodes < 1:
        raise TailorError(f"--episodes must be >= 1, got {args.episodes}")
    if args.json:
        argtypes.check_output_arg(args, args.json)  # before the episodes; not in the run
    kind = run.policy_kind(args.policy)
    result = run.evaluate(
        args.policy,
        args.task,
        args.episodes,
        args.seed,
        deterministic=not args.stochastic,
        prior_options=prior_options(args),
    )
    rows = [
        ("total", "total (basic + add-on)"),
        ("basic", "basic return"),
        ("addon", "add-on return"),
        ("statistic", result["statistic_name"]),
    ]
    if kind in (None, "ppo"):
        mode = "stochastic" if args.stochastic else "deterministic (mean action)"
        if result.get("algo") == "prior":  # an imported Q / categorical prior, Discrete actions
            mode = "greedy (argmax action)"
        print(f"{args.policy} on {result['task']}: {result['episodes']} episodes, {mode}")
    else:
        print(
            f"{args.policy} ({result['algo']}, {result['method']}) on {result['task']}: "
            f"{result['episodes']} episodes"
        )
        rows.append(("length", "episode length"))
    for key, label in rows:
        print(f"  {label:<24} {result[key]['mean']:>10.3f} +- {result[key]['std']:.3f}")
    if kind not in (None, "ppo"):
        print(f"  {'success rate':<24} {result['success_rate']:>10.3f}")
    if args.best:
        best = run.best_checkpoint(
            args.policy, args.task, seed=args.seed + run.SELECTION_SEED_OFFSET
        )
        ev = run.evaluate(best["policy"], args.task, args.episodes, args.seed)
        result["best"] = {**best, "eval": ev}
        print(f"  best snapshot: step {best['step']:,} of {best['last_step']:,} (same episodes)")
        for key, label in rows:
            print(f"  {label:<24} {ev[key]['mean']:>10.3f} +- {ev[key]['std']:.3f}")
    if args.json:
        write_json(args.json, result)
        print(f"  wrote {args.json}")
    return 0
