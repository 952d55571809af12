"""One run assembly: train, customize and evaluate for every ``--algo``.

The command line, the sweeps, the demo and the ``results/`` scripts all start runs here::

    train_prior(task, algo, steps, seed, out, *, method="soft", alpha=None, **config) -> Path
    customize(task, algo, prior, steps, seed, out, omega_prime=None, alpha_hat=None,
              *, method="residual", **config) -> Path
    resume(run_dir, steps, *, checkpoint_every=None, progress=False) -> (Path, dict)  (PPO)
    evaluate(policy, task=None, episodes=50, seed=0, max_steps=None) -> dict
    lm_customize(prior_dir, method, out, *, reward, ...) -> dict                       (LM)

``algo`` is ``"ppo"`` (:mod:`tailor.algos.ppo`), ``"dqn"`` (:mod:`tailor.algos.soft_dqn`),
``"sac"`` (:mod:`tailor.algos.sac`) or ``"mcts"`` (:mod:`tailor.algos.mcts`, customization
only); the language-model loops are :mod:`tailor.algos.lm_ppo` and :mod:`tailor.algos.dpo`.
Coefficients left as ``None`` come from the task's ``coefficients`` through
:func:`tailor.methods.resolve` (:func:`task_method`); ``**config`` sets fields of the algorithm's
config dataclass (``PPOConfig``, ``SoftDQNConfig``, ``SACConfig``, ``MCTSConfig``).

Every run directory holds ``policy.safetensors`` (tensors + JSON metadata in its header) and
``policy.json`` (a readable copy); the metadata's ``kind`` names the policy kind (``"ppo"``,
``"dqn"``, ``"sac"``, ``"mcts"``) and :func:`policy_kind` reads it. PPO runs add
``trainer.safetensors`` and ``metrics.csv`` (see :mod:`tailor.algos.ppo`). DQN / SAC /
MCTS policies store tensor groups ``q.*`` (a soft Q-network or a residual ``Q_R``), ``prior.*``
(the prior Q-network a residual DQN or MCTS policy needs to act), ``actor.*`` (a SAC actor), and
metadata ``algo``, ``task``, ``env_id``, ``method``, ``coefficients`` (``omega_prime``,
``alpha_hat``), ``prior_alpha``, ``obs_dim``, ``n_actions`` / ``act_dim``, ``hidden``,
``config``, ``steps``, ``seed``, ``train_stats``, ``coefficient_sources`` (where each
coefficient came from). A residual DQN / MCTS policy from an imported prior adds ``prior_norm.*``
(the prior's frozen normalizer) and ``prior_net`` (its hidden sizes, activation and normalizer
formula); a SAC policy records its actor's architecture (``actor_hidden``, ``actor_options``),
which an imported prior's weights may have set.

Customization coefficients: explicit values, then the prior's temperature (``omega' = omega *
alpha``, ``alpha_hat = alpha``), the task's table, MCTS's ``omega' = tau = 1`` and tailor's
fallback temperature, in that order (:func:`coefficient_layers`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from tailor.algos.mcts import (
    BatchedResidualMCTS,
    MCTSConfig,
    ResidualMCTS,
    TaskModel,
    batch_model,
    numpy_log_prior,
)
from tailor.algos.ppo import PPOConfig, read_run
from tailor.algos.ppo import train as train_ppo
from tailor.algos.sac import SACConfig, train_sac
from tailor.algos.soft_dqn import SoftDQNConfig, train_soft_dqn
from tailor.checkpoint import POLICY_FILE, load_tensors
from tailor.envs import Task, get_task, load_tasks_file, make_env
from tailor.errors import TailorError
from tailor.evaluate import evaluate as evaluate_gaussian
from tailor.evaluate import evaluate_stepwise
from tailor.methods import (
    CUSTOMIZATION_METHODS,
    FALLBACK_COEFFICIENTS,
    METHODS,
    TRAINING_METHODS,
    Method,
    check_coefficient_table,
    resolve,
    temperature_defaults,
)
from tailor.nets import EmpiricalNormalization, SquashedGaussianActor, mlp
from tailor.paths import check_input_path
from tailor.priors import PolicyPrior, QPrior, check_spaces, load_prior, prior_temperature
from tailor.priors.policies import BoltzmannQPrior, SquashedGaussianPrior
from tailor.rundir import (
    InterruptRequest,
    RunDir,
    claim_run_dir,
    commit_checkpoint,
    stop_on_interrupt,
)

__all__ = [
    "ALGOS",
    "CONFIGS",
    "POLICY_FILE",
    "RQL_FORMAT",
    "SELECTION_SEED_OFFSET",
    "RunRequest",
    "best_checkpoint",
    "config_flags",
    "customize",
    "evaluate",
    "is_rql_policy",
    "lm_customize",
    "load_policy",
    "load_user_tasks",
    "policy_kind",
    "read_ppo_run",
    "resume",
    "same_as_prior",
    "task_method",
    "train_prior",
]

ALGOS = ("dqn", "sac", "mcts")  # the Residual Q-Learning family; "ppo" is the default algo
TRAIN_ALGOS = ("ppo", "dqn", "sac")
CUSTOMIZE_ALGOS = ("ppo", "dqn", "sac", "mcts")
RQL_FORMAT = "tailor-rql-policy"
_RQL_TRAIN_METHODS = ("soft", "full", "no-entropy")

Log = Callable[[str], None] | None


# ---------------------------------------------------------------------------------------------
# Tasks and methods


def load_user_tasks(path: str | Path) -> list[Task]:
    """Import a ``--tasks-file`` (it runs Python) and check the coefficient tables it brings."""
    tasks = load_tasks_file(path)
    for task in tasks:
        check_coefficient_table(task.coefficients, f"task {task.name!r}")
    return tasks


def task_method(
    task: Task | str, name: str, *, flags: bool = False, **given: float | None
) -> Method:
    """:func:`tailor.methods.resolve` with the task's coefficients for ``name`` as defaults.

    ``given`` values that are ``None`` keep the default; ``flags`` names coefficients as
    command-line flags in error messages. A coefficient the task's table does not name (a user
    task registered without ``coefficients``) comes from
    :data:`tailor.methods.FALLBACK_COEFFICIENTS` (temperature
    :data:`~tailor.methods.DEFAULT_TEMPERATURE`); ``Method.sources`` says which.
    """
    task = get_task(task)
    where = f"task {task.name!r}"
    check_coefficient_table(task.coefficients, where)
    layers = [(where, task.coefficients.get(name)), (_FALLBACK, FALLBACK_COEFFICIENTS.get(name))]
    return resolve(name, layers, where=where, flags=flags, **given)


_FALLBACK = "tailor's default temperature (the task names no coefficient)"


def coefficient_layers(
    task: Task,
    method: str,
    prior_meta: Mapping[str, Any] | None,
    omega: float | None = None,
    *,
    mcts: bool = False,
) -> list[tuple[str, Mapping[str, float] | None]]:
    """The default layers of a customization's coefficients, highest precedence first (for
    :func:`tailor.methods.resolve`; explicit ``--omega-prime`` / ``--alpha-hat`` beat them all):

    1. the prior's temperature ``alpha`` (:func:`tailor.priors.prior_temperature`), read as RQL
       does: ``omega' = omega * alpha``, ``alpha_hat = alpha`` (``beta = alpha``). It applies
       when ``omega`` is given, or when the task's table was not made for this prior: the task
       has no table for the method, or its ``soft`` temperature is not the prior's (an imported
       prior, a tailor prior trained with another ``--alpha``). A tailor prior trained at the
       task's own temperature keeps the task's (calibrated) table.
    2. the task's table for the method;
    3. MCTS only: the RQL paper's ``omega' = tau = 1``;
    4. :data:`tailor.methods.FALLBACK_COEFFICIENTS`.

    Raises:
        TailorError: ``omega`` with a method other than ``residual``, or with a prior whose
            temperature is unknown.
    """
    layers: list[tuple[str, Mapping[str, float] | None]] = []
    table = task.coefficients.get(method)
    found = prior_temperature(dict(prior_meta)) if prior_meta is not None else None
    if omega is not None:
        if method != "residual":
            raise TailorError(f"--omega weighs the prior's task in --method residual, not {method}")
        if not (math.isfinite(omega) and omega >= 0):
            raise TailorError(f"--omega must be a finite number >= 0, got {omega}")
        if found is None:
            raise TailorError(
                "--omega needs the prior's temperature (omega' = omega * alpha), and this "
                "prior's is unknown; pass --omega-prime (and --alpha-hat) instead"
            )
    if found is not None:
        alpha, where = found
        task_alpha = task.coefficients.get("soft", {}).get("alpha")
        made_for_it = (
            table is not None
            and task_alpha is not None
            and math.isclose(alpha, task_alpha, rel_tol=1e-9)
        )
        if omega is not None or not made_for_it:
            w = 1.0 if omega is None else float(omega)
            label = f"prior temperature {alpha:g} ({where}), omega {w:g}"
            layers.append((label, temperature_defaults(alpha, w)))
    layers.append((f"task {task.name!r}", table))
    if mcts:
        layers.append(("the RQL paper's MCTS default", {"omega_prime": 1.0, "alpha_hat": 1.0}))
    layers.append((_FALLBACK, FALLBACK_COEFFICIENTS.get(method)))
    return layers


def describe_coefficients(method: Method) -> str:
    """``"omega_prime=0.1 (task 'x'), alpha_hat=0.2 (--alpha-hat)"`` for log lines (one source
    named once for the coefficients that share it: ``"omega_prime=0.1, alpha_hat=0.1 (...)"``)."""
    groups: list[tuple[str, list[str]]] = []
    for k, v in method.coefficients.items():
        source = method.sources.get(k, "given")
        if groups and groups[-1][0] == source:
            groups[-1][1].append(f"{k}={v:g}")
        else:
            groups.append((source, [f"{k}={v:g}"]))
    return ", ".join(f"{', '.join(parts)} ({source})" for source, parts in groups)


def check_method_kind(name: str | None, customization: bool) -> None:
    """Raise a TailorError that says which command runs ``name`` when it is not this one's."""
    allowed = CUSTOMIZATION_METHODS if customization else TRAINING_METHODS
    if name is None:
        raise TailorError(f"--method is required; one of {', '.join(allowed)}")
    if name not in METHODS:
        raise TailorError(f"unknown method {name!r}; known methods: {', '.join(allowed)}")
    if name in allowed:
        return
    if METHODS[name].customization:
        raise TailorError(
            f"method {name!r} customizes a prior policy and needs one: use `tailor customize "
            f"--prior RUN_DIR --method {name} ...`"
        )
    raise TailorError(
        f"method {name!r} trains from scratch: use `tailor train --method {name} ...`"
    )


