"""Importing priors from other libraries: exactness against the libraries themselves, bad input.

Every prior here is made by the real library (SB3 models trained for a few hundred steps, an
rsl-rl ``MLPModel`` built with rsl-rl's classes), saved the way the library saves it, loaded with
:func:`tailor.priors.load_prior`, and compared on 64 observations: ``act(obs, deterministic=True)``
against the library's deterministic action, ``log_prob`` against the library's distribution, with
the observation normalizer in play.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from sb3_models import rewrite_data, tiny_sac
from tailor.cli import main
from tailor.errors import TailorError
from tailor.nets import Actor, EmpiricalNormalization
from tailor.policyfile import load_policy, save_policy
from tailor.priors import PolicyPrior, Prior, load_prior
from tailor.priors.detect import detect_format
from tailor.priors.policies import (
    BoltzmannQPrior,
    GSDEPrior,
    SquashedGaussianPrior,
)
from tailor.priors.unpickle import load_vecnormalize

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402

RTOL = 1e-5
N_OBS = 64


def close(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, rtol: float = RTOL) -> None:
    a = torch.as_tensor(np.asarray(a, dtype=np.float64))
    b = torch.as_tensor(np.asarray(b, dtype=np.float64))
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a, b, rtol=rtol, atol=1e-6)


def observations(dim: int, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(N_OBS, dim)) * scale).astype(np.float32)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RL-Zoo layout: ``<Env>.zip`` and ``<Env>/vecnormalize.pkl`` (MountainCarContinuous-v0)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("zoo")
    env = VecNormalize(make_vec_env("MountainCarContinuous-v0", n_envs=2, seed=0), clip_obs=5.0)
    model = sb3.PPO(
        "MlpPolicy",
        env,
        n_steps=64,
        batch_size=64,
        n_epochs=2,
        seed=0,
        policy_kwargs={
            "net_arch": {"pi": [16, 8], "vf": [8]},
            "activation_fn": nn.ReLU,
            "log_std_init": -0.3,
        },
    )
    model.learn(256)
    model.save(root / "MountainCarContinuous-v0.zip")
    (root / "MountainCarContinuous-v0").mkdir()
    env.save(str(root / "MountainCarContinuous-v0" / "vecnormalize.pkl"))
    return root


@pytest.fixture(scope="module")
def sac_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SAC with VecNormalize, ``vecnormalize.pkl`` beside the zip."""
    root = tmp_path_factory.mktemp("sac")
    return tiny_sac(root, "Pendulum-v1", 120)


@pytest.fixture(scope="module")
def dqn_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DQN with VecNormalize, statistics saved elsewhere (``stats/cartpole.pkl``)."""
    root = tmp_path_factory.mktemp("dqn")
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0), clip_obs=3.0)
    model = sb3.DQN("MlpPolicy", env, learning_starts=50, seed=0, policy_kwargs={"net_arch": [16]})
    model.learn(150)
    model.save(root / "dqn.zip")
    (root / "stats").mkdir()
    env.save(str(root / "stats" / "cartpole.pkl"))
    return root / "dqn.zip"


def _load_vecnorm(path: Path, env_id: str) -> VecNormalize:
    return VecNormalize.load(str(path), DummyVecEnv([lambda: gym.make(env_id)]))


def _vecnorm(zoo: Path) -> VecNormalize:
    venv = DummyVecEnv([lambda: gym.make("MountainCarContinuous-v0")])
    return VecNormalize.load(str(zoo / "MountainCarContinuous-v0" / "vecnormalize.pkl"), venv)


# ---- SB3 ---------------------------------------------------------------------------------------


def test_sb3_ppo_vecnormalize_matches_sb3(zoo: Path) -> None:
    path = zoo / "MountainCarContinuous-v0.zip"
    assert detect_format(path) == "sb3"
    prior = load_prior(path)  # finds MountainCarContinuous-v0/vecnormalize.pkl (RL-Zoo layout)
    assert isinstance(prior, PolicyPrior)
    assert prior.actor.hidden == (16, 8) and prior.actor.activation == "relu"
    assert prior.meta["source"]["algorithm"] == "PPO"
    model = sb3.PPO.load(path)
    vn = _vecnorm(zoo)
    raw = observations(2, scale=3.0)  # wide enough that the clip at 5 is active for some
    norm = vn.normalize_obs(raw)
    assert np.abs(norm).max() == 5.0
    # the normalizer alone is SB3's formula bit for bit
    assert np.array_equal(prior.obs_norm(torch.from_numpy(raw)).numpy(), norm)
    obs_t = torch.from_numpy(raw)
    with torch.no_grad():
        dist = model.policy.get_distribution(torch.from_numpy(norm))
        actions = dist.sample()
        close(prior.act(obs_t, deterministic=True), dist.distribution.mean)
        close(prior.log_prob(obs_t, actions), dist.log_prob(actions))
    # SB3's predict clips the mean to the action bounds, as tailor's VecEnv does
    predicted, _ = model.predict(norm, deterministic=True)
    close(np.clip(prior.act(obs_t).detach().numpy(), -1.0, 1.0), predicted)


def test_imported_prior_round_trips_through_tailor_checkpoint(zoo: Path, tmp_path: Path) -> None:
    prior = load_prior(zoo / "MountainCarContinuous-v0.zip")
    save_policy(tmp_path, prior.actor, prior.obs_norm, prior.meta)
    _, obs_norm, meta = load_policy(tmp_path)
    assert obs_norm.mode == "var_eps" and obs_norm.clip == 5.0
    assert meta["source"]["library"] == "stable-baselines3"
    again = load_prior(tmp_path)
    assert again.obs_norm.mode == "var_eps" and again.obs_norm.mean.dtype == torch.float64
    obs = torch.from_numpy(observations(2, scale=3.0))
    a = torch.from_numpy(observations(1, seed=1))
    assert torch.equal(again.act(obs), prior.act(obs))
    assert torch.equal(again.log_prob(obs, a), prior.log_prob(obs, a))


def test_default_normalizer_is_unchanged(tmp_path: Path) -> None:
    """The default mode is rsl-rl's formula; an extra mode must not change it."""
    norm = EmpiricalNormalization(3)
    x = torch.randn(32, 3) * 4 + 1
    norm.train()(x)
    assert norm.mean.dtype == torch.float32
    expected = (x - norm.mean) / (norm.var.sqrt() + 1e-2)
    assert torch.equal(norm.normalize(x), expected)
    # and a default normalizer's checkpoint metadata is what it was before imported priors
    save_policy(tmp_path, Actor(3, 1, (4,)), norm, {"task": "x"})
    meta = json.loads((tmp_path / "policy.json").read_text())
    assert set(meta["normalizer"]) == {"eps", "count"}


