"""Validation of the JSON metadata tailor reads back: checkpoint headers, manifests, run markers.

A checkpoint's JSON header comes from a file anyone can edit, so nothing in it is trusted before
:func:`validate_meta` has checked it against a small schema (types, ranges, list element types,
nested objects, a maximum nesting depth). Everything that is wrong becomes a
:class:`~tailor.errors.TailorError` naming the file and the field, never a ``KeyError``,
``TypeError`` or ``RecursionError`` further down.

:func:`parse_meta` turns the raw header text into a dict. It bounds the nesting depth *before*
calling :func:`json.loads`: CPython's JSON decoder recurses once per nesting level and raises
``RecursionError`` (or, with a raised recursion limit, can exhaust the C stack) on a header such as
200 000 ``[`` characters.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tailor.errors import TailorError

__all__ = [
    "BASE_SCHEMA",
    "MANIFEST_SCHEMA",
    "MAX_DEPTH",
    "POLICY_SCHEMA",
    "RQL_POLICY_SCHEMA",
    "RUN_MARKER_SCHEMA",
    "TRAINER_SCHEMA",
    "Field",
    "json_depth",
    "parse_meta",
    "schema_for",
    "validate_meta",
]

# Deepest nesting any tailor file needs is 4 or 5 (trainer header -> optimizer -> param_groups ->
# group -> params); 64 leaves room for user additions and stays far below Python's recursion limit.
MAX_DEPTH = 64
# Integers in metadata are counts, sizes and seeds: anything beyond this is corruption, and
# bounding them keeps e.g. ``Actor(obs_dim=10**30)`` from ever being attempted.
_INT_LIMIT = 2**63 - 1

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

Number = (int, float)


@dataclass(frozen=True)
class Field:
    """What one metadata field may hold.

    Attributes:
        types: allowed Python types after ``json.loads`` (``bool`` is never accepted where only
            ``int`` is allowed, although it is a subclass of ``int``).
        required: the field must be present.
        nullable: ``None`` (JSON ``null``) is accepted.
        min, max: inclusive range for numbers (NaN and infinities always fail a range).
        items: allowed element types of a list (``None``: any JSON value).
        fields: the schema of a nested object (``None``: any JSON object).
        choices: the allowed values, if restricted.
    """

    types: tuple[type, ...]
    required: bool = False
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    items: tuple[type, ...] | None = None
    fields: Mapping[str, Field] | None = None
    choices: tuple[Any, ...] | None = None


Schema = Mapping[str, Field]


def _count(lo: float = 0, hi: float = _INT_LIMIT, **kw: Any) -> Field:
    return Field((int,), min=lo, max=hi, **kw)


_TEXT = Field((str,))
_NUMBERS = Field((list,), items=Number)
_OBJECT = Field((dict,))

BASE_SCHEMA: Schema = {
    "format": Field((str,), required=True),
    "format_version": _count(0, 10**6),
    "tailor_version": _TEXT,
}

_ARCHITECTURE: Schema = {
    "hidden": Field((list,), required=True, items=(int,)),
    "activation": Field((str,), required=True),
    "std_type": Field((str,), required=True),
    # An actor whose mean is squashed into these bounds (tailor.nets.Actor's action_bounds).
    "action_bounds": Field(
        (dict,),
        fields={
            "low": Field((list,), required=True, items=Number),
            "high": Field((list,), required=True, items=Number),
        },
    ),
}

POLICY_SCHEMA: Schema = {
    **BASE_SCHEMA,
    "task": Field((str,), nullable=True),
    "env_id": Field((str,), nullable=True),
    "obs_dim": _count(1, 10**7, required=True),
    "act_dim": _count(1, 10**7, required=True),
    "action_low": _NUMBERS,
    "action_high": _NUMBERS,
    "architecture": Field((dict,), required=True, fields=_ARCHITECTURE),
    "normalizer": Field(
        (dict,),
        required=True,
        fields={"eps": Field(Number, required=True, min=0.0, max=1.0), "count": Field(Number)},
    ),
    "method": _TEXT,
    "coefficients": _OBJECT,
    "steps": _count(),
    "iteration": _count(),
    "seed": Field((int,), min=-_INT_LIMIT, max=_INT_LIMIT, nullable=True),
    "prior": Field((dict,), nullable=True),
}

TRAINER_SCHEMA: Schema = {
    **BASE_SCHEMA,
    "iteration": _count(required=True),
    "steps": _count(required=True),
    "learning_rate": Field(Number, required=True, min=0.0, max=1e6),
    "kl_scale": Field(Number, min=0.0, max=1e12),
    "config": Field((dict,), required=True),
    "task": Field((str,), required=True),
    "method": Field((str,), required=True),
    "coefficients": Field((dict,), required=True),
    "optimizer": Field(
        (dict,),
        required=True,
        fields={"param_groups": Field((list,), required=True, items=(dict,)), "scalars": _OBJECT},
    ),
    # PPO's loop state for an exact resume (env state, episode window); absent in older files
    "loop": Field((dict,), nullable=True),
}

RQL_POLICY_SCHEMA: Schema = {
    **BASE_SCHEMA,
    "algo": Field((str,), required=True),
    "task": _TEXT,
    "env_id": Field((str,), nullable=True),
    "method": _TEXT,
    "coefficients": Field((dict,), nullable=True),
    "obs_dim": _count(1, 10**7),
    "n_actions": _count(1, 10**7),
    "act_dim": _count(1, 10**7),
    "hidden": Field((list,), items=(int,)),
    "config": Field((dict,), nullable=True),
    "steps": _count(),
    "seed": Field((int,), min=-_INT_LIMIT, max=_INT_LIMIT, nullable=True),
}

MANIFEST_SCHEMA: Schema = {
    **BASE_SCHEMA,
    "step": _count(required=True),
    "directory": Field((str,), required=True),
    "files": Field((dict,), required=True),
}

RUN_MARKER_SCHEMA: Schema = {
    **BASE_SCHEMA,
    "kind": Field((str,), required=True),
}

_SCHEMAS: dict[str, Schema] = {
    "tailor-policy": POLICY_SCHEMA,
    "tailor-trainer": TRAINER_SCHEMA,
    "tailor-rql-policy": RQL_POLICY_SCHEMA,
    "tailor-checkpoint": MANIFEST_SCHEMA,
    "tailor-run": RUN_MARKER_SCHEMA,
}


def schema_for(fmt: str) -> Schema:
    """The schema of a tailor file format (``"tailor-policy"``, ...); :data:`BASE_SCHEMA` for
    formats without a specific one."""
    return _SCHEMAS.get(fmt, BASE_SCHEMA)


def json_depth(text: str) -> int:
    """The deepest bracket nesting of JSON ``text``, computed without recursion.

    Strings are removed first so that brackets inside them do not count. Runs at regex speed,
    so even a multi-megabyte header is checked in milliseconds.
    """
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not skeleton:
        return 0
    return max(0, *itertools.accumulate(_DEPTH_STEP[c] for c in skeleton))


def parse_meta(raw: str | bytes, where: str, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Raw JSON text of a header -> a dict; bounded nesting, never ``RecursionError``.

    Raises:
        TailorError: not valid JSON, nested deeper than ``max_depth``, or not a JSON object.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TailorError(f"{where}: the tailor metadata is not UTF-8 text") from None
    if json_depth(raw) > max_depth:
        raise TailorError(
            f"{where}: the tailor metadata is nested deeper than {max_depth} levels "
            "(corrupted or crafted file)"
        )
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: belt and braces, see above
        raise TailorError(f"{where}: the tailor metadata is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise TailorError(f"{where}: the tailor metadata is a JSON {_kind(obj)}, not an object")
    return obj


def validate_meta(
    meta: Any, schema: Schema, where: str = "metadata", max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """Check ``meta`` against ``schema``; returns ``meta`` unchanged if it is valid.

    Fields the schema does not name are allowed (newer tailor versions may add some) but still
    count for the nesting-depth bound.

    Raises:
        TailorError: naming ``where`` and the first offending field (``a.b[2]`` style path).
    """
    if not isinstance(meta, dict):
        raise TailorError(f"{where}: the metadata is a JSON {_kind(meta)}, not an object")
    depth = _depth(meta)
    if depth > max_depth:
        raise TailorError(f"{where}: the metadata is nested deeper than {max_depth} levels")
    _check_object(meta, schema, where, "")
    return meta


def _depth(obj: Any) -> int:
    """Nesting depth of a parsed JSON value, iteratively (a deep value must not recurse here)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _check_object(obj: dict[str, Any], schema: Schema, where: str, prefix: str) -> None:
    for name, spec in schema.items():
        path = f"{prefix}{name}"
        if name not in obj:
            if spec.required:
                raise TailorError(f"{where}: the metadata lacks the field {path!r}")
            continue
        _check_value(obj[name], spec, where, path)


