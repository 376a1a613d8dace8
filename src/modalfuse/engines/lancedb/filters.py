"""Compile typed filters to LanceDB (DataFusion SQL) predicates, injection-safe.

LanceDB's `where` takes a SQL string and has no bound parameters, so safety comes from
construction: column names must be known columns of the table and are quoted as identifiers;
values are rendered from their Python type only (strings with quotes doubled, numbers through
`repr` of a finite float or int, datetimes as typed timestamp literals). Nothing a user typed
ever reaches the SQL text unescaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pyarrow as pa

from modalfuse.engines.filters import Exists, Filter, Range, Scalar, Term, Terms
from modalfuse.errors import InvalidInput

_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def identifier(name: str, columns: Mapping[str, pa.DataType]) -> str:
    if name not in columns:
        raise InvalidInput(f"unknown column {name!r}", field="filters.field")
    return "`" + name.replace("`", "``") + "`"


def literal(value: Scalar | datetime) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"filter value must be finite, got {value}", field="filters.value")
        return repr(float(value))
    if isinstance(value, datetime):
        ts = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return f"arrow_cast('{ts.strftime('%Y-%m-%dT%H:%M:%S.%f')}', 'Timestamp(Microsecond, Some(\"UTC\"))')"
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput("filter value contains a NUL character", field="filters.value")
        return "'" + value.replace("'", "''") + "'"
    raise InvalidInput(
        f"unsupported filter value type {type(value).__name__}", field="filters.value"
    )


def _is_list(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_list(dtype) or pa.types.is_large_list(dtype))


def predicate(flt: Filter, columns: Mapping[str, pa.DataType]) -> str:
    col = identifier(flt.field, columns)
    multi = _is_list(columns[flt.field])
    if isinstance(flt, Term):
        sql = (
            f"array_has({col}, {literal(flt.value)})" if multi else f"{col} = {literal(flt.value)}"
        )
    elif isinstance(flt, Terms):
        values = ", ".join(literal(v) for v in flt.values)
        sql = f"array_has_any({col}, make_array({values}))" if multi else f"{col} IN ({values})"
    elif isinstance(flt, Range):
        sql = " AND ".join(f"{col} {_OPS[op]} {literal(v)}" for op, v in flt.bounds())
    elif isinstance(flt, Exists):
        sql = f"({col} IS NOT NULL AND array_length({col}) > 0)" if multi else f"{col} IS NOT NULL"
    else:  # pragma: no cover
        raise AssertionError(f"unhandled filter {flt!r}")
    if not flt.negate:
        return f"({sql})"
    # SQL's NOT over NULL is NULL (no match); OpenSearch's must_not keeps documents that lack
    # the field, so do the same.
    return f"({col} IS NULL OR NOT ({sql}))"


def where(filters: Sequence[Filter], columns: Mapping[str, pa.DataType], *, base: str) -> str:
    """`base` (the engine's own predicate, e.g. not deleted) AND every filter."""
    parts = [base] + [predicate(f, columns) for f in filters]
    return " AND ".join(parts)
