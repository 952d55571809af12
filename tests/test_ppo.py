"""PPO on the point mass: method rewards, customization invariants, determinism, learning."""

from __future__ import annotations

import math
import re

import pytest
import torch

from tailor.algos.ppo import PPOConfig, method_reward, read_run, train
from tailor.envs import Task, register_task
from tailor.errors import TailorError
from tailor.methods import resolve
from tailor.nets import Actor, EmpiricalNormalization
from tailor.priors import PolicyPrior

TASK = "pointmass"
OBS_DIM, ACT_DIM = 4, 2


def small(**kw: object) -> PPOConfig:
    """A tiny, fast config: 16 envs x 32 steps = 512 transitions per iteration."""
    base = dict(
        total_steps=2048,
        num_envs=16,
        num_steps=32,
        num_epochs=4,
        num_minibatches=2,
        hidden=(32, 32),
        tensorboard=False,
        checkpoint_every=1000,
    )
    base.update(kw)
    return PPOConfig(**base)


def random_prior(seed: int = 1) -> PolicyPrior:
    """A prior with random weights and a non-trivial frozen normalizer."""
    torch.manual_seed(seed)
    actor = Actor(OBS_DIM, ACT_DIM, (32, 32), init_std=0.5)
    norm = EmpiricalNormalization(OBS_DIM)
    norm.update(torch.randn(64, OBS_DIM) * 0.5 + 0.1)
    return PolicyPrior(actor, norm, {"task": TASK})


def snapshot(*modules: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


def assert_same(a: list[dict], b: list[dict]) -> None:
    for sa, sb in zip(a, b, strict=True):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


# ---- every method's reward on a hand-made rollout ----------------------------------------------
# One transition: basic r = 1.0, add-on r_R = -2.0, log pi_theta = -1.5, log pi_prior = -0.5.
@pytest.mark.parametrize(
    ("name", "coefs", "expected", "bonus"),
    [
        ("no-entropy", {}, 1.0, 0.0),
        ("end-entropy", {"alpha": 0.1}, 1.0, 0.1),  # bonus in the loss only
        ("repeat-entropy", {"alpha": 0.1}, 1.0 + 0.15, 0.1),  # 1 - 0.1 * (-1.5)
        ("soft", {"alpha": 0.1}, 1.15, 0.0),
        ("full", {"alpha": 0.1}, 1.0 - 2.0 + 0.15, 0.0),  # r + r_R - alpha log pi
        ("greedy", {"alpha_hat": 0.1}, -2.0 + 0.15, 0.0),  # r_R only
        ("kl", {"beta": 0.3}, -2.0 + 0.3 * -0.5 + 0.45, 0.0),  # r_R - beta log(pi/pi_prior)
        ("residual", {"omega_prime": 0.2, "alpha_hat": 0.1}, -2.0 - 0.1 + 0.15, 0.0),
    ],
)
def test_method_reward_on_hand_made_rollout(name, coefs, expected, bonus) -> None:
    method = resolve(name, **coefs)
    t = lambda x: torch.full((2, 3), x, dtype=torch.float64)  # noqa: E731 - [T=2, N=3]
    r = method_reward(method, t(1.0), t(-2.0), t(-1.5), t(-0.5))
    torch.testing.assert_close(r, t(expected), rtol=0, atol=1e-12)
    assert method.entropy_bonus == bonus


# ---- customization: warm-up, frozen prior ------------------------------------------------------
def test_critic_warmup_leaves_actor_bit_identical_and_fits_critic() -> None:
    prior = random_prior()
    before = snapshot(prior.actor, prior.obs_norm)
    method = resolve("residual", omega_prime=0.1, alpha_hat=0.05)
    cfg = small(total_steps=3072, critic_warmup_fraction=1.0)
    res = train(TASK, method, cfg, prior=prior)
    assert [r["phase"] for r in res.metrics] == ["critic-warmup"] * 6
    # The actor (and the normalizer it uses) is exactly the prior's after the whole warm-up ...
    assert_same(snapshot(res.actor, res.obs_norm), before)
    # ... while the fresh critic learnt: its loss went down.
    losses = [r["value_loss"] for r in res.metrics]
    assert losses[-1] < 0.5 * losses[0], losses


def test_after_warmup_the_actor_moves_and_the_prior_stays_frozen() -> None:
    prior = random_prior()
    before = snapshot(prior.actor, prior.obs_norm)
    method = resolve("kl", beta=0.05)
    res = train(TASK, method, small(total_steps=2048, critic_warmup_fraction=0.25), prior=prior)
    assert [r["phase"] for r in res.metrics] == ["critic-warmup", "ppo", "ppo", "ppo"]
    assert_same(snapshot(prior.actor, prior.obs_norm), before)  # prior untouched
    assert not any(p.requires_grad for p in prior.actor.parameters())
    assert not prior.actor.training and not prior.obs_norm.training
    moved = snapshot(res.actor)[0]
    assert any(not torch.equal(moved[k], before[0][k]) for k in moved)  # the copy learnt
    assert_same(snapshot(res.obs_norm), [before[1]])  # normalizer stays the prior's


def test_customization_needs_a_prior_and_training_refuses_one() -> None:
    with pytest.raises(TailorError, match="needs one"):
        train(TASK, resolve("greedy", alpha_hat=0.1), small())
    with pytest.raises(TailorError, match="takes no prior"):
        train(TASK, resolve("soft", alpha=0.1), small(), prior=random_prior())


def test_prior_with_other_spaces_is_refused() -> None:
    torch.manual_seed(0)
    prior = PolicyPrior(Actor(5, 2, (8,)), EmpiricalNormalization(5), {"task": "other"})
    with pytest.raises(TailorError, match="observation size 5"):
        train(TASK, resolve("residual", omega_prime=0.1, alpha_hat=0.1), small(), prior=prior)


# ---- determinism --------------------------------------------------------------------------------
def _deterministic_part(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("sps", "wall_s")} for r in rows]


