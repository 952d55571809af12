"""SAC's fast path (issue 16): the twin critic, the optimizer, vectorized envs, HER per env."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tailor.algos import sac
from tailor.algos.sac import SACConfig, TwinCritic, _Adam, train_sac
from tailor.envs import get_task
from tailor.methods import resolve
from tailor.nets import mlp
from tailor.rundir import InterruptRequest

FAST = {"learning_starts": 4, "batch_size": 8, "hidden": (8, 8), "log_interval": 0}


def _short(max_steps: int, relabel=None):
    """mountaincar-noleft with ``max_steps``-step episodes (and a goal relabelling, for HER)."""
    task = get_task("mountaincar-noleft")
    env_kwargs = {**task.env_kwargs, "max_episode_steps": max_steps}
    return dataclasses.replace(task, env_kwargs=env_kwargs, relabel_goal=relabel)


def test_twin_critic_is_two_mlp_critics():
    torch.manual_seed(0)
    scale, bias = torch.tensor([2.0, 0.5, 4.0]), torch.tensor([0.1, -0.3, 1.0])
    twin = TwinCritic(3, 2, (16, 8), scale, bias)
    nets = [mlp([5, 16, 8, 1]) for _ in range(2)]
    with torch.no_grad():
        for k, net in enumerate(nets):
            linears = [m for m in net if isinstance(m, torch.nn.Linear)]
            for lin, w, b in zip(linears, twin.weights, twin.biases, strict=True):
                lin.weight.copy_(w[k].T)
                lin.bias.copy_(b[k, 0])
    obs, act = torch.randn(6, 3), torch.randn(6, 2, requires_grad=True)
    q = twin(obs, act)
    x = torch.cat([(obs - bias) / scale, act], dim=-1)
    want = torch.stack([net(x).squeeze(-1) for net in nets])
    assert q.shape == (2, 6)
    torch.testing.assert_close(q, want, atol=1e-6, rtol=0)
    # the same loss gives the same gradients, for the weights and for the action
    weights = torch.tensor([[1.0], [-2.0]])
    (q * weights).square().sum().backward()
    grad_act = act.grad.clone()
    act.grad = None
    (want * weights).square().sum().backward()
    torch.testing.assert_close(grad_act, act.grad, atol=1e-6, rtol=0)
    for k, net in enumerate(nets):
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        for lin, w, b in zip(linears, twin.weights, twin.biases, strict=True):
            torch.testing.assert_close(w.grad[k].T, lin.weight.grad, atol=1e-6, rtol=0)
            torch.testing.assert_close(b.grad[k, 0], lin.bias.grad, atol=1e-6, rtol=0)


def test_frozen_critic_passes_the_action_gradient_only():
    torch.manual_seed(0)
    twin = TwinCritic(3, 2, (8,), torch.ones(3), torch.zeros(3))
    obs, act = torch.randn(4, 3), torch.randn(4, 2, requires_grad=True)
    q = twin(obs, act, frozen=True)
    torch.testing.assert_close(q, twin(obs, act))
    q.sum().backward()
    assert act.grad is not None and act.grad.abs().sum() > 0
    assert all(p.grad is None for p in twin.parameters())


@pytest.mark.parametrize("kernel", ["private", "missing", "other signature"])
def test_adam_is_torch_fused_adam_bit_for_bit(kernel, monkeypatch):
    # The private kernel, or the public optimizer where that kernel is gone or changed.
    if kernel == "missing":
        monkeypatch.setattr(sac, "_FUSED_ADAM", None)
    elif kernel == "other signature":
        monkeypatch.setattr(sac, "_FUSED_ADAM", lambda *a: None)
    torch.manual_seed(0)
    ours_p = [torch.nn.Parameter(torch.randn(2, 5, 3)), torch.nn.Parameter(torch.randn(4))]
    theirs_p = [torch.nn.Parameter(p.detach().clone()) for p in ours_p]
    ours, theirs = _Adam(ours_p, 1e-2), torch.optim.Adam(theirs_p, lr=1e-2, fused=True)
    x = torch.randn(7, 3)

    def loss(p):
        return (p[0] @ x.T).sin().sum() + p[1].square().sum()

    for _ in range(5):
        ours.step(loss(ours_p))
        theirs.zero_grad()
        loss(theirs_p).backward()
        theirs.step()
    assert all(torch.equal(a, b) for a, b in zip(ours_p, theirs_p, strict=True))


def _spy(monkeypatch):
    """Count env steps and resets (with their seeds) and learning phases of train_sac."""
    seen = {"steps": [], "resets": [], "phases": []}
    make = sac.make_env

    def counting_env(task):
        env = make(task)
        k = len(seen["steps"])
        seen["steps"].append(0)
        step, reset = env.step, env.reset

        def counted_step(action):
            seen["steps"][k] += 1
            return step(action)

        def counted_reset(*, seed=None, options=None):
            seen["resets"].append((k, seed))
            return reset(seed=seed, options=options)

        env.step, env.reset = counted_step, counted_reset
        return env

    phase = sac._Learner.phase

    def counted_phase(self, batch, w, update_actor, step):
        seen["phases"].append((step, len(batch["rew"])))
        return phase(self, batch, w, update_actor, step)

    monkeypatch.setattr(sac, "make_env", counting_env)
    monkeypatch.setattr(sac._Learner, "phase", counted_phase)
    return seen


def test_n_envs_counts_env_steps_and_vector_steps(monkeypatch):
    seen = _spy(monkeypatch)
    cfg = SACConfig(total_steps=11, n_envs=2, train_freq=2, gradient_steps=3, seed=5, **FAST)
    _, stats = train_sac(_short(4), resolve("soft", alpha=0.1), cfg, log=None)
    # 11 env steps round up to 6 vector steps of 2 envs
    assert seen["steps"] == [6, 6]
    # first resets seeded seed + i; episodes of 4 steps end at each env's steps 4 (then reset)
    assert seen["resets"][:2] == [(0, 5), (1, 6)]
    assert sorted(seen["resets"][2:]) == [(0, None), (1, None)]
    assert stats["episodes"] == 2
    # learning from env step 4 (vector step 2), every 2nd vector step: vector steps 2 and 4,
    # each phase drawing its 3 gradient steps' batches at once
    assert seen["phases"] == [(4, 24), (8, 24)]


def test_interrupt_stops_after_a_whole_vector_step():
    cfg = SACConfig(total_steps=20, n_envs=3, **FAST)
    stop = InterruptRequest(requested=True)
    _, stats = train_sac(
        "mountaincar-noleft", resolve("soft", alpha=0.1), cfg, None, None, interrupt=stop
    )
    assert stats["interrupted_at_step"] == 3


def test_hindsight_relabels_each_envs_own_episodes(monkeypatch):
    calls = []

    def relabel(obs, next_obs, goal_from, infos):
        calls.append((obs, next_obs, goal_from))
        return obs, next_obs, np.zeros(len(obs)), np.zeros(len(obs), bool)

    added = []
    add = sac.ReplayBuffer.add
    monkeypatch.setattr(
        sac.ReplayBuffer, "add", lambda self, *a: (added.append(a[0]), add(self, *a))[1]
    )
    cfg = SACConfig(total_steps=50, n_envs=2, her_k=3, **FAST)
    train_sac(_short(10, relabel), resolve("soft", alpha=0.1), cfg, log=None)
    # 25 steps per env: 2 whole episodes of 10 each, relabelled 3 times per transition
    assert [len(c[0]) for c in calls] == [30] * 4
    assert len(added) == 50 + 4 * 30
    for obs, next_obs, goal_from in calls:
        # one env's consecutive transitions: each next observation is the following one's obs
        first = obs[::3]
        np.testing.assert_array_equal(first[1:], next_obs[::3][:-1])
        assert len({tuple(o) for o in goal_from}) > 1


def _actor(n_envs: int, seed: int = 0) -> dict[str, torch.Tensor]:
    cfg = SACConfig(total_steps=40, n_envs=n_envs, seed=seed, **FAST)
    actor, _ = train_sac(_short(15), resolve("soft", alpha=0.1), cfg, log=None)
    return actor.state_dict()


def test_same_seed_same_actor_and_n_envs_changes_it():
    a, b, c = _actor(2), _actor(2), _actor(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_n_envs_is_checked():
    from tailor.errors import TailorError

    with pytest.raises(TailorError, match="n_envs"):
        SACConfig(n_envs=0)