def test_customize_an_sb3_prior_end_to_end(zoo: Path, tmp_path: Path) -> None:
    out = tmp_path / "custom"
    rc = main(
        [
            "customize",
            "--task",
            "mountaincar-noleft",
            "--prior",
            str(zoo / "MountainCarContinuous-v0.zip"),
            "--method",
            "residual",
            "--steps",
            "64",
            "--num-envs",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    # resume reads the prior back from <out>/prior (a tailor checkpoint with the SB3 formula)
    assert main(["customize", "--resume", str(out), "--steps", "128", "--no-progress"]) == 0
    prior_copy = load_prior(out / "prior")
    customized = load_prior(out)
    assert customized.meta["steps"] >= 128
    assert customized.obs_norm.mode == "var_eps"  # the prior's normalizer, frozen, kept
    assert torch.equal(customized.obs_norm.mean, prior_copy.obs_norm.mean)


def test_sb3_sac_matches_sb3(sac_zip: Path) -> None:
    prior = load_prior(sac_zip)
    assert isinstance(prior, SquashedGaussianPrior) and isinstance(prior, Prior)
    assert prior.meta["activation"] == "tanh"
    assert prior.meta["obs_normalizer"]["kind"] == "sb3-vecnormalize"
    model = sb3.SAC.load(sac_zip)
    vn = _load_vecnorm(sac_zip.parent / "vecnormalize.pkl", "Pendulum-v1")
    raw = observations(3, scale=2.0)
    norm = vn.normalize_obs(raw)
    obs_t = torch.from_numpy(raw)
    predicted, _ = model.predict(norm, deterministic=True)
    close(prior.act(obs_t, deterministic=True), predicted)
    with torch.no_grad():
        mean, log_std, _ = model.policy.actor.get_action_dist_params(torch.from_numpy(norm))
        dist = model.policy.actor.action_dist.proba_distribution(mean, log_std)
        env_actions = model.policy.unscale_action(dist.sample().numpy())
        scaled = torch.from_numpy(model.policy.scale_action(env_actions))
        # SB3's log-prob of the [-1, 1] action, minus the rescaling's Jacobian (bounds [-2, 2])
        expected = dist.log_prob(scaled) - np.log(2.0)
        close(prior.log_prob(obs_t, torch.from_numpy(env_actions)), expected)


def test_sb3_dqn_boltzmann(dqn_zip: Path) -> None:
    with pytest.raises(TailorError, match="temperature"):
        load_prior(dqn_zip)
    stats = dqn_zip.parent / "stats" / "cartpole.pkl"
    prior = load_prior(dqn_zip, temperature=0.5, normalizer=stats)
    assert isinstance(prior, BoltzmannQPrior) and isinstance(prior, Prior)
    assert prior.n_actions == 2 == prior.act_dim
    model = sb3.DQN.load(dqn_zip)
    vn = _load_vecnorm(stats, "CartPole-v1")
    raw = observations(4, scale=3.0)
    norm = vn.normalize_obs(raw)
    assert np.abs(norm).max() == 3.0  # the clip is in play
    obs_t = torch.from_numpy(raw)
    predicted, _ = model.predict(norm, deterministic=True)
    assert np.array_equal(prior.act(obs_t).numpy(), predicted)
    with torch.no_grad():
        q = model.policy.q_net(torch.from_numpy(norm))
    expected = torch.log_softmax(q / 0.5, dim=-1)
    close(prior.log_probs(obs_t), expected)
    a = torch.randint(0, 2, (N_OBS,))
    close(prior.log_prob(obs_t, a), expected.gather(1, a[:, None]).squeeze(1))


def test_sb3_td3_needs_std(tmp_path: Path) -> None:
    model = sb3.TD3(
        "MlpPolicy", "Pendulum-v1", learning_starts=20, seed=0, policy_kwargs={"net_arch": [8]}
    )
    model.learn(40)
    model.save(tmp_path / "td3.zip")
    with pytest.raises(TailorError, match=r"deterministic.*--prior-std"):
        load_prior(tmp_path / "td3.zip")
    prior = load_prior(tmp_path / "td3.zip", std=[0.3])
    # A Gaussian actor whose mean is squashed into Pendulum's bounds [-2, 2] (a PPO start).
    assert isinstance(prior, PolicyPrior) and isinstance(prior, Prior)
    assert prior.actor.bounds() == ([-2.0], [2.0])
    raw = observations(3, scale=5.0)
    obs_t = torch.from_numpy(raw)
    predicted, _ = model.predict(raw, deterministic=True)
    torch.testing.assert_close(prior.act(obs_t), torch.from_numpy(predicted), atol=1e-6, rtol=0)
    torch.testing.assert_close(prior.actor.log_std, torch.log(torch.tensor([0.3])))
    a = torch.from_numpy(predicted) + 0.1
    expected = torch.distributions.Normal(torch.from_numpy(predicted), 0.3).log_prob(a).sum(-1)
    close(prior.log_prob(obs_t, a), expected)


# ---- rsl-rl ------------------------------------------------------------------------------------


def _rsl_actor(std_type: str = "scalar") -> nn.Module:
    pytest.importorskip("rsl_rl")
    from rsl_rl.models import MLPModel
    from tensordict import TensorDict

    torch.manual_seed(0)
    obs = TensorDict({"policy": torch.zeros(1, 5)}, batch_size=[1])
    actor = MLPModel(
        obs,
        {"actor": ["policy"]},
        "actor",
        3,
        hidden_dims=[16, 8],
        activation="elu",
        obs_normalization=True,
        distribution_cfg={
            "class_name": "rsl_rl.modules.distribution:GaussianDistribution",
            "init_std": 0.6,
            "std_type": std_type,
        },
    )
    actor.train()
    for _ in range(3):  # give the normalizer non-trivial statistics
        actor.update_normalization(
            TensorDict({"policy": torch.randn(64, 5) * 3 + 1}, batch_size=[64])
        )
    with torch.no_grad():
        for p in actor.distribution.parameters():
            p.add_(torch.linspace(-0.2, 0.3, p.numel()))
    return actor.eval()


@pytest.mark.parametrize("std_type", ["scalar", "log"])
def test_rsl_rl_v5_matches_rsl_rl(tmp_path: Path, std_type: str) -> None:
    from tensordict import TensorDict

    actor = _rsl_actor(std_type)
    run = tmp_path / "run"
    (run / "params").mkdir(parents=True)
    torch.save(
        {"actor_state_dict": actor.state_dict(), "iter": 7, "infos": None}, run / "model_7.pt"
    )
    (run / "params" / "agent.yaml").write_text(
        "actor:\n  class_name: MLPModel\n  hidden_dims:\n  - 16\n  - 8\n  activation: elu\n"
        "  obs_normalization: true\n  distribution_cfg:\n    std_range: !!python/tuple\n"
        "    - 1.0e-06\n    - 1000000.0\n"
    )
    assert detect_format(run / "model_7.pt") == "rsl_rl"
    prior = load_prior(run / "model_7.pt")
    assert isinstance(prior, PolicyPrior) and prior.actor.activation == "elu"
    raw = torch.from_numpy(observations(5, scale=3.0))
    td = TensorDict({"policy": raw}, batch_size=[N_OBS])
    with torch.no_grad():
        mean = actor(td)  # deterministic output
        actor.distribution.update(actor.mlp(actor.get_latent(td)))
        a = actor.distribution.sample()
        expected = actor.distribution.log_prob(a)
        normed = actor.obs_normalizer(raw)
    assert torch.equal(prior.obs_norm(raw), normed)  # (x - mean) / (std + eps), bit for bit
    close(prior.act(raw), mean)
    close(prior.log_prob(raw, a), expected)


def test_rsl_rl_v4_std_names(tmp_path: Path) -> None:
    """rsl-rl 4 kept the std as ``std`` in ``actor_state_dict`` (5 renamed it)."""
    from tensordict import TensorDict

    actor = _rsl_actor("scalar")
    sd = dict(actor.state_dict())
    sd["std"] = sd.pop("distribution.std_param")
    torch.save({"actor_state_dict": sd, "iter": 2}, tmp_path / "model_2.pt")
    prior = load_prior(tmp_path / "model_2.pt", activation="elu")
    raw = torch.from_numpy(observations(5, scale=3.0))
    td = TensorDict({"policy": raw}, batch_size=[N_OBS])
    with torch.no_grad():
        actor.distribution.update(actor.mlp(actor.get_latent(td)))
        a = actor.distribution.sample()
        close(prior.log_prob(raw, a), actor.distribution.log_prob(a))


def test_rsl_rl_needs_activation_without_agent_yaml(tmp_path: Path) -> None:
    actor = _rsl_actor()
    torch.save({"actor_state_dict": actor.state_dict(), "iter": 1}, tmp_path / "model_1.pt")
    with pytest.raises(TailorError, match=r"params/agent\.yaml.*--prior-activation"):
        load_prior(tmp_path / "model_1.pt")
    prior = load_prior(tmp_path / "model_1.pt", activation="elu")
    assert prior.actor.hidden == (16, 8)


def test_rsl_rl_v2_layout(tmp_path: Path) -> None:
    """rsl-rl 1-3 ``ActorCritic``: ``actor.<i>`` layers, ``std``, ``obs_norm_state_dict`` (v2)."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 8), nn.ELU(), nn.Linear(8, 2))
    std = torch.tensor([0.5, 0.8])
    mean_, std_ = torch.randn(1, 4), torch.rand(1, 4) + 0.5
    sd = {f"actor.{k}": v for k, v in net.state_dict().items()}
    sd.update({"std": std, "critic.0.weight": torch.zeros(1, 4), "critic.0.bias": torch.zeros(1)})
    norm = {"_mean": mean_, "_var": std_**2, "_std": std_, "count": torch.tensor(100)}
    torch.save({"model_state_dict": sd, "obs_norm_state_dict": norm, "iter": 3}, tmp_path / "m.pt")
    prior = load_prior(tmp_path / "m.pt", activation="elu")
    x = torch.randn(N_OBS, 4)
    with torch.no_grad():
        mu = net((x - mean_) / (std_ + 1e-2))
    close(prior.act(x), mu)
    a = mu + 0.3
    close(prior.log_prob(x, a), torch.distributions.Normal(mu, std).log_prob(a).sum(-1))


# ---- CleanRL -----------------------------------------------------------------------------------


class CleanRLAgent(nn.Module):
    """CleanRL ppo_continuous_action's Agent (tiny sizes)."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.critic = nn.Sequential(nn.Linear(obs_dim, 8), nn.Tanh(), nn.Linear(8, 1))
        self.actor_mean = nn.Sequential(
            nn.Linear(obs_dim, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, act_dim)
        )
        self.actor_logstd = nn.Parameter(torch.linspace(-0.5, 0.2, act_dim)[None])

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        action_mean = self.actor_mean(x)
        probs = torch.distributions.Normal(
            action_mean, self.actor_logstd.expand_as(action_mean).exp()
        )
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(x)


def test_cleanrl_matches_agent_with_normalizer(tmp_path: Path) -> None:
    torch.manual_seed(2)
    agent = CleanRLAgent(6, 2)
    torch.save(agent.state_dict(), tmp_path / "agent.cleanrl_model")
    # the statistics of gymnasium's NormalizeObservation wrapper (CleanRL's env), saved as .npz
    wrapper = gym.wrappers.NormalizeObservation(gym.make("Pendulum-v1"))
    wrapper.update_running_mean = False
    mean, var = np.linspace(-1, 1, 6), np.linspace(0.5, 4.0, 6)
    wrapper.obs_rms.mean, wrapper.obs_rms.var = mean, var
    np.savez(tmp_path / "stats.npz", mean=mean, var=var)
    assert detect_format(tmp_path / "agent.cleanrl_model") == "cleanrl"
    prior = load_prior(tmp_path / "agent.cleanrl_model", normalizer=tmp_path / "stats.npz")
    raw = observations(6, scale=10.0)
    # the wrapper's own formula, then CleanRL's TransformObservation clip to [-10, 10]
    expected_norm = np.clip(np.stack([wrapper.observation(o) for o in raw]), -10, 10)
    assert np.abs(expected_norm).max() == 10.0
    obs_t = torch.from_numpy(raw)
    assert torch.equal(prior.obs_norm(obs_t), torch.from_numpy(expected_norm))
    with torch.no_grad():
        a, logp, _, _ = agent.get_action_and_value(torch.from_numpy(expected_norm))
        close(prior.act(obs_t), agent.actor_mean(torch.from_numpy(expected_norm)))
    close(prior.log_prob(obs_t, a), logp)


def test_cleanrl_warns_without_normalizer(tmp_path: Path) -> None:
    torch.save(CleanRLAgent(3, 1).state_dict(), tmp_path / "agent.pt")
    with pytest.warns(UserWarning, match="no observation normalizer"):
        prior = load_prior(tmp_path / "agent.pt")
    assert prior.obs_norm.eps == 0.0


# ---- bad input ---------------------------------------------------------------------------------


def test_wrong_sizes_name_both_and_the_task(zoo: Path) -> None:
    with pytest.raises(
        TailorError,
        match=r"observation size 2 and action size 1.*'halfcheetah-hindleg' has observation "
        "size 17 and action size 6",
    ):
        load_prior(
            zoo / "MountainCarContinuous-v0.zip", obs_dim=17, act_dim=6, task="halfcheetah-hindleg"
        )


@pytest.mark.parametrize(
    ("module", "cls"),
    [
        ("stable_baselines3.common.policies", "ActorCriticCnnPolicy"),
        ("stable_baselines3.common.policies", "MultiInputActorCriticPolicy"),
        ("sb3_contrib.common.recurrent.policies", "RecurrentActorCriticPolicy"),
    ],
)
def test_unsupported_sb3_policy_lists_supported(
    zoo: Path, tmp_path: Path, module: str, cls: str
) -> None:
    def edit(data: dict) -> None:
        data["policy_class"]["__module__"] = module
        data["policy_class"]["__init__"] = f"<function {cls}.__init__ at 0x7f>"

    bad = tmp_path / "bad.zip"
    rewrite_data(zoo / "MountainCarContinuous-v0.zip", bad, edit)
    with pytest.raises(TailorError, match=f"{cls} is not supported.*supported: MlpPolicy of PPO"):
        load_prior(bad)


def _gym_era(data: dict) -> None:
    """Rewrite a gymnasium-era SB3 ``data`` as SB3 1.x with gym saved it (the RL Zoo's released
    agents): spaces from ``gym.spaces``, ``shape`` instead of ``_shape``, no ``low_repr``."""
    for key in ("observation_space", "action_space"):
        space = data[key]
        space[":type:"] = space[":type:"].replace("gymnasium.spaces", "gym.spaces")
        space["shape"] = space.pop("_shape")
        space.pop("low_repr", None)
        space.pop("high_repr", None)


def test_normalizer_is_found_only_in_the_documented_layouts(zoo: Path, tmp_path: Path) -> None:
    """A vecnormalize.pkl of another model in some sub-directory is never taken (it would change
    every action silently); the RL-Zoo ``<stem>/`` one and the one beside the zip are."""
    pkl = zoo / "MountainCarContinuous-v0" / "vecnormalize.pkl"
    (tmp_path / "other-model").mkdir()
    shutil.copy(pkl, tmp_path / "other-model" / "vecnormalize.pkl")
    shutil.copy(zoo / "MountainCarContinuous-v0.zip", tmp_path / "model.zip")
    meta = load_prior(tmp_path / "model.zip").meta["obs_normalizer"]
    assert meta["kind"] == "none" and "model/ or beside the zip" in meta["note"]
    (tmp_path / "model").mkdir()
    shutil.copy(pkl, tmp_path / "model" / "vecnormalize.pkl")  # the RL-Zoo layout
    assert load_prior(tmp_path / "model.zip").meta["obs_normalizer"]["file"] == str(
        tmp_path / "model" / "vecnormalize.pkl"
    )
    shutil.rmtree(tmp_path / "model")
    shutil.copy(pkl, tmp_path / "vecnormalize.pkl")  # beside the zip
    found = load_prior(tmp_path / "model.zip").meta["obs_normalizer"]
    assert found["file"] == str(tmp_path / "vecnormalize.pkl")


def test_gym_era_sb3_zip_matches_sb3(zoo: Path, tmp_path: Path) -> None:
    old = tmp_path / "MountainCarContinuous-v0.zip"
    rewrite_data(zoo / "MountainCarContinuous-v0.zip", old, _gym_era)
    data = json.loads(zipfile.ZipFile(old).read("data"))
    assert "_shape" not in data["observation_space"] and data["observation_space"]["shape"] == [2]
    prior = load_prior(old, normalizer=zoo / "MountainCarContinuous-v0" / "vecnormalize.pkl")
    assert isinstance(prior, PolicyPrior) and (prior.obs_dim, prior.act_dim) == (2, 1)
    model = sb3.PPO.load(zoo / "MountainCarContinuous-v0.zip")
    norm = _vecnorm(zoo).normalize_obs(observations(2))
    obs_t = torch.from_numpy(observations(2))
    with torch.no_grad():
        dist = model.policy.get_distribution(torch.from_numpy(norm))
        actions = dist.sample()
        close(prior.act(obs_t, deterministic=True), dist.distribution.mean)
        close(prior.log_prob(obs_t, actions), dist.log_prob(actions))


@pytest.mark.parametrize("shape", [5, [None], [1e300], [-3], [10**12], "[2]", [True]])
def test_malformed_space_shape_is_an_error(zoo: Path, tmp_path: Path, shape: object) -> None:
    def edit(data: dict) -> None:
        data["observation_space"]["_shape"] = shape

    bad = tmp_path / "bad-shape.zip"
    rewrite_data(zoo / "MountainCarContinuous-v0.zip", bad, edit)
    with pytest.raises(TailorError, match=r"observation_space has shape .* not a list of sizes"):
        load_prior(bad)


def test_image_observations_do_not_fit_an_mlp_of_another_size(zoo: Path, tmp_path: Path) -> None:
    # An MlpPolicy flattens any Box (SB3's FlattenExtractor); 3x64x64 inputs do not fit a
    # network that takes 2. (CNN policies are refused by their class and extractor weights.)
    def edit(data: dict) -> None:
        data["observation_space"]["_shape"] = [3, 64, 64]

    bad = tmp_path / "img.zip"
    rewrite_data(zoo / "MountainCarContinuous-v0.zip", bad, edit)
    with pytest.raises(TailorError, match="size 12288 but the network takes 2"):
        load_prior(bad)


class _Hostile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_hostile_pickle_executes_nothing(zoo: Path, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    evil = tmp_path / "vecnormalize.pkl"
    evil.write_bytes(pickle.dumps({"obs_rms": _Hostile(target)}))
    with pytest.raises(TailorError, match=r"refusing to unpickle (builtins|io)\.open"):
        load_vecnormalize(evil)
    with pytest.raises(TailorError, match="refusing to unpickle"):
        load_prior(zoo / "MountainCarContinuous-v0.zip", normalizer=evil)
    assert not target.exists()
    evil.write_bytes(pickle.dumps(os.system))
    with pytest.raises(TailorError, match=r"refusing to unpickle (posix|os)\.system"):
        load_vecnormalize(evil)
    evil.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object)))
    with pytest.raises(TailorError, match="Python objects"):
        load_vecnormalize(evil)


