"""Build hook: the package carries the repository's shipped priors (``priors/``) as
``tailor/shipped_priors/``, so that ``tailor demo`` works after ``pip install`` (see
:mod:`tailor.shipped`). Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PRIORS = Path(__file__).resolve().parent / "priors"


class BuildPyWithPriors(build_py):
    """``build_py`` plus a copy of ``priors/`` into the built ``tailor`` package."""

    def run(self) -> None:
        super().run()
        if PRIORS.is_dir():
            shutil.copytree(
                PRIORS, Path(self.build_lib) / "tailor" / "shipped_priors", dirs_exist_ok=True
            )


if __name__ == "__main__":  # setuptools' build backend runs this file as __main__
    setup(cmdclass={"build_py": BuildPyWithPriors})
