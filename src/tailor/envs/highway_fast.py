"""A numpy fast path for highway-env's simulation, and simulator snapshots for tree search.

highway-env steps every vehicle as a Python object: each IDM vehicle asks the road for its
neighbours (a loop over all vehicles) several times per frame, every vehicle finds its lane by a
loop over all lanes, and every pair of vehicles goes through a Python collision check. This
module runs the same frames on arrays: :func:`simulate` gathers the state of the vehicles of
``env.road`` into arrays (:class:`Traffic`), runs ``frames`` simulation frames with vectorized
code, and writes the state back into the same vehicle objects. The objects stay the source of
truth between env steps, so rendering, observations, rewards, deep copies and tests that move a
vehicle by hand all keep working.

Semantics are highway-env 1.12's, frame for frame (``Road.act`` then ``Road.step``):

* plain :class:`Vehicle` keep their stored action; :class:`ControlledVehicle` /
  :class:`MDPVehicle` (the ego car) get highway-env's steering and speed controllers;
  :class:`IDMVehicle` get IDM (longitudinal) and MOBIL (lane changes), with highway-env's
  sequential "abort a lane change if someone else changes into the same lane" rule replayed in
  vehicle order (the only place where one vehicle's decision in a frame sees another's);
* the bicycle-model integration, crash braking, speed clipping and impacts of
  ``Vehicle.step``, then the closest lane of every vehicle (``get_closest_lane_index``);
* collisions of every pair highway-env checks, in its order. Vectorized filters rule out the
  pairs that are apart by more than a safety margin (per-step motion bounds for plain
  vehicles, the spherical pre-check, a circle-against-rectangle test, a separating-axis test);
  the rest go through highway-env's own pre-check and ``utils.are_polygons_intersecting`` on
  the same polygons, so the discrete outcomes (crashes, impacts, landmark hits) are exactly
  highway-env's.

The arithmetic is the same operations in the same order, elementwise. numpy's vectorized
transcendental functions could differ from its scalar calls in the last bit, so the tests allow
1e-9; over the hundreds of steps of ``tests/test_highway_fast.py`` the two agree bit for bit.

Scenes outside what is implemented make :func:`simulate` return ``False`` (the caller then runs
highway-env's own loop): other vehicle classes (e.g. ``LinearVehicle``), planned routes, lanes
that are not straight, roads that lead to other roads under controlled vehicles, obstacles
among IDM traffic, trajectory recording, an open viewer (it renders intermediate frames).

:func:`snapshot` / :func:`restore` save and restore the mutable simulator state of an env in
place (vehicles, road lists, time, steps, RNG), about 4x cheaper than ``copy.deepcopy(env)``
(``bench/highway_mcts_step.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

__all__ = [
    "LaneTable",
    "Traffic",
    "kinematics_observation",
    "lane_table",
    "restore",
    "simulate",
    "snapshot",
]

# Margin of the vectorized collision filters: a pair is ruled out only if it is separated by
# more than this (metres), far above the ~1e-13 by which our arithmetic can differ from
# highway-env's; everything closer goes through highway-env's exact check.
_MARGIN = 1e-7


@cache
def _hw() -> Any:
    """highway-env's modules, imported on first use (tailor imports without highway-env)."""
    from types import SimpleNamespace

    from highway_env import utils
    from highway_env.road.lane import AbstractLane, StraightLane
    from highway_env.vehicle.behavior import IDMVehicle
    from highway_env.vehicle.controller import ControlledVehicle, MDPVehicle
    from highway_env.vehicle.kinematics import Vehicle
    from highway_env.vehicle.objects import Landmark, Obstacle

    return SimpleNamespace(
        utils=utils,
        AbstractLane=AbstractLane,
        StraightLane=StraightLane,
        IDMVehicle=IDMVehicle,
        ControlledVehicle=ControlledVehicle,
        MDPVehicle=MDPVehicle,
        Vehicle=Vehicle,
        Landmark=Landmark,
        Obstacle=Obstacle,
    )


# ---------------------------------------------------------------------------------------------
# Lane geometry


@dataclass
class LaneTable:
    """The lanes of a road network as arrays, in the network's iteration order (the order in
    which ``RoadNetwork.get_closest_lane_index`` breaks ties). ``L`` lanes."""

    index: list[tuple]  # [L] lane indexes (from, to, id)
    lanes: list[Any]  # [L] lane objects
    row: dict[tuple, int]  # lane index -> row
    start: np.ndarray  # [L, 2]
    direction: np.ndarray  # [L, 2]
    lateral: np.ndarray  # [L, 2] (direction_lateral)
    length: np.ndarray  # [L]
    width: np.ndarray  # [L]
    heading: np.ndarray  # [L]
    speed_limit: np.ndarray  # [L], inf where None
    speed_floor: np.ndarray  # [L] 0 where the lane has a speed limit, else -inf (see IDM)
    forbidden: np.ndarray  # [L] bool
    segment: np.ndarray  # [L] int: lanes of the same road (from, to) share it
    left: np.ndarray  # [L] row of the lane id - 1 of the same road, -1 if none
    right: np.ndarray  # [L] row of the lane id + 1, -1 if none
    dead_ends: bool  # no lane leads to another road (``follow_road`` is a no-op)


def lane_table(network: Any) -> LaneTable | None:
    """The :class:`LaneTable` of a ``RoadNetwork`` (cached on it), or ``None`` if a lane is not
    a :class:`StraightLane` (the only geometry implemented)."""
    hw = _hw()
    lanes_dict = network.lanes_dict()  # ordered like get_closest_lane_index's loops
    cached = getattr(network, "_tailor_lane_table", None)
    if cached is not None and len(cached.index) == len(lanes_dict):
        return cached
    index, lanes = list(lanes_dict), list(lanes_dict.values())
    if not all(type(lane) is hw.StraightLane for lane in lanes):
        return None
    row = {k: i for i, k in enumerate(index)}
    segments: dict[tuple, int] = {}
    seg = np.array([segments.setdefault(k[:2], len(segments)) for k in index])
    left = np.array([row.get((f, t, i - 1), -1) for f, t, i in index])
    right = np.array([row.get((f, t, i + 1), -1) for f, t, i in index])
    table = LaneTable(
        index=index,
        lanes=lanes,
        row=row,
        start=np.array([lane.start for lane in lanes], dtype=np.float64),
        direction=np.array([lane.direction for lane in lanes], dtype=np.float64),
        lateral=np.array([lane.direction_lateral for lane in lanes], dtype=np.float64),
        length=np.array([lane.length for lane in lanes], dtype=np.float64),
        width=np.array([lane.width for lane in lanes], dtype=np.float64),
        heading=np.array([lane.heading for lane in lanes], dtype=np.float64),
        speed_limit=np.array(
            [np.inf if lane.speed_limit is None else lane.speed_limit for lane in lanes]
        ),
        speed_floor=np.array([-np.inf if lane.speed_limit is None else 0.0 for lane in lanes]),
        forbidden=np.array([bool(lane.forbidden) for lane in lanes]),
        segment=seg,
        left=left,
        right=right,
        dead_ends=all(t not in network.graph for _, t, _ in index),
    )
    network._tailor_lane_table = table
    return table


