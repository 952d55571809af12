"""``metrics.csv``: appended and flushed row by row; trimmed atomically on resume."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tailor.errors import TailorError
from tailor.output import publishing
from tailor.rundir.faults import fault

__all__ = ["MetricsLog"]


class MetricsLog:
    """``metrics.csv``: rows appended and flushed one by one (readable while training), never
    truncated or rewritten in place.

    Opened fresh it starts a file with just the header; opened with ``resume_at`` it keeps the rows
    whose ``key`` column is ``<= resume_at`` (rows after the checkpoint are redone by the resumed
    run) and drops a torn last line. Both go through a temporary file and ``os.replace``, so a
    kill at any moment leaves either the old file or the new one, never an empty one.
    """

    def __init__(
        self,
        path: str | Path,
        fields: Sequence[str],
        *,
        resume_at: float | None = None,
        key: str = "iteration",
    ) -> None:
        self.path = Path(path)
        self.fields = tuple(fields)
        if key not in self.fields:
            raise TailorError(f"MetricsLog key {key!r} is not one of the fields {self.fields}")
        kept = []
        if resume_at is not None and self.path.is_file():
            kept = self._rows_upto(resume_at, key)
        self._replace_with(kept)
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fields, restval="")

    def _rows_upto(self, resume_at: float, key: str) -> list[dict[str, str]]:
        text = self.path.read_text(encoding="utf-8", errors="replace")
        if text and not text.endswith("\n"):
            # A torn last row (a write cut short): its truncated numbers could pass as an
            # earlier step, so it is dropped, not parsed.
            text = text[: text.rfind("\n") + 1]
        kept = []
        for row in csv.DictReader(io.StringIO(text, newline="")):
            try:
                value = float(row.get(key) or "nan")
            except ValueError:
                continue
            if value <= resume_at:
                kept.append({f: row.get(f) or "" for f in self.fields})
        return kept

    def _replace_with(self, rows: list[dict[str, str]]) -> None:
        with publishing(self.path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields, restval="")
                writer.writeheader()
                writer.writerows(rows)
            fault("metrics-staged")

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (unknown keys are an error, missing ones are left empty) and flush it,
        so a kill right after loses nothing."""
        self._writer.writerow(dict(row))
        self._file.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
