"""Policy files: the on-disk format of every policy kind, read and written in one place.

A policy lives in ``policy.safetensors`` (tensors + JSON metadata in the safetensors header under
the key ``"tailor"``, generic I/O in :mod:`tailor.checkpoint`) with ``policy.json`` beside it, a
readable copy of the header. Two formats:

- ``"tailor-policy"`` (:data:`POLICY_FORMAT`, PPO's Gaussian policies): tensors ``actor.*`` and
  ``obs_norm.*``; metadata ``format_version``, ``tailor_version``, ``task``, ``env_id``,
  ``obs_dim``, ``act_dim``, ``action_low``, ``action_high``, ``architecture`` (``hidden``,
  ``activation``, ``std_type``), ``normalizer`` (``eps``, ``count``; ``mode`` and ``clip`` when
  not the default formula: imported priors, :class:`tailor.nets.EmpiricalNormalization`),
  ``method``, ``coefficients``, ``steps``, ``seed``.
- ``"tailor-rql-policy"`` (:data:`RQL_FORMAT`, the soft DQN / SAC / MCTS policies): tensor groups
  ``q.*`` (a soft Q-network or a residual ``Q_R``), ``prior.*`` (the prior Q-network a residual
  DQN or MCTS policy acts with), ``prior_norm.*`` (an imported prior's frozen normalizer),
  ``actor.*`` (a SAC actor); metadata ``kind`` / ``algo``, ``task``, ``env_id``, ``method``,
  ``coefficients`` (``omega_prime``, ``alpha_hat``), ``coefficient_sources``, the task's spaces
  (``obs_dim``, ``n_actions`` or ``act_dim`` and bounds), ``hidden``, ``config``, ``steps``,
  ``seed``, ``train_stats`` and what the kind needs to act (``prior_alpha``, ``prior_net``,
  ``actor_hidden``, ``actor_options``, ...).

A run directory's policy is the one its manifest ``checkpoint.json`` names
(:func:`tailor.rundir.latest_checkpoint`); :func:`resolve_policy_path` is the one resolver and
:func:`policy_kind` the one header parser every reader uses.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from tailor.checkpoint import (
    FORMAT_VERSION,
    META_KEY,
    POLICY_FILE,
    POLICY_JSON,
    load_meta,
    load_tensors,
    save_tensors,
    write_json,
)
from tailor.envs import Task, make_env
from tailor.errors import TailorError
from tailor.meta import parse_meta
from tailor.methods import Method
from tailor.nets import Actor, EmpiricalNormalization, SquashedGaussianActor, mlp
from tailor.paths import check_input_path
from tailor.rundir import latest_checkpoint

__all__ = [
    "KEPT_DIR",
    "POLICY_FILE",
    "POLICY_FORMAT",
    "RQL_FORMAT",
    "RQL_KINDS",
    "check_task",
    "is_rql_policy",
    "load_policy",
    "load_rql_policy",
    "policy_kind",
    "policy_tensors",
    "prefixed",
    "qnet_from",
    "resolve_policy_path",
    "rql_meta",
    "rql_policy_tensors",
    "sac_actor",
    "save_policy",
    "task_spaces",
]

POLICY_FORMAT = "tailor-policy"
KEPT_DIR = "kept"  # a customization's kept iterate, when not the last (experiments.selection)
RQL_FORMAT = "tailor-rql-policy"
RQL_KINDS = ("dqn", "sac", "mcts")  # the kinds written in RQL_FORMAT


# ---------------------------------------------------------------------------------------------
# Finding a policy and telling its kind


def resolve_policy_path(path: str | Path) -> Path:
    """A run directory or a ``policy.safetensors`` file -> the policy file's path.

    A directory's policy is the one its manifest names; a directory written before manifests
    existed (like the shipped ``priors/``) has only the top-level file.

    Raises:
        TailorError: the path does not exist, or is a directory without a policy file.
    """
    path = check_input_path(path, "policy")
    if path.is_dir():
        # The manifest's policy is the one consistent with the trainer state; the top-level
        # copy may lag one checkpoint behind if a run was killed while refreshing it.
        ckpt = latest_checkpoint(path)
        if ckpt is not None and POLICY_FILE in ckpt.files:
            return _kept_policy(path, ckpt.step) or ckpt.files[POLICY_FILE]
        candidate = path / POLICY_FILE
        if not candidate.is_file():
            raise TailorError(
                f"{str(path)!r} is a directory without a {POLICY_FILE}; pass a run directory "
                "written by `tailor train`/`tailor customize` or the policy file itself"
            )
        return candidate
    if not path.exists():
        raise TailorError(
            f"policy {str(path)!r} does not exist (expected a run directory or a "
            f"{POLICY_FILE} file)"
        )
    return path


def _kept_policy(run_dir: Path, step: int | None) -> Path | None:
    """``run_dir/kept/policy.safetensors`` when a customization's selection
    (:mod:`tailor.experiments.selection`) kept it after training up to ``step`` (the latest
    checkpoint's); a selection from before a resume (other trained steps) is stale: ``None``."""
    file = run_dir / KEPT_DIR / POLICY_FILE
    if step is None or not file.is_file():
        return None
    try:
        trained = load_meta(file, POLICY_FORMAT).get("trained_steps")
    except TailorError:
        return None
    return file if trained == step else None


def policy_kind(path: str | Path) -> str | None:
    """The kind of the policy in ``path`` (a run directory or a policy file): ``"ppo"``,
    ``"dqn"``, ``"sac"``, ``"mcts"``, or ``None`` when it is no readable tailor policy.

    Reads only the safetensors header; never raises.
    """
    try:
        with safe_open(str(resolve_policy_path(path)), "pt") as f:
            meta = parse_meta((f.metadata() or {}).get(META_KEY, "{}"), POLICY_FILE)
    except Exception:  # an unreadable policy has no known kind
        return None
    if meta.get("format") == RQL_FORMAT:
        kind = meta.get("kind", meta.get("algo"))
        return kind if kind in RQL_KINDS else None
    return "ppo" if meta.get("format") == POLICY_FORMAT else None


def is_rql_policy(path: str | Path) -> bool:
    """Whether ``path`` (a run directory or a policy file) holds a DQN/SAC/MCTS policy."""
    return policy_kind(path) in RQL_KINDS


def check_task(meta: dict[str, Any], task: Task, path: str | Path) -> None:
    """Refuse a policy (its header ``meta``, read from ``path``) trained for another env."""
    if meta.get("env_id") != task.env_id:
        raise TailorError(
            f"{str(path)!r} was trained on {meta.get('env_id')!r} (task "
            f"{meta.get('task')!r}), not on {task.env_id!r} of task {task.name!r}"
        )


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``<prefix><name>``, as ``{name: tensor}`` (one module's state dict)."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------
# PPO's Gaussian policies ("tailor-policy")


def policy_tensors(
    actor: Actor, obs_norm: EmpiricalNormalization, meta: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ``(tensors, header)`` of a policy file, for :func:`tailor.checkpoint.save_tensors` or
    :func:`tailor.rundir.commit_checkpoint`.

    ``meta`` holds the run's description (task, spaces, method, coefficients, steps, seed, ...);
    the architecture, normalizer and format fields are filled in here from the modules.
    """
    from tailor import __version__

    full = {
        "format": POLICY_FORMAT,
        "tailor_version": __version__,
        **meta,
        "obs_dim": actor.obs_dim,
        "act_dim": actor.act_dim,
        "architecture": {
            "hidden": list(actor.hidden),
            "activation": actor.activation,
            "std_type": actor.std_type,
        },
        "normalizer": {"eps": obs_norm.eps, "count": float(obs_norm.count)},
    }
    bounds = actor.bounds()
    if bounds is not None:  # a squashed mean (an SB3 TD3/DDPG prior); absent otherwise
        full["architecture"]["action_bounds"] = {"low": bounds[0], "high": bounds[1]}
    if obs_norm.mode != "std_eps" or obs_norm.clip is not None:  # an imported prior's formula
        full["normalizer"].update(mode=obs_norm.mode, clip=obs_norm.clip)
    tensors = {f"actor.{k}": v for k, v in actor.state_dict().items()}
    tensors.update({f"obs_norm.{k}": v for k, v in obs_norm.state_dict().items()})
    return tensors, full


def save_policy(
    run_dir: str | Path, actor: Actor, obs_norm: EmpiricalNormalization, meta: dict[str, Any]
) -> Path:
    """Write ``policy.safetensors`` (+ ``policy.json``) into ``run_dir``; returns the file path.

    A single standalone policy (a prior's copy under ``<run>/prior/``, an exported policy); the
    checkpoints of a run go through :func:`tailor.rundir.commit_checkpoint` instead.
    """
    run_dir = Path(run_dir)
    tensors, full = policy_tensors(actor, obs_norm, meta)
    path = run_dir / POLICY_FILE
    save_tensors(path, tensors, full)
    write_json(run_dir / POLICY_JSON, {"format_version": FORMAT_VERSION, **full})
    return path


def load_policy(path: str | Path) -> tuple[Actor, EmpiricalNormalization, dict[str, Any]]:
    """Load a PPO policy from a run directory or its ``policy.safetensors``.

    Returns ``(actor, obs_norm, meta)``; both modules are in eval mode (the normalizer frozen).

    Raises:
        TailorError: missing/truncated/foreign file, or tensors that do not match the architecture
            the metadata describes.
    """
    file = resolve_policy_path(path)
    tensors, meta = load_tensors(file, POLICY_FORMAT)
    _check_size(file, tensors, meta)
    try:
        arch = meta["architecture"]
        bounds = arch.get("action_bounds")
        actor = Actor(
            int(meta["obs_dim"]),
            int(meta["act_dim"]),
            [int(h) for h in arch["hidden"]],
            activation=arch["activation"],
            std_type=arch["std_type"],
            # The buffers are then loaded from the tensors; the header's copy is for readers.
            action_bounds=None if bounds is None else (bounds["low"], bounds["high"]),
        )
        norm = meta["normalizer"]
        obs_norm = EmpiricalNormalization(
            int(meta["obs_dim"]),
            eps=float(norm["eps"]),
            mode=norm.get("mode", "std_eps"),
            clip=None if norm.get("clip") is None else float(norm["clip"]),
        )
        actor.load_state_dict(prefixed(tensors, "actor."))
        obs_norm.load_state_dict(prefixed(tensors, "obs_norm."))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise TailorError(
            f"{str(file)!r}: the tensors do not match the architecture in its metadata ({exc})"
        ) from None
    return actor.eval(), obs_norm.eval(), meta


def _check_size(file: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Refuse metadata whose architecture is far larger than the tensors stored with it.

    Building the :class:`Actor` allocates what the header describes before the weights are
    loaded, so a crafted header (``"hidden": [10**6, 10**6]``) must be caught here, not by
    ``load_state_dict`` after gigabytes were allocated.
    """
    dims = [meta["obs_dim"], *meta["architecture"]["hidden"], meta["act_dim"]]
    implied = sum((a + 1) * b for a, b in itertools.pairwise(dims))
    stored = sum(v.numel() for k, v in tensors.items() if k.startswith("actor."))
    if implied > stored:
        raise TailorError(
            f"{str(file)!r}: the metadata describes an actor of {implied} parameters but the "
            f"file stores {stored} (corrupted or mismatched metadata)"
        )


# ---------------------------------------------------------------------------------------------
# The DQN / SAC / MCTS policies ("tailor-rql-policy")


def task_spaces(task: Task) -> dict[str, Any]:
    """The header fields that describe ``task``'s spaces: ``obs_dim`` and ``n_actions``
    (discrete) or ``act_dim`` with the action and observation bounds (continuous)."""
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


def rql_meta(
    task: Task,
    algo: str,
    method: Method,
    cfg: Any,
    stats: dict,
    steps: int,
    seed: int,
    **extra: Any,
) -> dict[str, Any]:
    """The run's description in a DQN / SAC / MCTS policy header (``extra``: what the kind needs
    to act, e.g. ``has_prior``, ``prior_alpha``)."""
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
        **task_spaces(task),
        "hidden": list(getattr(cfg, "hidden", ())),
        "config": dataclasses.asdict(cfg),
        "steps": int(stats.get("interrupted_at_step", steps)),
        "seed": seed,
        "train_stats": stats,
        **extra,
    }


def rql_policy_tensors(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ``(tensors, header)`` of a DQN / SAC / MCTS policy file (``meta`` from
    :func:`rql_meta`), for :func:`tailor.rundir.commit_checkpoint`."""
    from tailor import __version__

    header = {"format": RQL_FORMAT, "tailor_version": __version__, "kind": meta["algo"], **meta}
    return tensors, header


def load_rql_policy(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a DQN / SAC / MCTS run directory or policy file; returns ``(meta, tensors)``.

    Raises:
        TailorError: missing, truncated or foreign file
            (see :func:`tailor.checkpoint.load_tensors`).
    """
    tensors, meta = load_tensors(resolve_policy_path(path), RQL_FORMAT)
    return meta, tensors


def qnet_from(tensors: dict[str, torch.Tensor], prefix: str, meta: dict) -> torch.nn.Module:
    """The Q-network stored under ``prefix`` (``q.`` or ``prior.``), with ``meta["hidden"]``."""
    net = mlp([int(meta["obs_dim"]), *meta["hidden"], int(meta["n_actions"])])
    net.load_state_dict(prefixed(tensors, prefix))
    return net.eval()


def sac_actor(meta: dict, tensors: dict, prefix: str = "actor.") -> SquashedGaussianActor:
    """The SAC actor of a checkpoint: ``actor_hidden`` / ``actor_options`` where an imported
    prior's architecture was kept, else ``hidden`` and tailor's defaults."""
    actor = SquashedGaussianActor(
        int(meta["obs_dim"]),
        int(meta["act_dim"]),
        meta.get("actor_hidden", meta["hidden"]),
        (np.asarray(meta["action_low"]), np.asarray(meta["action_high"])),
        (np.asarray(meta["obs_low"]), np.asarray(meta["obs_high"])),
        **meta.get("actor_options", {}),
    )
    actor.load_state_dict(prefixed(tensors, prefix))
    return actor.eval()
