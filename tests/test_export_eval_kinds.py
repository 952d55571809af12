"""`tailor export` and `tailor evaluate` on every policy kind tailor writes or reads: customized
DQN and SAC runs export what they are evaluated with (checked in onnxruntime), MCTS says why it
cannot, and an imported Discrete-action prior evaluates greedily."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tailor.cli import main
from tailor.experiments import run
from tailor.experiments.evaluation import GreedyQ, policy_module

ort = pytest.importorskip("onnxruntime")
FAST = {"learning_starts": 100, "batch_size": 16, "hidden": (16, 16), "log_interval": 0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rql")
    dqn_p = run.train_prior("cartpole-centered", "dqn", 300, 0, root / "dqn-p", log=None, **FAST)
    dqn_c = run.customize("cartpole-centered", "dqn", dqn_p, 300, 1, root / "dqn-c", log=None,
                          **FAST)  # fmt: skip
    sac_fast = {**FAST, "warm_start_steps": 20}
    sac_p = run.train_prior("mountaincar-noleft", "sac", 300, 0, root / "sac-p", log=None,
                            **sac_fast)  # fmt: skip
    mcts = run.customize("cartpole-centered", "mcts", dqn_p, 0, 0, root / "mcts", log=None,
                         simulations=4, horizon=2)  # fmt: skip
    return {"dqn-prior": dqn_p, "dqn": dqn_c, "sac": sac_p, "mcts": mcts}


@pytest.mark.parametrize("kind", ["dqn", "dqn-prior", "sac"])
def test_export_of_a_dqn_or_sac_run_is_what_evaluate_acts_with(
    runs: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    out = tmp_path / f"{kind}.onnx"
    assert main(["export", str(runs[kind]), "--format", "onnx", "--out", str(out)]) == 0
    module = policy_module(runs[kind])
    obs = np.random.default_rng(0).normal(size=(32, module.obs_dim)).astype(np.float32)
    got = ort.InferenceSession(str(out)).run(None, {"obs": obs})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(obs)).numpy()
    if isinstance(module, GreedyQ):
        assert got.dtype == np.int64 and np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, atol=1e-5)
    if kind == "dqn":  # the residual policy: the prior's term is part of the action
        assert module.prior_q is not None and module.omega_prime > 0


def test_export_of_an_mcts_run_says_why_not(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    argv = ["export", str(runs["mcts"]), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]
    assert main(argv) == 2
    assert "searching a model of the environment at every step" in capsys.readouterr().err


def test_evaluate_an_imported_categorical_prior_on_a_discrete_task(tmp_path: Path, capsys) -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0,
                    policy_kwargs={"net_arch": [8]})  # fmt: skip
    model.learn(64)
    model.save(tmp_path / "ppo.zip")
    argv = ["evaluate", "--policy", str(tmp_path / "ppo.zip"), "--task", "cartpole-centered"]
    assert main([*argv, "--episodes", "2"]) == 0
    assert "greedy (argmax action)" in capsys.readouterr().out
    result = run.evaluate(tmp_path / "ppo.zip", "cartpole-centered", 2, seed=3)
    assert result["episodes"] == 2 and result["algo"] == "prior"
