"""Bulk writes in Smile (the default) against the real node: it reads every kind of value back
as the NDJSON path writes it, indexes the vectors, and fails a bad document alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modalfuse.engines.base import Document
from modalfuse.engines.opensearch import OpenSearchEngine
from modalfuse.mappings.opensearch import INDEXED_AT
from modalfuse.mappings.schema import load_schema, parse_schema, resolve
from tests.conftest import dropped_after, opensearch_settings, unique_name

pytestmark = pytest.mark.opensearch

RNG = np.random.default_rng(11)


def vector(dims: int = 8) -> np.ndarray:
    v = RNG.standard_normal(dims).astype(np.float32)
    return v / np.linalg.norm(v)


FIELDS: list[dict[str, Any]] = [
    {
        "title": "连衣裙 summer dress 👗",
        "description": "a long description " * 20,
        "tags": ["a", "连衣裙", ""],
        "brand": "é",
        "category": "c" * 70,
        "price": 12.5,
        "year": 2026,
    },
    {"title": "navy blue shirt", "price": 0.001, "year": -16, "tags": []},
    {"title": "红色 运动鞋", "description": "", "price": 1e30, "year": 2**31 - 1},
]


def stored(engine: OpenSearchEngine, alias: str, doc_id: str) -> dict[str, Any]:
    return dict(engine.client.get(index=alias, id=doc_id)["_source"])


def test_smile_bulk_writes_read_back_as_json_writes_them(
    opensearch_url: str, tmp_path: Path
) -> None:
    vectors = [vector() for _ in FIELDS]
    docs = [
        Document(id=f"d{i}", version=1, fields=f, vectors={"text_vector": v})
        for i, (f, v) in enumerate(zip(FIELDS, vectors, strict=True))
    ]
    bad = Document(id="bad", version=1, fields={"title": "x"}, vectors={"text_vector": vector(7)})
    sources = {}
    for fmt in ("smile", "json"):
        s = opensearch_settings(opensearch_url, tmp_path, opensearch_bulk_format=fmt)
        alias = unique_name(f"bulk-{fmt}")
        schema = parse_schema(load_schema().model_dump() | {"name": alias})
        with OpenSearchEngine(s) as engine, dropped_after(engine, alias):
            engine.create(resolve(schema, {"text": 8}))
            # Smile unless the index derives its vectors' source (k-NN 3.x), where k-NN up to
            # 3.3 reads only JSON.
            derives = engine.server_version() >= (3, 0)
            assert engine.bulk_format(alias) == ("json" if fmt == "json" or derives else "smile")
            result = engine.upsert(alias, [docs[0], bad, *docs[1:]])
            # The bad vector fails alone, named by its id and the field; the rest are written.
            assert sorted(result.written) == ["d0", "d1", "d2"], result.failed
            assert [e.doc_id for e in result.failed] == ["bad"]
            assert "text_vector" in str(result.failed[0]) and not result.failed[0].transient
            engine.refresh(alias)
            sources[fmt] = {d.id: stored(engine, alias, d.id) for d in docs}
            # The vectors are indexed, not only stored: each is its own nearest neighbour.
            for d, v in zip(docs, vectors, strict=True):
                hits = engine.client.search(
                    index=alias,
                    body={"size": 1, "query": {"knn": {"text_vector": {"vector": v, "k": 1}}}},
                )["hits"]["hits"]
                assert hits[0]["_id"] == d.id
            hits = engine.client.search(index=alias, body={"query": {"match": {"title": "shirt"}}})[
                "hits"
            ]["hits"]
            assert [h["_id"] for h in hits] == ["d1"]
    smile, as_json = sources["smile"], sources["json"]
    for d, v in zip(docs, vectors, strict=True):
        for source in (smile[d.id], as_json[d.id]):
            # Every float32 comes back as the same float32, every other field as it went in.
            assert np.array_equal(np.asarray(source.pop("text_vector"), dtype=np.float32), v)
            assert source.pop(INDEXED_AT).startswith("20")
            assert source == d.fields
