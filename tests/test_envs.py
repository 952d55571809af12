"""tailor.envs: task registry, make_env's info parts, and VecEnv's fast paths vs gymnasium."""

from __future__ import annotations

import dataclasses
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from tailor.envs import (
    StepResult,
    Task,
    VecEnv,
    get_task,
    halfcheetah_hindleg,
    list_tasks,
    load_tasks_file,
    make_env,
    register_task,
)
from tailor.envs import tasks as tasks_module
from tailor.envs.pointmass import ENV_ID as POINTMASS_ID
from tailor.errors import TailorError
from tailor.methods import METHODS, resolve


@pytest.fixture
def clean_registry():
    """Undo registrations made by a test."""
    saved = dict(tasks_module._REGISTRY)
    saved_files = dict(tasks_module._LOADED_FILES)
    yield
    tasks_module._REGISTRY.clear()
    tasks_module._REGISTRY.update(saved)
    tasks_module._LOADED_FILES.clear()
    tasks_module._LOADED_FILES.update(saved_files)


# ---------------------------------------------------------------------------------------------
# Registry


def test_builtin_tasks_and_paper_coefficients():
    names = [t.name for t in list_tasks()]
    assert names[:4] == ["halfcheetah-hindleg", "hopper-jump", "ant-sideways", "pointmass"]
    assert get_task("halfcheetah-hindleg").env_id == "HalfCheetah-v5"
    assert get_task("hopper-jump").env_id == "Hopper-v5"
    assert get_task("ant-sideways").env_id == "Ant-v5"
    # Reference section 2, Tables IV and V.
    hc, hop, ant = (get_task(n).coefficients for n in names[:3])
    assert hc["end-entropy"] == {"alpha": 0.01}
    assert hc["soft"] == {"alpha": 0.13472}
    assert hc["kl"] == {"beta": 0.13472}
    assert hc["residual"] == {"omega_prime": 0.17, "alpha_hat": 0.13472}
    assert hop["end-entropy"] == {"alpha": 0.0005}
    assert hop["residual"] == {"omega_prime": 0.01, "alpha_hat": 0.001}
    assert ant["soft"] == {"alpha": 0.0001}
    assert ant["residual"] == {"omega_prime": 0.01, "alpha_hat": 0.0001}
    for task in list_tasks()[:4]:
        assert set(task.coefficients) == set(METHODS)
        for method, coefs in task.coefficients.items():
            resolve(method, **coefs)  # every default is a valid call
        d = task.describe()
        assert d["addon"] and d["statistic"] and d["env_id"] == task.env_id


def test_get_task_unknown_lists_known_ones():
    with pytest.raises(TailorError) as err:
        get_task("halfcheetah-backflip")
    msg = str(err.value)
    assert "halfcheetah-backflip" in msg
    for name in ("halfcheetah-hindleg", "hopper-jump", "ant-sideways", "pointmass"):
        assert name in msg


def test_register_task_duplicate_and_overwrite(clean_registry):
    base = get_task("pointmass")
    task = dataclasses.replace(base, name="pm-copy")
    assert register_task(task) is task
    assert get_task("pm-copy") is task
    with pytest.raises(TailorError, match="already registered"):
        register_task(dataclasses.replace(base, name="pm-copy"))
    other = dataclasses.replace(base, name="pm-copy", description="x")
    register_task(other, overwrite=True)
    assert get_task("pm-copy") is other
    # Tasks carry plain coefficient tables; the names are checked where tasks meet methods.
    from tailor.experiments.run import task_method

    bad = Task(name="bad", env_id="X-v0", addon=abs, statistic=abs, coefficients={"ppo": {}})
    with pytest.raises(TailorError, match="unknown method"):
        task_method(bad, "soft")
    with pytest.raises(TailorError, match="finite numbers"):
        Task(name="bad", env_id="X-v0", addon=abs, statistic=abs, coefficients={"soft": [1]})
    with pytest.raises(TailorError, match="without spaces"):
        Task(name="has space", env_id="X-v0", addon=abs, statistic=abs)


