"""SB3 policies beyond the plain MlpPolicy: QR-DQN, SAC with gSDE, the Residual Q-Learning
authors' DQN_ME fork, multi-dimensional Box observations, and the refusals that name what a
file is. Each prior is checked against the library's own policy on the same inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sb3_models import rewrite_data
from tailor.errors import TailorError
from tailor.priors import load_prior
from tailor.priors.policies import BoltzmannQPrior, GSDEPrior

sb3 = pytest.importorskip("stable_baselines3")
sb3_contrib = pytest.importorskip("sb3_contrib")


def _obs(dim: int, n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32))


@pytest.fixture(scope="module")
def qrdqn_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("qrdqn")
    kwargs = {"net_arch": [16], "n_quantiles": 7}
    model = sb3_contrib.QRDQN("MlpPolicy", "CartPole-v1", learning_starts=50, seed=0,
                              policy_kwargs=kwargs)  # fmt: skip
    model.learn(200)
    model.save(root / "qrdqn.zip")
    return root / "qrdqn.zip"


@pytest.fixture(scope="module")
def sac_gsde_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SB3 SAC with gSDE on MountainCarContinuous (as the RQL authors' and the RL Zoo's)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sacgsde")
    model = sb3.SAC("MlpPolicy", "MountainCarContinuous-v0", use_sde=True, learning_starts=50,
                    batch_size=32, seed=0, policy_kwargs={"net_arch": [16, 16],
                    "log_std_init": -1.0})  # fmt: skip
    model.learn(150)
    model.save(root / "sac.zip")
    return root / "sac.zip"


def test_qrdqn_q_is_the_mean_of_its_quantiles(qrdqn_zip: Path) -> None:
    with pytest.raises(TailorError, match=r"QR-DQN .*--prior-temperature"):
        load_prior(qrdqn_zip)
    prior = load_prior(qrdqn_zip, temperature=0.5)
    assert isinstance(prior, BoltzmannQPrior) and prior.meta["quantiles"] == 7
    assert prior.meta["source"]["algorithm"] == "QR-DQN"
    model = sb3_contrib.QRDQN.load(qrdqn_zip)
    obs = _obs(4)
    with torch.no_grad():
        q = model.policy.quantile_net(obs).mean(dim=1)  # [B, N, A] -> [B, A]
        torch.testing.assert_close(prior.qnet(obs), q, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(prior.log_probs(obs), torch.log_softmax(q / 0.5, -1))
    predicted, _ = model.predict(obs.numpy(), deterministic=True)
    assert np.array_equal(prior.act(obs).numpy(), predicted)


def test_sac_with_gsde_matches_sb3(sac_gsde_zip: Path) -> None:
    prior = load_prior(sac_gsde_zip)
    assert isinstance(prior, GSDEPrior) and prior.squash and prior.clip_mean == 2.0
    model = sb3.SAC.load(sac_gsde_zip)
    obs = _obs(2)
    predicted, _ = model.predict(obs.numpy(), deterministic=True)
    torch.testing.assert_close(prior.act(obs), torch.from_numpy(predicted), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        model.policy.actor.reset_noise(obs.shape[0])
        sample, logp = model.policy.actor.action_log_prob(obs)  # from the pre-squash sample
    keep = sample.abs().amax(-1) < 0.99  # float32 cannot invert tanh where |a| rounds to 1
    assert keep.sum() > 10
    # bounds [-1, 1]: the environment action is the [-1, 1] one, no rescaling Jacobian
    torch.testing.assert_close(prior.log_prob(obs, sample)[keep], logp[keep], rtol=1e-4, atol=1e-4)


def test_a_sac_gsde_prior_customizes_with_residual_sac(sac_gsde_zip: Path, tmp_path: Path) -> None:
    from tailor.experiments import run
    from tailor.experiments.algo_choice import algo_for_prior

    assert algo_for_prior(sac_gsde_zip) == "sac"
    fast = {"learning_starts": 50, "batch_size": 16, "hidden": (16, 16), "log_interval": 0,
            "warm_start_steps": 20}  # fmt: skip
    out = run.customize("mountaincar-noleft", "sac", sac_gsde_zip, 120, 0, tmp_path / "c",
                        log=None, **fast)  # fmt: skip
    meta = json.loads((out / "policy.json").read_text())
    assert meta["algo"] == "sac" and meta["method"] == "residual"
    assert meta["prior"] == str(sac_gsde_zip) and meta["steps"] == 120


def test_rql_authors_dqn_fork_acts_at_temperature_1(tmp_path: Path) -> None:
    """chenran-li/RQL-release's priors name the policy class stable_baselines3.dqn_ME.policies_ME
    (SB3's QNetwork, acting by softmax(Q)): read with temperature 1, no flag needed."""
    model = sb3.DQN("MlpPolicy", "CartPole-v1", learning_starts=10, seed=0,
                    policy_kwargs={"net_arch": [8]})  # fmt: skip
    model.save(tmp_path / "dqn.zip")

    def fork(data: dict) -> None:
        data["policy_class"]["__module__"] = "stable_baselines3.dqn_ME.policies_ME"

    zip_ = rewrite_data(tmp_path / "dqn.zip", tmp_path / "CartPole-modifed-v1_Pretrained.zip", fork)
    prior = load_prior(zip_)
    assert prior.temperature == 1.0 and prior.meta["source"]["algorithm"] == "DQN_ME"
    assert "temperature 1" in prior.meta["temperature"]["source"]
    obs = _obs(4)
    with torch.no_grad():
        q = model.policy.q_net(obs)
    torch.testing.assert_close(prior.log_probs(obs), torch.log_softmax(q, -1))
    assert load_prior(zip_, temperature=0.3).temperature == 0.3  # a given one still wins


def test_a_multidimensional_box_is_flattened_as_sb3_does(tmp_path: Path) -> None:
    """highway-env's Box(5, 5) kinematics: SB3's MlpPolicy flattens it (FlattenExtractor)."""
    model = sb3.DQN("MlpPolicy", "CartPole-v1", learning_starts=10, seed=0,
                    policy_kwargs={"net_arch": [8]})  # fmt: skip
    model.save(tmp_path / "dqn.zip")

    def two_by_two(data: dict) -> None:
        data["observation_space"]["_shape"] = [2, 2]

    prior = load_prior(rewrite_data(tmp_path / "dqn.zip", tmp_path / "m.zip", two_by_two),
                       temperature=1.0)  # fmt: skip
    assert prior.obs_dim == 4 and prior.meta["observation_shape"] == [2, 2]

    def three_by_three(data: dict) -> None:
        data["observation_space"]["_shape"] = [3, 3]

    with pytest.raises(TailorError, match="9"):  # 9 inputs claimed, the network takes 4
        load_prior(rewrite_data(tmp_path / "dqn.zip", tmp_path / "b.zip", three_by_three),
                   temperature=1.0)  # fmt: skip


@pytest.mark.parametrize(
    ("module", "cls", "why"),
    [
        ("sb3_contrib.ars.policies", "ARSLinearPolicy", "ARS: a deterministic policy"),
        ("stable_baselines3.common.policies", "MultiInputActorCriticPolicy", "Dict observations"),
        ("sb3_contrib.common.recurrent.policies", "RecurrentActorCriticPolicy", "recurrent"),
        ("stable_baselines3.common.policies", "ActorCriticCnnPolicy", "CNN policy on images"),
    ],
)
def test_a_refusal_says_what_the_policy_is(tmp_path: Path, module: str, cls: str, why: str) -> None:
    model = sb3.DQN("MlpPolicy", "CartPole-v1", learning_starts=10, seed=0,
                    policy_kwargs={"net_arch": [8]})  # fmt: skip
    model.save(tmp_path / "dqn.zip")

    def other(data: dict) -> None:
        data["policy_class"]["__module__"] = module
        data["policy_class"]["__init__"] = f"<function {cls}.__init__ at 0x7f>"

    with pytest.raises(TailorError, match=f"{cls} is not supported \\(.*{why}.*supported: Mlp"):
        load_prior(rewrite_data(tmp_path / "dqn.zip", tmp_path / "x.zip", other))
