"""The cost of the stages after fusion (`bench query` runs this at every corpus size): each
stage timed on its own over real fused candidates, at the retrieval window of the run and at
1000, and the whole ranking run beside the hybrid retrieval it follows.

Per query: the lexical and vector lists (top `window`) retrieved once with the fields the stages
read (a number signal, the variant group, the vector), fused with auto; then
- `rank`: a log1p field boost, a gauss decay on the same signal, a filter boost, and a rule that
  pins one id, hides one and buries a filter;
- `collapse`: one hit per group (the corpus's variants of one product share a group), 3 inner;
- `diversify`: MMR over the top 100 ranked hits by cosine of the text vectors (λ 0.7);
- `ranking`: all of them in order with paging, as `Searcher.search` runs them (vectors at hand);
- `load_vectors`: the engine read of the text vectors of the 100 hits MMR reorders, the one
  extra round trip diversity over a vector costs.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from modalfuse.engines.base import KnnQuery, LexicalQuery
from modalfuse.engines.filters import Term
from modalfuse.query import fusion
from modalfuse.query.ranking import stages
from modalfuse.query.ranking.models import Collapse, DecayBoost, Diversify, FieldBoost, FilterBoost
from modalfuse.query.ranking.plan import RankingPlan, run
from modalfuse.query.ranking.rules import Rule

# What the sub-searches return for the stages; the diversity vector is read afterwards, for the
# top `depth` hits only (`load`), as `Searcher.search` does.
STAGE_FIELDS = ("popularity", "style", "category")


def plan_for(first: str, second: str) -> RankingPlan:
    rule = Rule.model_validate(
        {
            "id": "bench",
            "query": "q",
            "pin": [{"id": first, "position": 3}],
            "hide": [second],
            "boost": [
                {"filter": {"op": "term", "field": "category", "value": "Watches"}, "weight": -0.3}
            ],
        }
    )
    return RankingPlan(
        boosts=(
            FieldBoost(field="popularity", modifier="log1p", factor=0.1, weight=0.2),
            DecayBoost(field="popularity", function="gauss", origin=50, scale=20, weight=0.1),
            FilterBoost(filter=Term(field="category", value="Tshirts"), weight=0.1),
        ),
        rules=(rule,),
        collapse=Collapse(field="style", inner=3),
        diversify=Diversify.model_validate({"lambda": 0.7, "on": "text_vector", "depth": 100}),
        diversify_on_vector=True,
    )


def measure_stages(
    engine: Any,
    name: str,
    queries: list[str],
    qvecs: Any,
    windows: tuple[int, ...],
    latencies: Callable[[Callable[[int], Any], int], dict[str, float]],
) -> dict[str, Any]:
    return {f"window_{w}": one_window(engine, name, queries, qvecs, w, latencies) for w in windows}


def one_window(
    engine: Any,
    name: str,
    queries: list[str],
    qvecs: Any,
    window: int,
    latencies: Callable[[Callable[[int], Any], int], dict[str, float]],
) -> dict[str, Any]:
    lists = []
    for q, v in zip(queries, qvecs, strict=True):
        subs = [
            LexicalQuery(
                text=q, fields={"title": 1.0}, k=window, source=False, returned=STAGE_FIELDS
            ),
            KnnQuery(
                field="text_vector",
                vector=v,
                k=window,
                ef_search=max(100, window),
                source=False,
                returned=STAGE_FIELDS,
            ),
        ]
        lists.append(engine.search_many(name, subs))
    fused = [fusion.fuse({"lexical": a, "text_vector": b}, window=window) for a, b in lists]
    fields = []
    for a, b in lists:
        found: dict[str, dict[str, Any]] = {}
        for h in [*a, *b]:
            if h.source and h.id not in found:
                found[h.id] = h.source
        fields.append(found)
    plans = [plan_for(f[0].id, f[1].id) if len(f) > 1 else RankingPlan() for f in fused]
    n = len(queries)
    # Stages write explain into their candidates: each timed call gets inputs of its own.
    fresh = [stages.candidates(fused[i], fields[i]) for i in range(n)]
    ranked = [
        stages.rank(stages.candidates(fused[i], fields[i]), p.boosts, p.rules)
        for i, p in enumerate(plans)
    ]
    collapse = Collapse(field="style", inner=3)
    div = Diversify.model_validate({"lambda": 0.7, "on": "text_vector", "depth": 100})
    # MMR is timed over the ranked list before collapse, so that it always has `depth` hits
    # to reorder (after collapse a corpus of many variants can leave only a few groups).
    tops = [[c.id for c in items if c.pinned is None][: div.depth] for items in ranked]
    vectors = [engine.fetch(name, ids, fields=["text_vector"]) for ids in tops]
    lost = sum(len(ids) - len(got) for ids, got in zip(tops, vectors, strict=True))
    if lost or any(not isinstance(v.get("text_vector"), list) for g in vectors for v in g.values()):
        raise RuntimeError(f"the engine returned no text vector for {lost} hit(s)")
    for items, got in zip(ranked, vectors, strict=True):
        for c in items:
            if c.id in got:
                c.fields["text_vector"] = got[c.id]["text_vector"]
    with_vectors = [{i: f | vectors[q].get(i, {}) for i, f in fields[q].items()} for q in range(n)]
    # The inputs of every timed call (all queries' candidates, their vectors as lists) are held
    # at once here, which a server never does: leave them out of the collector's scans, so a
    # full collection of the benchmark's own data is not timed as the stage's cost.
    gc.collect()
    gc.freeze()
    try:
        out = timed(latencies, n, fused, with_vectors, plans, fresh, ranked, collapse, div)
    finally:
        gc.unfreeze()
    out["load_vectors"] = latencies(
        lambda i: engine.fetch(name, tops[i], fields=["text_vector"]), n
    )
    return out


def timed(
    latencies: Callable[[Callable[[int], Any], int], dict[str, float]],
    n: int,
    fused: list[Any],
    fields: list[dict[str, dict[str, Any]]],
    plans: list[RankingPlan],
    fresh: list[list[stages.Candidate]],
    ranked: list[list[stages.Candidate]],
    collapse: Collapse,
    div: Diversify,
) -> dict[str, Any]:
    return {
        "candidates_mean": round(sum(len(f) for f in fused) / n, 1),
        "rank": latencies(lambda i: stages.rank(fresh[i], plans[i].boosts, plans[i].rules), n),
        "collapse": latencies(lambda i: stages.collapse(ranked[i], collapse), n),
        "diversify": latencies(lambda i: stages.diversify(ranked[i], div, vector=True), n),
        "diversify_inputs_mean": round(
            sum(min(div.depth, len([c for c in r if c.pinned is None])) for r in ranked) / n, 1
        ),
        "ranking": latencies(lambda i: run(plans[i], fused[i], fields[i], from_=0, size=10), n),
    }
