"""The tabular lab: validation, hand-worked known answers, and every identity of `tailor verify`."""

import math

import numpy as np
import pytest

from tailor import TailorError
from tailor.methods import resolve
from tailor.tabular import (
    FiniteMDP,
    evaluate_policy,
    garnet,
    residual_soft_value_iteration,
    soft_value_iteration,
)
from tailor.tabular.mdvi import approximate_vi, da_vi, md_vi, mirror_descent_step, munchausen_vi
from tailor.tabular.pg import PGSettings, exact_gradient, policy_gradient
from tailor.tabular.verify import CHECKS, format_table, run_checks

E = math.e


def bandit(r, gamma=0.5):
    """One state, ``len(r)`` actions, always back to the same state."""
    r = np.asarray(r, dtype=float)[None, :]
    return FiniteMDP(np.ones((1, r.shape[1], 1)), r, gamma)


# --- FiniteMDP and Garnets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("P", "r", "gamma", "message"),
    [
        (np.ones((2, 1, 3)) / 3, np.zeros((2, 1)), 0.9, r"P must have shape \[S, A, S\]"),
        (np.ones((2, 1, 2)) / 2, np.zeros((2, 2)), 0.9, r"r must have shape \[S, A\] = \(2, 1\)"),
        (np.full((2, 1, 2), 0.4), np.zeros((2, 1)), 0.9, r"P\[0, 0, :\] sums to 0.8"),
        (np.array([[[1.5, -0.5]], [[0.5, 0.5]]]), np.zeros((2, 1)), 0.9, "negative probability"),
        (np.ones((2, 1, 2)) / 2, np.zeros((2, 1)), 1.0, "0 <= gamma < 1"),
        (np.ones((2, 1, 2)) / 2, np.zeros((2, 1)), -0.1, "0 <= gamma < 1"),
        (np.ones((2, 1, 2)) / 2, np.array([[0.0], [np.nan]]), 0.9, r"non-finite value r\[1, 0\]"),
        (np.full((2, 1, 2), np.nan), np.zeros((2, 1)), 0.9, "P contains non-finite"),
    ],
)
def test_finite_mdp_names_what_is_wrong(P, r, gamma, message):
    with pytest.raises(TailorError, match=message):
        FiniteMDP(P, r, gamma)


def test_mu0_is_validated_and_with_reward_copies():
    P = np.ones((2, 1, 2)) / 2
    with pytest.raises(TailorError, match="mu0"):
        FiniteMDP(P, np.zeros((2, 1)), 0.5, mu0=[0.7, 0.7])
    m = FiniteMDP(P, np.zeros((2, 1)), 0.5, mu0=[0.25, 0.75])
    m2 = m.with_reward(np.ones((2, 1)))
    assert np.all(m2.r == 1) and np.all(m.r == 0)
    assert m2.gamma == 0.5 and np.all(m2.mu0 == [0.25, 0.75]) and np.array_equal(m2.P, m.P)


def test_garnet_is_deterministic_and_has_branching_successors():
    a, b = garnet(10, 3, 4, 0.9, seed=5), garnet(10, 3, 4, 0.9, seed=5)
    assert np.array_equal(a.P, b.P) and np.array_equal(a.r, b.r)
    assert np.all((a.P > 0).sum(axis=2) == 4)
    assert not np.array_equal(a.P, garnet(10, 3, 4, 0.9, seed=6).P)
    with pytest.raises(TailorError, match="branching"):
        garnet(3, 2, 4, 0.9, seed=0)


# --- Known answers --------------------------------------------------------------------------


def test_evaluate_policy_known_answer():
    # v = (E_pi r + alpha H) / (1 - gamma) = (0.5 + log 2) / 0.5 ; q = r + gamma v
    q, v = evaluate_policy(bandit([1.0, 0.0]), np.array([[0.5, 0.5]]), alpha=1.0)
    v_hand = 1.0 + 2.0 * math.log(2.0)
    assert v[0] == pytest.approx(v_hand, abs=1e-12)
    np.testing.assert_allclose(q[0], [1.0 + 0.5 * v_hand, 0.5 * v_hand], atol=1e-12)


def test_evaluate_policy_deterministic_policy_has_no_entropy_term():
    _, v = evaluate_policy(bandit([1.0, 0.0]), np.array([[1.0, 0.0]]), alpha=5.0)
    assert v[0] == pytest.approx(2.0)


def test_soft_value_iteration_known_answer():
    # V = gamma V + log(e + 1)  =>  V = 2 log(1 + e); pi = (e, 1) / (1 + e)
    q, pi = soft_value_iteration(bandit([1.0, 0.0]), alpha=1.0)
    V = 2.0 * math.log(1.0 + E)
    np.testing.assert_allclose(q[0], [1.0 + 0.5 * V, 0.5 * V], atol=1e-11)
    np.testing.assert_allclose(pi[0], [E / (1 + E), 1 / (1 + E)], atol=1e-15)