CONFIGS: dict[str, type] = {
    "ppo": PPOConfig,
    "dqn": SoftDQNConfig,
    "sac": SACConfig,
    "mcts": MCTSConfig,
}


def config_flags(
    algo: str, argv: list[str], base: Mapping[str, Any] | None = None, prog: str = "tailor"
) -> dict[str, Any]:
    """Fields of ``algo``'s config dataclass (``ppo``, ``dqn``, ``sac``, ``mcts``, and
    ``lm-ppo`` / ``lm-dpo`` for the language-model loops) set on the command line, e.g.
    ``--num-epochs 3
    --hidden 32 32`` (every field is a flag, its docstring the help: parsed by ``tyro``, the
    library CleanRL uses for its configs). ``base`` holds the values other flags already set
    (they are the defaults shown); ``--help`` prints every field and exits.

    Returns:
        Only the fields whose value differs from ``base`` / the dataclass default.
    """
    import tyro

    if algo in ("lm-ppo", "lm-dpo"):  # imported on use: the LM loops need the `lm` extra
        from tailor.algos.dpo import LMDPOConfig
        from tailor.algos.lm_ppo import LMPPOConfig

        cls = LMPPOConfig if algo == "lm-ppo" else LMDPOConfig
    else:
        _check_algo(algo, tuple(CONFIGS))
        cls = CONFIGS[algo]
    known = {f.name for f in dataclasses.fields(cls)}
    start = {k: v for k, v in dict(base or {}).items() if k in known}
    if "hidden" in start:
        start["hidden"] = tuple(int(h) for h in start["hidden"])
    default = cls(**start)
    parsed = tyro.cli(cls, args=list(argv), default=default, prog=prog)
    return {
        f.name: getattr(parsed, f.name)
        for f in dataclasses.fields(cls)
        if getattr(parsed, f.name) != getattr(default, f.name)
    }


def _config(cls: type, steps: int | None, seed: int, overrides: Mapping[str, Any]) -> Any:
    """``cls(**overrides)`` with ``total_steps`` and ``seed``; unknown fields are an error."""
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise TailorError(
            f"unknown {cls.__name__} option(s) {', '.join(bad)}; known: {', '.join(sorted(fields))}"
        )
    kwargs = dict(overrides)
    if steps is not None and "total_steps" in fields:
        kwargs["total_steps"] = int(steps)
    kwargs["seed"] = int(seed)
    if "hidden" in kwargs:
        kwargs["hidden"] = _hidden(cls, kwargs["hidden"])
    return cls(**kwargs)  # the config checks every field (tailor.algos.configs)


