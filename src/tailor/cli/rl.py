"""``tailor tasks | train | customize | evaluate``: the PPO family on the command line.

Every bad input (unknown task or method, a prior whose spaces do not match, a truncated or
foreign checkpoint, a customization without a prior, a non-finite add-on reward, a loss that turns
NaN) raises :class:`tailor.errors.TailorError`, which ``tailor.cli.main`` prints as
``error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.methods import CUSTOMIZATION_METHODS, METHODS, TRAINING_METHODS, Method, resolve

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
        default="global",
        help="global (state-independent, default) or state-dependent action std",
    )
    p.add_argument(
        "--alpha", type=float, help="entropy coefficient (default: the task's paper coefficient)"
    )
    _common_train(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "customize",
        help="customize a prior policy to the task's add-on reward",
        description="Customize a prior to the add-on reward with PPO (default) or, with --algo, "
        "residual soft DQN, residual SAC or residual max-entropy MCTS (online, no training; "
        "needs a DQN prior). --method: "
        + "; ".join(f"{m}: {METHODS[m].summary}" for m in CUSTOMIZATION_METHODS),
    )
    p.add_argument("--task", help="task name (see `tailor tasks`)")
    p.add_argument(
        "--prior",
        help="the prior: a run directory or its policy.safetensors, or a policy from another "
        "library (SB3 .zip, rsl-rl, CleanRL or skrl .pt; see `tailor inspect`)",
    )
    add_prior_arguments(p)
    p.add_argument(
        "--algo", choices=("ppo", "dqn", "sac", "mcts"), default="ppo", help="default ppo"
    )
    p.add_argument(
        "--method", metavar="{" + ",".join(CUSTOMIZATION_METHODS) + "}", help="customization method"
    )
    p.add_argument(
        "--omega-prime",
        type=float,
        help="weight of log pi_prior (default: the task's paper coefficient)",
    )
    p.add_argument(
        "--alpha-hat",
        type=float,
        help="entropy temperature of the customized policy (default: the task's)",
    )
    p.add_argument(
        "--warmup-fraction",
        type=float,
        default=0.05,
        help="fraction of the steps that fit the fresh critic alone (default 0.05)",
    )
    _common_train(p)
    p.set_defaults(func=cmd_customize)

    p = subparsers.add_parser("evaluate", help="evaluate a policy: total, basic, add-on, statistic")
    p.add_argument("--policy", required=True, help="a run directory or its policy.safetensors")
    p.add_argument("--task", help="task name (default: the task the policy was trained on)")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes (default 0)")
    p.add_argument(
        "--stochastic",
        action="store_true",
        help="sample actions instead of taking the Gaussian's mean",
    )
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    _tasks_file(p)
    p.set_defaults(func=cmd_evaluate)


def add_prior_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--prior-*`` options of :func:`tailor.priors.load_prior` (imported priors)."""
    from tailor.priors.detect import FORMATS

    p.add_argument("--prior-format", choices=FORMATS, help="skip format detection")
    p.add_argument(
        "--prior-normalizer",
        metavar="PATH",
        help="observation statistics of an imported prior: SB3 vecnormalize.pkl (default: the "
        "one beside the zip) or a .npz/safetensors with mean and var (CleanRL)",
    )
    p.add_argument(
        "--prior-std",
        type=float,
        metavar="SIGMA",
        help="std of the Gaussian around a deterministic prior's action (SB3 TD3/DDPG)",
    )
    p.add_argument(
        "--prior-temperature",
        type=float,
        metavar="TAU",
        help="temperature of softmax(Q/TAU) for a Q-network prior (SB3 DQN)",
    )
    p.add_argument(
        "--prior-activation",
        metavar="NAME",
        help="hidden activation of an imported prior when its files do not say (e.g. rsl-rl "
        "without params/agent.yaml): elu, tanh, relu, ...",
    )


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


