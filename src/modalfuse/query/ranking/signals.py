"""Boost factors: each boost turns a hit's stored fields into f in [0, 1]. Pure functions.

Decay functions follow Elasticsearch's function_score definitions, with
`d = max(0, |value - origin| - offset)`:
- gauss: `exp(-d^2 / (2 sigma^2))`, `sigma^2 = -scale^2 / (2 ln(decay))`;
- exp: `exp(ln(decay) / scale * d)`;
- linear: `max(0, (s - d) / s)`, `s = scale / (1 - decay)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from modalfuse.engines.filters import as_datetime, matches
from modalfuse.query.ranking.models import (
    Boost,
    DecayBoost,
    FieldBoost,
    FilterBoost,
    duration_seconds,
)


def _number(value: Any) -> float | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, list):
        value = value[0] if value else None
    when = as_datetime(value)
    return when.timestamp() if when is not None else None


def modified(modifier: str, value: float, factor: float) -> float:
    """`none`, `log1p` (base 10, as Elasticsearch) and `sqrt` of `factor * value`, in [0, 1]."""
    x = max(factor * value, 0.0)
    if modifier == "log1p":
        x = math.log10(1 + x)
    elif modifier == "sqrt":
        x = math.sqrt(x)
    return min(x, 1.0)


def decayed(function: str, distance: float, *, scale: float, offset: float, decay: float) -> float:
    d = max(0.0, abs(distance) - offset)
    if function == "gauss":
        sigma2 = -(scale**2) / (2 * math.log(decay))
        return math.exp(-(d**2) / (2 * sigma2))
    if function == "exp":
        return math.exp(math.log(decay) / scale * d)
    s = scale / (1 - decay)
    return max(0.0, (s - d) / s)


def _origin(boost: DecayBoost, now: datetime) -> float:
    if boost.origin == "now":
        return now.timestamp()
    if isinstance(boost.origin, datetime):
        when = as_datetime(boost.origin)
        assert when is not None
        return when.timestamp()
    return float(boost.origin)


def _span(value: float | str) -> float:
    return duration_seconds(value) if isinstance(value, str) else float(value)


def factors(
    boost: Boost, candidates: Sequence[Mapping[str, Any]], *, now: datetime | None = None
) -> list[tuple[float | None, float]]:
    """Per candidate (its stored fields): the value the boost read (None when missing, or 1/0
    for a filter) and its factor f in [0, 1]."""
    out: list[tuple[float | None, float]] = []
    if isinstance(boost, FilterBoost):
        for fields in candidates:
            hit = matches(boost.filter, fields)
            out.append((1.0 if hit else 0.0, 1.0 if hit else 0.0))
        return out
    if isinstance(boost, FieldBoost):
        values = [_number(f.get(boost.field)) for f in candidates]
        filled = [boost.missing if v is None else v for v in values]
        if boost.modifier == "linear":
            lo, hi = (min(filled), max(filled)) if filled else (0.0, 0.0)
            scaled = [1.0 if hi == lo else (v - lo) / (hi - lo) for v in filled]
            out.extend(zip(values, scaled, strict=True))
            return out
        out.extend(
            (v, modified(boost.modifier, x, boost.factor))
            for v, x in zip(values, filled, strict=True)
        )
        return out
    date = boost.is_date()
    origin = _origin(boost, now or datetime.now(UTC))
    scale, offset = _span(boost.scale), _span(boost.offset)
    for fields in candidates:
        raw = fields.get(boost.field)
        v = _seconds(raw) if date else _number(raw)
        if v is None:
            out.append((None, boost.missing))
            continue
        f = decayed(boost.function, v - origin, scale=scale, offset=offset, decay=boost.decay)
        out.append((v, f))
    return out


def describe(boost: Boost) -> str:
    """A short name for explain: `year log1p x1`, `released gauss`, `brand = Nike`."""
    if isinstance(boost, FieldBoost):
        return f"{boost.field} {boost.modifier} x{boost.factor:g}"
    if isinstance(boost, DecayBoost):
        return f"{boost.field} {boost.function} decay from {boost.origin}"
    flt = boost.filter
    body = flt.model_dump(exclude={"field", "op", "negate"}, exclude_none=True, mode="json")
    return f"{'not ' if flt.negate else ''}{flt.field} {flt.op} {body}"
