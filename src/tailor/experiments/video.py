"""Videos of policies, side by side: the prior next to its customized policy on the same episodes.

:func:`render_video` runs one gymnasium env per policy in lockstep, every env reset with the same
seed (episode ``k`` uses ``seed + k``, as env ``k`` of :func:`tailor.evaluate.evaluate` does),
acts with each policy's mean action, renders every env offscreen and writes the panels side by
side, each labelled with the policy's name and its running basic and add-on return::

    render_video(["priors/halfcheetah", "runs/residual"], "halfcheetah-hindleg",
                 "results/videos/halfcheetah-hindleg.mp4")

A policy whose episode ends first (e.g. a Hopper that falls) holds its last frame until every
policy's episode has ended; then all envs reset together. Frames stream to the file (``.mp4``,
needs ``imageio`` and ``imageio-ffmpeg``); a ``.gif`` (needs Pillow) keeps its frames in memory.

MuJoCo envs are filmed from the model's ``"track"`` camera, which follows the robot (gymnasium's
default camera stays where the episode started), and their floor is drawn 1 km wide (the models
draw 20-40 m; the plane is infinite for the physics, so nothing else changes). ``quality="fast"``
(the default) drops shadows and reflections, most of the render time on a software GL.

MuJoCo renders offscreen through EGL or OSMesa: :func:`offscreen_backend` honours ``MUJOCO_GL``
if it is set, and otherwise probes ``egl`` then ``osmesa`` in a subprocess (a failed GL set-up can
abort the process that tries it) and sets ``MUJOCO_GL`` to the first that renders.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailor.errors import TailorError
from tailor.experiments.configs import split_options
from tailor.output import publishing
from tailor.priors import PolicyPrior, check_spaces, load_prior

__all__ = [
    "QUALITIES",
    "VIDEO_FORMATS",
    "VideoSettings",
    "check_preset_gl",
    "offscreen_backend",
    "render_video",
]

VIDEO_FORMATS = (".mp4", ".gif")
QUALITIES = ("fast", "full")
_GL_CANDIDATES = ("egl", "osmesa")
# Renders one frame of an empty model through mujoco's own GL context: the path gymnasium uses.
_PROBE = (
    "import mujoco\n"
    'm = mujoco.MjModel.from_xml_string(\'<mujoco><worldbody><geom size="1"/></worldbody>'
    "</mujoco>')\n"
    "r = mujoco.Renderer(m, 16, 16)\n"
    "r.update_scene(mujoco.MjData(m))\n"
    "assert r.render().shape == (16, 16, 3)\n"
)
_backend: str | None = None


def offscreen_backend() -> str:
    """The MuJoCo offscreen GL backend of this process (``"egl"`` or ``"osmesa"``), set up once.

    Raises:
        TailorError: neither backend (or the one ``MUJOCO_GL`` names) can render here; the
            message gives each backend's error and what to install.
    """
    global _backend
    if _backend is not None:
        return _backend
    preset = os.environ.get("MUJOCO_GL")
    candidates = (preset,) if preset else _GL_CANDIDATES
    errors = []
    for name in candidates:
        env = {**os.environ, "MUJOCO_GL": name}
        if name in _GL_CANDIDATES:
            env.setdefault("PYOPENGL_PLATFORM", name)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120
            )
        except subprocess.TimeoutExpired:
            errors.append(f"{name}: the probe timed out")
            continue
        if proc.returncode == 0:
            os.environ["MUJOCO_GL"] = name
            if name in _GL_CANDIDATES:
                os.environ.setdefault("PYOPENGL_PLATFORM", name)
            _backend = name
            return name
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        errors.append(f"{name}: {lines[-1] if lines else f'exit code {proc.returncode}'}")
    hint = (
        "install EGL (Debian/Ubuntu: apt-get install libegl1) or OSMesa (apt-get install "
        "libosmesa6)"
    )
    if preset:
        hint += f"; MUJOCO_GL={preset!r} is set: unset it to let tailor probe egl and osmesa"
    platform = os.environ.get("PYOPENGL_PLATFORM")
    if platform and platform not in _GL_CANDIDATES:
        hint += f"; PYOPENGL_PLATFORM={platform!r} is set: unset it"
    raise TailorError(
        "MuJoCo cannot render offscreen on this machine (" + "; ".join(errors) + f"); {hint}"
    )


def check_preset_gl() -> None:
    """Probe a preset ``MUJOCO_GL`` before ``import mujoco``, which loads that GL and dies on a
    broken one with a bare traceback; raise the clear :class:`TailorError` instead."""
    if os.environ.get("MUJOCO_GL") and "mujoco" not in sys.modules:
        offscreen_backend()


@dataclasses.dataclass(frozen=True)
class VideoSettings:
    """The options of :func:`render_video`.

    Attributes:
        episodes: episodes in a row; episode ``k`` resets every env with seed ``seed + k``.
        seed: seed of the first episode.
        max_steps: cut each episode after this many env steps (default: the env's time limit).
        every: render every ``every``-th env step (default: about 30 frames per simulated second).
        fps: frames per second of the video (default: real time, ``1 / (dt * every)``).
        width: width of one panel in pixels (even, 16..4096).
        height: height of one panel in pixels (even, 16..4096); the video is
            ``[height, len(policies) * width]``.
        labels: one label per policy (default: the run directory's name and its method).
        quality: ``"fast"`` (default) renders MuJoCo without shadows and floor reflections, which
            on a software GL (llvmpipe) is ~5-25x faster; ``"full"`` keeps them.
        camera: a MuJoCo model camera's name; default: the model's ``"track"`` camera (the
            gymnasium MuJoCo models' camera that follows the robot) if it has one, else
            gymnasium's default free camera (which stays where the episode started).
    """

    episodes: int = 1
    seed: int = 0
    max_steps: int | None = None
    every: int | None = None
    fps: float | None = None
    width: int = 320
    height: int = 240
    labels: list[str] | None = None
    quality: str = "fast"
    camera: str | None = None


def render_video(
    policies: list[str | Path], task: str | None, out: str | Path, **settings: Any
) -> dict[str, Any]:
    """Render ``episodes`` episodes of each policy on ``task``, side by side, into ``out``.

    Args:
        policies: run directories or ``policy.safetensors`` files (``tailor train``/``customize``);
            one panel each, left to right.
        task: task name; ``None``: the task the first policy was trained on.
        out: the video file, ``.mp4`` or ``.gif`` (its folder is created).
        **settings: the fields of :class:`VideoSettings` (``episodes``, ``seed``, ``max_steps``,
            ``every``, ``fps``, ``width``, ``height``, ``labels``, ``quality``, ``camera``).

    Returns:
        ``{"out", "task", "backend", "frames", "width", "height", "fps", "every", "quality",
        "episodes", "seed", "render_s_per_frame", "wall_s",
        "policies": [{"policy", "label", "basic", "addon", "length"}]}``; ``width`` is the whole
        video's, ``basic``/``addon``/``length`` are per-episode lists, ``render_s_per_frame`` the
        mean time of one panel's offscreen render.
        Each episode adds ``1 + ceil(L / every)`` frames, ``L`` its longest policy's length.

    Raises:
        TailorError: an unknown setting, unknown extension, missing writer package, bad sizes or
            counts, missing or foreign policy file, a policy whose spaces do not match the task,
            an env that cannot render, no offscreen GL.
    """
    t_start = time.perf_counter()
    opts, _ = split_options(VideoSettings, settings, where="render_video", rest=False)
    out = Path(out)
    policies = _check_inputs(policies, out, opts)
    loaded = [load_prior(p) for p in policies]
    check_preset_gl()
    from tailor.envs import get_task

    task_name = task or loaded[0].meta.get("task")
    if not task_name:
        raise TailorError(
            "give the task (the first policy does not name the task it was trained on)"
        )
    task_obj = get_task(task_name)
    names = (
        opts.labels
        if opts.labels is not None
        else [_default_label(p, q) for p, q in zip(policies, loaded, strict=True)]
    )

    envs: list[Any] = []
    try:
        _open_envs(envs, task_obj, policies, loaded, opts)
        backend = _setup_rendering(envs, task_obj.name, opts.quality, opts.camera)
        dt = float(getattr(envs[0].unwrapped, "dt", 0.0) or 0.0)
        sim_fps = 1.0 / dt if dt > 0 else float(envs[0].metadata.get("render_fps") or 30)
        every = opts.every or max(1, round(sim_fps / 30))
        opts = dataclasses.replace(opts, every=every, fps=float(opts.fps or sim_fps / every))
        # The one writer: a temporary file beside ``out`` (named .mp4/.gif, which ffmpeg and
        # Pillow go by), renamed onto it only once complete; a full disk is an error.
        with publishing(out, keep_suffix=True) as partial:
            writer = _Writer(partial, opts.fps)
            try:
                stats = _run(envs, loaded, names, writer, opts)
                writer.close()
            except BaseException:
                writer.abort()
                raise
    finally:
        for env in envs:
            env.close()
    n_frames, render_s, render_n, per_policy = stats
    return {
        "out": str(out),
        "task": task_obj.name,
        "backend": backend,
        "frames": n_frames,
        "width": opts.width * len(policies),
        "height": opts.height,
        "fps": opts.fps,
        "every": opts.every,
        "quality": opts.quality,
        "episodes": opts.episodes,
        "seed": opts.seed,
        "render_s_per_frame": render_s / max(render_n, 1),
        "wall_s": time.perf_counter() - t_start,
        "policies": [
            {"policy": str(p), "label": lab, **rows}
            for p, lab, rows in zip(policies, names, per_policy, strict=True)
        ],
    }


def _open_envs(
    envs: list[Any], task: Any, policies: list[str | Path], loaded: list, opts: VideoSettings
) -> None:
    """Append one rendering env per policy to ``envs`` (the caller closes them, also when this
    raises), checking that the task has continuous actions and each policy fits it."""
    import gymnasium as gym

    from tailor.envs import make_env

    for i, (path, policy) in enumerate(zip(policies, loaded, strict=True)):
        env = make_env(task, **_render_kwargs(task, opts.width, opts.height))
        envs.append(env)
        if not isinstance(env.action_space, gym.spaces.Box):
            raise TailorError(
                f"task {task.name!r} has {type(env.action_space).__name__} actions; "
                "tailor video renders the Gaussian policies of tailor train/customize "
                "(continuous actions)"
            )
        obs_dim = int(np.prod(env.observation_space.shape))
        act_dim = int(np.prod(env.action_space.shape))
        what = f"policy {str(path)!r}" if len(policies) == 1 else f"policy {i + 1} ({path})"
        check_spaces(policy, obs_dim, act_dim, task.name, what=what)


def _check_inputs(policies: Any, out: Path, opts: VideoSettings) -> list[str | Path]:
    """The policies as a list, after every input of :func:`render_video` is checked (before
    any file is read or written)."""
    suffix = out.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise TailorError(
            f"cannot write video {str(out)!r}: unknown extension {out.suffix or '(none)'!r}; "
            f"use one of {', '.join(VIDEO_FORMATS)}"
        )
    _check_writer(suffix)
    if isinstance(policies, (str, Path)):  # one path, not a list of characters
        policies = [policies]
    policies = list(policies)
    if not policies:
        raise TailorError("give at least one policy")
    if opts.labels is not None and len(opts.labels) != len(policies):
        raise TailorError(
            f"got {len(opts.labels)} labels for {len(policies)} policies; give one each"
        )
    _positive("episodes", opts.episodes)
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or opts.seed < 0:
        raise TailorError(f"seed must be a non-negative integer, got {opts.seed!r}")
    if opts.max_steps is not None:
        _positive("max_steps", opts.max_steps)
    if opts.every is not None:
        _positive("every", opts.every)
    if opts.quality not in QUALITIES:
        raise TailorError(f"quality must be one of {', '.join(QUALITIES)}, got {opts.quality!r}")
    fps = opts.fps
    if fps is not None and (not isinstance(fps, (int, float)) or not 0 < fps <= 1000):
        raise TailorError(f"fps must be a number in (0, 1000], got {opts.fps!r}")
    for name, size in (("width", opts.width), ("height", opts.height)):
        _positive(name, size)
        if size % 2 or not 16 <= size <= 4096:
            # Even: H.264's yuv420p halves both sizes for colour.
            raise TailorError(f"{name} must be an even number of pixels in [16, 4096], got {size}")
    return policies


def _run(
    envs: list[Any],
    policies: list[PolicyPrior],
    labels: list[str],
    writer: _Writer,
    opts: VideoSettings,
) -> tuple[int, float, int, list[dict[str, list]]]:
    """The lockstep loop; returns (frames, render seconds, panel renders, per-policy returns)."""
    episodes, seed, max_steps, width, height = (
        opts.episodes, opts.seed, opts.max_steps, opts.width, opts.height
    )  # fmt: skip
    every = opts.every
    assert every is not None  # render_video resolved the default
    n = len(envs)
    per_policy: list[dict[str, list]] = [{"basic": [], "addon": [], "length": []} for _ in range(n)]
    n_frames, render_s, render_n = 0, 0.0, 0
    painter = _Painter(height)

    def render(i: int) -> np.ndarray:
        nonlocal render_s, render_n
        t0 = time.perf_counter()
        frame = _render(envs[i])
        render_s += time.perf_counter() - t0
        render_n += 1
        if frame.shape != (height, width, 3):  # an env that renders at its own size
            frame = _resize(frame, width, height)
        return frame

    for k in range(episodes):
        obs = [env.reset(seed=seed + k)[0] for env in envs]
        basic, addon, length = np.zeros(n), np.zeros(n), np.zeros(n, np.int64)
        done = np.zeros(n, bool)
        frames = [render(i) for i in range(n)]
        count = 0
        while True:
            texts = [
                _panel_text(labels[i], k, episodes, length[i], basic[i], addon[i], done[i])
                for i in range(n)
            ]
            writer.append(painter.compose(frames, texts))
            n_frames += 1
            if done.all():
                break
            just_done = np.zeros(n, bool)
            # Step until the next frame is due, or every episode has ended.
            while True:
                for i in np.flatnonzero(~done):
                    with torch.inference_mode():
                        action = policies[i].act(torch.as_tensor(obs[i], dtype=torch.float32)[None])
                    obs[i], _, terminated, truncated, info = envs[i].step(action[0].numpy())
                    basic[i] += info["basic_reward"]
                    addon[i] += info["addon_reward"]
                    length[i] += 1
                    if (
                        terminated
                        or truncated
                        or (max_steps is not None and length[i] >= max_steps)
                    ):
                        done[i] = just_done[i] = True
                count += 1
                if count % every == 0 or done.all():
                    break
            for i in range(n):
                if not done[i] or just_done[i]:
                    frames[i] = render(i)
        for i in range(n):
            per_policy[i]["basic"].append(float(basic[i]))
            per_policy[i]["addon"].append(float(addon[i]))
            per_policy[i]["length"].append(int(length[i]))
    return n_frames, render_s, render_n, per_policy


def _viewer(env: Any) -> Any:
    """The MuJoCo offscreen viewer of a gymnasium MuJoCo env (``None`` before its first render)."""
    return getattr(getattr(env.unwrapped, "mujoco_renderer", None), "viewer", None)


def _render(env: Any) -> np.ndarray:
    viewer = _viewer(env)
    for _ in range(2):
        # gymnasium makes an env's GL context current only when it creates it, and each env has
        # its own: make this env's current before rendering it.
        if viewer is not None:
            viewer.make_context_current()
        frame = env.render()
        if frame is None:
            raise TailorError("the env rendered nothing (render_mode 'rgb_array' is unsupported)")
        # An all-black frame means no context was current: freeing any other MuJoCo env's GL
        # context (e.g. one the garbage collector reaps during this render) releases it.
        if viewer is None or frame.any():
            break
    return np.asarray(frame, dtype=np.uint8)


def _setup_rendering(envs: list[Any], task: str, quality: str, camera: str | None) -> str:
    """Pick the GL backend and camera, render a first frame of each env, set the quality.

    Returns the backend (``"none"`` for an env that is not MuJoCo's).
    """
    backend = "none"
    if hasattr(envs[0].unwrapped, "mujoco_renderer"):
        backend = offscreen_backend()
        for env in envs:
            _set_camera(env, camera, task)
            _widen_floor(env)
    elif camera is not None:
        raise TailorError(f"task {task!r}: camera {camera!r} needs a MuJoCo env")
    for env in envs:
        env.reset(seed=0)
        try:
            _render(env)  # creates the viewer, and the GL context on the first env
        except TailorError:
            raise
        except Exception as exc:
            raise TailorError(
                f"task {task!r}: rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        viewer = _viewer(env)
        if viewer is not None and quality == "fast":
            import mujoco

            viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return backend


def _render_kwargs(task: Any, width: int, height: int) -> dict[str, Any]:
    """``gymnasium.make`` keyword arguments for an offscreen ``rgb_array`` env of ``task``.

    Raises:
        TailorError: the env cannot render images.
    """
    import inspect

    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    try:
        entry = gym.spec(task.env_id).entry_point
        creator = load_env_creator(entry) if isinstance(entry, str) else entry
    except Exception:  # make_env says what is wrong with the id
        creator = None
    modes = list(getattr(creator, "metadata", {}).get("render_modes") or [])
    if creator is not None and "rgb_array" not in modes:
        raise TailorError(
            f"task {task.name!r}: its env {task.env_id!r} cannot render images "
            f"(render modes: {modes})"
        )
    # No env checker: its first-render check costs seconds on software GL.
    kwargs: dict[str, Any] = {"render_mode": "rgb_array", "disable_env_checker": True}
    try:
        params = inspect.signature(creator).parameters.values() if creator else ()
    except (TypeError, ValueError):
        params = ()
    # MuJoCo envs take the image size (through **kwargs); others render at their own size and
    # their frames are resized.
    if any(p.name == "width" or p.kind is p.VAR_KEYWORD for p in params):
        kwargs.update(width=width, height=height)
    return kwargs


def _resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise TailorError(
            f"the env renders {frame.shape[1]}x{frame.shape[0]} frames; resizing them to "
            f"{width}x{height} needs Pillow"
        ) from None
    rgb = np.ascontiguousarray(np.asarray(frame, dtype=np.uint8)[..., :3])
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def _set_camera(env: Any, camera: str | None, task: str) -> None:
    import mujoco

    model = env.unwrapped.model
    cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera or "track")
    if cam_id < 0:
        if camera is None:
            return  # gymnasium's free camera
        names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
        raise TailorError(f"task {task!r}: no camera {camera!r} in the model (cameras: {names})")
    # With no camera named at make time, gymnasium (1.4) renders from a free camera that stays
    # where the episode started, so a running robot leaves the picture; its renderer's camera_id
    # selects the model camera to render from instead.
    env.unwrapped.mujoco_renderer.camera_id = cam_id


_FLOOR_HALF_SIZE = 1000.0  # m: a policy runs ~400 m in a 1000-step HalfCheetah episode


def _widen_floor(env: Any) -> None:
    """Draw the floor planes ``_FLOOR_HALF_SIZE`` wide, with squares of the same size as before.

    The models' floors are drawn 40 m (Hopper: 20 m) wide, and a good runner leaves them within
    seconds. A MuJoCo plane is infinite for collisions and has no mass, so its size is only
    drawn: the dynamics do not change (tests/test_video.py checks the returns against VecEnv's).
    """
    import mujoco

    model = env.unwrapped.model
    for g in np.flatnonzero(model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE):
        half = float(model.geom_size[g, :2].min())
        if not 0 < half < _FLOOR_HALF_SIZE:
            continue  # 0: already drawn infinite
        k = _FLOOR_HALF_SIZE / half
        model.geom_size[g] *= k  # with the grid spacing, so the number of grid cells stays
        mat = model.geom_matid[g]
        if mat >= 0 and not model.mat_texuniform[mat]:
            model.mat_texrepeat[mat] *= k  # repeats per plane, not per metre: keep square size


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TailorError(f"{name} must be a positive integer, got {value!r}")


def _default_label(path: str | Path, policy: PolicyPrior) -> str:
    p = Path(path)
    name = (p.parent if p.suffix == ".safetensors" else p).resolve().name
    method = policy.meta.get("method")
    return f"{name} ({method})" if method and method not in name else name


def _panel_text(
    label: str, k: int, episodes: int, t: int, basic: float, addon: float, done: bool
) -> str:
    ep = f"ep {k + 1}/{episodes}  " if episodes > 1 else ""
    end = "  (ended)" if done else ""
    return f"{label}\n{ep}t={t}{end}\nbasic {basic:+.1f}  add-on {addon:+.1f}"


def _check_writer(suffix: str) -> None:
    """Raise before any work if the package that writes ``suffix`` is missing."""
    try:
        if suffix == ".mp4":
            import imageio  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        else:
            import PIL  # noqa: F401
    except ImportError as exc:
        need = "imageio and imageio-ffmpeg" if suffix == ".mp4" else "Pillow"
        raise TailorError(
            f"writing {suffix} needs {need} ({exc}); pip install 'tailor-rl[video]'"
        ) from None


class _Painter:
    """Stacks panels left to right and draws each panel's text (Pillow; no text without it)."""

    def __init__(self, height: int) -> None:
        try:
            from PIL import Image, ImageDraw, ImageFont
        except ImportError:  # labels are a nicety: the video is still right without them
            self._pil = None
            return
        self._pil = (Image, ImageDraw)
        size = max(8, height // 22)
        try:
            self._font: Any = ImageFont.load_default(size=size)
        except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: bitmap font
            self._font = ImageFont.load_default()

    def compose(self, frames: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """Panels ``[H, W, 3]`` each -> ``[H, len(frames) * W, 3]`` uint8."""
        image = np.concatenate(frames, axis=1)
        w = frames[0].shape[1]
        for i in range(1, len(frames)):  # a thin divider, drawn over the panels' edges
            image[:, i * w - 1 : i * w + 1] = 255
        if self._pil is None:
            return image
        Image, ImageDraw = self._pil
        pil = Image.fromarray(image)
        draw = ImageDraw.Draw(pil, "RGBA")
        for i, text in enumerate(texts):
            x, y = i * w + 4, 3
            box = draw.multiline_textbbox((x, y), text, font=self._font, spacing=1)
            draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0, 150))
            draw.multiline_text((x, y), text, font=self._font, fill=(255, 255, 255), spacing=1)
        return np.asarray(pil)


class _Writer:
    """Appends ``[H, W, 3]`` uint8 frames to an ``.mp4`` (streamed) or ``.gif`` (at close)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self._gif: list[Any] = []
        self._mp4 = None
        if path.suffix.lower() == ".mp4":
            import imageio.v2 as imageio

            self._mp4 = imageio.get_writer(
                path,
                format="FFMPEG",
                mode="I",
                fps=fps,
                codec="libx264",
                # imageio 0..10 = x264 CRF 51..0: 5 (CRF 25) keeps 500 frames of 640x240 ~1.5 MB
                quality=5,
                pixelformat="yuv420p",  # plays everywhere (browsers, GitHub)
                macro_block_size=2,  # sizes are even: no resizing
                ffmpeg_log_level="error",
            )

    def append(self, frame: np.ndarray) -> None:
        if self._mp4 is not None:
            self._mp4.append_data(frame)
        else:
            from PIL import Image

            # Palette images: a third of the memory of RGB frames, and what a GIF stores anyway.
            self._gif.append(Image.fromarray(frame).quantize(colors=128, dither=0))

    def close(self) -> None:
        if self._mp4 is not None:
            self._mp4.close()
            return
        if not self._gif:
            raise TailorError("no frames to write")
        # GIF delays are in 1/100 s; PIL takes milliseconds.
        duration = max(20, 10 * math.floor(100 / self.fps + 0.5))
        self._gif[0].save(
            self.path,
            save_all=True,
            append_images=self._gif[1:],
            duration=duration,
            loop=0,
            optimize=False,
        )
        self._gif = []

    def abort(self) -> None:
        if self._mp4 is not None:
            try:
                self._mp4.close()
            except Exception:  # already failing: the partial file is deleted anyway
                pass
        self._gif = []
