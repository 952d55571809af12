"""PPO's clipped surrogate and value loss (tailor.losses), with hand-worked numbers.

Both PPO loops call these two functions: the MuJoCo PPO (``tailor.algos.ppo_learner``) and the
token-level PPO (``tailor.algos.lm_ppo``).
"""

from __future__ import annotations

import pytest
import torch

from tailor.errors import TailorError
from tailor.losses import clipped_surrogate_loss, value_loss


def test_clipped_surrogate_known_answers() -> None:
    # eps = 0.2. max(-A rho, -A clip(rho, 0.8, 1.2)):
    #   rho 1.5, A  2: max(-3.0, -2.4) = -2.4  (a good action: the gain is capped at 1.2 A)
    #   rho 0.5, A  2: max(-1.0, -1.6) = -1.0  (no cap below: pessimistic side)
    #   rho 1.5, A -1: max( 1.5,  1.2) =  1.5  (a bad action made likelier: full penalty)
    #   rho 0.5, A -1: max( 0.5,  0.8) =  0.8  (a bad action made rarer: the gain is capped)
    ratio = torch.tensor([1.5, 0.5, 1.5, 0.5])
    adv = torch.tensor([2.0, 2.0, -1.0, -1.0])
    out = clipped_surrogate_loss(ratio, adv, 0.2)
    torch.testing.assert_close(out, torch.tensor([-2.4, -1.0, 1.5, 0.8]))


def test_clipped_surrogate_gradient_vanishes_where_clipped() -> None:
    ratio = torch.tensor([1.5, 1.1], requires_grad=True)
    clipped_surrogate_loss(ratio, torch.tensor([2.0, 2.0]), 0.2).sum().backward()
    # Clipped (1.5 > 1.2): no gradient; inside the trust region: d(-A rho)/d rho = -A.
    torch.testing.assert_close(ratio.grad, torch.tensor([0.0, -2.0]))


def test_clipped_surrogate_keeps_shape_and_is_minus_ratio_times_advantage_at_one() -> None:
    adv = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    out = clipped_surrogate_loss(torch.ones(3, 5), adv, 0.2)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, -adv)


def test_value_loss_known_answers() -> None:
    v, ret = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 3.0])
    torch.testing.assert_close(value_loss(v, ret), torch.tensor([1.0, 0.0]))
    # Clipped at 0.5 around V_old = 1: V = 3 counts as 1.5, (1.5 - 3)^2 = 2.25 > (3 - 3)^2 = 0,
    # so the larger clipped error is kept; V = 1 is inside the clip: (1 - 2)^2 = 1.
    old = torch.tensor([1.0, 1.0])
    torch.testing.assert_close(value_loss(v, ret, old, 0.5), torch.tensor([1.0, 2.25]))


def test_clipped_value_loss_needs_the_clip() -> None:
    with pytest.raises(TailorError, match="needs clip"):
        value_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2))
