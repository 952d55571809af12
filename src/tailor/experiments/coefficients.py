"""Where tasks meet methods: the coefficients of a run and the checks of ``--method``.

A run's coefficients come from layers, highest precedence first (:func:`coefficient_layers`):
explicit values, the prior's temperature, the task's table, MCTS's ``omega' = tau = 1`` and
tailor's fallback temperature; :func:`tailor.methods.resolve` merges them and records each
coefficient's source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tailor.envs import Task, get_task, load_tasks_file
from tailor.errors import TailorError
from tailor.methods import (
    CUSTOMIZATION_METHODS,
    FALLBACK_COEFFICIENTS,
    METHODS,
    TRAINING_METHODS,
    Method,
    check_coefficient_table,
    resolve,
    temperature_defaults,
)
from tailor.priors import prior_temperature

__all__ = [
    "PRIOR_TEMPERATURE",
    "check_method_kind",
    "coefficient_layers",
    "describe_coefficients",
    "load_user_tasks",
    "task_method",
]


def load_user_tasks(path: str | Path) -> list[Task]:
    """Import a ``--tasks-file`` (it runs Python) and check the coefficient tables it brings."""
    tasks = load_tasks_file(path)
    for task in tasks:
        check_coefficient_table(task.coefficients, f"task {task.name!r}")
    return tasks


def task_method(
    task: Task | str, name: str, *, flags: bool = False, **given: float | None
) -> Method:
    """:func:`tailor.methods.resolve` with the task's coefficients for ``name`` as defaults.

    ``given`` values that are ``None`` keep the default; ``flags`` names coefficients as
    command-line flags in error messages. A coefficient the task's table does not name (a user
    task registered without ``coefficients``) comes from
    :data:`tailor.methods.FALLBACK_COEFFICIENTS` (temperature
    :data:`~tailor.methods.DEFAULT_TEMPERATURE`); ``Method.sources`` says which.
    """
    task = get_task(task)
    where = f"task {task.name!r}"
    check_coefficient_table(task.coefficients, where)
    layers = [(where, task.coefficients.get(name)), (_FALLBACK, FALLBACK_COEFFICIENTS.get(name))]
    return resolve(name, layers, where=where, flags=flags, **given)


_FALLBACK = "tailor's default temperature (the task names no coefficient)"
PRIOR_TEMPERATURE = "prior temperature"  # the start of the prior's layer's label


def coefficient_layers(
    task: Task,
    method: str,
    prior_meta: Mapping[str, Any] | None,
    omega: float | None = None,
    *,
    mcts: bool = False,
) -> list[tuple[str, Mapping[str, float] | None]]:
    """The default layers of a customization's coefficients, highest precedence first (for
    :func:`tailor.methods.resolve`; explicit ``--omega-prime`` / ``--alpha-hat`` beat them all):

    1. the prior's temperature ``alpha`` (:func:`tailor.priors.prior_temperature`), read as RQL
       does: ``omega' = omega * alpha``, ``alpha_hat = alpha`` (``beta = alpha``). It applies
       when ``omega`` is given, or when the task's table was not made for this prior: the task
       has no table for the method, or its ``soft`` temperature is not the prior's (an imported
       prior, a tailor prior trained with another ``--alpha``). A tailor prior trained at the
       task's own temperature keeps the task's (calibrated) table.
    2. the task's table for the method;
    3. MCTS only: the RQL paper's ``omega' = tau = 1``;
    4. :data:`tailor.methods.FALLBACK_COEFFICIENTS`.

    Raises:
        TailorError: ``omega`` with a method other than ``residual``, or with a prior whose
            temperature is unknown.
    """
    layers: list[tuple[str, Mapping[str, float] | None]] = []
    table = task.coefficients.get(method)
    found = prior_temperature(dict(prior_meta)) if prior_meta is not None else None
    if omega is not None:
        if method != "residual":
            raise TailorError(f"--omega weighs the prior's task in --method residual, not {method}")
        if not (math.isfinite(omega) and omega >= 0):
            raise TailorError(f"--omega must be a finite number >= 0, got {omega}")
        if found is None:
            raise TailorError(
                "--omega needs the prior's temperature (omega' = omega * alpha), and this "
                "prior's is unknown; pass --omega-prime (and --alpha-hat) instead"
            )
    if found is not None:
        alpha, where = found
        task_alpha = task.coefficients.get("soft", {}).get("alpha")
        made_for_it = (
            table is not None
            and task_alpha is not None
            and math.isclose(alpha, task_alpha, rel_tol=1e-9)
        )
        if omega is not None or not made_for_it:
            w = 1.0 if omega is None else float(omega)
            label = f"{PRIOR_TEMPERATURE} {alpha:g} ({where}), omega {w:g}"
            layers.append((label, temperature_defaults(alpha, w)))
    layers.append((f"task {task.name!r}", table))
    if mcts:
        layers.append(("the RQL paper's MCTS default", {"omega_prime": 1.0, "alpha_hat": 1.0}))
    layers.append((_FALLBACK, FALLBACK_COEFFICIENTS.get(method)))
    return layers


def describe_coefficients(method: Method) -> str:
    """``"omega_prime=0.1 (task 'x'), alpha_hat=0.2 (--alpha-hat)"`` for log lines (one source
    named once for the coefficients that share it: ``"omega_prime=0.1, alpha_hat=0.1 (...)"``)."""
    groups: list[tuple[str, list[str]]] = []
    for k, v in method.coefficients.items():
        source = method.sources.get(k, "given")
        if groups and groups[-1][0] == source:
            groups[-1][1].append(f"{k}={v:g}")
        else:
            groups.append((source, [f"{k}={v:g}"]))
    return ", ".join(f"{', '.join(parts)} ({source})" for source, parts in groups)


def check_method_kind(name: str | None, customization: bool) -> None:
    """Raise a TailorError that says which command runs ``name`` when it is not this one's."""
    allowed = CUSTOMIZATION_METHODS if customization else TRAINING_METHODS
    if name is None:
        raise TailorError(f"--method is required; one of {', '.join(allowed)}")
    if name not in METHODS:
        raise TailorError(f"unknown method {name!r}; known methods: {', '.join(allowed)}")
    if name in allowed:
        return
    if METHODS[name].customization:
        raise TailorError(
            f"method {name!r} customizes a prior policy and needs one: use `tailor customize "
            f"--prior RUN_DIR --method {name} ...`"
        )
    raise TailorError(
        f"method {name!r} trains from scratch: use `tailor train --method {name} ...`"
    )
