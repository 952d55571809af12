"""The ``tailor`` command line.

Each group of subcommands lives in its own module of this package and exposes
``register(subparsers) -> None``, adding its subcommands with ``set_defaults(func=...)``; ``func``
takes the parsed namespace and returns an exit code. Bad input raises
:class:`tailor.errors.TailorError`, which :func:`main` prints as ``error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tailor import __version__
from tailor.errors import TailorError

# Subcommand modules, in the order their commands are listed in `tailor --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "tailor.cli.demo",
    "tailor.cli.tabular",
    "tailor.cli.rl",
    "tailor.cli.lm",
    "tailor.cli.experiments",
    "tailor.cli.video",
    "tailor.cli.inspect",
    "tailor.cli.export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailor",
        description="Policy customization: adapt a prior policy to an add-on reward.",
    )
    parser.add_argument("--version", action="version", version=f"tailor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TailorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
