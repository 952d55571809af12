"""Imported SAC / DQN priors customized by residual SAC, residual soft DQN and MCTS (issue 14).

Every prior is made by Stable-Baselines3 itself (a few hundred steps), saved with
``model.save`` (and ``VecNormalize.save``), customized for a few hundred steps through
:func:`tailor.experiments.run.customize` and the CLI, then evaluated. The log-probabilities the
loops see are recorded and compared with SB3's own distribution on the same observations and
actions. The coefficient precedence (the prior's temperature, the task's table, the fallback)
is tested without training.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from sb3_models import tiny_sac
from tailor.cli import main
from tailor.envs import Task, get_task
from tailor.errors import TailorError
from tailor.experiments import run, runners
from tailor.experiments.prior_adapters import acting_q_prior
from tailor.methods import DEFAULT_TEMPERATURE, resolve
from tailor.policyfile import sac_actor
from tailor.priors import load_prior, prior_temperature

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402

SAC_FAST = {
    "learning_starts": 50,
    "batch_size": 16,
    "warm_start_steps": 20,
    "log_interval": 0,
    "hidden": (16, 16),
}
DQN_FAST = {"learning_starts": 50, "batch_size": 16, "hidden": (16, 16), "log_interval": 0}


def close(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    a = torch.as_tensor(np.asarray(a, dtype=np.float64))
    b = torch.as_tensor(np.asarray(b, dtype=np.float64))
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def sac_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SB3 SAC on MountainCarContinuous-v0, ent_coef="auto", Tanh, VecNormalize(clip_obs=5)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sac-mc")
    return tiny_sac(root, "MountainCarContinuous-v0", 300, clip_obs=5.0)


@pytest.fixture(scope="module")
def dqn_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SB3 DQN on CartPole-v1 with VecNormalize(clip_obs=3), statistics in ``stats.pkl``."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dqn-cp")
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0), clip_obs=3.0)
    model = sb3.DQN("MlpPolicy", env, learning_starts=50, seed=0, policy_kwargs={"net_arch": [16]})
    model.learn(300)
    model.save(root / "dqn.zip")
    env.save(str(root / "stats.pkl"))
    return root / "dqn.zip"


def _vecnorm(path: Path, env_id: str) -> VecNormalize:
    return VecNormalize.load(str(path), DummyVecEnv([lambda: gym.make(env_id)]))


def _spy(monkeypatch: pytest.MonkeyPatch, name: str, method: str) -> list[tuple]:
    """Wrap ``runners.<name>`` so that every ``prior.<method>(obs, ...)`` the loop makes is recorded
    as ``(args, result)``; returns the record list."""
    calls: list[tuple] = []
    real = getattr(runners, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        prior = kwargs["prior"]
        inner = getattr(prior, method)

        def recording(*a: torch.Tensor) -> torch.Tensor:
            out = inner(*a)
            calls.append((*(x.detach().clone() for x in a), out.detach().clone()))
            return out

        setattr(prior, method, recording)
        return real(*args, **kwargs)

    monkeypatch.setattr(runners, name, wrapped)
    return calls


# ---- residual SAC from an SB3 SAC prior ---------------------------------------------------------


def test_sb3_sac_temperature_is_read_from_the_zip(sac_zip: Path) -> None:
    prior = load_prior(sac_zip)
    model = sb3.SAC.load(sac_zip)
    alpha, source = prior_temperature(prior.meta)
    assert alpha == pytest.approx(float(model.log_ent_coef.detach().exp()), rel=1e-6)
    assert "log_ent_coef" in source
    assert alpha != 1.0  # learned away from SB3's initial value


def test_to_actor_is_the_sb3_policy(sac_zip: Path) -> None:
    prior = load_prior(sac_zip)
    actor = prior.to_actor()
    assert actor.activation == "tanh" and actor.obs_clip == 5.0 and actor.log_std_min == -20.0
    model = sb3.SAC.load(sac_zip)
    vn = _vecnorm(sac_zip.parent / "vecnormalize.pkl", "MountainCarContinuous-v0")
    raw = (np.random.default_rng(0).normal(size=(64, 2)) * [0.6, 0.2]).astype(np.float32)
    predicted, _ = model.predict(vn.normalize_obs(raw), deterministic=True)
    with torch.no_grad():
        close(actor.mean_action(torch.from_numpy(raw)), predicted)


def test_customize_sb3_sac_with_residual_sac(
    sac_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy(monkeypatch, "train_sac", "log_prob")
    out = run.customize(
        "mountaincar-noleft", "sac", sac_zip, 200, 0, tmp_path / "c", log=None, **SAC_FAST
    )
    assert len(calls) >= 2
    # The prior's log-probs the loop saw are SB3's own (bounds [-1, 1]: no rescaling term).
    model = sb3.SAC.load(sac_zip)
    vn = _vecnorm(sac_zip.parent / "vecnormalize.pkl", "MountainCarContinuous-v0")
    for obs, action, logp in calls[:4]:
        norm = torch.from_numpy(vn.normalize_obs(obs.numpy()))
        with torch.no_grad():
            mean, log_std, _ = model.policy.actor.get_action_dist_params(norm)
            dist = model.policy.actor.action_dist.proba_distribution(mean, log_std)
            expected = dist.log_prob(action)
        close(logp, expected, rtol=1e-4, atol=1e-4)
    meta, _ = run.load_policy(out)
    alpha = prior_temperature(load_prior(sac_zip).meta)[0]
    assert meta["coefficients"] == {"omega_prime": alpha, "alpha_hat": alpha}
    assert "prior temperature" in meta["coefficient_sources"]["omega_prime"]
    assert meta["prior_alpha"] == alpha and meta["actor_options"]["activation"] == "tanh"
    result = run.evaluate(out, episodes=1, max_steps=30)
    assert result["algo"] == "sac" and result["length"]["mean"] == 30


def test_sac_without_updates_saves_the_prior_itself(sac_zip: Path, tmp_path: Path) -> None:
    """No gradient step: the saved customized actor acts as the SB3 prior (save/load of the
    kept architecture: activation, clip, log-std clamp, normalizer affine)."""
    fast = {**SAC_FAST, "learning_starts": 1000}
    out = run.customize(
        "mountaincar-noleft", "sac", sac_zip, 40, 0, tmp_path / "c", log=None, **fast
    )
    meta, tensors = run.load_policy(out)
    actor = sac_actor(meta, tensors)
    prior = load_prior(sac_zip)
    obs = torch.from_numpy((np.random.default_rng(1).normal(size=(64, 2)) * 0.5).astype(np.float32))
    with torch.no_grad():
        close(actor.mean_action(obs), prior.act(obs))


def test_cli_customize_sac_with_omega(sac_zip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c"
    argv = ["customize", "--algo", "sac", "--task", "mountaincar-noleft", "--prior", str(sac_zip),
            "--steps", "120", "--omega", "0.5", "--out", str(out), "--no-progress",
            "--set", "learning_starts=60", "--set", "batch_size=16",
            "--set", "log_interval=0"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "prior temperature" in printed and "omega 0.5" in printed
    meta = json.loads((out / "policy.json").read_text())
    alpha = meta["prior_alpha"]
    assert meta["coefficients"]["omega_prime"] == pytest.approx(0.5 * alpha)
    assert meta["coefficients"]["alpha_hat"] == alpha
    # explicit --alpha-hat wins over the temperature rule, --omega-prime too
    argv2 = [*argv[:-6], "--alpha-hat", "0.3", "--omega-prime", "0.2", "--overwrite",
             "--set", "learning_starts=60", "--set", "log_interval=0"]  # fmt: skip
    assert main(argv2) == 0
    meta = json.loads((out / "policy.json").read_text())
    assert meta["coefficients"] == {"omega_prime": 0.2, "alpha_hat": 0.3}
    assert meta["coefficient_sources"] == {
        "omega_prime": "--omega-prime",
        "alpha_hat": "--alpha-hat",
    }
    assert main(["evaluate", "--policy", str(out), "--episodes", "1"]) == 0
    assert "success rate" in capsys.readouterr().out


# ---- residual soft DQN and MCTS from an SB3 DQN prior -------------------------------------------


def _dqn_options(dqn_zip: Path) -> dict[str, Any]:
    return {"temperature": 0.5, "normalizer": str(dqn_zip.parent / "stats.pkl")}


def _sb3_log_probs(dqn_zip: Path, obs: np.ndarray, tau: float = 0.5) -> torch.Tensor:
    model = sb3.DQN.load(dqn_zip)
    vn = _vecnorm(dqn_zip.parent / "stats.pkl", "CartPole-v1")
    with torch.no_grad():
        q = model.policy.q_net(torch.from_numpy(vn.normalize_obs(obs)))
    return torch.log_softmax(q / tau, dim=-1)


def test_customize_sb3_dqn_with_residual_soft_dqn(
    dqn_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy(monkeypatch, "train_soft_dqn", "log_probs")
    out = run.customize(
        "cartpole-centered", "dqn", dqn_zip, 200, 0, tmp_path / "c", log=None,
        prior_options=_dqn_options(dqn_zip), **DQN_FAST,
    )  # fmt: skip
    assert len(calls) > 100  # every acting step and every TD target
    batch = next(c for c in calls if c[0].shape[0] > 1)  # a replay batch of the TD target
    for obs, logp in (calls[0], batch):
        close(logp, _sb3_log_probs(dqn_zip, obs.numpy()), rtol=1e-5, atol=1e-6)
    meta, tensors = run.load_policy(out)
    # the temperature given (0.5) is not the task's (0.05): omega' = alpha_hat = 0.5
    assert meta["coefficients"] == {"omega_prime": 0.5, "alpha_hat": 0.5}
    assert meta["prior_alpha"] == 0.5 and meta["prior_net"]["normalizer"]["clip"] == 3.0
    # the saved policy acts with the same prior (network + normalizer + temperature)
    obs = calls[0][0]
    assert torch.equal(acting_q_prior(meta, tensors).log_probs(obs), calls[0][1])
    result = run.evaluate(out, episodes=2, max_steps=40)
    assert result["algo"] == "dqn" and result["episodes"] == 2


def test_mcts_with_an_sb3_dqn_prior(dqn_zip: Path, tmp_path: Path) -> None:
    from tailor.algos.mcts import numpy_log_prior

    out = run.customize(
        "cartpole-centered", "mcts", dqn_zip, 0, 0, tmp_path / "m", log=None,
        prior_options=_dqn_options(dqn_zip), simulations=8, horizon=2,
    )  # fmt: skip
    meta, tensors = run.load_policy(out)
    assert meta["coefficients"] == {"omega_prime": 0.5, "alpha_hat": 0.5}
    obs = (np.random.default_rng(2).normal(size=(16, 4)) * 2.0).astype(np.float32)
    q = acting_q_prior(meta, tensors)
    close(numpy_log_prior(q.qnet, q.alpha)(obs.astype(np.float64)), _sb3_log_probs(dqn_zip, obs))
    result = run.evaluate(out, episodes=1, max_steps=10)
    assert result["algo"] == "mcts"


def test_cli_customize_dqn_and_evaluate(dqn_zip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c"
    rc = main(
        ["customize", "--algo", "dqn", "--task", "cartpole-centered", "--prior", str(dqn_zip),
         "--prior-temperature", "0.5", "--prior-normalizer", str(dqn_zip.parent / "stats.pkl"),
         "--steps", "120", "--out", str(out), "--no-progress", "--set", "learning_starts=60",
         "--set", "log_interval=0"]
    )  # fmt: skip
    assert rc == 0
    assert "omega_prime=0.5, alpha_hat=0.5 (prior temperature 0.5" in capsys.readouterr().out
    assert main(["evaluate", "--policy", str(out), "--episodes", "1"]) == 0


# ---- the wrong kind of prior ---------------------------------------------------------------------


def test_wrong_kind_of_prior_is_refused(sac_zip: Path, dqn_zip: Path, tmp_path: Path) -> None:
    ppo = sb3.PPO("MlpPolicy", "MountainCarContinuous-v0", n_steps=32, batch_size=32, seed=0)
    ppo.learn(32)
    ppo.save(tmp_path / "ppo.zip")
    with pytest.raises(TailorError, match=r"tanh-squashed.*PPO policy \(gaussian\).*--algo ppo"):
        run.customize("mountaincar-noleft", "sac", tmp_path / "ppo.zip", 10, 0, tmp_path / "a")
    with pytest.raises(TailorError, match=r"Q-network or categorical prior.*SAC policy"):
        run.customize("cartpole-centered", "dqn", sac_zip, 10, 0, tmp_path / "b")
    with pytest.raises(TailorError, match=r"tanh-squashed.*DQN policy"):
        run.customize(
            "mountaincar-noleft", "sac", dqn_zip, 10, 0, tmp_path / "c",
            prior_options={"temperature": 1.0},
        )  # fmt: skip
    # a categorical PPO is a Boltzmann prior of the right kind, but Acrobot's sizes do not fit
    cat = sb3.PPO("MlpPolicy", "Acrobot-v1", n_steps=32, batch_size=32, seed=0)
    cat.learn(32)
    cat.save(tmp_path / "acrobot.zip")
    with pytest.raises(TailorError, match="observation size 6 and action size 3"):
        run.customize("cartpole-centered", "mcts", tmp_path / "acrobot.zip", 0, 0, tmp_path / "d")
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_wrong_kind_exits_2_on_the_cli(sac_zip: Path, tmp_path: Path, capsys) -> None:
    rc = main(["customize", "--algo", "dqn", "--task", "cartpole-centered", "--prior",
               str(sac_zip), "--steps", "10", "--out", str(tmp_path / "x"),
               "--no-progress"])  # fmt: skip
    assert rc == 2
    assert (
        "error: --algo dqn customizes a Q-network or categorical prior" in capsys.readouterr().err
    )


def test_prior_options_on_a_tailor_checkpoint_are_refused(tmp_path: Path) -> None:
    prior = run.train_prior("cartpole-centered", "dqn", 60, 0, tmp_path / "p", log=None, **DQN_FAST)
    with pytest.raises(TailorError, match="only apply to imported priors"):
        run.customize(
            "cartpole-centered", "dqn", prior, 10, 0, tmp_path / "c", log=None,
            prior_options={"temperature": 0.5},
        )  # fmt: skip


# ---- coefficients from the prior's temperature ---------------------------------------------------


def _resolve(task: str, meta: dict | None, omega: float | None = None, **given: float | None):
    t = get_task(task)
    layers = run.coefficient_layers(t, "residual", meta, omega)
    return resolve("residual", layers, flags=True, **given)


SB3_AT_02 = {"temperature": {"value": 0.2, "source": "SB3 ent_coef (fixed)"}}


def test_temperature_rule_and_its_precedence() -> None:
    # an imported prior at 0.2 on mountaincar-noleft (the task's table is for alpha 0.1)
    m = _resolve("mountaincar-noleft", SB3_AT_02)
    assert m.coefficients == {"omega_prime": 0.2, "alpha_hat": 0.2}
    assert m.sources["omega_prime"].startswith("prior temperature 0.2 (SB3 ent_coef")
    m = _resolve("mountaincar-noleft", SB3_AT_02, omega=0.25)
    assert m.coefficients == {"omega_prime": 0.05, "alpha_hat": 0.2}
    m = _resolve("mountaincar-noleft", SB3_AT_02, alpha_hat=0.3)
    assert m.coefficients == {"omega_prime": 0.2, "alpha_hat": 0.3}
    assert m.sources == {"omega_prime": m.sources["omega_prime"], "alpha_hat": "--alpha-hat"}
    # a tailor prior at the task's own temperature keeps the task's calibrated table ...
    tailor_prior = {"method": "soft", "coefficients": {"omega_prime": 0.0, "alpha_hat": 0.05}}
    m = _resolve("cartpole-centered", tailor_prior)
    assert m.coefficients == {"omega_prime": 0.02, "alpha_hat": 0.05}
    assert m.sources == {
        "omega_prime": "task 'cartpole-centered'",
        "alpha_hat": "task 'cartpole-centered'",
    }
    # ... unless --omega asks for the rule, or the prior was trained at another temperature
    assert _resolve("cartpole-centered", tailor_prior, omega=0.4).coefficients == {
        "omega_prime": pytest.approx(0.02),
        "alpha_hat": 0.05,
    }
    hot = {"method": "soft", "coefficients": {"alpha": 0.5}}
    assert _resolve("cartpole-centered", hot).coefficients == {"omega_prime": 0.5, "alpha_hat": 0.5}
    # unknown temperature (an SB3 PPO prior): the task's table
    assert _resolve("mountaincar-noleft", {"source": {"algorithm": "PPO"}}).coefficients == {
        "omega_prime": 0.1,
        "alpha_hat": 0.1,
    }


def test_kl_and_greedy_take_the_temperature_too() -> None:
    t = get_task("mountaincar-noleft")
    assert resolve("kl", run.coefficient_layers(t, "kl", SB3_AT_02)).coefficients == {"beta": 0.2}
    layers = run.coefficient_layers(t, "greedy", SB3_AT_02)
    assert resolve("greedy", layers).coefficients == {"alpha_hat": 0.2}
    with pytest.raises(TailorError, match="--omega weighs the prior's task in --method residual"):
        run.coefficient_layers(t, "kl", SB3_AT_02, omega=0.5)
    with pytest.raises(TailorError, match="--omega needs the prior's temperature"):
        run.coefficient_layers(t, "residual", {"source": {}}, omega=0.5)


def test_a_greedy_prior_has_no_temperature() -> None:
    assert prior_temperature({"method": "no-entropy", "coefficients": {}}) is None
    assert prior_temperature({"method": "soft", "coefficients": {"alpha_hat": 0.0}}) is None
    assert prior_temperature({"method": "end-entropy", "coefficients": {"alpha": 0.1}}) is None
    assert prior_temperature({"method": "residual", "coefficients": {"alpha_hat": 0.3}}) == (
        0.3,
        "the prior's metadata (residual, alpha_hat)",
    )


# ---- no method refuses to run for want of a coefficient -----------------------------------------


BARE = Task(
    name="bare-pointmass",
    env_id="tailor/PointMass-v0",
    addon=lambda env, action, info: 0.0,
    statistic=lambda env, action, info: 0.0,
)


@pytest.mark.parametrize(
    ("method", "want"),
    [
        ("soft", {"alpha": DEFAULT_TEMPERATURE}),
        ("end-entropy", {"alpha": DEFAULT_TEMPERATURE}),
        ("no-entropy", {}),
        ("kl", {"beta": DEFAULT_TEMPERATURE}),
        ("residual", {"omega_prime": DEFAULT_TEMPERATURE, "alpha_hat": DEFAULT_TEMPERATURE}),
    ],
)
def test_task_without_coefficients_gets_the_fallback(method: str, want: dict) -> None:
    m = run.task_method(BARE, method)
    assert m.coefficients == want
    assert all("tailor's default temperature" in m.sources[k] for k in want)
    # the built-in tables still come first
    assert run.task_method("halfcheetah-hindleg", "soft").coefficients == {"alpha": 0.13472}


def test_cli_train_on_a_task_without_coefficients(tmp_path: Path, capsys) -> None:
    tasks = tmp_path / "bare.py"
    tasks.write_text(
        textwrap.dedent("""
        from tailor.envs import Task, register_task
        register_task(Task(name="bare-pm", env_id="tailor/PointMass-v0",
                           addon=lambda env, action, info: 0.0,
                           statistic=lambda env, action, info: 0.0), overwrite=True)
    """)
    )
    out = tmp_path / "run"
    rc = main(["train", "--tasks-file", str(tasks), "--task", "bare-pm", "--method", "soft",
               "--steps", "128", "--num-envs", "2", "--out", str(out),
               "--no-progress"])  # fmt: skip
    assert rc == 0
    assert "alpha=0.01 (tailor's default temperature" in capsys.readouterr().out
    meta = json.loads((out / "policy.json").read_text())
    assert meta["coefficients"] == {"alpha": DEFAULT_TEMPERATURE}
    assert "tailor's default temperature" in meta["coefficient_sources"]["alpha"]


def test_inspect_names_the_algo_and_the_temperature(
    sac_zip: Path, dqn_zip: Path, tmp_path: Path, capsys
) -> None:
    assert main(["inspect", str(sac_zip), "--json", str(tmp_path / "s.json")]) == 0
    assert "customize     --algo sac" in capsys.readouterr().out
    info = json.loads((tmp_path / "s.json").read_text())
    assert info["customize_with"] == ["sac"]
    assert info["temperature"]["value"] == prior_temperature(load_prior(sac_zip).meta)[0]
    assert main(["inspect", str(dqn_zip), "--prior-temperature", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "--algo dqn, --algo mcts" in out and "temperature   0.5 (temperature given)" in out


# ---- the KL budget of a SAC customization from a prior of known temperature ---------------------


def test_sac_kl_controller_schedule(sac_zip: Path, tmp_path: Path) -> None:
    """A KL far below the target lowers the scale by exactly ``1 - 0.2 * every / horizon`` per
    update, from the end of the warm start (step 70) every ``kl_every`` steps: updates at steps
    80, 90, ..., 190 of a 200-step run (learning phases on even steps) = 12 updates."""
    fast = {**SAC_FAST, "kl_target": 1e6, "kl_every": 10, "kl_horizon": 100}
    out = run.customize(
        "mountaincar-noleft", "sac", sac_zip, 200, 0, tmp_path / "c", log=None, **fast
    )
    stats = run.load_policy(out)[0]["train_stats"]
    assert stats["kl_scale"] == pytest.approx(0.98**12, rel=1e-12)
    assert np.isfinite(stats["kl_held"])
    # A critic warm-up longer than the warm start moves the controller's start with it: 100.
    fast["critic_warmup_steps"] = 50
    out = run.customize(
        "mountaincar-noleft", "sac", sac_zip, 200, 0, tmp_path / "d", log=None, **fast
    )
    assert run.load_policy(out)[0]["train_stats"]["kl_scale"] == pytest.approx(0.98**9, rel=1e-12)
    # kl_scale_max caps every update: min(0.98, 0.5), then 0.5 * 0.98 per update.
    fast = {**fast, "critic_warmup_steps": 0, "kl_scale_max": 0.5}
    out = run.customize(
        "mountaincar-noleft", "sac", sac_zip, 200, 0, tmp_path / "e", log=None, **fast
    )
    assert run.load_policy(out)[0]["train_stats"]["kl_scale"] == pytest.approx(0.5 * 0.98**11)


def test_sac_kl_controller_scales_the_coefficients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scale multiplies omega' and alpha_hat in the critic target and the actor loss."""
    from tailor.algos import sac

    seen: list[tuple[float, float]] = []
    real = sac.sac_actor_loss

    def spy(logp, q1, q2, log_prior, w, alpha_hat):
        seen.append((w, alpha_hat))
        return real(logp, q1, q2, log_prior, w, alpha_hat)

    monkeypatch.setattr(sac, "sac_actor_loss", spy)
    method = resolve("residual", [("t", {"omega_prime": 0.2, "alpha_hat": 0.3})])
    soft = run.task_method("pointmass", "soft")
    prior_actor, _ = sac.train_sac(
        "pointmass", soft, sac.SACConfig(total_steps=60, **SAC_FAST), log=None
    )
    seen.clear()  # the prior's own training
    cfg = sac.SACConfig(total_steps=200, kl_target=1e6, kl_every=10, kl_horizon=100, **SAC_FAST)
    sac.train_sac("pointmass", method, cfg, prior=prior_actor, log=None)
    # warm start (x10 on omega') until step 70, then the scale 0.98^k from step 80 on
    assert seen[0] == pytest.approx((2.0, 0.3))
    assert seen[-1] == pytest.approx((0.2 * 0.98**12, 0.3 * 0.98**12))
    ratios = {round(w / a, 12) for w, a in seen[len(seen) // 2 :]}
    assert ratios == {round(0.2 / 0.3, 12)}


def test_known_temperature_sac_gets_the_kl_budget(sac_zip: Path, tmp_path: Path) -> None:
    """No coefficient given: kl_target = 0.05 nats per action dimension, said in the output;
    --omega or --omega-prime leave the coefficients to them, a kl_target of theirs is held."""
    lines: list[str] = []
    out = run.customize(
        "mountaincar-noleft", "sac", sac_zip, 100, 0, tmp_path / "a", log=lines.append, **SAC_FAST
    )
    cfg = run.load_policy(out)[0]["config"]
    assert cfg["kl_target"] == pytest.approx(0.05) and cfg["kl_horizon"] == 4096
    assert cfg["kl_scale_max"] == 1.0
    assert any("KL to the prior held at 0.05 nats/step" in line for line in lines)
    assert any("KL controller: omega'=" in line for line in lines)
    for i, given in enumerate(({"omega": 1.0}, {"omega_prime": 0.1}, {"kl_target": 0.2})):
        out = run.customize(
            "mountaincar-noleft", "sac", sac_zip, 60, 0, tmp_path / f"b{i}", log=None,
            **SAC_FAST, **given,
        )  # fmt: skip
        cfg = run.load_policy(out)[0]["config"]
        # a target of the user's is held both ways (no cap); no rule without the prior's layer
        assert cfg["kl_target"] == given.get("kl_target", 0.0) and cfg["kl_scale_max"] is None
