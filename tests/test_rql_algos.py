"""RQL tasks, soft DQN / SAC / MCTS loops, checkpoints and the run.py entry points."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from tailor.algos.mcts import numpy_log_prior
from tailor.envs import get_task, make_env
from tailor.envs.classic import THETA_MAX, success
from tailor.errors import TailorError
from tailor.experiments import run
from tailor.nets import ACTIVATIONS, SquashedGaussianActor

DQN_FAST = {"learning_starts": 100, "batch_size": 16, "hidden": (16, 16), "log_interval": 0}
SAC_FAST = {
    "learning_starts": 100,
    "batch_size": 16,
    "hidden": (16, 16),
    "log_interval": 0,
    "warm_start_steps": 20,
}


def test_cartpole_centered_rewards_and_success():
    env = make_env("cartpole-centered")
    env.reset(seed=0)
    for _ in range(5):
        _, r, _, _, info = env.step(1)
        x, theta = env.unwrapped.state[0], env.unwrapped.state[2]
        assert r == pytest.approx(1.0 - 10.0 * abs(theta) / THETA_MAX)
        assert info["basic_reward"] == r
        assert info["addon_reward"] == pytest.approx(-abs(x) / 2.4)
        assert info["statistic"] == pytest.approx(abs(x))
    assert env.spec.max_episode_steps == 500
    assert success("cartpole-centered", False, True, 500)
    assert not success("cartpole-centered", True, False, 30)


def test_mountaincar_noleft_addon_and_success():
    env = make_env("mountaincar-noleft")
    env.reset(seed=0)
    assert env.step(np.array([-0.5]))[4]["addon_reward"] == -0.1
    assert env.step(np.array([0.5]))[4]["addon_reward"] == 0.0
    assert env.step(np.array([0.0]))[4]["addon_reward"] == 0.0
    assert success("mountaincar-noleft", True, False, 120)
    assert not success("mountaincar-noleft", False, True, 999)
    assert "residual" in get_task("mountaincar-noleft").coefficients


@pytest.fixture(scope="module")
def dqn_prior(tmp_path_factory):
    out = tmp_path_factory.mktemp("rql") / "prior"
    return run.train_prior("cartpole-centered", "dqn", 400, 0, out, log=None, **DQN_FAST)


def test_dqn_prior_checkpoint_is_safetensors_json_and_deterministic(dqn_prior, tmp_path):
    meta = json.loads((dqn_prior / "policy.json").read_text())
    assert meta["format"] == run.RQL_FORMAT and meta["algo"] == "dqn"
    assert meta["coefficients"] == {"omega_prime": 0.0, "alpha_hat": 0.05}
    assert run.is_rql_policy(dqn_prior) and not run.is_rql_policy(tmp_path)
    again = run.train_prior(
        "cartpole-centered", "dqn", 400, 0, tmp_path / "b", log=None, **DQN_FAST
    )
    _, t1 = run.load_policy(dqn_prior)
    _, t2 = run.load_policy(again)
    assert all(torch.equal(t1[k], t2[k]) for k in t1)
    other = run.train_prior(
        "cartpole-centered", "dqn", 400, 1, tmp_path / "c", log=None, **DQN_FAST
    )
    _, t3 = run.load_policy(other)
    assert not all(torch.equal(t1[k], t3[k]) for k in t1)


def test_residual_dqn_starts_as_the_prior(dqn_prior, tmp_path):
    # No gradient step (learning_starts > steps) and Q_R = 0: the customized greedy policy
    # argmax(0 + omega' log pi) is the prior's argmax Q for any omega' > 0.
    out = run.customize(
        "cartpole-centered",
        "dqn",
        dqn_prior,
        50,
        0,
        tmp_path / "c",
        log=None,
        **{**DQN_FAST, "learning_starts": 1000},
    )
    a = run.evaluate(dqn_prior, episodes=2, max_steps=60)
    b = run.evaluate(out, episodes=2, max_steps=60)
    assert a["per_episode"] == b["per_episode"]
    meta, tensors = run.load_policy(out)
    assert meta["has_prior"] and meta["prior_alpha"] == 0.05
    assert all(
        float(v.abs().sum()) == 0.0
        for k, v in tensors.items()
        if k.startswith("q.") and k.endswith(("4.weight", "4.bias"))
    )


def test_residual_dqn_trains_and_evaluate_reports_everything(dqn_prior, tmp_path):
    out = run.customize(
        "cartpole-centered",
        "dqn",
        dqn_prior,
        300,
        0,
        tmp_path / "c",
        omega_prime=0.1,
        alpha_hat=0.05,
        log=None,
        **DQN_FAST,
    )
    meta, _ = run.load_policy(out)
    assert meta["method"] == "residual"
    assert meta["coefficients"] == {"omega_prime": 0.1, "alpha_hat": 0.05}
    res = run.evaluate(out, episodes=3, seed=5, max_steps=40)
    for key in ("total", "basic", "addon", "statistic", "length"):
        assert set(res[key]) == {"mean", "std"}
    assert res["total"]["mean"] == pytest.approx(res["basic"]["mean"] + res["addon"]["mean"])
    assert 0.0 <= res["success_rate"] <= 1.0 and res["episodes"] == 3


def test_mcts_customize_and_evaluate(dqn_prior, tmp_path):
    out = run.customize(
        "cartpole-centered", "mcts", dqn_prior, 0, 0, tmp_path / "m", simulations=10, horizon=3
    )
    meta, tensors = run.load_policy(out)
    assert meta["algo"] == "mcts" and meta["config"]["simulations"] == 10
    # the task's residual coefficients: omega' = 0.02, tau = alpha_hat = 0.05
    assert meta["config"]["omega_prime"] == 0.02 and meta["config"]["tau"] == 0.05
    assert any(k.startswith("prior.") for k in tensors)
    res = run.evaluate(out, episodes=1, max_steps=15)
    assert res["length"]["mean"] <= 15 and res["algo"] == "mcts"
    assert res == run.evaluate(out, episodes=1, max_steps=15) | {"wall_s": res["wall_s"]}


def test_squashed_gaussian_log_prob_matches_sample():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(
        2,
        1,
        (8,),
        (np.array([-2.0]), np.array([2.0])),
        (np.array([-1.0, -1.0]), np.array([1.0, 1.0])),
    )
    obs = torch.randn(64, 2)
    a, logp = actor.sample(obs, torch.Generator().manual_seed(1))
    assert torch.all(a.abs() <= 2.0)
    torch.testing.assert_close(actor.log_prob(obs, a), logp, atol=1e-3, rtol=1e-4)
    # a density on [-2, 2]: integrates to ~1 for a fixed state (trapezoid on a fine grid)
    grid = torch.linspace(-1.999, 1.999, 4001)[:, None]
    with torch.no_grad():
        dens = actor.log_prob(obs[:1].expand(4001, 2), grid).exp()
    assert float(torch.trapezoid(dens, grid[:, 0])) == pytest.approx(1.0, abs=2e-2)


def test_sac_prior_and_residual_sac(tmp_path):
    prior = run.train_prior(
        "mountaincar-noleft", "sac", 200, 0, tmp_path / "p", log=None, **SAC_FAST
    )
    same = run.train_prior(
        "mountaincar-noleft", "sac", 200, 0, tmp_path / "q", log=None, **SAC_FAST
    )
    _, t1 = run.load_policy(prior)
    _, t2 = run.load_policy(same)
    assert all(torch.equal(t1[k], t2[k]) for k in t1)
    # no update yet: the customized actor is the prior's copy
    idle = run.customize(
        "mountaincar-noleft",
        "sac",
        prior,
        50,
        0,
        tmp_path / "i",
        log=None,
        **{**SAC_FAST, "learning_starts": 1000},
    )
    _, t3 = run.load_policy(idle)
    assert all(torch.equal(t1[k], t3[k]) for k in t1)
    # the critics learn from the first steps, the actor only after the critic warm-up
    warming = run.customize(
        "mountaincar-noleft",
        "sac",
        prior,
        200,
        0,
        tmp_path / "w",
        log=None,
        **{**SAC_FAST, "critic_warmup_steps": 1000},
    )
    _, t5 = run.load_policy(warming)
    assert all(torch.equal(t1[k], t5[k]) for k in t1)
    cust = run.customize(
        "mountaincar-noleft", "sac", prior, 200, 0, tmp_path / "c", log=None, **SAC_FAST
    )
    meta, t4 = run.load_policy(cust)
    assert meta["coefficients"] == {"omega_prime": 0.1, "alpha_hat": 0.1}
    assert not all(torch.equal(t1[k], t4[k]) for k in t1)
    res = run.evaluate(cust, episodes=2, max_steps=30)
    assert res["length"]["mean"] == 30 and res["success_rate"] == 0.0


def test_bad_inputs_raise_tailor_errors(dqn_prior, tmp_path):
    with pytest.raises(TailorError, match="discrete"):
        run.train_prior("mountaincar-noleft", "dqn", 10, 0, tmp_path / "x", log=None)
    with pytest.raises(TailorError, match="algo"):
        run.train_prior("cartpole-centered", "mcts", 10, 0, tmp_path / "x", log=None)
    with pytest.raises(TailorError, match="not a SAC prior"):
        run.customize("cartpole-centered", "sac", dqn_prior, 10, 0, tmp_path / "x", log=None)
    with pytest.raises(TailorError, match="trained on"):
        run.customize("mountaincar-noleft", "mcts", dqn_prior, 0, 0, tmp_path / "x")
    with pytest.raises(TailorError, match="does not exist"):
        run.evaluate(tmp_path / "nothing")
    with pytest.raises(TailorError, match="unknown SoftDQNConfig option"):
        run.train_prior("cartpole-centered", "dqn", 10, 0, tmp_path / "x", log=None, lr_x=1)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "policy.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(TailorError, match="readable"):
        run.evaluate(tmp_path / "junk")


def test_basic_weight_scales_only_the_full_reward():
    from tailor.algos.soft_dqn import SoftDQNConfig, _weighted
    from tailor.methods import resolve

    cfg = SoftDQNConfig(basic_weight=0.2)
    full, soft = resolve("full", alpha=0.1), resolve("soft", alpha=0.1)
    assert full.env_reward(_weighted(full, cfg, 1.5), -0.5) == pytest.approx(0.2 * 1.5 - 0.5)
    assert soft.env_reward(_weighted(soft, cfg, 1.5), -0.5) == 1.5


def test_gradient_steps_take_more_updates(tmp_path):
    a = run.train_prior("cartpole-centered", "dqn", 150, 0, tmp_path / "a", log=None, **DQN_FAST)
    b = run.train_prior(
        "cartpole-centered", "dqn", 150, 0, tmp_path / "b", log=None, gradient_steps=3, **DQN_FAST
    )
    _, ta = run.load_policy(a)
    _, tb = run.load_policy(b)
    assert not all(torch.equal(ta[k], tb[k]) for k in ta)


def test_batched_mcts_is_the_default_and_sequential_is_available(dqn_prior, tmp_path):
    kw = {"simulations": 14, "horizon": 3}
    fast = run.customize("cartpole-centered", "mcts", dqn_prior, 0, 0, tmp_path / "b", **kw)
    slow = run.customize(
        "cartpole-centered", "mcts", dqn_prior, 0, 0, tmp_path / "s", batched=False, **kw
    )
    assert run.load_policy(fast)[0]["config"]["batched"] is True
    # 14 simulations = the whole depth-3 tree for the batched search; the sequential search
    # with 14 simulations has not finished it, so only the batched one is compared exactly.
    res = run.evaluate(fast, episodes=1, max_steps=10)
    assert res["length"]["mean"] == 10
    assert run.evaluate(slow, episodes=1, max_steps=10)["length"]["mean"] == 10


def test_sac_critic_zero_init_starts_at_zero():
    from tailor.algos.sac import TwinCritic

    torch.manual_seed(0)
    one = torch.ones(3)
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    zero = TwinCritic(3, 2, (8, 8), one, 0 * one, zero_last=True)
    assert torch.equal(zero(obs, act), torch.zeros(2, 5))
    q = TwinCritic(3, 2, (8, 8), one, 0 * one)(obs, act)
    assert not torch.equal(q, torch.zeros(2, 5)) and not torch.equal(q[0], q[1])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_numpy_log_prior_matches_torch_for_every_activation(name: str) -> None:
    """MCTS evaluates the prior in numpy: every activation a prior may have (SB3's default
    Tanh of a categorical PPO/A2C, rsl-rl's ELU, ...) gives torch's numbers."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), ACTIVATIONS[name](), nn.Linear(8, 4))
    obs = 3 * torch.randn(16, 3, dtype=torch.float64)
    with torch.no_grad():
        want = torch.log_softmax(net.double()(obs) / 0.7, dim=-1).numpy()
    got = numpy_log_prior(net, 0.7)(obs.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
