"""The optional MuJoCo Warp HalfCheetah behind the batched-tensor contract (skipped without
mujoco_warp; slow on a CPU: MJWarp compiles its kernels on the first step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

mjw = pytest.importorskip("mujoco_warp")
pytestmark = pytest.mark.slow

import mujoco  # noqa: E402

from tailor.algos.tensor_ppo import TensorPPOConfig, train_tensor  # noqa: E402
from tailor.envs.tensor_vec import extras_addon  # noqa: E402
from tailor.envs.warp_cheetah import WarpHalfCheetah, _xml  # noqa: E402
from tailor.methods import resolve  # noqa: E402


def test_warp_worlds_follow_mujoco_and_reset_at_the_time_limit():
    env = WarpHalfCheetah(4, seed=0)
    assert torch.all((env.qpos - env._qpos0).abs() <= 0.1 + 1e-6)
    model = mujoco.MjModel.from_xml_path(str(_xml()))
    data = mujoco.MjData(model)
    start_q, start_v = env.qpos[2].double().numpy().copy(), env.qvel[2].double().numpy().copy()
    a = torch.linspace(-1.0, 1.0, 6).repeat(4, 1)
    env.max_episode_length = 3
    obs, reward, dones, extras = env.step(a)
    # world 2 against MuJoCo C from the same state, 5 substeps (float32 vs float64 physics)
    data.qpos[:], data.qvel[:], data.ctrl[:] = start_q, start_v, a[2].numpy()
    for _ in range(5):
        mujoco.mj_step(model, data)
    assert np.allclose(env.qpos[2].numpy(), data.qpos, atol=2e-3)
    assert obs["policy"].shape == (4, 17)
    dx = (data.qpos[0] - start_q[0]) / env.dt
    assert reward[2].item() == pytest.approx(dx - 0.1 * float(a[2].square().sum()), abs=5e-2)
    assert extras["addon"][2].item() == pytest.approx(-abs(data.qpos[3]), abs=2e-3)
    assert not dones.any()
    for _ in range(2):
        obs, reward, dones, extras = env.step(a)
    assert dones.all() and extras["time_outs"].all()
    assert env.episode_length_buf.tolist() == [0, 0, 0, 0]
    assert torch.all((env.qpos - env._qpos0).abs() <= 0.1 + 1e-6)  # fresh episodes


def test_tensor_ppo_runs_on_warp_worlds():
    env = WarpHalfCheetah(8, seed=1)
    cfg = TensorPPOConfig(num_iterations=1, num_steps_per_env=4, num_minibatches=2, hidden=(16,))
    result = train_tensor(env, resolve("full", alpha=0.01), cfg, addon=extras_addon())
    assert np.isfinite(result.metrics[0]["reward"])
