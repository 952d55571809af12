"""The DPO family as pure losses: known answers, gradient directions, identities, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from tailor.errors import TailorError
from tailor.losses import ce_dpo_loss, decoupled_dpo_loss, dpo_loss

LOG2 = 0.6931471805599453
SOFTPLUS_M05 = 0.4740769841801067  # log(1 + e^-0.5) = -log sigmoid(0.5)
SOFTPLUS_M2 = 0.1269280110429725  # log(1 + e^-2) = -log sigmoid(2)
SOFTPLUS_2 = 2.1269280110429727  # log(1 + e^2) = -log sigmoid(-2)


def t(*values: float, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


# --- known answers ---------------------------------------------------------------------------


def test_dpo_zero_margin_is_log2() -> None:
    z = torch.zeros(4, dtype=torch.float64)
    out = dpo_loss(z, z, z, z, beta=0.1)
    assert out.shape == (4,)
    torch.testing.assert_close(out, torch.full((4,), LOG2, dtype=torch.float64))
    # Equal policy and prior log-ratios also give margin 0, whatever the values.
    out = dpo_loss(t(-3.0), t(-7.0), t(-3.0), t(-7.0), beta=5.0)
    torch.testing.assert_close(out, t(LOG2))


def test_dpo_hand_worked_value() -> None:
    # beta * ((-1 - -1.5) - (-2 - -1.5)) = 0.5 * (0.5 + 0.5) = 0.5
    out = dpo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.5)
    torch.testing.assert_close(out, t(SOFTPLUS_M05))


def test_ce_dpo_hand_worked_values() -> None:
    # m = 2 * (-1 - -2) = 2; label 1: -log sigmoid(2); label 0: -log sigmoid(-2)
    out = ce_dpo_loss(t(-1.0, -1.0), t(-2.0, -2.0), t(1.0, 0.0), beta=2.0)
    torch.testing.assert_close(out, t(SOFTPLUS_M2, SOFTPLUS_2))
    # At logp == ref the loss is log 2 for both labels.
    out = ce_dpo_loss(t(-4.0, -4.0), t(-4.0, -4.0), t(1.0, 0.0), beta=0.3)
    torch.testing.assert_close(out, t(LOG2, LOG2))


def test_decoupled_dpo_hand_worked_value() -> None:
    # alpha_hat * (-1 - -3) - omega' * (-2 - -2.5) = 0.5 * 2 - 1 * 0.5 = 0.5
    out = decoupled_dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.5), omega_prime=1.0, alpha_hat=0.5)
    torch.testing.assert_close(out, t(SOFTPLUS_M05))
    # omega' = 0 ignores the prior: margin = 0.25 * 2 = 0.5 whatever the prior says.
    out = decoupled_dpo_loss(t(-1.0), t(-3.0), t(-9.0), t(-0.1), omega_prime=0.0, alpha_hat=0.25)
    torch.testing.assert_close(out, t(SOFTPLUS_M05))


def test_per_example_independence() -> None:
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(4)]
    batch = decoupled_dpo_loss(*x, omega_prime=0.3, alpha_hat=0.7)
    for i in range(5):
        one = decoupled_dpo_loss(*(v[i : i + 1] for v in x), omega_prime=0.3, alpha_hat=0.7)
        assert float(one) == float(batch[i])


# --- identities ------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0, 3.7])
def test_decoupled_with_equal_coefficients_is_dpo_exactly(beta: float) -> None:
    g = torch.Generator().manual_seed(1)
    x = [30 * torch.randn(64, generator=g, dtype=torch.float64) for _ in range(4)]
    assert torch.equal(decoupled_dpo_loss(*x, beta, beta), dpo_loss(*x, beta))


def test_dpo_depends_only_on_log_ratios() -> None:
    # Adding the same constant to the policy and prior log-prob of a response changes nothing.
    a = dpo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.5)
    b = dpo_loss(t(-11.0), t(-2.0), t(-11.5), t(-1.5), beta=0.5)
    torch.testing.assert_close(a, b)


def test_swapping_winner_and_loser_flips_the_margin() -> None:
    # -log sigmoid(m) - -log sigmoid(-m) = -m
    lw, ll, pw, pl = t(-1.0), t(-3.0), t(-2.0), t(-2.5)
    fwd = decoupled_dpo_loss(lw, ll, pw, pl, omega_prime=1.0, alpha_hat=0.5)
    bwd = decoupled_dpo_loss(ll, lw, pl, pw, omega_prime=1.0, alpha_hat=0.5)
    torch.testing.assert_close(fwd - bwd, t(-0.5))


# --- gradients -------------------------------------------------------------------------------


def test_dpo_gradient_directions_and_value() -> None:
    lw, ll = t(-1.0, requires_grad=True), t(-2.0, requires_grad=True)
    dpo_loss(lw, ll, t(-1.5), t(-1.5), beta=0.5).sum().backward()
    # d loss / d logp_w = -beta * sigmoid(-m) = -0.5 * sigmoid(-0.5)
    torch.testing.assert_close(lw.grad, t(-0.5 * 0.3775406687981454))
    torch.testing.assert_close(ll.grad, -lw.grad)
    assert lw.grad.item() < 0 < ll.grad.item()  # minimising raises the winner, lowers the loser


def test_ce_dpo_gradient_directions() -> None:
    logp = t(-1.0, -1.0, requires_grad=True)
    ce_dpo_loss(logp, t(-1.0, -1.0), t(1.0, 0.0), beta=2.0).sum().backward()
    # At m = 0: label 1 -> -beta/2, label 0 -> +beta/2
    torch.testing.assert_close(logp.grad, t(-1.0, 1.0))


def test_decoupled_gradient_on_policy_only() -> None:
    lw, ll = t(-1.0, requires_grad=True), t(-3.0, requires_grad=True)
    pw, pl = t(-2.0, requires_grad=True), t(-2.5, requires_grad=True)
    decoupled_dpo_loss(lw, ll, pw, pl, omega_prime=1.0, alpha_hat=0.5).sum().backward()
    torch.testing.assert_close(lw.grad, t(-0.5 * 0.3775406687981454))
    torch.testing.assert_close(pw.grad, t(1.0 * 0.3775406687981454))


def test_numerically_stable_for_huge_margins() -> None:
    lw = t(0.0, 0.0, requires_grad=True)
    out = dpo_loss(lw, t(-2000.0, 2000.0), t(0.0, 0.0), t(0.0, 0.0), beta=1.0)
    assert torch.isfinite(out).all()
    assert out[0].item() == 0.0  # margin +2000
    assert out[1].item() == 2000.0  # margin -2000: softplus(2000) = 2000 in float64
    out.sum().backward()
    assert torch.isfinite(lw.grad).all()
    assert lw.grad[1].item() == -1.0


def test_float32_inputs_keep_their_dtype() -> None:
    z = torch.zeros(3)
    assert dpo_loss(z, z, z, z, 1.0).dtype == torch.float32
    assert ce_dpo_loss(z, z, torch.tensor([True, False, True]), 1.0).dtype == torch.float32


def test_bool_and_float_labels_agree() -> None:
    logp, ref = t(-1.0, -2.0, -3.0), t(-1.5, -1.5, -1.5)
    a = ce_dpo_loss(logp, ref, torch.tensor([True, False, True]), beta=0.7)
    b = ce_dpo_loss(logp, ref, t(1.0, 0.0, 1.0), beta=0.7)
    c = ce_dpo_loss(logp, ref, torch.tensor([1, 0, 1]), beta=0.7)
    assert torch.equal(a, b) and torch.equal(a, c)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, math.inf, True, "0.1", None])
def test_bad_beta(beta: object) -> None:
    z = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(TailorError, match="beta"):
        dpo_loss(z, z, z, z, beta)  # type: ignore[arg-type]
    with pytest.raises(TailorError, match="beta"):
        ce_dpo_loss(z, z, z, beta)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("omega_prime", "alpha_hat", "which"),
    [
        (1.0, 0.0, "alpha_hat"),
        (1.0, -0.5, "alpha_hat"),
        (1.0, math.inf, "alpha_hat"),
        (math.nan, 1.0, "omega_prime"),
        (math.inf, 1.0, "omega_prime"),
    ],
)
def test_bad_decoupled_coefficients(omega_prime: float, alpha_hat: float, which: str) -> None:
    z = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(TailorError, match=which):
        decoupled_dpo_loss(z, z, z, z, omega_prime, alpha_hat)


def test_negative_and_zero_omega_prime_are_allowed() -> None:
    z = torch.zeros(2, dtype=torch.float64)
    assert decoupled_dpo_loss(z, z, z, z, -0.5, 1.0).shape == (2,)
    assert decoupled_dpo_loss(z, z, z, z, 0.0, 1.0).shape == (2,)


def test_shape_mismatch_and_non_vectors() -> None:
    z2, z3 = torch.zeros(2), torch.zeros(3)
    with pytest.raises(TailorError, match=r"ref_l has shape \(3,\) but logp_w has shape \(2,\)"):
        dpo_loss(z2, z2, z2, z3, 0.1)
    with pytest.raises(TailorError, match=r"shape \[B\]"):
        decoupled_dpo_loss(torch.zeros(2, 1), *[torch.zeros(2, 1)] * 3, 0.1, 0.1)
    with pytest.raises(TailorError, match="label has shape"):
        ce_dpo_loss(z2, z2, torch.ones(3), 0.1)
    with pytest.raises(TailorError, match="torch tensor"):
        dpo_loss([0.0, 0.0], z2, z2, z2, 0.1)  # type: ignore[arg-type]
    with pytest.raises(TailorError, match="floating-point"):
        dpo_loss(torch.zeros(2, dtype=torch.long), z2, z2, z2, 0.1)


@pytest.mark.parametrize("label", [[0.5, 1.0], [2.0, 0.0], [-1.0, 1.0]])
def test_labels_outside_zero_one_are_rejected(label: list[float]) -> None:
    z = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(TailorError, match="label must contain only 0 and 1"):
        ce_dpo_loss(z, z, torch.tensor(label, dtype=torch.float64), 1.0)
