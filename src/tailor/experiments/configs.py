"""The settings of a run: algorithm config dataclasses, their flags, and the named options of
the entry points.

``config`` fields (``num_envs=64``, ``hidden=[32, 32]``) set the algorithm's config dataclass
(:data:`CONFIGS`, checked by :func:`make_config`); the entry points' other keyword options are
collected into :class:`TrainOptions` / :class:`CustomizeOptions` by :func:`split_options`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tailor.algos.mcts import MCTSConfig
from tailor.algos.ppo import PPOConfig
from tailor.algos.sac import SACConfig
from tailor.algos.soft_dqn import SoftDQNConfig
from tailor.errors import TailorError
from tailor.priors.load import check_options

__all__ = [
    "CONFIGS",
    "CUSTOMIZE_ALGOS",
    "RQL_TRAIN_METHODS",
    "TRAIN_ALGOS",
    "CustomizeOptions",
    "TrainOptions",
    "check_algo",
    "check_run_arguments",
    "check_steps",
    "config_flags",
    "make_config",
    "split_options",
]

TRAIN_ALGOS = ("ppo", "dqn", "sac")
CUSTOMIZE_ALGOS = ("ppo", "dqn", "sac", "mcts")
RQL_TRAIN_METHODS = ("soft", "full", "no-entropy")  # what DQN / SAC train from scratch

Log = Callable[[str], None] | None


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """The named options of :func:`tailor.experiments.run.train_prior` (not config fields).

    Attributes:
        alpha: the temperature (default: the task's coefficient for the method).
        log: progress printer (``None``: silent).
        progress: PPO only: a progress bar.
        overwrite: replace a run or model already in ``out`` (otherwise it is refused).
    """

    alpha: float | None = None
    log: Log = print
    progress: bool = False
    overwrite: bool = False


@dataclasses.dataclass(frozen=True)
class CustomizeOptions:
    """The named options of :func:`tailor.experiments.run.customize` (not config fields).

    Attributes:
        omega_prime: weight of ``log pi_prior`` (``None``: the default layers).
        alpha_hat: temperature of the customized policy (MCTS: the search temperature ``tau``).
        omega: residual only: the weight of the prior's own task, ``omega' = omega * alpha``.
        log: progress printer (``None``: silent).
        progress: PPO only: a progress bar.
        overwrite: replace a run or model already in ``out`` (never the prior's directory).
        prior_options: :func:`tailor.priors.load_prior` options for a prior from another
            library: ``format``, ``normalizer``, ``std``, ``temperature``, ``activation``.
    """

    omega_prime: float | None = None
    alpha_hat: float | None = None
    omega: float | None = None
    log: Log = print
    progress: bool = False
    overwrite: bool = False
    prior_options: Mapping[str, Any] | None = None


_Options = TypeVar("_Options")


def split_options(
    cls: type[_Options], given: Mapping[str, Any], *, where: str, rest: bool = True
) -> tuple[_Options, dict[str, Any]]:
    """``(cls(**the given keys that are its fields), the other keys)``.

    With ``rest=False`` there may be no other keys: a TailorError names them (and the known
    options). With ``rest=True`` they are the algorithm's config fields, which
    :func:`make_config` checks.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    others = {k: v for k, v in given.items() if k not in names}
    if others and not rest:
        raise TailorError(
            f"{where}: unknown option(s) {', '.join(sorted(others))}; known: {', '.join(names)}"
        )
    return cls(**{k: v for k, v in given.items() if k in names}), others


CONFIGS: dict[str, type] = {
    "ppo": PPOConfig,
    "dqn": SoftDQNConfig,
    "sac": SACConfig,
    "mcts": MCTSConfig,
}


def config_flags(
    algo: str, argv: list[str], base: Mapping[str, Any] | None = None, prog: str = "tailor"
) -> dict[str, Any]:
    """Fields of ``algo``'s config dataclass (``ppo``, ``dqn``, ``sac``, ``mcts``, and
    ``lm-ppo`` / ``lm-dpo`` for the language-model loops) set on the command line, e.g.
    ``--num-epochs 3
    --hidden 32 32`` (every field is a flag, its docstring the help: parsed by ``tyro``, the
    library CleanRL uses for its configs). ``base`` holds the values other flags already set
    (they are the defaults shown); ``--help`` prints every field and exits.

    Returns:
        The fields given on the command line (even at their default value: a value the user
        typed is theirs, and defaults that tailor derives later, e.g. for a prior of unknown
        temperature, must not replace it) and those whose value differs from ``base`` / the
        dataclass default.
    """
    import tyro

    if algo in ("lm-ppo", "lm-dpo"):  # imported on use: the LM loops need the `lm` extra
        from tailor.algos.dpo import LMDPOConfig
        from tailor.algos.lm_ppo import LMPPOConfig

        cls = LMPPOConfig if algo == "lm-ppo" else LMDPOConfig
    else:
        check_algo(algo, tuple(CONFIGS))
        cls = CONFIGS[algo]
    known = {f.name for f in dataclasses.fields(cls)}
    start = {k: v for k, v in dict(base or {}).items() if k in known}
    if "hidden" in start:
        start["hidden"] = tuple(int(h) for h in start["hidden"])
    default = cls(**start)
    parsed = tyro.cli(cls, args=list(argv), default=default, prog=prog)
    typed = {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    return {
        f.name: getattr(parsed, f.name)
        for f in dataclasses.fields(cls)
        if f.name in typed or getattr(parsed, f.name) != getattr(default, f.name)
    }


def make_config(cls: type, steps: int | None, seed: int, overrides: Mapping[str, Any]) -> Any:
    """``cls(**overrides)`` with ``total_steps`` and ``seed``; unknown fields are an error."""
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise TailorError(
            f"unknown {cls.__name__} option(s) {', '.join(bad)}; known: {', '.join(sorted(fields))}"
        )
    kwargs = dict(overrides)
    if steps is not None and "total_steps" in fields:
        kwargs["total_steps"] = int(steps)
    kwargs["seed"] = int(seed)
    if "hidden" in kwargs:
        kwargs["hidden"] = _hidden(cls, kwargs["hidden"])
    return cls(**kwargs)  # the config checks every field (tailor.algos.configs)


def _hidden(cls: type, value: Any) -> tuple[int, ...]:
    """``hidden`` as a tuple of ints; a value that is not a list of integers is an error."""
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(h, int) and not isinstance(h, bool) for h in value
    ):
        raise TailorError(
            f"{cls.__name__}.hidden must be a list of positive integers, e.g. [64, 64], "
            f"got {value!r}"
        )
    return tuple(value)


def check_algo(algo: str, allowed: tuple[str, ...]) -> None:
    """Raise a TailorError naming the algorithms ``allowed`` here when ``algo`` is not one."""
    if algo not in allowed:
        raise TailorError(
            f"--algo {algo!r} is not available here; choose one of {', '.join(allowed)}"
        )


def check_run_arguments(
    where: str, seed: Any, prior: Any = None, prior_options: Any = None
) -> None:
    """The Python API's arguments that the command line checks in argparse: ``seed`` an int,
    ``prior`` (when given) a path, ``prior_options`` a mapping of known options.

    Raises:
        TailorError: naming ``where`` and the argument.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TailorError(f"{where}: seed must be an integer, got {seed!r}")
    if prior is not None and not isinstance(prior, (str, os.PathLike)):
        raise TailorError(
            f"{where}: prior must be a run directory or a policy file (str or Path), "
            f"got {type(prior).__name__} {prior!r}"[:200]
        )
    if prior_options is not None:
        check_options(prior_options, f"{where}: prior_options")


def check_steps(steps: int) -> int:
    """``steps`` when it is a positive integer; a TailorError otherwise."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise TailorError(f"steps must be a positive integer, got {steps!r}")
    return steps