def _hidden(cls: type, value: Any) -> tuple[int, ...]:
    """``hidden`` as a tuple of ints; a value that is not a list of integers is an error."""
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(h, int) and not isinstance(h, bool) for h in value
    ):
        raise TailorError(
            f"{cls.__name__}.hidden must be a list of positive integers, e.g. [64, 64], "
            f"got {value!r}"
        )
    return tuple(value)


def _check_algo(algo: str, allowed: tuple[str, ...]) -> None:
    if algo not in allowed:
        raise TailorError(
            f"--algo {algo!r} is not available here; choose one of {', '.join(allowed)}"
        )


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise TailorError(f"steps must be a positive integer, got {steps!r}")
    return steps


# ---------------------------------------------------------------------------------------------
# Policy checkpoints of the DQN / SAC / MCTS kinds (PPO's are tailor.checkpoint.save_policy's)


def _save(out: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Commit the policy as the run's checkpoint (:func:`tailor.rundir.commit_checkpoint`: a
    kill at any moment leaves the previous state or this one, never a half-written file);
    ``<out>/policy.safetensors`` and ``policy.json`` are its published copies."""
    from tailor import __version__

    out = Path(out)
    full = {"format": RQL_FORMAT, "tailor_version": __version__, "kind": meta["algo"], **meta}
    steps = meta.get("steps")
    step = steps if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0 else 0
    commit_checkpoint(out, {POLICY_FILE: (tensors, full)}, step)
    return out


def _policy_file(path: str | Path) -> Path:
    path = check_input_path(path, "policy")
    if path.is_dir():
        path = path / POLICY_FILE
    if not path.is_file():
        raise TailorError(
            f"policy {str(path)!r} does not exist (expected a run directory "
            f"with a {POLICY_FILE} or the file itself)"
        )
    return path


def policy_kind(path: str | Path) -> str | None:
    """The kind of the policy in ``path`` (a run directory or a policy file): ``"ppo"``,
    ``"dqn"``, ``"sac"``, ``"mcts"``, or ``None`` when it is no readable tailor policy.

    Reads only the safetensors header; never raises.
    """
    import json

    try:
        with safe_open(str(_policy_file(path)), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("tailor", "{}"))
    except Exception:
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("format") == RQL_FORMAT:
        kind = meta.get("kind", meta.get("algo"))
        return kind if kind in ALGOS else None
    return "ppo" if meta.get("format") == "tailor-policy" else None


def is_rql_policy(path: str | Path) -> bool:
    """Whether ``path`` (a run directory or a policy file) holds a DQN/SAC/MCTS policy."""
    return policy_kind(path) in ALGOS


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _qnet_from(tensors: dict, prefix: str, meta: dict) -> torch.nn.Module:
    net = mlp([int(meta["obs_dim"]), *meta["hidden"], int(meta["n_actions"])])
    net.load_state_dict(_prefixed(tensors, prefix))
    return net.eval()


def load_policy(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a DQN / SAC / MCTS run directory or policy file; returns ``(meta, tensors)``.

    Raises:
        TailorError: missing, truncated or foreign file
            (see :func:`tailor.checkpoint.load_tensors`).
    """
    tensors, meta = load_tensors(_policy_file(path), RQL_FORMAT)
    return meta, tensors


def _load_dqn_prior(prior_dir: str | Path, task: Task) -> tuple[QPrior, dict, dict]:
    meta, tensors = load_policy(prior_dir)
    if meta.get("algo") != "dqn" or meta.get("has_prior"):
        raise TailorError(
            f"{str(prior_dir)!r} is not a soft-DQN prior (algo "
            f"{meta.get('algo')!r}, method {meta.get('method')!r}); train one with "
            f"train_prior(..., algo='dqn')"
        )
    _check_task(meta, task, prior_dir)
    alpha = float(meta["coefficients"]["alpha_hat"])
    if alpha <= 0:
        raise TailorError(
            f"the prior {str(prior_dir)!r} was trained at temperature 0: it has "
            f"no log-probabilities to customize with"
        )
    return QPrior(_qnet_from(tensors, "q.", meta), alpha), meta, tensors


def _check_task(meta: dict, task: Task, path: str | Path) -> None:
    if meta.get("env_id") != task.env_id:
        raise TailorError(
            f"{str(path)!r} was trained on {meta.get('env_id')!r} (task "
            f"{meta.get('task')!r}), not on {task.env_id!r} of task {task.name!r}"
        )


def _spaces(task: Task) -> dict[str, Any]:
    env = make_env(task)
    try:
        out: dict[str, Any] = {"obs_dim": int(np.prod(env.observation_space.shape))}
        if hasattr(env.action_space, "n"):
            out["n_actions"] = int(env.action_space.n)
        else:
            out["act_dim"] = int(env.action_space.shape[0])
            out["action_low"] = env.action_space.low.tolist()
            out["action_high"] = env.action_space.high.tolist()
            out["obs_low"] = env.observation_space.low.tolist()
            out["obs_high"] = env.observation_space.high.tolist()
    finally:
        env.close()
    return out


def _meta(
    task: Task,
    algo: str,
    method: Method,
    cfg: Any,
    stats: dict,
    steps: int,
    seed: int,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "algo": algo,
        "task": task.name,
        "env_id": task.env_id,
        "method": method.name,
        # Q-learning checkpoints record the reward spec itself (omega', alpha_hat), which is
        # what acting with them needs, for every method.
        "coefficients": {
            "omega_prime": method.spec.omega_prime,
            "alpha_hat": method.spec.alpha_hat,
        },
        "coefficient_sources": dict(method.sources),
        **_spaces(task),
        "hidden": list(getattr(cfg, "hidden", ())),
        "config": dataclasses.asdict(cfg),
        "steps": int(stats.get("interrupted_at_step", steps)),
        "seed": seed,
        "train_stats": stats,
        **extra,
    }


def _sac_actor(meta: dict, tensors: dict, prefix: str = "actor.") -> SquashedGaussianActor:
    """The SAC actor of a checkpoint: ``actor_hidden`` / ``actor_options`` where an imported
    prior's architecture was kept, else ``hidden`` and tailor's defaults."""
    actor = SquashedGaussianActor(
        int(meta["obs_dim"]),
        int(meta["act_dim"]),
        meta.get("actor_hidden", meta["hidden"]),
        np.asarray(meta["action_low"]),
        np.asarray(meta["action_high"]),
        np.asarray(meta["obs_low"]),
        np.asarray(meta["obs_high"]),
        **meta.get("actor_options", {}),
    )
    actor.load_state_dict(_prefixed(tensors, prefix))
    return actor.eval()