def test_same_seed_gives_identical_metrics() -> None:
    cfg = small(total_steps=1536, seed=3)
    a = train(TASK, resolve("soft", alpha=0.05), cfg)
    b = train(TASK, resolve("soft", alpha=0.05), cfg)
    assert _deterministic_part(a.metrics) == _deterministic_part(b.metrics)
    c = train(TASK, resolve("soft", alpha=0.05), small(total_steps=1536, seed=4))
    assert _deterministic_part(a.metrics) != _deterministic_part(c.metrics)


# ---- learning --------------------------------------------------------------------------------
def test_ppo_learns_pointmass() -> None:
    """Fails if the policy gradient had the wrong sign: the return must clearly improve."""
    res = train(TASK, resolve("no-entropy"), small(total_steps=12288, seed=0))
    returns = [r["return_basic"] for r in res.metrics if r["return_basic"] != ""]
    first, last = returns[0], returns[-1]  # first/last iteration with finished episodes
    assert first < -60.0, first  # a random policy wanders around
    assert last > first + 40.0 and last > -40.0, (first, last)


def test_entropy_term_of_the_reward_has_the_right_sign() -> None:
    """Soft PPO's reward -alpha log pi_theta pays for entropy: the std must grow.

    With the sign of alpha_hat flipped in the reformulation (or the behaviour log-prob missing),
    the std would shrink like no-entropy PPO's instead.
    """
    cfg = small(total_steps=6144, seed=0, init_std=0.3)
    soft = train(TASK, resolve("soft", alpha=1.0), cfg)
    plain = train(TASK, resolve("no-entropy"), cfg)
    assert soft.metrics[-1]["action_std"] > 0.3 * 1.3
    assert soft.metrics[-1]["action_std"] > plain.metrics[-1]["action_std"] * 1.3


