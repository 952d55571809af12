"""Customization tasks: an environment, its basic reward, and an add-on requirement.

A :class:`Task` names a gymnasium environment (whose own reward is the *basic* reward ``r``) and
adds a requirement as an add-on reward ``r_R(env, action, info)`` plus a per-step statistic that
shows how well the requirement is met. Built-in tasks (reference section 3; gymnasium MuJoCo v5,
1000-step episodes):

======================  ============  =====================  ===================================
task                    env           add-on per step        statistic
======================  ============  =====================  ===================================
halfcheetah-hindleg     HalfCheetah   -|theta| of ``bthigh``  mean |theta|
hopper-jump             Hopper        z = ``qpos[1]``         mean z (torso height)
ant-sideways            Ant           ``info["y_velocity"]``  mean v_y
pointmass               PointMass     -|y|                    mean |y|
======================  ============  =====================  ===================================

``halfcheetah-hindleg:<joint>`` selects another HalfCheetah joint (e.g.
``halfcheetah-hindleg:ffoot``, the front foot used by a related code base);
see :func:`halfcheetah_hindleg`.

A user adds a task in a few lines, in a file loaded with :func:`load_tasks_file` (the CLI's
``--tasks-file``)::

    from tailor.envs import Task, register_task
    register_task(Task(name="walker-upright", env_id="Walker2d-v5",
                       addon=lambda env, action, info: -abs(env.unwrapped.data.qpos[2]),
                       statistic=lambda env, action, info: abs(env.unwrapped.data.qpos[2])))
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tailor.envs import pointmass
from tailor.errors import TailorError
from tailor.paths import check_input_path

__all__ = [
    "DEFAULT_HINDLEG_JOINT",
    "BatchState",
    "Task",
    "get_task",
    "halfcheetah_hindleg",
    "list_tasks",
    "load_tasks_file",
    "register_task",
]

AddonFn = Callable[[Any, np.ndarray, dict], float]


@dataclass
class BatchState:
    """What a task's vectorized terms see after one step of the fast path (:class:`VecEnv`).

    Attributes:
        model: the ``mujoco.MjModel`` shared by all envs (``None`` for non-MuJoCo envs).
        qpos: generalized positions after the step ``[N, nq]`` (point mass: position ``[N, 2]``).
        qvel: generalized velocities after the step ``[N, nv]`` (point mass: ``[N, 2]``).
        action: the executed (clipped) action ``[N, act_dim]`` float32.
        info: every key of the env's ``info`` dict, per env: ``[N]`` arrays (``[N, k]`` for
            Humanoid's ``tendon_length``/``tendon_velocity``), e.g. ``x_velocity`` and
            ``y_velocity`` (Ant), ``reward_ctrl``; empty for the point mass.
    """

    model: Any
    qpos: np.ndarray
    qvel: np.ndarray
    action: np.ndarray
    info: dict[str, np.ndarray]


VectorTermsFn = Callable[[BatchState], tuple[np.ndarray, np.ndarray]]

# relabel_goal(obs [N, D], next_obs [N, D], goal_from [N, D], infos) ->
#     (obs [N, D], next_obs [N, D], basic [N], terminated [N])
RelabelFn = Callable[
    [np.ndarray, np.ndarray, np.ndarray, list],
    tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
]


@dataclass(frozen=True, eq=False)
class Task:
    """A customization task: an environment plus an add-on requirement.

    Attributes:
        name: unique name used on the command line (no whitespace).
        env_id: gymnasium id of the environment; its own reward is the basic reward.
        addon: ``addon(env, action, info) -> float``, the add-on reward ``r_R`` of one step.
            ``env`` is the gymnasium env (use ``env.unwrapped`` for its internals), ``action`` the
            *clipped* action that was executed, ``info`` the env's info dict after the step.
        statistic: ``statistic(env, action, info) -> float``, the per-step quantity reported as
            its episode mean (e.g. |theta|), same arguments as ``addon``.
        description: one human sentence.
        env_kwargs: keyword arguments for ``gymnasium.make(env_id, **env_kwargs)``.
        statistic_name: how to print the statistic's episode mean, e.g. ``"mean |theta|"``.
        coefficients: the default coefficients per method name (plain data: keys of
            :data:`tailor.methods.METHODS`, values in :func:`tailor.methods.resolve`'s keyword
            names; the resolver merges them with what the user gives and checks the names),
            e.g. ``{"residual": {"omega_prime": 0.17, "alpha_hat": 0.13472}}``. The built-in
            tasks carry the paper's (reference section 2); user tasks may leave it empty.
        addon_formula: the add-on reward as text for ``tailor tasks`` (optional; see
            :meth:`addon_text`).
        vector_terms: optional ``vector_terms(batch: BatchState) -> (addon [N], statistic [N])``,
            the same two terms for a whole batch. A task on a gymnasium MuJoCo v5 robot
            (:data:`tailor.envs.robots.ROBOTS`) runs on :class:`VecEnv`'s fast path with or
            without it (without: ``addon``/``statistic`` per env, on the gymnasium env whose
            ``unwrapped.data`` is that env's ``MjData``); on the point mass only with it; any
            other env runs on a loop over gymnasium envs. It must agree with
            ``addon``/``statistic`` (tested for the built-in tasks).
        relabel_goal: goal-conditioned tasks only, for hindsight experience replay
            (``SACConfig.her_k``): ``relabel_goal(obs [N, D], next_obs [N, D], goal_from [N, D],
            infos) -> (obs [N, D], next_obs [N, D], basic [N], terminated [N])`` rewrites N
            transitions as if their goal had been the one that the observation ``goal_from``
            (a later ``next_obs`` of the same episode) achieves: the observations with the new
            goal, the basic reward and the termination under it. ``infos`` are the env's info
            dicts of the N steps. The add-on reward must not depend on the goal.
    """

    name: str
    env_id: str
    addon: AddonFn
    statistic: AddonFn
    description: str = ""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    statistic_name: str = "mean statistic"
    coefficients: dict[str, dict[str, float]] = field(default_factory=dict)
    addon_formula: str = ""
    vector_terms: VectorTermsFn | None = None
    relabel_goal: RelabelFn | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise TailorError(
                f"a task name must be a non-empty string without spaces, got {self.name!r}"
            )
        if not isinstance(self.env_id, str) or not self.env_id:
            raise TailorError(
                f"task {self.name!r}: env_id must be a gymnasium id such as "
                f"'HalfCheetah-v5', got {self.env_id!r}"
            )
        for part in ("addon", "statistic"):
            if not callable(getattr(self, part)):
                raise TailorError(
                    f"task {self.name!r}: {part} must be a function (env, action, info) -> float"
                )
        if self.vector_terms is not None and not callable(self.vector_terms):
            raise TailorError(f"task {self.name!r}: vector_terms must be a function or None")
        if self.relabel_goal is not None and not callable(self.relabel_goal):
            raise TailorError(f"task {self.name!r}: relabel_goal must be a function or None")
        if not isinstance(self.env_kwargs, dict):
            raise TailorError(f"task {self.name!r}: env_kwargs must be a dict")
        # The method names are checked where tasks meet methods (tailor.experiments.run): the
        # envs layer knows no method code.
        if not isinstance(self.coefficients, dict) or not all(
            isinstance(c, dict)
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in c.values())
            for c in self.coefficients.values()
        ):
            raise TailorError(
                f"task {self.name!r}: coefficients must be a dict {{method: {{coefficient: "
                f"value}}}} of finite numbers, got {self.coefficients!r}"
            )

    def addon_text(self) -> str:
        """The add-on reward as text: ``addon_formula``, else the add-on's source line."""
        if self.addon_formula:
            return self.addon_formula
        try:
            src = inspect.getsource(self.addon).strip()
        except (OSError, TypeError):
            return getattr(self.addon, "__qualname__", repr(self.addon))
        if "lambda" in src:  # keep only the lambda of e.g. `addon=lambda env, a, info: -x,`
            src = _lambda_expression(src[src.index("lambda") :])
        return " ".join(src.split())

    def describe(self) -> dict[str, Any]:
        """Everything ``tailor tasks`` prints, as plain data."""
        return {
            "name": self.name,
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "description": self.description,
            "addon": self.addon_text(),
            "statistic": self.statistic_name,
            "coefficients": {m: dict(c) for m, c in self.coefficients.items()},
        }


def _lambda_expression(src: str) -> str:
    """``"lambda a: f(a)), other=..."`` -> ``"lambda a: f(a)"``: cut where the body ends (a comma
    or an unmatched closing bracket at depth 0 after the parameters' colon)."""
    depth = 0
    start = src.find(":") + 1
    for k in range(start, len(src)):
        c = src[k]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return src[:k].strip()
        elif c in ",\n" and depth == 0:
            return src[:k].strip()
    return src.strip()


# ---------------------------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, Task] = {}
_LOADED_FILES: dict[str, list[Task]] = {}


def register_task(task: Task, overwrite: bool = False) -> Task:
    """Add ``task`` to the registry under ``task.name`` and return it.

    Raises:
        TailorError: not a :class:`Task`, or the name is taken and ``overwrite`` is false.
    """
    if not isinstance(task, Task):
        raise TailorError(f"register_task expects a tailor.envs.Task, got {type(task).__name__}")
    if task.name in _REGISTRY and not overwrite:
        raise TailorError(
            f"a task named {task.name!r} is already registered; choose another "
            f"name or pass overwrite=True"
        )
    _REGISTRY[task.name] = task
    return task


def list_tasks() -> list[Task]:
    """All registered tasks, built-in first, in registration order."""
    return list(_REGISTRY.values())


def get_task(name: str | Task) -> Task:
    """The registered task called ``name`` (a :class:`Task` is returned as is).

    ``halfcheetah-hindleg:<joint>`` builds the HalfCheetah task on another joint.

    Raises:
        TailorError: unknown task (the message lists the known ones) or unknown joint.
    """
    if isinstance(name, Task):
        return name
    if name in _REGISTRY:
        return _REGISTRY[name]
    base, sep, joint = str(name).partition(":")
    if sep and base == "halfcheetah-hindleg":
        return halfcheetah_hindleg(joint)
    known = ", ".join(_REGISTRY) or "(none)"
    raise TailorError(
        f"unknown task {name!r}; known tasks: {known} "
        f"(and halfcheetah-hindleg:<joint>); a file given with --tasks-file "
        f"can register more"
    )


def load_tasks_file(path: str | os.PathLike) -> list[Task]:
    """Import a user's Python file that registers tasks; return the tasks it registered.

    Loading the same file again returns the same tasks without running it twice.

    Raises:
        TailorError: missing file, syntax error, or an exception while importing it (the
            message names the file, line and error; no traceback).
    """
    p = check_input_path(Path(path).expanduser(), "tasks file")
    if not p.is_file():
        raise TailorError(
            f"tasks file {str(path)!r} does not exist (expected a Python file "
            f"that calls tailor.envs.register_task)"
        )
    key = str(p.resolve())
    if key in _LOADED_FILES:
        return list(_LOADED_FILES[key])
    before = set(_REGISTRY)
    module_name = f"tailor_user_tasks_{abs(hash(key)):x}"
    # SourceFileLoader accepts any file name, not only *.py.
    loader = importlib.machinery.SourceFileLoader(module_name, key)
    spec = importlib.util.spec_from_loader(module_name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    try:
        sys.modules[module_name] = module  # lets dataclasses etc. inside the file resolve it
        loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise TailorError(
            f"syntax error in tasks file {str(path)!r}, line {exc.lineno}: {exc.msg}"
        ) from None
    except TailorError as exc:
        sys.modules.pop(module_name, None)
        raise TailorError(f"tasks file {str(path)!r}: {exc}") from None
    except BaseException as exc:  # any failure of user code becomes a message
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        line = _user_line(exc, key)
        raise TailorError(
            f"error while loading tasks file {str(path)!r}{line}: {type(exc).__name__}: {exc}"
        ) from None
    tasks = [_REGISTRY[n] for n in _REGISTRY if n not in before]
    _LOADED_FILES[key] = tasks
    return list(tasks)


def _user_line(exc: BaseException, filename: str) -> str:
    """`, line N` of the deepest traceback frame inside the user's file, or ''."""
    line = ""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = f", line {tb.tb_lineno}"
        tb = tb.tb_next
    return line


# ---------------------------------------------------------------------------------------------
# Built-in tasks


def _quiet_mujoco_deprecation() -> None:
    """Drop MuJoCo >= 3.3's compile-time warning about gymnasium's ``half_cheetah.xml`` using
    the deprecated ``settotalmass`` attribute (harmless: the model compiles as before), which
    would otherwise be printed on every HalfCheetah model load, i.e. in every command's output.
    Other warnings still go to stderr. A handler installed by the user is left alone."""
    import mujoco

    if mujoco.get_mju_user_warning() is not None:
        return

    def handler(msg: str) -> None:
        if "settotalmass" not in msg:
            print(f"WARNING: {msg}", file=sys.stderr)

    mujoco.set_mju_user_warning(handler)


_quiet_mujoco_deprecation()


# The paper's coefficients (Table IV alpha, Table V omega'). For `greedy` and `residual` the
# paper gives no alpha_hat; ours is the task's Soft-PPO alpha (the prior's temperature), the
# natural choice when the customized policy should be as stochastic as the prior. `full` (Soft
# PPO on r + r_R) uses the Soft-PPO alpha too.
def _paper_coefficients(end_alpha: float, soft_alpha: float, residual_omega: float) -> dict:
    return {
        "no-entropy": {},
        "end-entropy": {"alpha": end_alpha},
        "repeat-entropy": {"alpha": soft_alpha},
        "soft": {"alpha": soft_alpha},
        "full": {"alpha": soft_alpha},
        "greedy": {"alpha_hat": soft_alpha},
        "kl": {"beta": soft_alpha},
        "residual": {"omega_prime": residual_omega, "alpha_hat": soft_alpha},
    }


HALFCHEETAH_COEFFICIENTS = _paper_coefficients(0.01, 0.13472, 0.17)
HOPPER_COEFFICIENTS = _paper_coefficients(0.0005, 0.001, 0.01)
ANT_COEFFICIENTS = _paper_coefficients(0.001, 0.0001, 0.01)
# Not from the paper: our choice for the cheap test task (rewards of order 1 per step).
POINTMASS_COEFFICIENTS = _paper_coefficients(0.01, 0.01, 0.01)

# The paper does not name the "hind-leg" joint. We take the hind *thigh* `bthigh` (the joint that
# swings the whole hind leg, qpos[3] in HalfCheetah-v5); a related code base used the front foot
# `ffoot`, available as `halfcheetah-hindleg:ffoot`.
DEFAULT_HINDLEG_JOINT = "bthigh"


@lru_cache(maxsize=1)
def _halfcheetah_hinge_joints() -> tuple[str, ...]:
    """Names of HalfCheetah-v5's hinge joints, read from its MJCF model."""
    import gymnasium.envs.mujoco as gm
    import mujoco

    xml = Path(gm.__file__).parent / "assets" / "half_cheetah.xml"
    model = mujoco.MjModel.from_xml_path(str(xml))
    return tuple(
        model.joint(j).name
        for j in range(model.njnt)
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
    )


def _qpos_address(model: Any, joint: str) -> int:
    """Index into ``qpos`` of a 1-dof joint, looked up by name (not a hard-coded index)."""
    import mujoco

    jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
    if jid < 0:
        raise TailorError(f"the model has no joint named {joint!r}")
    return int(model.jnt_qposadr[jid])


def halfcheetah_hindleg(joint: str = DEFAULT_HINDLEG_JOINT) -> Task:
    """HalfCheetah "hind-leg angle": add-on ``-|theta|`` of ``joint``, statistic mean ``|theta|``.

    The joint's ``qpos`` address is read from the MjModel by name at every use, so a model with
    another joint order still reads the right angle. The default joint is ``bthigh`` (see
    :data:`DEFAULT_HINDLEG_JOINT`); another joint gives the task ``halfcheetah-hindleg:<joint>``.

    Raises:
        TailorError: ``joint`` is not a hinge joint of HalfCheetah-v5 (the message lists them).
    """
    return _halfcheetah_hindleg(str(joint))


@cache  # one Task object per joint, so get_task returns the same object
def _halfcheetah_hindleg(joint: str) -> Task:
    joints = _halfcheetah_hinge_joints()
    if joint not in joints:
        raise TailorError(
            f"HalfCheetah has no hinge joint {joint!r}; choose one of "
            f"{', '.join(joints)} (e.g. halfcheetah-hindleg:ffoot)"
        )

    def angle(env: Any, action: np.ndarray, info: dict) -> float:
        u = env.unwrapped
        return float(u.data.qpos[_qpos_address(u.model, joint)])

    def vector_terms(b: BatchState) -> tuple[np.ndarray, np.ndarray]:
        theta = np.abs(b.qpos[:, _qpos_address(b.model, joint)])
        return -theta, theta

    name = "halfcheetah-hindleg"
    if joint != DEFAULT_HINDLEG_JOINT:
        name += f":{joint}"
    return Task(
        name=name,
        env_id="HalfCheetah-v5",
        addon=lambda env, action, info: -abs(angle(env, action, info)),
        statistic=lambda env, action, info: abs(angle(env, action, info)),
        description=f"HalfCheetah runs forward while keeping the {joint} joint angle near zero",
        statistic_name=f"mean |theta| ({joint})",
        coefficients=HALFCHEETAH_COEFFICIENTS,
        addon_formula=f"-|theta|, theta = data.qpos[<{joint} qpos address>] (rad)",
        vector_terms=vector_terms,
    )


def _hopper_terms(b: BatchState) -> tuple[np.ndarray, np.ndarray]:
    z = b.qpos[:, 1]
    return z, z


def _ant_terms(b: BatchState) -> tuple[np.ndarray, np.ndarray]:
    vy = b.info["y_velocity"]
    return vy, vy


def _pointmass_terms(b: BatchState) -> tuple[np.ndarray, np.ndarray]:
    ay = np.abs(b.qpos[:, 1])
    return -ay, ay


_BUILTINS = (
    halfcheetah_hindleg(),
    Task(
        name="hopper-jump",
        env_id="Hopper-v5",
        addon=lambda env, action, info: float(env.unwrapped.data.qpos[1]),
        statistic=lambda env, action, info: float(env.unwrapped.data.qpos[1]),
        description="Hopper hops forward while keeping its torso high (jump higher)",
        statistic_name="mean z (torso height)",
        coefficients=HOPPER_COEFFICIENTS,
        addon_formula="z = data.qpos[1] (torso height, m)",
        vector_terms=_hopper_terms,
    ),
    Task(
        name="ant-sideways",
        env_id="Ant-v5",
        addon=lambda env, action, info: float(info["y_velocity"]),
        statistic=lambda env, action, info: float(info["y_velocity"]),
        description="Ant walks forward while also moving along +y",
        statistic_name="mean v_y",
        coefficients=ANT_COEFFICIENTS,
        addon_formula='dy/dt = info["y_velocity"] (torso, m/s)',
        vector_terms=_ant_terms,
    ),
    Task(
        name="pointmass",
        env_id=pointmass.ENV_ID,
        addon=lambda env, action, info: -abs(float(env.unwrapped.pos[1])),
        statistic=lambda env, action, info: abs(float(env.unwrapped.pos[1])),
        description="a 2-D point mass moves to the origin keeping |y| small (cheap test task)",
        statistic_name="mean |y|",
        coefficients=POINTMASS_COEFFICIENTS,
        addon_formula="-|y| (position)",
        vector_terms=_pointmass_terms,
    ),
)
for _task in _BUILTINS:
    register_task(_task)
