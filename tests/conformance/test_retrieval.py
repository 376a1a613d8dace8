"""BM25 with boosts and every typed filter, kNN with filters on text and image vectors,
several sub-searches at once, and facets: the same answers from every engine."""

from __future__ import annotations

from typing import Any

import pytest

from modalfuse.engines.base import Document, Engine, KnnQuery, LexicalQuery
from modalfuse.engines.filters import Exists, Filter, Range, Term, Terms
from tests.conformance.conftest import FIELDS, doc, ids, products, unit

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


def test_bm25_with_boosts_and_every_filter(engine: Engine, alias: str) -> None:
    engine.create(products(alias))
    assert not engine.upsert(alias, CURATED).failed
    engine.refresh(alias)

    def search(text: str, *filters: Filter, fields: dict[str, float] = FIELDS) -> list[str]:
        query = LexicalQuery(text=text, fields=fields, k=10, filters=list(filters))
        return ids(engine.lexical(alias, query))

    assert search("red dress") == ["dress-both", "dress-title", "dress-desc"]
    # The boost decides: on the description alone, the document with "red dress" in its
    # description wins over the one with it in its title.
    assert search("red dress", fields={"description": 1.0})[0] == "dress-both"
    assert search("red dress", fields={"title": 0.1, "description": 5.0})[:2] == [
        "dress-both",
        "dress-desc",
    ]
    assert search("red dress", Term(field="brand", value="Puma")) == ["dress-title"]
    assert search("red dress", Term(field="brand", value="Puma", negate=True)) == [
        "dress-both",
        "dress-desc",
    ]
    assert search("red dress", Range(field="price", lt=50)) == ["dress-title", "dress-desc"]
    assert search("red dress", Range(field="price", gte=30, lte=55)) == [
        "dress-both",
        "dress-title",
    ]
    assert search("red dress", Terms(field="tags", values=["sale", "winter"])) == ["dress-desc"]
    assert search("red dress", Terms(field="brand", values=["Nike", "Puma"], negate=True)) == [
        "dress-both"
    ]
    assert search("cotton", Exists(field="colour")) == ["shirt"]
    assert search("cotton", Exists(field="colour", negate=True)) == ["dress-title"]
    # A filter value is data, never query syntax: this brand exists literally on one document,
    # and values built to widen the match find nothing.
    assert search("red", Term(field="brand", value="x' OR '1'='1")) == ["dress-both"]
    assert search("red", Term(field="brand", value="Puma' OR brand:*")) == []
    assert search("red", Term(field="brand", value='Puma" OR "1"="1')) == []
    assert search("red", Terms(field="brand", values=["*", "%", "'; DROP TABLE x; --"])) == []
    hits = engine.lexical(alias, LexicalQuery(text="shirt", fields=FIELDS))
    assert hits[0].source is not None and "text_vector" not in hits[0].source


def vector_docs() -> list[Document]:
    """Twelve documents: text vectors near axis i % 8, image vectors near axis (i + 4) % 8."""
    return [
        Document(
            id=f"p{i}",
            version=1,
            fields={
                "title": f"product {i}",
                "brand": "A" if i < 6 else "B",
                "price": float(i * 10),
                **({"colour": "Red"} if i % 3 == 0 else {}),
            },
            vectors={"text_vector": unit(i), "image_vector": unit(i + 4)},
        )
        for i in range(12)
    ]


@pytest.mark.parametrize("field,shift", [("text_vector", 0), ("image_vector", 4)])
def test_knn_with_filters_on_text_and_image_vectors(
    engine: Engine, alias: str, field: str, shift: int
) -> None:
    engine.create(products(alias))
    assert not engine.upsert(alias, vector_docs()).failed
    engine.refresh(alias)

    def knn(axis: int, *filters: Filter, k: int = 3) -> list[str]:
        query = KnnQuery(
            field=field, vector=unit(axis + shift), k=k, filters=list(filters), ef_search=50
        )
        return ids(engine.knn(alias, query))

    # p1 and p9 share axis 1 (9 % 8); p1 is the only one on it with brand A.
    assert sorted(knn(1, k=2)) == ["p1", "p9"]
    assert knn(1, Term(field="brand", value="A"), k=1) == ["p1"]
    assert knn(1, Term(field="brand", value="B"), k=1) == ["p9"]
    # Filtering happens inside the search: k hits come back even when the nearest are excluded.
    filtered = knn(1, Term(field="brand", value="A", negate=True), k=4)
    assert len(filtered) == 4 and filtered[0] == "p9" and all(int(i[1:]) >= 6 for i in filtered)
    assert knn(0, Range(field="price", gte=50, lt=90), k=5)[0] == "p8"
    assert set(knn(0, Exists(field="colour"), k=10)) == {"p0", "p3", "p6", "p9"}
    assert knn(2, Terms(field="brand", values=["no such brand"])) == []
    hits = engine.knn(alias, KnnQuery(field=field, vector=unit(3 + shift), k=2, ef_search=50))
    assert sorted(ids(hits)) == ["p11", "p3"] and hits[0].score > hits[1].score - 1e-6 > 0


def test_sub_searches_at_once_match_one_at_a_time(engine: Engine, alias: str) -> None:
    engine.create(products(alias))
    assert not engine.upsert(alias, vector_docs()).failed
    assert not engine.upsert(alias, CURATED).failed
    engine.refresh(alias)
    subs: list[LexicalQuery | KnnQuery] = [
        LexicalQuery(text="shirt", fields=FIELDS),
        LexicalQuery(text="red dress", fields=FIELDS, k=2),
        KnnQuery(field="text_vector", vector=unit(2), k=3),
        KnnQuery(
            field="image_vector", vector=unit(6), k=1, filters=[Term(field="brand", value="A")]
        ),
        LexicalQuery(text="nothing matches this", fields=FIELDS),
    ]
    together = engine.search_many(alias, subs)
    alone = [
        engine.lexical(alias, s) if isinstance(s, LexicalQuery) else engine.knn(alias, s)
        for s in subs
    ]
    assert [ids(r) for r in together] == [ids(r) for r in alone]
    assert ids(together[0]) == ["shirt"] and ids(together[1]) == ["dress-both", "dress-title"]
    assert ids(together[3]) == ["p2"] and together[4] == []


def test_facets(engine: Engine, alias: str, catalogue: list[tuple[str, dict[str, Any]]]) -> None:
    engine.create(products(alias))
    rows = catalogue[:300]
    assert not engine.upsert(alias, [Document(id=i, version=1, fields=f) for i, f in rows]).failed
    engine.refresh(alias)
    counts = engine.facets(alias, ["category", "gender"], size=5)
    for field in ("category", "gender"):
        expected: dict[str, int] = {}
        for _, f in rows:
            if f.get(field) is not None:
                expected[str(f[field])] = expected.get(str(f[field]), 0) + 1
        top = sorted(expected.items(), key=lambda kv: -kv[1])[:5]
        assert [c for _, c in counts[field]] == [c for _, c in top]
        assert all(expected[v] == c for v, c in counts[field])