# ---------------------------------------------------------------------------------------------
# One runner per algorithm: RunRequest -> run directory


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """What every runner gets.

    Attributes:
        task: the task.
        method: the resolved method.
        steps: environment steps (ignored by MCTS).
        seed: seed of everything random in the run.
        out: the run directory to write.
        prior: the prior's run directory or policy file (``None``: train from scratch).
        log: progress printer (``None``: silent).
        config: fields of the algorithm's config dataclass.
        progress: PPO only: a progress bar.
        overwrite: replace a run or model already in ``out`` (otherwise it is refused).
        prior_options: keyword arguments of :func:`tailor.priors.load_prior` for an imported
            prior (``format``, ``normalizer``, ``std``, ``temperature``, ``activation``).
    """

    task: Task
    method: Method
    steps: int
    seed: int
    out: Path
    prior: str | Path | None
    log: Log
    config: Mapping[str, Any]
    progress: bool = False
    overwrite: bool = False
    prior_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _claim(r: RunRequest, kind: str) -> RunDir:
    """Own ``r.out`` for the whole run (:func:`tailor.rundir.claim_run_dir`): refuses another
    process's run, an existing run or model unless ``r.overwrite``, and always the prior's own
    directory. Called after the inputs are checked and before the long work starts."""
    return claim_run_dir(r.out, kind, overwrite=r.overwrite, prior_path=r.prior)


def _save_trained(
    r: RunRequest, algo: str, group: str, net: torch.nn.Module, cfg: Any, stats: dict
) -> Path:
    """Save a policy trained from scratch (DQN's Q-network ``q.*``, SAC's actor ``actor.*``)."""
    tensors = {f"{group}.{k}": v for k, v in net.state_dict().items()}
    meta = _meta(r.task, algo, r.method, cfg, stats, r.steps, r.seed, has_prior=False)
    return _save(r.out, tensors, meta)


def _run_ppo(r: RunRequest) -> Path:
    cfg = _config(PPOConfig, r.steps, r.seed, r.config)
    cfg.validate()
    prior = load_prior(r.prior, **r.prior_options) if r.prior is not None else None
    if prior is not None and not isinstance(prior, PolicyPrior):
        kind = prior.meta.get("distribution", {}).get("kind", type(prior).__name__)
        raise TailorError(
            f"PPO customization starts from a Gaussian actor's weights; {str(r.prior)!r} "
            f"is a {kind} policy. Gaussian priors: tailor runs, SB3 PPO/A2C, rsl-rl, "
            "CleanRL (see `tailor inspect`); tanh-squashed priors (SB3 SAC/TQC) customize "
            "with --algo sac, Q-network and categorical ones with --algo dqn or mcts"
        )
    with _claim(r, "ppo"):
        result = train_ppo(r.task, r.method, cfg, r.out, prior=prior, progress=r.progress)
    _log_ppo(r.log, r.method, r.task, result, r.out)
    return r.out


def _log_ppo(log: Log, method: Method, task: Task, result: Any, out: Path) -> None:
    if log is None:
        return
    last = result.metrics[-1] if result.metrics else {}
    log(f"{method.name} on {task.name}: {result.steps} steps in {result.wall_s:.1f} s")
    if last.get("return_basic", "") != "":
        log(
            f"  last episodes: basic {last['return_basic']:.1f}, add-on "
            f"{last['return_addon']:.1f}, total {last['return_total']:.1f}, "
            f"{task.statistic_name} {last['statistic']:.3f}"
        )
    log(f"  saved {out / POLICY_FILE} and {out / 'metrics.csv'}")


@contextlib.contextmanager
def _saving_on_interrupt(r: RunRequest) -> Iterator[InterruptRequest]:
    """Ctrl-C in a DQN / SAC run: the loop stops after the step it is in, the runner saves what
    was learnt (the policy's metadata says ``steps`` and ``interrupted_at_step``) and then
    ``KeyboardInterrupt`` is raised (exit 130). A second Ctrl-C stops at once, saving nothing."""
    notice = "interrupted: saving what was learnt so far (Ctrl-C again to stop at once)"
    with stop_on_interrupt(notice) as interrupt:
        yield interrupt
    if interrupt.requested:
        raise KeyboardInterrupt(f"saved the networks so far in {str(r.out)!r}")


def _run_dqn(r: RunRequest) -> Path:
    if r.prior is None:
        cfg = _config(SoftDQNConfig, r.steps, r.seed, r.config)
        with _claim(r, "dqn"), _saving_on_interrupt(r) as stop:
            qnet, stats = train_soft_dqn(r.task, r.method, cfg, log=r.log, interrupt=stop)
            return _save_trained(r, "dqn", "q", qnet, cfg, stats)
    q_prior, prior_tensors, prior_meta = _q_prior(r, "dqn")
    # A residual run explores with the prior's own stochasticity and starts at Q_R = 0.
    defaults = {"epsilon_start": 0.0, "epsilon_end": 0.0, "zero_init": True}
    cfg = _config(SoftDQNConfig, r.steps, r.seed, {**defaults, **r.config})
    with _claim(r, "dqn"), _saving_on_interrupt(r) as stop:
        q_r, stats = train_soft_dqn(r.task, r.method, cfg, prior=q_prior, log=r.log, interrupt=stop)
        return _save_residual_dqn(r, q_r, prior_tensors, prior_meta, cfg, stats)


def _save_residual_dqn(
    r: RunRequest,
    q_r: torch.nn.Module,
    prior_tensors: dict[str, torch.Tensor],
    prior_meta: dict[str, Any],
    cfg: Any,
    stats: dict,
) -> Path:
    """Save a residual DQN: ``Q_R`` (``q.*``) with the prior it acts with (``prior.*``, and
    ``prior_norm.*`` for an imported prior's normalizer; see :func:`_q_prior`)."""
    tensors = {f"q.{k}": v for k, v in q_r.state_dict().items()}
    tensors.update(prior_tensors)
    extra = {"has_prior": True, **prior_meta}
    meta = _meta(r.task, "dqn", r.method, cfg, stats, r.steps, r.seed, **extra)
    return _save(r.out, tensors, {**meta, "prior": str(r.prior)})


_Q_PRIORS = (
    "a Q-network or categorical prior: a tailor DQN run, an SB3 DQN with --prior-temperature "
    "TAU, an SB3 PPO/A2C on Discrete actions"
)
_SQUASHED_PRIORS = "a tanh-squashed Gaussian prior: a tailor SAC run, an SB3 SAC or TQC policy"


def _describe(prior: Any) -> str:
    """``"an SB3 PPO policy (gaussian)"``-like words for a loaded prior (error messages)."""
    source = prior.meta.get("source") or {}
    algorithm = source.get("algorithm", prior.meta.get("kind", "PPO"))
    who = f"{source.get('library', 'tailor')} {algorithm}"
    dist = (prior.meta.get("distribution") or {}).get("kind", "gaussian")
    return f"a {who} policy ({dist})"


