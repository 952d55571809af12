"""PPO checkpoints and resume: what ``--resume`` needs besides the policy.

A PPO checkpoint is two files: ``policy.safetensors`` (the actor and its observation
normalizer, the file any tailor command reads as a policy or prior) and ``trainer.safetensors``
(critic, return normalizer, optimizer moments, the generator state, and in its JSON header the
iteration, steps, learning rate, config, task, method and coefficients). They are committed
together by :func:`tailor.rundir.commit_checkpoint` into ``checkpoints/step-<N>/`` and named by
the manifest ``checkpoint.json``, so a kill at any moment leaves a matched pair;
``<run>/policy.safetensors`` is a copy of the latest policy. Run directories from before the
manifest (top-level files only) still resume when their two files carry the same ``steps``.
File formats: :mod:`tailor.checkpoint`.

**Exact resume.** The trainer state also holds what the loop carries from one iteration to the
next (:func:`loop_tensors`): the envs' state (:meth:`tailor.envs.VecEnv.get_state`: every env's
MuJoCo integration state or point-mass positions, the reset generators, the episode step
counters, the current observations), the episode bookkeeping (:class:`EpisodeStats`, including
the window of finished episodes the metrics average) and the learner's ``return_carry``. A
resumed run then continues exactly as the uninterrupted run would have (same ``metrics.csv``
numbers apart from timing, same policy), given the same torch thread count and build. Where the
envs' state cannot be captured (the gymnasium-loop fallback for tasks without a fast path), or
for checkpoints written before this, the resumed run starts fresh episodes with other seeds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.algos.ppo_learner import PPOLearner
from tailor.algos.rollout import EpisodeStats
from tailor.checkpoint import (
    POLICY_FILE,
    TRAINER_FILE,
    TRAINER_FORMAT,
    flatten_optimizer,
    unflatten_optimizer,
)
from tailor.envs import Task, VecEnv
from tailor.errors import TailorError
from tailor.methods import Method
from tailor.policyfile import load_policy, policy_tensors
from tailor.rundir import (
    Checkpoint,
    Retention,
    commit_checkpoint,
    config_change_error,
    config_diff,
    failed_start,
    latest_checkpoint,
    lock_holder,
)

__all__ = [
    "RunRecord",
    "check_resumable",
    "loop_tensors",
    "read_trainer_meta",
    "restore",
    "save_checkpoint",
]

_LOOP = "loop."  # prefix of the loop-state tensors in trainer.safetensors
_EPISODE_FIELDS = ("basic", "addon", "statistic", "length")

# Config fields a resume may change; every other field must equal the saved one.
MUTABLE_ON_RESUME = frozenset({"total_steps", "checkpoint_every", "tensorboard", "num_workers"})


@dataclass(frozen=True)
class RunRecord:
    """What every checkpoint of one PPO run records about the run.

    Attributes:
        config: the run's :class:`~tailor.algos.ppo_config.PPOConfig` as JSON.
        policy_meta: the policy header's fields besides ``steps`` / ``iteration``.
        method: the run's method (its name and coefficients are recorded).
        task: the run's task (its name is recorded).
    """

    config: dict[str, Any]
    policy_meta: dict[str, Any]
    method: Method
    task: Task


def save_checkpoint(
    run_dir: Path,
    learner: PPOLearner,
    record: RunRecord,
    iteration: int,
    steps: int,
    keep: Retention | None = None,
    loop: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Checkpoint:
    """Commit policy + trainer state of ``steps`` as one checkpoint (see the module docstring);
    older checkpoints keep their policy only (``keep``, default :class:`Retention` ``()``).
    ``loop`` is :func:`loop_tensors`' state of the loop, for an exact resume."""
    config_json, meta, method, task = record.config, record.policy_meta, record.method, record.task
    opt_tensors, opt_json = flatten_optimizer(learner.optimizer.state_dict())
    tensors = {f"critic.{k}": v for k, v in learner.critic.state_dict().items()}
    tensors.update({f"return_norm.{k}": v for k, v in learner.return_norm.state_dict().items()})
    tensors.update(opt_tensors)
    tensors["rng"] = learner.gen.get_state()
    trainer_meta = {
        "format": TRAINER_FORMAT,
        "iteration": iteration,
        "steps": steps,
        "learning_rate": learner.lr,
        "kl_scale": learner.kl_scale,
        "config": config_json,
        "task": task.name,
        "method": method.name,
        "coefficients": dict(method.coefficients),
        "optimizer": opt_json,
    }
    if loop is not None:
        tensors.update(loop[0])
        trainer_meta["loop"] = loop[1]
    policy_meta = {**meta, "steps": steps, "iteration": iteration}
    files = {
        POLICY_FILE: policy_tensors(learner.actor, learner.obs_norm, policy_meta),
        TRAINER_FILE: (tensors, trainer_meta),
    }
    return commit_checkpoint(run_dir, files, steps, keep)