def local_coordinates(g: LaneTable, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``StraightLane.local_coordinates`` of points on every lane.

    Args:
        g: the lanes (``L``).
        pos: ``[N, 2]`` world positions.

    Returns:
        ``(s [L, N], r [L, N])``: longitudinal and lateral coordinates.
    """
    dx = pos[None, :, 0] - g.start[:, 0:1]
    dy = pos[None, :, 1] - g.start[:, 1:2]
    s = dx * g.direction[:, 0:1] + dy * g.direction[:, 1:2]
    r = dx * g.lateral[:, 0:1] + dy * g.lateral[:, 1:2]
    return s, r


def _wrap_to_pi(x: np.ndarray) -> np.ndarray:
    return ((x + np.pi) % (2 * np.pi)) - np.pi


def closest_lanes(g: LaneTable, s: np.ndarray, r: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """``get_closest_lane_index(position, heading)`` of every vehicle, as rows ``[N]``.

    ``s, r``: ``[L, N]`` from :func:`local_coordinates`; ``heading``: ``[N]``. The distance is
    ``|r| + max(s - length, 0) + max(-s, 0) + |wrap(heading - lane heading)|``; ties go to the
    first lane, as ``np.argmin`` in highway-env.
    """
    length = g.length[:, None]
    angle = np.abs(_wrap_to_pi(heading[None, :] - g.heading[:, None]))
    dist = np.abs(r) + np.maximum(s - length, 0) + np.maximum(0 - s, 0) + 1.0 * angle
    return np.argmin(dist, axis=0)


# ---------------------------------------------------------------------------------------------
# Vehicle state as arrays

_PLAIN, _CONTROLLED, _IDM = 0, 1, 2


@dataclass
class Traffic:
    """The state of the ``N`` vehicles of a road (``road.vehicles`` order) as arrays."""

    vehicles: list[Any]
    kind: np.ndarray  # [N] _PLAIN / _CONTROLLED / _IDM
    pos: np.ndarray  # [N, 2]
    heading: np.ndarray  # [N]
    speed: np.ndarray  # [N]
    lane: np.ndarray  # [N] lane row
    target: np.ndarray  # [N] target lane row (controlled kinds; else = lane)
    target_speed: np.ndarray  # [N] (0 for plain vehicles, as getattr(..., 0) in IDM)
    timer: np.ndarray  # [N] IDM lane-change timer (0 for others)
    steer: np.ndarray  # [N] stored action["steering"]
    acc: np.ndarray  # [N] stored action["acceleration"]
    crashed: np.ndarray  # [N] bool
    has_impact: np.ndarray  # [N] bool
    impact: np.ndarray  # [N, 2]
    check: np.ndarray  # [N] bool check_collisions
    collidable: np.ndarray  # [N] bool
    solid: np.ndarray  # [N] bool
    length: np.ndarray  # [N] LENGTH
    width: np.ndarray  # [N] WIDTH
    diagonal: np.ndarray  # [N]
    max_speed: np.ndarray  # [N]
    min_speed: np.ndarray  # [N]
    # IDM parameters (per vehicle: randomize_behavior sets DELTA on the instance)
    delta: np.ndarray  # [N]
    politeness: np.ndarray  # [N]
    min_gain: np.ndarray  # [N] LANE_CHANGE_MIN_ACC_GAIN
    max_braking: np.ndarray  # [N] LANE_CHANGE_MAX_BRAKING_IMPOSED
    delay: np.ndarray  # [N] LANE_CHANGE_DELAY
    lane_change: np.ndarray  # [N] bool enable_lane_change
    is_idm: np.ndarray | None = None  # [N] kind == _IDM
    # direction and velocity of the current state (see directions())
    cos: np.ndarray | None = None  # [N]
    sin: np.ndarray | None = None  # [N]
    vx: np.ndarray | None = None  # [N]
    vy: np.ndarray | None = None  # [N]


def _kind(v: Any) -> int | None:
    """The implemented kind of a vehicle (exact classes only: a subclass may override
    anything), or ``None``."""
    hw = _hw()
    t = type(v)
    if t is hw.IDMVehicle:
        return _IDM
    if t is hw.MDPVehicle or t is hw.ControlledVehicle:
        return _CONTROLLED
    if t is hw.Vehicle:
        return _PLAIN
    return None


_FIELDS = 28  # columns of _row


def _row(v: Any, kind: int, g: LaneTable) -> tuple | None:
    """The state of one vehicle as :class:`Traffic`'s columns, or ``None`` where not
    implemented (a planned route, a lane outside the table, a non-solid vehicle). IDM's
    per-vehicle parameters are read from the instance (``randomize_behavior`` sets ``DELTA``
    there); its comfort accelerations, desired gap and time, and the controllers' gains are
    highway-env's class constants."""
    ctrl = kind != _PLAIN
    if (ctrl and v.route) or not v.solid:
        return None
    lane = g.row.get(v.lane_index)
    target = g.row.get(v.target_lane_index) if ctrl else lane
    if lane is None or target is None:
        return None
    imp = v.impact
    idm = kind == _IDM
    return (
        v.position[0],
        v.position[1],
        v.heading,
        v.speed,
        lane,
        target,
        v.target_speed if ctrl else 0.0,
        v.timer if idm else 0.0,
        v.action["steering"],
        v.action["acceleration"],
        v.crashed,
        imp is not None,
        0.0 if imp is None else imp[0],
        0.0 if imp is None else imp[1],
        v.check_collisions,
        v.collidable,
        v.solid,
        v.LENGTH,
        v.WIDTH,
        v.diagonal,
        v.MAX_SPEED,
        v.MIN_SPEED,
        v.DELTA if idm else 0.0,
        v.POLITENESS if idm else 0.0,
        v.LANE_CHANGE_MIN_ACC_GAIN if idm else 0.0,
        v.LANE_CHANGE_MAX_BRAKING_IMPOSED if idm else 0.0,
        v.LANE_CHANGE_DELAY if idm else 0.0,
        v.enable_lane_change if idm else False,
    )


def pack(road: Any, g: LaneTable) -> Traffic | None:
    """Gather ``road.vehicles`` into a :class:`Traffic`, or ``None`` if a vehicle is outside
    the fast path (see :func:`_kind`, :func:`_row`)."""
    vs = road.vehicles
    n = len(vs)
    kinds = np.empty(n, dtype=np.int8)
    rows: list[tuple] = []
    for i, v in enumerate(vs):
        kind = _kind(v)
        row = None if kind is None else _row(v, kind, g)
        if row is None:
            return None
        kinds[i] = kind
        rows.append(row)
    a = np.array(rows, dtype=np.float64).reshape(n, _FIELDS)
    t = Traffic(vehicles=list(vs), kind=kinds, **{k: None for k in _COLUMNS})
    t.is_idm = kinds == _IDM
    _set_columns(t, a, slice(None))
    return t


# Traffic's array fields, by column of _row (the ``pos`` field takes columns 0-1, ``impact``
# 12-13), and how each is stored.
_COLUMNS: dict[str, tuple[slice, str]] = {
    "pos": (slice(0, 2), "f"),
    "heading": (slice(2, 3), "f"),
    "speed": (slice(3, 4), "f"),
    "lane": (slice(4, 5), "i"),
    "target": (slice(5, 6), "i"),
    "target_speed": (slice(6, 7), "f"),
    "timer": (slice(7, 8), "f"),
    "steer": (slice(8, 9), "f"),
    "acc": (slice(9, 10), "f"),
    "crashed": (slice(10, 11), "b"),
    "has_impact": (slice(11, 12), "b"),
    "impact": (slice(12, 14), "f"),
    "check": (slice(14, 15), "b"),
    "collidable": (slice(15, 16), "b"),
    "solid": (slice(16, 17), "b"),
    "length": (slice(17, 18), "f"),
    "width": (slice(18, 19), "f"),
    "diagonal": (slice(19, 20), "f"),
    "max_speed": (slice(20, 21), "f"),
    "min_speed": (slice(21, 22), "f"),
    "delta": (slice(22, 23), "f"),
    "politeness": (slice(23, 24), "f"),
    "min_gain": (slice(24, 25), "f"),
    "max_braking": (slice(25, 26), "f"),
    "delay": (slice(26, 27), "f"),
    "lane_change": (slice(27, 28), "b"),
}


# What an ego action (ActionType.act) changes: targets, stored action, speed range.
_ACTION_FIELDS = ("target", "target_speed", "steer", "acc", "max_speed", "min_speed")


def _set_columns(
    t: Traffic, a: np.ndarray, rows: slice | np.ndarray, names: tuple[str, ...] | None = None
) -> None:
    """Set the fields ``names`` (default all) of ``t`` (all vehicles when ``rows`` is
    ``slice(None)``, else those rows) from ``a [rows, _FIELDS]``."""
    whole = isinstance(rows, slice)
    cols_first = a.T.copy()  # one copy; every 1-column field is then a contiguous row of it
    for name in names or _COLUMNS:
        cols, kind = _COLUMNS[name]
        if cols.stop - cols.start > 1:
            block = a[:, cols].copy()
        elif kind == "i":
            block = cols_first[cols.start].astype(np.intp)
        elif kind == "b":
            block = cols_first[cols.start] != 0
        else:
            block = cols_first[cols.start]
        if whole:
            setattr(t, name, block)
        else:
            getattr(t, name)[rows] = block


def refresh(t: Traffic, g: LaneTable, vehicles: list[Any]) -> bool:
    """Re-read what an ego action changes (:data:`_ACTION_FIELDS`) of some vehicles of ``t``
    from their objects; ``False`` if one is now outside the fast path."""
    index = {id(v): i for i, v in enumerate(t.vehicles)}
    rows, at = [], []
    for v in vehicles:
        i = index.get(id(v))
        if i is None:
            return False
        row = _row(v, int(t.kind[i]), g)
        if row is None:
            return False
        rows.append(row)
        at.append(i)
    if rows:
        a = np.array(rows, dtype=np.float64).reshape(len(rows), _FIELDS)
        _set_columns(t, a, np.array(at), _ACTION_FIELDS)
    return True


def unpack(t: Traffic, g: LaneTable) -> None:
    """Write the state of ``t`` back into its vehicle objects (the inverse of :func:`pack` for
    everything a frame changes)."""
    pos, heading, speed = t.pos.tolist(), t.heading.tolist(), t.speed.tolist()
    lane, target, timer = t.lane.tolist(), t.target.tolist(), t.timer.tolist()
    steer, acc, crashed = t.steer.tolist(), t.acc.tolist(), t.crashed.tolist()
    has_impact = t.has_impact.tolist()
    for i, v in enumerate(t.vehicles):
        v.position[0], v.position[1] = pos[i]  # in place, as Vehicle.step does
        v.heading = heading[i]
        v.speed = speed[i]
        if g.row.get(v.lane_index) != lane[i]:
            v.lane_index = g.index[lane[i]]
        v.lane = g.lanes[lane[i]]
        kind = t.kind[i]
        if kind != _PLAIN and g.row.get(v.target_lane_index) != target[i]:
            v.target_lane_index = g.index[target[i]]
        if kind == _IDM:
            v.timer = timer[i]
        v.action["steering"] = steer[i]
        v.action["acceleration"] = acc[i]
        v.crashed = crashed[i]
        v.impact = t.impact[i].copy() if has_impact[i] else None


# ---------------------------------------------------------------------------------------------
# Decisions: controllers, IDM, MOBIL


def _not_zero(x: np.ndarray, eps: float = 1e-2) -> np.ndarray:
    """``utils.not_zero`` elementwise: ``x`` where ``|x| > eps``, else ``+-eps`` by sign."""
    small = ~(np.abs(x) > eps)
    if not np.count_nonzero(small):
        return x
    return np.where(small, np.where(x >= 0, eps, -eps), x)


def neighbours(
    g: LaneTable, t: Traffic, s: np.ndarray, r: np.ndarray, who: np.ndarray, lanes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``Road.neighbour_vehicles(vehicle, lane)`` for ``M`` queries, as vehicle rows (-1: none).

    Args:
        s, r: ``[L, N]`` lane coordinates of all vehicles.
        who: ``[M]`` querying vehicles; lanes: ``[M]`` the lanes searched.

    Returns:
        ``(front [M], rear [M])``: among the vehicles on the lane (``|r| <= width / 2 + 1``,
        ``-5 <= s < length + 5``) other than ``who``, the closest at or ahead of ``who``'s own
        ``s`` on that lane (the last of equal ones, as highway-env's loop keeps) and the closest
        behind (the first of equal ones).
    """
    m = len(who)
    if m == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    vlen = _hw().AbstractLane.VEHICLE_LENGTH
    sq, rq = s[lanes], r[lanes]  # [M, N]
    ok = (np.abs(rq) <= g.width[lanes, None] / 2 + 1) & (
        (-vlen <= sq) & (sq < g.length[lanes, None] + vlen)
    )
    ar = np.arange(m)
    ok[ar, who] = False
    me = sq[ar, who][:, None]
    ahead = sq >= me
    n = sq.shape[1]
    # front: the smallest s ahead, the last of equal ones (argmin of the reversed row)
    f_val = np.where(ok & ahead, sq, np.inf)
    front = n - 1 - np.argmin(f_val[:, ::-1], axis=1)
    front[f_val[ar, front] == np.inf] = -1
    # rear: the largest s behind, the first of equal ones (argmax)
    r_val = np.where(ok & ~ahead, sq, -np.inf)
    rear = np.argmax(r_val, axis=1)
    rear[r_val[ar, rear] == -np.inf] = -1
    return front, rear


def _clip(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``np.clip`` for finite floats (the same values), without its Python-level overhead."""
    return np.minimum(np.maximum(x, lo), hi)


def desired_gap(t: Traffic, ego: np.ndarray, front: np.ndarray) -> np.ndarray:
    """``IDMVehicle.desired_gap(ego, front)`` (projected), ``[M]`` for index arrays ``[M]``:
    ``d0 + v tau + v dv / (2 sqrt(a b))`` with ``dv = (v_ego - v_front) . direction_ego``."""
    idm = _hw().IDMVehicle
    ab = -idm.COMFORT_ACC_MAX * idm.COMFORT_ACC_MIN
    dv = (t.vx[ego] - t.vx[front]) * t.cos[ego] + (t.vy[ego] - t.vy[front]) * t.sin[ego]
    v = t.speed[ego]
    return idm.DISTANCE_WANTED + v * idm.TIME_WANTED + v * dv / (2 * np.sqrt(ab))


def idm_acceleration(
    g: LaneTable,
    t: Traffic,
    s: np.ndarray,
    caller: np.ndarray,
    ego: np.ndarray,
    front: np.ndarray,
) -> np.ndarray:
    """``caller.acceleration(ego_vehicle=ego, front_vehicle=front)`` for ``M`` triples.

    Index arrays ``[M]``, ``-1`` for ``None``; the exponent is the *caller's* ``DELTA``, the
    target speed, speed limit and distance those of ``ego`` (on ``ego``'s lane), as in
    highway-env. No ego: 0.
    """
    comfort = _hw().IDMVehicle.COMFORT_ACC_MAX
    out = np.zeros(len(ego))
    has = (ego >= 0).nonzero()[0]
    if len(has) == 0:
        return out
    c, e, f = caller[has], ego[has], front[has]
    # np.clip(target speed, 0, speed limit) on lanes with a limit; no clip on the others
    # (their floor and limit are -inf, inf)
    lane_e = t.lane[e]
    tgt = np.minimum(np.maximum(t.target_speed[e], g.speed_floor[lane_e]), g.speed_limit[lane_e])
    acc = comfort * (1 - np.power(np.maximum(t.speed[e], 0) / np.abs(_not_zero(tgt)), t.delta[c]))
    hf = (f >= 0).nonzero()[0]
    if len(hf):
        eh, fh = e[hf], f[hf]
        lane = lane_e[hf]
        d = s[lane, fh] - s[lane, eh]
        gap = desired_gap(t, eh, fh)
        acc[hf] -= comfort * np.power(gap / _not_zero(d), 2)
    out[has] = acc
    return out


def _aborts(
    g: LaneTable, t: Traffic, s: np.ndarray, changers: np.ndarray, old_target: np.ndarray
) -> np.ndarray:
    """The changing vehicles ``changers [C]`` (in vehicle order) that abort their lane change,
    exactly as highway-env decides it one vehicle after the other: someone else not in the
    target lane is heading for it (its target lane as it reads when ``i`` acts: already updated
    for the vehicles before ``i``, including their aborts) within the desired gap ahead.
    Returns the aborting vehicles ``[A]``."""
    n = len(t.kind)
    idx = np.arange(n)
    controlled = t.kind != _PLAIN
    target = t.target.copy()
    out = []
    for i in changers.tolist():
        tgt = target[i]
        if g.segment[t.lane[i]] != g.segment[tgt]:
            continue
        effective = np.where(idx < i, target, old_target)  # as seen during i's act()
        others = (controlled & (idx != i) & (t.lane != tgt) & (effective == tgt)).nonzero()[0]
        if len(others) == 0:
            continue
        lane = t.lane[i]
        d = s[lane, others] - s[lane, i]
        d_star = desired_gap(t, np.full(len(others), i), others)
        if np.count_nonzero((0 < d) & (d < d_star)):
            out.append(i)
            target[i] = lane
    return np.array(out, dtype=np.intp)


def steering_control(
    g: LaneTable, t: Traffic, s: np.ndarray, r: np.ndarray, who: np.ndarray
) -> np.ndarray:
    """``ControlledVehicle.steering_control(target_lane_index)`` of vehicles ``who`` ``[M]``
    towards their target lanes (straight lanes: the heading ahead is the lane's)."""
    cv = _hw().ControlledVehicle
    k = t.target[who]
    lat = r[k, who]
    speed, heading = t.speed[who], t.heading[who]
    lateral_speed_command = -cv.KP_LATERAL * lat
    speed_nz = _not_zero(speed)
    heading_command = np.arcsin(_clip(lateral_speed_command / speed_nz, -1, 1))
    heading_ref = g.heading[k] + _clip(heading_command, -np.pi / 4, np.pi / 4)
    heading_rate_command = cv.KP_HEADING * _wrap_to_pi(heading_ref - heading)
    length = t.length[who]
    slip_angle = np.arcsin(_clip(length / 2 / speed_nz * heading_rate_command, -1, 1))
    steering = np.arctan(2 * np.tan(slip_angle))
    return _clip(steering, -cv.MAX_STEERING_ANGLE, cv.MAX_STEERING_ANGLE)


def act(g: LaneTable, t: Traffic, s: np.ndarray, r: np.ndarray) -> None:
    """``Road.act()``: the new stored actions (and lane decisions) of every vehicle. ``s, r``:
    ``[L, N]`` lane coordinates of the vehicles; ``t.cos`` ... ``t.vy`` current
    (:func:`directions`)."""
    hw = _hw()
    idm = (t.kind == _IDM) & ~t.crashed  # a crashed IDM vehicle keeps its action
    ctrl = (t.kind == _CONTROLLED) | idm
    if not np.count_nonzero(ctrl):
        return
    if np.count_nonzero(idm):
        _idm_act(g, t, s, r, idm)
    who = ctrl.nonzero()[0]
    t.steer[who] = steering_control(g, t, s, r, who)
    mdp = (t.kind == _CONTROLLED).nonzero()[0]
    t.acc[mdp] = hw.ControlledVehicle.KP_A * (t.target_speed[mdp] - t.speed[mdp])


def _idm_act(g: LaneTable, t: Traffic, s: np.ndarray, r: np.ndarray, idm: np.ndarray) -> None:
    """``IDMVehicle.act()`` of the vehicles of the ``idm`` mask ``[N]``: lane-change policy
    (MOBIL, aborts) then IDM acceleration, with one neighbour search and one acceleration call.

    ``change_lane_policy``: a vehicle already changing lane may abort (:func:`_aborts`); the
    others, once their timer exceeds the delay, reset it and ask MOBIL about each side lane
    (left, then right: the later recommendation wins). Longitudinal: IDM behind the front
    vehicle on the current lane and, while changing lane, the smaller of that and the same on
    the target lane. Every neighbour query and acceleration these need is known before any
    decision: the target-lane acceleration of a new lane change is MOBIL's ``self_pred_a``.
    """
    n = len(t.kind)
    vlen = _hw().AbstractLane.VEHICLE_LENGTH
    active = idm & t.lane_change
    old_target = t.target.copy()
    changing = active & (t.lane != t.target)
    deciding = active & ~changing & (t.delay < t.timer)
    dec = deciding.nonzero()[0]
    t.timer[dec] = 0
    # MOBIL's candidate (vehicle, side lane) pairs: reachable lanes, moving vehicles
    left, right = g.left[t.lane[dec]], g.right[t.lane[dec]]
    ci = np.concatenate([dec[left >= 0], dec[right >= 0]])
    ck = np.concatenate([left[left >= 0], right[right >= 0]])
    is_left = np.arange(len(ci)) < (left >= 0).sum()
    sk, rk = s[ck, ci], r[ck, ci]
    reachable = (
        ~g.forbidden[ck]
        & (np.abs(rk) <= 2 * g.width[ck])
        & (0 <= sk)
        & (sk < g.length[ck] + vlen)
        & ~(np.abs(t.speed[ci]) < 1)
    )
    ci, ck, is_left = ci[reachable], ck[reachable], is_left[reachable]
    m = len(ci)
    # neighbours: own lane of every IDM vehicle, target lane of those changing lane, candidates
    own = idm.nonzero()[0]
    ch = own[t.lane[own] != t.target[own]]
    n_own, n_ch = len(own), len(ch)
    front, rear = neighbours(
        g,
        t,
        s,
        r,
        np.concatenate([own, ch, ci]),
        np.concatenate([t.lane[own], t.target[ch], ck]),
    )
    own_front, own_rear = np.full(n, -1), np.full(n, -1)
    own_front[own], own_rear[own] = front[:n_own], rear[:n_own]
    new_pre, new_fol = front[n_own + n_ch :], rear[n_own + n_ch :]
    old_pre, old_fol = own_front[ci], own_rear[ci]
    # accelerations (caller, ego, front): own lane, target lane, MOBIL's six per candidate
    caller = np.concatenate([own, ch, np.tile(ci, 6)])
    ego = np.concatenate([own, ch, new_fol, new_fol, ci, ci, old_fol, old_fol])
    ahead = np.concatenate([own_front[own], front[n_own : n_own + n_ch]])
    ahead = np.concatenate([ahead, new_pre, ci, new_pre, old_pre, ci, old_pre])
    acc = idm_acceleration(g, t, s, caller, ego, ahead)
    a_own, a_ch = acc[:n_own], acc[n_own : n_own + n_ch]
    new_fol_a, new_fol_pred_a, self_pred_a, self_a, old_fol_a, old_fol_pred_a = acc[
        n_own + n_ch :
    ].reshape(6, m)
    # MOBIL: safe for the new follower, and enough gain (no planned route: checked in pack)
    unsafe = new_fol_pred_a < -t.max_braking[ci]
    jerk = (
        self_pred_a
        - self_a
        + t.politeness[ci] * (new_fol_pred_a - new_fol_a + old_fol_pred_a - old_fol_a)
    )
    go = ~unsafe & ~(jerk < t.min_gain[ci])
    a_target = np.full(n, np.nan)
    a_target[ch] = a_ch
    for side in (go & is_left, go & ~is_left):  # right after left: it wins
        t.target[ci[side]] = ck[side]
        a_target[ci[side]] = self_pred_a[side]
    changers = changing.nonzero()[0]
    if len(changers):
        aborts = _aborts_at_once(g, t, s, changers, old_target)
        if len(aborts) > 1:  # an abort may change a later vehicle's check: replay in order
            aborts = _aborts(g, t, s, changers, old_target)
        t.target[aborts] = t.lane[aborts]
    a = a_own.copy()
    moving = t.lane[own] != t.target[own]
    a[moving] = np.minimum(a[moving], a_target[own[moving]])
    amax = _hw().IDMVehicle.ACC_MAX
    t.acc[own] = _clip(a, -amax, amax)


def _aborts_at_once(
    g: LaneTable, t: Traffic, s: np.ndarray, changers: np.ndarray, old_target: np.ndarray
) -> np.ndarray:
    """:func:`_aborts` without replaying the aborts in order, vectorized over the changing
    vehicles ``[C]``: exact when at most one vehicle aborts (an abort only removes a vehicle
    from later vehicles' checks). Returns the aborting vehicles ``[A]``."""
    n = len(t.kind)
    idx = np.arange(n)
    tgt = t.target[changers]
    valid = g.segment[t.lane[changers]] == g.segment[tgt]
    effective = np.where(idx[None, :] < changers[:, None], t.target[None, :], old_target[None, :])
    cand = (
        (t.kind != _PLAIN)[None, :]
        & (idx[None, :] != changers[:, None])
        & (t.lane[None, :] != tgt[:, None])
        & (effective == tgt[:, None])
        & valid[:, None]
    )
    row, other = np.nonzero(cand)
    if len(row) == 0:
        return np.zeros(0, dtype=np.intp)
    i = changers[row]
    lane = t.lane[i]
    d = s[lane, other] - s[lane, i]
    hit = (0 < d) & (d < desired_gap(t, i, other))
    return np.unique(i[hit])


# ---------------------------------------------------------------------------------------------
# Dynamics and collisions


def directions(t: Traffic) -> None:
    """Set ``t.cos, t.sin`` (the direction) and ``t.vx, t.vy`` (``velocity = speed *
    direction``) from the current headings and speeds."""
    t.cos, t.sin = np.cos(t.heading), np.sin(t.heading)
    t.vx, t.vy = t.speed * t.cos, t.speed * t.sin


def integrate(t: Traffic, dt: float) -> None:
    """``Vehicle.step(dt)`` of every vehicle (IDM timers, crash braking, speed clipping, the
    bicycle model, pending impacts), in place; the lanes are updated by the caller."""
    t.timer[t.is_idm] += dt
    if np.count_nonzero(t.crashed):
        t.steer[t.crashed] = 0.0
        t.acc[t.crashed] = -1.0 * t.speed[t.crashed]
    fast, slow = t.speed > t.max_speed, t.speed < t.min_speed
    if np.count_nonzero(fast):
        t.acc = np.where(fast, np.minimum(t.acc, 1.0 * (t.max_speed - t.speed)), t.acc)
    if np.count_nonzero(slow):
        t.acc = np.where(~fast & slow, np.maximum(t.acc, 1.0 * (t.min_speed - t.speed)), t.acc)
    beta = np.arctan(1 / 2 * np.tan(t.steer))
    hb = t.heading + beta
    t.pos[:, 0] += t.speed * np.cos(hb) * dt
    t.pos[:, 1] += t.speed * np.sin(hb) * dt
    if np.count_nonzero(t.has_impact):
        hit = t.has_impact
        t.pos[hit] += t.impact[hit]
        t.crashed |= hit
        t.has_impact = np.zeros_like(hit)
    t.heading = t.heading + t.speed * np.sin(beta) / (t.length / 2) * dt
    t.speed = t.speed + t.acc * dt


@dataclass
class Bodies:
    """Every collidable thing of a road, ``K = N`` vehicles then ``O`` objects, as arrays; the
    pairs ``Road.step`` checks. The objects do not move during a step: their part is filled
    once per :func:`simulate` call, the vehicles' part every frame (:func:`update_bodies`)."""

    pos: np.ndarray  # [K, 2]
    heading: np.ndarray  # [K]
    speed: np.ndarray  # [K]
    length: np.ndarray  # [K]
    width: np.ndarray  # [K]
    diagonal: np.ndarray  # [K]
    solid: np.ndarray  # [K] bool
    obstacle: np.ndarray  # [K] bool
    cos: np.ndarray  # [K] of the heading
    sin: np.ndarray  # [K]
    first: np.ndarray  # [P] pairs with a collision check (see collision_pairs), in order
    second: np.ndarray  # [P]
    # the pairs still to check in this step's frames (see step_safe_pairs); all after any
    # collision effect
    todo_first: np.ndarray | None = None
    todo_second: np.ndarray | None = None


@cache
def collision_pairs(n: int, n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``Road.step`` checks, in its order: each vehicle ``i`` with the vehicles after
    it, then with every object (objects are rows ``n ...``). ``(first [P], second [P])``."""
    first, second = [], []
    for i in range(n):
        first += [i] * (n - 1 - i + n_objects)
        second += list(range(i + 1, n)) + list(range(n, n + n_objects))
    return np.array(first, dtype=np.intp), np.array(second, dtype=np.intp)


def make_bodies(t: Traffic, objects: list[Any]) -> Bodies:
    """The :class:`Bodies` of the vehicles of ``t`` and the road ``objects``, keeping the pairs
    ``RoadObject.handle_collisions`` does not skip (one of them checks collisions, both are
    collidable)."""
    hw = _hw()
    o = np.array(
        [
            (
                x.position[0],
                x.position[1],
                x.heading,
                x.speed,
                x.LENGTH,
                x.WIDTH,
                x.diagonal,
                x.check_collisions,
                x.collidable,
                x.solid,
                isinstance(x, hw.Obstacle),
            )
            for x in objects
        ],
        dtype=np.float64,
    ).reshape(len(objects), 11)
    cat = np.concatenate
    check = cat([t.check, o[:, 7] != 0])
    collidable = cat([t.collidable, o[:, 8] != 0])
    i, j = collision_pairs(len(t.kind), len(objects))
    keep = (check[i] | check[j]) & collidable[i] & collidable[j]
    heading = cat([t.heading, o[:, 2]])
    return Bodies(
        pos=cat([t.pos, o[:, 0:2]]),
        heading=heading,
        cos=np.cos(heading),
        sin=np.sin(heading),
        speed=cat([t.speed, o[:, 3]]),
        length=cat([t.length, o[:, 4]]),
        width=cat([t.width, o[:, 5]]),
        diagonal=cat([t.diagonal, o[:, 6]]),
        solid=cat([t.solid, o[:, 9] != 0]),
        obstacle=cat([np.zeros(len(t.kind), bool), o[:, 10] != 0]),
        first=i[keep],
        second=j[keep],
    )


def step_safe_pairs(t: Traffic, b: Bodies, duration: float, dt: float) -> np.ndarray:
    """The pairs of ``b`` that cannot meet in any frame of the coming ``duration``: ``[P]``
    bool, from bounds on how far each body can move (so no per-frame check is needed).

    Only plain vehicles (a stored action, no controller) and road objects get a bound: speed at
    most ``|v| + |a| duration`` (crash braking and speed clipping only slow down), so a
    displacement at most that times ``duration`` plus a pending impact; a controlled vehicle's
    is infinite. A pair is safe when, at the start, the moving body's circumscribed circle is
    farther from the other's rectangle (or circle, if both move) than both displacements plus
    one frame's sweep plus the margin. Valid until a collision changes a motion (an impact):
    :func:`collide` then checks every pair again.
    """
    n, k = len(t.kind), len(b.speed)
    plain = t.kind == _PLAIN
    vmax = np.abs(t.speed) + np.where(t.crashed, 0.0, np.abs(t.acc)) * duration
    speed = np.zeros(k)  # bound on the speed; objects do not move
    speed[:n] = np.where(plain, vmax, np.inf)
    moves = speed * duration  # bound on the displacement
    if np.count_nonzero(t.has_impact):
        moves[:n] += np.where(t.has_impact, np.sqrt((t.impact**2).sum(axis=1)), 0.0)
    still = np.ones(k, bool)  # heading and position fixed over the step
    still[:n] = plain & (t.speed == 0) & ((t.acc == 0) | t.crashed) & ~t.has_impact
    p, q = b.first, b.second
    d = b.pos[q] - b.pos[p]
    # circle of the moving one against the rectangle of a still one, else two circles
    still_q = still[q]
    rect = np.where(still_q, q, p)
    circle = np.where(still_q, p, q)
    c, s = b.cos[rect], b.sin[rect]
    along = np.abs(d[:, 0] * c + d[:, 1] * s) - b.length[rect] / 2
    across = np.abs(d[:, 1] * c - d[:, 0] * s) - b.width[rect] / 2
    sep = np.maximum(along, across) - b.diagonal[circle] / 2
    boxed = still_q | still[p]
    if np.count_nonzero(boxed) < len(p):
        round_ = np.sqrt((d**2).sum(axis=1)) - (b.diagonal[p] + b.diagonal[q]) / 2
        sep = np.where(boxed, sep, round_)
    return sep > moves[p] + moves[q] + (speed[p] + speed[q]) * dt + _MARGIN


def update_bodies(b: Bodies, t: Traffic) -> None:
    """Copy the vehicles' current position, heading (and its cos, sin) and speed into ``b``."""
    n = len(t.kind)
    b.pos[:n], b.heading[:n], b.speed[:n] = t.pos, t.heading, t.speed
    b.cos[:n], b.sin[:n] = t.cos, t.sin


def _circle_apart(
    b: Bodies, p: np.ndarray, q: np.ndarray, sweep: np.ndarray, cos: np.ndarray, sin: np.ndarray
) -> np.ndarray:
    """A cheap sufficient test for separation, ``[M]`` bool: on one of the four axes of the two
    rectangles (edge normals, so axes of highway-env's separating-axis test), the rectangle of
    one and the circumscribed circle of the other, swept by ``sweep [M, 2]`` (``p``'s
    displacement relative to ``q``), are more than the margin apart. ``cos, sin [K]``: of the
    bodies' headings."""
    rect, circle = np.concatenate([q, p]), np.concatenate([p, q])  # both roles at once
    d = b.pos[q] - b.pos[p]
    d = np.concatenate([d, d])  # signs do not matter below (absolute values)
    w = np.concatenate([sweep, sweep])
    c, s = cos[rect], sin[rect]
    radius = b.diagonal[circle] / 2
    along = np.abs(d[:, 0] * c + d[:, 1] * s) - np.abs(w[:, 0] * c + w[:, 1] * s)
    across = np.abs(d[:, 1] * c - d[:, 0] * s) - np.abs(w[:, 1] * c - w[:, 0] * s)
    sep = np.maximum(along - b.length[rect] / 2, across - b.width[rect] / 2) - radius
    return (sep.reshape(2, -1) > _MARGIN).any(axis=0)


def polygons(b: Bodies, k: np.ndarray) -> np.ndarray:
    """``RoadObject.polygon()`` of bodies ``k`` ``[M]``: ``[M, 4, 2]`` corners (unclosed)."""
    hl, hw_ = b.length[k] / 2, b.width[k] / 2
    px = np.stack([-hl, -hl, hl, hl], axis=1)
    py = np.stack([-hw_, hw_, hw_, -hw_], axis=1)
    c, s = np.cos(b.heading[k])[:, None], np.sin(b.heading[k])[:, None]
    x = c * px - s * py + b.pos[k, 0:1]
    y = s * px + c * py + b.pos[k, 1:2]
    return np.stack([x, y], axis=2)


def surely_apart(
    a: np.ndarray, b: np.ndarray, disp_a: np.ndarray, disp_b: np.ndarray
) -> np.ndarray:
    """Pairs of convex polygons that ``are_polygons_intersecting`` certainly finds neither
    intersecting nor about to intersect: some edge normal separates them, with ``a`` swept by
    its displacement relative to ``b``, by more than the margin. (One such axis suffices:
    highway-env returns ``(False, False, None)`` as soon as an axis separates the swept
    polygons.)

    Args:
        a, b: ``[P, 4, 2]`` corners; disp_a, disp_b: ``[P, 2]`` displacements over the step.

    Returns:
        ``[P]`` bool.
    """
    corners = np.concatenate([a, b], axis=1)  # [P, 8, 2]
    edges = np.concatenate([np.roll(a, -1, axis=1) - a, np.roll(b, -1, axis=1) - b], axis=1)
    normal = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)
    normal /= np.sqrt((normal**2).sum(-1, keepdims=True))  # [P, 8, 2]
    proj = np.einsum("pkd,pjd->pkj", normal, corners)  # [P, 8 axes, 8 corners]
    min_a, max_a = proj[..., :4].min(-1), proj[..., :4].max(-1)
    min_b, max_b = proj[..., 4:].min(-1), proj[..., 4:].max(-1)
    vel = np.einsum("pkd,pd->pk", normal, disp_a - disp_b)
    min_a = min_a + np.minimum(vel, 0)
    max_a = max_a + np.maximum(vel, 0)
    dist = np.where(min_a < min_b, min_b - max_a, min_a - max_b)
    return (dist > _MARGIN).any(axis=1)


def _polygon_exact(b: Bodies, k: int) -> np.ndarray:
    """``RoadObject.polygon()`` with highway-env's exact operations, ``[5, 2]``."""
    length, width = b.length[k], b.width[k]
    points = np.array(
        [
            [-length / 2, -width / 2],
            [-length / 2, +width / 2],
            [+length / 2, +width / 2],
            [+length / 2, -width / 2],
        ]
    ).T
    c, s = np.cos(b.heading[k]), np.sin(b.heading[k])
    rotation = np.array([[c, -s], [s, c]])
    points = (rotation @ points).T + np.tile(b.pos[k], (4, 1))
    return np.vstack([points, points[0:1]])


def _velocity_exact(b: Bodies, k: int) -> np.ndarray:
    return b.speed[k] * np.array([np.cos(b.heading[k]), np.sin(b.heading[k])])


def collide(t: Traffic, b: Bodies, objects: list[Any], dt: float) -> None:
    """The collision checks of ``Road.step`` and their effects, in highway-env's pair order:
    impacts and crashes on the vehicles of ``t``; ``crashed`` / ``hit`` / ``impact`` directly
    on the road objects (``RoadObject.handle_collisions``; vehicles are solid, see
    :func:`pack`).

    Filters, each ruling out only pairs separated by more than the margin: the spherical
    pre-check, :func:`_circle_apart`, :func:`surely_apart`; the rest (touching or nearly) go through
    highway-env's spherical pre-check and ``are_polygons_intersecting`` on exact polygons.
    """
    hw = _hw()
    n = len(t.kind)
    update_bodies(b, t)
    i, j = b.todo_first, b.todo_second
    if i is None:
        i, j = b.first, b.second
    if len(i) == 0:
        return
    # highway-env's spherical pre-check (with the margin; replayed exactly below), which
    # usually leaves no pair, then the sharper circle test
    d = b.pos[j] - b.pos[i]
    reach = (b.diagonal[i] + b.diagonal[j]) / 2 + b.speed[i] * dt
    near = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] <= (reach + _MARGIN) ** 2
    if not np.count_nonzero(near):
        return
    i, j = i[near], j[near]
    vel = np.empty((len(b.speed), 2))
    vel[:, 0], vel[:, 1] = b.speed * b.cos * dt, b.speed * b.sin * dt
    close = ~_circle_apart(b, i, j, vel[i] - vel[j], b.cos, b.sin)
    if not np.count_nonzero(close):
        return
    i, j = i[close], j[close]
    apart = surely_apart(polygons(b, i), polygons(b, j), vel[i], vel[j])
    i, j = i[~apart], j[~apart]
    for p, q in zip(i.tolist(), j.tolist(), strict=True):
        reach_pq = (b.diagonal[p] + b.diagonal[q]) / 2 + b.speed[p] * dt
        if np.linalg.norm(b.pos[q] - b.pos[p]) > reach_pq:
            continue
        intersecting, will_intersect, transition = hw.utils.are_polygons_intersecting(
            _polygon_exact(b, p),
            _polygon_exact(b, q),
            _velocity_exact(b, p) * dt,
            _velocity_exact(b, q) * dt,
        )
        other = objects[q - n] if q >= n else None  # p is a vehicle (Road.step's outer loop)
        if (will_intersect or intersecting) and b.solid[q]:
            b.todo_first = b.todo_second = None  # motions change: check every pair again
        if will_intersect and b.solid[q]:
            if b.obstacle[q]:
                t.impact[p], t.has_impact[p] = transition, True
            else:
                t.impact[p], t.has_impact[p] = transition / 2, True
                if other is None:
                    t.impact[q], t.has_impact[q] = -transition / 2, True
                else:
                    other.impact = -transition / 2
        if intersecting:
            if b.solid[q]:
                t.crashed[p] = True
                if other is None:
                    t.crashed[q] = True
                else:
                    other.crashed = True
            elif other is not None:
                other.hit = True


# ---------------------------------------------------------------------------------------------
# The env-level fast path


def _supported_scene(env: Any, g: LaneTable | None) -> bool:
    road = env.road
    if g is None or road.record_history or getattr(env, "viewer", None) is not None:
        return False
    return True


def simulate(env: Any, action: Any = None) -> bool:
    """``AbstractEnv._simulate(action)`` on arrays: the ego action at the first frame, then
    ``simulation_frequency // policy_frequency`` frames of ``Road.act`` / ``Road.step``.

    Returns ``False`` (having changed nothing) when the scene is outside the fast path; the
    caller then runs highway-env's own ``_simulate``.
    """
    hw = _hw()
    cfg = env.config
    frames = int(cfg["simulation_frequency"] // cfg["policy_frequency"])
    road = env.road
    g = lane_table(road.network)
    if not _supported_scene(env, g) or env.steps % frames != 0:
        return False
    t = pack(road, g)
    if t is None:
        return False
    any_controlled = bool(np.count_nonzero(t.kind != _PLAIN))
    if any_controlled and not g.dead_ends:
        return False  # follow_road could switch roads: not implemented
    solid_objects = [o for o in road.objects if not isinstance(o, hw.Landmark)]
    if np.count_nonzero(t.is_idm) and solid_objects:
        return False  # obstacles among IDM traffic (neighbour search over objects)
    if action is not None and not cfg["manual_control"]:
        env.action_type.act(action)  # on the objects: the ego's targets and stored action
        if not refresh(t, g, env.controlled_vehicles):
            raise RuntimeError("the ego action took a vehicle outside the fast path")
    dt = 1 / cfg["simulation_frequency"]
    objects = road.objects
    b = make_bodies(t, objects)
    if len(b.first) and not any_controlled:
        # a scene of plain vehicles (parking): most pairs cannot meet within this step
        todo = ~step_safe_pairs(t, b, frames * dt, dt)
        b.todo_first, b.todo_second = b.first[todo], b.second[todo]
    s, r = local_coordinates(g, t.pos)
    directions(t)
    for _ in range(frames):
        if any_controlled:
            act(g, t, s, r)
        integrate(t, dt)
        # the new state's lane coordinates and directions, also the next frame's (collisions
        # only set impacts, applied at the next integration)
        s, r = local_coordinates(g, t.pos)
        directions(t)
        t.lane = closest_lanes(g, s, r, t.heading)
        collide(t, b, objects, dt)
        env.steps += 1
    unpack(t, g)
    env.enable_auto_render = False
    return True


# ---------------------------------------------------------------------------------------------
# Observations


def kinematics_observation(obs_type: Any) -> np.ndarray | None:
    """highway-env's ``KinematicObservation.observe()`` (sorted, relative coordinates) with numpy
    instead of pandas, ``[vehicles_count, features]`` float32; ``None`` where not implemented
    (absolute or shuffled order, road objects in range, features other than presence, x, y, vx,
    vy, heading, cos_h, sin_h).

    Same selection as ``Road.close_objects_to``: other vehicles closer than the perception
    distance (and not more than two lengths behind unless ``see_behind``), ordered by
    ``|longitudinal distance|`` on the ego's lane (stable), the first ``vehicles_count - 1``.
    """
    env = obs_type.env
    road = env.road
    if not road or obs_type.absolute or obs_type.order != "sorted":
        return None
    names = obs_type.features
    if not set(names) <= {"presence", "x", "y", "vx", "vy", "heading", "cos_h", "sin_h"}:
        return None
    ego = obs_type.observer_vehicle
    vs = [ego] + [v for v in road.vehicles if v is not ego]
    pos = np.array([v.position for v in vs], dtype=np.float64)
    heading = np.array([v.heading for v in vs], dtype=np.float64)
    speed = np.array([v.speed for v in vs], dtype=np.float64)
    lane = ego.lane
    along = (pos - lane.start) @ lane.direction  # lane_distance_to uses s on the ego's lane
    rel = along[1:] - along[0]
    dist = np.sqrt(((pos[1:] - pos[0]) ** 2).sum(axis=1))
    ok = dist < env.PERCEPTION_DISTANCE
    if not obs_type.see_behind:
        ok &= -2 * ego.LENGTH < rel
    if obs_type.include_obstacles and road.objects:
        far = [
            np.linalg.norm(o.position - ego.position) >= env.PERCEPTION_DISTANCE
            or not -2 * ego.LENGTH < ego.lane_distance_to(o)
            for o in road.objects
        ]
        if not all(far):
            return None  # objects in range: their rows differ (no heading), not implemented
    idx = ok.nonzero()[0]
    idx = idx[np.argsort(np.abs(rel[idx]), kind="stable")][: obs_type.vehicles_count - 1] + 1
    rows = np.concatenate([[0], idx])
    c, s = np.cos(heading[rows]), np.sin(heading[rows])
    cols = {
        "presence": np.ones(len(rows)),
        "x": pos[rows, 0],
        "y": pos[rows, 1],
        "vx": speed[rows] * c,
        "vy": speed[rows] * s,
        "heading": heading[rows],
        "cos_h": c,
        "sin_h": s,
    }
    for key in ("x", "y", "vx", "vy"):
        cols[key] = np.concatenate([cols[key][:1], cols[key][1:] - cols[key][0]])
    obs = np.stack([cols[n] for n in names], axis=1)
    if obs_type.normalize:
        if not obs_type.features_range:
            obs_type.normalize_obs({})  # highway-env fills its default ranges on first use
        for j, name in enumerate(names):
            if name in obs_type.features_range:
                lo, hi = obs_type.features_range[name]
                obs[:, j] = -1 + (obs[:, j] - lo) * 2 / (hi - lo)  # utils.lmap to [-1, 1]
                if obs_type.clip:
                    obs[:, j] = _clip(obs[:, j], -1, 1)
    out = np.zeros((obs_type.vehicles_count, len(names)))
    out[: len(obs)] = obs
    return out.astype(np.float32)  # KinematicObservation.space()'s dtype


# ---------------------------------------------------------------------------------------------
# Snapshots


def _copy_value(value: Any) -> Any:
    """A copy of a vehicle attribute deep enough that stepping the vehicle cannot change it:
    arrays, dicts (the stored action), lists (routes) and deques (history) are copied; lanes,
    the road and other shared structure are kept by reference."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict | list):
        return copy.copy(value)
    if type(value).__name__ == "deque":
        return copy.copy(value)
    return value


def _save_object(obj: Any) -> dict:
    return {k: _copy_value(v) for k, v in obj.__dict__.items()}


def _load_object(obj: Any, saved: dict) -> None:
    d = obj.__dict__
    d.clear()
    d.update({k: _copy_value(v) for k, v in saved.items()})


# Env attributes a step changes, beyond the road: AbstractEnv's counters and our envs' flags.
_ENV_FIELDS = ("time", "steps", "done", "enable_auto_render", "line_contact")


def snapshot(env: Any) -> dict:
    """The mutable simulator state of a highway-env env, to :func:`restore` it in place later.

    Saved: every vehicle's and road object's attributes (position, heading, speed, lane and
    target lane, target speed, IDM timer, stored action, crashed / impact / hit flags, ...,
    with arrays, dicts and lists copied), the road's vehicle and object lists, the controlled
    vehicles, the env's time / steps / done (and ``line_contact`` of ``parking-boundary``), and
    the state of ``env.np_random`` and ``road.np_random``. Not saved: the road network and
    config (they do not change within an episode); a :meth:`reset` replaces the whole road, so a
    snapshot only restores into the episode it was taken in.
    """
    road = env.unwrapped.road if hasattr(env, "unwrapped") else env.road
    u = env.unwrapped if hasattr(env, "unwrapped") else env
    things = list(road.vehicles) + list(road.objects) + [u.action_type]
    goals = [v.goal for v in road.vehicles if getattr(v, "goal", None) is not None]
    things += [o for o in goals if all(o is not x for x in things)]
    rngs = [u.np_random] + ([road.np_random] if road.np_random is not u.np_random else [])
    return {
        "road": road,
        "vehicles": list(road.vehicles),
        "objects": list(road.objects),
        "controlled": list(u.controlled_vehicles),
        "things": [(o, _save_object(o)) for o in things],
        "env": {k: getattr(u, k) for k in _ENV_FIELDS if hasattr(u, k)},
        "rng": [(g, copy.deepcopy(g.bit_generator.state)) for g in rngs],
    }


def restore(env: Any, state: dict) -> None:
    """Put ``env`` back in the state :func:`snapshot` saved (in place: the same vehicle objects
    get their saved attributes back). A state can be restored any number of times."""
    u = env.unwrapped if hasattr(env, "unwrapped") else env
    road = state["road"]
    if u.road is not road:
        raise ValueError("snapshot of another road (the env was reset or is another env)")
    road.vehicles[:] = state["vehicles"]
    road.objects[:] = state["objects"]
    u.controlled_vehicles[:] = state["controlled"]
    for obj, saved in state["things"]:
        _load_object(obj, saved)
    for k, v in state["env"].items():
        setattr(u, k, v)
    for g, s in state["rng"]:
        g.bit_generator.state = copy.deepcopy(s)
