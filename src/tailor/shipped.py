"""Where the shipped priors are: ``priors/<name>`` paths (README, results, presets, the demo)
that work from a checkout and from an installed package alike.

In the repository the priors are the directory ``priors/`` at its root. A built package (wheel,
``pip install``) carries a copy in ``tailor/shipped_priors/`` (``setup.py`` copies it when the
package is built). :func:`find_prior` turns a ``priors/...`` path that does not exist where it
is given into the shipped copy, so that ``tailor demo`` or ``--prior priors/hopper`` work
outside the repository. Pure standard library.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PACKAGED_PRIORS", "REPOSITORY_PRIORS", "find_prior"]

# The copy inside an installed package, and the repository's own (a source checkout or an
# editable install run from another directory).
PACKAGED_PRIORS = Path(__file__).resolve().parent / "shipped_priors"
REPOSITORY_PRIORS = Path(__file__).resolve().parents[2] / "priors"


def find_prior(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` (relative to ``root`` when given) if it exists; else, for a relative path
    ``priors/<name>[/...]``, the shipped prior of that name (the package's copy, then the
    repository's); else ``path`` unchanged, for the caller's "does not exist" error. Other
    paths are never redirected: a missing prior of your own is an error, not a shipped one."""
    given = Path(path)
    here = Path(root) / given if root is not None else given
    if here.exists() or given.is_absolute() or given.parts[:1] != ("priors",):
        return here
    for base in (PACKAGED_PRIORS, REPOSITORY_PRIORS):
        candidate = base.joinpath(*given.parts[1:])
        if candidate.exists():
            return candidate
    return here