def test_real_vecnormalize_reads_with_allowlist(zoo: Path) -> None:
    stats = load_vecnormalize(zoo / "MountainCarContinuous-v0" / "vecnormalize.pkl")
    vn = _vecnorm(zoo)
    assert np.array_equal(stats["mean"], vn.obs_rms.mean) and np.array_equal(
        stats["var"], vn.obs_rms.var
    )
    assert stats["clip_obs"] == 5.0 and stats["epsilon"] == vn.epsilon


def test_corrupt_zip_and_truncated_safetensors(zoo: Path, tmp_path: Path) -> None:
    data = (zoo / "MountainCarContinuous-v0.zip").read_bytes()
    bad = tmp_path / "cut.zip"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(TailorError, match="not a valid zip") as info:
        load_prior(bad)
    with pytest.raises(TailorError, match="not a valid zip"):
        load_prior(bad, format="sb3")
    assert "safetensors" not in str(info.value)
    save_policy(tmp_path / "run", Actor(2, 1, (4,)), EmpiricalNormalization(2), {"task": "x"})
    st = (tmp_path / "run" / "policy.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(st[: len(st) // 2])
    with pytest.raises(TailorError, match="truncated or corrupted"):
        load_prior(tmp_path / "cut.safetensors")
    (tmp_path / "junk.bin").write_bytes(b"hello world, not a model")
    with pytest.raises(TailorError, match="cannot tell the format") as info:
        load_prior(tmp_path / "junk.bin")
    assert "safetensors checkpoint (truncated" not in str(info.value)


def test_forced_format_and_options_that_do_not_apply(zoo: Path, tmp_path: Path) -> None:
    with pytest.raises(TailorError, match="unknown prior format"):
        load_prior(zoo / "MountainCarContinuous-v0.zip", format="keras")
    with pytest.raises(TailorError, match="std= is for deterministic"):
        load_prior(zoo / "MountainCarContinuous-v0.zip", std=0.1)
    save_policy(tmp_path, Actor(2, 1, (4,)), EmpiricalNormalization(2), {"task": "x"})
    with pytest.raises(TailorError, match="only apply to imported priors"):
        load_prior(tmp_path, temperature=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TailorError, match=r"not loadable with torch\.load"):
            load_prior(zoo / "MountainCarContinuous-v0.zip", format="cleanrl")


# ---- command line ------------------------------------------------------------------------------


def test_cli_inspect_json(zoo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "inspect.json"
    path = zoo / "MountainCarContinuous-v0.zip"
    assert main(["inspect", str(path), "--task", "mountaincar-noleft", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stable-baselines3" in text and "fits" in text
    info = json.loads(out.read_text())
    assert info["format"] == "sb3" and info["algorithm"] == "PPO"
    assert (
        info["architecture"]["hidden"] == [16, 8] and info["architecture"]["activation"] == "relu"
    )
    assert info["normalizer"]["mode"] == "var_eps" and info["normalizer"]["clip"] == 5.0
    assert info["action_low"] == [-1.0] and info["action_high"] == [1.0]
    check = info["task_check"]
    assert check["fits"] is True
    # the deterministic action on the task's first reset observation, as SB3 computes it
    env = gym.make("MountainCarContinuous-v0")
    obs, _ = env.reset(seed=0)
    model = sb3.PPO.load(path)
    norm = _vecnorm(zoo).normalize_obs(obs[None].astype(np.float32))
    with torch.no_grad():
        mean = model.policy.get_distribution(torch.from_numpy(norm)).distribution.mean
    close(np.asarray(check["deterministic_action"]), mean[0])


def test_cli_inspect_tailor_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_policy(tmp_path, Actor(2, 1, (4,)), EmpiricalNormalization(2), {"task": "pointmass"})
    assert main(["inspect", str(tmp_path), "--json", str(tmp_path / "i.json")]) == 0
    info = json.loads((tmp_path / "i.json").read_text())
    assert info["format"] == "tailor" and info["architecture"]["hidden"] == [4]
    assert info["normalizer"]["formula"] == "(x - mean) / (sqrt(var) + eps)"
    assert "tailor" in capsys.readouterr().out


def test_cli_inspect_reports_misfit(sac_zip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(sac_zip), "--task", "halfcheetah-hindleg"]) == 0
    assert "does NOT fit" in capsys.readouterr().out


def test_cli_errors_exit_2(
    sac_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(tmp_path / "missing.zip")]) == 2
    assert "missing.zip' does not exist" in capsys.readouterr().err
    # An explicit --algo that does not fit (without it the SAC prior would choose --algo sac).
    rc = main(
        ["customize", "--algo", "ppo", "--task", "mountaincar-noleft", "--prior", str(sac_zip),
         "--method", "residual", "--steps", "8", "--out", str(tmp_path / "x"), "--no-progress"]
    )  # fmt: skip
    assert rc == 2
    assert "Gaussian actor" in capsys.readouterr().err


def test_export_onnx_matches_torch(zoo: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = zoo / "MountainCarContinuous-v0.zip"
    out = tmp_path / "policy.onnx"
    assert main(["export", str(path), "--format", "onnx", "--out", str(out)]) == 0
    prior = load_prior(path)
    raw = observations(2, scale=3.0)  # includes clipped observations
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(["action"], {"obs": raw})
    with torch.no_grad():
        expected = prior.act(torch.from_numpy(raw))
    close(got, expected)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_export_torchscript_matches_torch(tmp_path: Path) -> None:
    actor = _rsl_actor()
    torch.save({"actor_state_dict": actor.state_dict(), "iter": 1}, tmp_path / "model_1.pt")
    out = tmp_path / "policy.pt"
    args = ["export", str(tmp_path / "model_1.pt"), "--prior-activation", "elu"]
    assert main([*args, "--format", "torchscript", "--out", str(out)]) == 0
    loaded = torch.jit.load(str(out))
    raw = torch.from_numpy(observations(5, scale=3.0))
    from tensordict import TensorDict

    with torch.no_grad():
        expected = actor(TensorDict({"policy": raw}, batch_size=[N_OBS]))
        close(loaded(raw), expected)
    # --policy POLICY as evaluate takes it: the same file; both or neither is an error.
    flag = ["export", "--policy", str(tmp_path / "model_1.pt"), "--prior-activation", "elu"]
    again = tmp_path / "again.pt"
    assert main([*flag, "--format", "torchscript", "--out", str(again)]) == 0
    close(torch.jit.load(str(again))(raw), expected)
    both = [*args, "--policy", str(tmp_path / "model_1.pt")]
    assert main([*both, "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert main(["export", "--format", "onnx", "--out", str(tmp_path / "y.onnx")]) == 2
    # --policy is an input too: --out onto it is refused
    assert main([*flag, "--format", "onnx", "--out", str(tmp_path / "model_1.pt"),
                 "--overwrite"]) == 2  # fmt: skip


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"squash_output": True, "use_expln": True, "full_std": False}],
    ids=["gsde", "gsde-squash-expln"],
)
def test_sb3_ppo_gsde_matches_sb3(tmp_path: Path, kwargs: dict) -> None:
    model = sb3.PPO(
        "MlpPolicy",
        "MountainCarContinuous-v0",
        use_sde=True,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        seed=0,
        policy_kwargs={"net_arch": [8], "log_std_init": 0.5, **kwargs},
    )
    model.learn(64)
    model.save(tmp_path / "gsde.zip")
    prior = load_prior(tmp_path / "gsde.zip")
    assert isinstance(prior, GSDEPrior) and isinstance(prior, Prior)
    raw = observations(2, scale=0.5)
    obs_t = torch.from_numpy(raw)
    with torch.no_grad():
        dist = model.policy.get_distribution(obs_t)
        predicted, _ = model.predict(raw, deterministic=True)
        if kwargs:  # squashed: the library's action is already in the bounds
            close(prior.act(obs_t), predicted)
            env_a = model.policy.unscale_action(dist.sample().numpy())
            scaled = torch.from_numpy(model.policy.scale_action(env_a))
            # bounds [-1, 1]: the rescaling Jacobian is 0
            close(prior.log_prob(obs_t, torch.from_numpy(env_a)), dist.log_prob(scaled))
        else:
            close(prior.act(obs_t), dist.distribution.mean)
            a = dist.sample()
            close(prior.log_prob(obs_t, a), dist.log_prob(a))


def test_sb3_a2c_and_categorical_ppo(tmp_path: Path) -> None:
    a2c = sb3.A2C("MlpPolicy", "Pendulum-v1", n_steps=8, seed=0, policy_kwargs={"net_arch": [8]})
    a2c.learn(32)
    a2c.save(tmp_path / "a2c.zip")
    prior = load_prior(tmp_path / "a2c.zip")
    assert prior.meta["source"]["algorithm"] == "A2C" and prior.actor.activation == "tanh"
    obs_t = torch.from_numpy(observations(3))
    with torch.no_grad():
        dist = a2c.policy.get_distribution(obs_t)
        a = dist.sample()
        close(prior.act(obs_t), dist.distribution.mean)
        close(prior.log_prob(obs_t, a), dist.log_prob(a))
    ppo = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1, seed=0)
    ppo.learn(32)
    ppo.save(tmp_path / "cartpole.zip")
    cat = load_prior(tmp_path / "cartpole.zip")
    assert isinstance(cat, BoltzmannQPrior) and cat.meta["distribution"]["kind"] == "categorical"
    obs_t = torch.from_numpy(observations(4))
    with torch.no_grad():
        dist = ppo.policy.get_distribution(obs_t)
        a = dist.sample()
        close(cat.log_prob(obs_t, a), dist.log_prob(a))
        assert torch.equal(cat.act(obs_t), dist.mode())


# ---- skrl (not installed: its documented layout and formulas, written out) ---------------------


class SkrlInstantiatedPolicy(nn.Module):
    """What skrl's model instantiator builds for ``layers: [16, 8], activations: elu``."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.net_container = nn.Sequential(
            nn.Linear(obs_dim, 16), nn.ELU(), nn.Linear(16, 8), nn.ELU()
        )
        self.policy_layer = nn.Linear(8, act_dim)
        self.log_std_parameter = nn.Parameter(torch.tensor([-25.0, 0.3]))  # -25: clamped to -20


def test_skrl_checkpoint_with_running_standard_scaler(tmp_path: Path) -> None:
    torch.manual_seed(3)
    policy = SkrlInstantiatedPolicy(4, 2)
    mean64 = torch.randn(4, dtype=torch.float64)
    var64 = torch.rand(4, dtype=torch.float64) * 3 + 0.1
    scaler = {"running_mean": mean64, "running_variance": var64, "current_count": torch.tensor(5e3)}
    run = tmp_path / "2026-01-01_00-00-00_ppo_torch"
    (run / "checkpoints").mkdir(parents=True)
    (run / "params").mkdir()
    (run / "params" / "agent.yaml").write_text(
        "models:\n  separate: true\n  policy:\n    class: GaussianMixin\n    clip_actions: false\n"
        "    clip_log_std: true\n    min_log_std: -20.0\n    max_log_std: 2.0\n    network:\n"
        "    - name: net\n      input: OBSERVATIONS\n      layers: [16, 8]\n"
        "      activations: elu\n"
        "    output: ACTIONS\n"
    )
    ckpt = run / "checkpoints" / "agent_100.pt"
    torch.save({"policy": policy.state_dict(), "value": {}, "state_preprocessor": scaler}, ckpt)
    assert detect_format(ckpt) == "skrl"
    prior = load_prior(ckpt)
    assert isinstance(prior, PolicyPrior) and prior.actor.activation == "elu"
    raw = torch.from_numpy(observations(4, scale=10.0))  # some beyond the scaler's clip of 5
    # skrl RunningStandardScaler._compute and GaussianMixin.act, written out
    x = torch.clamp((raw - mean64.float()) / (torch.sqrt(var64.float()) + 1e-8), min=-5.0, max=5.0)
    assert (x.abs() == 5.0).any()
    assert torch.equal(prior.obs_norm(raw), x)
    with torch.no_grad():
        mean = policy.policy_layer(policy.net_container(x))
        log_std = torch.clamp(policy.log_std_parameter, -20.0, 2.0)
        dist = torch.distributions.Normal(mean, log_std.exp())
        a = dist.sample()
        close(prior.act(raw), mean)
        close(prior.log_prob(raw, a), dist.log_prob(a).sum(-1))
    # round trip through a tailor checkpoint keeps the clipped scaler
    save_policy(tmp_path / "saved", prior.actor, prior.obs_norm, prior.meta)
    again = load_prior(tmp_path / "saved")
    assert again.obs_norm.clip == 5.0 and torch.equal(again.obs_norm(raw), x)


def test_vecnormalize_passed_as_the_prior(zoo: Path) -> None:
    with pytest.raises(TailorError, match="VecNormalize statistics, not a policy"):
        load_prior(zoo / "MountainCarContinuous-v0" / "vecnormalize.pkl")


def test_sb3_contrib_tqc_matches_and_recurrent_is_refused(tmp_path: Path) -> None:
    contrib = pytest.importorskip("sb3_contrib")
    model = contrib.TQC(
        "MlpPolicy",
        "Pendulum-v1",
        learning_starts=20,
        batch_size=16,
        seed=0,
        policy_kwargs={"net_arch": [8], "n_critics": 2, "n_quantiles": 5},
    )
    model.learn(40)
    model.save(tmp_path / "tqc.zip")
    prior = load_prior(tmp_path / "tqc.zip")
    assert isinstance(prior, SquashedGaussianPrior)
    assert prior.meta["source"]["algorithm"] == "TQC"
    raw = observations(3, scale=2.0)
    obs_t = torch.from_numpy(raw)
    close(prior.act(obs_t), model.predict(raw, deterministic=True)[0])
    with torch.no_grad():
        mean, log_std, _ = model.policy.actor.get_action_dist_params(obs_t)
        dist = model.policy.actor.action_dist.proba_distribution(mean, log_std)
        env_a = model.policy.unscale_action(dist.sample().numpy())
        expected = dist.log_prob(torch.from_numpy(model.policy.scale_action(env_a))) - np.log(2.0)
        close(prior.log_prob(obs_t, torch.from_numpy(env_a)), expected)
    rppo = contrib.RecurrentPPO(
        "MlpLstmPolicy",
        "Pendulum-v1",
        n_steps=16,
        batch_size=16,
        seed=0,
        policy_kwargs={"lstm_hidden_size": 8, "net_arch": [8]},
    )
    rppo.learn(16)
    rppo.save(tmp_path / "rppo.zip")
    with pytest.raises(
        TailorError, match=r"RecurrentActorCriticPolicy is not supported.*supported"
    ):
        load_prior(tmp_path / "rppo.zip")


def test_customizing_a_td3_prior_with_ppo(tmp_path: Path, capsys) -> None:
    """A deterministic SB3 prior with a given std customizes with PPO: its actor squashes the
    mean into the bounds, the critic warm-up leaves it exactly the prior, a resume continues
    it, and evaluate and export (ONNX, the squash included) take the run."""
    ort = pytest.importorskip("onnxruntime")
    model = sb3.TD3(
        "MlpPolicy", "MountainCarContinuous-v0", learning_starts=20, seed=0,
        policy_kwargs={"net_arch": [8]},
    )  # fmt: skip
    model.learn(40)
    zip_path = tmp_path / "p" / "td3.zip"
    zip_path.parent.mkdir()
    model.save(zip_path)
    out = tmp_path / "run"
    code = main(["customize", "--task", "mountaincar-noleft", "--prior", str(zip_path),
                 "--prior-std", "0.1", "--algo", "ppo", "--steps", "512", "--out", str(out),
                 "--no-progress"])  # fmt: skip
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "prior's std 0.1 " in said.out  # the unknown-temperature rule read the given std
    prior = load_prior(zip_path, std=0.1)
    actor, norm, meta = load_policy(out)
    assert [row["phase"] for row in _metrics(out)] == ["critic-warmup"]  # one iteration
    assert meta["architecture"]["action_bounds"] == {"low": [-1.0], "high": [1.0]}
    saved, want = actor.state_dict(), prior.actor.state_dict()
    assert saved.keys() == want.keys() and all(torch.equal(saved[k], want[k]) for k in want)
    obs = torch.from_numpy(observations(2, scale=2.0)) * torch.tensor([0.5, 0.05])
    predicted, _ = model.predict(obs.numpy(), deterministic=True)
    mean, log_std = actor(norm(obs))
    torch.testing.assert_close(mean, torch.from_numpy(predicted), atol=1e-6, rtol=0)
    assert torch.equal(log_std, prior.actor.log_std)
    # PPO moves the actor (resumed: the checkpoint keeps the bounds); still in the bounds.
    assert main(["customize", "--resume", str(out), "--steps", "8192", "--no-progress"]) == 0
    assert [row["phase"] for row in _metrics(out)] == ["critic-warmup", "ppo"]
    actor, norm, _ = load_policy(out)
    assert actor.bounds() == ([-1.0], [1.0])
    assert not torch.equal(actor.mean.weight, prior.actor.mean.weight)
    assert main(["evaluate", "--policy", str(out), "--episodes", "1"]) == 0
    onnx = tmp_path / "a.onnx"
    assert main(["export", "--policy", str(out), "--format", "onnx", "--out", str(onnx)]) == 0
    big = obs * 40.0  # far out: the raw head is large, only the squash keeps it in [-1, 1]
    got = ort.InferenceSession(str(onnx)).run(None, {"obs": big.numpy()})[0]
    with torch.no_grad():
        want_a = actor(norm(big))[0].numpy()
    np.testing.assert_allclose(got, want_a, atol=1e-6)
    assert np.abs(got).max() <= 1.0


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    import csv

    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))
