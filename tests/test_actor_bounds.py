"""``tailor.nets.Actor`` with ``action_bounds``: the mean squashed into the bounds (an SB3
TD3/DDPG prior), kept through the policy file; without bounds nothing changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tailor.errors import TailorError
from tailor.nets import Actor, EmpiricalNormalization
from tailor.policyfile import load_policy, save_policy


def _hand_actor() -> Actor:
    """No hidden layer: ``raw = obs_0 - 2 obs_1 + 0.5``, bounds ``[-2, 4]``, so
    ``mean = -2 + (tanh(raw) + 1) / 2 * 6 = 1 + 3 tanh(raw)``."""
    actor = Actor(2, 1, [], action_bounds=([-2.0], [4.0]), init_std=0.3)
    with torch.no_grad():
        actor.mean.weight.copy_(torch.tensor([[1.0, -2.0]]))
        actor.mean.bias.fill_(0.5)
    return actor


def test_bounded_mean_by_hand() -> None:
    actor = _hand_actor()
    obs = torch.tensor([[0.25, 0.5], [0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    mean, log_std = actor(obs)
    # raw = -0.25, 0.5, 100.5, -199.5: 1 + 3 tanh(raw)
    want = torch.tensor([[0.26524401], [2.38635147], [4.0], [-2.0]])
    torch.testing.assert_close(mean, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(log_std, torch.log(torch.tensor([0.3])))
    assert actor.bounds() == ([-2.0], [4.0])
    assert {"out_low", "out_high"} <= set(actor.state_dict())


def test_without_bounds_nothing_changes() -> None:
    torch.manual_seed(0)
    plain = Actor(3, 2, [8])
    torch.manual_seed(0)
    bounded = Actor(3, 2, [8], action_bounds=([-1.0, -1.0], [1.0, 1.0]))
    assert plain.bounds() is None and not plain.bounded
    assert set(bounded.state_dict()) - set(plain.state_dict()) == {"out_low", "out_high"}
    obs = torch.randn(5, 3)
    raw, _ = plain(obs)
    squashed, _ = bounded(obs)  # same weights (same seed): only the squash differs
    # low + (tanh + 1) / 2 * 2 with low = -1: tanh, up to float rounding
    torch.testing.assert_close(squashed, torch.tanh(raw), atol=1e-7, rtol=0)
    assert torch.equal(plain.mean(plain.body(obs)), raw)


@pytest.mark.parametrize(
    "bounds",
    [([-1.0], [1.0]), ([0.0, 0.0], [0.0, 1.0]), ([float("-inf"), 0.0], [1.0, 1.0])],
)
def test_bad_bounds_are_refused(bounds) -> None:
    with pytest.raises(ValueError, match="action_bounds"):
        Actor(3, 2, [8], action_bounds=bounds)


def test_policy_file_keeps_the_bounds(tmp_path: Path) -> None:
    torch.manual_seed(1)
    actor = Actor(3, 2, [8, 8], "tanh", action_bounds=([-1.0, 0.0], [1.0, 5.0]), init_std=0.2)
    norm = EmpiricalNormalization(3)
    norm.update(torch.randn(64, 3) * 2.0 + 1.0)
    save_policy(tmp_path, actor, norm.eval(), {"task": None})
    loaded, loaded_norm, meta = load_policy(tmp_path)
    assert meta["architecture"]["action_bounds"] == {"low": [-1.0, 0.0], "high": [1.0, 5.0]}
    assert loaded.bounds() == ([-1.0, 0.0], [1.0, 5.0])
    obs = loaded_norm(torch.randn(16, 3) * 4.0)
    for got, want in zip(loaded(obs), actor(obs), strict=True):
        assert torch.equal(got, want)
    mean, _ = loaded(obs)
    assert bool((mean[:, 1] >= 0).all()) and bool((mean[:, 1] <= 5).all())
    # An actor without bounds writes no such field (old files and readers are unchanged).
    save_policy(tmp_path / "plain", Actor(3, 2, [8]), norm, {"task": None})
    assert "action_bounds" not in load_policy(tmp_path / "plain")[2]["architecture"]


def test_policy_file_with_bounds_but_no_buffers_is_refused(tmp_path: Path) -> None:
    """A header that declares bounds whose tensors are missing: not silently unbounded."""
    save_policy(tmp_path, Actor(3, 2, [8]), EmpiricalNormalization(3).eval(), {"task": None})
    from tailor.checkpoint import load_tensors, save_tensors

    file = tmp_path / "policy.safetensors"
    tensors, meta = load_tensors(file, "tailor-policy")
    meta["architecture"]["action_bounds"] = {"low": [-1.0, -1.0], "high": [1.0, 1.0]}
    file.unlink()
    save_tensors(file, tensors, meta)
    with pytest.raises(TailorError, match="do not match the architecture"):
        load_policy(tmp_path)
