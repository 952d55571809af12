"""``tailor sweep --task``: a user's own sweep, a coefficient grid x seeds on one task.

Each grid point and seed is one :class:`~tailor.experiments.presets.Job`, run by the same sweep
machinery as the paper's presets (:func:`tailor.experiments.sweep.run_sweep`: the job lock in
``DIR/.locks/<job>``, result validation, failures recorded, a rerun that skips finished jobs
and continues a killed one from its own checkpoint; local worker processes or Ray). The grid's
values are part of the job's identity (its directory name), so a grid extended later reruns only
the new points. :func:`grid_summary` pools the finished seeds of each point into one table.

Grid keys are the method's coefficients (``omega_prime``, ``alpha_hat``, ``omega`` for a
customization; ``alpha`` for a run from scratch) and the scalar fields of
:class:`tailor.algos.ppo.PPOConfig` (``learning_rate``, ``kl_target``, ``num_envs``, ...). A key
with one value fixes that setting for every job.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.experiments.coefficients import load_user_tasks, task_method
from tailor.experiments.configs import CONFIGS, make_config
from tailor.experiments.frontier import held_kl
from tailor.experiments.presets import Job
from tailor.experiments.sweep import load_results
from tailor.methods import CUSTOMIZATION_METHODS, TRAINING_METHODS

__all__ = ["GridSpec", "grid_jobs", "grid_summary", "parse_grid"]

# Coefficients a grid may vary, by job kind (the named options of run.customize / train_prior).
_COEFFICIENTS = {"customize": ("omega_prime", "alpha_hat", "omega"), "train": ("alpha",)}
# PPOConfig fields a job sets itself: --steps, --seeds, the job's std type and snapshot interval.
_RESERVED = {
    "total_steps": "--steps",
    "seed": "--seeds",
    "std_type": "the job's std type",
    "checkpoint_every": "the sweep (about 40 snapshots per run)",
}
_BOOLS = {"true": True, "false": False}


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """What a user sweep runs.

    Attributes:
        task: registered task name (a user task: ``tasks_file`` registers it).
        method: a customization method (with ``prior``) or a training method (without).
        steps: environment steps of every run.
        prior: path of the prior to customize (made absolute: workers on other nodes read it
            there); ``None``: train from scratch.
        grid: ``(key, values)`` pairs, in the order given; values typed (see :func:`parse_grid`).
        seeds: one job per grid point and seed.
        episodes: evaluation episodes per job.
        tasks_file: a ``--tasks-file`` every worker loads before its job (made absolute).
    """

    task: str
    method: str
    steps: int
    prior: str | None = None
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    seeds: tuple[int, ...] = (0,)
    episodes: int = 10
    tasks_file: str | None = None

    @property
    def kind(self) -> str:
        return "train" if self.prior is None else "customize"


def _field_type(key: str, kind: str) -> type:
    """The type a grid value of ``key`` is read as; a TailorError for a key no job takes."""
    if key in _COEFFICIENTS[kind]:
        return float
    if key in _RESERVED:
        raise TailorError(f"--grid {key}: set by {_RESERVED[key]}, not by the grid")
    hints = typing.get_type_hints(CONFIGS["ppo"])
    if key not in hints:
        other = "train" if kind == "customize" else "customize"
        if key in _COEFFICIENTS[other]:
            for_what = "training from scratch" if other == "train" else "a customization (--prior)"
            raise TailorError(f"--grid {key}: a coefficient of {for_what}, not of this sweep")
        known = ", ".join((*_COEFFICIENTS[kind], *sorted(set(hints) - set(_RESERVED))))
        raise TailorError(f"--grid {key}: not a grid key; known: {known}")
    hint = hints[key]
    args = typing.get_args(hint)
    if type(None) in args:  # ``float | None``: the grid gives a value
        (hint,) = (a for a in args if a is not type(None))
    if hint not in (int, float, bool, str):
        raise TailorError(f"--grid {key}: a {hint} field cannot be a grid key")
    return hint


def _typed(key: str, text: str, kind: type) -> Any:
    """``text`` read as ``kind`` (``int``, ``float``, ``bool``: true/false, ``str``)."""
    text = text.strip()
    try:
        if kind is bool:
            return _BOOLS[text.lower()]
        value = kind(text)
    except (KeyError, ValueError):
        want = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "text")
        raise TailorError(f"--grid {key}: {text!r} is not {want}") from None
    if kind is float and not math.isfinite(value):
        raise TailorError(f"--grid {key}: {text!r} is not a finite number")
    return value


def parse_grid(items: Sequence[str], kind: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``["omega_prime=0.01,0.1", "num_envs=8"]`` -> ``(("omega_prime", (0.01, 0.1)),
    ("num_envs", (8,)))``, each value read as its field's type.

    Args:
        items: ``KEY=V1,V2,...`` strings.
        kind: ``"customize"`` or ``"train"`` (which coefficients are keys).

    Raises:
        TailorError: a malformed item, a key given twice or that no job takes, a repeated or
            mistyped value.
    """
    grid: list[tuple[str, tuple[Any, ...]]] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = text.split(",")
        if not sep or not key or not all(p.strip() for p in parts):
            raise TailorError(f"--grid takes KEY=V1,V2,..., got {item!r}")
        if key in dict(grid):
            raise TailorError(f"--grid {key} is given twice; list its values in one --grid")
        field_type = _field_type(key, kind)
        values = tuple(_typed(key, p, field_type) for p in parts)
        if len(set(values)) != len(values):
            raise TailorError(f"--grid {key}: a value is listed twice ({text})")
        grid.append((key, values))
    return tuple(grid)