def test_halfcheetah_joint_is_selectable_by_name():
    default = get_task("halfcheetah-hindleg")
    assert halfcheetah_hindleg() is default
    assert get_task("halfcheetah-hindleg:bthigh") is default
    ffoot = get_task("halfcheetah-hindleg:ffoot")
    assert ffoot.name == "halfcheetah-hindleg:ffoot"
    assert get_task("halfcheetah-hindleg:ffoot") is ffoot
    with pytest.raises(TailorError, match="bthigh"):  # the message lists the valid joints
        get_task("halfcheetah-hindleg:tail")
    # HalfCheetah-v5 qpos = (rootx, rootz, rooty, bthigh, bshin, bfoot, fthigh, fshin, ffoot).
    env = make_env(default)
    env.reset(seed=0)
    qpos = env.unwrapped.data.qpos
    _, _, _, _, info = env.step(np.zeros(6, dtype=np.float32))
    assert info["addon_reward"] == -abs(qpos[3])
    assert info["statistic"] == abs(qpos[3])
    assert ffoot.addon(env, None, info) == -abs(qpos[8])


# ---------------------------------------------------------------------------------------------
# make_env and user task files


def test_make_env_reports_three_parts_and_clips():
    env = make_env("hopper-jump")
    env.reset(seed=1)
    _, reward, _, _, info = env.step(np.full(3, 5.0, dtype=np.float32))  # out of bounds
    assert info["basic_reward"] == reward
    assert info["addon_reward"] == env.unwrapped.data.qpos[1] == info["statistic"]
    np.testing.assert_array_equal(env.unwrapped.data.ctrl, [1.0, 1.0, 1.0])
    # Hopper's control cost saw the clipped action: 1e-3 * 3 * 1^2.
    assert info["reward_ctrl"] == pytest.approx(-3e-3)


USER_TASKS = """
from tailor.envs import Task, register_task
register_task(Task(name="walker-upright", env_id="Walker2d-v5",
                   addon=lambda env, action, info: -abs(env.unwrapped.data.qpos[2]),
                   statistic=lambda env, action, info: abs(env.unwrapped.data.qpos[2])))
"""


def test_load_tasks_file_registers_user_task(tmp_path, clean_registry):
    path = tmp_path / "my_tasks.py"
    path.write_text(USER_TASKS)
    loaded = load_tasks_file(path)
    assert [t.name for t in loaded] == ["walker-upright"]
    assert load_tasks_file(str(path)) == loaded  # a second load does not run the file again
    task = get_task("walker-upright")
    assert task.describe()["addon"] == "lambda env, action, info: -abs(env.unwrapped.data.qpos[2])"
    env = make_env(task)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros(6, dtype=np.float32))
    theta = env.unwrapped.data.qpos[2]
    assert info["basic_reward"] == reward
    assert info["addon_reward"] == -abs(theta) and info["statistic"] == abs(theta)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, "does not exist"),
        ("x = (\n", "syntax error"),
        ("import math\n\nraise RuntimeError('boom')\n", "line 3: RuntimeError: boom"),
        ("from tailor.envs import get_task\nget_task('nope')\n", "unknown task 'nope'"),
    ],
)
def test_load_tasks_file_errors(tmp_path, clean_registry, source, expected):
    path = tmp_path / "tasks.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(TailorError) as err:
        load_tasks_file(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)
    exc = err.value  # no chained traceback for the CLI to show
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


# ---------------------------------------------------------------------------------------------
# VecEnv fast path == gymnasium, step by step


def _short(task: Task, steps: int) -> Task:
    """The task with a shorter time limit, so truncation and auto-reset happen in the test."""
    return dataclasses.replace(
        task, name=f"{task.name}-short", env_kwargs={**task.env_kwargs, "max_episode_steps": steps}
    )


