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
    from tailor.rql import run

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
