"""Evaluating a run: any policy file through the one evaluator, and a run's best checkpoint.

:func:`evaluate` reads a policy's kind from its header (:func:`tailor.policyfile.policy_kind`)
and acts with it: PPO's Gaussian policies batched (:func:`tailor.evaluate.evaluate`), DQN / SAC /
MCTS step by step (:func:`tailor.evaluate.evaluate_stepwise`), one result schema for all.
:func:`best_checkpoint` picks a run's best kept snapshot on selection episodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tailor.algos import mcts
from tailor.algos.ppo import read_run
from tailor.checkpoint import POLICY_FILE
from tailor.envs import Task, get_task
from tailor.errors import DeterministicPolicyError, TailorError
from tailor.evaluate import evaluate as evaluate_gaussian
from tailor.evaluate import evaluate_stepwise
from tailor.experiments.configs import check_run_arguments
from tailor.experiments.prior_adapters import acting_q_prior
from tailor.losses import prior_log_probs
from tailor.policyfile import (
    check_task,
    load_rql_policy,
    policy_kind,
    qnet_from,
    resolve_policy_path,
    sac_actor,
    task_spaces,
)
from tailor.priors import QPrior, check_spaces, load_acting_policy, load_prior
from tailor.priors.policies import BoltzmannQPrior
from tailor.rundir import list_checkpoints

__all__ = [
    "SELECTION_SEED_OFFSET",
    "GreedyQ",
    "acting_module",
    "best_checkpoint",
    "evaluate",
    "policy_module",
    "read_ppo_run",
    "same_as_prior",
]


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
        try:
            prior_file = resolve_policy_path(prior)
        except TailorError:  # the prior is gone too: nothing to compare with
            return False
    if not prior_file.is_file():
        return False
    from safetensors.torch import load_file  # tensors only: no code, no header trust needed

    ref, snap = load_file(prior_file), load_file(policy_file)
    return ref.keys() == snap.keys() and all(torch.equal(ref[k], snap[k]) for k in ref)


def read_ppo_run(run_dir: str | Path) -> dict[str, Any]:
    """The saved description of a PPO run (:func:`tailor.algos.ppo.read_run`)."""
    return read_run(run_dir)


class GreedyQ(nn.Module):
    """A residual soft-DQN policy's action: ``argmax_a Q_R(s, a) + omega' log pi_prior(a|s)``
    (``alpha_hat -> 0``; ``argmax Q`` for a DQN without a prior), obs ``[B, D]`` -> ``[B]``
    int64. An ``nn.Module`` so that ``tailor export`` writes it as it is evaluated."""

    def __init__(self, q: nn.Module, prior: QPrior | None, omega_prime: float) -> None:
        super().__init__()
        self.q = q.eval()
        use_prior = prior is not None and omega_prime != 0.0
        self.prior_q = prior.qnet.eval() if use_prior else None
        self.alpha = float(prior.alpha) if use_prior else 1.0
        self.omega_prime = float(omega_prime)
        self.obs_dim = next(m for m in q.modules() if isinstance(m, nn.Linear)).in_features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = self.q(obs)
        if self.prior_q is not None:
            z = z + self.omega_prime * prior_log_probs(self.prior_q(obs), self.alpha)
        return torch.argmax(z, dim=-1)


class _MeanAction(nn.Module):
    """A SAC actor's deterministic action ``squash(mu(s))``, obs ``[B, D]`` -> ``[B, A]``."""

    def __init__(self, actor: nn.Module, obs_dim: int) -> None:
        super().__init__()
        self.actor, self.obs_dim = actor.eval(), obs_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.mean_action(obs)


def policy_module(policy: str | Path) -> nn.Module:
    """:func:`acting_module` of the DQN / SAC policy file (or run directory) at ``policy``."""
    meta, tensors = load_rql_policy(policy)
    return acting_module(meta, tensors)


def acting_module(meta: dict, tensors: dict) -> nn.Module:
    """The deterministic acting rule of a DQN or SAC policy file as an ``nn.Module`` (what
    ``tailor evaluate`` acts with, and ``tailor export`` writes); ``.obs_dim`` says its input.

    Raises:
        TailorError: an MCTS policy (it searches a model of the env at every step: export the
            DQN prior it searches with instead), or an unknown algo.
    """
    algo = meta.get("algo")
    if algo == "sac":
        return _MeanAction(sac_actor(meta, tensors), int(meta["obs_dim"]))
    if algo == "dqn":
        q = qnet_from(tensors, "q.", meta)
        prior = acting_q_prior(meta, tensors) if meta.get("has_prior") else None
        return GreedyQ(q, prior, float(meta["coefficients"]["omega_prime"]))
    if algo == "mcts":
        raise TailorError(
            "an MCTS policy acts by searching a model of the environment at every step, which "
            "no single network holds; export the DQN prior it searches with instead "
            f"({meta.get('prior', 'its prior')!r})"
        )
    raise TailorError(f"unknown algo {algo!r} in the policy's metadata")


