"""The numpy fast path of the highway-env tasks equals highway-env step for step; snapshots.

The reference is highway-env's own code: its env classes (``HighwayEnvFast``, ``HighwayEnv``,
``ParkingEnv``) with the tasks' configurations, stepped with the same seeds and actions as the
fast envs; and, for single frames, ``Road.act()`` / ``Road.step()`` on a deep copy of a scene.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from tailor.envs import highway as hw

pytestmark = pytest.mark.skipif(not hw.have_highway_env(), reason="highway-env not installed")

TOL = 1e-9  # the fast path's arithmetic may differ from highway-env's in the last bits


def vehicle_state(v) -> tuple:
    """Everything a frame changes on a vehicle, comparable between two envs."""
    impact = getattr(v, "impact", None)
    return (
        type(v).__name__,
        tuple(v.position),
        float(v.heading),
        float(v.speed),
        v.lane_index,
        getattr(v, "target_lane_index", None),
        float(getattr(v, "target_speed", 0.0)),
        float(getattr(v, "timer", 0.0)),
        bool(v.crashed),
        None if impact is None else tuple(impact),
        (float(v.action["steering"]), float(v.action["acceleration"])),
    )


def assert_same_road(road_a, road_b) -> None:
    """The vehicles (and road objects' flags) of two roads agree: discrete parts exactly,
    floats to TOL."""
    assert len(road_a.vehicles) == len(road_b.vehicles)
    for va, vb in zip(road_a.vehicles, road_b.vehicles, strict=True):
        sa, sb = vehicle_state(va), vehicle_state(vb)
        assert sa[0] == sb[0] and sa[4:6] == sb[4:6] and sa[8] == sb[8], (sa, sb)
        assert (sa[9] is None) == (sb[9] is None), (sa, sb)
        fa = np.array([*sa[1], *sa[2:4], *sa[6:8], *sa[10], *(sa[9] or ())])
        fb = np.array([*sb[1], *sb[2:4], *sb[6:8], *sb[10], *(sb[9] or ())])
        np.testing.assert_allclose(fa, fb, rtol=0, atol=TOL)
    for oa, ob in zip(road_a.objects, road_b.objects, strict=True):
        assert (oa.crashed, oa.hit) == (ob.crashed, ob.hit)


def flat(obs) -> np.ndarray:
    if isinstance(obs, dict):
        return np.concatenate([np.ravel(obs[k]) for k in sorted(obs)])
    return np.ravel(obs)


def run_side_by_side(reference, fast, actions, seed: int) -> dict:
    """Step both envs with the same actions, resetting both with seed, seed + 1, ... when an
    episode ends; assert equal observations, rewards, terminations, truncations, infos and
    vehicle states after every step. Returns counts of what happened (to check coverage)."""
    stats = {"steps": 0, "episodes": 0, "crashes": 0, "lane_changes": 0, "impacts": 0}
    for env in (reference, fast):
        env.reset(seed=seed)
    for a in actions:
        before = [getattr(v, "target_lane_index", None) for v in reference.road.vehicles]
        ra, rb = reference.step(a), fast.step(a)
        stats["steps"] += 1
        np.testing.assert_allclose(flat(rb[0]), flat(ra[0]), rtol=0, atol=TOL)
        assert rb[1] == pytest.approx(ra[1], abs=TOL)
        assert (rb[2], rb[3]) == (ra[2], ra[3])
        for key in ("crashed", "is_success"):
            assert rb[4].get(key) == ra[4].get(key)
        if "rewards" in ra[4]:
            assert rb[4]["rewards"] == pytest.approx(ra[4]["rewards"], abs=TOL)
        assert_same_road(reference.road, fast.road)
        assert reference.time == fast.time and reference.steps == fast.steps
        after = [getattr(v, "target_lane_index", None) for v in reference.road.vehicles]
        stats["lane_changes"] += sum(x != y for x, y in zip(before, after, strict=True))
        stats["crashes"] += sum(v.crashed for v in reference.road.vehicles)
        stats["impacts"] += sum(getattr(v, "impact", None) is not None for v in fast.road.vehicles)
        if ra[2] or ra[3]:
            stats["episodes"] += 1
            seed += 1
            for env in (reference, fast):
                env.reset(seed=seed)
    return stats


def fast_env(kind: str, config: dict):
    env = hw._classes()[kind](config=config)
    assert env.fast
    return env


def test_highway_keepright_equals_highway_env():
    from highway_env.envs.highway_env import HighwayEnvFast

    rng = np.random.default_rng(0)
    # mostly IDLE, so that episodes last (random driving crashes within a few steps)
    actions = [int(a) for a in rng.choice(5, 220, p=[0.1, 0.5, 0.1, 0.2, 0.1])]
    stats = run_side_by_side(
        HighwayEnvFast(config=dict(hw.HIGHWAY_CONFIG)),
        fast_env("highway", dict(hw.HIGHWAY_CONFIG)),
        actions,
        seed=0,
    )
    # the comparison covered MOBIL lane changes, crashes, and more than one episode
    assert stats["lane_changes"] > 20 and stats["crashes"] > 0 and stats["episodes"] >= 2


def test_highway_with_all_collision_checks_equals_highway_env():
    """highway-env's ``highway-v0`` checks the collisions of every pair of vehicles (not only
    the ego's): crashes and impacts among the IDM traffic."""
    from highway_env.envs.highway_env import HighwayEnv

    class FastHighway(HighwayEnv):
        def _simulate(self, action=None):
            from tailor.envs import highway_fast

            assert highway_fast.simulate(self, action)

    config = {"vehicles_count": 25, "simulation_frequency": 5, "vehicles_density": 2.0}
    rng = np.random.default_rng(1)
    actions = [int(a) for a in rng.choice(5, 40, p=[0.1, 0.5, 0.1, 0.2, 0.1])]
    stats = run_side_by_side(HighwayEnv(config=config), FastHighway(config=config), actions, 3)
    assert stats["lane_changes"] > 0


@pytest.mark.parametrize("parked", [0, 10])
def test_parking_boundary_equals_highway_env(parked):
    from highway_env.envs.parking_env import ParkingEnv

    config = {**hw.PARKING_CONFIG, "vehicles_count": parked}
    rng = np.random.default_rng(parked)
    actions = list(rng.uniform(-1, 1, (300, 2)))
    stats = run_side_by_side(ParkingEnv(config=config), fast_env("parking", config), actions, 0)
    assert stats["episodes"] >= 2


def test_parking_crashes_into_a_wall_and_a_parked_car_as_highway_env():
    """Full throttle towards a wall, and towards a parked car: crashes, impacts and the
    collision penalty as in highway-env."""
    from highway_env.envs.parking_env import ParkingEnv

    config = {**hw.PARKING_CONFIG, "vehicles_count": 12}
    for target in ("wall", "car"):
        ref, fast = ParkingEnv(config=config), fast_env("parking", config)
        crashed = False
        for env in (ref, fast):
            env.reset(seed=5)
            v = env.vehicle
            if target == "wall":
                v.heading = 0.0  # towards the wall at x = +35
            else:
                parked = env.road.vehicles[1]
                d = parked.position - v.position
                v.heading = float(np.arctan2(d[1], d[0]))
        for _ in range(40):
            ra, rb = ref.step(np.array([1.0, 0.0])), fast.step(np.array([1.0, 0.0]))
            np.testing.assert_allclose(flat(rb[0]), flat(ra[0]), rtol=0, atol=TOL)
            assert rb[1] == pytest.approx(ra[1], abs=TOL) and rb[2:4] == ra[2:4]
            assert_same_road(ref.road, fast.road)
            crashed |= ra[4]["crashed"]
            if ra[2] or ra[3]:
                break
        assert crashed, target


# ---------------------------------------------------------------------------------------------
# Single frames of random dense scenes: every IDM / MOBIL / abort / collision branch


def random_scene(rng: np.random.Generator, n: int = 24):
    """A 3-lane straight road with ``n`` IDM vehicles packed into 120 m: many mid lane change
    (some into the same lane), some touching, one pair at exactly the same longitudinal
    position (a tie in the neighbour search)."""
    from highway_env.road.road import Road, RoadNetwork
    from highway_env.vehicle.behavior import IDMVehicle

    road = Road(RoadNetwork.straight_road_network(3, speed_limit=30), np_random=rng)
    for k in range(n):
        lane = int(rng.integers(3))
        x = float(rng.uniform(0, 120))
        if k == 1:  # a tie: same lane, same longitudinal position as vehicle 0
            x, lane = road.vehicles[0].position[0], road.vehicles[0].lane_index[2]
        v = IDMVehicle(
            road,
            [x, 4.0 * lane + rng.normal(0, 0.8)],
            heading=float(rng.normal(0, 0.05)),
            speed=float(rng.uniform(0, 32)),
            target_lane_index=("0", "1", int(np.clip(lane + rng.integers(-1, 2), 0, 2))),
            target_speed=float(rng.uniform(15, 35)),
            timer=float(rng.uniform(0.5, 1.5)),
        )
        v.randomize_behavior()
        v.POLITENESS = float(rng.choice([0.0, 0.5]))
        v.crashed = bool(rng.random() < 0.1)
        v.check_collisions = bool(rng.random() < 0.7)
        road.vehicles.append(v)
    return road


def test_single_frames_of_random_scenes_equal_highway_env():
    from tailor.envs import highway_fast

    rng = np.random.default_rng(0)
    changed = crashed = 0
    for _ in range(60):
        road = random_scene(rng)
        ref = copy.deepcopy(road)
        env = SimpleNamespace(
            config={"simulation_frequency": 5, "policy_frequency": 5, "manual_control": False},
            road=road,
            steps=0,
            viewer=None,
            controlled_vehicles=[],
        )
        before = [v.target_lane_index for v in ref.vehicles]
        ref.act()
        ref.step(1 / 5)
        assert highway_fast.simulate(env, None)
        assert_same_road(ref, road)
        changed += sum(v.target_lane_index != b for v, b in zip(ref.vehicles, before, strict=True))
        crashed += sum(v.crashed for v in ref.vehicles)
    assert changed > 50 and crashed > 60  # aborts / new lane changes, collisions happened


def test_steps_of_random_plain_vehicle_scenes_equal_highway_env():
    """Plain vehicles (stored actions, as parked cars and the parking ego) driving at each
    other and at walls, several frames per step: the per-step motion bounds that skip most
    collision checks never skip a collision, also after an impact mid-step."""
    from highway_env.envs.parking_env import ParkingEnv
    from highway_env.vehicle.kinematics import Vehicle
    from highway_env.vehicle.objects import Obstacle

    from tailor.envs import highway_fast

    rng = np.random.default_rng(5)
    crashed = impacts = 0
    for _ in range(30):
        base = ParkingEnv(config={"vehicles_count": 0})
        base.reset(seed=int(rng.integers(1000)))
        road = base.road
        road.vehicles[:] = []
        for _k in range(12):
            v = Vehicle(
                road,
                rng.uniform([-15, -10], [15, 10]),
                heading=float(rng.uniform(-np.pi, np.pi)),
                speed=float(rng.choice([0.0, rng.uniform(-5, 15)])),
            )
            v.action = {"steering": float(rng.uniform(-0.5, 0.5)), "acceleration": 0.0}
            if v.speed:
                v.action["acceleration"] = float(rng.uniform(-5, 5))
            road.vehicles.append(v)
        block = Obstacle(road, rng.uniform(-10, 10, 2))  # and a small obstacle
        road.objects.append(block)
        ref = copy.deepcopy(road)
        env = SimpleNamespace(
            config={"simulation_frequency": 15, "policy_frequency": 5, "manual_control": False},
            road=road,
            steps=0,
            viewer=None,
            controlled_vehicles=[],
        )
        for _step in range(4):
            for _frame in range(3):
                ref.act()
                ref.step(1 / 15)
            assert highway_fast.simulate(env, None)
            assert_same_road(ref, road)
            impacts += sum(v.impact is not None for v in ref.vehicles)
        crashed += sum(v.crashed for v in ref.vehicles)
    assert crashed > 20 and impacts > 5


def test_neighbours_equal_road_neighbour_vehicles_including_ties():
    from tailor.envs import highway_fast as hf

    rng = np.random.default_rng(1)
    for _ in range(20):
        road = random_scene(rng)
        g = hf.lane_table(road.network)
        t = hf.pack(road, g)
        s, r = hf.local_coordinates(g, t.pos)
        n = len(t.kind)
        who = np.repeat(np.arange(n), len(g.index))
        lanes = np.tile(np.arange(len(g.index)), n)
        front, rear = hf.neighbours(g, t, s, r, who, lanes)
        for i, k, f, b in zip(who, lanes, front, rear, strict=True):
            ef, eb = road.neighbour_vehicles(road.vehicles[i], g.index[k])
            assert (road.vehicles[f] if f >= 0 else None) is ef
            assert (road.vehicles[b] if b >= 0 else None) is eb


def test_collision_filters_never_rule_out_a_collision():
    """The vectorized filters only drop pairs that highway-env finds neither intersecting nor
    about to intersect (random rectangles and displacements, many of them touching)."""
    from highway_env import utils

    from tailor.envs import highway_fast as hf

    rng = np.random.default_rng(2)
    m = 3000
    b = hf.Bodies(
        pos=rng.uniform(-4, 4, (2 * m, 2)),
        heading=rng.uniform(-np.pi, np.pi, 2 * m),
        speed=rng.uniform(0, 30, 2 * m),
        length=rng.choice([5.0, 1.0, 40.0], 2 * m),
        width=rng.choice([2.0, 1.0], 2 * m),
        diagonal=np.zeros(2 * m),
        solid=np.ones(2 * m, bool),
        obstacle=np.zeros(2 * m, bool),
        cos=np.zeros(2 * m),
        sin=np.zeros(2 * m),
        first=np.arange(m),
        second=np.arange(m, 2 * m),
    )
    b.diagonal[:] = np.sqrt(b.length**2 + b.width**2)
    b.cos[:], b.sin[:] = np.cos(b.heading), np.sin(b.heading)
    p, q = b.first, b.second
    dt = 0.2
    c, s = b.cos, b.sin
    vel = b.speed[:, None] * np.stack([c, s], axis=1) * dt
    circle = hf._circle_apart(b, p, q, vel[p] - vel[q], c, s)
    sat = hf.surely_apart(hf.polygons(b, p), hf.polygons(b, q), vel[p], vel[q])
    assert 0 < circle.sum() <= sat.sum() < m  # both filters do something; SAT is sharper
    for k in np.flatnonzero(circle | sat):
        inter, will, _ = utils.are_polygons_intersecting(
            hf._polygon_exact(b, p[k]),
            hf._polygon_exact(b, q[k]),
            hf._velocity_exact(b, p[k]) * dt,
            hf._velocity_exact(b, q[k]) * dt,
        )
        assert not inter and not will


def test_closest_lanes_equal_get_closest_lane_index():
    from highway_env.envs.parking_env import ParkingEnv

    from tailor.envs import highway_fast as hf

    env = ParkingEnv()
    env.reset(seed=0)
    g = hf.lane_table(env.road.network)
    rng = np.random.default_rng(3)
    pos = rng.uniform(-30, 30, (500, 2))
    heading = rng.uniform(-4, 4, 500)
    s, r = hf.local_coordinates(g, pos)
    rows = hf.closest_lanes(g, s, r, heading)
    for k in range(500):
        assert g.index[rows[k]] == env.road.network.get_closest_lane_index(pos[k], heading[k])


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"see_behind": True, "vehicles_count": 12},
        {"normalize": False, "features": ["presence", "x", "y", "heading", "cos_h", "sin_h"]},
        {"clip": False, "features_range": {"x": [-50, 50], "vx": [-10, 10]}},
    ],
)
def test_kinematics_observation_equals_highway_env(options):
    from highway_env.envs.common.observation import KinematicObservation
    from highway_env.envs.highway_env import HighwayEnvFast

    from tailor.envs import highway_fast

    env = HighwayEnvFast(config=dict(hw.HIGHWAY_CONFIG))
    env.reset(seed=7)
    ours, theirs = KinematicObservation(env, **options), KinematicObservation(env, **options)
    for a in (1, 3, 2, 1, 0, 1, 1, 4):
        fast = highway_fast.kinematics_observation(ours)
        np.testing.assert_array_equal(fast, theirs.observe())
        assert fast.dtype == np.float32
        if env.step(a)[2]:
            break
    assert highway_fast.kinematics_observation(KinematicObservation(env, absolute=True)) is None


