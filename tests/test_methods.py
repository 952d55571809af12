"""Every named method resolves to the spec, bonus and reward of reference section 2."""

import math

import numpy as np
import pytest

from tailor import TailorError, reformulate
from tailor.methods import CUSTOMIZATION_METHODS, METHODS, TRAINING_METHODS, resolve

# name, coefficients, (omega', alpha_hat), entropy bonus, reward, customization
TABLE = [
    ("no-entropy", {}, (0.0, 0.0), 0.0, "basic", False),
    ("end-entropy", {"alpha": 0.01}, (0.0, 0.0), 0.01, "basic", False),
    ("repeat-entropy", {"alpha": 0.13472}, (0.0, 0.13472), 0.13472, "basic", False),
    ("soft", {"alpha": 0.13472}, (0.0, 0.13472), 0.0, "basic", False),
    ("full", {"alpha": 0.001}, (0.0, 0.001), 0.0, "both", False),
    ("greedy", {"alpha_hat": 0.2}, (0.0, 0.2), 0.0, "addon", True),
    ("kl", {"beta": 0.0001}, (0.0001, 0.0001), 0.0, "addon", True),
    ("residual", {"omega_prime": 0.17, "alpha_hat": 0.13472}, (0.17, 0.13472), 0.0, "addon", True),
]


@pytest.mark.parametrize(("name", "coefs", "spec", "bonus", "reward", "custom"), TABLE)
def test_each_method_spec(name, coefs, spec, bonus, reward, custom):
    m = resolve(name, **coefs)
    assert (m.spec.omega_prime, m.spec.alpha_hat) == spec
    assert m.entropy_bonus == bonus
    assert m.reward == reward
    assert m.customization is custom
    assert m.needs_prior_logp is (spec[0] != 0.0)


def test_table_covers_every_method():
    assert {row[0] for row in TABLE} == set(METHODS)
    assert set(TRAINING_METHODS) | set(CUSTOMIZATION_METHODS) == set(METHODS)
    assert set(CUSTOMIZATION_METHODS) == {"greedy", "kl", "residual"}


def test_rewards_on_a_hand_made_rollout():
    """Three steps: basic r, add-on r_R, log pi_prior and behaviour log pi_theta."""
    basic = np.array([1.0, 2.0, 3.0])
    addon = np.array([-0.5, 0.0, 0.5])
    lp_prior = np.array([-1.0, -2.0, -0.5])
    lp_pi = np.array([-0.5, -1.5, -1.0])

    def reward(name, **c):
        m = resolve(name, **c)
        return reformulate(m.env_reward(basic, addon), lp_prior, lp_pi, m.spec)

    np.testing.assert_allclose(reward("no-entropy"), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(reward("end-entropy", alpha=0.1), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(reward("soft", alpha=0.1), [1.05, 2.15, 3.1])
    np.testing.assert_allclose(reward("repeat-entropy", alpha=0.1), [1.05, 2.15, 3.1])
    np.testing.assert_allclose(reward("full", alpha=0.1), [0.55, 2.15, 3.6])
    np.testing.assert_allclose(reward("greedy", alpha_hat=0.2), [-0.4, 0.3, 0.7])
    # r_R + 0.5 (lp_prior - lp_pi): -0.5 - 0.25, 0 - 0.25, 0.5 + 0.25
    np.testing.assert_allclose(reward("kl", beta=0.5), [-0.75, -0.25, 0.75])
    # r_R + 0.2 lp_prior - 0.1 lp_pi
    np.testing.assert_allclose(
        reward("residual", omega_prime=0.2, alpha_hat=0.1), [-0.65, -0.25, 0.5]
    )


def test_kl_accepts_equal_aliases_and_equals_residual():
    a = resolve("kl", beta=0.3)
    b = resolve("kl", omega_prime=0.3, alpha_hat=0.3)
    c = resolve("residual", omega_prime=0.3, alpha_hat=0.3)
    assert a.spec == b.spec == c.spec


@pytest.mark.parametrize(
    ("name", "coefs", "message"),
    [
        ("kl", {"omega_prime": 0.1, "alpha_hat": 0.2}, "use the 'residual' method"),
        ("kl", {"beta": 0.1, "alpha_hat": 0.2}, "one coefficient"),
        ("kl", {}, "needs its coefficient beta"),
        ("soft", {}, "soft needs alpha"),
        ("residual", {"omega_prime": 0.1}, "needs alpha_hat"),
        ("no-entropy", {"alpha": 0.1}, "does not take alpha"),
        ("soft", {"alpha": -0.1}, "must be >= 0"),
        ("greedy", {"alpha_hat": math.nan}, "finite"),
        ("residual", {"omega_prime": math.inf, "alpha_hat": 0.1}, "finite"),
        ("kl", {"beta": -1.0}, "must be >= 0"),
        ("ppo", {}, "unknown method 'ppo'; known methods: no-entropy"),
    ],
)
def test_bad_coefficients_raise_named_errors(name, coefs, message):
    with pytest.raises(TailorError, match=message):
        resolve(name, **coefs)
