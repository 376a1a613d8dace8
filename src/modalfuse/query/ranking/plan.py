"""One search's ranking, planned from its request and its index (pure): the boosts, the fired
rules, collapse, diversity and facets, the stored fields they read, and the run of the stages."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import ResolvedSchema
from modalfuse.query.fusion import Fused
from modalfuse.query.ranking import stages
from modalfuse.query.ranking.check import check_ranking
from modalfuse.query.ranking.models import (
    Boost,
    Collapse,
    DecayBoost,
    Diversify,
    FieldBoost,
    RankingConfig,
)
from modalfuse.query.ranking.rules import Rule, RuleSet
from modalfuse.query.request import SearchRequest

T = TypeVar("T")
# What server-side fusion cannot express: a request that sets any of these is refused (422).
SERVER_SIDE_REFUSED = ("boosts", "collapse", "diversify", "facets")
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
        if self.diversify is not None and not self.diversify_on_vector:
            # A vector is read for the top `depth` only, after collapse (`run`'s `load`): far
            # less than every hit of every list carrying one.
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


def plan_ranking(
    req: SearchRequest,
    schema: ResolvedSchema,
    text: str,
    *,
    defaults: RankingConfig | None,
    rules: RuleSet,
    warnings: list[str],
    now: datetime | None = None,
) -> tuple[SearchRequest, RankingPlan]:
    """The request with the index's default ranking filled in where it set none, checked
    against the schema, and its plan (with the rules that fire for its text and filters).
    "now" for date decays is the start of the current hour, so that pages asked for a moment
    apart rank alike."""
    if req.server_side:
        asked = [f for f in SERVER_SIDE_REFUSED if getattr(req, f)]
        if asked:
            raise InvalidInput(
                "server-side fusion cannot express ranking after fusion (boosts, collapse, "
                "diversify, facets): leave server_side off",
                field=asked[0],
            )
        if req.rules and rules.fired(text, req.filters):
            warnings.append("server-side fusion does not apply merchandising rules")
        return req, RankingPlan()
    if defaults is not None:
        unset = {
            k: getattr(defaults, k)
            for k in ("boosts", "collapse", "diversify")
            if k not in req.model_fields_set
        }
        req = req.model_copy(update=unset)
    boosts = tuple(req.boosts or ())
    on_vector = check_ranking(schema, boosts, req.collapse, req.diversify, req.facets)
    fired = tuple(rules.fired(text, req.filters)) if req.rules and text else ()
    hour = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    plan = RankingPlan(
        boosts=boosts,
        rules=fired,
        collapse=req.collapse,
        diversify=req.diversify,
        diversify_on_vector=on_vector,
        facets=tuple(req.facets),
        facets_after_collapse=req.facets_after_collapse,
        now=hour,
    )
    return req, plan


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
    load: Callable[[list[str]], Mapping[str, Mapping[str, Any]]] | None = None,
) -> Ranked:
    """rank -> collapse -> diversify -> page over the fused window; `timed(stage, fn)` times
    each stage. `load(ids)` reads stored fields of the given ids (the diversity vector of the
    hits MMR reorders, when the candidates do not carry it)."""

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
        top = [c for c in items if c.pinned is None][: div.depth]
        missing = [c.id for c in top if div.on not in c.fields]
        if plan.diversify_on_vector and missing and load is not None:
            reader = load
            got = timed("load", lambda: reader(missing)) if timed else reader(missing)
            for c in top:
                if c.id in got and div.on in got[c.id]:
                    c.fields[div.on] = got[c.id][div.on]
        items = call(
            "diversify", lambda: stages.diversify(items, div, vector=plan.diversify_on_vector)
        )
    return Ranked(hits=stages.page(items, from_=from_, size=size), total=len(items), facets=facets)
