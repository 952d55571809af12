"""Config changes on resume: which saved fields a resumed run would change, and the error."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tailor.errors import TailorError

__all__ = ["config_change_error", "config_diff"]


def config_diff(saved: Mapping[str, Any], given: Mapping[str, Any], mutable: set[str]) -> list[str]:
    """The fields (in ``given``'s order, then ``saved``-only ones) whose values differ between the
    saved and the given config, ignoring the ``mutable`` ones (e.g. ``total_steps``).

    Values are compared in their JSON form: a saved ``[64, 64]`` equals a given ``(64, 64)``.
    A field present on one side only counts as a difference.
    """
    names = list(dict.fromkeys([*given, *saved]))
    return [n for n in names if n not in mutable and _json_form(saved, n) != _json_form(given, n)]


_MISSING = object()


def _json_form(config: Mapping[str, Any], name: str) -> Any:
    if name not in config:
        return _MISSING
    try:
        return json.loads(json.dumps(config[name]))
    except (TypeError, ValueError):
        return config[name]


def config_change_error(
    run_dir: str | Path, saved: Mapping[str, Any], given: Mapping[str, Any], fields: Sequence[str]
) -> TailorError:
    """The TailorError for resuming ``run_dir`` with a changed config (``fields`` from
    :func:`config_diff`), naming each field with the given and the saved value."""

    def show(config: Mapping[str, Any], name: str) -> str:
        return repr(config[name]) if name in config else "not set"

    changes = ", ".join(f"{n}={show(given, n)} (saved {show(saved, n)})" for n in fields)
    return TailorError(
        f"cannot resume {str(run_dir)!r} with a different config: {changes}; resume with the "
        "saved settings or start a new run with another --out"
    )