def _no_options(r: RunRequest) -> None:
    given = [k for k, v in r.prior_options.items() if v is not None]
    if given:
        raise TailorError(
            f"{', '.join('--prior-' + k for k in given)} only apply to imported priors; "
            f"{str(r.prior)!r} is a tailor checkpoint, which carries its own distribution"
        )


def _import_prior(r: RunRequest, want: type, algo: str, accepted: str) -> Any:
    """:func:`tailor.priors.load_prior` of ``r.prior``, which must be a ``want`` whose sizes
    fit the task."""
    prior = load_prior(r.prior, **r.prior_options)
    if not isinstance(prior, want):
        raise TailorError(
            f"--algo {algo} customizes {accepted}; {str(r.prior)!r} is {_describe(prior)}"
            + (
                "; customize Gaussian priors with --algo ppo"
                if isinstance(prior, PolicyPrior)
                else ""
            )
        )
    sp = _spaces(r.task)
    check_spaces(prior, sp["obs_dim"], sp.get("n_actions", sp.get("act_dim", -1)), r.task.name)
    return prior


def _q_prior(r: RunRequest, algo: str) -> tuple[QPrior, dict[str, torch.Tensor], dict[str, Any]]:
    """The prior of a residual DQN / MCTS run: ``(QPrior the loop uses, the tensors the saved
    policy keeps to act, metadata)``.

    A tailor DQN prior is its Q-network at its temperature (``prior.*``). An imported one
    (:class:`~tailor.priors.policies.BoltzmannQPrior`: SB3 DQN with a temperature, SB3
    categorical PPO/A2C at temperature 1) becomes ``QPrior(Sequential(normalizer, qnet), tau)``,
    the same ``log_softmax(Q(norm(s)) / tau)``; it is saved as ``prior.*`` (the network),
    ``prior_norm.*`` (the frozen normalizer) and ``prior_net`` (hidden sizes, activation,
    normalizer formula), which :func:`_acting_q_prior` reads back.
    """
    if policy_kind(r.prior) in ALGOS:
        _no_options(r)
        q, pmeta, _ = _load_dqn_prior(r.prior, r.task)
        tensors = {f"prior.{k}": v for k, v in q.qnet.state_dict().items()}
        return q, tensors, {"prior_alpha": q.alpha, "hidden_prior": list(pmeta["hidden"])}
    p = _import_prior(r, BoltzmannQPrior, algo, _Q_PRIORS)
    tensors = {f"prior.{k}": v for k, v in p.qnet.state_dict().items()}
    tensors.update({f"prior_norm.{k}": v for k, v in p.obs_norm.state_dict().items()})
    linears = [m for m in p.qnet.modules() if isinstance(m, torch.nn.Linear)]
    net = {
        "hidden": [m.out_features for m in linears[:-1]],
        "activation": p.meta.get("activation", "relu"),
        "normalizer": {"mode": p.obs_norm.mode, "eps": p.obs_norm.eps, "clip": p.obs_norm.clip},
    }
    meta = {
        "prior_alpha": p.temperature,
        "prior_net": net,
        "hidden_prior": net["hidden"],
        "prior_source": p.meta.get("source"),
    }
    qnet = torch.nn.Sequential(p.obs_norm, p.qnet).eval()
    return QPrior(qnet, p.temperature), tensors, meta


def _acting_q_prior(meta: dict, tensors: dict) -> QPrior:
    """The prior a saved residual DQN / MCTS policy acts with (the inverse of :func:`_q_prior`)."""
    alpha = float(meta["prior_alpha"])
    net = meta.get("prior_net")
    if net is None:
        hidden = meta.get("hidden_prior", meta["hidden"])
        return QPrior(_qnet_from(tensors, "prior.", {**meta, "hidden": hidden}), alpha)
    obs_dim = int(meta["obs_dim"])
    qnet = mlp([obs_dim, *net["hidden"], int(meta["n_actions"])], net["activation"])
    qnet.load_state_dict(_prefixed(tensors, "prior."))
    spec = net["normalizer"]
    norm = EmpiricalNormalization(
        obs_dim, eps=float(spec["eps"]), mode=spec["mode"], clip=spec["clip"]
    )
    norm.load_state_dict(_prefixed(tensors, "prior_norm."))
    return QPrior(torch.nn.Sequential(norm, qnet).eval(), alpha)


def _sac_prior(r: RunRequest) -> tuple[Any, SquashedGaussianActor | None, dict[str, Any]]:
    """``(prior, actor_init, info)`` of a residual SAC run.

    A tailor SAC prior is its actor (copied and frozen by the loop, which also starts the
    customized actor from it). An imported SB3 SAC/TQC policy
    (:class:`~tailor.priors.policies.SquashedGaussianPrior`) gives ``log pi_prior`` with SB3's
    own formula, and its weights start the customized actor (``to_actor()``: the architecture
    always fits, as tailor's actor takes the prior's activation, log-std clamp and
    normalizer). ``info``: the default ``hidden`` of the critics and ``prior_alpha``.
    """
    if policy_kind(r.prior) in ALGOS:
        _no_options(r)
        pmeta, ptensors = load_policy(r.prior)
        if pmeta.get("algo") != "sac":
            raise TailorError(
                f"{str(r.prior)!r} is not a SAC prior (algo "
                f"{pmeta.get('algo')!r}); train one with train_prior(algo='sac')"
            )
        _check_task(pmeta, r.task, r.prior)
        alpha = float(pmeta["coefficients"]["alpha_hat"])
        return (
            _sac_actor(pmeta, ptensors),
            None,
            {"hidden": tuple(pmeta["hidden"]), "prior_alpha": alpha},
        )
    p = _import_prior(r, SquashedGaussianPrior, "sac", _SQUASHED_PRIORS)
    sp = _spaces(r.task)
    if not (
        np.allclose(p.low.numpy(), sp["action_low"])
        and np.allclose(p.high.numpy(), sp["action_high"])
    ):
        raise TailorError(
            f"the prior's action bounds [{p.low.tolist()}, {p.high.tolist()}] are not task "
            f"{r.task.name!r}'s [{sp['action_low']}, {sp['action_high']}]"
        )
    actor = p.to_actor()
    found = prior_temperature(p.meta)
    info = {
        "hidden": actor.hidden,
        "prior_alpha": found[0] if found else None,
        "prior_source": p.meta.get("source"),
    }
    return p, actor, info


