"""Rows of the files the Hugging Face ``datasets`` library writes, read with pyarrow alone.

``datasets`` itself is not a dependency (its ``huggingface-hub`` range excludes the one of the
locked ``transformers``); what it writes is plain Arrow, which pyarrow (the ``lm`` extra) reads:

* ``FILE.parquet`` (``Dataset.to_parquet``, the Hub's parquet exports);
* ``FILE.arrow``: an Arrow IPC stream (what ``save_to_disk`` writes in its
  ``data-00000-of-0000N.arrow`` shards) or an Arrow IPC file (Feather v2);
* a ``Dataset.save_to_disk`` directory: ``state.json`` lists the shards in
  ``_data_files`` (``[{"filename": "data-00000-of-00002.arrow"}, ...]``), read in that order,
  so row ``i`` is ``load_from_disk(DIR)[i]``; ``dataset_info.json`` is not needed;
* a ``DatasetDict.save_to_disk`` directory: ``dataset_dict.json`` is ``{"splits": [...]}``
  and each split is a ``save_to_disk`` directory ``DIR/<split>``.

Only JSON and Arrow data are read; nothing is unpickled. Every problem is a
:class:`~tailor.errors.TailorError` naming the file and what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.paths import check_input_path

__all__ = ["DEFAULT_SPLIT", "TABLE_SUFFIXES", "is_table_path", "table_rows"]

TABLE_SUFFIXES = (".parquet", ".arrow")
DEFAULT_SPLIT = "train"
_EXPECTED_DIR = (
    "expected a `datasets` save_to_disk directory (state.json naming its data-*.arrow shards) "
    "or a DatasetDict one (dataset_dict.json naming its splits)"
)


def is_table_path(path: str | Path) -> bool:
    """Whether ``path`` names a table to read here: a ``.parquet`` / ``.arrow`` file or a
    directory (which must then be a ``save_to_disk`` one)."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES or Path(path).is_dir()


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise TailorError(
            "reading .parquet / .arrow / `datasets` save_to_disk files needs pyarrow: "
            "pip install 'tailor-rl[lm]' (or pip install pyarrow)"
        ) from None
    return pyarrow


def _read_json(path: Path, what: str) -> Any:
    check_input_path(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TailorError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TailorError(f"{what} {str(path)!r} is not readable JSON: {exc}") from None


def _shards(directory: Path, split: str | None, what: str) -> list[Path]:
    """The ``.arrow`` shards of a ``save_to_disk`` directory (of ``split`` for a DatasetDict)."""
    if (directory / "dataset_dict.json").exists():
        index = _read_json(directory / "dataset_dict.json", f"{what}'s DatasetDict index")
        splits = index.get("splits") if isinstance(index, dict) else None
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise TailorError(
                f"{what} {str(directory)!r}: dataset_dict.json must be "
                f'{{"splits": ["train", ...]}}, got {index!r}'
            )
        split = DEFAULT_SPLIT if split is None else split
        if split not in splits or Path(split).name != split:  # a name, not a path
            raise TailorError(
                f"{what} {str(directory)!r} is a DatasetDict without the split {split!r}; "
                f"its splits: {', '.join(splits) or '(none)'} (pick one as the split; on the "
                "command line: --prompts-split / --preferences-split)"
            )
        directory = directory / split
        if not directory.is_dir():
            raise TailorError(f"{what} {str(directory)!r}: the split directory is missing")
    elif split is not None:
        raise TailorError(
            f"{what} {str(directory)!r}: a split ({split!r}) is for a DatasetDict directory "
            "(with dataset_dict.json); this is not one"
        )
    if not (directory / "state.json").exists():
        raise TailorError(f"{what} {str(directory)!r}: {_EXPECTED_DIR}; it has no state.json")
    state = _read_json(directory / "state.json", f"{what}'s state.json")
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list):
        raise TailorError(
            f"{what} {str(directory / 'state.json')!r}: expected "
            '{"_data_files": [{"filename": "data-00000-of-00001.arrow"}, ...], ...}'
        )
    shards = []
    for entry in files:
        name = entry.get("filename") if isinstance(entry, dict) else None
        # A plain name inside the directory: state.json must not lead the reader elsewhere.
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise TailorError(
                f"{what} {str(directory / 'state.json')!r}: each _data_files entry must be "
                f'{{"filename": "<a file name in the directory>"}}, got {entry!r}'
            )
        shards.append(directory / name)
    return shards