def test_alpha_zero_is_value_iteration():
    q, pi = soft_value_iteration(bandit([1.0, 3.0, 3.0]), alpha=0.0)
    np.testing.assert_allclose(q[0], [1.0 + 3.0, 6.0, 6.0], atol=1e-11)  # V = 3 / 0.5
    np.testing.assert_allclose(pi[0], [0.0, 0.5, 0.5])  # ties split evenly


def test_residual_soft_vi_known_answer():
    # prior (1/4, 3/4), r_R = (0, 1), omega' = alpha_hat = 1, gamma 1/2:
    # V = gamma V + log(1/4 + 3e/4)  ;  pi_hat ∝ prior * exp(r_R)
    prior = np.array([[0.25, 0.75]])
    q_r, pi_hat = residual_soft_value_iteration(bandit([0.0, 1.0]), prior, 1.0, 1.0)
    V = 2.0 * math.log(0.25 + 0.75 * E)
    np.testing.assert_allclose(q_r[0], [0.5 * V, 1.0 + 0.5 * V], atol=1e-11)
    np.testing.assert_allclose(pi_hat[0], np.array([0.25, 0.75 * E]) / (0.25 + 0.75 * E))


def test_residual_uses_only_the_addon_reward():
    """Two MDPs that differ only in what the 'basic' reward would be give the same answer: the
    function has no way to see it."""
    m = garnet(6, 3, 2, 0.9, seed=1)
    rng = np.random.default_rng(0)
    r_addon = rng.uniform(-1, 1, m.r.shape)
    prior = rng.dirichlet(np.ones(3), size=6)
    a = residual_soft_value_iteration(m.with_reward(r_addon), prior, 0.3, 0.5)
    b = residual_soft_value_iteration(
        garnet(6, 3, 2, 0.9, seed=1).with_reward(r_addon), prior, 0.3, 0.5
    )
    np.testing.assert_array_equal(a[0], b[0])


def test_solver_bad_inputs():
    m = bandit([0.0, 1.0])
    with pytest.raises(TailorError, match="alpha must be finite and >= 0"):
        soft_value_iteration(m, -1.0)
    with pytest.raises(TailorError, match="reference policy needs alpha > 0"):
        soft_value_iteration(m, 0.0, reference=np.array([[0.5, 0.5]]))
    with pytest.raises(TailorError, match=r"prior\[0, :\] sums to"):
        residual_soft_value_iteration(m, np.array([[0.5, 0.6]]), 1.0, 1.0)
    with pytest.raises(TailorError, match="full support"):
        residual_soft_value_iteration(m, np.array([[0.0, 1.0]]), -1.0, 1.0)


def test_mirror_descent_step_known_answer():
    # lam = tau = 1 from uniform over 2 actions: pi ∝ (1/2)^(1/2) exp(q/2); value = 2 log sum(...)
    q = np.array([[2.0, 0.0]])
    log_pi, value = mirror_descent_step(q, np.log(np.array([[0.5, 0.5]])), 1.0, 1.0)
    np.testing.assert_allclose(np.exp(log_pi[0]), [E / (E + 1), 1 / (E + 1)], atol=1e-15)
    assert value[0] == pytest.approx(2.0 * math.log(math.sqrt(0.5) * (E + 1)), abs=1e-14)


def test_mdvi_with_zero_lam_and_tau_is_approximate_vi():
    m = garnet(8, 3, 2, 0.9, seed=3)
    a = md_vi(m, 0.0, 0.0, 40, noise_std=0.5, seed=9)
    b = approximate_vi(m, 40, noise_std=0.5, seed=9)
    q = np.zeros_like(m.r)
    rng_noise = b.noise
    for k in range(40):
        q = m.r + m.gamma * m.P @ q.max(axis=1) + rng_noise[k]
    np.testing.assert_allclose(a.qs[-1], q, atol=1e-12)
    np.testing.assert_array_equal(a.errors, b.errors)


def test_mdvi_schemes_share_noise_draws_and_validate():
    m = garnet(5, 2, 2, 0.8, seed=0)
    for h in (
        md_vi(m, 1.0, 0.5, 5, 0.3, seed=4),
        da_vi(m, 1.0, 0.5, 5, 0.3, seed=4),
        munchausen_vi(m, 2 / 3, 1.5, 5, 0.3, seed=4),
    ):
        np.testing.assert_array_equal(h.noise, md_vi(m, 0.0, 0.0, 5, 0.3, seed=4).noise)
    with pytest.raises(TailorError, match="lam must be finite and >= 0"):
        md_vi(m, -1.0, 0.0, 5)
    with pytest.raises(TailorError, match="lam \\+ tau > 0"):
        da_vi(m, 0.0, 0.0, 5)


