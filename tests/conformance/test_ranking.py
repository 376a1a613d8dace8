"""Ranking after fusion on every engine: boosts, rules, collapse and MMR over hybrid search give
the same ids and scores on LanceDB and on the node, every final score is its explain's formula,
and pages under every stage hold no duplicates and leave no gaps."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from modalfuse.engines import open_engine
from modalfuse.engines.base import Document, Engine
from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import ResolvedSchema, parse_schema, resolve
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.query.request import SearchRequest, SearchResponse
from modalfuse.query.searcher import Searcher
from modalfuse.settings import Settings
from tests.conftest import dropped_after, opensearch_settings, unique_name

pytestmark = pytest.mark.needs_export

COLOURS = ["red", "blue", "green", "black", "white"]
KINDS = ["shirt", "hat", "bag", "sock"]
BRANDS = ["acme", "bolt", "crest", "delta"]
# 40 products, each title three words of one length (so that BM25's length norm is exact on
# every engine), the third word its own, so that no two documents tie.
PRODUCTS = [
    (
        f"p{i:02d}",
        {
            "title": f"{COLOURS[i % 5]} {KINDS[i % 4]} m{i:02d}",
            "colour": COLOURS[i % 5],
            "brand": BRANDS[(i // 3) % 4],
            # Pairs of colours of one kind share a style.
            "style": f"{KINDS[i % 4]}-{i // 8}",
            "popularity": (i * 37) % 100,
            "released": f"2026-{1 + i % 12:02d}-15T00:00:00+00:00",
        },
    )
    for i in range(40)
]
SCHEMA = {
    "fields": [
        {"name": "title", "type": "text", "analyzer": "standard"},
        {"name": "colour", "type": "keyword"},
        {"name": "brand", "type": "keyword"},
        {"name": "style", "type": "keyword"},
        {"name": "popularity", "type": "number", "signal": True},
        {"name": "released", "type": "date", "signal": True},
        {"name": "stock", "type": "number"},
        {"name": "text_vector", "type": "vector", "encoder": "text", "sources": ["title"]},
    ]
}
RULE = {
    "id": "red-shirts",
    "query": "red shirt",
    "match": "phrase",
    "pin": [{"id": "p13", "position": 2}],
    "hide": ["p00"],
    "boost": [{"filter": {"op": "term", "field": "brand", "value": "delta"}, "weight": 0.2}],
}
RANKED = {
    "text": "red shirt sale",
    "retrievers": ["lexical", "text_vector"],
    "window": 50,
    "boosts": [
        {"type": "field", "field": "popularity", "modifier": "log1p", "factor": 0.1, "weight": 0.3},
        {
            "type": "decay",
            "field": "released",
            "function": "gauss",
            "origin": "2026-06-15T00:00:00+00:00",
            "scale": "60d",
            "weight": 0.2,
        },
    ],
    "collapse": {"field": "style", "inner": 2},
    "diversify": {"lambda": 0.7, "on": "text_vector", "depth": 30},
    "facets": ["colour"],
    "explain": True,
}


def schema(name: str) -> ResolvedSchema:
    return resolve(parse_schema(SCHEMA | {"name": name}), {"text": 384})


@pytest.fixture(scope="module")
def vectors(minilm_fp32: Path, settings: Settings) -> Any:
    encoder = OnnxEncoder(minilm_fp32, settings=settings)
    return encoder.encode_texts([str(f["title"]) for _, f in PRODUCTS])


def fill(engine: Engine, alias: str, vectors: Any) -> None:
    engine.create(schema(alias))
    docs = [
        Document(id=i, version=1, fields=f, vectors={"text_vector": v})
        for (i, f), v in zip(PRODUCTS, vectors, strict=True)
    ]
    assert not engine.upsert(alias, docs).failed
    engine.refresh(alias)
    engine.store_settings(alias, "rules", {"rules": [RULE]})


def searcher_on(engine: Engine, engine_settings: Settings, settings: Settings) -> Searcher:
    s = engine_settings.model_copy(update={"model_cache_dir": settings.models_dir})
    return Searcher(s, engine=engine)


@pytest.fixture
def shop(
    engine: Engine, engine_settings: Settings, alias: str, settings: Settings, vectors: Any
) -> Iterator[tuple[Searcher, str]]:
    fill(engine, alias, vectors)
    yield searcher_on(engine, engine_settings, settings), alias


def search(searcher: Searcher, alias: str, **extra: Any) -> SearchResponse:
    return searcher.search(SearchRequest.model_validate(RANKED | {"index": alias} | extra))


def test_every_final_score_is_its_explain(shop: tuple[Searcher, str]) -> None:
    searcher, alias = shop
    resp = search(searcher, alias, size=20)
    assert resp.rules == ["red-shirts"]
    assert resp.stages == ["retrieve", "fuse", "rank", "collapse", "diversify", "page"]
    # kNN returns every product, so every style but none of the hidden one's is a group.
    assert resp.total_counts == "groups"
    assert resp.total == len({f["style"] for i, f in PRODUCTS if i != "p00"})
    ids = [h.id for h in resp.hits]
    assert "p00" not in ids  # hidden by the rule
    assert ids[1] == "p13" and resp.hits[1].pinned == 2  # pinned by the rule
    styles = [h.group for h in resp.hits]
    assert len(set(styles)) == len(styles)  # one hit per style
    for hit in resp.hits:
        r = hit.ranking
        assert r is not None and hit.explain is not None
        if hit.pinned is None:
            assert r.relevance == pytest.approx(sum(p.contribution for p in hit.explain.values()))
        expected = min(2.0, max(0.0, 1 + math.fsum(b.term for b in r.boosts)))
        assert r.multiplier == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert hit.score == r.final == r.relevance * r.multiplier
        for b in r.boosts:
            assert b.term == b.weight * b.factor
        assert hit.variants is not None and len(hit.variants) <= 2
        assert all(v.fields["style"] == hit.group for v in hit.variants)
        assert list(r.positions) == ["fuse", "rank", "collapse", "diversify"]
    # The facet counts groups after collapse, over the whole window.
    assert resp.facets is not None and sum(n for _, n in resp.facets["colour"]) == resp.total


def test_a_pin_the_filters_exclude_is_not_shown(shop: tuple[Searcher, str]) -> None:
    searcher, alias = shop
    flt = [{"op": "term", "field": "colour", "value": "red"}]
    resp = search(searcher, alias, size=10, filters=flt, collapse=None, diversify=None)
    assert "p13" not in [h.id for h in resp.hits]  # p13 is green
    assert all(h.fields["colour"] == "red" for h in resp.hits)
    off = search(searcher, alias, size=10, rules=False)
    assert off.rules == [] and all(h.pinned is None for h in off.hits)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"boosts": [{"type": "field", "field": "stock", "weight": 0.1}]}, "boosts[0].field"),
        ({"boosts": [{"type": "field", "field": "nope", "weight": 0.1}]}, "boosts[0].field"),
        (
            {
                "boosts": [
                    {"type": "decay", "field": "released", "origin": 3, "scale": 1, "weight": 0.1}
                ]
            },
            "boosts[0].origin",
        ),
        ({"collapse": {"field": "title"}}, "collapse.field"),
        ({"diversify": {"lambda": 0.5, "on": "popularity"}}, "diversify.on"),
        ({"facets": ["popularity"]}, "facets[0]"),
    ],
)
def test_bad_ranking_parameters_name_their_field(
    shop: tuple[Searcher, str], extra: dict[str, Any], field: str
) -> None:
    searcher, alias = shop
    with pytest.raises(InvalidInput) as err:
        search(searcher, alias, **extra)
    assert err.value.field == field


@hsettings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.sampled_from(["red shirt", "blue hat", "black bag wool", "sock", "green"]),
    size=st.integers(1, 7),
    collapse=st.booleans(),
    lam=st.one_of(st.none(), st.floats(0.0, 1.0)),
    boost=st.floats(-1.0, 1.0),
    rules=st.booleans(),
)
def test_pages_have_no_duplicates_and_no_gaps(
    shop: tuple[Searcher, str],
    text: str,
    size: int,
    collapse: bool,
    lam: float | None,
    boost: float,
    rules: bool,
) -> None:
    searcher, alias = shop
    extra: dict[str, Any] = {
        "text": text,
        "rules": rules,
        "explain": False,
        "facets": [],
        "collapse": {"field": "style", "inner": 1} if collapse else None,
        "diversify": {"lambda": lam, "on": "colour", "depth": 20} if lam is not None else None,
        "boosts": [
            {
                "type": "filter",
                "filter": {"op": "term", "field": "brand", "value": "bolt"},
                "weight": boost,
            }
        ],
    }
    whole = search(searcher, alias, size=5 * size, **extra)
    pages = [
        h.id
        for n in range(5)
        for h in search(searcher, alias, size=size, **extra, **{"from": n * size}).hits
    ]
    assert pages == [h.id for h in whole.hits]
    assert len(set(pages)) == len(pages)
    assert len(pages) == min(5 * size, whole.total)


@pytest.mark.opensearch
def test_the_same_ranking_on_lancedb_and_the_node(
    opensearch_url: str, tmp_path: Path, settings: Settings, vectors: Any
) -> None:
    """One request with boosts, a rule, collapse and MMR: the same ids, in the same order, with
    the same scores on both engines, page by page."""
    name = unique_name("rank")
    lance = Settings(data_dir=tmp_path / "lance", engine="lancedb", image_encoder="none")
    # BM25 with the index's statistics (dfs): on several shards (the cluster run), each shard's
    # own would score differently from LanceDB's one table; on one shard it changes nothing.
    node = opensearch_settings(
        opensearch_url, tmp_path / "os", image_encoder="none", opensearch_dfs=True
    )
    results: list[list[tuple[str, float, int | None, list[str]]]] = []
    for engine_settings in (lance, node):
        engine = open_engine(engine_settings)
        with dropped_after(engine, name):
            fill(engine, name, vectors)
            searcher = searcher_on(engine, engine_settings, settings)
            pages = [
                search(searcher, name, size=4, **{"from": start}).hits for start in range(0, 20, 4)
            ]
            results.append(
                [
                    (h.id, h.score, h.pinned, [v.id for v in h.variants or []])
                    for page in pages
                    for h in page
                ]
            )
        engine.close()
    lance_hits, node_hits = results
    assert [h[0] for h in lance_hits] == [h[0] for h in node_hits]
    assert [h[2:] for h in lance_hits] == [h[2:] for h in node_hits]
    assert [h[1] for h in lance_hits] == pytest.approx([h[1] for h in node_hits], rel=1e-5)
    assert len({h[0] for h in lance_hits}) == len(lance_hits) >= 10