def _assert_matches_gymnasium(
    task: Task, backend: str, num_envs=3, seed=7, steps=300, infos: list | None = None
):
    """Step VecEnv and independent gymnasium envs (seeded seed + i) with the same actions.

    Actions are drawn in [-1.5, 1.5] so clipping matters. Observations must be identical (float32;
    on the MuJoCo path also the backend's float64 ones), rewards and the two task terms equal to
    1e-9, and the done flags, final observations and auto-resets identical. ``infos``: the
    ``BatchState.info`` the task's vector_terms saw at each step, compared key by key with
    gymnasium's ``info`` (same keys, values to 1e-12).
    """
    venv = VecEnv(task, num_envs, seed)
    assert venv.backend == backend
    refs = [make_env(task) for _ in range(num_envs)]
    ref_obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(refs)])
    obs = venv.reset()
    assert obs.dtype == np.float32 and obs.shape == (num_envs, venv.obs_dim)
    np.testing.assert_array_equal(obs, ref_obs.astype(np.float32))
    rng = np.random.default_rng(123)
    counts = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        actions = rng.uniform(-1.5, 1.5, size=(num_envs, venv.act_dim)).astype(np.float32)
        res = venv.step(actions)
        obs64 = venv._backend._obs() if backend == "mujoco" else None  # reset rows: new episode
        for i, env in enumerate(refs):
            o, r, term, trunc, info = env.step(actions[i])
            where = f"{task.name} step {t} env {i}"
            if obs64 is not None and not res.done[i]:
                np.testing.assert_array_equal(obs64[i], o, err_msg=where)
            if infos is not None:
                _assert_same_info(infos[t], i, info, where)
            assert abs(res.basic[i] - r) <= 1e-9, where
            assert abs(res.addon[i] - info["addon_reward"]) <= 1e-9, where
            assert abs(res.statistic[i] - info["statistic"]) <= 1e-9, where
            assert (bool(res.terminated[i]), bool(res.truncated[i])) == (term, trunc), where
            np.testing.assert_array_equal(res.final_obs[i], np.float32(o), err_msg=where)
            if term or trunc:
                counts["terminated"] += term
                counts["truncated"] += trunc
                o, _ = env.reset()
            np.testing.assert_array_equal(res.obs[i], np.float32(o), err_msg=where)
    venv.close()
    return counts


def _assert_same_info(batch_info: dict, i: int, info: dict, where: str) -> None:
    """Env ``i``'s entries of a ``BatchState.info`` equal gymnasium's ``info`` (to 1e-12)."""
    keys = set(info) - {"basic_reward", "addon_reward", "statistic"}
    assert set(batch_info) == keys, where
    for key in keys:
        np.testing.assert_allclose(batch_info[key][i], info[key], rtol=0, atol=1e-12, err_msg=where)


# The robots of tailor.envs.robots: (env id, time limit of the test, steps; Humanoid is slower)
ROBOTS = [
    ("HalfCheetah-v5", 60, 150),
    ("Hopper-v5", 60, 150),
    ("Ant-v5", 40, 120),
    ("Walker2d-v5", 60, 300),
    ("Swimmer-v5", 60, 300),
    ("InvertedPendulum-v5", 60, 300),
    ("InvertedDoublePendulum-v5", 60, 300),
    ("Reacher-v5", 40, 200),
    ("Pusher-v5", 40, 200),
    ("Humanoid-v5", 40, 120),
    ("HumanoidStandup-v5", 40, 120),
]


