"""Checkpoints: round trip, validation of bad files, priors' space checks, evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tailor.algos.ppo import PPOConfig, train
from tailor.checkpoint import flatten_optimizer, unflatten_optimizer
from tailor.errors import TailorError
from tailor.evaluate import evaluate
from tailor.methods import resolve
from tailor.nets import Actor, EmpiricalNormalization
from tailor.policyfile import load_policy, save_policy
from tailor.priors import PolicyPrior, Prior, load_prior
from tailor.rundir import latest_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = PPOConfig(
        total_steps=1024,
        num_envs=8,
        num_steps=64,
        num_minibatches=2,
        hidden=(16, 16),
        tensorboard=False,
        seed=5,
    )
    res = train("pointmass", resolve("soft", alpha=0.01), cfg, out)
    return out, res


def test_round_trip_gives_identical_actions(run) -> None:
    out, res = run
    actor, norm, _meta = load_policy(out)
    obs = torch.randn(32, 4) * 2.0
    with torch.no_grad():
        want_mean, want_log_std = res.actor(res.obs_norm.normalize(obs))
        got_mean, got_log_std = actor(norm.normalize(obs))
    assert torch.equal(got_mean, want_mean) and torch.equal(got_log_std, want_log_std)
    prior = load_prior(out / "policy.safetensors", obs_dim=4, act_dim=2)
    assert isinstance(prior, Prior)
    with torch.no_grad():
        assert torch.equal(prior.act(obs, deterministic=True), want_mean)
        a = prior.act(obs, deterministic=False, generator=torch.Generator().manual_seed(0))
        b = prior.act(obs, deterministic=False, generator=torch.Generator().manual_seed(0))
        assert torch.equal(a, b) and not torch.equal(a, want_mean)
    assert not any(p.requires_grad for p in prior.actor.parameters())


def test_metadata_describes_the_run(run) -> None:
    out, _ = run
    _, _, meta = load_policy(out)
    for key in (
        "task",
        "obs_dim",
        "act_dim",
        "action_low",
        "action_high",
        "architecture",
        "normalizer",
        "method",
        "coefficients",
        "steps",
        "seed",
        "tailor_version",
    ):
        assert key in meta, key
    assert meta["task"] == "pointmass" and meta["method"] == "soft"
    assert meta["coefficients"] == {"alpha": 0.01}
    assert meta["steps"] == 1024 and meta["seed"] == 5
    assert meta["architecture"] == {"hidden": [16, 16], "activation": "relu", "std_type": "global"}
    assert json.loads((out / "policy.json").read_text())["steps"] == 1024


def test_state_dependent_std_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    actor = Actor(3, 2, (8,), activation="tanh", std_type="state", init_std=0.3)
    norm = EmpiricalNormalization(3)
    norm.update(torch.randn(10, 3))
    save_policy(tmp_path, actor, norm, {"task": "x"})
    loaded, loaded_norm, _ = load_policy(tmp_path / "policy.safetensors")
    obs = torch.randn(5, 3)
    with torch.no_grad():
        assert all(
            torch.equal(x, y)
            for x, y in zip(
                actor(norm.normalize(obs)), loaded(loaded_norm.normalize(obs)), strict=True
            )
        )


def test_truncated_file_is_refused(run, tmp_path) -> None:
    data = (run[0] / "policy.safetensors").read_bytes()
    bad = tmp_path / "policy.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(TailorError, match="truncated or corrupted"):
        load_policy(bad)


def test_foreign_files_are_refused(run, tmp_path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(TailorError, match="not a tailor checkpoint"):
        load_policy(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(TailorError, match="not a readable safetensors"):
        load_policy(text)
    with pytest.raises(TailorError, match="'tailor-trainer' file, expected a 'tailor-policy'"):
        load_policy(latest_checkpoint(run[0]).path("trainer.safetensors"))
    with pytest.raises(TailorError, match="does not exist"):
        load_policy(tmp_path / "missing.safetensors")
    with pytest.raises(TailorError, match=r"directory without a policy\.safetensors"):
        load_policy(tmp_path)


def test_prior_spaces_must_match(run) -> None:
    with pytest.raises(TailorError, match=r"observation size 4 and action size 2.*size 17"):
        load_prior(run[0], obs_dim=17, act_dim=6, task="halfcheetah-hindleg")


def test_optimizer_state_round_trip() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.tensor([1.0, -2.0, 3.0])
    opt.step()
    tensors, obj = flatten_optimizer(opt.state_dict())
    obj = json.loads(json.dumps(obj))  # what the JSON header gives back
    opt2 = torch.optim.Adam([torch.nn.Parameter(p.detach().clone())], lr=0.5)
    opt2.load_state_dict(unflatten_optimizer(tensors, obj))
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(v, opt2.state_dict()["state"][0][k])
    assert opt2.param_groups[0]["lr"] == 0.1


def test_trainer_file_holds_optimizer_and_rng(run) -> None:
    # The trainer state lives with its policy in the checkpoint the manifest names.
    tensors, meta = latest_checkpoint(run[0]).load("trainer.safetensors", "tailor-trainer")
    assert "rng" in tensors and any(k.startswith("optim.") for k in tensors)
    assert meta["steps"] == 1024 and meta["config"]["seed"] == 5


def test_evaluate_reports_both_rewards(run) -> None:
    res = evaluate(run[0], "pointmass", episodes=5, seed=1)
    for key in ("total", "basic", "addon", "statistic"):
        assert set(res[key]) == {"mean", "std"}
    assert res["episodes"] == 5 and len(res["per_episode"]["basic"]) == 5
    # total = basic + add-on per episode; the add-on is -|y| per step, the statistic mean |y|.
    per = res["per_episode"]
    for t, b, a, s, n in zip(
        per["total"], per["basic"], per["addon"], per["statistic"], per["length"], strict=True
    ):
        assert t == pytest.approx(b + a)
        assert s == pytest.approx(-a / n)
    assert res == evaluate(run[0], "pointmass", episodes=5, seed=1)  # deterministic


def test_evaluate_checks_spaces(run) -> None:
    torch.manual_seed(0)
    policy = PolicyPrior(Actor(3, 1, (4,)), EmpiricalNormalization(3))
    with pytest.raises(TailorError, match="the policy has observation size 3"):
        evaluate(policy, "pointmass", episodes=1)
