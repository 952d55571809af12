"""One runner per algorithm: a :class:`RunRequest` in, a run directory out.

Each runner builds its config (:func:`tailor.experiments.configs.make_config`), shapes the prior
for its loop (:mod:`tailor.experiments.prior_adapters`), claims ``--out``
(:func:`tailor.rundir.claim_run_dir`: after the inputs are checked, before the long work) and
commits the policy (PPO's loop commits its own checkpoints; DQN / SAC / MCTS policies go through
:func:`tailor.policyfile.rql_policy_tensors` and :func:`tailor.rundir.commit_checkpoint`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from tailor.algos.mcts import MCTSConfig, numpy_log_prior
from tailor.algos.ppo import PPOConfig
from tailor.algos.ppo import train as train_ppo
from tailor.algos.sac import SACConfig, train_sac
from tailor.algos.soft_dqn import SoftDQNConfig, train_soft_dqn
from tailor.checkpoint import POLICY_FILE
from tailor.envs import Task
from tailor.errors import TailorError
from tailor.experiments.configs import make_config
from tailor.experiments.prior_adapters import LoadedPrior, q_prior, sac_prior
from tailor.experiments.selection import select_iterate
from tailor.methods import Method
from tailor.policyfile import rql_meta, rql_policy_tensors
from tailor.priors import PolicyPrior, load_prior
from tailor.rundir import (
    InterruptRequest,
    RunDir,
    Stopped,
    claim_run_dir,
    commit_checkpoint,
    stop_on_interrupt,
)

__all__ = ["RUNNERS", "RunRequest", "log_ppo"]

Log = Callable[[str], None] | None


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """What every runner gets.

    Attributes:
        task: the task.
        method: the resolved method.
        steps: environment steps (ignored by MCTS).
        seed: seed of everything random in the run.
        out: the run directory to write.
        prior: the prior, read once by the entry point
            (:func:`tailor.experiments.prior_adapters.read_prior`; ``None``: train from scratch).
        log: progress printer (``None``: silent).
        config: fields of the algorithm's config dataclass.
        progress: PPO only: a progress bar.
        overwrite: replace a run or model already in ``out`` (otherwise it is refused).
    """

    task: Task
    method: Method
    steps: int
    seed: int
    out: Path
    prior: LoadedPrior | None
    log: Log
    config: Mapping[str, Any]
    progress: bool = False
    overwrite: bool = False


def _claim(r: RunRequest, kind: str) -> RunDir:
    """Own ``r.out`` for the whole run (:func:`tailor.rundir.claim_run_dir`): refuses another
    process's run, an existing run or model unless ``r.overwrite``, and always the prior's own
    directory. Called after the inputs are checked and before the long work starts."""
    prior_path = r.prior.path if r.prior is not None else None
    return claim_run_dir(r.out, kind, overwrite=r.overwrite, prior_path=prior_path)


def _commit(out: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Commit a DQN / SAC / MCTS policy as the run's checkpoint (a kill at any moment leaves the
    previous state or this one, never a half-written file); ``<out>/policy.safetensors`` and
    ``policy.json`` are its published copies."""
    steps = meta.get("steps")
    step = steps if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0 else 0
    commit_checkpoint(out, {POLICY_FILE: rql_policy_tensors(tensors, meta)}, step)
    return out


