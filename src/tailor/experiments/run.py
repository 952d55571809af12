"""One run assembly: train, customize and evaluate for every ``--algo``.

The command line, the sweeps, the demo and the ``results/`` scripts all start runs here::

    train_prior(task, algo, steps, seed, out, *, method="soft", alpha=None, **config) -> Path
    customize(task, algo, prior, steps, seed, out, [omega_prime, alpha_hat],
              *, method="residual", **options_and_config) -> Path
    resume(run_dir, steps, *, checkpoint_every=None, progress=False) -> (Path, dict)  (PPO)
    evaluate(policy, task=None, episodes=50, seed=0, max_steps=None) -> dict
    lm_customize(prior_dir, method, out, *, reward, ...) -> dict                       (LM)

``algo`` is ``"ppo"`` (:mod:`tailor.algos.ppo`), ``"dqn"`` (:mod:`tailor.algos.soft_dqn`),
``"sac"`` (:mod:`tailor.algos.sac`) or ``"mcts"`` (:mod:`tailor.algos.mcts`, customization
only); the language-model loops are :mod:`tailor.algos.lm_ppo` and :mod:`tailor.algos.dpo`.
Coefficients left as ``None`` come from the task's ``coefficients`` through
:func:`tailor.methods.resolve` (:func:`task_method`); the keyword options that are not named
options of the entry point (:class:`~tailor.experiments.configs.TrainOptions`,
:class:`~tailor.experiments.configs.CustomizeOptions`) set fields of the algorithm's config
dataclass (``PPOConfig``, ``SoftDQNConfig``, ``SACConfig``, ``MCTSConfig``).

This module is the entry points; the parts live beside it: :mod:`.coefficients` (tasks meet
methods), :mod:`.configs` (config dataclasses, flags, options), :mod:`.prior_adapters` (the
prior, read once, shaped for each loop), :mod:`.runners` (one runner per algorithm),
:mod:`.evaluation` (evaluate, best checkpoint), :mod:`.lm_runs` (language models). The policy
files every run writes are :mod:`tailor.policyfile`'s (``policy.safetensors`` + ``policy.json``;
its header's ``kind`` is what :func:`policy_kind` reads).

Customization coefficients: explicit values, then the prior's temperature (``omega' = omega *
alpha``, ``alpha_hat = alpha``), the task's table, MCTS's ``omega' = tau = 1`` and tailor's
fallback temperature, in that order (:func:`coefficient_layers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from tailor.algos.ppo import read_run
from tailor.algos.ppo import train as train_ppo
from tailor.checkpoint import POLICY_FILE
from tailor.envs import Task, get_task
from tailor.errors import TailorError
from tailor.experiments import kl_budget, unknown_temperature
from tailor.experiments.coefficients import (
    check_method_kind,
    coefficient_layers,
    describe_coefficients,
    load_user_tasks,
    task_method,
)
from tailor.experiments.configs import (
    CONFIGS,
    CUSTOMIZE_ALGOS,
    RQL_TRAIN_METHODS,
    TRAIN_ALGOS,
    CustomizeOptions,
    TrainOptions,
    check_algo,
    check_run_arguments,
    check_steps,
    config_flags,
    split_options,
)
from tailor.experiments.evaluation import (
    SELECTION_SEED_OFFSET,
    best_checkpoint,
    evaluate,
    read_ppo_run,
    same_as_prior,
)
from tailor.experiments.lm_runs import lm_customize, lm_method
from tailor.experiments.prior_adapters import describe_import, read_prior
from tailor.experiments.runners import RUNNERS, RunRequest, log_ppo
from tailor.experiments.selection import select_iterate
from tailor.methods import CUSTOMIZATION_METHODS, TRAINING_METHODS, check_coefficient_table, resolve
from tailor.policyfile import RQL_FORMAT, is_rql_policy, policy_kind, task_spaces
from tailor.policyfile import RQL_KINDS as ALGOS
from tailor.policyfile import load_rql_policy as load_policy
from tailor.priors import PolicyPrior
from tailor.rundir import claim_run_dir

# The names the command line, the tests, the README and the results/ scripts use as run.<name>.
__all__ = [
    "ALGOS",
    "CONFIGS",
    "POLICY_FILE",
    "RQL_FORMAT",
    "SELECTION_SEED_OFFSET",
    "CustomizeOptions",
    "RunRequest",
    "TrainOptions",
    "best_checkpoint",
    "check_method_kind",
    "coefficient_layers",
    "config_flags",
    "customize",
    "describe_coefficients",
    "evaluate",
    "is_rql_policy",
    "lm_customize",
    "lm_method",
    "load_policy",
    "load_user_tasks",
    "policy_kind",
    "read_ppo_run",
    "resume",
    "same_as_prior",
    "task_method",
    "train_prior",
]

Log = Callable[[str], None] | None


def train_prior(
    task: Task | str,
    algo: str,
    steps: int,
    seed: int,
    out: str | Path,
    *,
    method: str = "soft",
    **options: Any,
) -> Path:
    """Train a policy from scratch with PPO, soft DQN (discrete actions) or SAC.

    Args:
        task: task or registered name (see ``tailor tasks``).
        algo: ``"ppo"``, ``"dqn"`` or ``"sac"``.
        steps: environment steps.
        seed: seed of everything random in the run.
        out: run directory to write.
        method: a training method (PPO: any of :data:`tailor.methods.TRAINING_METHODS`; DQN /
            SAC: ``"soft"`` (a prior), ``"full"`` (basic + add-on reward: the from-scratch
            baseline) or ``"no-entropy"`` (temperature 0)).
        **options: the fields of :class:`~tailor.experiments.configs.TrainOptions` (``alpha``:
            the temperature, default the task's coefficient for ``method``; ``log``: progress
            printer, ``None`` silent; ``progress``: PPO's progress bar; ``overwrite``: replace a
            run or model already in ``out``), and fields of the algorithm's config dataclass.

    Returns:
        The run directory.

    Raises:
        TailorError: bad algo/method/steps, an unknown config field, a task whose action space
            does not fit the algo, an ``out`` that holds another run (see
            :func:`tailor.rundir.claim_run_dir`).
    """
    opts, config = split_options(TrainOptions, options, where="train_prior")
    check_run_arguments("train_prior", seed)
    task = get_task(task)
    check_algo(algo, TRAIN_ALGOS)
    allowed = TRAINING_METHODS if algo == "ppo" else RQL_TRAIN_METHODS
    if method not in allowed:
        raise TailorError(
            f"train_prior: method must be one of {', '.join(allowed)}, got {method!r}"
        )
    m = task_method(task, method, flags=True, alpha=opts.alpha)
    steps = check_steps(steps)
    if opts.log is not None and m.coefficients:
        opts.log(f"{method}: {describe_coefficients(m)}")
    if algo != "ppo":
        torch.set_num_threads(1)
    request = RunRequest(
        task, m, steps, seed, Path(out), None, opts.log, config, opts.progress, opts.overwrite
    )
    return RUNNERS[algo](request)


def customize(
    task: Task | str,
    algo: str,
    prior: str | Path,
    steps: int,
    seed: int,
    out: str | Path,
    *coefficients: float | None,
    method: str = "residual",
    **options: Any,
) -> Path:
    """Customize a prior to the task's add-on reward with PPO, residual soft DQN, SAC or MCTS.

    Args:
        task: the task (its add-on reward is what is optimised; the basic reward is never used).
        algo: ``"ppo"`` (a tailor PPO policy as prior), ``"dqn"`` (prior from
            ``train_prior(algo="dqn")``), ``"sac"`` (prior from ``train_prior(algo="sac")``) or
            ``"mcts"`` (online search with a DQN prior; no training: ``steps`` is ignored and the
            run directory only stores the prior and the search settings).
        prior: the prior's run directory (or its ``policy.safetensors``), or a policy from
            another library (:func:`tailor.priors.load_prior`): PPO takes Gaussian priors, SAC
            tanh-squashed ones (SB3 SAC/TQC), DQN and MCTS Q-network / categorical ones (SB3
            DQN with ``prior_options={"temperature": tau}``, SB3 PPO/A2C on Discrete actions).
        steps: environment steps of customization (ignored for MCTS).
        seed: seed.
        out: run directory to write.
        *coefficients: ``omega_prime`` and ``alpha_hat`` may also be given positionally, in
            that order (as the command line does).
        method: ``"residual"``, ``"kl"`` (``omega' = alpha_hat``) or ``"greedy"`` (``omega' =
            0``); MCTS is always residual.
        **options: the fields of :class:`~tailor.experiments.configs.CustomizeOptions`
            (``omega_prime``, ``alpha_hat``, ``omega``, ``log``, ``progress``, ``overwrite``,
            ``prior_options``), and fields of the algorithm's config dataclass.
            ``omega_prime`` (the weight of ``log pi_prior``) and ``alpha_hat`` (the customized
            policy's temperature; MCTS: the search temperature ``tau``) default through
            :func:`coefficient_layers`: the prior's temperature ``alpha`` where it is known
            (``omega' = omega * alpha``, ``alpha_hat = alpha``) unless the task's table was
            made for a prior at that temperature, then the task's table, then (MCTS) the RQL
            paper's 1.0, then :data:`tailor.methods.FALLBACK_COEFFICIENTS`. The policy's
            metadata records them and their sources (``coefficient_sources``).

    Returns:
        The run directory.

    Raises:
        TailorError: bad algo/method, an unknown config field, a prior of the wrong kind or for
            another env, an ``out`` that holds another run or is the prior's directory.
    """
    options = _positional_coefficients(coefficients, options)
    opts, config = split_options(CustomizeOptions, options, where="customize")
    if prior is None:
        raise TailorError("customize: prior is required (a run directory or a policy file)")
    check_run_arguments("customize", seed, prior, opts.prior_options)
    task = get_task(task)
    check_algo(algo, CUSTOMIZE_ALGOS)
    if method not in CUSTOMIZATION_METHODS:
        raise TailorError(
            f"customize: method must be one of {', '.join(CUSTOMIZATION_METHODS)}, got {method!r}"
        )
    if algo == "mcts":
        method = "residual"
    else:
        steps = check_steps(steps)
    where = f"task {task.name!r}"
    check_coefficient_table(task.coefficients, where)
    prior_options = {k: v for k, v in dict(opts.prior_options or {}).items() if v is not None}
    given = {"omega_prime": opts.omega_prime, "alpha_hat": opts.alpha_hat}
    # The given coefficients are checked before the prior is read (a cheap error first).
    resolve(method, coefficient_layers(task, method, None), where=where, flags=True, **given)
    # The prior is read once, here: its metadata gives the coefficient defaults, and the runner
    # takes the loaded object.
    loaded = read_prior(prior, prior_options)
    layers = coefficient_layers(task, method, loaded.meta, opts.omega, mcts=algo == "mcts")
    notes = [describe_import(loaded.meta)]
    # Only a Gaussian actor takes the rule (another kind is refused by the PPO runner, below).
    gaussian = isinstance(loaded.policy, PolicyPrior)
    if (
        opts.omega is None
        and gaussian
        and unknown_temperature.applies(algo, method, loaded.meta, given)
    ):
        layers.insert(0, unknown_temperature.coefficient_layer(method))
        chosen, line = unknown_temperature.step_settings(loaded.policy, config)
        kept, kept_line = unknown_temperature.selection_settings(config)
        config = {**config, **chosen, **kept}
        notes += [line, kept_line]
    m = resolve(method, layers, where=where, flags=True, **given)
    if kl_budget.applies(algo, m, given, opts.omega):
        chosen, line = kl_budget.sac_settings(len(task_spaces(task)["action_low"]), config)
        config = {**config, **chosen}
        notes.append(line)
    if opts.log is not None:
        for line in notes:
            if line is not None:
                opts.log(line)
        opts.log(f"{method} coefficients: {describe_coefficients(m)}")
    if algo != "ppo":
        torch.set_num_threads(1)
    request = RunRequest(
        task, m, steps, seed, Path(out), loaded, opts.log, config, opts.progress, opts.overwrite
    )
    return RUNNERS[algo](request)


def _positional_coefficients(
    values: tuple[float | None, ...], options: Mapping[str, Any]
) -> dict[str, Any]:
    """``options`` with ``omega_prime`` / ``alpha_hat`` given positionally to :func:`customize`."""
    names = ("omega_prime", "alpha_hat")
    if len(values) > len(names):
        raise TypeError(
            f"customize() takes at most {6 + len(names)} positional arguments "
            f"({6 + len(values)} given)"
        )
    out = dict(options)
    for name, value in zip(names, values, strict=False):
        if name in out:
            raise TypeError(f"customize() got multiple values for argument {name!r}")
        out[name] = value
    return out


def resume(
    run_dir: str | Path,
    steps: int,
    *,
    checkpoint_every: int | None = None,
    log: Log = print,
    progress: bool = False,
    tensorboard: bool | None = None,
    num_workers: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Continue the PPO run in ``run_dir`` until ``steps`` environment steps in total.

    The task, method, coefficients and config come from the run's trainer checkpoint; only the
    step budget, the checkpoint interval, ``tensorboard`` and ``num_workers`` (the env threads,
    which change no number) may change. Returns ``(run_dir,
    saved)`` where ``saved`` is :func:`tailor.algos.ppo.read_run`'s description of the run.
    """
    run_dir = Path(run_dir)
    info = read_run(run_dir)
    task = get_task(info["task"])
    # The run's own coefficients (named as their source in the resumed checkpoint's metadata).
    method = resolve(info["method"], [("the resumed run's checkpoint", info["coefficients"])])
    config = info["config"]
    config.total_steps = check_steps(steps)
    if checkpoint_every is not None:
        config.checkpoint_every = checkpoint_every
    if tensorboard is not None:
        config.tensorboard = bool(tensorboard)
    if num_workers is not None:
        config.num_workers = num_workers
    # The lock makes a second `--resume` of a running run an error instead of a second writer;
    # the claim also collects what a killed session left half-written.
    with claim_run_dir(run_dir, "ppo", resume=True):
        result = train_ppo(task, method, config, run_dir, resume=True, progress=progress)
        log_ppo(log, method, task, result, run_dir)
        if config.select_episodes and method.customization:
            select_iterate(run_dir, task, config.select_episodes, log)
    return run_dir, info