def test_fast_line_contact_equals_the_full_test():
    """parking-boundary's add-on: the fast env's bounding-box pre-filter never changes the
    answer of the full segment / footprint test."""
    env = fast_env("parking", dict(hw.PARKING_CONFIG))
    env.reset(seed=0)
    rng = np.random.default_rng(6)
    v = env.vehicle
    touching = 0
    for _ in range(3000):
        lane = env.road.network.get_lane(("a", "b", int(rng.integers(14))))
        v.position = lane.position(rng.uniform(-4, 12), rng.uniform(-4, 4))
        v.position[1] *= rng.choice([-1, 1])
        v.heading = float(rng.uniform(-np.pi, np.pi))
        full = bool(hw.segments_touch_polygon(env.bay_lines, v.polygon()).any())
        assert env.touches_line() == full
        touching += full
    assert 500 < touching < 2500


# ---------------------------------------------------------------------------------------------
# Options and fallbacks


def test_fast_false_is_highway_env_code(monkeypatch):
    from highway_env.envs.common.observation import KinematicObservation

    from tailor.envs import highway_fast

    def boom(*args, **kwargs):
        raise AssertionError("fast path used")

    monkeypatch.setattr(highway_fast, "simulate", boom)
    monkeypatch.setattr(highway_fast, "kinematics_observation", boom)
    env = hw.make_highway(fast=False)
    env.reset(seed=0)
    assert type(env.unwrapped.observation_type) is KinematicObservation
    env.step(1)
    park = hw.make_parking(fast=False)
    park.reset(seed=0)
    park.step(np.zeros(2, dtype=np.float32))
    with pytest.raises(AssertionError, match="fast path used"):
        hw.make_highway().reset(seed=0)