def _run_sac(r: RunRequest) -> Path:
    if r.prior is None:
        cfg = _config(SACConfig, r.steps, r.seed, r.config)
        with _claim(r, "sac"), _saving_on_interrupt(r) as stop:
            actor, stats = train_sac(r.task, r.method, cfg, log=r.log, interrupt=stop)
            return _save_trained(r, "sac", "actor", actor, cfg, stats)
    prior, actor_init, info = _sac_prior(r)
    cfg = _config(SACConfig, r.steps, r.seed, {"hidden": tuple(info.pop("hidden")), **r.config})
    with _claim(r, "sac"), _saving_on_interrupt(r) as stop:
        actor, stats = train_sac(
            r.task, r.method, cfg, prior=prior, log=r.log, actor_init=actor_init, interrupt=stop
        )
        tensors = {f"actor.{k}": v for k, v in actor.state_dict().items()}
        extra = {
            "has_prior": False,
            **info,
            "actor_hidden": list(actor.hidden),
            "actor_options": actor.options(),
        }
        meta = _meta(r.task, "sac", r.method, cfg, stats, r.steps, r.seed, **extra)
        return _save(r.out, tensors, {**meta, "prior": str(r.prior)})


def _run_mcts(r: RunRequest) -> Path:
    """MCTS trains nothing: the run directory stores the prior and the search settings."""
    assert r.prior is not None
    q_prior, tensors, prior_meta = _q_prior(r, "mcts")
    numpy_log_prior(q_prior.qnet, q_prior.alpha)  # the search's form of it: fails here, not later
    spec = r.method.spec
    cfg = _config(
        MCTSConfig,
        None,
        r.seed,
        {**r.config, "omega_prime": spec.omega_prime, "tau": spec.alpha_hat},
    )
    extra = {"has_prior": True, **prior_meta}
    meta = _meta(r.task, "mcts", r.method, cfg, {}, 0, r.seed, **extra)
    meta["hidden"] = prior_meta["hidden_prior"]
    with _claim(r, "mcts"):
        return _save(r.out, tensors, meta)


_RUNNERS = {"ppo": _run_ppo, "dqn": _run_dqn, "sac": _run_sac, "mcts": _run_mcts}


# ---------------------------------------------------------------------------------------------
# The entry points


