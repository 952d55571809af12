"""The highway-env tasks of Residual Q-Learning (reference section 4), registered lazily.

Importing this module registers two tasks and their gymnasium ids *without* importing
highway-env; making one of the envs imports it and raises :class:`TailorError` with the install
command (``pip install 'tailor-rl[highway]'``) when it is missing.

* ``highway-keepright`` (env ``tailor/HighwayKeepRight-v0``, discrete, soft DQN): highway-env's
  ``highway`` with 3 lanes, 30 other vehicles, episodes of 40 s at one decision per second (40
  steps), the 5 discrete meta-actions (LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER). Basic
  reward: highway-env's own with ``right_lane_reward = 0`` (so the basic task only prefers speed
  and no collision), i.e. ``lmap(-1 * crashed + 0.4 * speed_term, [-1, 0.4], [0, 1]) * on_road``.
  Add-on "keep right": ``0.5 * lane / (lanes - 1)`` with ``lane`` the index of the lane the car
  is in after the step (0 = leftmost). Success: the episode ends without a crash. Statistic: the
  fraction of steps in the rightmost lane.
* ``parking-boundary`` (env ``tailor/ParkingBoundary-v0``, continuous, SAC): highway-env's
  ``parking`` (goal-conditioned: acceleration and steering in ``[-1, 1]``; basic reward
  ``-||achieved - desired||_W^0.5 - 5 * crashed``) with 20 s episodes (100 steps at 5 Hz).
  The dict observation is flattened to ``[observation (6), desired_goal - achieved_goal (6)]``
  (the ``achieved_goal`` equals ``observation`` in this env); features ``x, y, vx, vy, cos_h,
  sin_h`` scaled by ``100, 100, 5, 5, 1, 1`` as highway-env does, with finite declared bounds
  (walls, typical speeds) that SAC uses to scale its inputs. Add-on "do not touch the bay
  boundary lines": ``-1`` on every step whose car footprint (a 5 m x 2 m rectangle) intersects
  one of the painted side lines of the parking bays. Success: highway-env's ``is_success``
  (weighted distance to the goal below 0.12) without a crash. Statistic: fraction of steps
  touching a line.

Speed choices (ours, documented): the highway env simulates at 5 Hz (highway-env's
``highway-fast`` setting) and checks collisions of the ego car only. Both envs run highway-env's
simulation frames on numpy arrays and compute their observations with numpy instead of pandas
(:mod:`tailor.envs.highway_fast`; parking also observes once per step instead of four times):
the same observations, rewards, terminations and truncations as highway-env's own code step for
step (``tests/test_highway_fast.py``), more than 10x the env steps per second
(``bench/highway_throughput.py``). ``make_env(task, fast=False)`` runs highway-env's own code.
``highway_fast.snapshot`` / ``restore`` save and restore the simulator state in place, for tree
search.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from tailor.envs.tasks import Task, get_task, register_task
from tailor.errors import TailorError

__all__ = [
    "HIGHWAY_CONFIG",
    "HIGHWAY_ENV_ID",
    "INSTALL_HINT",
    "PARKING_CONFIG",
    "PARKING_ENV_ID",
    "bay_lines",
    "have_highway_env",
    "parking_relabel",
    "segments_touch_polygon",
]

HIGHWAY_ENV_ID = "tailor/HighwayKeepRight-v0"
PARKING_ENV_ID = "tailor/ParkingBoundary-v0"
INSTALL_HINT = "pip install 'tailor-rl[highway]'"

# Reference section 4: 3 lanes, 30 vehicles, duration 40, discrete meta-actions; right-lane
# reward removed from the basic reward (keeping right is the add-on). The rest is ours.
HIGHWAY_CONFIG: dict[str, Any] = {
    "observation": {
        "type": "Kinematics",
        "vehicles_count": 5,
        "features": ["presence", "x", "y", "vx", "vy"],
    },
    "action": {"type": "DiscreteMetaAction"},
    "lanes_count": 3,
    "vehicles_count": 30,
    "duration": 40,
    "policy_frequency": 1,
    "simulation_frequency": 5,
    "ego_spacing": 1.5,
    "right_lane_reward": 0.0,
    "collision_reward": -1.0,
    "high_speed_reward": 0.4,
    "normalize_reward": True,
}
PARKING_CONFIG: dict[str, Any] = {"duration": 20}


def have_highway_env() -> bool:
    """Whether highway-env can be imported."""
    try:
        import highway_env  # noqa: F401
    except ImportError:
        return False
    return True


def _require_highway_env(what: str) -> None:
    if not have_highway_env():
        raise TailorError(f"{what} needs highway-env, which is not installed: {INSTALL_HINT}")


# ---------------------------------------------------------------------------------------------
# Geometry of the add-on of parking-boundary


def bay_lines(road: Any) -> np.ndarray:
    """The painted side lines of the parking bays of a highway-env road, ``[M, 2, 2]``.

    Every lane whose two sides are drawn (line type not NONE) contributes its two side lines,
    from its start to its end at lateral offsets ``+-width/2``; lines shared by neighbouring
    bays appear once.
    """
    from highway_env.road.lane import LineType

    segs: dict[tuple, np.ndarray] = {}
    for lane in road.network.lanes_list():
        w = lane.width_at(0)
        for side, kind in zip((-1.0, 1.0), lane.line_types, strict=True):
            if kind == LineType.NONE:
                continue
            seg = np.array(
                [lane.position(0.0, side * w / 2), lane.position(lane.length, side * w / 2)]
            )
            segs.setdefault(tuple(np.round(seg.ravel(), 6)), seg)
    return np.stack(list(segs.values())) if segs else np.zeros((0, 2, 2))


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z of ``(a - o) x (b - o)``, broadcast over leading axes (last axis: x, y)."""
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (
        b[..., 0] - o[..., 0]
    )