def test_the_tasks_use_the_fast_path_by_default(monkeypatch):
    """make_env of both tasks never runs highway-env's frame loop or pandas observations (a
    silent fall-back would only show as lost speed)."""
    import pandas as pd
    from highway_env.road.road import Road

    from tailor.envs import make_env

    def boom(*args, **kwargs):
        raise AssertionError("highway-env's slow path used")

    # highway-env's frame loop, and the pandas code of its Kinematics(Goal) observations
    for target, name in ((Road, "act"), (Road, "step"), (pd.DataFrame, "from_records")):
        monkeypatch.setattr(target, name, boom)
    for task, action in (("highway-keepright", 1), ("parking-boundary", np.ones(2, np.float32))):
        env = make_env(task)
        env.reset(seed=0)
        for _ in range(5):
            env.step(action)


def test_scenes_outside_the_fast_path_fall_back_to_highway_env():
    from highway_env.envs.highway_env import HighwayEnvFast

    from tailor.envs import highway_fast

    config = {
        **hw.HIGHWAY_CONFIG,
        "other_vehicles_type": "highway_env.vehicle.behavior.LinearVehicle",
    }
    fast = fast_env("highway", config)
    fast.reset(seed=0)
    assert not highway_fast.simulate(copy.deepcopy(fast), 1)  # LinearVehicle: not implemented
    stats = run_side_by_side(HighwayEnvFast(config=config), fast, [1, 3, 1, 0, 1], seed=0)
    assert stats["steps"] == 5


