"""Non-finite means stop: a NaN/inf reward, loss, parameter or statistic aborts with a TailorError
and keeps the last good checkpoint (PPO) or saves nothing (DQN, SAC, LM); files holding NaN are
refused by every reader (evaluate, video, customize); table/plot refuse missing or corrupt sweep
directories; LM model directories with pickled weights are refused without the explicit flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tailor.algos import ppo_learner
from tailor.algos.finite import check_reward, check_trained
from tailor.algos.ppo import PPOConfig, train
from tailor.cli import main
from tailor.errors import TailorError
from tailor.methods import resolve
from tailor.nets import non_finite_state
from tailor.policyfile import load_policy, save_policy
from tailor.rundir import latest_checkpoint

CONFIG = dict(
    total_steps=8 * 16 * 5,
    num_envs=8,
    num_steps=16,
    checkpoint_every=1,
    tensorboard=False,
    hidden=(8, 8),
)


def _poison_update(monkeypatch, at_iteration: int, poison) -> None:
    """Make the real PPO update of ``at_iteration`` (1-based) leave ``poison(learner)`` behind."""
    real = ppo_learner.PPOLearner.update
    calls = {"n": 0}

    def update(self, *args, **kwargs):
        stats = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == at_iteration:
            poison(self)
        return stats

    monkeypatch.setattr(ppo_learner.PPOLearner, "update", update)


@pytest.mark.parametrize(
    ("poison", "name"),
    [
        (lambda lr: lr.actor.mean.weight.data.__setitem__((0, 0), float("nan")), "actor."),
        (lambda lr: lr.critic.net[0].bias.data.fill_(float("inf")), "critic."),
        (lambda lr: lr.obs_norm.var.fill_(float("nan")), "obs_norm.var"),
        (lambda lr: lr.return_norm.var.fill_(float("inf")), "return_norm.var"),
    ],
)
def test_ppo_stops_on_a_non_finite_state_and_keeps_the_last_checkpoint(
    monkeypatch, tmp_path: Path, poison, name: str
) -> None:
    _poison_update(monkeypatch, 3, poison)
    with pytest.raises(TailorError) as info:
        train("pointmass", resolve("no-entropy"), PPOConfig(**CONFIG), tmp_path)
    message = str(info.value)
    assert name in message and "iteration 3" in message
    assert "the last good checkpoint (step 256) is kept" in message
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.step == 256
    actor, norm, _ = load_policy(tmp_path)  # the kept policy is finite (load_policy checks)
    assert non_finite_state({"actor": actor, "norm": norm}) is None


def test_ppo_stops_on_a_non_finite_method_reward(monkeypatch, tmp_path: Path) -> None:
    from tailor.algos import ppo

    real = ppo._rollout_reward

    def reward(method, buf):
        out = real(method, buf)
        out[3, 1] = float("-inf")  # e.g. log pi_prior of an action the prior rules out
        return out

    monkeypatch.setattr(ppo, "_rollout_reward", reward)
    with pytest.raises(TailorError, match="reward became -inf at iteration 1"):
        train("pointmass", resolve("no-entropy"), PPOConfig(**CONFIG), tmp_path)
    assert latest_checkpoint(tmp_path) is None


def test_cli_train_with_an_overflowing_addon_exits_2(capsys, tmp_path: Path) -> None:
    """A task whose add-on is finite but huge (1e308): its returns overflow; never a traceback,
    never a saved non-finite policy."""
    tasks = tmp_path / "huge.py"
    tasks.write_text(
        "import numpy as np\n"
        "from dataclasses import replace\n"
        "from tailor.envs import get_task, register_task\n"
        "base = get_task('pointmass')\n"
        "def terms(batch):\n"
        "    n = batch.qpos.shape[0]\n"
        "    return np.full(n, 1e308), np.zeros(n)\n"
        "register_task(replace(base, name='pointmass-huge', vector_terms=terms,\n"
        "              addon=lambda env, a, info: 1e308), overwrite=True)\n"
    )
    out = tmp_path / "run"
    argv = ["train", "--tasks-file", str(tasks), "--task", "pointmass-huge", "--method", "full"]
    fast = ["--num-envs", "8", "--num-steps", "16", "--checkpoint-every", "1", "--no-progress"]
    code = main([*argv, *fast, "--steps", "640", "--out", str(out)])
    err = capsys.readouterr().err
    # (numpy may warn about the overflow on the way; the last line is the error)
    assert code == 2 and err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    if out.exists() and latest_checkpoint(out) is not None:
        load_policy(out)  # whatever was kept is finite


def test_finite_helpers() -> None:
    check_reward("SAC", 1.5, 0)
    with pytest.raises(TailorError, match="reward is nan at environment step 8"):
        check_reward("SAC", float("nan"), 7)
    net = nn.Linear(2, 2)
    check_trained("soft DQN", {"q": net})
    net.bias.data[1] = float("inf")
    with pytest.raises(TailorError, match=r"soft DQN: q\.bias became NaN or infinite"):
        check_trained("soft DQN", {"q": net})


def test_soft_dqn_refuses_to_return_a_diverged_network(monkeypatch) -> None:
    from tailor.algos import soft_dqn
    from tailor.algos.soft_dqn import SoftDQNConfig, train_soft_dqn

    real = soft_dqn.mlp

    def poisoned(*args, **kwargs):
        net = real(*args, **kwargs)
        net[0].weight.data[0, 0] = float("nan")
        return net

    monkeypatch.setattr(soft_dqn, "mlp", poisoned)
    cfg = SoftDQNConfig(total_steps=50, learning_starts=1000, log_interval=0)
    with pytest.raises(
        TailorError, match=r"soft DQN: q\.0\.weight became NaN or infinite by environment step 1"
    ):
        train_soft_dqn("cartpole-centered", resolve("soft", alpha=0.1), cfg, log=None)


def _nan_policy(tmp_path: Path) -> Path:
    cfg = PPOConfig(**{**CONFIG, "total_steps": 128})
    result = train("pointmass", resolve("no-entropy"), cfg, None)
    result.actor.mean.weight.data[0, 0] = float("nan")
    run = tmp_path / "nan-policy"
    run.mkdir()
    save_policy(run, result.actor, result.obs_norm, {"task": "pointmass", "steps": 128})
    return run


def test_nan_policy_is_refused_by_evaluate_video_and_customize(capsys, tmp_path: Path) -> None:
    run = _nan_policy(tmp_path)
    commands = [
        ["evaluate", "--policy", str(run), "--episodes", "1"],
        ["video", "--policy", str(run), "--out", str(tmp_path / "v.gif")],
        [
            *("customize", "--task", "pointmass", "--method", "residual", "--prior", str(run)),
            *("--steps", "128", "--out", str(tmp_path / "c"), "--no-progress"),
        ],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "holds NaN or infinite values" in err, (argv, err)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("command", ["table", "plot"])
def test_table_and_plot_refuse_missing_empty_or_corrupt_directories(
    capsys, tmp_path: Path, command: str
) -> None:
    from tailor.experiments.presets import expand
    from tailor.experiments.sweep import RESULT_FILE

    cases = {"does not exist": tmp_path / "missing", "no finished table1 jobs": tmp_path}
    (tmp_path / "file").write_text("x")
    cases["is not a directory"] = tmp_path / "file"
    for expected, directory in cases.items():
        assert main([command, "table1", str(directory)]) == 2
        assert expected in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()  # plot made no plots/ directory there
    job = expand("table1", "local")[0]
    (tmp_path / job.id).mkdir(parents=True)
    (tmp_path / job.id / RESULT_FILE).write_text('{"id": ')
    assert main([command, "table1", str(tmp_path)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    (tmp_path / job.id / RESULT_FILE).write_text(json.dumps([1, 2]))
    assert main([command, "table1", str(tmp_path)]) == 2
    assert "not a result record" in capsys.readouterr().err


# --- language models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from test_lm_model import tiny_model_dir

    torch.set_num_threads(1)
    return tiny_model_dir(tmp_path_factory)


@pytest.mark.parametrize("method", ["residual", "dpo"])
def test_lm_huge_reward_stops_or_saves_a_finite_model(
    capsys, tmp_path: Path, tiny_lm, method
) -> None:
    """1e308 is a finite float64 reward but an infinite float32 one: token PPO used to save an
    all-NaN model with exit code 0; now it stops. DPO only ranks samples by the reward, so it
    trains, and what it saves is finite (load_model refuses NaN weights)."""
    from tailor.lm.model import load_model

    rewards = tmp_path / "huge.py"
    rewards.write_text(
        "from tailor.lm import register_reward\n"
        "register_reward('huge-test', lambda p, c: 1e308 if len(c) % 2 else -1e308, True)\n"
    )
    out = tmp_path / "out"
    argv = ["lm", "customize", "--prior", str(tiny_lm), "--rewards-file", str(rewards)]
    argv += ["--reward", "huge-test", "--method", method, "--steps", "2", "--batch-size", "8"]
    code = main([*argv, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    if method == "dpo":
        assert code == 0, err
        load_model(out)
        return
    assert code == 2 and err.startswith("error: ") and "too large" in err, err
    assert not out.exists()


def test_lm_model_with_nan_weights_is_refused(tmp_path: Path, tiny_lm) -> None:
    from tailor.lm.model import load_model, load_tokenizer, save_model

    model = load_model(tiny_lm)
    next(model.parameters()).data.view(-1)[0] = float("nan")
    save_model(model, load_tokenizer(tiny_lm), tmp_path / "nan")
    with pytest.raises(TailorError, match="holds NaN or infinite values"):
        load_model(tmp_path / "nan")


def test_lm_pickled_weights_need_the_explicit_flag(capsys, tmp_path: Path, tiny_lm) -> None:
    import shutil

    from safetensors.torch import load_file

    from tailor.lm.model import load_model

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_lm, pickled)
    weights = pickled / "model.safetensors"
    torch.save(load_file(weights), pickled / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(TailorError, match=r"pytorch_model\.bin, a pickle file"):
        load_model(pickled)
    assert main(["lm", "sample", "--model", str(pickled), "-n", "1"]) == 2
    assert "--allow-pickle-weights" in capsys.readouterr().err
    assert main(["lm", "sample", "--model", str(pickled), "-n", "1", "--allow-pickle-weights"]) == 0
    reference = load_model(tiny_lm)
    loaded = load_model(pickled, allow_pickle=True)
    for a, b in zip(reference.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)


# --- crash-consistent saves of the off-policy kinds -----------------------------------------------


def test_dqn_policy_is_committed_as_a_checkpoint(tmp_path: Path) -> None:
    """DQN/SAC/MCTS policies go through rundir.commit_checkpoint (manifest + step directory),
    like PPO's; the top-level policy.safetensors is its published copy."""
    from tailor.experiments import run

    out = run.train_prior(
        "cartpole-centered", "dqn", 200, 0, tmp_path / "dqn", log=None, learning_starts=50
    )
    ckpt = latest_checkpoint(out)
    assert ckpt is not None and ckpt.step == 200
    assert (
        ckpt.files["policy.safetensors"].read_bytes() == (out / "policy.safetensors").read_bytes()
    )
    assert json.loads((out / "policy.json").read_text())["algo"] == "dqn"
    assert run.policy_kind(out) == "dqn"