def _with_prior(r: RunRequest, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with ``prior``: where the customized policy's prior came from."""
    assert r.prior is not None
    return {**meta, "prior": str(r.prior.path)}


def _from_scratch(r: RunRequest, algo: str, cls: type, train: Callable, group: str) -> Path:
    """Train a DQN / SAC policy from scratch and save its network as ``<group>.*`` (DQN's
    Q-network ``q.*``, SAC's actor ``actor.*``)."""
    cfg = make_config(cls, r.steps, r.seed, r.config)
    with _claim(r, algo), _saving_on_interrupt(r) as stop:
        net, stats = train(r.task, r.method, cfg, log=r.log, interrupt=stop)
        tensors = {f"{group}.{k}": v for k, v in net.state_dict().items()}
        meta = rql_meta(r.task, algo, r.method, cfg, stats, r.steps, r.seed, has_prior=False)
        return _commit(r.out, tensors, meta)


def _run_ppo(r: RunRequest) -> Path:
    cfg = make_config(PPOConfig, r.steps, r.seed, r.config)
    cfg.validate()
    prior = None
    if r.prior is not None:
        # A tailor DQN / SAC / MCTS file is no PPO prior: load_prior says so, as for any file.
        prior = r.prior.policy
        if prior is None:
            prior = load_prior(r.prior.path, **r.prior.options)
    if prior is not None and not isinstance(prior, PolicyPrior):
        kind = prior.meta.get("distribution", {}).get("kind", type(prior).__name__)
        raise TailorError(
            f"PPO customization starts from a Gaussian actor's weights; "
            f"{str(r.prior.path)!r} is a {kind} policy. Gaussian priors: tailor runs, SB3 "
            "PPO/A2C, rsl-rl, CleanRL, skrl, TorchScript exports (see `tailor inspect`); "
            "tanh-squashed priors (SB3 SAC/TQC) customize with --algo sac, Q-network and "
            "categorical ones with --algo dqn or mcts; a deterministic actor (SB3 TD3/DDPG) "
            "customizes with PPO given --prior-std SIGMA"
        )
    with _claim(r, "ppo"):
        result = train_ppo(r.task, r.method, cfg, r.out, prior=prior, progress=r.progress)
        log_ppo(r.log, r.method, r.task, result, r.out)
        if cfg.select_episodes and r.method.customization:
            select_iterate(r.out, r.task, cfg.select_episodes, r.log)
    return r.out


def log_ppo(log: Log, method: Method, task: Task, result: Any, out: Path) -> None:
    """The lines a PPO run (trained, customized or resumed) ends with."""
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
    if getattr(result, "kl_scale", 1.0) != 1.0:
        log(kl_controller_line(method, result.kl_scale))
    log(f"  saved {out / POLICY_FILE} and {out / 'metrics.csv'}")


def kl_controller_line(method: Method, scale: float) -> str:
    """What the adaptive KL controller ended at (its scale of ``omega'`` and ``alpha_hat``)."""
    spec = method.spec
    return (
        f"  KL controller: omega'={spec.omega_prime * scale:.4g}, "
        f"alpha_hat={spec.alpha_hat * scale:.4g} at the end (x{scale:.4g})"
    )


@contextlib.contextmanager
def _saving_on_interrupt(r: RunRequest) -> Iterator[InterruptRequest]:
    """Ctrl-C (or SIGTERM / SIGHUP) in a DQN / SAC run: the loop stops after the step it is in,
    the runner saves what was learnt (the policy's metadata says ``steps`` and
    ``interrupted_at_step``) and then :class:`~tailor.rundir.Stopped` is raised (exit 130, 143
    or 129). A second signal stops at once, saving nothing."""
    notice = "interrupted: saving what was learnt so far (Ctrl-C again to stop at once)"
    with stop_on_interrupt(notice) as interrupt:
        yield interrupt
    if interrupt.requested:
        code = 128 + int(interrupt.signum or 2)  # 2: SIGINT
        raise Stopped(f"saved the networks so far in {str(r.out)!r}", exit_code=code)


def _run_dqn(r: RunRequest) -> Path:
    if r.prior is None:
        return _from_scratch(r, "dqn", SoftDQNConfig, train_soft_dqn, "q")
    prior, prior_tensors, prior_meta = q_prior(r.prior, r.task, "dqn")
    # A residual run explores with the prior's own stochasticity and starts at Q_R = 0.
    defaults = {"epsilon_start": 0.0, "epsilon_end": 0.0, "zero_init": True}
    cfg = make_config(SoftDQNConfig, r.steps, r.seed, {**defaults, **r.config})
    with _claim(r, "dqn"), _saving_on_interrupt(r) as stop:
        q_r, stats = train_soft_dqn(r.task, r.method, cfg, prior=prior, log=r.log, interrupt=stop)
        # Q_R (q.*) with the prior it acts with (prior.*, and prior_norm.* for an imported
        # prior's normalizer; see q_prior).
        tensors = {f"q.{k}": v for k, v in q_r.state_dict().items()}
        tensors.update(prior_tensors)
        extra = {"has_prior": True, **prior_meta}
        meta = rql_meta(r.task, "dqn", r.method, cfg, stats, r.steps, r.seed, **extra)
        return _commit(r.out, tensors, _with_prior(r, meta))


def _run_sac(r: RunRequest) -> Path:
    if r.prior is None:
        return _from_scratch(r, "sac", SACConfig, train_sac, "actor")
    prior, actor_init, info = sac_prior(r.prior, r.task)
    overrides = {"hidden": tuple(info.pop("hidden")), **r.config}
    cfg = make_config(SACConfig, r.steps, r.seed, overrides)
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
        meta = rql_meta(r.task, "sac", r.method, cfg, stats, r.steps, r.seed, **extra)
        if r.log is not None and "kl_scale" in stats:
            held = f", KL held {stats['kl_held']:.3g} nats/step"
            r.log(kl_controller_line(r.method, stats["kl_scale"]) + held)
        return _commit(r.out, tensors, _with_prior(r, meta))


def _run_mcts(r: RunRequest) -> Path:
    """MCTS trains nothing: the run directory stores the prior and the search settings."""
    assert r.prior is not None
    prior, tensors, prior_meta = q_prior(r.prior, r.task, "mcts")
    numpy_log_prior(prior.qnet, prior.alpha)  # the search's form of it: fails here, not later
    spec = r.method.spec
    cfg = make_config(
        MCTSConfig,
        None,
        r.seed,
        {**r.config, "omega_prime": spec.omega_prime, "tau": spec.alpha_hat},
    )
    extra = {"has_prior": True, **prior_meta}
    meta = rql_meta(r.task, "mcts", r.method, cfg, {}, 0, r.seed, **extra)
    meta["hidden"] = prior_meta["hidden_prior"]
    with _claim(r, "mcts"):
        return _commit(r.out, tensors, meta)


RUNNERS: dict[str, Callable[[RunRequest], Path]] = {
    "ppo": _run_ppo,
    "dqn": _run_dqn,
    "sac": _run_sac,
    "mcts": _run_mcts,
}
