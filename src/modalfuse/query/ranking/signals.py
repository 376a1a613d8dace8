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

import numpy as np

from modalfuse.engines.filters import Term, Terms, as_datetime, matcher
from modalfuse.query.ranking.models import (
    Boost,
    DecayBoost,
    FieldBoost,
    FilterBoost,
    duration_seconds,
)


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float or kind is int:  # the common case, without the checks below
        return float(value) if kind is int or math.isfinite(value) else None
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


def modified(modifier: str, value: Any, factor: float) -> Any:
    """`none`, `log1p` (base 10, as Elasticsearch) and `sqrt` of `factor * value`, in [0, 1]
    (a number, or an array of them)."""
    x = np.maximum(factor * np.asarray(value, dtype=float), 0.0)
    if modifier == "log1p":
        x = np.log10(1 + x)
    elif modifier == "sqrt":
        x = np.sqrt(x)
    out = np.minimum(x, 1.0)
    return float(out) if out.ndim == 0 else out


def decayed(function: str, distance: Any, *, scale: float, offset: float, decay: float) -> Any:
    """The decay of `distance` from the origin (a number, or an array of them)."""
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.maximum(0.0, np.abs(np.asarray(distance, dtype=float)) - offset)
        if function == "gauss":
            sigma2 = -(scale**2) / (2 * math.log(decay))
            out = np.exp(-(d**2) / (2 * sigma2))
        elif function == "exp":
            out = np.exp(math.log(decay) / scale * d)
        else:
            s = scale / (1 - decay)
            out = np.maximum(0.0, (s - d) / s)
    return float(out) if out.ndim == 0 else out


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


class Columns:
    """The signal values of one candidate list, read once per field (NaN where missing) and
    shared by every boost on that field."""

    def __init__(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows = rows
        self._numbers: dict[str, np.ndarray] = {}
        self._dates: dict[str, np.ndarray] = {}
        self._raw: dict[str, list[Any]] = {}

    def raw(self, field: str) -> list[Any]:
        if field not in self._raw:
            self._raw[field] = [r.get(field) for r in self.rows]
        return self._raw[field]

    def numbers(self, field: str) -> np.ndarray:
        if field not in self._numbers:
            got = [_number(r.get(field)) for r in self.rows]
            self._numbers[field] = np.array([np.nan if v is None else v for v in got], float)
        return self._numbers[field]

    def dates(self, field: str) -> np.ndarray:
        if field not in self._dates:
            got = [_seconds(r.get(field)) for r in self.rows]
            self._dates[field] = np.array([np.nan if v is None else v for v in got], float)
        return self._dates[field]


def factor_column(
    boost: Boost, columns: Columns, *, now: datetime | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """For every candidate: the value the boost read (NaN when missing; 1/0 for a filter) and
    its factor f in [0, 1]."""
    if isinstance(boost, FilterBoost):
        flt = boost.filter
        if (
            isinstance(flt, Term | Terms)
            and not flt.negate
            and all(
                isinstance(v, str) for v in ([flt.value] if isinstance(flt, Term) else flt.values)
            )
        ):
            # Keyword terms, the common boost: one pass over the field's values.
            wanted = frozenset([flt.value] if isinstance(flt, Term) else flt.values)
            found = [
                (not wanted.isdisjoint(v)) if isinstance(v, list) else v in wanted
                for v in columns.raw(flt.field)
            ]
        else:
            test = matcher(flt)
            found = [test(r) for r in columns.rows]
        hits = np.array(found, dtype=float)
        return hits, hits
    if isinstance(boost, FieldBoost):
        values = columns.numbers(boost.field)
        x = np.where(np.isnan(values), boost.missing, values)
        if boost.modifier == "linear":
            lo, hi = (float(x.min()), float(x.max())) if len(x) else (0.0, 0.0)
            return values, np.ones_like(x) if hi == lo else (x - lo) / (hi - lo)
        return values, modified(boost.modifier, x, boost.factor)
    values = columns.dates(boost.field) if boost.is_date() else columns.numbers(boost.field)
    origin = _origin(boost, now or datetime.now(UTC))
    f = decayed(
        boost.function,
        values - origin,
        scale=_span(boost.scale),
        offset=_span(boost.offset),
        decay=boost.decay,
    )
    return values, np.where(np.isnan(values), boost.missing, f)


def factors(
    boost: Boost, candidates: Sequence[Mapping[str, Any]], *, now: datetime | None = None
) -> list[tuple[float | None, float]]:
    """`factor_column` as (value or None, factor) pairs, one per candidate."""
    values, f = factor_column(boost, Columns(candidates), now=now)
    return [
        (None if math.isnan(v) else float(v), float(x))
        for v, x in zip(values.tolist(), f.tolist(), strict=True)
    ]


def describe(boost: Boost) -> str:
    """A short name for explain: `year log1p x1`, `released gauss`, `brand = Nike`."""
    if isinstance(boost, FieldBoost):
        return f"{boost.field} {boost.modifier} x{boost.factor:g}"
    if isinstance(boost, DecayBoost):
        return f"{boost.field} {boost.function} decay from {boost.origin}"
    flt = boost.filter
    body = flt.model_dump(exclude={"field", "op", "negate"}, exclude_none=True, mode="json")
    return f"{'not ' if flt.negate else ''}{flt.field} {flt.op} {body}"
