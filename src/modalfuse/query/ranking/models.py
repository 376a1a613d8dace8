"""What a search (or an index's default ranking) may ask of the stages after fusion: boosts,
collapse, diversity. Validated here as far as a request alone allows; `check_ranking` checks the
rest against the index's schema."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modalfuse.engines.filters import Filter

# A boost's weight. Boosts multiply the fused relevance by `1 + sum(w * f)`, each f in [0, 1],
# clamped to [0, MAX_MULTIPLIER]: positive weights add up to at most 1 and negative ones (bury)
# to at least -1, so boosts can at most double a hit's relevance, and a hit is never passed by
# one whose relevance is less than half of its own unless it is buried itself.
BoostWeight = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]
MAX_MULTIPLIER = 2.0
MAX_INNER = 10
Modifier = Literal["none", "log1p", "sqrt", "linear"]
DecayFunction = Literal["gauss", "exp", "linear"]
_DURATION = re.compile(r"^(?P<n>\d+(\.\d+)?)(?P<unit>ms|s|m|h|d|w)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def duration_seconds(value: str) -> float:
    """'7d' -> 604800.0 (units ms, s, m, h, d, w, as Elasticsearch's decay scales)."""
    m = _DURATION.match(value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not a duration such as 12h, 7d or 2w")
    return float(m["n"]) * _UNIT_S[m["unit"]]


class FieldBoost(_Model):
    """A number signal through a modifier: `none` the value, `log1p` log10(1 + v), `sqrt`, each
    times `factor` and capped to [0, 1]; `linear` the value scaled onto [0, 1] over the
    candidates (their smallest 0, their largest 1). A missing value counts as `missing`."""

    type: Literal["field"] = "field"
    field: str
    modifier: Modifier = "none"
    factor: float = Field(default=1.0, gt=0, le=1e9, allow_inf_nan=False)
    missing: Finite = 0.0
    weight: BoostWeight


class DecayBoost(_Model):
    """Closeness of a number or date signal to `origin`, as Elasticsearch's function_score
    decay functions define it: 1 within `offset` of the origin, `decay` at `offset + scale`,
    falling by `function` (gauss, exp, linear). Dates take an ISO origin or "now" and
    durations ("7d") for scale and offset. A document without the field gets `missing`."""

    type: Literal["decay"] = "decay"
    field: str
    function: DecayFunction = "gauss"
    origin: Finite | datetime | Literal["now"]
    scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] | str
    offset: Annotated[float, Field(ge=0, allow_inf_nan=False)] | str = 0.0
    decay: float = Field(default=0.5, gt=0, lt=1)
    missing: float = Field(default=0.0, ge=0, le=1)
    weight: BoostWeight

    @model_validator(mode="after")
    def _durations(self) -> DecayBoost:
        for name in ("scale", "offset"):
            value = getattr(self, name)
            if isinstance(value, str):
                seconds = duration_seconds(value)
                if name == "scale" and seconds <= 0:
                    raise ValueError("scale must be above 0")
        return self

    def is_date(self) -> bool:
        return not isinstance(self.origin, int | float)


class FilterBoost(_Model):
    """A fixed boost (or, with a negative weight, a bury) for hits matching a typed filter."""

    type: Literal["filter"] = "filter"
    filter: Filter
    weight: BoostWeight


Boost = Annotated[FieldBoost | DecayBoost | FilterBoost, Field(discriminator="type")]


def check_weights_bound(boosts: list[Any], where: str) -> None:
    up = math.fsum(b.weight for b in boosts if b.weight > 0)
    down = math.fsum(b.weight for b in boosts if b.weight < 0)
    if up > 1 + 1e-9:
        raise ValueError(f"{where}: positive weights add up to {up:g}; at most 1 (relevance leads)")
    if down < -1 - 1e-9:
        raise ValueError(f"{where}: negative weights add up to {down:g}; at least -1")


class Collapse(_Model):
    field: str = Field(description="A keyword field: one hit per value (the best of its group).")
    inner: int = Field(
        default=0, ge=0, le=MAX_INNER, description="Other variants listed with each hit."
    )


class Diversify(_Model):
    lambda_: float = Field(
        alias="lambda",
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="MMR trade-off: 1 keeps the ranked order, 0 maximises diversity.",
    )
    on: str = Field(
        description="What similarity is over: a vector field (cosine) or a keyword field "
        "(1 for the same value, 0 otherwise; Jaccard for multi-valued fields)."
    )
    depth: int = Field(
        default=50, ge=2, le=1000, description="How many top candidates MMR reorders."
    )


class RankingConfig(_Model):
    """An index's default ranking (`modalfuse index set-ranking`): what searches that do not
    set boosts, collapse or diversify themselves get."""

    boosts: list[Boost] = Field(default_factory=list, max_length=32)
    collapse: Collapse | None = None
    diversify: Diversify | None = None

    @model_validator(mode="after")
    def _bound(self) -> RankingConfig:
        check_weights_bound(self.boosts, "boosts")
        return self