def segments_touch_polygon(segments: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which segments intersect (or touch) a convex polygon.

    Args:
        segments: ``[M, 2, 2]`` (two end points each).
        polygon: ``[K, 2]`` vertices of a convex polygon in order (a closing repeat of the first
            vertex is allowed and ignored).

    Returns:
        ``[M]`` bool: the segment has a point inside or on the polygon.
    """
    poly = np.asarray(polygon, dtype=np.float64)
    if len(poly) > 1 and np.allclose(poly[0], poly[-1]):
        poly = poly[:-1]
    segs = np.asarray(segments, dtype=np.float64)
    p, q = segs[:, 0], segs[:, 1]  # [M, 2]
    a, b = poly, np.roll(poly, -1, axis=0)  # edges a -> b, [K, 2]

    # An end point inside: on the same side of every edge (either orientation).
    def inside(pt: np.ndarray) -> np.ndarray:
        c = _cross(a[None], b[None], pt[:, None])  # [M, K]
        return np.all(c >= 0, axis=1) | np.all(c <= 0, axis=1)

    # Or the segment crosses / touches an edge: the classic orientation test.
    d1 = _cross(p[:, None], q[:, None], a[None])  # [M, K]
    d2 = _cross(p[:, None], q[:, None], b[None])
    d3 = _cross(a[None], b[None], p[:, None])
    d4 = _cross(a[None], b[None], q[:, None])
    crosses = (d1 * d2 <= 0) & (d3 * d4 <= 0)
    # Collinear pieces pass the test above without overlapping: require overlapping boxes.
    lo = np.minimum(p, q)[:, None], np.minimum(a, b)[None]
    hi = np.maximum(p, q)[:, None], np.maximum(a, b)[None]
    boxes = np.all((lo[0] <= hi[1]) & (lo[1] <= hi[0]), axis=-1)
    return inside(p) | inside(q) | np.any(crosses & boxes, axis=1)


# ---------------------------------------------------------------------------------------------
# The env classes (defined on first use, so importing tailor never imports highway-env)


@cache
def _classes() -> dict[str, type]:
    """The env classes by name, defined on first use (highway-env is imported only then)."""
    fast_kinematics, fast_kinematics_goal = _observation_classes()
    return {
        "highway": _highway_class(fast_kinematics),
        "parking": _parking_class(fast_kinematics_goal),
    }


def _observation_classes() -> tuple[type, type]:
    """highway-env's ``Kinematics`` and ``KinematicsGoal`` observations computed with numpy."""
    from highway_env.envs.common.observation import (
        KinematicObservation,
        KinematicsGoalObservation,
    )

    from tailor.envs import highway_fast

    def features_of(v: Any, names: list[str]) -> list[float]:
        vals = {
            "presence": 1.0,
            "x": v.position[0],
            "y": v.position[1],
            "vx": v.velocity[0],
            "vy": v.velocity[1],
            "heading": v.heading,
            "cos_h": v.direction[0],
            "sin_h": v.direction[1],
        }
        try:
            return [float(vals[n]) for n in names]
        except KeyError as exc:
            raise TailorError(f"the fast observation does not support feature {exc}") from None

    class FastKinematics(KinematicObservation):
        """highway-env's ``Kinematics`` observation computed with numpy instead of pandas
        (:func:`highway_fast.kinematics_observation`; highway-env's own where that is not
        implemented)."""

        def observe(self) -> np.ndarray:
            obs = highway_fast.kinematics_observation(self)
            return super().observe() if obs is None else obs

    class FastKinematicsGoal(KinematicsGoalObservation):
        """highway-env's ``KinematicsGoal`` observation computed with numpy."""

        def observe(self) -> dict[str, np.ndarray]:
            v = self.observer_vehicle
            if not v:
                return super().observe()
            obs = np.asarray(features_of(v, self.features)) / self.scales
            goal = np.asarray(features_of(v.goal, self.features)) / self.scales
            return OrderedDict(
                [("observation", obs), ("achieved_goal", obs.copy()), ("desired_goal", goal)]
            )

    return FastKinematics, FastKinematicsGoal


def _highway_class(fast_kinematics: type) -> type:
    """``highway-fast`` with :data:`HIGHWAY_CONFIG` (and the numpy observation)."""
    from highway_env.envs.highway_env import HighwayEnvFast

    from tailor.envs import highway_fast

    class HighwayKeepRightEnv(HighwayEnvFast):
        """``highway-fast`` with :data:`HIGHWAY_CONFIG`. With ``fast`` (the default) the frames
        run on arrays (:func:`highway_fast.simulate`) and the observation is computed with
        numpy; ``fast=False`` is highway-env's own code throughout (the reference of the
        equality tests)."""

        def __init__(
            self, config: dict | None = None, render_mode: str | None = None, fast: bool = True
        ) -> None:
            self.fast = fast  # read by define_spaces, which AbstractEnv.__init__ calls
            super().__init__(config=config, render_mode=render_mode)

        def define_spaces(self) -> None:
            super().define_spaces()
            cfg = dict(self.config["observation"])
            if self.fast and cfg.pop("type") == "Kinematics":
                self.observation_type = fast_kinematics(self, **cfg)
                self.observation_space = self.observation_type.space()

        def _simulate(self, action: Any = None) -> None:
            if not (self.fast and highway_fast.simulate(self, action)):
                super()._simulate(action)

    return HighwayKeepRightEnv


def _parking_class(fast_kinematics_goal: type) -> type:
    """``parking`` with :data:`PARKING_CONFIG`, the bay lines and one observation per step."""
    from highway_env.envs.common.action import action_factory
    from highway_env.envs.common.observation import observation_factory
    from highway_env.envs.parking_env import ParkingEnv

    from tailor.envs import highway_fast

    class ParkingBoundaryEnv(ParkingEnv):
        """``parking`` with :data:`PARKING_CONFIG` and the bay lines (``self.bay_lines``,
        ``[M, 2, 2]``) for the add-on. With ``fast`` (the default): frames on arrays, the
        numpy observation, and one observation per step instead of highway-env's four (its
        reward, termination and info each observe again); ``fast=False``: highway-env's code."""

        bay_lines: np.ndarray
        line_contact: bool = False

        def __init__(
            self, config: dict | None = None, render_mode: str | None = None, fast: bool = True
        ) -> None:
            self.fast = fast
            super().__init__(config=config, render_mode=render_mode)

        def define_spaces(self) -> None:
            if not self.fast:
                super().define_spaces()
                return
            # ParkingEnv.define_spaces with the numpy observation (highway-env calls this twice
            # per reset; its own version runs the pandas observation each time).
            cfg = self.config["observation"]
            if cfg.get("type") == "KinematicsGoal":
                self.observation_type = fast_kinematics_goal(self, **_without_type(cfg))
            else:
                self.observation_type = observation_factory(self, cfg)
            self.action_type = action_factory(self, self.config["action"])
            self.observation_space = self.observation_type.space()
            self.action_space = self.action_type.space()
            self.observation_type_parking = fast_kinematics_goal(
                self, **_without_type(self.PARKING_OBS["observation"])
            )

        def _reset(self) -> None:
            super()._reset()
            self.bay_lines = bay_lines(self.road)
            self._line_boxes = (self.bay_lines.min(axis=1), self.bay_lines.max(axis=1))
            self.line_contact = False

        def _simulate(self, action: Any = None) -> None:
            if not (self.fast and highway_fast.simulate(self, action)):
                super()._simulate(action)

        def step(self, action: np.ndarray) -> tuple:
            out = self._fast_step(action) if self.fast else None
            out = out or super().step(action)
            self.line_contact = self.touches_line()  # read by the task's add-on and statistic
            return out

        def _fast_step(self, action: np.ndarray) -> tuple | None:
            """``AbstractEnv.step`` with ``ParkingEnv``'s reward, termination and info computed
            from one observation (the same numbers: they all observe the same state); ``None``
            where the observation is not the single-agent ``KinematicsGoal`` of
            ``PARKING_OBS``."""
            cfg = self.config["observation"]
            same = cfg.get("type") == "KinematicsGoal" and _without_type(cfg) == _without_type(
                self.PARKING_OBS["observation"]
            )
            if not same or len(self.controlled_vehicles) != 1 or self.render_mode == "human":
                return None
            self.time += 1 / self.config["policy_frequency"]
            self._simulate(action)
            obs = self.observation_type.observe()
            achieved, desired = obs["achieved_goal"], obs["desired_goal"]
            crashed = self.vehicle.crashed
            reward = sum([self.compute_reward(achieved, desired, {})])
            reward += self.config["collision_reward"] * sum([crashed])
            success = self._is_success(achieved, desired)
            terminated = bool(crashed or success)
            truncated = self._is_truncated()
            info = {
                "speed": self.vehicle.speed,
                "crashed": crashed,
                "action": action,
                "is_success": success,
            }
            return obs, reward, terminated, truncated, info

        def touches_line(self) -> bool:
            """Whether the ego car's footprint intersects a bay side line now."""
            v = self.vehicle
            if self.fast:
                # Only a line whose bounding box meets the square around the car's
                # circumscribed circle (a little enlarged) can touch the footprint: usually
                # none, and then no polygon is built.
                reach = v.diagonal / 2 + 1e-6
                lo, hi = self._line_boxes
                x, y = v.position
                near = (lo[:, 0] <= x + reach) & (hi[:, 0] >= x - reach)
                near &= (lo[:, 1] <= y + reach) & (hi[:, 1] >= y - reach)
                if not np.count_nonzero(near):
                    return False
                return bool(segments_touch_polygon(self.bay_lines[near], v.polygon()).any())
            return bool(segments_touch_polygon(self.bay_lines, v.polygon()).any())

    return ParkingBoundaryEnv


def _without_type(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k != "type"}


# Scale of each parking feature (x, y, vx, vy, cos_h, sin_h after highway-env's own scaling by
# 100, 100, 5, 5, 1, 1): the walls are at |x| = 35 m, |y| = 21 m; parking speeds stay within a
# few m/s. Declared as the observation bounds so that SAC's input scaling (which uses finite
# bounds) sees O(1) inputs; not a clip.
_PARKING_SCALE = np.array([0.35, 0.21, 1.0, 1.0, 1.0, 1.0])


class FlattenGoalObservation(gym.ObservationWrapper):
    """``{"observation", "achieved_goal", "desired_goal"}`` ->
    ``[observation (6), desired_goal - achieved_goal (6)]``: the car's own features, then the goal
    relative to the car (the same information as the dict, in the frame a policy generalizes
    over goals with)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        n = env.observation_space["observation"].shape[0]
        scale = _PARKING_SCALE if n == len(_PARKING_SCALE) else np.full(n, np.inf)
        high = np.concatenate([scale, 2.0 * scale])
        self.observation_space = gym.spaces.Box(-high, high, (2 * n,), np.float64)

    def observation(self, observation: dict) -> np.ndarray:
        own = observation["observation"]
        return np.concatenate([own, observation["desired_goal"] - observation["achieved_goal"]])


def make_highway(
    config: dict | None = None, render_mode: str | None = None, fast: bool = True
) -> gym.Env:
    """The ``highway-keepright`` env (gymnasium entry point); ``config`` updates
    :data:`HIGHWAY_CONFIG`. Observations are flattened to ``[vehicles * features]`` float32.
    ``fast=False``: highway-env's own simulation and observation code (same numbers, slower)."""
    _require_highway_env("task 'highway-keepright'")
    env = _classes()["highway"](
        config={**HIGHWAY_CONFIG, **(config or {})}, render_mode=render_mode, fast=fast
    )
    return gym.wrappers.FlattenObservation(env)


def make_parking(
    config: dict | None = None, render_mode: str | None = None, fast: bool = True
) -> gym.Env:
    """The ``parking-boundary`` env (gymnasium entry point); ``config`` updates
    :data:`PARKING_CONFIG`. Observations: ``[observation (6), desired_goal - observation (6)]``.
    ``fast=False``: highway-env's own simulation and observation code (same numbers, slower)."""
    _require_highway_env("task 'parking-boundary'")
    env = _classes()["parking"](
        config={**PARKING_CONFIG, **(config or {})}, render_mode=render_mode, fast=fast
    )
    return FlattenGoalObservation(env)


for _id, _entry in ((HIGHWAY_ENV_ID, make_highway), (PARKING_ENV_ID, make_parking)):
    if _id not in gym.registry:
        # No TimeLimit: both envs truncate themselves at their configured duration.
        gym.register(id=_id, entry_point=_entry, disable_env_checker=True)


# ---------------------------------------------------------------------------------------------
# Task terms


def _lane_fraction(env: Any) -> float:
    u = env.unwrapped
    lanes = len(u.road.network.all_side_lanes(u.vehicle.lane_index))
    return float(u.vehicle.lane_index[2]) / max(lanes - 1, 1)


# highway-env's parking reward (ParkingEnv.default_config): -(|desired - achieved| . W)^P, minus
# 5 on a crash; success (and termination) when the distance term exceeds -0.12.
_PARKING_WEIGHTS = np.array([1.0, 0.3, 0.0, 0.0, 0.02, 0.02])
_PARKING_P, _PARKING_COLLISION, _PARKING_SUCCESS = 0.5, -5.0, 0.12


def parking_relabel(
    obs: np.ndarray, next_obs: np.ndarray, goal_from: np.ndarray, infos: list[dict]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hindsight relabelling of ``parking-boundary`` transitions (``Task.relabel_goal``).

    Observations are ``[own (6), goal - own (6)]``; the goal that ``goal_from [N, 12]`` achieves
    is its own part. Returns ``(obs [N, 12], next_obs [N, 12], basic [N], terminated [N])``
    under that goal, with highway-env's reward, crash penalty (``infos[i]["crashed"]``) and
    success rule. The add-on (line contact) does not depend on the goal.
    """
    n = obs.shape[1] // 2
    goal = goal_from[:, :n]
    obs, next_obs = obs.copy(), next_obs.copy()
    obs[:, n:] = goal - obs[:, :n]
    next_obs[:, n:] = goal - next_obs[:, :n]
    dist = -np.power(np.abs(next_obs[:, n:]) @ _PARKING_WEIGHTS, _PARKING_P)
    crashed = np.array([bool(i.get("crashed", False)) for i in infos])
    basic = dist + _PARKING_COLLISION * crashed
    return obs, next_obs, basic, crashed | (dist > -_PARKING_SUCCESS)


# Our coefficients (the public code fixed omega' = alpha_hat = 1 with its own scales). Rewards
# are O(1) per step here; alpha is the prior's temperature, omega' = alpha means omega = 1.
HIGHWAY_COEFFICIENTS = {
    "soft": {"alpha": 0.05},
    "full": {"alpha": 0.05},
    "residual": {"omega_prime": 0.05, "alpha_hat": 0.05},
}
PARKING_COEFFICIENTS = {k: dict(v) for k, v in HIGHWAY_COEFFICIENTS.items()}  # same scales

TASKS = (
    Task(
        name="highway-keepright",
        env_id=HIGHWAY_ENV_ID,
        addon=lambda env, action, info: 0.5 * _lane_fraction(env),
        statistic=lambda env, action, info: float(_lane_fraction(env) == 1.0),
        description="highway-env: drive fast without crashing (3 lanes, 30 cars, 40 s) while "
        "keeping to the right",
        statistic_name="fraction of steps in the rightmost lane",
        coefficients=HIGHWAY_COEFFICIENTS,
        addon_formula="0.5 * lane / (lanes - 1) (lane 0 = leftmost)",
    ),
    Task(
        name="parking-boundary",
        env_id=PARKING_ENV_ID,
        addon=lambda env, action, info: -1.0 if env.unwrapped.line_contact else 0.0,
        statistic=lambda env, action, info: 1.0 if env.unwrapped.line_contact else 0.0,
        description="highway-env parking: reach the goal bay without touching the bay "
        "boundary lines",
        statistic_name="fraction of steps touching a bay line",
        coefficients=PARKING_COEFFICIENTS,
        addon_formula="-1 if the car's footprint touches a bay boundary line else 0",
        relabel_goal=parking_relabel,
    ),
)


def _register() -> None:
    for task in TASKS:
        try:
            get_task(task.name)
        except TailorError:
            register_task(task)


_register()