@pytest.mark.parametrize(("env_id", "limit", "steps"), ROBOTS)
def test_robot_fast_path_matches_gymnasium_exactly(env_id, limit, steps):
    """Every gymnasium MuJoCo v5 robot: obs, reward, every info term, terminated/truncated and
    resets equal to gymnasium's, over episodes that terminate or hit the time limit."""
    seen = []

    def terms(b):
        seen.append({k: np.array(v) for k, v in b.info.items()})
        return -np.abs(b.qpos[:, 1]), b.qvel[:, 0].copy()

    task = Task(
        name=f"{env_id}-terms",
        env_id=env_id,
        addon=lambda env, action, info: -abs(env.unwrapped.data.qpos[1]),
        statistic=lambda env, action, info: env.unwrapped.data.qvel[0],
        env_kwargs={"max_episode_steps": limit},
        vector_terms=terms,
    )
    counts = _assert_matches_gymnasium(task, "mujoco", steps=steps, infos=seen)
    assert counts["terminated"] + counts["truncated"] >= 3


def test_user_task_without_vector_terms_runs_fast_and_exact(tmp_path, clean_registry):
    """The README's user task (scalar addon/statistic only) is on the fast path and equal to
    gymnasium; so is one whose terms read contact forces, body positions and ``info``."""
    from tailor.envs.backends import has_fast_path

    path = tmp_path / "my_tasks.py"
    path.write_text(USER_TASKS)
    (walker,) = load_tasks_file(path)
    assert walker.vector_terms is None and has_fast_path(walker)
    _assert_matches_gymnasium(_short(walker, 50), "mujoco", steps=150)

    def addon(env, action, info):
        u = env.unwrapped
        head = u.get_body_com("torso")[2] + 1e-3 * np.square(u.data.cfrc_ext).sum()
        return head + info["x_velocity"] - 0.1 * float(np.sum(np.abs(action)))

    rich = Task(
        name="humanoid-rich",
        env_id="Humanoid-v5",
        addon=addon,
        statistic=lambda env, action, info: info["addon_reward"] - info["basic_reward"],
        env_kwargs={"max_episode_steps": 30},
    )
    _assert_matches_gymnasium(rich, "mujoco", steps=60)
    # A built-in task's scalar terms alone agree too; the point mass needs vector_terms.
    plain = dataclasses.replace(get_task("hopper-jump"), name="hop-plain", vector_terms=None)
    assert has_fast_path(plain)
    _assert_matches_gymnasium(plain, "mujoco", steps=100)
    plain = dataclasses.replace(get_task("pointmass"), name="pm-plain", vector_terms=None)
    assert not has_fast_path(plain) and VecEnv(plain, 1).backend == "gymnasium"


@pytest.mark.parametrize(
    ("name", "limit", "ends"),
    [
        ("halfcheetah-hindleg", 70, "truncated"),
        ("halfcheetah-hindleg:ffoot", 70, "truncated"),
        ("hopper-jump", 1000, "terminated"),
        ("ant-sideways", 70, "truncated"),
        ("pointmass", 40, "truncated"),
    ],
)
def test_fast_path_matches_gymnasium_exactly(name, limit, ends):
    task = get_task(name)
    backend = "numpy" if name == "pointmass" else "mujoco"
    if limit != 1000:
        task = _short(task, limit)
    counts = _assert_matches_gymnasium(task, backend)
    assert counts[ends] >= 3  # episode ends and auto-resets were exercised


def test_time_limit_defaults_to_1000_and_result_shapes():
    for name in ("halfcheetah-hindleg", "hopper-jump", "ant-sideways"):
        venv = VecEnv(name, 2, seed=0)
        assert venv.max_episode_steps == 1000
        assert venv.action_low.dtype == np.float32 and venv.action_low.shape == (venv.act_dim,)
        venv.close()
    venv = VecEnv("halfcheetah-hindleg", 2, seed=0)
    assert (venv.obs_dim, venv.act_dim) == (17, 6)
    venv.reset()
    res = venv.step(np.zeros((2, 6)))
    assert isinstance(res, StepResult)
    for field in ("basic", "addon", "statistic", "terminated", "truncated"):
        assert getattr(res, field).shape == (2,)
    assert res.final_obs.shape == res.obs.shape == (2, 17)
    assert res.obs.dtype == np.float32
    assert not res.done.any()