def _common_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, required=True, help="environment steps in total")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="run directory to write (policy, metrics.csv, checkpoints)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR up to --steps")
    p.add_argument("--num-envs", type=int, help="parallel environments (default: PPOConfig's)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=50,
        help="iterations between checkpoints (default 50)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    from tailor.envs import list_tasks, load_tasks_file

    if args.tasks_file:
        load_tasks_file(args.tasks_file)
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


def _method(task: Any, name: str | None, allowed: tuple[str, ...], given: dict[str, Any]) -> Method:
    """Resolve ``name`` with the task's paper coefficients as defaults for what is not given."""
    if name is None:
        raise TailorError(f"--method is required; one of {', '.join(allowed)}")
    if name not in METHODS:
        raise TailorError(f"unknown method {name!r}; known methods: {', '.join(allowed)}")
    if name not in allowed:
        if METHODS[name].customization:
            raise TailorError(
                f"method {name!r} customizes a prior policy and needs one: use `tailor customize "
                f"--prior RUN_DIR --method {name} ...`"
            )
        raise TailorError(
            f"method {name!r} trains from scratch: use `tailor train --method {name} ...`"
        )
    given = {k: v for k, v in given.items() if v is not None}
    if name == "kl":
        values = set(given.values())
        if len(values) > 1:
            raise TailorError(
                "kl uses one coefficient beta = omega' = alpha_hat; got different "
                f"--omega-prime and --alpha-hat ({given}); use --method residual "
                "to set them separately"
            )
        given = {"beta": values.pop()} if values else {}
    wanted = METHODS[name].coefficients if name != "kl" else ("beta",)
    extra = [k for k in given if k not in wanted]
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise TailorError(f"method {name!r} does not take {flags}")
    coefs = dict(task.coefficients.get(name, {}))
    coefs.update(given)
    missing = [k for k in wanted if k not in coefs]
    if missing:
        flags = ", ".join(
            "--" + k.replace("_", "-").replace("beta", "omega-prime") for k in missing
        )
        raise TailorError(
            f"task {task.name!r} has no default {', '.join(missing)} for method "
            f"{name!r}; pass {flags}"
        )
    return resolve(name, **coefs)


def _run(args: argparse.Namespace, allowed: tuple[str, ...], given: dict[str, Any]) -> int:
    from tailor.algos.ppo import PPOConfig, read_run, train
    from tailor.checkpoint import TRAINER_FILE
    from tailor.envs import get_task, load_tasks_file
    from tailor.priors import PolicyPrior, load_prior

    if args.tasks_file:
        load_tasks_file(args.tasks_file)
    if getattr(args, "set", None):
        raise TailorError(
            "--set sets SoftDQNConfig/SACConfig/MCTSConfig fields: use it with --algo dqn|sac|mcts"
        )
    if isinstance(args.steps, int) and args.steps < 1:
        raise TailorError(
            f"--steps must be a positive number of environment steps, got {args.steps}"
        )
    prior = None
    if args.resume:
        run_dir = Path(args.resume)
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise TailorError(
                "--resume continues the run in its own directory; drop --out or "
                "give the same directory"
            )
        info = read_run(run_dir)
        for flag, value, saved in (
            ("--task", args.task, info["task"]),
            ("--method", args.method, info["method"]),
        ):
            if value is not None and value != saved:
                raise TailorError(
                    f"{flag} {value} does not match the run in {str(run_dir)!r} ({saved})"
                )
        task = get_task(info["task"])
        if info["method"] not in allowed:
            other = "customize" if METHODS[info["method"]].customization else "train"
            raise TailorError(
                f"{str(run_dir)!r} is a {info['method']!r} run; resume it with "
                f"`tailor {other} --resume`"
            )
        method = resolve(info["method"], **info["coefficients"])
        config = info["config"]
        config.total_steps = args.steps
        config.checkpoint_every = args.checkpoint_every
    else:
        if not args.task:
            raise TailorError("--task is required (see `tailor tasks`)")
        if not args.out:
            raise TailorError("--out DIR is required: where to write the run")
        run_dir = Path(args.out)
        if (run_dir / TRAINER_FILE).exists():
            raise TailorError(
                f"{str(run_dir)!r} already holds a run; continue it with "
                f"--resume {run_dir} or choose another --out"
            )
        task = get_task(args.task)
        method = _method(task, args.method, allowed, given)
        if method.customization:
            if not getattr(args, "prior", None):
                raise TailorError(
                    f"method {method.name!r} customizes a prior policy: pass "
                    "--prior RUN_DIR (or its policy.safetensors)"
                )
            # spaces are checked against the task in train()
            prior = load_prior(args.prior, **prior_options(args))
            if not isinstance(prior, PolicyPrior):
                kind = prior.meta.get("distribution", {}).get("kind", type(prior).__name__)
                raise TailorError(
                    f"PPO customization starts from a Gaussian actor's weights; {args.prior!r} "
                    f"is a {kind} policy. Gaussian priors: tailor runs, SB3 PPO/A2C, rsl-rl, "
                    "CleanRL (see `tailor inspect`)"
                )
        config = PPOConfig(
            total_steps=args.steps,
            seed=args.seed,
            std_type=getattr(args, "std_type", "global"),
            checkpoint_every=args.checkpoint_every,
        )
        if args.num_envs is not None:
            config.num_envs = args.num_envs
        if getattr(args, "warmup_fraction", None) is not None:
            config.critic_warmup_fraction = args.warmup_fraction
    result = train(
        task,
        method,
        config,
        run_dir,
        prior=prior,
        resume=bool(args.resume),
        progress=not args.no_progress,
    )
    last = result.metrics[-1] if result.metrics else {}
    print(f"{method.name} on {task.name}: {result.steps} steps in {result.wall_s:.1f} s")
    if last.get("return_basic", "") != "":
        print(
            f"  last episodes: basic {last['return_basic']:.1f}, add-on "
            f"{last['return_addon']:.1f}, total {last['return_total']:.1f}, "
            f"{task.statistic_name} {last['statistic']:.3f}"
        )
    print(f"  saved {run_dir / 'policy.safetensors'} and {run_dir / 'metrics.csv'}")
    return 0


def _run_rql(args: argparse.Namespace, customize: bool) -> int:
    """`--algo dqn|sac|mcts`: the Residual Q-Learning family (:mod:`tailor.rql.run`)."""
    from tailor.envs import load_tasks_file
    from tailor.rql import run

    if args.tasks_file:
        load_tasks_file(args.tasks_file)
    if args.resume:
        raise TailorError(f"--resume is only supported with --algo ppo, not {args.algo}")
    if not args.task or not args.out:
        raise TailorError("--task and --out are required")
    if args.steps < 1:
        raise TailorError(f"--steps must be a positive number, got {args.steps}")
    settings = _settings(args.set)
    given = [k for k, v in prior_options(args).items() if v is not None]
    if given:
        flags = ", ".join("--prior-" + k for k in given)
        raise TailorError(f"{flags}: imported priors are customized with --algo ppo only")
    if customize:
        if not args.prior:
            raise TailorError(f"--algo {args.algo} customizes a prior: pass --prior RUN_DIR")
        out = run.customize(
            args.task,
            args.algo,
            args.prior,
            args.steps,
            args.seed,
            args.out,
            args.omega_prime,
            args.alpha_hat,
            method=args.method or "residual",
            **settings,
        )
    else:
        out = run.train_prior(
            args.task,
            args.algo,
            args.steps,
            args.seed,
            args.out,
            method=args.method or "soft",
            alpha=args.alpha,
            **settings,
        )
    print(f"saved {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.algo != "ppo":
        return _run_rql(args, customize=False)
    return _run(args, TRAINING_METHODS, {"alpha": args.alpha})


def cmd_customize(args: argparse.Namespace) -> int:
    if args.algo != "ppo":
        return _run_rql(args, customize=True)
    return _run(
        args, CUSTOMIZATION_METHODS, {"omega_prime": args.omega_prime, "alpha_hat": args.alpha_hat}
    )


# ---- evaluate -----------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tailor.checkpoint import write_json
    from tailor.envs import get_task, load_tasks_file
    from tailor.evaluate import evaluate
    from tailor.priors import load_prior

    if args.tasks_file:
        load_tasks_file(args.tasks_file)
    if args.episodes < 1:
        raise TailorError(f"--episodes must be >= 1, got {args.episodes}")
    from tailor.rql import run as rql_run

    if rql_run.is_rql_policy(args.policy):
        return _evaluate_rql(args, rql_run)
    policy = load_prior(args.policy)
    task_name = args.task or policy.meta.get("task")
    if not task_name:
        raise TailorError("--task is required (the policy does not name its task)")
    task = get_task(task_name)
    result = evaluate(
        policy, task, args.episodes, deterministic=not args.stochastic, seed=args.seed
    )
    result["policy"] = str(args.policy)
    mode = "stochastic" if args.stochastic else "deterministic (mean action)"
    print(f"{args.policy} on {task.name}: {result['episodes']} episodes, {mode}")
    for key, label in (
        ("total", "total (basic + add-on)"),
        ("basic", "basic return"),
        ("addon", "add-on return"),
        ("statistic", task.statistic_name),
    ):
        print(f"  {label:<24} {result[key]['mean']:>10.3f} +- {result[key]['std']:.3f}")
    if args.json:
        write_json(args.json, result)
        print(f"  wrote {args.json}")
    return 0


def _evaluate_rql(args: argparse.Namespace, rql_run: Any) -> int:
    from tailor.checkpoint import write_json

    result = rql_run.evaluate(args.policy, args.task, args.episodes, args.seed)
    print(
        f"{args.policy} ({result['algo']}, {result['method']}) on {result['task']}: "
        f"{result['episodes']} episodes"
    )
    for key, label in (
        ("total", "total (basic + add-on)"),
        ("basic", "basic return"),
        ("addon", "add-on return"),
        ("statistic", result["statistic_name"]),
        ("length", "episode length"),
    ):
        print(f"  {label:<24} {result[key]['mean']:>10.3f} +- {result[key]['std']:.3f}")
    print(f"  {'success rate':<24} {result['success_rate']:>10.3f}")
    if args.json:
        write_json(args.json, result)
        print(f"  wrote {args.json}")
    return 0
