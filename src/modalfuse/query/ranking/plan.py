"""One search's ranking, planned from its request and its index (pure): the boosts, the fired
rules, collapse, diversity and facets, the stored fields they read, and the run of the stages."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from modalfuse.query.fusion import Fused
from modalfuse.query.ranking import stages
from modalfuse.query.ranking.models import Boost, Collapse, DecayBoost, Diversify, FieldBoost
from modalfuse.query.ranking.rules import Rule

T = TypeVar("T")
Timer = Callable[[str, Callable[[], T]], T]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankingPlan:
    boosts: tuple[Boost, ...] = ()
    rules: tuple[Rule, ...] = ()
    collapse: Collapse | None = None
    diversify: Diversify | None = None
    diversify_on_vector: bool = False
    facets: tuple[str, ...] = ()
    facets_after_collapse: bool = True
    now: datetime | None = None

    @property
    def pinned_ids(self) -> list[str]:
        return [p.id for r in self.rules for p in r.pin]

    def fields(self) -> tuple[str, ...]:
        """The stored fields the stages read, which the sub-searches return with their hits."""
        names: list[str] = []
        every = [*self.boosts, *(b for r in self.rules for b in r.boosts())]
        for b in every:
            names.append(b.field if isinstance(b, FieldBoost | DecayBoost) else b.filter.field)
        if self.collapse is not None:
            names.append(self.collapse.field)
        if self.diversify is not None:
            names.append(self.diversify.on)
        names += self.facets
        return tuple(dict.fromkeys(names))

    @property
    def stages(self) -> list[str]:
        """The stages this plan runs after fusion (rank always: it numbers the final order)."""
        out = ["rank"]
        if self.collapse is not None:
            out.append("collapse")
        if self.diversify is not None:
            out.append("diversify")
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ranked:
    hits: list[stages.Candidate]  # the page
    total: int  # hits (or, collapsed, groups) in the window
    facets: dict[str, list[tuple[str, int]]] | None


def run(
    plan: RankingPlan,
    fused: Sequence[Fused],
    fields: Mapping[str, Mapping[str, Any]],
    *,
    from_: int,
    size: int,
    pinned_extra: Mapping[str, stages.Candidate] | None = None,
    timed: Timer[Any] | None = None,
) -> Ranked:
    """rank -> collapse -> diversify -> page over the fused window; `timed(stage, fn)` times
    each stage."""

    def call(stage: str, fn: Callable[[], list[stages.Candidate]]) -> list[stages.Candidate]:
        return timed(stage, fn) if timed is not None else fn()

    items = stages.candidates(fused, fields)
    items = call(
        "rank",
        lambda: stages.rank(
            items, plan.boosts, plan.rules, pinned_extra=pinned_extra, now=plan.now
        ),
    )
    facets = None
    if plan.facets and not (plan.collapse is not None and plan.facets_after_collapse):
        facets = stages.facet_counts(items, plan.facets)
    if plan.collapse is not None:
        spec = plan.collapse
        items = call("collapse", lambda: stages.collapse(items, spec))
        if plan.facets and plan.facets_after_collapse:
            facets = stages.facet_counts(items, plan.facets)
    if plan.diversify is not None:
        div = plan.diversify
        items = call(
            "diversify", lambda: stages.diversify(items, div, vector=plan.diversify_on_vector)
        )
    return Ranked(hits=stages.page(items, from_=from_, size=size), total=len(items), facets=facets)