def test_exact_gradient_known_answer_bandit():
    # gamma = 0, pi = (3/4, 1/4), soft alpha = 1: f = r - log pi, g = pi (f - E_pi f)
    m = FiniteMDP(np.ones((1, 2, 1)), np.array([[1.0, 0.0]]), 0.0)
    theta = np.array([[math.log(3.0), 0.0]])
    g, J = exact_gradient(m, theta, resolve("soft", alpha=1.0), m.r)
    f = np.array([1.0 - math.log(0.75), -math.log(0.25)])
    fbar = 0.75 * f[0] + 0.25 * f[1]
    np.testing.assert_allclose(g[0], [0.75 * (f[0] - fbar), 0.25 * (f[1] - fbar)], atol=1e-15)
    assert J == pytest.approx(fbar)
    # End-Entropy at the same point: no entropy in the return, bonus alpha * grad H instead
    g_end, _ = exact_gradient(m, theta, resolve("end-entropy", alpha=1.0), m.r)
    logp = np.log([0.75, 0.25])
    h_dir = -np.array([0.75, 0.25]) * (logp - (0.75 * logp[0] + 0.25 * logp[1]))
    np.testing.assert_allclose(
        g_end[0], np.array([0.75, 0.25]) * (np.array([1.0, 0.0]) - 0.75) + h_dir, atol=1e-15
    )


def test_policy_gradient_requires_prior_for_customization():
    m = garnet(4, 2, 2, 0.9, seed=0)
    with pytest.raises(TailorError, match="customizes a prior policy"):
        policy_gradient(m, "residual", PGSettings(iterations=1), omega_prime=0.1, alpha_hat=0.1)
    with pytest.raises(TailorError, match="unknown variant"):
        policy_gradient(m, "sac", PGSettings(iterations=1))
    with pytest.raises(TailorError, match="pass addon_reward"):
        policy_gradient(m, "full", PGSettings(iterations=1), alpha=0.1)


def test_kl_pg_equals_residual_pg_with_equal_coefficients():
    m = garnet(5, 3, 2, 0.9, seed=2)
    _, prior = soft_value_iteration(m, 0.5)
    addon = m.with_reward(np.random.default_rng(1).uniform(-1, 1, m.r.shape))
    steps = PGSettings(iterations=200, lr=0.5)
    a = policy_gradient(addon, "kl", steps, beta=0.4, prior=prior)
    b = policy_gradient(addon, "residual", steps, omega_prime=0.4, alpha_hat=0.4, prior=prior)
    np.testing.assert_array_equal(a.logits, b.logits)


def test_full_pg_reaches_soft_vi_of_the_sum():
    m = garnet(4, 2, 2, 0.8, seed=4)
    r_addon = np.random.default_rng(2).uniform(-1, 1, m.r.shape)
    steps = PGSettings(iterations=50_000, lr=0.25, tol=1e-14)
    res = policy_gradient(m, "full", steps, alpha=0.7, addon_reward=r_addon)
    _, pi = soft_value_iteration(m.with_reward(m.r + r_addon), 0.7)
    np.testing.assert_allclose(res.pi, pi, atol=1e-8)


def test_sampled_pg_is_deterministic_given_seed():
    m = garnet(4, 2, 2, 0.8, seed=1)
    steps = PGSettings(iterations=5, estimator="sampled", episodes=16, seed=3)
    np.testing.assert_array_equal(
        policy_gradient(m, "soft", steps, alpha=0.5).logits,
        policy_gradient(m, "soft", steps, alpha=0.5).logits,
    )


# --- Every identity of `tailor verify`, on fresh Garnets of a fixed seed ----------------------


@pytest.mark.parametrize("check", CHECKS, ids=[c.fn.__name__ for c in CHECKS])
def test_identity(check):
    (result,) = run_checks(seed=2024, checks=(check,))
    assert result.passed, format_table([result])


def test_entropy_variants_differ_by_a_measurable_amount():
    """Report by how much End/Repeat-Entropy miss the soft-optimal policy on one Garnet."""
    m = garnet(5, 3, 2, 0.9, seed=4)
    _, pi_star = soft_value_iteration(m, 0.5)
    steps = PGSettings(iterations=100_000, lr=0.2, tol=1e-14)
    soft = policy_gradient(m, "soft", steps, alpha=0.5).pi
    end = policy_gradient(m, "end-entropy", steps, alpha=0.5).pi
    rep = policy_gradient(m, "repeat-entropy", steps, alpha=0.5).pi
    assert np.max(np.abs(soft - pi_star)) < 1e-9
    assert np.max(np.abs(end - pi_star)) > 0.01
    assert np.max(np.abs(rep - pi_star)) > 0.1
