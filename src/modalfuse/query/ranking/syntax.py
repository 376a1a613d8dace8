"""Boosts and rule actions written as short expressions (CLI `--boost`, `rules add`), parsed to
the typed models; a JSON object is taken as it is.

- `filter:brand=Nike:0.3`, `filter:brand=Acme:-0.5` (a bury): a filter boost;
- `field:year:log1p:0.2` (optionally `:FACTOR` after the weight): a field-modifier boost;
- `decay:released:gauss:now:30d:0.2` (`FUNCTION:ORIGIN:SCALE:WEIGHT`): a decay boost;
- `ID@POSITION`: a pin.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import Schema
from modalfuse.query.filter_syntax import parse_filter
from modalfuse.query.ranking.models import Boost
from modalfuse.query.ranking.rules import Pin
from modalfuse.query.request import first_error

_BOOST: TypeAdapter[Boost] = TypeAdapter(Boost)


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError as e:
        raise InvalidInput(f"{text!r} is not a number", field=where) from e


def _maybe_number(text: str) -> float | str:
    """A number where the text is one ('30', '1.5'), else the text ('now', '30d', a date)."""
    try:
        return float(text)
    except ValueError:
        return text


def parse_boost(expr: str, schema: Schema, *, where: str = "--boost") -> Boost:
    raw: dict[str, Any]
    text = expr.strip()
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"not JSON: {e}", field=where) from e
    else:
        kind, _, rest = text.partition(":")
        if kind == "filter":
            flt, _, weight = rest.rpartition(":")
            filter_ = parse_filter(flt, schema, where=where).model_dump(mode="json")
            raw = {"type": "filter", "filter": filter_, "weight": _number(weight, where)}
        elif kind == "field":
            parts = rest.split(":")
            if len(parts) not in (3, 4):
                raise InvalidInput("use field:NAME:MODIFIER:WEIGHT[:FACTOR]", field=where)
            raw = {"type": "field", "field": parts[0], "modifier": parts[1]}
            raw["weight"] = _number(parts[2], where)
            if len(parts) == 4:
                raw["factor"] = _number(parts[3], where)
        elif kind == "decay":
            parts = rest.split(":")
            if len(parts) < 5:
                raise InvalidInput("use decay:NAME:FUNCTION:ORIGIN:SCALE:WEIGHT", field=where)
            # An ISO origin has colons of its own: the name and function lead, scale and weight
            # close, and the origin is what is between.
            name, function, *origin, scale, weight = parts
            joined = ":".join(origin)
            raw = {"type": "decay", "field": name, "function": function}
            raw |= {"origin": _maybe_number(joined), "scale": _maybe_number(scale)}
            raw["weight"] = _number(weight, where)
        else:
            raise InvalidInput(
                f"cannot parse {expr!r}: start with filter:, field: or decay:, or give JSON",
                field=where,
            )
    try:
        return _BOOST.validate_python(raw)
    except ValidationError as e:
        field, message = first_error(e)
        raise InvalidInput(f"{field or 'boost'}: {message}", field=where) from e


def parse_pin(expr: str, *, where: str = "--pin") -> Pin:
    doc_id, sep, position = expr.rpartition("@")
    if not sep or not doc_id:
        raise InvalidInput(f"cannot parse {expr!r}: use ID@POSITION", field=where)
    try:
        return Pin(id=doc_id, position=int(position))
    except (ValueError, ValidationError) as e:
        raise InvalidInput(f"cannot parse {expr!r}: {e}", field=where) from e