def test_truncation_is_not_termination_and_final_obs_is_kept():
    venv = VecEnv(_short(get_task("pointmass"), 5), 2, seed=0)
    venv.reset()
    for _ in range(4):
        res = venv.step(np.ones((2, 2)))
        assert not res.done.any()
        np.testing.assert_array_equal(res.final_obs, res.obs)
    res = venv.step(np.ones((2, 2)))
    assert res.truncated.all() and not res.terminated.any()
    assert not np.array_equal(res.final_obs, res.obs)  # obs is the new episode's first
    np.testing.assert_array_equal(res.obs[:, 2:], 0.0)  # point mass resets at rest
    assert np.all(res.final_obs[:, 2:] > 0)  # pushed by +1 for 5 steps


def test_pointmass_known_answer():
    """One step from (0.5, -1) at rest, force (1, -1): v = 0.1 * a, p = p + 0.1 * v."""
    venv = VecEnv("pointmass", 1, seed=0)
    venv.reset()
    venv._backend.pos[:] = [0.5, -1.0]
    res = venv.step(np.array([[3.0, -1.0]]))  # 3 is clipped to 1
    np.testing.assert_allclose(res.obs[0], [0.51, -1.01, 0.1, -0.1], rtol=1e-6)
    assert res.basic[0] == pytest.approx(-np.hypot(0.51, 1.01))
    assert res.addon[0] == pytest.approx(-1.01) and res.statistic[0] == pytest.approx(1.01)


def test_same_seed_same_result_other_seed_differs():
    def run(seed):
        venv = VecEnv("hopper-jump", 2, seed=seed)
        out = [venv.reset()]
        rng = np.random.default_rng(0)
        for _ in range(60):
            out.append(venv.step(rng.normal(size=(2, 3))).obs)
        return np.stack(out)

    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------------------------------------
# Fallback path for user tasks, and bad values


def test_user_task_runs_on_gymnasium_fallback(clean_registry):
    task = register_task(
        Task(
            name="pendulum-still",
            env_id="Pendulum-v1",
            addon=lambda env, action, info: -(float(action[0]) ** 2),
            statistic=lambda env, action, info: abs(float(env.unwrapped.state[1])),
            statistic_name="mean |theta dot|",
        )
    )
    venv = VecEnv("pendulum-still", 2, seed=3)
    assert venv.backend == "gymnasium" and venv.max_episode_steps == 200
    ref = make_env(task)
    ref_obs, _ = ref.reset(seed=4)  # env 1 of the VecEnv
    np.testing.assert_array_equal(venv.reset()[1], np.float32(ref_obs))
    for t in range(200):
        a = np.array([[0.5], [3.0 * np.sin(t)]])
        res = venv.step(a)
        _, r, term, trunc, info = ref.step(a[1])
        assert res.basic[1] == pytest.approx(r, abs=1e-9)
        assert (bool(res.terminated[1]), bool(res.truncated[1])) == (term, trunc)
        executed = float(np.clip(np.float32(3.0 * np.sin(t)), -2.0, 2.0))  # Pendulum: [-2, 2]
        assert res.addon[1] == -(executed**2) == info["addon_reward"]
        assert res.statistic[1] == pytest.approx(info["statistic"], abs=1e-9)
        assert res.addon[0] == -0.25
    assert res.truncated.all() and not res.terminated.any()