def _points(grid: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[tuple[str, Any], ...]]:
    """The grid's points (the first key varies slowest), each ``((key, value), ...)``."""
    keys = [k for k, _ in grid]
    return [
        tuple(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in grid))
    ]


def grid_jobs(spec: GridSpec) -> list[Job]:
    """One :class:`Job` per grid point and seed (seeds inner), every point checked first.

    Raises:
        TailorError: an unknown task or a method of the wrong kind, a prior or tasks file that
            does not exist, or a grid point the method or PPOConfig refuses (e.g. a negative
            temperature), named before any job runs.
    """
    if spec.tasks_file is not None:
        load_user_tasks(spec.tasks_file)
    allowed = CUSTOMIZATION_METHODS if spec.kind == "customize" else TRAINING_METHODS
    if spec.method not in allowed:
        what = "customizes a prior (--prior)" if spec.prior is None else "trains from scratch"
        bad = spec.method in (*CUSTOMIZATION_METHODS, *TRAINING_METHODS)
        why = f"{spec.method!r} {what}" if bad else f"unknown method {spec.method!r}"
        raise TailorError(f"--method: {why}; here one of {', '.join(allowed)}")
    if spec.prior is not None and not Path(spec.prior).exists():
        raise TailorError(f"--prior: no such file or directory {spec.prior!r}")
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds):
        raise TailorError(f"--seeds: give distinct seeds, got {list(spec.seeds)}")
    coefficients = _COEFFICIENTS[spec.kind]
    jobs = []
    for point in _points(spec.grid):
        given = {k: v for k, v in point if k in coefficients and k != "omega"}
        task_method(spec.task, spec.method, flags=False, **given)  # the method's own checks
        if dict(point).get("omega", 0.0) < 0:
            raise TailorError(f"--grid omega: must be >= 0, got {dict(point)['omega']}")
        config = {k: v for k, v in point if k not in coefficients}
        make_config(CONFIGS["ppo"], spec.steps, spec.seeds[0], config).validate()
        for seed in spec.seeds:
            jobs.append(Job(spec.kind, spec.task, spec.method, seed, spec.steps, spec.episodes,
                            prior=spec.prior, ppo=point, tasks_file=spec.tasks_file))  # fmt: skip
    return jobs


def _mean_sd(values: Sequence[float]) -> str:
    """``"m ± sd"`` (sample sd, n - 1) over seeds; one seed: ``"m"``; none: ``"-"``."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {statistics.stdev(values):.3g}"


def grid_summary(spec: GridSpec, jobs: Sequence[Job], out: str | Path) -> str:
    """Markdown: one row per grid point, each evaluation mean (of the final policy) and, for a
    customization, the KL to the prior per step the run held, as mean ± sd over the finished
    seeds (sample sd). Keys with one value are named above the table, not repeated per row."""
    results = load_results(jobs, out)
    varied = [k for k, values in spec.grid if len(values) > 1]
    fixed = [f"{k}={values[0]}" for k, values in spec.grid if len(values) == 1]
    metrics = ["total", "basic", "addon", "statistic"]
    kl = spec.kind == "customize"
    head = ["grid point", "seeds done", *metrics, *(["KL/step held"] if kl else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_point: dict[tuple[tuple[str, Any], ...], list[Job]] = {}
    for job in jobs:
        by_point.setdefault(job.ppo, []).append(job)
    for point, point_jobs in by_point.items():
        done = [j for j in point_jobs if j.id in results]
        name = ", ".join(f"{k}={v}" for k, v in point if k in varied) or "(all)"
        cells = [name, f"{len(done)}/{len(point_jobs)}"]
        cells += [_mean_sd([results[j.id]["eval"][m]["mean"] for j in done]) for m in metrics]
        if kl:
            held = [held_kl(Path(out) / j.id) for j in done]
            cells.append(_mean_sd([h for h in held if h is not None]))
        lines.append("| " + " | ".join(cells) + " |")
    where = f"from {spec.prior}" if spec.prior else "from scratch"
    title = f"# {spec.task}: {spec.method} {where}, {spec.steps:,} steps per run\n\n"
    setting = f"fixed: {', '.join(fixed)}\n\n" if fixed else ""
    note = (
        f"\nmean ± sd over seeds (sample sd) of each run's {spec.episodes}-episode evaluation of "
        "its final policy"
    )
    if kl:
        note += "; KL/step held: E[log pi_theta - log pi_prior] over the run's last iterations"
    note += "\n"
    return title + setting + "\n".join(lines) + "\n" + note
