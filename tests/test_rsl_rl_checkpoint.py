"""tailor's PPO learner written in rsl-rl 5's checkpoint format and resumed by rsl-rl's own
OnPolicyRunner (the real rsl_rl, installed with the dev extra)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("rsl_rl")
from rsl_rl.runners import OnPolicyRunner

from tailor.algos.rsl_rl_checkpoint import (
    RslRlLayout,
    rsl_rl_model_config,
    save_rsl_rl_checkpoint,
)
from tailor.algos.tensor_ppo import TensorPPOConfig, train_tensor
from tailor.envs.tensor_vec import extras_addon
from tailor.envs.torch_pointmass import TorchPointMass
from tailor.errors import TailorError
from tailor.methods import resolve
from tailor.nets import Actor, EmpiricalNormalization
from tailor.priors import PolicyPrior
from tailor.priors.rsl_rl import load_rsl_rl


@pytest.fixture(scope="module")
def customized():
    """A residual customization of a prior whose normalizer has real statistics (2 iterations,
    no warm-up, so actor, critic and Adam have all moved)."""
    torch.manual_seed(3)
    norm = EmpiricalNormalization(4)
    norm.update(torch.randn(256, 4) * torch.tensor([0.5, 1.0, 2.0, 0.3]) + 0.2)
    prior = PolicyPrior(Actor(4, 2, (16, 16), "elu", init_std=0.6), norm)
    cfg = TensorPPOConfig(
        num_iterations=2,
        num_steps_per_env=8,
        num_minibatches=2,
        num_epochs=2,
        hidden=(16, 16),
        critic_warmup_fraction=0.0,
    )
    method = resolve("residual", omega_prime=0.1, alpha_hat=0.05)
    return train_tensor(TorchPointMass(16), method, cfg, prior=prior, addon=extras_addon())


def _runner(learner, layout: RslRlLayout) -> OnPolicyRunner:
    cfg = {
        "num_steps_per_env": 8,
        "save_interval": 50,
        "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
        "algorithm": {"class_name": "PPO", "num_learning_epochs": 1, "num_mini_batches": 2},
        **rsl_rl_model_config(learner, layout),
    }
    return OnPolicyRunner(TorchPointMass(16, seed=9), cfg, log_dir=None, device="cpu")


@pytest.mark.parametrize("std_type", ["scalar", "log"])
def test_on_policy_runner_resumes_tailors_checkpoint(customized, tmp_path, std_type):
    learner = customized.learner
    layout = RslRlLayout(std_type=std_type)
    path = save_rsl_rl_checkpoint(tmp_path / "model_2.pt", learner, 2, layout, infos={"k": 1})
    runner = _runner(learner, layout)
    infos = runner.load(str(path))
    assert infos["k"] == 1 and infos["tailor"]["models"]["actor"]["hidden_dims"] == [16, 16]
    assert runner.current_learning_iteration == 2
    assert runner.alg.learning_rate == learner.lr

    obs = TorchPointMass(32, seed=5).get_observations()
    with torch.no_grad():
        norm_obs = learner.obs_norm.normalize(obs["policy"])
        mean, log_std = learner.actor(norm_obs)
        value = learner.critic(norm_obs)
        act = runner.get_inference_policy()(obs)
        runner.alg.actor(obs, stochastic_output=True)
        std = runner.alg.actor.output_std
        rsl_value = runner.alg.critic(obs).squeeze(-1)
    assert torch.allclose(act, mean, atol=1e-6)
    assert torch.allclose(std[0], log_std.exp(), atol=1e-6)
    assert torch.allclose(rsl_value, value, atol=1e-5)

    # Adam's moments followed their parameters (rsl-rl's order: std first, then mlp.*).
    rsl_state = runner.alg.optimizer.state
    w = runner.alg.actor.mlp[0].weight
    assert torch.equal(
        rsl_state[w]["exp_avg"], learner.optimizer.state[learner.actor.body[0].weight]["exp_avg"]
    )
    tailor_std_m = learner.optimizer.state[learner.actor.log_std]["exp_avg"]
    std_param = next(iter(runner.alg.actor.distribution.parameters()))
    expected = tailor_std_m if std_type == "log" else tailor_std_m / log_std.exp()
    assert torch.allclose(rsl_state[std_param]["exp_avg"], expected, atol=1e-7)
    runner.learn(1)  # and it trains on from there


def test_tailor_reads_its_rsl_rl_checkpoint_back_weights_only(customized, tmp_path):
    learner = customized.learner
    path = save_rsl_rl_checkpoint(tmp_path / "model.pt", learner, 2)
    prior = load_rsl_rl(path, activation="elu")  # torch.load(weights_only=True) inside
    obs = torch.randn(8, 4)
    with torch.no_grad():
        mean, log_std = learner.actor(learner.obs_norm.normalize(obs))
        assert torch.allclose(prior.act(obs), mean, atol=1e-6)
        assert torch.allclose(prior.actor.log_std, log_std, atol=1e-6)


def test_layouts_rsl_rl_cannot_hold_are_refused(customized, tmp_path):
    learner = customized.learner
    with pytest.raises(TailorError, match="actor_obs_normalization=True"):
        save_rsl_rl_checkpoint(
            tmp_path / "a.pt", learner, 2, RslRlLayout(actor_obs_normalization=False)
        )
    path = save_rsl_rl_checkpoint(tmp_path / "b.pt", learner, 2)
    with pytest.raises(TailorError, match="exists"):
        save_rsl_rl_checkpoint(path, learner, 2)
    save_rsl_rl_checkpoint(path, learner, 3, overwrite=True)
    with pytest.raises(TailorError, match="std_type"):
        RslRlLayout(std_type="softplus")


def test_an_actor_with_bounds_is_refused(customized, tmp_path):
    """rsl-rl's MLP has no output squash: a customized TD3/DDPG prior's actor is refused, and
    nothing is written."""
    import dataclasses

    learner = customized.learner
    bounded = Actor(4, 2, (16, 16), "elu", action_bounds=([-1.0, -1.0], [1.0, 1.0]))
    bounded.load_state_dict({**bounded.state_dict(), **learner.actor.state_dict()})
    squashed = dataclasses.replace(learner, actor=bounded)
    with pytest.raises(TailorError, match="no output squash"):
        save_rsl_rl_checkpoint(tmp_path / "c.pt", squashed, 2)
    assert not (tmp_path / "c.pt").exists()
    with pytest.raises(TailorError, match="no output squash"):
        rsl_rl_model_config(squashed)