def test_non_finite_addon_names_task_step_and_env(clean_registry):
    # Fast path: a vectorized add-on that goes NaN in env 1 at the 3rd step.
    def terms(b):
        addon = np.zeros(len(b.qpos))
        terms.calls += 1
        if terms.calls == 3:
            addon[1] = np.nan
        return addon, addon

    terms.calls = 0
    task = dataclasses.replace(get_task("pointmass"), name="pm-nan", vector_terms=terms)
    venv = VecEnv(task, 2, seed=0)
    venv.reset()
    venv.step(np.zeros((2, 2)))
    venv.step(np.zeros((2, 2)))
    with pytest.raises(TailorError) as err:
        venv.step(np.zeros((2, 2)))
    msg = str(err.value)
    assert "'pm-nan'" in msg and "vector step 3" in msg and "env index 1" in msg

    # Fallback path: scalar add-on that is infinite from the start.
    slow = dataclasses.replace(
        get_task("pointmass"),
        name="pm-inf",
        vector_terms=None,
        addon=lambda env, action, info: float("inf"),
    )
    venv = VecEnv(slow, 2, seed=0)
    assert venv.backend == "gymnasium"
    venv.reset()
    with pytest.raises(TailorError, match=r"'pm-inf'.*vector step 1.*env index 0"):
        venv.step(np.zeros((2, 2)))
    # make_env checks by itself and names the episode step.
    env = make_env(slow)
    env.reset(seed=0)
    with pytest.raises(TailorError, match=r"'pm-inf'.*inf.*step 1"):
        env.step(np.zeros(2))


def test_bad_actions_and_arguments():
    venv = VecEnv("pointmass", 2, seed=0)
    with pytest.raises(RuntimeError):
        venv.step(np.zeros((2, 2)))
    venv.reset()
    with pytest.raises(TailorError, match=r"shape \(2, 2\)"):
        venv.step(np.zeros((2, 3)))
    with pytest.raises(TailorError, match="non-finite action"):
        venv.step(np.array([[0.0, 0.0], [np.nan, 0.0]]))
    with pytest.raises(TailorError, match="num_envs"):
        VecEnv("pointmass", 0)
    for bad in (0, True, 1.5):
        with pytest.raises(TailorError, match="num_workers must be a positive integer"):
            VecEnv("pointmass", 2, num_workers=bad)
    with pytest.raises(TailorError, match="unknown task"):
        VecEnv("nope", 1)


# ---------------------------------------------------------------------------------------------
# num_workers: the MuJoCo envs stepped on several threads give the same numbers


def _trajectory(task: str | Task, workers: int, num_envs: int = 7, steps: int = 150) -> list:
    """Every array a VecEnv returns over ``steps`` random steps (resets included)."""
    rng = np.random.default_rng(1)
    with VecEnv(task, num_envs, seed=4, num_workers=workers) as venv:
        out = [venv.reset()]
        for _ in range(steps):
            res = venv.step(rng.uniform(-1.5, 1.5, (num_envs, venv.act_dim)))
            out += [getattr(res, f.name) for f in dataclasses.fields(res)]
        out += list(venv.get_state()[0].values())
    return out


def _scalar_robot_task(env_id: str, limit: int) -> Task:
    """A user task with only a scalar add-on (runs mj_rnePostConstraint, reads each MjData)."""
    return Task(
        name=f"{env_id}-scalar",
        env_id=env_id,
        addon=lambda env, action, info: -abs(env.unwrapped.data.qpos[1]),
        statistic=lambda env, action, info: float(env.unwrapped.data.cfrc_ext.sum()),
        env_kwargs={"max_episode_steps": limit},
    )


@pytest.mark.parametrize(
    "task",
    ["halfcheetah-hindleg", "pointmass", "hopper-jump", "ant-sideways", "Humanoid-v5"],
)
def test_workers_give_the_same_trajectories_bit_for_bit(task: str) -> None:
    """1, 2 and 3 threads (7 envs: unequal chunks): the same bits, episode resets included
    (Hopper and Humanoid end episodes mid-run; the scalar Humanoid task reads ``cfrc_ext``)."""
    if task == "Humanoid-v5":
        task = _scalar_robot_task(task, limit=40)
    one = _trajectory(task, 1)
    for workers in (2, 3):
        other = _trajectory(task, workers)
        assert len(other) == len(one)
        for a, b in zip(one, other, strict=True):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _env_threads() -> int:
    return sum(t.name.startswith("tailor-env") for t in threading.enumerate())


