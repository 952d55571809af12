"""Argument types of the command line: every numeric flag is checked when it is parsed.

Each function is an ``argparse`` ``type=``: it turns the text into a number or raises
:class:`argparse.ArgumentTypeError`, which argparse prints as ``tailor CMD: error: argument
--flag: ...`` with exit code 2. So a seed of ``2**70``, ``--examples -1`` or ``--cases-scale inf``
never reaches the code that would fail on it with a traceback, or silently misbehave.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

__all__ = [
    "INPUT_OPTIONS",
    "MAX_SEED",
    "add_overwrite",
    "check_output_arg",
    "check_output_dir_arg",
    "command_inputs",
    "count",
    "finite",
    "fraction",
    "names",
    "natural",
    "nonnegative",
    "positive",
    "prior_path",
    "seed",
    "seeds",
]

# Seeds go to numpy, torch and the envs (env i gets seed + i): 32 bits, as numpy's legacy seeding.
MAX_SEED = 2**32 - 1


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def seed(text: str) -> int:
    """A seed: an integer in ``[0, 2**32 - 1]``."""
    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"a seed must be an integer in [0, {MAX_SEED}], got {text!r}"
        )
    return value


def seeds(text: str) -> list[int]:
    """Comma-separated seeds, e.g. ``0,1,2``."""
    return [seed(part) for part in names(text)]


def positives(text: str) -> list[float]:
    """``"0.01,0.03,0.1"`` -> ``[0.01, 0.03, 0.1]``: a comma-separated list of numbers > 0."""
    return [positive(part) for part in text.split(",") if part.strip()]


def names(text: str) -> list[str]:
    """A comma-separated list of non-empty items, e.g. ``hopper-jump,ant-sideways``."""
    items = [part.strip() for part in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def count(text: str) -> int:
    """An integer >= 1 (steps, episodes, sizes)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def natural(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def finite(text: str) -> float:
    """Any finite number."""
    return _float(text)


def positive(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def nonnegative(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def prior_path(text: str) -> str:
    """A policy or prior path; ``priors/<name>`` also finds the shipped prior outside the
    repository (an installed package's copy, :func:`tailor.shipped.find_prior`)."""
    from pathlib import Path

    from tailor.shipped import find_prior

    found = find_prior(text)
    return text if found == Path(text) else str(found)


def fraction(text: str) -> float:
    """A number in ``[0, 1]``."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


# ---- outputs ------------------------------------------------------------------------------------

# The options (argparse dests) whose values are paths a command reads: the writer refuses them,
# and what tailor reads inside them, as outputs of the same command (tailor.output).
INPUT_OPTIONS = (
    "policy",
    "prior",
    "model",
    "tasks_file",
    "prior_normalizer",
    "preferences",
    "prompts_file",
    "rewards_file",
    "corpus",
    "dir",
    "targets",
    "base",
)


def command_inputs(args: argparse.Namespace) -> list[str]:
    """The paths the command of ``args`` reads (the values of :data:`INPUT_OPTIONS`)."""
    found: list[str] = []
    for name in INPUT_OPTIONS:
        value: Any = getattr(args, name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        # Only what exists: a name that is not a path (``--corpus names``) is nothing to protect.
        found.extend(str(v) for v in values if v is not None and str(v) and Path(v).exists())
    return found


def add_overwrite(p: argparse.ArgumentParser, what: str = "the output file") -> None:
    """``--overwrite``: replace an existing output file (refused without it)."""
    p.add_argument(
        "--overwrite", action="store_true", help=f"replace {what} if it exists (else refused)"
    )


def check_output_arg(args: argparse.Namespace, path: str | Path, what: str = "--json") -> Path:
    """:func:`tailor.output.check_output` of an output file named on the command line: not an
    input of the command, not an existing file unless ``--overwrite``, writable."""
    from tailor.output import check_output

    overwrite = bool(getattr(args, "overwrite", False))
    return check_output(path, inputs=command_inputs(args), overwrite=overwrite, what=what)


def check_output_dir_arg(args: argparse.Namespace, path: str | Path, what: str = "--out") -> Path:
    """:func:`tailor.output.check_output_tree` of an output directory named on the command line:
    not an input of the command, not inside one, not holding one where the run writes."""
    from tailor.output import check_output_tree

    return check_output_tree(path, command_inputs(args), what)