def _columns(path: Path, reader: Any, columns: Sequence[str], what: str) -> dict[str, list[Any]]:
    """``{column: Python values}`` of the table of ``reader`` (a pyarrow IPC reader or a
    ``ParquetFile``)."""
    parquet = not hasattr(reader, "read_all")
    names = (reader.schema_arrow if parquet else reader.schema).names
    for col in columns:
        if col not in names:
            raise TailorError(
                f"{what} {str(path)!r} has no column {col!r}; its columns: "
                f"{', '.join(names) or '(none)'}"
            )
    if parquet:  # parquet reads only the columns asked for
        table = reader.read(columns=list(columns))
    else:  # an IPC stream or file holds whole record batches: read, then keep the columns
        table = reader.read_all().select(list(columns))
    return {col: table.column(col).to_pylist() for col in columns}


def _read_file(path: Path, columns: Sequence[str], what: str) -> dict[str, list[Any]]:
    """The ``columns`` of one ``.parquet`` or ``.arrow`` file (IPC file, else IPC stream)."""
    pa = _pyarrow()
    check_input_path(path, what)
    if not path.exists():
        raise TailorError(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise TailorError(f"{what} {str(path)!r} is not a file")
    parquet = path.suffix.lower() == ".parquet"
    try:
        if parquet:
            with pa.parquet.ParquetFile(str(path)) as reader:
                return _columns(path, reader, columns, what)
        with pa.memory_map(str(path)) as source:
            try:
                reader = pa.ipc.open_file(source)
            except pa.ArrowInvalid:  # datasets' shards are streams (no file footer)
                source.seek(0)
                reader = pa.ipc.open_stream(source)
            return _columns(path, reader, columns, what)
    except (pa.ArrowException, OSError) as exc:
        kind = "a Parquet file" if parquet else "an Arrow IPC stream or file"
        raise TailorError(
            f"{what} {str(path)!r} is not {kind}: {type(exc).__name__}: {exc}"
        ) from None


def table_rows(
    path: str | Path, columns: Sequence[str], what: str, split: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, {column: value})`` for each row of a ``.parquet`` / ``.arrow`` file or a
    ``save_to_disk`` directory, in the dataset's order; ``where`` is ``PATH: row i`` (0-based,
    ``i`` as in ``dataset[i]``). Values are Python objects (``to_pylist``: a string, a list of
    ``{"role", "content"}`` dicts for a list of structs, None for a null).

    Args:
        path: the file or directory.
        columns: the columns to read.
        what: what the file is, for messages (e.g. ``"prompts file"``).
        split: the split of a DatasetDict directory (None: ``"train"``); refused elsewhere.

    Raises:
        TailorError: pyarrow missing, a path that is missing or not such a file or directory,
            a column missing (the message lists those present), a split missing (the message
            lists those present).
    """
    p = Path(path)
    check_input_path(p, what)
    if p.is_dir():
        files = _shards(p, split, what)
    elif split is not None:
        raise TailorError(
            f"{what} {str(path)!r}: a split ({split!r}) is for a DatasetDict directory; "
            "this is a single file"
        )
    else:
        files = [p]
    i = 0
    for f in files:
        data = _read_file(f, columns, what)
        for values in zip(*(data[c] for c in columns), strict=True):
            yield f"{path}: row {i}", dict(zip(columns, values, strict=True))
            i += 1
