"""Customization tasks and fast vectorized stepping.

* :class:`Task`, :func:`register_task`, :func:`get_task`, :func:`list_tasks`,
  :func:`load_tasks_file`: the task registry (built-in: ``halfcheetah-hindleg``, ``hopper-jump``,
  ``ant-sideways``, ``pointmass`` in :mod:`tailor.envs.tasks`; ``cartpole-centered``,
  ``mountaincar-noleft`` in :mod:`tailor.envs.classic`).
* :func:`make_env`: one gymnasium env of a task whose ``info`` carries ``basic_reward``,
  ``addon_reward`` and ``statistic`` on every step.
* :class:`VecEnv` / :class:`StepResult`: N envs stepped together with auto-reset, on a fast path
  that steps MuJoCo directly (see :mod:`tailor.envs.backends`).
"""

from tailor.envs import classic  # noqa: F401  (registers the Residual Q-Learning tasks)
from tailor.envs.pointmass import PointMassEnv
from tailor.envs.tasks import (
    BatchState,
    Task,
    get_task,
    halfcheetah_hindleg,
    list_tasks,
    load_tasks_file,
    register_task,
)
from tailor.envs.vec import StepResult, VecEnv
from tailor.envs.wrappers import TaskInfoWrapper, make_env

__all__ = [
    "BatchState",
    "PointMassEnv",
    "StepResult",
    "Task",
    "TaskInfoWrapper",
    "VecEnv",
    "get_task",
    "halfcheetah_hindleg",
    "list_tasks",
    "load_tasks_file",
    "make_env",
    "register_task",
]