def test_a_failing_vector_terms_is_an_error_naming_the_task() -> None:
    """The fast path runs the task's (user's) vector_terms: its exception names the task."""
    from dataclasses import replace

    from tailor.envs import VecEnv, get_task

    def broken(batch):
        return batch.no_such_field, None

    task = replace(get_task("pointmass"), name="pointmass-broken-terms", vector_terms=broken)
    env = VecEnv(task, 2)
    env.reset()
    with pytest.raises(TailorError, match="'pointmass-broken-terms': its vector_terms function"):
        env.step(np.zeros((2, env.act_dim)))


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_signal_in_soft_dqn_saves_what_was_learnt_then_exits(
    tmp_path: Path, stop: str, code: int
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "dqn"
    cmd = [sys.executable, "-m", "tailor.cli", "train", "--algo", "dqn"]
    cmd += ["--task", "cartpole-centered", "--steps", "500000", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out / "run.json").is_file():  # claimed: training has started
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    signum = getattr(signal, stop)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    # 128 + signal, or death by that signal itself (CPython re-raises SIGINT at exit in some
    # timings): a shell reports 130 / 143 for both.
    assert proc.returncode in (code, -signum), (proc.returncode, err)
    assert b"Traceback" not in err and b"interrupted" in err
    # The loop stopped after a whole step; the networks so far were committed (never half).
    meta = json.loads((out / "policy.json").read_text())
    assert 0 < meta["steps"] < 500_000
    assert meta["train_stats"]["interrupted_at_step"] == meta["steps"]
    from tailor.experiments import run

    assert run.evaluate(out, episodes=1, max_steps=20)["episodes"] == 1