def test_prior_term_of_the_reward_pulls_towards_the_prior() -> None:
    """omega' log pi_prior rewards the prior's actions: log pi_prior of the executed actions
    must rise with omega' > 0 and fall with omega' < 0 (a sign error swaps the two)."""
    cfg = small(total_steps=4096, seed=0, critic_warmup_fraction=0.125)
    towards = train(
        TASK, resolve("residual", omega_prime=1.0, alpha_hat=0.0), cfg, prior=random_prior()
    )
    away = train(
        TASK, resolve("residual", omega_prime=-1.0, alpha_hat=0.0), cfg, prior=random_prior()
    )
    start = towards.metrics[0]["logp_prior"]
    assert away.metrics[0]["logp_prior"] == pytest.approx(start)  # same warm-up rollout
    assert towards.metrics[-1]["logp_prior"] > start + 0.2
    assert away.metrics[-1]["logp_prior"] < start - 0.2


# ---- failures: non-finite rewards, NaN loss, resume ---------------------------------------------
def _pointmass_variant(name: str, addon) -> Task:
    task = Task(
        name=name, env_id="tailor/PointMass-v0", addon=addon, statistic=lambda env, a, info: 0.0
    )
    return register_task(task, overwrite=True)


def test_non_finite_addon_reward_names_the_step() -> None:
    task = _pointmass_variant("test-nan-addon", lambda env, a, info: math.nan)
    with pytest.raises(TailorError, match=r"(?i)add-on.*step"):
        train(task, resolve("full", alpha=0.0), small(num_envs=2))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path) -> None:
    calls = {"n": 0}

    def addon(env, a, info):
        calls["n"] += 1
        return 1e30 if calls["n"] > 2 * 512 else 0.0

    task = _pointmass_variant("test-exploding", addon)
    # The return statistics overflow first (1e30 rewards); either check stops the run.
    with pytest.raises(TailorError, match=r"loss became|var became NaN or infinite") as err:
        train(task, resolve("full", alpha=0.0), small(checkpoint_every=1), tmp_path)
    kept = re.search(r"last good checkpoint \(step (\d+)\) is kept", str(err.value))
    assert kept is not None, str(err.value)
    # The checkpoint on disk is the last one before the loss went bad (after the explosion).
    assert read_run(tmp_path)["steps"] == int(kept.group(1)) >= 1024
    assert (tmp_path / "policy.safetensors").is_file()


def test_resume_continues_the_run(tmp_path) -> None:
    method = resolve("soft", alpha=0.05)
    first = train(TASK, method, small(total_steps=1024, checkpoint_every=1), tmp_path)
    assert first.steps == 1024
    res = train(TASK, method, small(total_steps=2048, checkpoint_every=1), tmp_path, resume=True)
    assert [r["iteration"] for r in res.metrics] == [3, 4]
    assert read_run(tmp_path)["steps"] == 2048
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1, 2, 3, 4]
    with pytest.raises(TailorError, match="different config"):
        train(TASK, method, small(total_steps=4096, num_epochs=2), tmp_path, resume=True)
    with pytest.raises(TailorError, match="not 'no-entropy'"):
        train(TASK, resolve("no-entropy"), small(total_steps=4096), tmp_path, resume=True)


def test_callback_stops_training_and_checkpoints(tmp_path) -> None:
    seen = []

    def stop_at_second(row: dict) -> bool:
        seen.append(row["iteration"])
        return len(seen) == 2

    result = train(
        "pointmass", resolve("soft", alpha=0.01), small(), tmp_path, callback=stop_at_second
    )
    assert seen == [1, 2]
    assert result.iterations == 2 and result.steps == 2 * 512 and len(result.metrics) == 2
    assert read_run(tmp_path)["steps"] == 2 * 512  # the stop wrote a checkpoint


def test_tensorboard_logs_are_written(tmp_path) -> None:
    train("pointmass", resolve("soft", alpha=0.01), small(tensorboard=True), tmp_path)
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