def _check_value(value: Any, spec: Field, where: str, path: str) -> None:
    if value is None:
        if spec.nullable:
            return
        raise TailorError(f"{where}: field {path!r} is null, expected {_names(spec.types)}")
    if not _is_instance(value, spec.types):
        raise TailorError(
            f"{where}: field {path!r} is a JSON {_kind(value)} ({_short(value)}), "
            f"expected {_names(spec.types)}"
        )
    if spec.choices is not None and value not in spec.choices:
        raise TailorError(
            f"{where}: field {path!r} is {_short(value)}, expected one of "
            f"{', '.join(map(repr, spec.choices))}"
        )
    if isinstance(value, (int, float)) and (spec.min is not None or spec.max is not None):
        lo = -math.inf if spec.min is None else spec.min
        hi = math.inf if spec.max is None else spec.max
        if not lo <= value <= hi:  # also false for NaN
            raise TailorError(
                f"{where}: field {path!r} is {_short(value)}, outside [{lo:g}, {hi:g}]"
            )
    if isinstance(value, list) and spec.items is not None:
        for i, item in enumerate(value):
            if not _is_instance(item, spec.items) or (
                isinstance(item, float) and not math.isfinite(item)
            ):
                raise TailorError(
                    f"{where}: {path}[{i}] is {_short(item)}, expected {_names(spec.items)}"
                )
    if isinstance(value, dict) and spec.fields is not None:
        _check_object(value, spec.fields, where, f"{path}.")


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
    # JSON true/false load as bool, a subclass of int: ``"steps": true`` must not pass as 1.
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _names(types: tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        bool: "a boolean",
    }
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value)
    except (ValueError, TypeError, RecursionError):
        text = repr(type(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
