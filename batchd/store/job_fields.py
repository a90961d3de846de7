"""Which fields of a job a transition may set, checked and normalised the way storage reads
them back (``rules.transitioned`` uses ``checked_fields``; pure)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from batchd.errors import StoreError
from batchd.models import Job, RequestCounts, ResultState


def _json_copy(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"value is not canonical JSON: {exc}") from exc


JOB_KEYS = frozenset(
    {"id", "submission_id", "chunk_index", "state", "owner", "lease_until", "version"}
)
JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job)) - JOB_KEYS
_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float)}


def _field_kinds() -> dict[str, tuple[tuple[type, ...], bool]]:
    """For plain ``str``/``int``/``float`` (optionally ``| None``) fields: types and nullability."""
    kinds: dict[str, tuple[tuple[type, ...], bool]] = {}
    for f in dataclasses.fields(Job):
        parts = [p.strip() for p in str(f.type).split("|")]
        if parts[0] in _SCALARS and f.name in JOB_FIELDS:
            kinds[f.name] = (_SCALARS[parts[0]], "None" in parts[1:])
    return kinds


_KINDS = _field_kinds()


def _checked(name: str, value: Any) -> Any:
    if name not in JOB_FIELDS:
        raise StoreError(f"job field {name!r} cannot be set by a transition")
    if name == "result_state":
        return ResultState(value)
    if name == "counts":
        if not isinstance(value, RequestCounts):
            raise StoreError("job field 'counts' must be a RequestCounts")
        return value
    if name == "errors":
        errors = _json_copy(list(value))
        if not all(isinstance(e, dict) for e in errors):
            raise StoreError("job field 'errors' must hold dicts")
        return tuple(errors)
    if name == "cancel_requested":
        return bool(value)
    types, nullable = _KINDS[name]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        raise StoreError(f"job field {name!r} has the wrong type: {type(value).__name__}")
    return float(value) if float in types and isinstance(value, int | float) else value


def checked_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` validated and normalised the way storage would read them back."""
    try:
        return {name: _checked(name, value) for name, value in fields.items()}
    except ValueError as exc:
        raise StoreError(f"invalid job field: {exc}") from exc