# ---------------------------------------------------------------------------------------------
# Snapshots


def _rollout(env, actions) -> list[tuple]:
    out = []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        out.append((flat(obs).copy(), r, term, trunc))
        if term or trunc:
            break
    return out


def _assert_same_rollouts(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]


@pytest.mark.parametrize("kind", ["highway", "parking"])
def test_snapshot_restore_replays_and_equals_deepcopy(kind):
    from tailor.envs.highway_fast import restore, snapshot

    config = dict(hw.HIGHWAY_CONFIG) if kind == "highway" else {**hw.PARKING_CONFIG}
    if kind == "parking":
        config["vehicles_count"] = 6
    env = fast_env(kind, config)
    env.reset(seed=4)
    rng = np.random.default_rng(4)
    if kind == "highway":
        actions = [int(a) for a in rng.choice(5, 8, p=[0.1, 0.5, 0.1, 0.2, 0.1])]
    else:
        actions = list(rng.uniform(-1, 1, (8, 2)))
    _rollout(env, [actions[0]] * 2)  # not at the initial state
    state = snapshot(env)
    copied = copy.deepcopy(env)
    rng_before = copy.deepcopy(env.np_random.bit_generator.state)
    first = _rollout(env, actions)
    env.np_random.random(5)  # the RNG moves on too
    restore(env, state)
    assert env.np_random.bit_generator.state == rng_before
    second = _rollout(env, actions)
    restore(env, state)
    third = _rollout(env, actions)  # a state restores any number of times
    _assert_same_rollouts(first, second)
    _assert_same_rollouts(first, third)
    _assert_same_rollouts(first, _rollout(copied, actions))  # restore-then-step = deepcopy
    restore(env, state)
    assert_same_road(env.road, copy.deepcopy(state["road"]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="another road"):
        restore(env, state)


def test_snapshot_restores_crashes_and_lane_changes():
    """A snapshot taken mid lane change and restored after a crash brings back the uncrashed,
    changing state exactly."""
    from tailor.envs.highway_fast import restore, snapshot

    env = fast_env("highway", dict(hw.HIGHWAY_CONFIG))
    env.reset(seed=2)
    env.step(0)  # LANE_LEFT
    saved = [vehicle_state(v) for v in env.road.vehicles]
    state = snapshot(env)
    for _ in range(40):
        _, _, term, trunc, _ = env.step(3)  # FASTER until something happens
        if term or trunc:
            break
    assert any(vehicle_state(v) != s for v, s in zip(env.road.vehicles, saved, strict=True))
    restore(env, state)
    assert [vehicle_state(v) for v in env.road.vehicles] == saved
    assert env.time == 1 and env.steps == 5