def _resumable_checkpoint(run_dir: str | Path) -> Checkpoint:
    """The run's latest checkpoint, which must include trainer state."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None and (holder := lock_holder(run_dir)) is not None:
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: it is in use by another tailor process ({holder}) "
            "and has no checkpoint yet"
        )
    if ckpt is None and failed_start(run_dir):
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: its run stopped before it wrote its first "
            "checkpoint, so there is nothing to resume; start it afresh with the same --out "
            "(no --overwrite needed)"
        )
    if ckpt is None:
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: it has no checkpoint (not a tailor run "
            "directory, or no checkpoint was written yet)"
        )
    if TRAINER_FILE not in ckpt.files:
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: its checkpoint at step {ckpt.step} has no "
            f"{TRAINER_FILE}"
            + (
                " consistent with its policy (a run directory written by an older tailor and "
                "interrupted between its two files)"
                if ckpt.legacy
                else ""
            )
        )
    return ckpt


def read_trainer_meta(run_dir: str | Path) -> dict[str, Any]:
    """The JSON header of the latest checkpoint's ``trainer.safetensors``.

    Raises:
        TailorError: no checkpoint, no trainer state in it, or an unreadable file.
    """
    return _resumable_checkpoint(run_dir).load(TRAINER_FILE, TRAINER_FORMAT)[1]


def check_resumable(
    run_dir: Path, info: dict[str, Any], config_json: dict[str, Any], method: Method, task: Task
) -> None:
    """Raise unless the saved run trains the same method, coefficients and config."""
    if info["task"] != task.name or info["method"] != method.name:
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: it trains {info['method']!r} on {info['task']!r}, "
            f"not {method.name!r} on {task.name!r}"
        )
    if info["coefficients"] != dict(method.coefficients):
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: it was trained with coefficients "
            f"{info['coefficients']}, not {dict(method.coefficients)}"
        )
    old = info["config"].to_json()
    diff = config_diff(old, config_json, set(MUTABLE_ON_RESUME))
    if diff:
        raise config_change_error(run_dir, old, config_json, diff)


def loop_tensors(
    env: VecEnv, episodes: EpisodeStats, learner: PPOLearner
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """What the loop carries across iterations, as ``(tensors, json)`` for the trainer file:
    the envs' state, the episode bookkeeping and ``learner.return_carry``. ``None`` when the
    envs' state cannot be captured (the gymnasium fallback): a resume then starts fresh."""
    state = env.get_state()
    if state is None:
        return None
    arrays, env_info = state
    tensors = {
        f"{_LOOP}env.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()
    }
    for name in _EPISODE_FIELDS:
        tensors[f"{_LOOP}episodes.{name}"] = torch.from_numpy(getattr(episodes, name).copy())
    window = np.asarray(list(episodes.window), dtype=np.float64).reshape(-1, 4)
    tensors[f"{_LOOP}episodes.window"] = torch.from_numpy(window)
    tensors[f"{_LOOP}return_carry"] = learner.return_carry.detach().clone()
    return tensors, {"env": env_info, "window": len(episodes.window)}


def _restore_loop(
    tensors: dict[str, torch.Tensor],
    info: dict[str, Any],
    env: VecEnv,
    episodes: EpisodeStats,
    learner: PPOLearner,
) -> np.ndarray:
    """Put :func:`loop_tensors`' state back; returns the observations to continue from."""
    try:
        env_arrays = {
            k[len(_LOOP + "env.") :]: v.numpy()
            for k, v in tensors.items()
            if k.startswith(_LOOP + "env.")
        }
        obs = env.set_state(env_arrays, info["env"])
        for name in _EPISODE_FIELDS:
            target = getattr(episodes, name)
            value = tensors[f"{_LOOP}episodes.{name}"].numpy()
            if value.shape != target.shape:
                raise ValueError(f"episodes.{name} has shape {value.shape}, not {target.shape}")
            target[...] = value
        window = tensors[f"{_LOOP}episodes.window"].numpy()
        episodes.window = deque(
            ((np.float64(b), np.float64(a), np.float64(s), float(n)) for b, a, s, n in window),
            maxlen=episodes.window.maxlen,
        )
        carry = tensors[f"{_LOOP}return_carry"]
        if carry.shape != learner.return_carry.shape:
            raise ValueError(f"return_carry has shape {tuple(carry.shape)}")
        learner.return_carry = carry.clone()
    except (KeyError, TypeError, ValueError) as exc:
        raise TailorError(f"the checkpoint's loop state is unreadable ({exc})") from None
    return obs


def restore(
    run_dir: Path,
    learner: PPOLearner,
    env: VecEnv | None = None,
    episodes: EpisodeStats | None = None,
) -> np.ndarray | None:
    """Load the latest checkpoint in ``run_dir`` into ``learner`` (actor, normalizers, critic,
    optimizer, generator, learning rate); the actor and a real normalizer go back to training.

    With ``env`` and ``episodes``, also the loop's state when the checkpoint has it
    (:func:`loop_tensors`); returns the observations to continue from, or ``None`` when there
    is none (then the caller resets the envs: fresh episodes)."""
    ckpt = _resumable_checkpoint(run_dir)
    tensors, meta = ckpt.load(TRAINER_FILE, TRAINER_FORMAT)
    saved_actor, saved_norm, policy_meta = load_policy(ckpt.path(POLICY_FILE))
    if policy_meta.get("steps") != meta["steps"]:  # a manifest rules it out; legacy dirs: check
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: {POLICY_FILE} is at step {policy_meta.get('steps')} "
            f"but {TRAINER_FILE} at step {meta['steps']} (interrupted while saving?)"
        )
    try:
        learner.actor.load_state_dict(saved_actor.state_dict())
        learner.obs_norm.load_state_dict(saved_norm.state_dict())
        learner.critic.load_state_dict(_strip(tensors, "critic."))
        learner.return_norm.load_state_dict(_strip(tensors, "return_norm."))
        learner.optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
        learner.gen.set_state(tensors["rng"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise TailorError(
            f"cannot resume {str(run_dir)!r}: checkpoint does not match the config ({exc})"
        ) from None
    learner.actor.train()
    if learner.obs_norm.eps > 0:  # a real normalizer keeps learning; the identity one stays frozen
        learner.obs_norm.train()
    learner.lr = float(meta["learning_rate"])
    learner.kl_scale = float(meta.get("kl_scale", 1.0))  # absent in older checkpoints
    loop = meta.get("loop")
    if env is None or episodes is None or not isinstance(loop, dict):
        return None
    return _restore_loop(tensors, loop, env, episodes, learner)


def _strip(tensors: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
