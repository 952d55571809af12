"""The defaults for priors whose temperature nobody knows (experiments.unknown_temperature)."""

from __future__ import annotations

import math

import pytest
import torch

from tailor.experiments import unknown_temperature as ut
from tailor.nets import Actor, EmpiricalNormalization
from tailor.priors import PolicyPrior


def _imported(std: float, act_dim: int = 3) -> PolicyPrior:
    actor = Actor(4, act_dim, (8,), "tanh", "global", std)
    meta = {"source": {"format": "sb3", "algorithm": "PPO"}}
    return PolicyPrior(actor, EmpiricalNormalization(4, eps=0.0).eval(), meta)


def test_it_applies_only_to_imported_priors_of_unknown_temperature() -> None:
    imported = {"source": {"format": "sb3"}}
    none = {"omega_prime": None, "alpha_hat": None}
    assert ut.applies("ppo", "residual", imported, none)
    assert ut.applies("ppo", "kl", imported, none)
    assert not ut.applies("ppo", "greedy", imported, none)  # no prior term to hold
    assert not ut.applies("sac", "residual", imported, none)
    assert not ut.applies("ppo", "residual", {}, none)  # a tailor prior: its own table
    known = {**imported, "temperature": {"value": 0.2, "source": "SB3 ent_coef"}}
    assert not ut.applies("ppo", "residual", known, none)
    assert not ut.applies("ppo", "residual", imported, {"omega_prime": 0.1, "alpha_hat": None})


def test_step_settings_from_the_prior_and_what_the_user_set() -> None:
    chosen, line = ut.step_settings(_imported(0.05, act_dim=3), {})
    lr = 1e-3 * math.sqrt(0.05 / 0.5)
    assert chosen["learning_rate"] == pytest.approx(lr, rel=1e-6)
    assert chosen["lr_max"] == pytest.approx(10 * lr, rel=1e-6)
    assert chosen["kl_target"] == pytest.approx(0.15) and chosen["kl_horizon"] == 4096
    assert chosen["target_kl"] == 0.01 and "prior temperature unknown" in line
    assert chosen["kl_estimator"] == "exact-loss" and "kl_estimator=exact-loss" in line
    assert "0.05" in line  # the std it read
    kept, line = ut.step_settings(_imported(0.05), {"learning_rate": 3e-4, "kl_target": 1.0})
    assert "learning_rate" not in kept and "kl_target" not in kept and "lr_max" in kept
    wide, _ = ut.step_settings(_imported(0.8), {})  # a wide prior: the default step
    assert wide["learning_rate"] == pytest.approx(1e-3)
    layer = ut.coefficient_layer("residual")
    assert layer[1] == {"omega_prime": 1.0, "alpha_hat": 1.0} and "unknown" in layer[0]
    assert ut.coefficient_layer("kl")[1] == {"beta": 1.0}


@pytest.mark.filterwarnings("ignore:.*no observation normalizer")
def test_a_customization_says_the_rule_and_uses_it(tmp_path) -> None:
    """An imported prior (a CleanRL agent file) customized with no coefficient flags."""
    from tailor.experiments import run

    actor = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    state = {f"actor_mean.{k}": v for k, v in actor.state_dict().items()}
    state["actor_logstd"] = torch.full((1, 2), math.log(0.1))
    (tmp_path / "cleanrl").mkdir()
    torch.save(state, tmp_path / "cleanrl" / "agent.pt")
    lines: list[str] = []
    prior = tmp_path / "cleanrl" / "agent.pt"
    out = run.customize("pointmass", "ppo", prior, 1024, 0, tmp_path / "run", log=lines.append,
                        num_envs=8, num_steps=16, tensorboard=False)  # fmt: skip
    text = "\n".join(lines)
    assert "prior temperature unknown: KL to the prior held at 0.05 nats/step" in text
    assert "omega_prime=1, alpha_hat=1 (prior temperature unknown" in text
    assert "KL controller:" in text  # the final weight is said
    import json

    trainer = json.loads((out / "checkpoint.json").read_text())
    assert trainer  # the run finished and committed a checkpoint


def test_a_config_flag_typed_at_its_default_is_the_users() -> None:
    """`--kl-horizon 10000` (PPOConfig's default) must reach the run as the user's choice, so
    that the rule for priors of unknown temperature (which sets 4096) does not replace it."""
    from tailor.experiments.configs import config_flags

    assert config_flags("ppo", ["--kl-horizon", "10000"]) == {"kl_horizon": 10_000}
    assert config_flags("ppo", ["--num-epochs=5"]) == {"num_epochs": 5}
    assert config_flags("ppo", ["--num-epochs", "3"]) == {"num_epochs": 3}
