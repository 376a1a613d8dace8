"""Typed filters: the one filter model every engine compiles into its own query language.

Values stay typed from the caller to the engine. OpenSearch gets them as JSON values in a
`bool` query; LanceDB gets them as escaped SQL literals. A user's string is never pasted into a
query string.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import DateField, KeywordField, NumberField, Schema

Scalar = str | int | float | bool
Bound = int | float | datetime


def _op_required(schema: dict[str, Any]) -> None:
    # `op` is the union's tag: a filter without it cannot be read, so the schema says so
    # (its default is only for building filters in Python).
    required = schema.setdefault("required", [])
    if "op" not in required:
        required.insert(0, "op")


class _Filter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_op_required)

    field: str
    negate: bool = Field(default=False, description="Match documents that do NOT satisfy this.")


class Term(_Filter):
    op: Literal["term"] = "term"
    value: Scalar


class Terms(_Filter):
    op: Literal["terms"] = "terms"
    values: list[Scalar] = Field(min_length=1, max_length=1024)


def _range_rules(schema: dict[str, Any]) -> None:
    _op_required(schema)
    bounds = ["gt", "gte", "lt", "lte"]
    for bound in bounds:  # a bound that is given is a value (null only means "not given")
        prop = schema["properties"][bound]
        prop["anyOf"] = [kind for kind in prop.get("anyOf", []) if kind.get("type") != "null"]
    schema["anyOf"] = [{"required": [b]} for b in bounds]
    schema["allOf"] = [{"not": {"required": ["gt", "gte"]}}, {"not": {"required": ["lt", "lte"]}}]


class Range(_Filter):
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_range_rules)

    op: Literal["range"] = "range"
    gt: Bound | None = None
    gte: Bound | None = None
    lt: Bound | None = None
    lte: Bound | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Range:
        if all(b is None for b in (self.gt, self.gte, self.lt, self.lte)):
            raise ValueError("a range needs at least one of gt, gte, lt, lte")
        if self.gt is not None and self.gte is not None:
            raise ValueError("give gt or gte, not both")
        if self.lt is not None and self.lte is not None:
            raise ValueError("give lt or lte, not both")
        return self

    def bounds(self) -> list[tuple[str, Bound]]:
        return [
            (op, v)
            for op, v in (("gt", self.gt), ("gte", self.gte), ("lt", self.lt), ("lte", self.lte))
            if v is not None
        ]


class Exists(_Filter):
    op: Literal["exists"] = "exists"


Filter = Annotated[Term | Terms | Range | Exists, Field(discriminator="op")]


def check_filters(schema: Schema, filters: list[Filter]) -> None:
    """Refuse filters on unknown fields or on fields that cannot be filtered exactly."""
    filterable = {
        f.name: f for f in schema.fields if isinstance(f, KeywordField | NumberField | DateField)
    }
    for i, flt in enumerate(filters):
        where = f"filters.{i}.field"
        spec = filterable.get(flt.field)
        if spec is None:
            known = ", ".join(sorted(filterable)) or "none"
            raise InvalidInput(
                f"{flt.field!r} is not a filterable field of {schema.name!r} (filterable: {known})",
                field=where,
            )
        if isinstance(flt, Range) and isinstance(spec, KeywordField):
            raise InvalidInput(f"range filter on keyword field {flt.field!r}", field=where)
        values: list[Scalar] = (
            [flt.value] if isinstance(flt, Term) else flt.values if isinstance(flt, Terms) else []
        )
        for value in values:
            if isinstance(spec, KeywordField) and not isinstance(value, str):
                raise InvalidInput(f"{flt.field!r} takes strings, got {value!r}", field=where)
            if isinstance(spec, NumberField) and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise InvalidInput(f"{flt.field!r} takes numbers, got {value!r}", field=where)


def as_datetime(value: Any) -> datetime | None:
    """A stored date (ISO-8601 text from OpenSearch, a datetime from LanceDB) as an aware UTC
    datetime; None when it is not a date."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _comparable(value: Any, bound: Bound) -> tuple[Any, Any] | None:
    if isinstance(bound, datetime):
        got, want = as_datetime(value), as_datetime(bound)
        return None if got is None or want is None else (got, want)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value, bound


def _in_range(flt: Range, value: Any) -> bool:
    for op, bound in flt.bounds():
        pair = _comparable(value, bound)
        if pair is None:
            return False
        got, want = pair
        ok = {"gt": got > want, "gte": got >= want, "lt": got < want, "lte": got <= want}[op]
        if not ok:
            return False
    return True


def matcher(flt: Filter) -> Callable[[Mapping[str, Any]], bool]:
    """`matches` for one filter, made once and called per document (the term filters, which
    boosts and rules use most, without the general path)."""
    if isinstance(flt, Term | Terms) and not flt.negate:
        name = flt.field
        wanted = frozenset([flt.value] if isinstance(flt, Term) else flt.values)
        hashable = all(not isinstance(v, float) or math.isfinite(v) for v in wanted)
        if hashable:

            def term(fields: Mapping[str, Any]) -> bool:
                value = fields.get(name)
                if isinstance(value, list):
                    return not wanted.isdisjoint(value)
                return value is not None and value in wanted

            return term
    return lambda fields: matches(flt, fields)


def matches(flt: Filter, fields: Mapping[str, Any]) -> bool:
    """Whether a document's stored fields satisfy one typed filter, as the engines decide it
    (a multi-valued field matches when any value does; a missing field matches only a negated
    filter). What ranking uses for filter boosts and rules over returned hits."""
    value = fields.get(flt.field)
    values = value if isinstance(value, list) else [] if value is None else [value]
    if isinstance(flt, Exists):
        hit = bool(values)
    elif isinstance(flt, Term):
        hit = flt.value in values
    elif isinstance(flt, Terms):
        hit = any(v in flt.values for v in values)
    else:
        hit = any(_in_range(flt, v) for v in values)
    return hit != flt.negate