def train_prior(
    task: Task | str,
    algo: str,
    steps: int,
    seed: int,
    out: str | Path,
    *,
    method: str = "soft",
    alpha: float | None = None,
    log: Log = print,
    progress: bool = False,
    overwrite: bool = False,
    **config: Any,
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
        alpha: the temperature (default: the task's coefficient for ``method``).
        log: progress printer (``None``: silent).
        progress: PPO only: a progress bar.
        overwrite: replace a run or model already in ``out`` (otherwise it is refused).
        **config: fields of the algorithm's config dataclass to override.

    Returns:
        The run directory.

    Raises:
        TailorError: bad algo/method/steps, a task whose action space does not fit the algo,
            an ``out`` that holds another run (see :func:`tailor.rundir.claim_run_dir`).
    """
    task = get_task(task)
    _check_algo(algo, TRAIN_ALGOS)
    allowed = TRAINING_METHODS if algo == "ppo" else _RQL_TRAIN_METHODS
    if method not in allowed:
        raise TailorError(
            f"train_prior: method must be one of {', '.join(allowed)}, got {method!r}"
        )
    m = task_method(task, method, flags=True, alpha=alpha)
    steps = _check_steps(steps)
    if log is not None and m.coefficients:
        log(f"{method}: {describe_coefficients(m)}")
    if algo != "ppo":
        torch.set_num_threads(1)
    request = RunRequest(task, m, steps, seed, Path(out), None, log, config, progress, overwrite)
    return _RUNNERS[algo](request)


def customize(
    task: Task | str,
    algo: str,
    prior: str | Path,
    steps: int,
    seed: int,
    out: str | Path,
    omega_prime: float | None = None,
    alpha_hat: float | None = None,
    *,
    method: str = "residual",
    omega: float | None = None,
    log: Log = print,
    progress: bool = False,
    overwrite: bool = False,
    prior_options: Mapping[str, Any] | None = None,
    **config: Any,
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
        omega_prime: weight of ``log pi_prior``.
        alpha_hat: temperature of the customized policy (MCTS: the search temperature ``tau``).
            Both default through :func:`coefficient_layers`: the prior's temperature ``alpha``
            where it is known (``omega' = omega * alpha``, ``alpha_hat = alpha``) unless the
            task's table was made for a prior at that temperature, then the task's table, then
            (MCTS) the RQL paper's 1.0, then :data:`tailor.methods.FALLBACK_COEFFICIENTS`. The
            policy's metadata records them and their sources (``coefficient_sources``).
        method: ``"residual"``, ``"kl"`` (``omega' = alpha_hat``) or ``"greedy"`` (``omega' =
            0``); MCTS is always residual.
        omega: residual only: the weight of the prior's own task, ``omega' = omega * alpha``
            (needs the prior's temperature; default 1 where the temperature rule applies).
        log: progress printer.
        progress: PPO only: a progress bar.
        overwrite: replace a run or model already in ``out`` (never the prior's directory).
        prior_options: :func:`tailor.priors.load_prior` options for a prior from another
            library (SB3, rsl-rl, CleanRL, skrl): ``format``, ``normalizer``, ``std``,
            ``temperature``, ``activation``.
        **config: fields of the algorithm's config dataclass.

    Returns:
        The run directory.

    Raises:
        TailorError: bad algo/method, a prior of the wrong kind or for another env, an ``out``
            that holds another run or is the prior's directory.
    """
    task = get_task(task)
    _check_algo(algo, CUSTOMIZE_ALGOS)
    if method not in CUSTOMIZATION_METHODS:
        raise TailorError(
            f"customize: method must be one of {', '.join(CUSTOMIZATION_METHODS)}, got {method!r}"
        )
    if algo == "mcts":
        method = "residual"
    else:
        steps = _check_steps(steps)
    where = f"task {task.name!r}"
    check_coefficient_table(task.coefficients, where)
    options = {k: v for k, v in dict(prior_options or {}).items() if v is not None}
    given = {"omega_prime": omega_prime, "alpha_hat": alpha_hat}
    # The given coefficients are checked before the prior is read (a cheap error first).
    resolve(method, coefficient_layers(task, method, None), where=where, flags=True, **given)
    layers = coefficient_layers(
        task, method, _prior_meta(prior, options), omega, mcts=algo == "mcts"
    )
    m = resolve(method, layers, where=where, flags=True, **given)
    if log is not None:
        log(f"{method} coefficients: {describe_coefficients(m)}")
    if algo != "ppo":
        torch.set_num_threads(1)
    request = RunRequest(
        task, m, steps, seed, Path(out), prior, log, config, progress, overwrite, options
    )
    return _RUNNERS[algo](request)


def _prior_meta(prior: str | Path, options: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata of the prior at ``prior`` (a clear TailorError when it is unreadable)."""
    if policy_kind(prior) in ALGOS:
        return load_policy(prior)[0]
    with warnings.catch_warnings():  # the runner loads it again and warns then
        warnings.simplefilter("ignore")
        return dict(load_prior(prior, **options).meta)


def resume(
    run_dir: str | Path,
    steps: int,
    *,
    checkpoint_every: int | None = None,
    log: Log = print,
    progress: bool = False,
    tensorboard: bool | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Continue the PPO run in ``run_dir`` until ``steps`` environment steps in total.

    The task, method, coefficients and config come from the run's trainer checkpoint; only the
    step budget, the checkpoint interval and ``tensorboard`` may change. Returns ``(run_dir,
    saved)`` where ``saved`` is :func:`tailor.algos.ppo.read_run`'s description of the run.
    """
    run_dir = Path(run_dir)
    info = read_run(run_dir)
    task = get_task(info["task"])
    # The run's own coefficients (named as their source in the resumed checkpoint's metadata).
    method = resolve(info["method"], [("the resumed run's checkpoint", info["coefficients"])])
    config = info["config"]
    config.total_steps = _check_steps(steps)
    if checkpoint_every is not None:
        config.checkpoint_every = checkpoint_every
    if tensorboard is not None:
        config.tensorboard = bool(tensorboard)
    # The lock makes a second `--resume` of a running run an error instead of a second writer;
    # the claim also collects what a killed session left half-written.
    with claim_run_dir(run_dir, "ppo", resume=True):
        result = train_ppo(task, method, config, run_dir, resume=True, progress=progress)
    _log_ppo(log, method, task, result, run_dir)
    return run_dir, info


# Selection episodes of best_checkpoint start at this seed offset, far from the seeds evaluations
# report (0.. and the sweeps' eval seeds), so the best checkpoint is not chosen on the episodes
# it is then reported on.
SELECTION_SEED_OFFSET = 100_000


def best_checkpoint(
    run_dir: str | Path,
    task: Task | str | None = None,
    *,
    episodes: int = 5,
    seed: int = SELECTION_SEED_OFFSET,
    max_candidates: int = 20,
    key: str = "total",
) -> dict[str, Any]:
    """The run's best policy snapshot, as the paper reports best checkpoints: every kept policy
    snapshot of ``run_dir`` (``checkpoints/step-N/policy.safetensors``, see
    :func:`tailor.rundir.list_checkpoints`; at most ``max_candidates``, evenly spaced, always with
    the last) is evaluated on ``episodes`` deterministic selection episodes from ``seed`` (seeds
    the reported evaluation does not use) and the one with the highest mean ``key`` wins.

    A customization run's snapshots that are still its prior, tensor for tensor (those of the
    critic warm-up, whose actor has not moved yet), are not candidates: the prior is not a
    customized policy, and choosing it would report the prior under the method's name.

    Returns:
        ``{"step", "policy" (its file), "last_step", "selection": [{"step", key}, ...],
        "selection_seed", "selection_episodes", "skipped_as_prior": [step, ...]}``.

    Raises:
        TailorError: a run directory without policy snapshots.
    """
    from tailor.rundir import list_checkpoints

    snaps = [c for c in list_checkpoints(run_dir) if POLICY_FILE in c.files]
    if not snaps:
        raise TailorError(f"{str(run_dir)!r} has no policy snapshots to choose from")
    skipped = [c.step for c in snaps[:-1] if same_as_prior(run_dir, c.path(POLICY_FILE))]
    snaps = [c for c in snaps if c.step not in skipped]
    if len(snaps) > max_candidates:
        idx = np.unique(np.linspace(0, len(snaps) - 1, max_candidates).round().astype(int))
        snaps = [snaps[i] for i in idx]
    scores = []
    for snap in snaps:
        ev = evaluate(snap.path(POLICY_FILE), task, episodes, seed)
        scores.append({"step": snap.step, key: ev[key]["mean"]})
    best = max(range(len(snaps)), key=lambda i: scores[i][key])
    return {
        "step": snaps[best].step,
        "policy": str(snaps[best].path(POLICY_FILE)),
        "last_step": snaps[-1].step,
        "selection": scores,
        "selection_seed": seed,
        "selection_episodes": episodes,
        "skipped_as_prior": skipped,
    }


def same_as_prior(
    run_dir: str | Path, policy_file: str | Path, prior: str | Path | None = None
) -> bool:
    """Whether ``policy_file`` holds exactly the tensors of the prior a customization run in
    ``run_dir`` started from: its copy ``run_dir/prior`` or, where that copy is gone (sweep
    directories do not commit it), the policy file of ``prior``. False without either."""
    prior_file = Path(run_dir) / "prior" / POLICY_FILE
    if not prior_file.is_file() and prior is not None:
        prior_file = Path(prior) / POLICY_FILE if Path(prior).is_dir() else Path(prior)
    if not prior_file.is_file():
        return False
    from safetensors.torch import load_file  # tensors only: no code, no header trust needed

    ref, snap = load_file(prior_file), load_file(policy_file)
    return ref.keys() == snap.keys() and all(torch.equal(ref[k], snap[k]) for k in ref)


def read_ppo_run(run_dir: str | Path) -> dict[str, Any]:
    """The saved description of a PPO run (:func:`tailor.algos.ppo.read_run`)."""
    return read_run(run_dir)


def _actor_fn(meta: dict, tensors: dict, task: Task, seed: int) -> Callable:
    """``act(obs, env) -> action`` for a loaded DQN / SAC / MCTS policy (greedy)."""
    algo = meta.get("algo")
    if algo == "sac":
        actor = _sac_actor(meta, tensors)

        def act(obs, env):
            with torch.no_grad():
                return actor.mean_action(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()

        return act
    if algo == "dqn":
        q = _qnet_from(tensors, "q.", meta)
        omega = float(meta["coefficients"]["omega_prime"])
        prior = _acting_q_prior(meta, tensors) if meta.get("has_prior") else None

        def act(obs, env):
            o = torch.as_tensor(obs, dtype=torch.float32)[None]
            with torch.no_grad():
                z = q(o)[0]
                if prior is not None and omega != 0.0:
                    z = z + omega * prior.log_probs(o)[0]
            return int(torch.argmax(z))  # greedy: alpha_hat = 0

        return act
    if algo == "mcts":
        qnet = _acting_q_prior(meta, tensors).qnet
        fields = {f.name for f in dataclasses.fields(MCTSConfig)}
        cfg = MCTSConfig(**{k: v for k, v in meta["config"].items() if k in fields})
        cfg.seed = seed
        log_prior = numpy_log_prior(qnet, float(meta["prior_alpha"]))
        if cfg.batched:
            return BatchedResidualMCTS(batch_model(task), log_prior, cfg).act
        model = TaskModel(task)
        search = ResidualMCTS(model, log_prior, cfg)

        def act(obs, env):
            model.sync(env)
            return search.act(obs)

        return act
    raise TailorError(f"unknown algo {algo!r} in the policy's metadata")


def evaluate(
    policy: str | Path,
    task: Task | str | None = None,
    episodes: int = 50,
    seed: int = 0,
    max_steps: int | None = None,
    *,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Evaluate any tailor policy checkpoint: the one result schema of :mod:`tailor.evaluate`.

    PPO policies run batched episodes (:func:`tailor.evaluate.evaluate`, the Gaussian's mean
    unless ``deterministic=False``); DQN acts with ``argmax(Q_R + omega' log pi)`` (``argmax Q``
    for a prior), SAC with the squashed mean, MCTS with a search from the true state at every
    step (:func:`tailor.evaluate.evaluate_stepwise`; episode ``i`` resets with ``seed + i``).

    Raises:
        TailorError: bad ``episodes``, unreadable policy, a policy trained for another env.
    """
    kind = policy_kind(policy)
    if kind in (None, "ppo"):
        prior = load_prior(policy)  # a clear error for anything unreadable
        name = task if task is not None else prior.meta.get("task")
        if not name:
            raise TailorError("--task is required (the policy does not name its task)")
        result = evaluate_gaussian(
            prior, name, episodes, deterministic=deterministic, seed=seed,
            **({"max_steps": max_steps} if max_steps is not None else {}),
        )  # fmt: skip
        result["policy"] = str(policy)
        return result
    torch.set_num_threads(1)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise TailorError(f"episodes must be a positive integer, got {episodes!r}")
    meta, tensors = load_policy(policy)
    task = get_task(task if task is not None else meta["task"])
    _check_task(meta, task, policy)
    return evaluate_stepwise(
        _actor_fn(meta, tensors, task, seed),
        task,
        episodes,
        seed=seed,
        max_steps=max_steps,
        policy=str(policy),
        algo=meta.get("algo"),
        method=meta.get("method"),
    )


# ---------------------------------------------------------------------------------------------
# Language models


def lm_method(name: str, **given: float | None) -> Method:
    """Resolve an LM method (token-level PPO or the DPO family) with the character model's
    default coefficients (:data:`tailor.lm.DEFAULT_COEFFICIENTS`) for what is not given."""
    from tailor.lm import DEFAULT_COEFFICIENTS

    return resolve(name, DEFAULT_COEFFICIENTS.get(name), flags=True, **given)


def _mean_last(history: list[dict[str, float]], key: str, n: int = 10) -> float:
    vals = [h[key] for h in history[-n:] if not math.isnan(h[key])]
    return sum(vals) / len(vals) if vals else float("nan")


def lm_customize(
    prior_dir: str | Path,
    method: str,
    out: str | Path,
    *,
    reward: str | None = None,
    pairs: list | None = None,
    prompts: list[str] | None = None,
    seed: int = 0,
    max_new_tokens: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    coefficients: Mapping[str, float | None] | None = None,
    record: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    allow_pickle_weights: bool = False,
) -> dict[str, Any]:
    """Customize a causal LM with token-level PPO (``residual``/``kl``/``greedy``) or the DPO
    family (``dpo``/``ce-dpo``/``decoupled-dpo``) and save it to ``out``.

    Args:
        prior_dir: the prior model directory.
        method: the method name.
        out: output model directory.
        reward: add-on reward name (PPO: required; DPO: ranks prior samples when no ``pairs``).
        pairs: preference pairs for the offline methods.
        prompts: prompts (default: the empty prompt).
        seed: seed of the run.
        max_new_tokens: longest completion (default: the config's).
        overrides: fields of :class:`~tailor.algos.lm_ppo.LMPPOConfig` /
            :class:`~tailor.algos.dpo.LMDPOConfig` to set.
        progress: show a progress bar.
        coefficients: ``omega_prime`` / ``alpha_hat`` / ``beta`` (``None``: the defaults).
        record: extra keys for the saved metadata (e.g. the reward file).
        overwrite: replace a run or model already in ``out`` (never the prior's directory).
        allow_pickle_weights: also load a prior whose weights are a pickle
            (``pytorch_model.bin``); by default only safetensors weights are read.

    Returns:
        The metadata saved with the model (``method``, ``config``, ``data``, ``final``,
        ``history``, ``wall_seconds``, ...).
    """
    from tailor.lm.model import load_model, load_tokenizer, save_model

    m = lm_method(method, **dict(coefficients or {}))
    prior = load_model(prior_dir, what="prior", allow_pickle=allow_pickle_weights)
    tok = load_tokenizer(prior_dir, what="prior")
    prompts = list(prompts or [""])
    base = {"seed": seed} | ({"max_new_tokens": max_new_tokens} if max_new_tokens else {})
    settings = {**base, **dict(overrides or {})}
    if not m.offline:
        from tailor.algos.lm_ppo import LMPPOConfig, customize_ppo

        config: Any = LMPPOConfig(**settings)
    else:
        from tailor.algos.dpo import LMDPOConfig, customize_offline

        config = LMDPOConfig(**settings)
    kind = "lm-dpo" if m.offline else "lm-ppo"
    # Claimed once the prior and the config are known good, before the training: a refused --out
    # costs nothing, and no directory is made for a run that cannot start.
    with claim_run_dir(out, kind, overwrite=overwrite, prior_path=prior_dir):
        t0 = time.perf_counter()
        if not m.offline:
            policy, history = customize_ppo(
                prior, tok, reward, m, config, prompts, progress=progress
            )
            info: dict[str, Any] = {
                "coefficients": dict(m.coefficients),
                "source": "on-policy samples",
            }
            final = {k: _mean_last(history, k) for k in ("addon", "success", "kl_to_prior")}
        else:
            policy, history, info = customize_offline(
                prior,
                tok,
                m,
                config,
                reward=reward,
                pairs=pairs,
                prompts=prompts,
                progress=progress,
            )
            final = {k: _mean_last(history, k) for k in ("loss", "accuracy")}
        wall = time.perf_counter() - t0
        meta = {
            "kind": "customize",
            "method": method,
            "prior": str(prior_dir),
            "reward": reward,
            **dict(record or {}),
            "prompts": prompts,
            "config": dataclasses.asdict(config),
            "data": info,
            "wall_seconds": round(wall, 1),
            "final": final,
            "history": history,
        }
        save_model(policy, tok, out, meta)
        return meta
