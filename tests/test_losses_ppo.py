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


# --- group-relative advantages (token-level GRPO / RLOO) and the k3 KL --------------------------


def test_grpo_advantages_known_answers() -> None:
    from tailor.losses import grpo_advantages

    # Group [0, 3, 6]: mean 3, unbiased std sqrt((9 + 0 + 9) / 2) = 3 -> [-1, 0, 1].
    # Group [1, 3] (k = 2 below): mean 2, std sqrt(2) -> -+1/sqrt(2).
    out = grpo_advantages(torch.tensor([0.0, 3.0, 6.0, 2.0, 2.0, 2.0]), 3, eps=0.0)
    torch.testing.assert_close(out[:3], torch.tensor([-1.0, 0.0, 1.0]))
    out = grpo_advantages(torch.tensor([1.0, 3.0, 5.0, 5.0]), 2)
    half = 1.0 / (2.0**0.5 + 1e-4)
    torch.testing.assert_close(out, torch.tensor([-half, half, 0.0, 0.0]))  # equal: 0, not NaN


def test_rloo_advantages_known_answers() -> None:
    from tailor.losses import rloo_advantages

    # [0, 3, 6]: 0 - (3 + 6)/2 = -4.5, 3 - (0 + 6)/2 = 0, 6 - (0 + 3)/2 = 4.5; no std.
    # [1, 3]: 1 - 3 = -2, 3 - 1 = 2.
    out = rloo_advantages(torch.tensor([0.0, 3.0, 6.0]), 3)
    torch.testing.assert_close(out, torch.tensor([-4.5, 0.0, 4.5]))
    torch.testing.assert_close(
        rloo_advantages(torch.tensor([1.0, 3.0, 10.0, 4.0]), 2), torch.tensor([-2.0, 2.0, 6, -6])
    )


def test_group_advantages_refuse_bad_groups() -> None:
    from tailor.losses import grpo_advantages, rloo_advantages

    with pytest.raises(TailorError, match="groups of 2"):
        grpo_advantages(torch.zeros(3), 2)
    with pytest.raises(TailorError, match=">= 2"):
        rloo_advantages(torch.zeros(4), 1)
    with pytest.raises(TailorError, match=r"shape \[B\]"):
        rloo_advantages(torch.zeros(2, 2), 2)


def test_k3_kl_known_answers() -> None:
    import math

    from tailor.losses import k3_kl

    # pi = 0.5, prior = 0.25: d = log 0.5, k3 = 0.5 - log 0.5 - 1 = log 2 - 0.5 = 0.19315
    logp = torch.tensor([math.log(0.5), math.log(0.3)], requires_grad=True)
    out = k3_kl(logp, torch.tensor([math.log(0.25), math.log(0.3)]))
    torch.testing.assert_close(out, torch.tensor([math.log(2.0) - 0.5, 0.0]))
    # d k3 / d log pi = 1 - exp(d) = 1 - 0.5; zero where the two agree.
    out.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([0.5, 0.0]))
