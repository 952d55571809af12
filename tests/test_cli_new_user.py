"""The command line as a new user meets it: a fast ``--help``, default ``--steps`` and ``--out``,
``--algo`` read from the prior, ``tailor plot RUN``, the slow-path notice, the shipped priors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tailor.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ---- `tailor --help` imports no heavy library ---------------------------------------------------

HEAVY = ("torch", "gymnasium", "transformers", "matplotlib", "tyro")


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    script = (
        "import sys\n"
        "from tailor.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out, out


def test_prior_formats_match_the_detector() -> None:
    from tailor.cli.rl import prior_formats
    from tailor.priors.detect import FORMATS

    assert prior_formats() == FORMATS


def test_export_names_still_importable() -> None:
    from tailor.cli import export, exporter

    assert export.export_policy is exporter.export_policy
    assert export.DeterministicPolicy is exporter.DeterministicPolicy
