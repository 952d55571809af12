"""The exactness bridge: the deep algorithms' target functions on finite MDPs.

Tolerances: exact expected updates reach residual soft value iteration to 1e-8; sampled tabular
Q-learning (10k steps, step 1/n) to 3e-2 on a 3-state MDP whose residual q-values are O(1);
residual MCTS on a deterministic tree equals the enumerated finite-horizon soft values to 1e-10,
and so does the batched (level-by-level) search, which also equals the sequential search on
CartPole to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tailor.algos.mcts import (
    BatchedResidualMCTS,
    CartPoleModel,
    LoopModel,
    MCTSConfig,
    ResidualMCTS,
    TaskModel,
    batch_model,
    numpy_log_prior,
)
from tailor.envs import make_env
from tailor.envs.classic import BATCH_ADDONS, cartpole_step_batch
from tailor.nets import mlp
from tailor.tabular import garnet, residual_soft_value_iteration, soft_value_iteration
from tailor.tabular.bridge import (
    FiniteMDPEnv,
    FiniteMDPModel,
    QLearningConfig,
    expected_residual_q_iteration,
    residual_soft_q_learning,
)
from tailor.tabular.solvers import soft_backup


def _setup(n_states, n_actions, branching, gamma, alpha, seed=1):
    basic = garnet(n_states, n_actions, branching, gamma, seed=seed)
    r_add = np.random.default_rng(seed + 100).uniform(-1, 1, (n_states, n_actions))
    _, prior = soft_value_iteration(basic, alpha)
    return basic, basic.with_reward(r_add), prior


@pytest.mark.parametrize(("omega", "alpha", "alpha_hat"), [(1.0, 0.5, 0.5), (2.0, 0.3, 0.2)])
def test_expected_updates_match_residual_soft_vi_and_the_full_optimum(omega, alpha, alpha_hat):
    basic, addon, prior = _setup(6, 3, 3, 0.9, alpha)
    q_exact, pi_exact = residual_soft_value_iteration(addon, prior, omega * alpha, alpha_hat)
    q, pi_hat, iters = expected_residual_q_iteration(addon, prior, omega * alpha, alpha_hat)
    assert np.max(np.abs(q - q_exact)) < 1e-8
    assert np.max(np.abs(pi_hat - pi_exact)) < 1e-8
    assert iters > 10
    # the identity behind RQL: pi_hat is the soft-optimal policy of omega * r + r_R
    _, pi_full = soft_value_iteration(basic.with_reward(omega * basic.r + addon.r), alpha_hat)
    assert np.max(np.abs(pi_hat - pi_full)) < 1e-8


def test_expected_updates_hard_max_and_plain_soft_q():
    basic, addon, prior = _setup(5, 2, 2, 0.8, 0.5)
    # alpha_hat = 0: ordinary (hard) value iteration on Q_R + omega' log pi
    q_exact, _ = residual_soft_value_iteration(addon, prior, 0.5, 0.0)
    q, _, _ = expected_residual_q_iteration(addon, prior, 0.5, 0.0)
    assert np.max(np.abs(q - q_exact)) < 1e-8
    # omega' = 0: plain soft Q-iteration of the prior's own reward = soft VI
    q_soft, _ = soft_value_iteration(basic, 0.5)
    q0, _, _ = expected_residual_q_iteration(basic, prior, 0.0, 0.5)
    assert np.max(np.abs(q0 - q_soft)) < 1e-8


def test_sampled_residual_q_learning_on_the_gym_env_converges():
    _, addon, prior = _setup(3, 2, 3, 0.5, 0.5)
    q_exact, _ = residual_soft_value_iteration(addon, prior, 0.5, 0.5)
    env = FiniteMDPEnv(addon, addon=addon.r)
    q, visits = residual_soft_q_learning(env, prior, 0.5, 0.5, QLearningConfig(steps=10_000))
    assert visits.min() > 500
    err = np.max(np.abs(q - q_exact))
    assert err < 3e-2
    assert err < 0.05 * np.max(np.abs(q_exact))  # far below the scale of the values


def test_finite_mdp_env_reports_both_rewards_and_one_hot_states():
    basic, addon, _ = _setup(4, 2, 2, 0.9, 0.5)
    env = FiniteMDPEnv(basic, addon=addon.r, max_episode_steps=3)
    obs, info = env.reset(seed=0)
    s = info["state"]
    assert obs.sum() == 1.0 and obs[s] == 1.0
    obs, r, term, trunc, info = env.step(1)
    assert r == basic.r[s, 1] and info["addon_reward"] == addon.r[s, 1]
    assert not term and not trunc
    env.step(0)
    assert env.step(0)[3]  # truncated after 3 steps


def _deterministic(n_states, n_actions, gamma, seed):
    basic = garnet(n_states, n_actions, 1, gamma, seed=seed)  # branching 1: deterministic
    r_add = np.random.default_rng(seed).uniform(-1, 1, (n_states, n_actions))
    return basic, basic.with_reward(r_add)


def _finite_horizon_soft_values(addon, log_prior, omega, tau, horizon):
    """Q_R at depth 0 by enumeration: V_H = 0, Q_d = r_R + gamma P V_{d+1}, tabular soft_backup."""
    v = np.zeros(addon.n_states)
    for _ in range(horizon):
        q = addon.r + addon.gamma * addon.P @ v
        v, _ = soft_backup(q + omega * log_prior, tau)
    return q


@pytest.mark.parametrize(("omega", "tau"), [(1.0, 1.0), (0.5, 0.2)])
def test_mcts_soft_backup_equals_enumerated_soft_values(omega, tau):
    basic, addon = _deterministic(7, 3, 0.8, seed=3)
    _, prior = soft_value_iteration(basic, 0.7)
    log_prior = np.log(prior)
    horizon, root = 3, 2
    model = FiniteMDPModel(addon, state=root)
    cfg = MCTSConfig(simulations=600, horizon=horizon, gamma=0.8, omega_prime=omega, tau=tau)
    search = ResidualMCTS(model, lambda obs: log_prior[int(np.argmax(obs))], cfg)
    q_root = search.search(model.obs())
    expected = _finite_horizon_soft_values(addon, log_prior, omega, tau, horizon)[root]
    np.testing.assert_allclose(q_root, expected, atol=1e-10)
    # the action is argmax(Q_R + omega' log pi) at the root
    model.set_state(root)
    assert search.act(model.obs()) == int(np.argmax(expected + omega * log_prior[root]))


def test_mcts_hand_worked_two_level_tree():
    # 3 states, 2 actions, deterministic: s0 -a0-> s1, s0 -a1-> s2, s1/s2 -> s1/s2 (self loops).
    P = np.zeros((3, 2, 3))
    P[0, 0, 1] = P[0, 1, 2] = 1.0
    P[1, :, 1] = P[2, :, 2] = 1.0
    r_add = np.array([[0.0, 1.0], [np.log(3.0), 0.0], [0.0, 0.0]])
    from tailor.tabular import FiniteMDP

    addon = FiniteMDP(P, r_add, 0.5)
    log_prior = np.log(np.full((3, 2), 0.5))
    model = FiniteMDPModel(addon, state=0)
    cfg = MCTSConfig(simulations=200, horizon=2, gamma=0.5, omega_prime=1.0, tau=1.0)
    search = ResidualMCTS(model, lambda obs: log_prior[int(np.argmax(obs))], cfg)
    q = search.search(model.obs())
    # V(s1) = log(0.5 e^{ln 3} + 0.5 e^0) = log 2 ; V(s2) = log(0.5 + 0.5) = 0
    # Q(s0, a0) = 0 + 0.5 log 2 ; Q(s0, a1) = 1 + 0.5 * 0
    np.testing.assert_allclose(q, [0.5 * np.log(2.0), 1.0], atol=1e-12)


def _root(model):
    return LoopModel._objects([model.get_state()]), model.obs()[None]


@pytest.mark.parametrize(("omega", "tau"), [(1.0, 1.0), (0.5, 0.2)])
def test_batched_mcts_equals_enumerated_soft_values(omega, tau):
    basic, addon = _deterministic(7, 3, 0.8, seed=3)
    _, prior = soft_value_iteration(basic, 0.7)
    log_prior = np.log(prior)
    horizon, root = 3, 2
    model = FiniteMDPModel(addon, state=root)
    # 3 + 9 + 27 = 39 nodes: a budget of 40 builds the whole tree
    cfg = MCTSConfig(simulations=40, horizon=horizon, gamma=0.8, omega_prime=omega, tau=tau)
    search = BatchedResidualMCTS(
        LoopModel(model), lambda obs: log_prior[np.argmax(obs, axis=-1)], cfg
    )
    q_root = search.search_from(*_root(model))
    expected = _finite_horizon_soft_values(addon, log_prior, omega, tau, horizon)[root]
    np.testing.assert_allclose(q_root, expected, atol=1e-10)
    assert search.simulator_steps == 39
    assert search.act_from(*_root(model)) == int(np.argmax(expected + omega * log_prior[root]))


def test_batched_mcts_spends_the_budget_on_the_most_probable_paths():
    basic, addon = _deterministic(7, 3, 0.8, seed=3)
    _, prior = soft_value_iteration(basic, 0.7)
    log_prior = np.log(prior)
    model = FiniteMDPModel(addon, state=2)
    cfg = MCTSConfig(simulations=7, horizon=3, gamma=0.8, rollout=False)
    search = BatchedResidualMCTS(
        LoopModel(model), lambda obs: log_prior[np.argmax(obs, axis=-1)], cfg
    )
    q = search.search_from(*_root(model))
    # budget 7 = the root's 3 children + the 3 children of the most probable child
    assert [len(level.reward) for level in search.levels] == [1, 3, 3]
    best = int(np.argmax(log_prior[2]))
    assert search.levels[1].expanded.tolist() == [a == best for a in range(3)]
    # unexpanded children are worth 0 (no rollout): Q_R = r_R there; the expanded one backs up
    s1 = int(np.argmax(addon.P[2, best]))
    v1 = cfg.tau * np.log(np.sum(np.exp((addon.r[s1] + log_prior[s1]) / cfg.tau)))
    expected = addon.r[2].copy()
    expected[best] += cfg.gamma * v1
    np.testing.assert_allclose(q, expected, atol=1e-12)


def test_cartpole_batch_step_matches_gymnasium():
    env = make_env("cartpole-centered")
    env.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(40):
        before = np.array(env.unwrapped.state, dtype=np.float64)
        a = int(rng.integers(2))
        obs, _, term, _, info = env.step(a)
        nxt, t = cartpole_step_batch(before[None], np.array([a]))
        np.testing.assert_allclose(nxt[0], env.unwrapped.state, rtol=0, atol=1e-12)
        np.testing.assert_allclose(nxt[0].astype(np.float32), obs, rtol=0, atol=1e-6)
        assert bool(t[0]) == term
        addon = BATCH_ADDONS["cartpole-centered"](nxt, np.array([a]))[0]
        assert addon == pytest.approx(info["addon_reward"], abs=1e-12)
        if term:
            env.reset()


def test_batched_search_equals_the_sequential_search_on_cartpole():
    torch.manual_seed(0)
    log_prior = numpy_log_prior(mlp([4, 16, 16, 2]), 0.05)
    env = make_env("cartpole-centered")
    obs, _ = env.reset(seed=3)
    for _ in range(4):
        obs, *_ = env.step(1)
    kw = dict(horizon=4, gamma=0.8, omega_prime=0.05, tau=0.05)
    model = batch_model("cartpole-centered")
    assert isinstance(model, CartPoleModel)
    batched = BatchedResidualMCTS(model, log_prior, MCTSConfig(simulations=30, **kw))
    q_batched = batched.search_from(model.root(env), obs[None])
    seq_model = TaskModel("cartpole-centered")
    seq_model.sync(env)
    q_seq = ResidualMCTS(seq_model, log_prior, MCTSConfig(simulations=400, **kw)).search(obs)
    np.testing.assert_allclose(q_batched, q_seq, rtol=0, atol=1e-9)
    # the generic loop over the gym env gives the same tree
    loop = BatchedResidualMCTS(
        LoopModel(TaskModel("cartpole-centered")), log_prior, MCTSConfig(simulations=30, **kw)
    )
    np.testing.assert_allclose(
        loop.search_from(loop.model.root(env), obs[None]), q_batched, rtol=0, atol=1e-9
    )
