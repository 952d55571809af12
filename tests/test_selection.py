"""The iterate a customization keeps (experiments.selection): the rule by hand, a run's policy
being the chosen candidate, and a resumed run choosing as the uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tailor.experiments.evaluation import SELECTION_SEED_OFFSET
from tailor.experiments.selection import Candidate, choose

pytestmark = pytest.mark.filterwarnings("ignore:.*no observation normalizer")


def _c(step: int, addon: float, successes: int) -> Candidate:
    return Candidate(step, addon, successes, Path(f"step-{step}"))


def test_choose_by_hand() -> None:
    prior = _c(0, -10.0, 8)
    early = _c(100, -4.0, 8)
    fell = _c(200, 5.0, 7)  # the most add-on return, but one more episode failed
    assert choose([prior, early, fell]) == early
    more = _c(300, -6.0, 10)  # more successes than the prior: kept, the latest
    assert choose([prior, early, fell, more]) == more
    assert choose([prior, fell]) == prior  # nothing keeps the prior's successes: the prior
    assert choose([prior]) == prior


def _cleanrl_prior(root: Path) -> Path:
    torch.manual_seed(0)
    actor = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    state = {f"actor_mean.{k}": v for k, v in actor.state_dict().items()}
    state["actor_logstd"] = torch.full((1, 2), math.log(0.3))
    (root / "cleanrl").mkdir()
    torch.save(state, root / "cleanrl" / "agent.pt")
    return root / "cleanrl" / "agent.pt"


FAST = {"num_envs": 8, "num_steps": 16, "tensorboard": False, "checkpoint_every": 2}


def test_a_customization_keeps_the_chosen_candidate(tmp_path: Path) -> None:
    """An imported prior of unknown temperature: the rule selects; the run's policy is the
    candidate the rule picks from the numbers the selection recorded, which are the ones
    `evaluate` gives on the selection seeds."""
    from tailor.evaluate import evaluate
    from tailor.experiments import run

    prior = _cleanrl_prior(tmp_path)
    lines: list[str] = []
    out = run.customize("pointmass", "ppo", prior, 1024, 0, tmp_path / "run", log=lines.append,
                        select_episodes=4, **FAST)  # fmt: skip
    text = "\n".join(lines)
    assert "select_episodes=4" not in text  # the user's value, not the rule's
    assert "  kept " in text
    meta = json.loads((out / "policy.json").read_text())
    sel = meta["selection"]
    steps = [0, 256, 512, 768, 1024]
    assert set(os.listdir(out / "checkpoints")) == {f"step-{s}" for s in steps[1:]}
    assert sel["episodes"] == 4
    assert meta["trained_steps"] == 1024 and meta["steps"] == sel["chosen_step"]
    files = [out / "prior" / "policy.safetensors"]
    files += [out / "checkpoints" / f"step-{s}" / "policy.safetensors" for s in steps[1:]]
    recorded = {c["step"]: c for c in sel["candidates"]}
    assert 0 in recorded and 1024 in recorded  # the prior and the last iterate, at least
    seen = []
    for step, file in zip(steps, files, strict=True):
        e = evaluate(file, "pointmass", 4, seed=SELECTION_SEED_OFFSET)["per_episode"]
        seen.append(Candidate(step, statistics.mean(e["addon"]), sum(e["success"]), file))
        if step in recorded:  # what the run saw is what evaluate gives
            assert recorded[step]["addon_mean"] == pytest.approx(seen[-1].addon, abs=1e-9)
            assert recorded[step]["successes"] == seen[-1].successes
    chosen = choose(seen)
    assert chosen.step == sel["chosen_step"]
    got, want = load_file(out / "policy.safetensors"), load_file(chosen.path)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_a_resumed_run_selects_as_the_uninterrupted_one(tmp_path: Path) -> None:
    """The checkpoints keep every iterate and the last one is what --resume continues from, so
    a run stopped half-way and resumed ends with the same policy and selection."""
    from tailor.experiments import run

    prior = _cleanrl_prior(tmp_path)
    whole = run.customize("pointmass", "ppo", prior, 1024, 0, tmp_path / "whole", log=None,
                          select_episodes=3, **FAST)  # fmt: skip
    half = run.customize("pointmass", "ppo", prior, 512, 0, tmp_path / "half", log=None,
                         select_episodes=3, **FAST)  # fmt: skip
    assert json.loads((half / "policy.json").read_text())["trained_steps"] == 512
    run.resume(half, 1024, log=None)
    a, b = (json.loads((d / "policy.json").read_text()) for d in (whole, half))
    assert a["selection"] == b["selection"] and a["trained_steps"] == b["trained_steps"] == 1024
    got, want = load_file(half / "policy.safetensors"), load_file(whole / "policy.safetensors")
    assert all(torch.equal(got[k], want[k]) for k in want)
    # a kept policy from before the last checkpoint (a resume killed before its selection) is
    # stale: the run directory then reads as its latest checkpoint
    from tailor.policyfile import load_policy, resolve_policy_path, save_policy

    actor, norm, meta = load_policy(whole / "kept" / "policy.safetensors")
    save_policy(whole / "kept", actor, norm, {**meta, "trained_steps": 512})
    assert resolve_policy_path(whole) == whole / "checkpoints" / "step-1024" / "policy.safetensors"


def test_a_last_iterate_that_fails_more_episodes_gives_way(tmp_path: Path, monkeypatch) -> None:
    """Newest first, the first checkpoint with the prior's successes is kept and written as the
    run's policy; older ones are not evaluated (the evaluation scripted here: the one above
    checks the real one)."""
    from tailor.envs import get_task
    from tailor.experiments import run, selection

    prior = _cleanrl_prior(tmp_path)
    out = run.customize("pointmass", "ppo", prior, 1024, 0, tmp_path / "run", log=None,
                        select_episodes=0, **FAST)  # fmt: skip
    last = load_file(out / "policy.safetensors")
    successes = {0: 5, 1024: 3, 768: 4, 512: 5, 256: 5}
    asked: list[int] = []

    def scripted(step: int, path: Path, task, episodes: int) -> Candidate:
        asked.append(step)
        return Candidate(step, float(step), successes[step], path)

    monkeypatch.setattr(selection, "_evaluate", scripted)
    lines: list[str] = []
    kept = selection.select_iterate(out, get_task("pointmass"), 7, lines.append)
    assert kept.step == 512 and asked == [0, 1024, 768, 512]
    assert "step 512: the later iterates failed more episodes" in lines[0]
    got = load_file(out / "policy.safetensors")
    want = load_file(out / "checkpoints" / "step-512" / "policy.safetensors")
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not all(torch.equal(got[k], last[k]) for k in last)  # no longer the last iterate
    # what every command given the run directory reads, and what it evaluates
    from tailor.evaluate import evaluate
    from tailor.policyfile import resolve_policy_path

    assert resolve_policy_path(out) == out / "kept" / "policy.safetensors"
    assert load_file(resolve_policy_path(out)).keys() == want.keys()
    step512 = out / "checkpoints" / "step-512" / "policy.safetensors"
    assert evaluate(out, "pointmass", 2)["addon"] == evaluate(step512, "pointmass", 2)["addon"]
    meta = json.loads((out / "policy.json").read_text())
    assert meta["steps"] == 512 and meta["trained_steps"] == 1024
    assert [c["step"] for c in meta["selection"]["candidates"]] == [0, 512, 768, 1024]
    successes.update({512: 4, 256: 4})  # none keeps them: the prior
    asked.clear()
    assert selection.select_iterate(out, get_task("pointmass"), 7, None).step == 0
    assert asked == [0, 1024, 768, 512, 256]
    got = load_file(out / "policy.safetensors")
    want = load_file(out / "prior" / "policy.safetensors")
    assert all(torch.equal(got[k], want[k]) for k in want)
