"""Filters written as short expressions (CLI `--filter`, HTTP query strings), parsed to the typed
filter model with values typed by the schema: `category=Dresses`, `price<50`, `price>=10`,
`brand!=Puma`, `tags=summer|sale`, `colour?` (exists), `!colour?` (missing)."""

from __future__ import annotations

import re
from datetime import datetime

from modalfuse.engines.filters import Exists, Filter, Range, Scalar, Term, Terms
from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import DateField, NumberField, Schema

_EXPR = re.compile(r"^\s*(?P<field>[a-z][a-z0-9_]*)\s*(?P<op>!=|>=|<=|=|<|>)\s*(?P<value>.*?)\s*$")
_EXISTS = re.compile(r"^\s*(?P<neg>!?)(?P<field>[a-z][a-z0-9_]*)\?\s*$")
_RANGE_OPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def parse_filter(expr: str, schema: Schema, *, where: str = "filter") -> Filter:
    if m := _EXISTS.match(expr):
        return Exists(field=m["field"], negate=bool(m["neg"]))
    m = _EXPR.match(expr)
    if m is None:
        raise InvalidInput(
            f"cannot parse {expr!r}: use field=value, field!=value, field<value, field>=value, "
            "field=a|b, field? or !field?",
            field=where,
        )
    field, op, raw = m["field"], m["op"], m["value"]
    spec = next((f for f in schema.fields if f.name == field), None)
    if spec is None:
        raise InvalidInput(f"{field!r} is not a field of {schema.name!r}", field=where)
    if op in _RANGE_OPS:
        if not isinstance(spec, NumberField | DateField):
            raise InvalidInput(f"{op} needs a number or date field; {field!r} is not", field=where)
        return Range.model_validate({"field": field, _RANGE_OPS[op]: _typed(spec, raw, where)})
    if isinstance(spec, DateField):
        raise InvalidInput(f"compare dates with <, <=, > or >=, not {op}", field=where)
    values: list[Scalar] = [_scalar(spec, v, where) for v in raw.split("|")] if raw else [""]
    negate = op == "!="
    if len(values) == 1:
        return Term(field=field, value=values[0], negate=negate)
    return Terms(field=field, values=values, negate=negate)


def _scalar(spec: object, raw: str, where: str) -> Scalar:
    value = _typed(spec, raw, where)
    assert not isinstance(value, datetime)
    return value


def _typed(spec: object, raw: str, where: str) -> Scalar | datetime:
    if isinstance(spec, NumberField):
        try:
            number = float(raw)
        except ValueError as e:
            raise InvalidInput(f"{raw!r} is not a number", field=where) from e
        return (
            int(number)
            if spec.number_type in ("integer", "long") and number.is_integer()
            else number
        )
    if isinstance(spec, DateField):
        try:
            return datetime.fromisoformat(raw)
        except ValueError as e:
            raise InvalidInput(f"{raw!r} is not an ISO-8601 date", field=where) from e
    return raw
