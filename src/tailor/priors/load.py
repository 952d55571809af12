"""``load_prior``: a frozen prior from a tailor checkpoint or another library's file.

The format is told from the file's content (:mod:`tailor.priors.detect`); each importer is a
module of its own (:mod:`~tailor.priors.sb3`, :mod:`~tailor.priors.cleanrl`,
:mod:`~tailor.priors.rsl_rl`, :mod:`~tailor.priors.skrl`, :mod:`~tailor.priors.torchscript`),
imported only when its format is met.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from tailor.errors import TailorError
from tailor.policyfile import load_policy
from tailor.priors.prior import PolicyPrior, check_spaces

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["PriorOptions", "load_prior"]


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
        a :class:`PolicyPrior` for Gaussian policies (tailor, SB3 PPO/A2C, CleanRL, rsl-rl), else
        a :class:`Prior` from :mod:`tailor.priors.policies` (SAC/TQC, TD3/DDPG, DQN, categorical).

    Raises:
        TailorError: missing, truncated, foreign or unsupported file; an option the format does not
            take, or an unknown option; sizes that do not match the task.
    """
    from tailor.priors.detect import FORMATS, detect_format

    for name in options:
        if name not in _OPTION_NAMES:
            raise TailorError(
                f"load_prior() got an unknown option {name!r}; options: {', '.join(_OPTION_NAMES)}"
            )
    given: dict[str, Any] = {name: options.get(name) for name in _OPTION_NAMES}
    fmt = given.pop("format")
    if fmt is not None and fmt not in FORMATS:
        raise TailorError(f"unknown prior format {fmt!r}; known: {', '.join(FORMATS)}")
    fmt = fmt or detect_format(path)
    prior = _load_tailor(path, given) if fmt == "tailor" else _import(fmt, path, given)
    if obs_dim is not None and act_dim is not None:
        check_spaces(prior, obs_dim, act_dim, task or "?")
    return prior


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
