"""The OpenSearch engine over real HTTP with the real client, against osmem-server.

osmem has no knn or hybrid (those are covered by the contract and live suites), and its BM25
scores differ from OpenSearch's by a constant factor: these tests compare orders, not scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modalfuse.engines.base import Deletion, Document, KnnQuery, LexicalQuery
from modalfuse.engines.filters import Exists, Range, Term, Terms
from modalfuse.engines.opensearch import OpenSearchEngine
from modalfuse.errors import ConfigError, EngineUnavailable, IndexNotFound, RetrievalError
from modalfuse.mappings.schema import ResolvedSchema, load_schema, parse_schema, resolve
from modalfuse.settings import Settings

FIELDS = {"title": 2.0, "description": 1.0}


@pytest.fixture
def engine(osmem_clone: Any, tmp_path: Path) -> Iterator[OpenSearchEngine]:
    eng = OpenSearchEngine(
        Settings(data_dir=tmp_path, opensearch_url=osmem_clone.url, bulk_chunk_docs=7)
    )
    yield eng
    eng.close()


def schema_named(name: str) -> ResolvedSchema:
    raw = load_schema().model_dump() | {"name": name}
    return resolve(parse_schema(raw), {"text": 4})


def doc(doc_id: str, version: int = 1, **fields: Any) -> Document:
    return Document(id=doc_id, version=version, fields=fields)


def ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


def test_versioned_indices_behind_an_alias(engine: OpenSearchEngine) -> None:
    resolved = schema_named("shop-life")
    assert engine.create(resolved) == "shop-life-v1"
    assert engine.alias_target("shop-life") == "shop-life-v1"
    assert engine.create(resolved) == "shop-life-v2"
    assert engine.alias_target("shop-life") == "shop-life-v1"  # a new version waits for swap

    engine.upsert("shop-life", [doc("a", title="old index")])
    engine.refresh("shop-life")
    stats = engine.stats("shop-life")
    assert (stats.alias, stats.index, stats.documents) == ("shop-life", "shop-life-v1", 1)
    assert stats.vector_fields == {"text_vector": 4}
    assert stats.versions == ["shop-life-v1", "shop-life-v2"]

    swapped = engine.swap("shop-life", "shop-life-v2", keep_old=True)
    assert (swapped.previous, swapped.current, swapped.dropped) == (
        "shop-life-v1",
        "shop-life-v2",
        None,
    )
    assert engine.stats("shop-life").documents == 0  # reads follow the alias at once
    with pytest.raises(ConfigError, match="current index of alias 'shop-life'"):
        engine.drop("shop-life-v2")
    assert engine.create(resolved) == "shop-life-v3"
    dropped = engine.swap("shop-life", "shop-life-v3", keep_old=False)
    assert dropped.dropped == "shop-life-v2"
    assert engine.versions("shop-life") == ["shop-life-v1", "shop-life-v3"]
    assert engine.drop("shop-life-v1") == ["shop-life-v1"]
    with pytest.raises(IndexNotFound):
        engine.swap("shop-life", "shop-life-v9")
    assert engine.drop("shop-life") == ["shop-life-v3"]
    assert engine.alias_target("shop-life") is None


def test_bulk_upsert_delete_and_stale_versions(engine: OpenSearchEngine) -> None:
    engine.create(schema_named("shop-writes"))
    docs = [doc(str(i), version=10, title=f"item {i}", price=float(i)) for i in range(20)]
    result = engine.upsert("shop-writes", docs)  # 3 bulk chunks of at most 7
    assert sorted(result.written, key=int) == [str(i) for i in range(20)]
    assert not result.stale and not result.failed

    stale = engine.upsert(
        "shop-writes",
        [doc("3", version=9, title="stale"), doc("4", version=10, title="same version wins")],
    )
    assert (stale.stale, stale.written) == (["3"], ["4"])
    bad = engine.upsert(
        "shop-writes",
        [doc("x", version=1, nope="unknown field"), doc("y", version=1, title="fine")],
    )
    assert bad.written == ["y"]
    [error] = bad.failed
    assert error.doc_id == "x" and not error.transient
    assert "strict" in str(error)

    deleted = engine.delete(
        "shop-writes",
        [Deletion(id="5", version=11), Deletion(id="6", version=2), Deletion(id="404", version=1)],
    )
    assert sorted(deleted.written) == ["404", "5"] and deleted.stale == ["6"]
    resurrect = engine.upsert("shop-writes", [doc("5", version=10, title="older than the delete")])
    assert resurrect.stale == ["5"]
    engine.refresh("shop-writes")
    assert engine.stats("shop-writes").documents == 20  # 20 - "5" + "y"
    hits = engine.lexical("shop-writes", LexicalQuery(text="item", fields={"title": 1.0}, k=50))
    assert "5" not in ids(hits) and "3" in ids(hits)
    assert engine.lexical("shop-writes", LexicalQuery(text="stale", fields={"title": 1.0})) == []


CURATED = [
    doc(
        "dress-title",
        title="Red dress",
        description="cotton",
        brand="Puma",
        tags=["summer"],
        price=30.0,
    ),
    doc(
        "dress-desc",
        title="Summer top",
        description="goes with a red dress",
        brand="Nike",
        tags=["summer", "sale"],
        price=15.0,
    ),
    doc(
        "dress-both",
        title="Red dress",
        description="red dress, red belt",
        brand="x' OR '1'='1",
        price=55.0,
    ),
    doc("shirt", title="Blue shirt", description="cotton", brand="Puma", colour="Blue", price=20.0),
]


def test_bm25_with_boosts_and_filters(engine: OpenSearchEngine) -> None:
    engine.create(schema_named("shop-bm25"))
    assert not engine.upsert("shop-bm25", CURATED).failed
    engine.refresh("shop-bm25")

    def search(text: str, *filters: Any) -> list[str]:
        return ids(
            engine.lexical(
                "shop-bm25", LexicalQuery(text=text, fields=FIELDS, k=10, filters=list(filters))
            )
        )

    assert search("red dress") == ["dress-both", "dress-title", "dress-desc"]
    assert search("red dress", Term(field="brand", value="Puma")) == ["dress-title"]
    assert search("red dress", Term(field="brand", value="Puma", negate=True)) == [
        "dress-both",
        "dress-desc",
    ]
    assert search("red dress", Range(field="price", lt=50)) == ["dress-title", "dress-desc"]
    assert search("red dress", Terms(field="tags", values=["sale", "winter"])) == ["dress-desc"]
    assert search("cotton", Exists(field="colour")) == ["shirt"]
    assert search("cotton", Exists(field="colour", negate=True)) == ["dress-title"]
    # A filter value is data, never query syntax: this brand exists literally on one document,
    # and a value built to widen the match finds nothing.
    assert search("red", Term(field="brand", value="x' OR '1'='1")) == ["dress-both"]
    assert search("red", Term(field="brand", value="Puma' OR brand:*")) == []
    hits = engine.lexical("shop-bm25", LexicalQuery(text="shirt", fields=FIELDS))
    assert hits[0].source is not None and "text_vector" not in hits[0].source


def test_msearch_runs_sub_searches_in_order(engine: OpenSearchEngine) -> None:
    engine.create(schema_named("shop-msearch"))
    engine.upsert("shop-msearch", CURATED)
    engine.refresh("shop-msearch")
    results = engine.search_many(
        "shop-msearch",
        [
            LexicalQuery(text="shirt", fields=FIELDS),
            LexicalQuery(text="red dress", fields=FIELDS, k=2),
            LexicalQuery(text="nothing matches this", fields=FIELDS),
        ],
    )
    assert [ids(r) for r in results] == [["shirt"], ["dress-both", "dress-title"], []]
    # osmem has no knn: the error comes back typed, naming the sub-search.
    with pytest.raises(RetrievalError, match="sub-search 0 failed"):
        engine.search_many("shop-msearch", [KnnQuery(field="text_vector", vector=[1.0, 0, 0, 0])])


def test_sample_catalogue_bm25(
    engine: OpenSearchEngine, catalogue: list[tuple[str, dict[str, Any]]]
) -> None:
    engine.create(schema_named("shop-sample"))
    result = engine.upsert(
        "shop-sample", [Document(id=i, version=1, fields=f) for i, f in catalogue]
    )
    assert len(result.written) == len(catalogue) and not result.failed
    engine.refresh("shop-sample")
    women = [Term(field="gender", value="Women")]
    hits = engine.lexical(
        "shop-sample", LexicalQuery(text="black watch", fields=FIELDS, k=10, filters=women)
    )
    assert len(hits) == 10
    for h in hits:
        assert h.source is not None and h.source["gender"] == "Women"
    assert "watch" in str((hits[0].source or {})["title"]).lower()


def test_unreachable_engine_is_transient(tmp_path: Path) -> None:
    eng = OpenSearchEngine(
        Settings(data_dir=tmp_path, opensearch_url="http://127.0.0.1:9", opensearch_timeout_s=2)
    )
    with pytest.raises(EngineUnavailable, match="cannot reach OpenSearch"):
        eng.upsert("x", [doc("1", title="t")])
    with pytest.raises(EngineUnavailable):
        eng.lexical("x", LexicalQuery(text="t", fields={"title": 1.0}))


def test_searcher_client_side_fusion_over_msearch(
    engine: OpenSearchEngine, catalogue: list[tuple[str, dict[str, Any]]]
) -> None:
    """The query layer on OpenSearch: schema from the index's _meta, sub-searches in one
    _msearch, fusion in Python (osmem has no knn, so the retrievers here are lexical)."""
    from modalfuse.query.request import SearchRequest
    from modalfuse.query.searcher import Searcher

    engine.create(schema_named("shop-query"))
    engine.upsert("shop-query", [Document(id=i, version=1, fields=f) for i, f in catalogue])
    engine.refresh("shop-query")
    assert engine.schema_of("shop-query").vectors["text_vector"].dim == 4
    searcher = Searcher(engine._settings, engine=engine)
    women = Term(field="gender", value="Women")
    resp = searcher.search(
        SearchRequest(
            index="shop-query",
            text="black watch",
            retrievers=["lexical"],
            filters=[women],
            explain=True,
            size=5,
        )
    )
    direct = engine.lexical(
        "shop-query", LexicalQuery(text="black watch", fields=FIELDS, k=5, filters=[women])
    )
    assert [h.id for h in resp.hits] == ids(direct)
    assert [h.explain["lexical"].rank for h in resp.hits if h.explain] == [1, 2, 3, 4, 5]
    assert all(h.fields["gender"] == "Women" for h in resp.hits)


def test_fusion_defaults_and_facets_over_http(engine: OpenSearchEngine) -> None:
    engine.create(schema_named("fz"))
    docs = [
        doc("1", title="Red dress", category="Dresses", gender="Women"),
        doc("2", title="Blue dress", category="Dresses", gender="Women"),
        doc("3", title="Black shoe", category="Shoes", gender="Men"),
    ]
    assert not engine.upsert("fz", docs).failed
    engine.refresh("fz")
    assert engine.fusion_defaults("fz") is None
    config = {"fusion": "minmax", "k": 60, "weights": {"lexical": 0.3}, "window": 50}
    physical = engine.set_fusion_defaults("fz", config)
    assert physical == "fz-v1"
    assert engine.fusion_defaults("fz") == config
    # The schema in _meta survived the mapping update.
    assert engine.schema_of("fz").schema.name == "fz"
    engine.set_fusion_defaults("fz", None)
    assert engine.fusion_defaults("fz") is None
    counts = engine.facets("fz", ["category", "gender"])
    assert counts == {
        "category": [("Dresses", 2), ("Shoes", 1)],
        "gender": [("Women", 2), ("Men", 1)],
    }
    # Hits never carry the bookkeeping write time, though the index has it.
    (hit,) = engine.lexical("fz", LexicalQuery(text="black", fields=FIELDS))
    assert hit.source is not None and "modalfuse_indexed_at" not in hit.source
    assert "modalfuse_indexed_at" not in engine.fetch("fz", ["3"])["3"]
