"""Small Stable-Baselines3 models for the prior-import tests, trained here in seconds."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

sb3 = pytest.importorskip("stable_baselines3")

from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402
from torch import nn  # noqa: E402


def tiny_sac(root: Path, env_id: str, steps: int, **normalize: float) -> Path:
    """An SB3 SAC (16-16 Tanh) trained ``steps`` steps on ``env_id`` with VecNormalize
    (``normalize``: its keyword arguments), saved RL-Zoo style: ``sac.zip`` with
    ``vecnormalize.pkl`` beside it. Returns the zip."""
    env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=0), **normalize)
    model = sb3.SAC(
        "MlpPolicy",
        env,
        learning_starts=50,
        batch_size=32,
        seed=0,
        policy_kwargs={"net_arch": [16, 16], "activation_fn": nn.Tanh},
    )
    model.learn(steps)
    model.save(root / "sac.zip")
    env.save(str(root / "vecnormalize.pkl"))
    return root / "sac.zip"


def rewrite_data(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    """``src`` (an SB3 zip) written to ``dst`` with its ``data`` JSON passed through ``edit``;
    every other member byte for byte."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            raw = zin.read(name)
            if name == "data":
                data = json.loads(raw)
                edit(data)
                raw = json.dumps(data).encode()
            zout.writestr(name, raw)
    return dst
