"""The ``tailor`` command line.

Each group of subcommands lives in its own module of this package and exposes
``register(subparsers) -> None``, adding its subcommands with ``set_defaults(func=...)``; ``func``
takes the parsed namespace and returns an exit code. Bad input raises
:class:`tailor.errors.TailorError`, which :func:`main` prints as ``error: ...`` with exit code 2.

:func:`main` is the one error boundary: besides ``TailorError`` it turns the errors a user's
environment or files cause (``OSError`` such as a full disk or a permission problem,
``RecursionError`` / ``OverflowError`` / ``ValueError`` from malformed input) into
``error: ...`` and exit code 2, never a traceback (set ``TAILOR_TRACEBACK=1`` to see one).
``KeyboardInterrupt`` exits with 130 (143 / 129 when SIGTERM / SIGHUP stopped a training
loop); a closed stdout pipe (``tailor tasks | head -1``) exits quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from tailor import __version__
from tailor.errors import TailorError, describe_os_error

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
    args, extra = parser.parse_known_args(argv)
    # Only `train` / `customize` take more flags: their algorithm's config fields (tyro).
    if extra and not getattr(args, "config_flags", False):
        parser.parse_args(argv)  # argparse's own "unrecognized arguments" error, exit 2
    args.extra = extra
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        # Flush inside the boundary: piped output is block-buffered, so a closed pipe would
        # otherwise surface only at interpreter exit, as "Exception ignored ... BrokenPipeError".
        sys.stdout.flush()
        return code
    except TailorError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt as exc:
        # A training loop stopped by Ctrl-C / SIGTERM / SIGHUP says where its final checkpoint
        # is; the exit code is 128 + that signal (130, 143, 129), as for a killed process.
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except BrokenPipeError:
        return _broken_pipe()
    except OSError as exc:
        return _fail(describe_os_error(exc), exc)
    except RecursionError as exc:
        return _fail(f"input nested too deeply to process ({exc})", exc)
    except OverflowError as exc:
        return _fail(f"a number is out of range ({exc})", exc)
    except ValueError as exc:  # e.g. malformed metadata a loader did not turn into TailorError
        return _fail(f"invalid value: {exc}", exc)


def _fail(message: str, exc: BaseException | None = None) -> int:
    """Print ``error: message`` (plus the traceback if ``TAILOR_TRACEBACK`` is set); exit code 2."""
    if exc is not None and os.environ.get("TAILOR_TRACEBACK"):
        import traceback

        traceback.print_exception(exc)
    print(f"error: {message}", file=sys.stderr)
    return 2


def _broken_pipe() -> int:
    """The reader of stdout went away (``| head``). As the Python docs recommend (signal module,
    "Note on SIGPIPE"): point stdout at devnull so the interpreter's final flush cannot raise
    again, and exit with 1 and no message: the reader asked for no more output."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout already closed or not a real file
        pass
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
