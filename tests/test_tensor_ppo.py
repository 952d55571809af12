"""Batched-tensor envs (rsl-rl's VecEnv contract) and the PPO loop that stays on their device."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from tailor.algos.ppo_config import PPOConfig
from tailor.algos.ppo_learner import PPOLearner
from tailor.algos.rollout import TensorRollout
from tailor.algos.tensor_ppo import TensorPPOConfig, _Loop, _targets, rollout_reward, train_tensor
from tailor.envs import VecEnv
from tailor.envs.tensor_vec import TaskTensorEnv, extras_addon, observation_tensor
from tailor.envs.torch_pointmass import TorchPointMass
from tailor.errors import TailorError
from tailor.methods import FALLBACK_COEFFICIENTS, METHODS, resolve
from tailor.nets import Actor, EmpiricalNormalization
from tailor.priors import PolicyPrior

TINY = TensorPPOConfig(
    num_iterations=2, num_steps_per_env=8, num_minibatches=2, num_epochs=2, hidden=(16, 16)
)


def _prior(seed: int = 7) -> PolicyPrior:
    torch.manual_seed(seed)
    return PolicyPrior(Actor(4, 2, (16, 16), "elu", init_std=0.5), EmpiricalNormalization(4))


def _method(name: str):
    """The method with its fallback coefficients; residual with omega' = 0.3, alpha_hat = 0.1."""
    if name == "residual":
        return resolve(name, omega_prime=0.3, alpha_hat=0.1)
    return resolve(name, FALLBACK_COEFFICIENTS[name])


def _run(name: str, config: TensorPPOConfig = TINY, seed: int = 0, **kw):
    method = _method(name)
    prior = _prior() if method.customization else None
    env = TorchPointMass(16, seed=seed)
    return train_tensor(env, method, config, prior=prior, addon=extras_addon(), **kw)


def test_observation_groups_and_plain_tensors():
    x = torch.arange(6.0).reshape(3, 2)
    assert observation_tensor(x, "policy") is x
    assert observation_tensor({"policy": x, "critic": x + 1}, "critic").equal(x + 1)
    td = TorchPointMass(3).get_observations()  # a TensorDict when tensordict is installed
    assert observation_tensor(td, "policy").shape == (3, 4)
    with pytest.raises(TailorError, match="no group 'actor'"):
        observation_tensor({"policy": x}, "actor")
    with pytest.raises(TailorError, match=r"float tensor \[N, D\]"):
        observation_tensor(torch.zeros(3, dtype=torch.long), "policy")


def test_task_adapter_is_the_numpy_env_as_tensors():
    """Same seed and actions: the adapter's tensors are VecEnv's arrays; the time limit (100
    steps of the point mass) arrives as dones + time_outs and resets episode_length_buf."""
    env, ref = TaskTensorEnv("pointmass", 3, seed=4), VecEnv("pointmass", 3, seed=4)
    first = ref.reset()
    assert np.array_equal(observation_tensor(env.get_observations(), "policy").numpy(), first)
    rng = np.random.default_rng(0)
    for t in range(100):
        a = rng.uniform(-1.5, 1.5, size=(3, 2)).astype(np.float32)
        obs, rew, dones, extras = env.step(torch.from_numpy(a))
        res = ref.step(a)
        assert np.array_equal(obs["policy"].numpy(), res.obs)
        assert np.allclose(rew.numpy(), res.basic) and np.allclose(
            extras["addon"].numpy(), res.addon
        )
        assert bool(dones.all()) == (t == 99) and bool(extras["time_outs"].all()) == (t == 99)
    assert env.episode_length_buf.tolist() == [0, 0, 0]


def _numbers(rows: list[dict]) -> list[list]:
    """The rows without their timing, NaN spelled so that it compares equal."""
    return [[str(v) for k, v in r.items() if k != "steps_per_s"] for r in rows]


def test_short_run_finishes_and_same_seed_gives_same_numbers():
    a, b = _run("no-entropy"), _run("no-entropy")
    assert len(a.metrics) == 2 and _numbers(a.metrics) == _numbers(b.metrics)
    for p, q in zip(a.learner.actor.parameters(), b.learner.actor.parameters(), strict=True):
        assert torch.equal(p, q)
    c = _run("no-entropy", seed=1)
    assert c.metrics[0]["env_reward"] != a.metrics[0]["env_reward"]
    assert a.steps == 2 * 16 * 8 and a.buf.obs.shape == (8, 16, 4)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_runs(name):
    result = _run(name, dataclasses.replace(TINY, num_iterations=1, critic_warmup_fraction=0.0))
    row = result.metrics[0]
    assert all(np.isfinite(row[k]) for k in ("reward", "value_loss", "policy_loss", "entropy"))
    # log pi_prior is recorded exactly when the reward uses it
    assert (result.buf.logp_prior is not None) == (name in ("kl", "residual"))


