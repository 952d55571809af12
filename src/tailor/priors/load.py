"""``load_prior``: a frozen prior from a tailor checkpoint or another library's file.

The format is told from the file's content (:mod:`tailor.priors.detect`); each importer is a
module of its own (:mod:`~tailor.priors.sb3`, :mod:`~tailor.priors.cleanrl`,
:mod:`~tailor.priors.rsl_rl`, :mod:`~tailor.priors.skrl`, :mod:`~tailor.priors.torchscript`),
imported only when its format is met.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from tailor.errors import DeterministicPolicyError, TailorError
from tailor.policyfile import load_policy
from tailor.priors.prior import PolicyPrior, check_spaces

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["PriorOptions", "check_options", "load_acting_policy", "load_prior"]


class PriorOptions(TypedDict, total=False):
    """How to read an imported prior (the CLI's ``--prior-*`` flags); all default to ``None``.

    Attributes:
        format: one of :data:`tailor.priors.detect.FORMATS` to skip detection.
        normalizer: a separate observation-statistics file (SB3 ``vecnormalize.pkl``, or a
            ``.npz`` / safetensors file with ``mean`` and ``var``); imported priors only.
        std: the Gaussian's standard deviation around a deterministic policy (SB3 TD3/DDPG, a
            TorchScript deploy export).
        temperature: ``tau`` of ``softmax(Q / tau)`` for a Q-network prior (SB3 DQN).
        activation: the hidden activation when the file does not say (rsl-rl without
            ``params/agent.yaml``, a CleanRL agent that is not Tanh, a custom SB3 one).
    """

    format: str | None
    normalizer: str | Path | None
    std: float | Sequence[float] | None
    temperature: float | None
    activation: str | None


_OPTION_NAMES = ("format", "normalizer", "std", "temperature", "activation")


def load_prior(
    path: str | Path,
    obs_dim: int | None = None,
    act_dim: int | None = None,
    task: str | None = None,
    **options: Unpack[PriorOptions],
) -> Any:
    """Load a frozen prior: a tailor run directory / ``policy.safetensors``, or an imported policy.

    If ``obs_dim``/``act_dim`` are given, the prior's sizes are checked against them (``task`` names
    the task in the error message).

    Args:
        path: the prior's file (or a tailor run directory).
        options: :class:`PriorOptions` (``format``, ``normalizer``, ``std``, ``temperature``,
            ``activation``), keyword arguments.

    Returns:
        a :class:`PolicyPrior` for Gaussian policies (tailor, SB3 PPO/A2C and TD3/DDPG with
        ``std``, CleanRL, rsl-rl), else a :class:`Prior` from :mod:`tailor.priors.policies`
        (SAC/TQC, DQN, categorical).

    Raises:
        TailorError: missing, truncated, foreign or unsupported file; an option the format does not
            take, or an unknown option; sizes that do not match the task.
    """
    from tailor.priors.detect import FORMATS, detect_format
    from tailor.priors.validate import check_finite

    given = check_options(options)
    check_arguments(path, obs_dim, act_dim, task)
    fmt = given.pop("format")
    if fmt is not None and fmt not in FORMATS:
        raise TailorError(f"unknown prior format {fmt!r}; known: {', '.join(FORMATS)}")
    fmt = fmt or detect_format(path)
    prior = _load_tailor(path, given) if fmt == "tailor" else _import(fmt, path, given)
    check_finite(prior, repr(str(path)))
    if obs_dim is not None and act_dim is not None:
        check_spaces(prior, obs_dim, act_dim, task or "?")
    return prior


def check_options(options: Any, where: str = "load_prior()") -> dict[str, Any]:
    """All of :class:`PriorOptions` (``None`` where not given) from ``options``, a mapping of
    known options with values of the right types.

    Raises:
        TailorError: naming ``where`` and the option: not a mapping, an unknown option, a value
            of the wrong type (``temperature`` and ``std`` must be finite numbers > 0).
    """
    if not isinstance(options, Mapping):
        raise TailorError(
            f"{where}: the prior options must be a mapping (e.g. {{'temperature': 0.1}}), "
            f"got {type(options).__name__}"
        )
    for name in options:
        if name not in _OPTION_NAMES:
            raise TailorError(
                f"{where} got an unknown prior option {name!r}; options: {', '.join(_OPTION_NAMES)}"
            )
    given: dict[str, Any] = {name: options.get(name) for name in _OPTION_NAMES}
    for name in ("format", "activation"):
        if given[name] is not None and not isinstance(given[name], str):
            raise TailorError(f"{where}: prior option {name} must be a string, got {given[name]!r}")
    if given["normalizer"] is not None and not isinstance(given["normalizer"], (str, os.PathLike)):
        raise TailorError(
            f"{where}: prior option normalizer must be a file path, got {given['normalizer']!r}"
        )
    for name, numbers in (("temperature", [given["temperature"]]), ("std", _numbers(given["std"]))):
        if given[name] is not None and not all(_positive(v) for v in numbers):
            what = "a number > 0" + (" or one per action dimension" if name == "std" else "")
            raise TailorError(f"{where}: prior option {name} must be {what}, got {given[name]!r}")
    return given


def _numbers(value: Any) -> list[Any]:
    """A number, or the numbers of a sequence / array (``[value]`` when it is neither)."""
    if isinstance(value, (str, bytes, bool)) or value is None:
        return [value]
    try:
        return [float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1)] or [None]
    except (TypeError, ValueError):
        return [value]


def _positive(value: Any) -> bool:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and math.isfinite(value) and value > 0


def check_arguments(path: Any, obs_dim: Any, act_dim: Any, task: Any) -> None:
    """:func:`load_prior`'s ``path`` is a file path, ``obs_dim`` / ``act_dim`` positive ints."""
    if not isinstance(path, (str, os.PathLike)):
        raise TailorError(
            f"load_prior(): path must be a file or directory path (str or Path), got "
            f"{type(path).__name__} {path!r}"[:200]
        )
    for name, value in (("obs_dim", obs_dim), ("act_dim", act_dim)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise TailorError(f"load_prior(): {name} must be a positive integer, got {value!r}")
    if task is not None and not isinstance(task, str):
        raise TailorError(f"load_prior(): task must be a task name (a string), got {task!r}")


def _load_tailor(path: str | Path, options: dict[str, Any]) -> PolicyPrior:
    """A tailor checkpoint; it carries its own normalizer and distribution, so no option applies."""
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise TailorError(
            f"{', '.join(given)} only apply to imported priors; {str(path)!r} is a tailor "
            "checkpoint, which carries its own normalizer and distribution"
        )
    actor, obs_norm, meta = load_policy(path)
    return PolicyPrior(actor, obs_norm, meta)


def load_acting_policy(path: str | Path, **options: Any) -> tuple[Any, str | None]:
    """``(load_prior(path, **options), None)``, or, for a deterministic policy (SB3 TD3/DDPG/ARS,
    a DQN, a deploy export) given without the std / temperature that would make it a prior,
    ``(it read with 1.0 for that option, the option's name)``: its mean action / argmax, what
    a deterministic evaluation or a description uses, does not depend on the value."""
    try:
        return load_prior(path, **options), None
    except DeterministicPolicyError as exc:
        return load_prior(path, **{**options, exc.option: 1.0}), exc.option


def _import(fmt: str, path: str | Path, options: dict[str, Any]) -> Any:
    """Another library's file, by the importer of format ``fmt``."""
    normalizer, activation = options["normalizer"], options["activation"]
    if fmt == "sb3":
        from tailor.priors.sb3 import load_sb3

        return load_sb3(path, normalizer, options["std"], options["temperature"], activation)
    if fmt == "torchscript":
        from tailor.priors.torchscript import load_torchscript

        if options["temperature"] is not None:
            raise TailorError("temperature only applies to SB3 DQN priors, not torchscript")
        return load_torchscript(path, options["std"], normalizer, activation)
    if options["std"] is not None or options["temperature"] is not None:
        raise TailorError(
            f"std and temperature only apply to SB3 TD3/DDPG and DQN priors, not {fmt}"
        )
    if fmt == "cleanrl":
        from tailor.priors.cleanrl import load_cleanrl

        return load_cleanrl(path, normalizer, activation)
    if fmt == "rsl_rl":
        from tailor.priors.rsl_rl import load_rsl_rl

        return load_rsl_rl(path, normalizer, activation)
    from tailor.priors.skrl import load_skrl

    return load_skrl(path, normalizer, activation)