def test_close_stops_the_worker_threads() -> None:
    before = threading.active_count()
    venv = VecEnv("halfcheetah-hindleg", 5, seed=0, num_workers=3)
    assert venv._backend.num_workers == 3
    venv.reset()
    for _ in range(3):
        venv.step(np.zeros((5, venv.act_dim)))
    assert _env_threads() == 2  # the calling thread steps a share too
    venv.close()
    assert threading.active_count() == before and _env_threads() == 0
    with pytest.raises(RuntimeError, match="closed"):
        venv.step(np.zeros((5, venv.act_dim)))
    with VecEnv("halfcheetah-hindleg", 2, num_workers=4) as venv:  # no more threads than envs
        venv.reset()
        venv.step(np.zeros((2, venv.act_dim)))
        assert venv._backend.num_workers == 2 and _env_threads() == 1
    assert threading.active_count() == before
    with VecEnv("pointmass", 4, num_workers=2) as venv:  # batched numpy: no threads
        venv.reset()
        venv.step(np.zeros((4, 2)))
        assert threading.active_count() == before


def test_an_error_on_a_worker_thread_reaches_the_caller(monkeypatch) -> None:
    with VecEnv("halfcheetah-hindleg", 4, num_workers=2) as venv:
        venv.reset()
        backend = venv._backend
        own = backend._simulate_rows

        def rows(action, lo, hi):
            if threading.current_thread() is not threading.main_thread():
                raise ValueError("boom")
            time.sleep(0.05)  # leave the worker a chunk
            own(action, lo, hi)

        monkeypatch.setattr(backend, "_simulate_rows", rows)
        with pytest.raises(ValueError, match="boom"):
            venv.step(np.zeros((4, venv.act_dim)))


def test_pointmass_registered_with_gymnasium():
    env = gym.make(POINTMASS_ID)
    assert env.spec.max_episode_steps == 100
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,) and np.all(np.abs(obs[:2]) <= 1) and np.all(obs[2:] == 0)


def test_scripted_controller_beats_random_on_pointmass():
    """The basic reward rewards reaching the goal: a P-controller beats random actions."""

    def episode_return(policy):
        venv = VecEnv("pointmass", 8, seed=1)
        obs = venv.reset()
        total = np.zeros(8)
        rng = np.random.default_rng(0)
        for _ in range(venv.max_episode_steps):
            res = venv.step(policy(obs, rng))
            total += res.basic
            obs = res.obs
        return total.mean()

    p_ctrl = episode_return(lambda o, rng: -3.0 * o[:, :2] - 1.0 * o[:, 2:])
    rand = episode_return(lambda o, rng: rng.uniform(-1, 1, size=(len(o), 2)))
    assert p_ctrl > -15 and rand < 2 * p_ctrl


def test_task_method_uses_the_paper_coefficients_as_defaults():
    from tailor.envs import get_task
    from tailor.experiments.run import task_method

    task = get_task("halfcheetah-hindleg")
    m = task_method(task, "residual")
    assert (m.spec.omega_prime, m.spec.alpha_hat) == (0.17, 0.13472)
    m = task_method(task, "residual", omega_prime=0.1, alpha_hat=None)  # None keeps the default
    assert (m.spec.omega_prime, m.spec.alpha_hat) == (0.1, 0.13472)
    # a given kl coefficient replaces the default beta
    m = task_method(task, "kl", omega_prime=0.05)
    assert (m.spec.omega_prime, m.spec.alpha_hat) == (0.05, 0.05)
    with pytest.raises(TailorError, match="task 'halfcheetah-hindleg': no-entropy does not take"):
        task_method(task, "no-entropy", alpha=0.1)
