"""Exact resume of PPO: a run stopped after a checkpoint and resumed continues exactly as the
uninterrupted run (same metrics.csv numbers apart from timing, same final policy tensors), on the
fast paths (MuJoCo, point mass); the VecEnv state round-trips; the gymnasium fallback keeps
starting fresh episodes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tailor.algos.ppo import PPOConfig, train
from tailor.checkpoint import TRAINER_FILE, TRAINER_FORMAT
from tailor.envs import Task, VecEnv, get_task
from tailor.errors import TailorError
from tailor.methods import resolve
from tailor.policyfile import load_policy
from tailor.rundir import latest_checkpoint

TIMING = {"sps", "wall_s"}  # wall-clock columns: the only ones allowed to differ


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def _config(**kw) -> PPOConfig:
    base = dict(
        total_steps=8 * 16 * 6,
        num_envs=8,
        num_steps=16,
        checkpoint_every=100,
        tensorboard=False,
        hidden=(16, 16),
    )
    return PPOConfig(**{**base, **kw})


def _same_policy(a: Path, b: Path) -> bool:
    actor_a, norm_a, _ = load_policy(a)
    actor_b, norm_b, _ = load_policy(b)
    pairs = [
        *zip(actor_a.state_dict().values(), actor_b.state_dict().values(), strict=True),
        *zip(norm_a.state_dict().values(), norm_b.state_dict().values(), strict=True),
    ]
    return all(torch.equal(x, y) for x, y in pairs)


@pytest.mark.parametrize("task", ["pointmass", "hopper-jump"])
def test_stopped_and_resumed_run_equals_the_straight_run(tmp_path: Path, task: str) -> None:
    """Hopper terminates episodes (resets mid-rollout), the point mass is the numpy path."""
    method = resolve("soft", alpha=0.01)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(task, method, _config(), straight)
    first = train(task, method, _config(), split, callback=lambda row: row["iteration"] >= 2)
    assert first.iterations == 2
    train(task, method, _config(), split, resume=True)
    assert len(_rows(straight)) == 6
    assert _rows(split) == _rows(straight)
    assert _same_policy(straight, split)


@pytest.mark.parametrize("resumed_workers", [2, 1])
def test_two_env_threads_resume_exactly_and_change_no_number(
    tmp_path: Path, resumed_workers: int
) -> None:
    """``num_workers=2`` on HalfCheetah: the straight run equals the one-thread run, and a run
    stopped and resumed with 2 threads, or with 1 (``num_workers`` may change on resume),
    equals both."""
    task, method = "halfcheetah-hindleg", resolve("soft", alpha=0.01)
    one, two, split = tmp_path / "one", tmp_path / "two", tmp_path / "split"
    config = _config(num_envs=5, total_steps=5 * 16 * 4)
    train(task, method, config, one)
    config.num_workers = 2
    train(task, method, config, two)
    assert _rows(two) == _rows(one)
    assert _same_policy(one, two)
    train(task, method, config, split, callback=lambda row: row["iteration"] >= 2)
    config.num_workers = resumed_workers
    train(task, method, config, split, resume=True)
    assert _rows(split) == _rows(one)
    assert _same_policy(one, split)


def test_checkpoint_carries_the_loop_state(tmp_path: Path) -> None:
    train("pointmass", resolve("no-entropy"), _config(total_steps=8 * 16), tmp_path)
    tensors, meta = latest_checkpoint(tmp_path).load(TRAINER_FILE, TRAINER_FORMAT)
    assert meta["loop"]["env"]["task"] == "pointmass"
    assert meta["loop"]["env"]["num_steps"] == 16
    for name in (
        "loop.env.obs",
        "loop.env.backend.pos",
        "loop.episodes.basic",
        "loop.return_carry",
    ):
        assert name in tensors


@pytest.mark.parametrize(
    "task", ["halfcheetah-hindleg", "hopper-jump", "ant-sideways", "pointmass"]
)
def test_vecenv_state_round_trips(task: str | Task, steps: int = 120) -> None:
    """A VecEnv restored from another's state steps identically, resets included."""
    rng = np.random.default_rng(0)
    a = VecEnv(task, 3, seed=5)
    a.reset()
    actions = [rng.uniform(-1, 1, (3, a.act_dim)) for _ in range(steps)]
    for x in actions[:40]:
        a.step(x)
    b = VecEnv(task, 3, seed=99)  # other seeds: everything must come from the state
    assert a.backend == b.backend != "gymnasium"
    obs = b.set_state(*a.get_state())
    assert np.array_equal(obs, a._obs)
    assert b.num_steps == a.num_steps
    for x in actions[40:]:
        ra, rb = a.step(x), b.step(x)
        for name in ("obs", "basic", "addon", "statistic", "terminated", "truncated"):
            assert np.array_equal(getattr(ra, name), getattr(rb, name)), name


