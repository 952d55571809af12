"""Text corpora for ``tailor lm pretrain``: one line of text = one training sequence.

``names`` is the default corpus: the US census (1990) first-name lists shipped inside the ``names``
package of PyPI (``dist.male.first`` and ``dist.female.first``, 1219 + 4275 names), lower-cased
and de-duplicated, 5163 distinct names of 2 to 11 letters a-z. Nothing is downloaded at run time:
the lists are data files of the installed package (``pip install 'tailor-rl[lm]'``). Any other
value is read as a UTF-8 text file with one sequence per line (blank lines skipped).
"""

from __future__ import annotations

from pathlib import Path

from tailor.errors import TailorError

__all__ = ["BUILTIN_CORPORA", "load_corpus", "names_corpus"]

BUILTIN_CORPORA = ("names",)

_NAME_FILES = ("dist.male.first", "dist.female.first")


def names_corpus() -> list[str]:
    """The census first names of the ``names`` package, lower-cased, distinct, sorted.

    Raises:
        TailorError: the ``names`` package (part of the ``lm`` extra) is not installed.
    """
    try:
        import names  # the package only ships data files and a random-name helper
    except ImportError:
        raise TailorError(
            "the 'names' corpus needs the 'names' package: pip install 'tailor-rl[lm]' "
            "(or pass --corpus FILE.txt with one sequence per line)"
        ) from None
    root = Path(names.__file__).parent
    out: set[str] = set()
    for fname in _NAME_FILES:
        path = root / fname
        if not path.is_file():
            raise TailorError(f"the installed 'names' package lacks its data file {fname}")
        for line in path.read_text(encoding="ascii").splitlines():
            # Each line: NAME  frequency-%  cumulative-%  rank.
            if line.strip():
                out.add(line.split()[0].lower())
    return sorted(out)


def load_corpus(spec: str | Path) -> list[str]:
    """Lines of a corpus: a built-in name (``names``) or a UTF-8 text file, one sequence per line.

    Trailing whitespace and newline characters are stripped from each line; blank lines are
    skipped.

    Raises:
        TailorError: the file does not exist, is not UTF-8 text or holds no non-blank line.
    """
    if str(spec) == "names":
        return names_corpus()
    path = Path(spec)
    if not path.is_file():
        raise TailorError(
            f"corpus {str(spec)!r} is neither a built-in corpus ({', '.join(BUILTIN_CORPORA)}) "
            "nor an existing text file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TailorError(f"corpus file {str(spec)!r} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise TailorError(f"cannot read corpus file {str(spec)!r}: {exc}") from None
    lines = [line.rstrip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise TailorError(f"corpus file {str(spec)!r} holds no non-blank line")
    return lines
