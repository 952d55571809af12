"""The highway-env tasks: registration without highway-env, rewards, success, the fast paths."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.envs import get_task, list_tasks, make_env
from tailor.envs import highway as hw
from tailor.envs.classic import success
from tailor.errors import TailorError

needs_highway = pytest.mark.skipif(not hw.have_highway_env(), reason="highway-env not installed")


def test_tasks_are_registered_without_importing_highway_env():
    names = [t.name for t in list_tasks()]
    assert "highway-keepright" in names and "parking-boundary" in names
    assert get_task("highway-keepright").env_id == hw.HIGHWAY_ENV_ID
    assert "residual" in get_task("parking-boundary").coefficients


def test_missing_highway_env_says_how_to_install(monkeypatch):
    monkeypatch.setattr(hw, "have_highway_env", lambda: False)
    for name in ("highway-keepright", "parking-boundary"):
        with pytest.raises(TailorError, match=r"pip install 'tailor-rl\[highway\]'"):
            make_env(name)


def test_success_rules():
    assert success("highway-keepright", False, True, 40, {"crashed": False})
    assert not success("highway-keepright", True, False, 7, {"crashed": True})
    assert success("parking-boundary", True, False, 30, {"is_success": True, "crashed": False})
    assert not success("parking-boundary", True, False, 9, {"is_success": False, "crashed": True})
    assert not success("parking-boundary", False, True, 100, {"is_success": False})


def test_segments_touch_polygon_known_cases():
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [0.0, 0.0]])
    segs = np.array(
        [
            [[1.0, -1.0], [1.0, 3.0]],  # crosses
            [[0.5, 0.5], [1.5, 1.5]],  # inside
            [[3.0, 0.0], [3.0, 2.0]],  # outside, parallel
            [[2.0, -1.0], [2.0, 0.5]],  # on an edge (touching counts)
            [[-1.0, 3.0], [3.0, 3.5]],  # outside
            [[2.0, 3.0], [2.0, 4.0]],  # collinear with an edge but beyond it
        ]
    )
    assert hw.segments_touch_polygon(segs, square).tolist() == [
        True,
        True,
        False,
        True,
        False,
        False,
    ]


@needs_highway
def test_segments_touch_polygon_agrees_with_highway_env():
    from highway_env import utils

    rng = np.random.default_rng(0)
    for _ in range(200):
        c, h = rng.uniform(-3, 3, 2), rng.uniform(0, np.pi)
        d, n = np.array([np.cos(h), np.sin(h)]), np.array([-np.sin(h), np.cos(h)])
        rect = np.array([c + 2.5 * d + n, c + 2.5 * d - n, c - 2.5 * d - n, c - 2.5 * d + n])
        seg = rng.uniform(-5, 5, (1, 2, 2))
        seg_poly = np.array([seg[0, 0], seg[0, 1], seg[0, 0]])
        rect_poly = np.vstack([rect, rect[:1]])
        expected = utils.are_polygons_intersecting(rect_poly, seg_poly, np.zeros(2), np.zeros(2))
        assert hw.segments_touch_polygon(seg, rect)[0] == expected[0]


@needs_highway
def test_highway_keepright_rewards_and_fast_paths():
    from highway_env.envs.common.observation import KinematicObservation
    from highway_env.envs.highway_env import HighwayEnvFast

    env = make_env("highway-keepright")
    obs, _ = env.reset(seed=1)
    u = env.unwrapped
    assert obs.shape == (25,) and env.action_space.n == 5
    assert u.config["lanes_count"] == 3 and u.config["vehicles_count"] == 30
    assert u.config["duration"] == 40 and u.config["right_lane_reward"] == 0.0
    cfg = {k: v for k, v in u.config["observation"].items() if k != "type"}
    reference_obs = KinematicObservation(u, **cfg)
    ref = HighwayEnvFast(config=hw.HIGHWAY_CONFIG)  # highway-env's own road and observation
    ref.reset(seed=1)
    for a in (3, 2, 2, 1, 0):
        obs, r, term, _, info = env.step(a)
        ref.step(a)
        np.testing.assert_array_equal(
            [v.position for v in u.road.vehicles], [v.position for v in ref.road.vehicles]
        )
        np.testing.assert_array_equal(obs, reference_obs.observe().ravel())
        lane = u.vehicle.lane_index[2]
        assert info["addon_reward"] == pytest.approx(0.5 * lane / 2)
        assert info["statistic"] == float(lane == 2)
        rw = info["rewards"]
        raw = -1.0 * rw["collision_reward"] + 0.4 * rw["high_speed_reward"]
        assert r == pytest.approx((raw + 1.0) / 1.4 * rw["on_road_reward"])
        if term:
            break


@needs_highway
def test_parking_boundary_lines_addon_and_flat_obs():
    env = make_env("parking-boundary")
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    assert obs.shape == (12,) and env.action_space.shape == (2,)
    inner = u.observation_type.observe()
    own, goal = inner["observation"], inner["desired_goal"]
    np.testing.assert_array_equal(obs, np.concatenate([own, goal - own]))
    assert np.all(np.isfinite(env.observation_space.high))
    # 14 bays on each side share their side lines: 15 lines per side
    assert u.bay_lines.shape == (30, 2, 2)
    _, _, _, _, info = env.step(np.zeros(2))
    assert info["addon_reward"] == 0.0  # starts at the origin, far from the bays
    # parked straight in the middle of a bay: no contact; shifted onto its side line: contact
    lane = u.road.network.get_lane(("a", "b", 3))
    u.vehicle.position = lane.position(4.0, 0.0)
    u.vehicle.heading = lane.heading
    assert not u.touches_line()
    u.vehicle.position = lane.position(4.0, 1.6)
    assert u.touches_line()
    u.vehicle.speed = 0.0
    _, _, _, _, info = env.step(np.zeros(2))
    assert info["addon_reward"] == -1.0 and info["statistic"] == 1.0


@needs_highway
def test_dqn_and_sac_run_on_the_highway_tasks(tmp_path):
    from tailor.experiments import run

    fast = {"learning_starts": 4, "batch_size": 4, "hidden": (8,), "log_interval": 0}
    prior = run.train_prior("highway-keepright", "dqn", 8, 0, tmp_path / "h", log=None, **fast)
    res = run.evaluate(prior, episodes=1, max_steps=3)
    assert res["length"]["mean"] == 3 and res["task"] == "highway-keepright"
    sac = run.train_prior(
        "parking-boundary", "sac", 8, 0, tmp_path / "p", log=None, **fast, warm_start_steps=2
    )
    cust = run.customize(
        "parking-boundary", "sac", sac, 8, 0, tmp_path / "c", log=None, **fast, warm_start_steps=2
    )
    res = run.evaluate(cust, episodes=1, max_steps=5)
    assert res["length"]["mean"] == 5 and 0.0 <= res["success_rate"] <= 1.0


def test_parking_relabel_known_answers():
    own = np.array([[0.1, 0.2, 0.5, 0.0, 1.0, 0.0]] * 3)
    obs = np.concatenate([own, np.zeros_like(own)], axis=1)
    goal_from = obs.copy()
    goal_from[1, 0] += 0.04  # |dx| . W = 0.04 -> distance term -0.2 (not a success)
    goal_from[2, 4] -= 1.0  # |d cos_h| . W = 0.02 -> -sqrt(0.02) = -0.1414 (not a success)
    infos = [{"crashed": False}, {"crashed": True}, {}]
    o, _n, basic, term = hw.parking_relabel(obs, obs, goal_from, infos)
    np.testing.assert_allclose(basic, [0.0, -0.2 - 5.0, -np.sqrt(0.02)])
    np.testing.assert_array_equal(term, [True, True, False])  # reached / crashed / neither
    np.testing.assert_allclose(o[1, 6:], [0.04, 0, 0, 0, 0, 0], atol=1e-12)
    np.testing.assert_array_equal(o[:, :6], own)  # the car's own part is untouched
    assert obs[1, 6] == 0.0  # inputs are not modified


@needs_highway
def test_parking_relabel_with_the_true_goal_reproduces_the_env():
    env = make_env("parking-boundary")
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(60):
        nxt, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        rows.append((obs, nxt, info, info["basic_reward"], terminated))
        obs = nxt
        if terminated or truncated:
            break
    o, n, infos, basic, term = (
        np.array(x) if k != 2 else list(x) for k, x in enumerate(zip(*rows, strict=True))
    )
    # an observation whose own part is the episode's desired goal
    goal_from = np.concatenate([n[:, :6] + n[:, 6:], np.zeros_like(n[:, 6:])], axis=1)
    o2, n2, basic2, term2 = hw.parking_relabel(o, n, goal_from, infos)
    np.testing.assert_allclose(o2, o, atol=1e-9)
    np.testing.assert_allclose(n2, n, atol=1e-9)
    np.testing.assert_allclose(basic2, basic, atol=1e-6)
    np.testing.assert_array_equal(term2, term)


@needs_highway
def test_sac_hindsight_stores_relabelled_copies():
    from tailor.algos.replay import ReplayBuffer
    from tailor.algos.sac import SACConfig, _store_hindsight
    from tailor.methods import resolve

    task = get_task("parking-boundary")
    own = np.arange(4, dtype=float)[:, None] * np.array([[0.01, 0.0, 0.0, 0.0, 1.0, 0.0]])
    own[:, 4] = 1.0
    goal = np.full(6, 0.3)
    obs = np.concatenate([own, goal - own], axis=1)
    episode = [
        (obs[t], np.zeros(2), -1.0 * (t == 1), obs[t + 1], {"crashed": False}) for t in range(3)
    ]
    buf = ReplayBuffer(12, (2,), 100)
    cfg = SACConfig(her_k=4)
    method = resolve("full", alpha=0.05)
    _store_hindsight(buf, episode, task, method, cfg, np.random.default_rng(0))
    assert len(buf) == 3 * 4
    for k in range(len(buf)):
        t = k // 4
        np.testing.assert_allclose(buf.obs[k, :6], own[t], atol=1e-6)
        g = buf.obs[k, 6:] + own[t]  # the relabelled goal: the own part of a later next_obs
        j = [i for i in range(t, 3) if np.allclose(g, own[i + 1], atol=1e-6)]
        assert j, (k, g)
        dist = -np.sqrt(np.abs(own[j[0] + 1] - own[t + 1]) @ [1, 0.3, 0, 0, 0.02, 0.02])
        addon = -1.0 * (t == 1)
        assert buf.rew[k] == pytest.approx(dist + addon, abs=1e-6)  # full: basic + add-on
        assert buf.done[k] == float(dist > -0.12)
    # the last transition can only be relabelled with its own outcome: reached, reward 0
    np.testing.assert_array_equal(buf.done[8:12], 1.0)
    with pytest.raises(TailorError, match="relabel_goal"):
        from tailor.algos.sac import train_sac

        train_sac("mountaincar-noleft", method, SACConfig(her_k=1, total_steps=2), log=None)


@needs_highway
def test_mcts_model_sees_the_wrapped_observation():
    from tailor.algos.mcts import TaskModel

    model = TaskModel("highway-keepright")
    env = make_env("highway-keepright")
    obs, _ = env.reset(seed=0)
    model.sync(env)
    o, r_addon, _ = model.step(1)  # IDLE, on the copy
    real, _, _, _, info = env.step(1)
    assert o.shape == obs.shape == (25,)
    np.testing.assert_allclose(o, real, atol=1e-6)  # same state, same (flattened) observation
    assert r_addon == info["addon_reward"]


@needs_highway
def test_mcts_model_snapshots_replay_the_same_steps():
    """TaskModel restores highway-env's state from snapshots (no deep copy per node): stepping
    from a restored state repeats the same observations and add-on rewards."""
    from tailor.algos.mcts import TaskModel

    model = TaskModel("highway-keepright")
    assert model._mode == "snapshot"
    env = make_env("highway-keepright")
    env.reset(seed=3)
    model.sync(env)
    start = model.get_state()
    first = [model.step(a) for a in (3, 1, 4, 1)]
    model.set_state(start)
    again = [model.step(a) for a in (3, 1, 4, 1)]
    for (o1, r1, t1), (o2, r2, t2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(o1, o2)
        assert (r1, t1) == (r2, t2)
    model.set_state(start)  # the real env was never touched: the copy equals it step for step
    real = env.step(3)
    np.testing.assert_allclose(model.step(3)[0], real[0], atol=1e-6)
