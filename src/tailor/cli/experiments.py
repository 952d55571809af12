"""``tailor sweep | table | plot``: reproduce the paper's tables (``tailor.experiments``).

``sweep`` trains and evaluates; ``table`` and ``plot`` only read what a sweep wrote.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from pathlib import Path

from tailor.cli import args as argtypes
from tailor.cli.rl import add_prior_arguments, prior_options
from tailor.errors import TailorError
from tailor.experiments.presets import BUDGETS, PRESETS

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_sweep(subparsers)
    _register_frontier(subparsers)
    _register_table_plot(subparsers)


def _register_sweep(subparsers: argparse._SubParsersAction) -> None:
    presets = ", ".join(f"{p.name} ({p.title})" for p in PRESETS.values())
    budgets = "; ".join(f"{b.name}: {b.description}" for b in BUDGETS.values())

    p = subparsers.add_parser(
        "sweep",
        help="run a paper preset's jobs, or your own grid (--task): skips finished ones, "
        "records failures",
        description=f"tailor sweep PRESET: run every (config, seed) job of a preset once. "
        f"Presets: {presets}. Budgets: {budgets}. tailor sweep --task T --method M [--prior P] "
        "--grid KEY=V1,V2 ... --seeds 0,1,2 --steps N: your own sweep, one job per grid point "
        "and seed (customizing P, or training from scratch without --prior), with a summary "
        "table (DIR/summary.md: mean and sd over seeds per grid point). Grid keys: the "
        "coefficients (omega_prime, alpha_hat, omega; alpha from scratch) and PPOConfig's "
        "scalar fields (learning_rate, kl_target, num_envs, ...); a key with one value fixes "
        "it. Either way a rerun skips finished jobs, continues an interrupted one from its "
        "last checkpoint (exactly, on the fast paths) and retries failed ones; jobs shared "
        "by two presets (Table III's global std = Table I's Soft PPO) run once when both "
        "presets use the same --out. On a Ray cluster (--backend ray --address A) every node "
        "needs the same tailor install and --out, the prior and the tasks file on a shared "
        "filesystem; a job whose node is lost runs again elsewhere from its last checkpoint.",
    )
    p.add_argument("preset", nargs="?", choices=tuple(PRESETS), help="a paper preset")
    p.add_argument("--budget", choices=tuple(BUDGETS), help="PRESET: default local")
    p.add_argument("--out", required=True, help="sweep directory (created; reused on rerun)")
    p.add_argument("--workers", type=argtypes.count, default=1, help="parallel jobs (default 1)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="default local")
    p.add_argument("--address", help="Ray cluster address (--backend ray), e.g. auto")
    p.add_argument(
        "--prior",
        action="append",
        default=[],
        metavar="TASK=PATH | PATH",
        help="PRESET: use this prior for TASK instead of the shipped one (repeatable); "
        "--task: the prior to customize (omit it to train from scratch)",
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="print each job and its state (finished, running, trained: evaluation pending, "
        "partial: continues from its checkpoint, failed, to run); run none",
    )
    # Subsets of the preset: the same jobs in the same directories, so the whole preset later
    # finds them finished (a sweep split across machines, or some jobs first).
    p.add_argument(
        "--tasks",
        type=argtypes.names,
        help="PRESET: only these tasks, e.g. hopper-jump,ant-sideways",
    )
    p.add_argument(
        "--seeds",
        type=argtypes.seeds,
        help="PRESET: only these of the budget's seeds, e.g. 0,1,2; --task: the seeds (default 0)",
    )
    p.add_argument(
        "--methods", type=argtypes.names, help="PRESET: only these methods, e.g. residual,full"
    )
    p.add_argument("--std", type=argtypes.names, help="PRESET: only these std types: global, state")
    p.add_argument(
        "--reselect-best",
        action="store_true",
        help="re-choose the best checkpoint of finished jobs that recorded their prior as best "
        "(results of an older tailor); evaluates the new choice, trains nothing, runs no job",
    )
    user = p.add_argument_group("your own sweep (instead of PRESET)")
    user.add_argument("--task", help="the task (a built-in, or one --tasks-file registers)")
    user.add_argument("--tasks-file", metavar="FILE.py", help="a Python file that registers tasks")
    user.add_argument("--method", help="default residual with --prior, soft without")
    user.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values of one setting (repeatable; one job per combination and seed), e.g. "
        "--grid omega_prime=0.01,0.1,1 --grid learning_rate=3e-4",
    )
    user.add_argument("--steps", type=argtypes.count, help="environment steps per run")
    user.add_argument(
        "--episodes", type=argtypes.count, help="evaluation episodes per run (default 10)"
    )
    p.set_defaults(func=cmd_sweep)


def _register_table_plot(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "table",
        help="print a preset's table (ours beside the paper's) from a sweep directory",
        description="Print the paper's table layout as Markdown with our numbers beside the "
        "paper's. Reads result.json files only; never trains.",
    )
    p.add_argument("preset", choices=tuple(PRESETS))
    p.add_argument("dir", help="the sweep directory")
    p.add_argument("--budget", choices=tuple(BUDGETS), default="local", help="default local")
    p.add_argument("--out", help="also write the Markdown to this file")
    argtypes.add_overwrite(p, "the --out file")
    p.set_defaults(func=cmd_table)

    p = subparsers.add_parser(
        "plot",
        help="plot runs' learning curves (tailor plot RUN [RUN ...]), or a preset's figures "
        "from a sweep directory (tailor plot PRESET DIR)",
        description="tailor plot RUN [RUN ...]: the learning curves of one or a few run "
        "directories (basic and add-on returns of the training episodes from their "
        "metrics.csv) in one figure, plus evaluation add-on vs basic where the runs were "
        "evaluated by a sweep. tailor plot PRESET DIR: learning curves (mean and spread over "
        "seeds, basic and add-on returns) per task, and for customization presets the "
        "basic-vs-add-on trade-off of every method. Reads results only; never trains. "
        f"Presets: {', '.join(PRESETS)}.",
    )
    p.add_argument(
        "targets", nargs="+", metavar="RUN|PRESET", help="run directories, or PRESET DIR"
    )
    p.add_argument(
        "--budget", choices=tuple(BUDGETS), default="local", help="PRESET DIR: default local"
    )
    p.add_argument(
        "--out",
        help="PRESET DIR: directory for the PNGs (default: DIR/plots); runs: the PNG file "
        "(default: RUN/plot.png for one run, plot.png for several)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the PNG(s) if they exist (else refused)",
    )
    p.set_defaults(func=cmd_plot)


def _priors(items: list[str]) -> dict[str, str]:
    priors = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise TailorError(f"--prior wants TASK=PATH, got {item!r}")
        if not Path(path).exists():
            raise TailorError(f"--prior {item!r}: no such file or directory {path!r}")
        priors[task] = path
    return priors


# The flags of each kind of sweep (the other kind's are refused, not ignored).
_PRESET_FLAGS = {"budget": "--budget", "tasks": "--tasks", "methods": "--methods",
                 "std": "--std", "reselect_best": "--reselect-best"}  # fmt: skip
_USER_FLAGS = {"tasks_file": "--tasks-file", "method": "--method", "grid": "--grid",
               "steps": "--steps", "episodes": "--episodes"}  # fmt: skip


def _refuse(args: argparse.Namespace, flags: dict[str, str], why: str) -> None:
    given = [flag for dest, flag in flags.items() if getattr(args, dest) not in (None, False, [])]
    if given:
        raise TailorError(f"{', '.join(given)}: {why}")


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.preset is not None and args.task is not None:
        raise TailorError("give a PRESET or --task (your own sweep), not both")
    if args.preset is None and args.task is None:
        raise TailorError(
            f"give a PRESET ({', '.join(PRESETS)}) or --task T (your own sweep; see --help)"
        )
    if args.task is not None:
        return _cmd_user_sweep(args)
    _refuse(args, _USER_FLAGS, "for your own sweep (--task), not a preset's")
    return _cmd_preset_sweep(args)


def _cmd_preset_sweep(args: argparse.Namespace) -> int:
    from tailor.experiments.presets import expand, select
    from tailor.experiments.sweep import reselect_best, run_sweep

    budget = args.budget or "local"
    jobs = expand(args.preset, budget, _priors(args.prior))
    jobs = select(
        jobs, tasks=args.tasks, seeds=args.seeds, methods=args.methods, std_types=args.std
    )
    if args.reselect_best:
        for job in jobs:
            if reselect_best(job, args.out):
                print(f"reselected {job.id}", flush=True)
        return 0
    if args.list:
        return _list_jobs(jobs, args.out)
    for job in jobs:
        if job.prior is not None and not Path(job.prior).exists():
            raise TailorError(
                f"no prior at {job.prior!r} for task {job.task!r}: run from the repository root "
                "(the shipped priors are in priors/) or pass --prior TASK=PATH"
            )
    report = run_sweep(
        jobs,
        args.out,
        workers=args.workers,
        backend=args.backend,
        address=args.address,
        label=f"{args.preset}/{budget}",
    )
    return 1 if report.failed else 0


def _list_jobs(jobs: list, out: str) -> int:
    """``tailor sweep --list``: each job's state, then the counts."""
    from tailor.experiments.sweep import job_state

    counts: dict[str, int] = {}
    for job in jobs:
        state, detail = job_state(job, out)
        counts[state] = counts.get(state, 0) + 1
        print(f"{state:9s} {job.id}" + (f"  ({detail})" if detail else ""))
    noun = "job" if len(jobs) == 1 else "jobs"
    print(f"{len(jobs)} {noun}: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    return 0


def _cmd_user_sweep(args: argparse.Namespace) -> int:
    from tailor.experiments.grid import GridSpec, grid_jobs, grid_summary, parse_grid
    from tailor.experiments.sweep import run_sweep
    from tailor.output import write_text
    from tailor.shipped import find_prior

    _refuse(args, _PRESET_FLAGS, "for a preset, not your own sweep (--task)")
    if len(args.prior) > 1:
        raise TailorError("--task takes one --prior (the prior to customize)")
    if args.steps is None:
        raise TailorError("--task needs --steps (environment steps per run)")
    # Absolute paths: workers (Ray, possibly on other nodes) read them where they are.
    prior = str(find_prior(args.prior[0]).resolve()) if args.prior else None
    tasks_file = str(Path(args.tasks_file).resolve()) if args.tasks_file else None
    kind = "train" if prior is None else "customize"
    spec = GridSpec(
        task=args.task,
        method=args.method or ("soft" if prior is None else "residual"),
        steps=args.steps,
        prior=prior,
        grid=parse_grid(args.grid, kind),
        seeds=tuple(args.seeds or (0,)),
        episodes=args.episodes or 10,
        tasks_file=tasks_file,
    )
    jobs = grid_jobs(spec)
    if args.list:
        return _list_jobs(jobs, args.out)
    report = run_sweep(jobs, args.out, workers=args.workers, backend=args.backend,
                       address=args.address, label=f"grid {args.task}")  # fmt: skip
    if len(report.skipped) + len(report.done) == 0:
        return 1
    text = grid_summary(spec, jobs, args.out)
    write_text(Path(args.out) / "summary.md", text)
    print(text, end="")
    print(f"wrote {Path(args.out) / 'summary.md'}")
    return 1 if report.failed else 0


def _register_frontier(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "frontier",
        help="the add-on vs basic trade-off of one prior: a few KL targets side by side, "
        "plotted, with the knee named",
        description="Customize PRIOR on TASK once per KL target (nats per step and action "
        "dimension; the adaptive controller of PPO, or of residual SAC for a SAC/TQC prior, "
        "holds it; a Q-network prior: once per basic-task weight --omega, with residual soft "
        "DQN), as one resumable sweep (local worker "
        "processes or Ray), evaluate every run and the prior on the add-on and the basic "
        "return, and plot add-on vs KL and vs basic: what each unit of the new requirement "
        "costs in the old skill. The knee is the setting with the most add-on return that "
        "keeps 90%% of the prior's basic return. Writes DIR/frontier.md and frontier.png.",
    )
    p.add_argument("--task", required=True)
    p.add_argument(
        "--prior",
        required=True,
        type=argtypes.prior_path,
        help="any prior tailor customizes: with PPO (a tailor run, SB3, rsl-rl, CleanRL, skrl, "
        "TorchScript; a deterministic one with --prior-std), SAC (SB3 SAC/TQC, a tailor SAC "
        "run) or soft DQN (SB3 DQN with --prior-temperature, a categorical policy)",
    )
    p.add_argument(
        "--kl",
        type=argtypes.positives,
        default=None,
        metavar="K1,K2,...",
        help="KL targets per action dimension (default 0.01,0.03,0.1,0.3)",
    )
    p.add_argument(
        "--omega",
        type=argtypes.positives,
        default=None,
        metavar="W1,W2,...",
        help="a Q-network or categorical prior (residual soft DQN): the basic-task weights "
        "omega to compare, omega' = omega * the prior's temperature (default 1,0.5,0.25,0.1)",
    )
    p.add_argument("--method", choices=("residual", "kl"), default="residual")
    p.add_argument("--steps", type=argtypes.count, default=200_000, help="per run (200000)")
    p.add_argument("--seed", type=argtypes.seed, default=0)
    p.add_argument("--episodes", type=argtypes.count, default=10, help="evaluation episodes")
    p.add_argument("--out", help="sweep directory (default frontier/<task>-<prior name>)")
    p.add_argument("--workers", type=argtypes.count, default=1, help="parallel runs (default 1)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="default local")
    p.add_argument("--address", help="Ray cluster address (--backend ray), e.g. auto")
    p.add_argument("--tasks-file", metavar="FILE.py", help="a Python file that registers tasks")
    add_prior_arguments(p)
    p.set_defaults(func=cmd_frontier)


def cmd_frontier(args: argparse.Namespace) -> int:
    from tailor.envs import get_task
    from tailor.experiments.algo_choice import algo_for_prior
    from tailor.experiments.frontier import (
        DEFAULT_KL_PER_DIM,
        DEFAULT_OMEGAS,
        frontier_jobs,
        frontier_points,
        frontier_table,
        knee,
        omega_jobs,
        plot_frontier,
    )
    from tailor.experiments.presets import Job
    from tailor.experiments.run import load_user_tasks
    from tailor.experiments.sweep import run_sweep
    from tailor.output import write_text
    from tailor.policyfile import task_spaces
    from tailor.shipped import find_prior

    if args.tasks_file:
        load_user_tasks(args.tasks_file)
    # Absolute: a Ray worker on another node (or started in another directory) reads it there.
    prior = str(find_prior(args.prior).resolve())
    options = {k: v for k, v in prior_options(args).items() if v is not None}
    if options.get("normalizer"):  # a worker may run in another directory
        options["normalizer"] = str(Path(options["normalizer"]).resolve())
    # the loop the prior customizes with; a clear error for an unreadable prior, before any run
    algo = algo_for_prior(prior, options)
    if algo not in ("ppo", "sac", "dqn"):  # a tailor MCTS run: a search, no trained prior
        raise TailorError(
            f"{args.prior!r} is a tailor {algo} run; its frontier is that of the prior it "
            "searches with: give that prior"
        )
    tasks_file = str(Path(args.tasks_file).resolve()) if args.tasks_file else None
    base = Job("customize", args.task, args.method, args.seed, args.steps, args.episodes,
               algo=algo, prior_options=tuple(sorted(options.items())))  # fmt: skip
    if algo == "dqn":
        _check_q_frontier(args, prior, options)
        jobs = omega_jobs(args.task, prior, args.omega or DEFAULT_OMEGAS, base)
    else:
        if args.omega:
            raise TailorError(
                f"--omega is the frontier of a Q-network prior; {args.prior!r} customizes with "
                f"--algo {algo}, whose frontier holds KL targets (--kl)"
            )
        act_dim = len(task_spaces(get_task(args.task))["action_low"])
        jobs = frontier_jobs(args.task, prior, args.kl or DEFAULT_KL_PER_DIM, act_dim, base)
    jobs = [dataclasses.replace(j, tasks_file=tasks_file) for j in jobs]
    out = Path(args.out or Path("frontier") / f"{args.task}-{Path(prior).stem}")
    report = run_sweep(jobs, out, workers=args.workers, backend=args.backend,
                       address=args.address, label=f"frontier {args.task}")  # fmt: skip
    points = frontier_points(jobs, out)
    at, rule = knee(points)
    text = frontier_table(points, at, rule)
    write_text(out / "frontier.md", f"# {args.task} from {prior}\n\n{text}")
    png = plot_frontier(points, at, out / "frontier.png", f"{args.task}: add-on vs KL and basic")
    print(text, end="")
    print(f"wrote {out / 'frontier.md'} and {png}")
    return 1 if report.failed else 0


def _check_q_frontier(args: argparse.Namespace, prior: str, options: dict) -> None:
    """A Q-network prior's frontier varies ``omega``, which needs the prior's temperature."""
    from tailor.experiments.prior_adapters import read_prior
    from tailor.priors import prior_temperature

    if args.kl:
        raise TailorError(
            f"--kl holds a KL target in PPO and SAC runs; {args.prior!r} customizes with "
            "residual soft DQN, whose frontier varies the basic-task weight (--omega W1,W2,...)"
        )
    if args.method != "residual":
        raise TailorError("a Q-network prior's frontier runs --method residual (omega varies)")
    if prior_temperature(read_prior(prior, options).meta) is None:
        raise TailorError(
            f"the frontier of {args.prior!r} varies omega (omega' = omega * tau), which needs "
            "the prior's temperature tau: give --prior-temperature TAU"
        )


def cmd_table(args: argparse.Namespace) -> int:
    from tailor.experiments.tables import preset_table
    from tailor.output import write_text

    if args.out:
        argtypes.check_output_arg(args, args.out, what="--out")  # not a result file of DIR
    text = preset_table(args.preset, args.dir, args.budget)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from tailor.experiments.plots import plot_preset

    targets = [Path(t) for t in args.targets]
    if all((t / "metrics.csv").is_file() for t in targets):
        return _plot_runs(args, targets)
    if len(targets) != 2 or args.targets[0] not in PRESETS:
        missing = [str(t) for t in targets if not (t / "metrics.csv").is_file()]
        raise TailorError(
            f"tailor plot takes run directories (each with a metrics.csv; not: "
            f"{', '.join(missing)}) or PRESET DIR with PRESET one of {', '.join(PRESETS)}"
        )
    if (targets[1] / "metrics.csv").is_file():
        raise TailorError(
            f"{args.targets[1]!r} is a run directory, not a sweep directory: plot it with "
            f"`tailor plot {args.targets[1]}`"
        )
    check = functools.partial(argtypes.check_output_arg, args, what="--out")
    for path in plot_preset(args.targets[0], args.targets[1], args.budget, args.out, check):
        print(f"wrote {path}")
    return 0


def _plot_runs(args: argparse.Namespace, runs: list[Path]) -> int:
    from tailor.experiments.plots import plot_runs

    if args.out:
        out = Path(args.out)
    else:  # one run: beside its metrics.csv; several: here
        out = runs[0] / "plot.png" if len(runs) == 1 else Path("plot.png")
    argtypes.check_output_arg(args, out, what="--out")  # not a run's own file, not existing
    print(f"wrote {plot_runs(runs, out)}")
    return 0
