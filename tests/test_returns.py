"""GAE known answers, worked by hand (gamma = 0.9, lambda = 0.5, so gamma * lambda = 0.45).

Rollout of T = 3 steps, one env:
    rewards      r = [1, 2, 3]
    values       V = [0.5, 1.0, 1.5]
    next values V' = [1.0, 1.5, 2.0]     (V of the true next state of each step)

No episode end:   delta = r + 0.9 V' - V = [1.4, 2.35, 3.3]
                  A2 = 3.3, A1 = 2.35 + 0.45 * 3.3 = 3.835, A0 = 1.4 + 0.45 * 3.835 = 3.12575
"""

from __future__ import annotations

import pytest
import torch

from tailor.returns import gae

GAMMA, LAM = 0.9, 0.5


def col(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)[:, None]  # [T, N=1]


REWARDS = col(1.0, 2.0, 3.0)
VALUES = col(0.5, 1.0, 1.5)
FALSE = torch.zeros(3, 1, dtype=torch.bool)


def test_no_episode_end() -> None:
    adv, ret = gae(REWARDS, VALUES, col(1.0, 1.5, 2.0), FALSE, FALSE, GAMMA, LAM)
    torch.testing.assert_close(adv, col(3.12575, 3.835, 3.3), rtol=0, atol=1e-12)
    torch.testing.assert_close(ret, col(3.62575, 4.835, 4.8), rtol=0, atol=1e-12)


def test_truncation_bootstraps_from_final_obs_value() -> None:
    # The episode hits its time limit at t = 1; V(final_obs) = 4.0 is bootstrapped:
    # delta1 = 2 + 0.9 * 4.0 - 1.0 = 4.6, and the trace is cut: A1 = 4.6 (not 4.6 + 0.45 * A2).
    # A0 = 1.4 + 0.45 * 4.6 = 3.47. Step 2 belongs to the next episode: A2 = 3.3.
    dones = col(0, 1, 0).bool()
    adv, _ = gae(REWARDS, VALUES, col(1.0, 4.0, 2.0), FALSE, dones, GAMMA, LAM)
    torch.testing.assert_close(adv, col(3.47, 4.6, 3.3), rtol=0, atol=1e-12)


def test_termination_does_not_bootstrap() -> None:
    # Terminal at t = 1: delta1 = 2 - 1.0 = 1.0 whatever next_values says (here 4.0);
    # A1 = 1.0, A0 = 1.4 + 0.45 * 1.0 = 1.85.
    ends = col(0, 1, 0).bool()
    adv, ret = gae(REWARDS, VALUES, col(1.0, 4.0, 2.0), ends, ends, GAMMA, LAM)
    torch.testing.assert_close(adv, col(1.85, 1.0, 3.3), rtol=0, atol=1e-12)
    torch.testing.assert_close(ret, col(2.35, 2.0, 4.8), rtol=0, atol=1e-12)


def test_truncation_and_termination_differ_only_by_the_bootstrap() -> None:
    ends = col(0, 1, 0).bool()
    trunc, _ = gae(REWARDS, VALUES, col(1.0, 4.0, 2.0), FALSE, ends, GAMMA, LAM)
    term, _ = gae(REWARDS, VALUES, col(1.0, 4.0, 2.0), ends, ends, GAMMA, LAM)
    # delta1 differs by gamma * V(final_obs) = 3.6; A0 by gamma * lambda * 3.6 = 1.62.
    torch.testing.assert_close(trunc - term, col(1.62, 3.6, 0.0), rtol=0, atol=1e-12)


def test_lambda_one_gives_monte_carlo_returns() -> None:
    # gamma = lambda = 1, last step bootstrapped from V' = 2: R = [1+2+3+2, 2+3+2, 3+2].
    _, ret = gae(REWARDS, VALUES, col(1.0, 1.5, 2.0), FALSE, FALSE, 1.0, 1.0)
    torch.testing.assert_close(ret, col(8.0, 7.0, 5.0), rtol=0, atol=1e-12)


def test_lambda_zero_gives_td_errors() -> None:
    adv, _ = gae(REWARDS, VALUES, col(1.0, 1.5, 2.0), FALSE, FALSE, GAMMA, 0.0)
    torch.testing.assert_close(adv, col(1.4, 2.35, 3.3), rtol=0, atol=1e-12)


def test_envs_are_independent() -> None:
    # Two envs side by side give the same columns as each alone.
    ends = col(0, 1, 0).bool()
    r2 = torch.cat([REWARDS, REWARDS], 1)
    v2 = torch.cat([VALUES, VALUES], 1)
    nv2 = torch.cat([col(1.0, 1.5, 2.0), col(1.0, 4.0, 2.0)], 1)
    d2 = torch.cat([FALSE, ends], 1)
    adv, _ = gae(r2, v2, nv2, torch.zeros_like(d2), d2, GAMMA, LAM)
    torch.testing.assert_close(adv[:, :1], col(3.12575, 3.835, 3.3), rtol=0, atol=1e-12)
    torch.testing.assert_close(adv[:, 1:], col(3.47, 4.6, 3.3), rtol=0, atol=1e-12)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="equal"):
        gae(REWARDS, VALUES[:2], col(1.0, 1.5, 2.0), FALSE, FALSE, GAMMA, LAM)
