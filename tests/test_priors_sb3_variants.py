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
from tailor.priors.prior import PolicyPrior

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


def _ars(root: Path, env_id: str, policy: str, **kwargs) -> tuple[object, Path]:
    """An sb3-contrib ARS trained a few steps on ``env_id``, its weights then drawn at random
    (ARS starts from zero: a few steps leave them near it), saved."""
    torch.set_num_threads(1)
    model = sb3_contrib.ARS(policy, env_id, n_delta=2, seed=0, **kwargs)
    model.learn(400)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.policy.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    path = root / f"ars-{policy}-{env_id}.zip"
    model.save(path)
    return model, path


def _rewrite_weights(src: Path, dst: Path, rename: dict[str, str]) -> Path:
    """``src`` with its ``policy.pth`` keys renamed (an older library's layout)."""
    import io
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            raw = zin.read(name)
            if name == "policy.pth":
                state = torch.load(io.BytesIO(raw), weights_only=True)
                buf = io.BytesIO()
                torch.save({rename.get(k, k): v for k, v in state.items()}, buf)
                raw = buf.getvalue()
            zout.writestr(name, raw)
    return dst


def test_ars_linear_prior_is_sb3s_action_with_the_given_std(tmp_path: Path) -> None:
    """The RL Zoo's MuJoCo ARS agents: a linear policy without bias or squash (SB3 clips the
    action to the bounds); as a prior N(W s, std^2), the unclipped W s its mean."""
    model, path = _ars(tmp_path, "Pendulum-v1", "LinearPolicy")
    prior = load_prior(path, std=0.2)
    assert isinstance(prior, PolicyPrior) and not prior.actor.bounded
    assert prior.meta["source"]["algorithm"] == "ARS" and prior.actor.hidden == ()
    obs = _obs(3, seed=1) * 4.0  # large enough that some actions leave [-2, 2]
    with torch.no_grad():
        raw = model.policy(obs)
    mean = prior.act(obs)
    torch.testing.assert_close(mean, raw, rtol=1e-6, atol=1e-6)
    assert (raw.abs() > 2.0).any()
    predicted, _ = model.predict(obs.numpy(), deterministic=True)  # SB3 clips to the bounds
    np.testing.assert_allclose(mean.clamp(-2.0, 2.0).numpy(), predicted, atol=1e-6)
    a = mean + 0.1
    want = torch.distributions.Normal(raw, 0.2).log_prob(a).sum(-1)
    torch.testing.assert_close(prior.log_prob(obs, a), want)
    # sb3-contrib < 1.7 (the RL Zoo's files): a bare Linear, ``action_net.weight``
    old = _rewrite_weights(path, tmp_path / "old.zip", {"action_net.0.weight": "action_net.weight"})
    torch.testing.assert_close(load_prior(old, std=0.2).act(obs), mean)


def test_ars_mlp_prior_squashes_into_the_bounds(tmp_path: Path) -> None:
    """ARS's MlpPolicy ends in a Tanh and SB3 rescales it into the bounds: the prior's mean is
    SB3's action."""
    model, path = _ars(tmp_path, "Pendulum-v1", "MlpPolicy", policy_kwargs={"net_arch": [8]})
    prior = load_prior(path, std=[0.3])
    assert prior.actor.bounded and prior.meta["architecture"]["hidden"] == [8]
    obs = _obs(3, seed=2) * 3.0
    predicted, _ = model.predict(obs.numpy(), deterministic=True)
    torch.testing.assert_close(prior.act(obs), torch.from_numpy(predicted), rtol=1e-5, atol=1e-5)

    def unsquashed(data: dict) -> None:
        data["policy_kwargs"]["squash_output"] = False

    with pytest.raises(TailorError, match=r"squash_output=False.*sb3-contrib version"):
        load_prior(rewrite_data(path, tmp_path / "u.zip", unsquashed), std=0.3)


@pytest.mark.parametrize(
    ("env_id", "needs", "wrong", "says"),
    [
        ("Pendulum-v1", r"ARS policy, which is deterministic.*--prior-std", {"temperature": 1.0},
         r"temperature= is for .* not ARS on Box"),
        ("CartPole-v1", r"Discrete actions.*--prior-temperature", {"std": 0.1},
         r"std= is for .* on Discrete actions"),
    ],
)  # fmt: skip
def test_ars_asks_for_the_option_of_its_action_space(
    tmp_path: Path, env_id: str, needs: str, wrong: dict, says: str
) -> None:
    """Box actions need a std, Discrete ones a temperature; the other option is refused."""
    _, path = _ars(tmp_path, env_id, "LinearPolicy")
    with pytest.raises(TailorError, match=needs):
        load_prior(path)
    with pytest.raises(TailorError, match=says):
        load_prior(path, **wrong)


def test_ars_on_discrete_actions_is_a_boltzmann_prior(tmp_path: Path) -> None:
    model, path = _ars(tmp_path, "CartPole-v1", "LinearPolicy")
    prior = load_prior(path, temperature=0.5)
    assert isinstance(prior, BoltzmannQPrior) and prior.temperature == 0.5
    obs = _obs(4, seed=3)
    with torch.no_grad():
        logits = model.policy.action_net(obs)
    torch.testing.assert_close(prior.log_probs(obs), torch.log_softmax(logits / 0.5, -1))
    predicted, _ = model.predict(obs.numpy(), deterministic=True)
    assert np.array_equal(prior.act(obs).numpy(), predicted)


def test_an_ars_prior_customizes_with_ppo(tmp_path: Path) -> None:
    from tailor.experiments import run
    from tailor.experiments.algo_choice import algo_for_prior
    from tailor.policyfile import load_policy

    (tmp_path / "p").mkdir()
    model, path = _ars(tmp_path / "p", "MountainCarContinuous-v0", "LinearPolicy")
    assert algo_for_prior(path, {"std": 0.1}) == "ppo"
    out = run.customize("mountaincar-noleft", "ppo", path, 256, 0, tmp_path / "c", log=None,
                        prior_options={"std": 0.1})  # fmt: skip
    actor, norm, _ = load_policy(out)  # the critic warm-up: still the prior's actor
    obs = _obs(2, seed=4)
    predicted, _ = model.predict(obs.numpy(), deterministic=True)
    torch.testing.assert_close(actor(norm(obs))[0].clamp(-1, 1), torch.from_numpy(predicted))


def test_a_deterministic_prior_evaluates_and_inspects_without_a_std(tmp_path: Path, capsys) -> None:
    """Its own action does not depend on the std a prior would need: deterministic evaluation
    takes the file as it is, with the same numbers as with any std; --stochastic asks for it."""
    from tailor.cli import main

    _, path = _ars(tmp_path, "MountainCarContinuous-v0", "LinearPolicy")
    base = ["evaluate", "--policy", str(path), "--task", "mountaincar-noleft", "--episodes", "2"]
    assert main([*base, "--json", str(tmp_path / "a.json")]) == 0
    assert main([*base, "--json", str(tmp_path / "b.json"), "--prior-std", "0.7"]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["basic"] == b["basic"] and a["addon"] == b["addon"]
    capsys.readouterr()
    assert main([*base, "--stochastic"]) == 2
    assert "--prior-std SIGMA" in capsys.readouterr().err
    assert main(["inspect", str(path)]) == 0  # described, saying what it needs to be a prior
    said = capsys.readouterr().out
    assert "deterministic: a prior only with --prior-std" in said
    assert "--algo ppo (with --prior-std)" in said
