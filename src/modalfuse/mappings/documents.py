"""Check a document's fields against its schema before anything is encoded or written.

Every error is an `InvalidDocument` whose `field` names the offending key, so a dead-lettered
message says exactly what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from modalfuse.errors import InvalidDocument
from modalfuse.mappings.schema import (
    DateField,
    FieldSpec,
    ImageField,
    KeywordField,
    NumberField,
    Schema,
    TextField,
    VectorField,
)

MAX_TEXT_CHARS = 100_000
MAX_KEYWORD_CHARS = 1024
MAX_KEYWORD_VALUES = 256
MAX_IMAGE_REF_CHARS = 16 * 1024 * 1024  # base64 of the largest accepted image, with margin
_INT_RANGE = {"integer": 2**31, "long": 2**63}


def validate_fields(
    schema: Schema, fields: Mapping[str, Any], *, prefix: str = "fields"
) -> dict[str, Any]:
    """Return the fields normalised (dates to UTC ISO-8601); raise on the first bad one."""
    by_name = {f.name: f for f in schema.fields}
    out: dict[str, Any] = {}
    for key, value in fields.items():
        where = f"{prefix}.{key}"
        spec = by_name.get(key)
        if spec is None:
            raise InvalidDocument(f"not a field of index {schema.name!r}", field=where)
        if value is None:
            continue
        out[key] = _check(spec, value, where)
    return out


def _check(spec: FieldSpec, value: Any, where: str) -> Any:
    if isinstance(spec, VectorField):
        raise InvalidDocument(
            "vector fields are computed by the encoders; do not send them", field=where
        )
    if isinstance(spec, TextField):
        return _text(value, where, MAX_TEXT_CHARS)
    if isinstance(spec, KeywordField):
        if isinstance(value, list):
            if not spec.multi:
                raise InvalidDocument("takes one value, got a list", field=where)
            if len(value) > MAX_KEYWORD_VALUES:
                raise InvalidDocument(f"more than {MAX_KEYWORD_VALUES} values", field=where)
            return [_text(v, f"{where}[{i}]", MAX_KEYWORD_CHARS) for i, v in enumerate(value)]
        text = _text(value, where, MAX_KEYWORD_CHARS)
        return [text] if spec.multi else text
    if isinstance(spec, NumberField):
        return _number(spec, value, where)
    if isinstance(spec, DateField):
        return _date(value, where)
    if isinstance(spec, ImageField):
        return _text(value, where, MAX_IMAGE_REF_CHARS)
    raise AssertionError(f"unhandled field type {spec!r}")  # pragma: no cover


def _text(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidDocument(f"expected a string, got {type(value).__name__}", field=where)
    if len(value) > limit:
        raise InvalidDocument(f"longer than {limit} characters ({len(value)})", field=where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidDocument(f"not valid Unicode text ({e.reason})", field=where) from e
    return value


def _number(spec: NumberField, value: Any, where: str) -> int | float:
    # bool is an int in Python; `true` for a price is a producer bug, not the number 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidDocument(f"expected a number, got {type(value).__name__}", field=where)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidDocument(f"must be finite, got {value}", field=where)
    if spec.number_type in _INT_RANGE:
        if isinstance(value, float) and not value.is_integer():
            raise InvalidDocument(f"expected an integer, got {value}", field=where)
        bound = _INT_RANGE[spec.number_type]
        if not -bound <= int(value) < bound:
            raise InvalidDocument(f"out of range for {spec.number_type}", field=where)
        return int(value)
    return float(value)


def _date(value: Any, where: str) -> str:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as e:
            raise InvalidDocument(f"not an ISO-8601 date: {value!r}", field=where) from e
    else:
        raise InvalidDocument(
            f"expected an ISO-8601 string, got {type(value).__name__}", field=where
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat()