@pytest.mark.parametrize(
    ("name", "reward"),
    [
        ("residual", lambda basic, addon: addon),
        ("full", lambda basic, addon: basic + addon),
        ("soft", lambda basic, addon: basic),
    ],
)
def test_reward_is_reformulate_of_the_method_env_reward(name, reward):
    """In the critic warm-up the actor is the prior, so log pi_theta = log pi_prior; the env
    reward is the method's pick of r = -||p'|| and r_R = -|y'| (p' = the next observation's
    position: no episode ends in 8 steps), and the rollout reward is r + omega' lp - alpha lp."""
    cfg = dataclasses.replace(TINY, num_iterations=1, critic_warmup_fraction=1.0)
    result = _run(name, cfg)
    buf, method = result.buf, _method(name)
    nxt = buf.obs[1:, :, :2]
    expected_env = reward(-nxt.square().sum(-1).sqrt(), -nxt[..., 1].abs())
    assert torch.allclose(buf.reward[:-1], expected_env, atol=1e-6)
    spec = method.spec
    if name == "residual":
        prior = _prior()
        lp = prior.log_prob(buf.obs.reshape(-1, 4), buf.actions.reshape(-1, 2)).reshape(8, 16)
        assert torch.allclose(buf.logp_prior, lp, atol=1e-5)
        assert torch.allclose(buf.logp, lp, atol=1e-5)  # warm-up: the actor is the prior
        by_hand = buf.reward + 0.3 * buf.logp_prior - 0.1 * buf.logp
    else:
        by_hand = buf.reward - spec.alpha_hat * buf.logp
    assert torch.allclose(rollout_reward(buf, method), by_hand, atol=1e-6)
    assert result.metrics[0]["reward"] == pytest.approx(float(by_hand.mean()), abs=1e-6)


def test_residual_at_zero_is_plain_ppo_on_the_addon():
    """omega' = alpha_hat = 0: the reward is r_R exactly and the run is greedy(0)'s and kl(0)'s,
    bit for bit; nonzero coefficients change it."""
    cfg = dataclasses.replace(TINY, critic_warmup_fraction=0.0)
    runs = []
    for method in (
        resolve("residual", omega_prime=0.0, alpha_hat=0.0),
        resolve("greedy", alpha_hat=0.0),
        resolve("kl", beta=0.0),
        resolve("residual", omega_prime=0.5, alpha_hat=0.5),
    ):
        env = TorchPointMass(16, seed=0)
        runs.append(train_tensor(env, method, cfg, prior=_prior(), addon=extras_addon()))
    zero = runs[0]
    assert torch.equal(rollout_reward(zero.buf, resolve("greedy", alpha_hat=0.0)), zero.buf.reward)
    for other in runs[1:3]:
        assert [r["reward"] for r in other.metrics] == [r["reward"] for r in zero.metrics]
        assert torch.equal(other.learner.actor.log_std, zero.learner.actor.log_std)
    assert runs[3].metrics[-1]["reward"] != zero.metrics[-1]["reward"]


class _FirstObs(nn.Module):
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[..., 0]


def test_time_outs_bootstrap_from_v_of_s_t_as_rsl_rl():
    """Hand-worked GAE, gamma 0.5, lambda 1, r = 1: env 0 times out at t = 0 (delta = 1 + 0.5 V(s_0)
    - V(s_0) = 0.5, trace cut), env 1 terminates at t = 0 (delta = 1 - 2 = -1); at t = 1 both
    bootstrap from V(last obs) = (5, 6)."""
    cfg = PPOConfig(
        num_envs=2,
        num_steps=2,
        num_minibatches=1,
        gamma=0.5,
        lam=1.0,
        normalize_obs=False,
        normalize_rewards=False,
    )
    learner = PPOLearner.build(cfg, 1, 1, None, torch.Generator())
    learner.critic = _FirstObs()
    buf = TensorRollout.empty(2, 2, 1, 1, False, torch.device("cpu"))
    buf.values[:] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    buf.obs[..., 0] = buf.values
    buf.reward[:] = 1.0
    buf.dones[0] = True
    buf.time_outs[0, 0] = True
    loop = _Loop(
        None,
        resolve("no-entropy"),
        cfg,
        "policy",
        learner,
        buf,
        None,
        None,
        torch.zeros(2),
        torch.zeros(2),
    )
    rewards, adv, ret, _ = _targets(loop, torch.tensor([[5.0], [6.0]]))
    assert torch.equal(rewards, buf.reward)
    assert torch.allclose(adv, torch.tensor([[0.5, -1.0], [0.5, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.5, 1.0], [3.5, 4.0]]))


def test_bad_inputs_are_tailor_errors():
    with pytest.raises(TailorError, match="needs a Gaussian PolicyPrior"):
        train_tensor(TorchPointMass(4), _method("residual"), TINY)
    with pytest.raises(TailorError, match="takes no prior"):
        train_tensor(TorchPointMass(4), resolve("no-entropy"), TINY, prior=_prior())
    with pytest.raises(TailorError, match="not a batched-tensor env"):
        train_tensor(object(), resolve("no-entropy"), TINY)
    with pytest.raises(TailorError, match="num_minibatches"):
        train_tensor(
            TorchPointMass(5), resolve("no-entropy"), dataclasses.replace(TINY, num_steps_per_env=3)
        )


def test_it_learns_the_point_mass():
    """A random policy keeps the point about 0.7 from the goal; 12 short iterations bring the
    mean distance (= -env reward) to about 0.3 (seed 1: 0.72 -> 0.30)."""
    cfg = TensorPPOConfig(
        num_iterations=12,
        num_steps_per_env=25,
        hidden=(32, 32),
        num_minibatches=2,
        num_epochs=4,
        seed=1,
    )
    rows = train_tensor(TorchPointMass(32, seed=1), resolve("no-entropy"), cfg).metrics
    first, last = rows[0]["env_reward"], rows[-1]["env_reward"]
    assert first < -0.6 and last > -0.4
