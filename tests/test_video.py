"""``tailor video``: side-by-side offscreen videos of policies on the same episodes.

Rendering needs an offscreen OpenGL (EGL or OSMesa): the tests that render skip, with the reason,
where neither works. The input checks run everywhere.
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tailor.envs import VecEnv
from tailor.errors import TailorError
from tailor.experiments.video import offscreen_backend, render_video
from tailor.policyfile import save_policy
from tailor.priors import load_prior

PRIOR = "priors/halfcheetah"
TASK = "halfcheetah-hindleg"


@pytest.fixture(scope="module")
def gl() -> str:
    try:
        return offscreen_backend()
    except TailorError as exc:
        pytest.skip(f"no offscreen OpenGL here: {exc}")


@pytest.fixture(scope="module")
def other_policy(tmp_path_factory) -> str:
    """A second HalfCheetah policy that acts differently: the prior with its weights scaled."""
    prior = load_prior(PRIOR)
    actor = copy.deepcopy(prior.actor)
    with torch.no_grad():
        for p in actor.parameters():
            p.mul_(0.8)
    out = tmp_path_factory.mktemp("scaled")
    save_policy(out, actor, prior.obs_norm, {**prior.meta, "method": "scaled"})
    return str(out)


def _cli(argv: list[str]) -> int:
    from tailor.cli import video

    parser = argparse.ArgumentParser(prog="tailor")
    video.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def _vec_returns(policy: str, steps: int, seed: int) -> tuple[float, float]:
    """Basic and add-on return of the first ``steps`` steps on VecEnv, `tailor evaluate`'s env."""
    prior = load_prior(policy)
    basic = addon = 0.0
    with VecEnv(TASK, 1, seed=seed) as env:
        obs = env.reset()
        for _ in range(steps):
            with torch.inference_mode():
                step = env.step(prior.act(torch.from_numpy(obs)).numpy())
            basic, addon, obs = basic + step.basic[0], addon + step.addon[0], step.obs
    return basic, addon


def test_mp4_side_by_side_matches_evaluation(gl, other_policy, tmp_path):
    """Two panels: frame count and size, and each panel's returns are those of the same policy,
    seed and steps on the VecEnv that `tailor evaluate` uses (same episode, same actions)."""
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "sub" / "v.mp4"
    result = render_video(
        [PRIOR, other_policy], TASK, out, seed=3, max_steps=200, every=20, width=64, height=48
    )
    frames = iio.imread(out)
    assert result["frames"] == 1 + 200 // 20 == frames.shape[0]
    assert frames.shape[1:] == (48, 2 * 64, 3)
    assert result["width"] == 128 and result["backend"] == gl
    assert result["fps"] == 1.0  # real time: HalfCheetah's dt is 0.05 s, one frame per 20 steps
    rows = result["policies"]
    # Default labels: the run directory's name, and its method unless the name already has it.
    assert [r["label"] for r in rows] == ["halfcheetah (soft)", Path(other_policy).name]
    for path, row in zip([PRIOR, other_policy], rows, strict=True):
        assert row["length"] == [200]
        basic, addon = _vec_returns(path, 200, seed=3)
        np.testing.assert_allclose(row["basic"], [basic], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(row["addon"], [addon], rtol=1e-6, atol=1e-6)
    assert abs(rows[0]["basic"][0] - rows[1]["basic"][0]) > 1.0  # the panels differ
    # The two halves show different cheetahs at the end, and neither is blank.
    last = frames[-1].astype(int)
    assert last[:, :64].std() > 5 and last[:, 64:].std() > 5
    assert np.abs(last[:, :64] - last[:, 64:]).mean() > 1


def test_gif_from_cli_with_steps_and_labels(gl, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "v.gif"
    code = _cli(
        [
            "video",
            "--policy",
            PRIOR,
            "--task",
            TASK,
            "--out",
            str(out),
            "--steps",
            "9",
            "--every",
            "2",
            "--width",
            "64",
            "--height",
            "48",
            "--label",
            "prior",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "6 frames of 64x48" in text and "prior: basic" in text and "9 steps" in text
    with Image.open(out) as im:
        assert im.size == (64, 48)
        assert im.n_frames == 1 + 5  # steps 2, 4, 6, 8 and the last, 9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"out": "v.avi"}, "unknown extension '.avi'"),
        ({"out": "v"}, "unknown extension"),
        ({"policies": ["priors/hopper"]}, "observation size 11.*task 'halfcheetah-hindleg'"),
        ({"policies": ["no/such/run"]}, "no/such/run"),
        ({"width": 63}, "width must be an even"),
        ({"episodes": 0}, "episodes must be a positive integer"),
        ({"labels": ["a", "b"]}, "2 labels for 1 policies"),
        ({"quality": "ultra"}, "quality must be one of"),
    ],
)
def test_bad_input(tmp_path, kwargs, match):
    args = {"policies": [PRIOR], "task": TASK, "out": "v.mp4", **kwargs}
    out = tmp_path / args.pop("out")
    with pytest.raises(TailorError, match=match):
        render_video(args.pop("policies"), args.pop("task"), out, **args)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_label_count(tmp_path):
    with pytest.raises(TailorError, match="1 --label for 2 policies"):
        _cli(["video", "--policy", PRIOR, PRIOR, "--out", str(tmp_path / "v.mp4"), "--label", "a"])


def test_no_offscreen_gl_is_a_clear_error(monkeypatch):
    """Where no backend renders, the error names each backend's failure and what to install."""
    import tailor.experiments.video as video

    monkeypatch.setattr(video, "_backend", None)
    monkeypatch.setattr(video, "_GL_CANDIDATES", ("nosuchgl",))
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    with pytest.raises(TailorError, match=r"cannot render offscreen.*nosuchgl: .*libosmesa6"):
        video.offscreen_backend()
    assert "MUJOCO_GL" not in os.environ


def test_unknown_camera(gl, tmp_path):
    with pytest.raises(
        TailorError, match=r"no camera 'nope' in the model \(cameras: \['track'\]\)"
    ):
        render_video([PRIOR], TASK, tmp_path / "v.mp4", camera="nope")
    assert not list(tmp_path.iterdir())
