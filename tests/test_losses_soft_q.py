"""Residual Q-Learning targets: known answers worked by hand (rlax style), numpy == torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tailor.errors import TailorError
from tailor.losses import (
    SacNext,
    prior_log_probs,
    residual_logits,
    sac_actor_loss,
    sac_critic_target,
    soft_policy,
    soft_q_target,
    soft_value,
)
from tailor.methods import resolve

LN3, LN4 = math.log(3.0), math.log(4.0)
HALF = [math.log(0.5), math.log(0.5)]


def both(x):
    """The same numbers as numpy float64 and torch float64."""
    return np.asarray(x, np.float64), torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("kind", [0, 1])
def test_soft_value_known_answers(kind):
    q = both([0.0, LN3])[kind]
    # logsumexp(0, ln 3) = ln(1 + 3)
    assert float(soft_value(q, None, 0.0, 1.0)) == pytest.approx(LN4, abs=1e-12)
    # uniform prior, omega' = 1: ln(0.5 + 0.5 * 3) = ln 2
    lp = both(HALF)[kind]
    assert float(soft_value(q, lp, 1.0, 1.0)) == pytest.approx(math.log(2.0), abs=1e-12)
    # temperature 2 on q = [0, 2 ln 3]: 2 ln(1 + 3)
    q2 = both([0.0, 2 * LN3])[kind]
    assert float(soft_value(q2, None, 0.0, 2.0)) == pytest.approx(2 * LN4, abs=1e-12)
    # alpha_hat = 0 is the hard max of Q + omega' log pi: max(0 + ln .5, ln 3 + ln .5)
    assert float(soft_value(q, lp, 1.0, 0.0)) == pytest.approx(LN3 + math.log(0.5), abs=1e-12)


def test_soft_value_tends_to_max_as_temperature_vanishes():
    q = np.array([0.3, 1.2, -0.4])
    assert float(soft_value(q, None, 0.0, 1e-4)) == pytest.approx(1.2, abs=1e-3)


@pytest.mark.parametrize("kind", [0, 1])
def test_soft_q_target_known_answer(kind):
    r, done = both([1.0, 2.0])[kind], both([0.0, 1.0])[kind]
    q_next = both([[0.0, LN3], [5.0, 5.0]])[kind]
    y = soft_q_target(r, done, 0.5, q_next, None, 0.0, 1.0)
    # 1 + 0.5 * ln 4 ; terminal: 2 only
    np.testing.assert_allclose(np.asarray(y), [1.0 + 0.5 * LN4, 2.0], atol=1e-12)


def test_residual_target_with_prior_known_answer():
    # Q_R' = [0, 0], pi = [1/4, 3/4], omega' = 2, alpha_hat = 1:
    # V = ln(0.25^2 + 0.75^2) = ln(0.625); y = 0.5 + 0.9 * ln 0.625
    lp = np.log([0.25, 0.75])[None]
    y = soft_q_target(np.array([0.5]), np.array([0.0]), 0.9, np.zeros((1, 2)), lp, 2.0, 1.0)
    assert float(y[0]) == pytest.approx(0.5 + 0.9 * math.log(0.625), abs=1e-12)


def test_soft_policy_known_answers():
    q = np.array([0.0, LN3])
    np.testing.assert_allclose(soft_policy(q, None, 0.0, 1.0), [0.25, 0.75], atol=1e-12)
    # a uniform prior changes nothing; omega' = alpha_hat with Q_R = 0 returns the prior itself
    np.testing.assert_allclose(soft_policy(q, np.array(HALF), 1.0, 1.0), [0.25, 0.75])
    prior = np.log([0.2, 0.8])
    np.testing.assert_allclose(soft_policy(np.zeros(2), prior, 0.3, 0.3), [0.2, 0.8])
    # greedy with a tie: split evenly
    np.testing.assert_allclose(
        soft_policy(np.array([1.0, 1.0, 0.0]), None, 0.0, 0.0), [0.5, 0.5, 0.0]
    )
    t = soft_policy(torch.tensor([[0.0, LN3]], dtype=torch.float64), None, 0.0, 1.0)
    np.testing.assert_allclose(t.numpy(), [[0.25, 0.75]], atol=1e-12)


def test_prior_log_probs_known_answer():
    np.testing.assert_allclose(prior_log_probs(np.array([0.0, LN3]), 1.0), np.log([0.25, 0.75]))
    # alpha = 0.5 doubles the logits: softmax(0, 2 ln 3) = [1/10, 9/10]
    t = prior_log_probs(torch.tensor([0.0, LN3], dtype=torch.float64), 0.5)
    np.testing.assert_allclose(t.numpy(), np.log([0.1, 0.9]), atol=1e-12)
    with pytest.raises(TailorError, match="> 0"):
        prior_log_probs(np.zeros(2), 0.0)


def test_omega_zero_ignores_an_impossible_action():
    # 0 * log 0 would be NaN; omega' = 0 never touches log pi
    lp = np.array([0.0, -np.inf])
    assert np.isfinite(soft_value(np.array([1.0, 2.0]), lp, 0.0, 1.0))
    # with omega' > 0 the impossible action gets probability 0
    np.testing.assert_allclose(soft_policy(np.array([1.0, 2.0]), lp, 1.0, 1.0), [1.0, 0.0])


@pytest.mark.parametrize("kind", [0, 1])
def test_sac_critic_target_known_answer(kind):
    r, done = both([1.0, 1.0])[kind], both([0.0, 1.0])[kind]
    q1, q2 = both([2.0, 2.0])[kind], both([3.0, 3.0])[kind]
    logp, lp = both([-1.0, -1.0])[kind], both([-2.0, -2.0])[kind]
    y = sac_critic_target(r, done, 0.5, SacNext(q1, q2, logp, lp), omega_prime=0.5, alpha_hat=0.1)
    # 1 + 0.5 * (min(2, 3) + 0.5 * (-2) - 0.1 * (-1)) = 1 + 0.5 * 1.1 ; terminal: 1
    np.testing.assert_allclose(np.asarray(y), [1.55, 1.0], atol=1e-12)
    plain = sac_critic_target(r, done, 0.5, SacNext(q1, q2, logp), 0.0, 0.1)
    np.testing.assert_allclose(np.asarray(plain), [1.0 + 0.5 * 2.1, 1.0], atol=1e-12)


def test_sac_actor_loss_known_answer_and_gradient():
    logp = torch.tensor([-1.0, 0.0], dtype=torch.float64, requires_grad=True)
    q1 = torch.tensor([2.0, 1.0], dtype=torch.float64, requires_grad=True)
    q2 = torch.tensor([3.0, 0.0], dtype=torch.float64)
    lp = torch.tensor([-2.0, -1.0], dtype=torch.float64)
    loss = sac_actor_loss(logp, q1, q2, lp, omega_prime=0.5, alpha_hat=0.1)
    # (0.1*-1 - 2 - 0.5*-2) = -1.1 and (0 - 0 - 0.5*-1) = 0.5 -> mean -0.3
    assert float(loss.detach()) == pytest.approx(-0.3, abs=1e-12)
    loss.backward()
    np.testing.assert_allclose(logp.grad.numpy(), [0.05, 0.05])
    # the min picks q1 for sample 0 and q2 for sample 1
    np.testing.assert_allclose(q1.grad.numpy(), [-0.5, 0.0])
    np.testing.assert_allclose(
        sac_actor_loss(
            np.array([-1.0, 0.0]),
            np.array([2.0, 1.0]),
            np.array([3.0, 0.0]),
            np.array([-2.0, -1.0]),
            0.5,
            0.1,
        ),
        -0.3,
    )


def test_coefficients_come_from_methods():
    m = resolve("residual", omega_prime=0.2, alpha_hat=0.1)
    q, lp = np.array([0.0, 1.0]), np.log([0.5, 0.5])
    a = soft_value(q, lp, m.spec.omega_prime, m.spec.alpha_hat)
    assert float(a) == pytest.approx(0.1 * math.log(np.exp(q / 0.1 + 2 * lp).sum()), abs=1e-12)
    soft = resolve("soft", alpha=0.1)
    assert soft.spec.omega_prime == 0.0  # prior training = the same target with omega' = 0


def test_bad_inputs_raise():
    with pytest.raises(TailorError, match="temperature"):
        soft_value(np.zeros(2), None, 0.0, -1.0)
    with pytest.raises(TailorError, match="finite"):
        soft_value(np.zeros(2), None, float("nan"), 1.0)
    with pytest.raises(TailorError, match="log-probabilities"):
        residual_logits(np.zeros(2), None, 0.5)
    with pytest.raises(TailorError, match="shape"):
        residual_logits(np.zeros(2), np.zeros(3), 0.5)
    with pytest.raises(TailorError, match="shape"):
        soft_q_target(np.zeros(2), np.zeros(3), 0.9, np.zeros((2, 2)))