def _actor_fn(meta: dict, tensors: dict, task: Task, seed: int) -> Callable:
    """``act(obs, env) -> action`` for a loaded DQN / SAC / MCTS policy (greedy)."""
    algo = meta.get("algo")
    if algo in ("sac", "dqn"):
        module = acting_module(meta, tensors)

        def act(obs, env):
            with torch.no_grad():
                a = module(torch.as_tensor(obs, dtype=torch.float32)[None])[0]
            return int(a) if algo == "dqn" else a.numpy()

        return act
    if algo == "mcts":
        qnet = acting_q_prior(meta, tensors).qnet
        fields = {f.name for f in dataclasses.fields(mcts.MCTSConfig)}
        cfg = mcts.MCTSConfig(**{k: v for k, v in meta["config"].items() if k in fields})
        cfg.seed = seed
        log_prior = mcts.numpy_log_prior(qnet, float(meta["prior_alpha"]))
        if cfg.batched:
            return mcts.BatchedResidualMCTS(mcts.batch_model(task), log_prior, cfg).act
        model = mcts.TaskModel(task)
        search = mcts.ResidualMCTS(model, log_prior, cfg)

        def act(obs, env):
            model.sync(env)
            return search.act(obs)

        return act
    raise TailorError(f"unknown algo {algo!r} in the policy's metadata")


def _evaluate_discrete_prior(
    prior: Any, task: Task, episodes: int, seed: int, max_steps: int | None, policy: str
) -> dict[str, Any]:
    """An imported prior on a Discrete-action task (SB3 DQN / QR-DQN / categorical PPO-A2C, the
    RQL authors' DQN_ME): one env, the prior's greedy action (``argmax``) at every step."""
    sp = task_spaces(task)  # a Box task's act_dim fails the check with the sizes named
    check_spaces(prior, sp["obs_dim"], sp.get("n_actions", sp.get("act_dim", -1)), task.name)

    def act(obs: np.ndarray, env: Any) -> int:
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1))
        with torch.no_grad():
            return int(prior.act(o, deterministic=True).reshape(-1)[0])

    return evaluate_stepwise(act, task, episodes, seed=seed, max_steps=max_steps, policy=policy,
                             algo="prior")  # fmt: skip


def _load_for_evaluation(policy: str | Path, options: dict[str, Any], deterministic: bool) -> Any:
    """``load_prior`` (a clear error for anything unreadable); a deterministic policy evaluated
    deterministically needs no std or temperature (:func:`tailor.priors.load_acting_policy`)."""
    if not deterministic:
        try:
            return load_prior(policy, **options)
        except DeterministicPolicyError as exc:
            raise TailorError(f"{exc} (--stochastic samples from that distribution)") from None
    return load_acting_policy(policy, **options)[0]


def evaluate(
    policy: str | Path,
    task: Task | str | None = None,
    episodes: int = 50,
    seed: int = 0,
    max_steps: int | None = None,
    *,
    deterministic: bool = True,
    prior_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate any tailor policy checkpoint, or a policy from another library (read with
    :func:`tailor.priors.load_prior` and ``prior_options``): the one result schema of
    :mod:`tailor.evaluate`. A Q-network or categorical prior on a Discrete task acts greedily.

    PPO policies run batched episodes (:func:`tailor.evaluate.evaluate`, the Gaussian's mean
    unless ``deterministic=False``); DQN acts with ``argmax(Q_R + omega' log pi)`` (``argmax Q``
    for a prior), SAC with the squashed mean, MCTS with a search from the true state at every
    step (:func:`tailor.evaluate.evaluate_stepwise`; episode ``i`` resets with ``seed + i``).

    Raises:
        TailorError: bad ``episodes``, unreadable policy, a policy trained for another env.
    """
    if policy is None:
        raise TailorError("evaluate: policy is required (a run directory or a policy file)")
    check_run_arguments("evaluate", seed, policy, prior_options)
    kind = policy_kind(policy)
    if kind in (None, "ppo"):
        options = {k: v for k, v in (prior_options or {}).items() if v is not None}
        prior = _load_for_evaluation(policy, options, deterministic)
        name = task if task is not None else prior.meta.get("task")
        if not name:
            raise TailorError("--task is required (the policy does not name its task)")
        if isinstance(prior, BoltzmannQPrior):  # an imported categorical / Q prior
            return _evaluate_discrete_prior(prior, get_task(name), episodes, seed, max_steps,
                                            policy=str(policy))  # fmt: skip
        result = evaluate_gaussian(
            prior, name, episodes, deterministic=deterministic, seed=seed,
            **({"max_steps": max_steps} if max_steps is not None else {}),
        )  # fmt: skip
        result["policy"] = str(policy)
        return result
    torch.set_num_threads(1)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise TailorError(f"episodes must be a positive integer, got {episodes!r}")
    meta, tensors = load_rql_policy(policy)
    task = get_task(task if task is not None else meta["task"])
    check_task(meta, task, policy)
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
