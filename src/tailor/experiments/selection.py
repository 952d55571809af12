"""Keep an iterate that loses none of the prior's successes: the last one, unless it fails
episodes the prior succeeds in; then the latest checkpoint that does not.

PPO's last iterate is not always safe. On the RL Zoo's PPO Hopper (``results/import.md``
section 4) one customization's deterministic policy kept the prior's skill for 160k steps, then
fell in 2 of 10 episodes at the end. tailor never sees the basic reward, but it sees whether an
episode succeeded as the task defines it (:func:`tailor.envs.classic.success`: ran to its time
limit, i.e. did not fall, unless the task says otherwise, e.g. MountainCar's goal). So, after
training::

    need = successes of the prior in E deterministic episodes (the mean action) from seed
           SELECTION_SEED_OFFSET (as best_checkpoint's: not the seeds `tailor evaluate` reports)
    for the last iterate, then each older checkpoint (checkpoints/step-N/), newest first:
        if its successes in the same E episodes >= need: keep it, stop
    none does: keep the prior (and say so)

Not the iterate with the most add-on return: where the add-on trades against the skill (the
zoo's HalfCheetah, whose hind leg the add-on wants still) that is the iterate that gave up the
most basic return, which tailor cannot see. Measured on the zoo's PPO agents with a checkpoint
every 4 iterations (10 selection episodes, the 10 reported ones on other seeds;
``results/import/selection_study``): the highest median add-on return kept 59-97% of
HalfCheetah's basic return over 5 seeds (3 below 90%), this rule 94.5-108% on all 10 PPO runs;
on Hopper both keep it, the add-on maximum with larger gains. On a task whose
episodes always succeed (no termination) the rule keeps the last iterate, as without it.

The kept policy is written to ``<run>/kept/`` and as the run's top-level ``policy.safetensors``
(+ ``policy.json``), its metadata saying which step and what was evaluated (``selection``);
every command given the run directory reads it (:func:`tailor.policyfile.resolve_policy_path`).
The checkpoints keep every iterate, so ``--resume`` continues from the last one and checks again
at its end. Set by the rule for priors whose temperature is unknown
(:mod:`tailor.experiments.unknown_temperature`), with a checkpoint every few iterations;
``PPOConfig.select_episodes``, 0 to keep the last iterate unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tailor.envs import Task
from tailor.evaluate import evaluate
from tailor.experiments.evaluation import SELECTION_SEED_OFFSET
from tailor.policyfile import KEPT_DIR, POLICY_FILE, load_policy, save_policy
from tailor.rundir import list_checkpoints

__all__ = ["Candidate", "choose", "select_iterate"]


@dataclass(frozen=True)
class Candidate:
    """One policy the selection evaluated.

    Attributes:
        step: environment steps it was trained for (0: the prior).
        addon: the mean add-on return of its selection episodes (said, not used by the rule).
        successes: how many of them succeeded (:func:`tailor.envs.classic.success`).
        path: its ``policy.safetensors``.
    """

    step: int
    addon: float
    successes: int
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "addon_mean": self.addon, "successes": self.successes}


def select_iterate(
    run_dir: str | Path,
    task: Task,
    episodes: int,
    log: Callable[[str], None] | None = print,
) -> Candidate:
    """Check the customization in ``run_dir`` as the module docstring says and write the kept
    policy as the run's ``policy.safetensors``.

    Returns:
        the kept candidate.
    """
    run_dir = Path(run_dir)
    prior = _evaluate(0, run_dir / "prior" / POLICY_FILE, task, episodes)
    snaps = [(int(c.step), c.path(POLICY_FILE)) for c in list_checkpoints(run_dir) if c.step]
    seen = [prior]
    for step, path in reversed(snaps):  # newest first: usually the last one is kept at once
        seen.append(_evaluate(step, path, task, episodes))
        if seen[-1].successes >= prior.successes:
            break
    seen = [prior, *sorted(seen[1:], key=lambda c: c.step)]
    kept = choose(seen)
    _write(run_dir, kept, seen, episodes, snaps[-1][1] if snaps else prior.path)
    if log is not None:
        if snaps and kept.step == snaps[-1][0]:
            what = "the last iterate"
        elif kept is prior:
            what = "the prior: every checkpoint failed more episodes than it"
        else:
            what = f"step {kept.step}: the later iterates failed more episodes than the prior"
        log(
            f"  kept {what} ({kept.successes}/{episodes} episodes succeeded, the prior "
            f"{prior.successes}; add-on return {kept.addon:.1f}, the prior {prior.addon:.1f})"
        )
    return kept


def choose(candidates: list[Candidate]) -> Candidate:
    """The rule on evaluated candidates (the prior first, then by step): the latest with at
    least the prior's successes (the prior if none)."""
    need = candidates[0].successes
    return [c for c in candidates if c.successes >= need][-1]


def _evaluate(step: int, path: Path, task: Task, episodes: int) -> Candidate:
    result = evaluate(path, task, episodes, deterministic=True, seed=SELECTION_SEED_OFFSET)
    per = result["per_episode"]
    return Candidate(step, float(np.mean(per["addon"])), int(sum(per["success"])), path)


def _write(
    run_dir: Path, chosen: Candidate, candidates: list[Candidate], episodes: int, last_file: Path
) -> None:
    """The kept policy as ``run_dir/policy.safetensors``, with the last checkpoint's metadata
    (task, method, coefficients) and what the selection saw."""
    actor, obs_norm, _ = load_policy(chosen.path)
    _, _, last = load_policy(last_file)
    meta = {k: v for k, v in last.items() if k not in ("architecture", "format", "format_version")}
    meta.update(steps=chosen.step, trained_steps=last.get("steps"))
    meta["selection"] = {
        "rule": "the latest iterate with at least the prior's successful episodes",
        "episodes": episodes,
        "seed": SELECTION_SEED_OFFSET,
        "chosen_step": chosen.step,
        "candidates": [c.to_json() for c in candidates],
    }
    # kept/ is what a run directory resolves to (tailor.policyfile.resolve_policy_path) while
    # its trained_steps are the latest checkpoint's; the top-level copy is for a reader of the
    # file itself (the next checkpoint of a resume replaces it).
    (run_dir / KEPT_DIR).mkdir(exist_ok=True)
    save_policy(run_dir / KEPT_DIR, actor, obs_norm, meta)
    save_policy(run_dir, actor, obs_norm, meta)
