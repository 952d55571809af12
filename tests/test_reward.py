"""Known-answer tests for the one reward function."""

import math

import numpy as np
import pytest
import torch

from tailor import RewardSpec, TailorError, reformulate


def test_known_answer_numpy():
    r = np.array([1.0, -2.0, 0.5])
    lp_prior = np.array([-0.5, -1.0, -2.0])
    lp_pi = np.array([-1.0, -0.25, -3.0])
    out = reformulate(r, lp_prior, lp_pi, RewardSpec(omega_prime=0.2, alpha_hat=0.1))
    # 1 + 0.2*(-0.5) - 0.1*(-1) = 1.0 ; -2 - 0.2 + 0.025 = -2.175 ; 0.5 - 0.4 + 0.3 = 0.4
    np.testing.assert_allclose(out, [1.0, -2.175, 0.4], rtol=0, atol=1e-15)


def test_known_answer_torch_keeps_type_and_shape():
    r = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    lp = torch.full((2, 2), -2.0)
    out = reformulate(r, lp, lp, RewardSpec(omega_prime=1.0, alpha_hat=0.5))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2)
    # r - 2 + 1 = r - 1
    torch.testing.assert_close(out, r - 1.0)


def test_float_inputs():
    assert reformulate(1.0, -1.0, -2.0, RewardSpec(0.5, 0.25)) == pytest.approx(1.0)


def test_prior_may_be_none_only_without_omega():
    r = np.zeros(3)
    lp = np.log(np.full(3, 0.5))
    out = reformulate(r, None, lp, RewardSpec(0.0, 1.0))
    np.testing.assert_allclose(out, -lp)
    with pytest.raises(TailorError, match="logp_prior is None"):
        reformulate(r, None, lp, RewardSpec(0.1, 1.0))


def test_zero_alpha_returns_copy_not_alias():
    r = np.array([1.0, 2.0])
    out = reformulate(r, None, np.array([-1.0, -1.0]), RewardSpec(0.0, 0.0))
    out[0] = 99.0
    assert r[0] == 1.0


def test_shape_mismatch_is_refused():
    with pytest.raises(TailorError, match="shape"):
        reformulate(np.zeros((4, 2)), None, np.zeros(4), RewardSpec(0.0, 1.0))
    with pytest.raises(TailorError, match="logp_prior has shape"):
        reformulate(np.zeros(4), np.zeros(3), np.zeros(4), RewardSpec(1.0, 1.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"omega_prime": 0.0, "alpha_hat": -0.1}, "must be >= 0"),
        ({"omega_prime": math.nan, "alpha_hat": 0.1}, "finite"),
        ({"omega_prime": 0.0, "alpha_hat": math.inf}, "finite"),
        ({"omega_prime": "1", "alpha_hat": 0.1}, "real number"),
        ({"omega_prime": True, "alpha_hat": 0.1}, "real number"),
    ],
)
def test_bad_coefficients(kwargs, message):
    with pytest.raises(TailorError, match=message):
        RewardSpec(**kwargs)


def test_spec_is_a_value_error_for_library_users():
    with pytest.raises(ValueError):
        RewardSpec(0.0, -1.0)
