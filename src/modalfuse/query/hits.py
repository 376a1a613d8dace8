"""Ranked candidates as response hits, and the index's stored settings as models."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modalfuse.errors import ConfigError
from modalfuse.query.ranking.stages import Candidate
from modalfuse.query.request import (
    BoostExplain,
    RankingExplain,
    RetrieverExplain,
    SearchHit,
    Variant,
    first_error,
)

M = TypeVar("M", bound=BaseModel)


def parse_stored(model: type[M], raw: Any, index: str, kind: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        field, message = first_error(e)
        raise ConfigError(f"index {index!r} stored {kind}: {field or kind}: {message}") from e


def _explain(c: Candidate) -> RankingExplain:
    return RankingExplain(
        relevance=c.relevance,
        multiplier=c.multiplier,
        boosts=[BoostExplain.model_validate(dataclasses.asdict(p)) for p in c.boosts],
        final=c.score,
        pinned_by=c.rule,
        group=c.group,
        group_size=c.group_size,
        mmr_penalty=c.mmr_penalty,
        positions=dict(c.positions),
    )


def as_hit(
    c: Candidate, sources: Mapping[str, dict[str, Any]], explain: bool, *, collapsed: bool
) -> SearchHit:
    return SearchHit(
        id=c.id,
        score=c.score,
        fields=sources.get(c.id, {}),
        explain={
            name: RetrieverExplain(
                rank=part.rank,
                raw_score=part.raw_score,
                normalized=part.normalized,
                contribution=part.contribution,
            )
            for name, part in c.contributions.items()
        }
        if explain
        else None,
        pinned=c.pinned,
        group=c.group if collapsed else None,
        variants=[Variant(id=v.id, score=v.score, fields=sources.get(v.id, {})) for v in c.variants]
        if collapsed
        else None,
        ranking=_explain(c) if explain else None,
    )