# A user task (scalar add-on only) on each gymnasium MuJoCo robot: the fast path, exact resume.
ROBOT_IDS = [
    "Walker2d-v5",
    "Swimmer-v5",
    "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
    "Reacher-v5",
    "Pusher-v5",
    "Humanoid-v5",
    "HumanoidStandup-v5",
]


def _robot_task(env_id: str, limit: int = 30) -> Task:
    return Task(
        name=f"{env_id}-upright",
        env_id=env_id,
        addon=lambda env, action, info: -abs(env.unwrapped.data.qpos[1]),
        statistic=lambda env, action, info: abs(env.unwrapped.data.qvel[0]),
        env_kwargs={"max_episode_steps": limit},
    )


@pytest.mark.parametrize("env_id", ROBOT_IDS)
def test_robot_vecenv_state_round_trips(env_id: str) -> None:
    """Mid-episode state into a fresh VecEnv: the same steps, terminations and resets follow."""
    test_vecenv_state_round_trips(_robot_task(env_id), steps=90)


def test_readme_walker_task_resumes_exactly(tmp_path: Path) -> None:
    """PPO on the README's Walker2d task (no vector_terms) stopped and resumed == straight."""
    task = _robot_task("Walker2d-v5", limit=1000)
    method = resolve("soft", alpha=0.01)
    straight, split = tmp_path / "straight", tmp_path / "split"
    config = _config(total_steps=8 * 16 * 4)
    train(task, method, config, straight)
    train(task, method, config, split, callback=lambda row: row["iteration"] >= 2)
    train(task, method, config, split, resume=True)
    assert _rows(split) == _rows(straight)
    assert _same_policy(straight, split)


def test_vecenv_state_of_other_envs_is_refused() -> None:
    a = VecEnv("pointmass", 3, seed=0)
    a.reset()
    arrays, info = a.get_state()
    with pytest.raises(TailorError, match="num_envs"):
        VecEnv("pointmass", 4).set_state(arrays, info)
    bad = {**arrays, "backend.pos": np.zeros((3, 5))}
    with pytest.raises(TailorError, match="shape"):
        VecEnv("pointmass", 3).set_state(bad, info)
    with pytest.raises(TailorError, match="random generator"):
        VecEnv("pointmass", 3).set_state(arrays, {**info, "backend": {"backend": "numpy"}})


def test_gymnasium_fallback_has_no_capturable_state() -> None:
    """Without ``vector_terms`` the point mass runs on the gymnasium loop: no state to save, so
    a resume there starts fresh episodes (documented in ppo_state)."""
    base = get_task("pointmass")
    loop_task = Task(
        name="pointmass-loop-test",
        env_id=base.env_id,
        addon=base.addon,
        statistic=base.statistic,
        coefficients=base.coefficients,
    )
    env = VecEnv(loop_task, 2)
    assert env.backend == "gymnasium"
    env.reset()
    assert env.get_state() is None


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_equals_the_straight_run(tmp_path: Path) -> None:
    """The CLI run killed with SIGKILL once its first checkpoint is committed, then resumed."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    flags = ["--task", "hopper-jump", "--method", "soft", "--num-envs", "8", "--no-progress"]
    tiny = ["--num-steps", "16", "--hidden", "16", "16", "--no-tensorboard"]
    steps = ["--steps", str(8 * 16 * 40), "--checkpoint-every", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tailor.cli", "train", *flags, *tiny, *steps]
    subprocess.run([*cmd, "--out", str(straight)], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (killed.exists() and latest_checkpoint(killed) is not None):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resume = [*cmd[:4], "--resume", str(killed), *steps, "--no-progress"]
    subprocess.run(resume, check=True, env=env, capture_output=True)
    assert _rows(killed) == _rows(straight)
    assert _same_policy(straight, killed)
