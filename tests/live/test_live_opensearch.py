"""Against a real OpenSearch 2.19+ cluster (with k-NN and neural-search): set OPENSEARCH_URL.

    OPENSEARCH_URL=https://localhost:9200 MODALFUSE_OPENSEARCH_USER=admin \\
    MODALFUSE_OPENSEARCH_PASSWORD=... MODALFUSE_OPENSEARCH_VERIFY_CERTS=false \\
    .venv/bin/python -m pytest tests/live -m live

Covers what osmem cannot: knn with an efficient filter, msearch mixing BM25 and knn, and
server-side hybrid through RRF and normalisation search pipelines.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modalfuse.engines.base import Document, KnnQuery, LexicalQuery
from modalfuse.engines.filters import Term
from modalfuse.engines.opensearch import OpenSearchEngine
from modalfuse.mappings import opensearch as m
from modalfuse.mappings.schema import load_schema, parse_schema, resolve
from modalfuse.settings import Settings

URL = os.environ.get("OPENSEARCH_URL")
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not URL, reason="OPENSEARCH_URL is not set: no live OpenSearch cluster"),
]
DIM = 8


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[OpenSearchEngine, str]]:
    alias = f"modalfuse-live-{uuid.uuid4().hex[:8]}"
    eng = OpenSearchEngine(Settings(data_dir=tmp_path, opensearch_url=URL or ""))
    eng.create(resolve(parse_schema(load_schema().model_dump() | {"name": alias}), {"text": DIM}))
    yield eng, alias
    eng.drop(alias)
    eng.close()


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


def test_knn_filter_msearch_and_hybrid(engine: tuple[OpenSearchEngine, str]) -> None:
    eng, alias = engine
    docs = [
        Document(
            id=str(i),
            version=1,
            fields={
                "title": f"red dress {i}" if i % 2 else f"blue shirt {i}",
                "brand": "A" if i < 4 else "B",
            },
            vectors={"text_vector": unit(i)},
        )
        for i in range(8)
    ]
    assert not eng.upsert(alias, docs).failed
    eng.refresh(alias)

    hits = eng.knn(alias, KnnQuery(field="text_vector", vector=unit(5), k=3))
    assert hits[0].id == "5"
    filtered = eng.knn(
        alias,
        KnnQuery(
            field="text_vector", vector=unit(5), k=3, filters=[Term(field="brand", value="A")]
        ),
    )
    assert filtered and all(int(h.id) < 4 for h in filtered)

    lex = LexicalQuery(text="red dress", fields={"title": 1.0}, k=4)
    knn = KnnQuery(field="text_vector", vector=unit(2), k=4)
    bm25_hits, knn_hits = eng.search_many(alias, [lex, knn])
    assert {h.id for h in bm25_hits} <= {"1", "3", "5", "7"} and knn_hits[0].id == "2"

    eng.put_pipeline(f"{alias}-rrf", m.rrf_pipeline(rank_constant=60))
    fused = eng.hybrid(alias, [lex, knn], pipeline=f"{alias}-rrf", size=5, window=8)
    assert {h.id for h in fused} >= {"2"}
    eng.put_pipeline(f"{alias}-minmax", m.normalization_pipeline(technique="min_max"))
    page1 = eng.hybrid(alias, [lex, knn], pipeline=f"{alias}-minmax", size=2, window=8)
    page2 = eng.hybrid(alias, [lex, knn], pipeline=f"{alias}-minmax", size=2, window=8, from_=2)
    assert not {h.id for h in page1} & {h.id for h in page2}


@pytest.mark.needs_export
def test_client_and_server_side_hybrid_agree(
    tmp_path: Path,
    settings: Settings,
    minilm_fp32: Path,
    catalogue: list[tuple[str, dict[str, Any]]],
) -> None:
    """The same request fused in Python (one msearch) and in the cluster (hybrid + pipeline)."""
    from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
    from modalfuse.query.request import SearchRequest
    from modalfuse.query.searcher import Searcher

    alias = f"modalfuse-live-{uuid.uuid4().hex[:8]}"
    s = Settings(data_dir=tmp_path, model_cache_dir=settings.models_dir, opensearch_url=URL or "")
    eng = OpenSearchEngine(s)
    eng.create(resolve(parse_schema(load_schema().model_dump() | {"name": alias}), {"text": 384}))
    try:
        rows = catalogue[:500]
        vectors = OnnxEncoder(minilm_fp32, settings=s).encode_texts(
            [f.get("title", "") for _, f in rows]
        )
        docs = [
            Document(id=i, version=1, fields=f, vectors={"text_vector": v})
            for (i, f), v in zip(rows, vectors, strict=True)
        ]
        assert not eng.upsert(alias, docs).failed
        eng.refresh(alias)
        searcher = Searcher(s, engine=eng)
        for fusion in ("rrf", "minmax"):
            base = {
                "index": alias,
                "text": "red dress",
                "retrievers": ["lexical", "text_vector"],
                "fusion": fusion,
                "window": 50,
                "size": 10,
            }
            client = searcher.search(SearchRequest.model_validate(base))
            server = searcher.search(SearchRequest.model_validate(base | {"server_side": True}))
            assert [h.id for h in client.hits] == [h.id for h in server.hits], fusion
    finally:
        eng.drop(alias)
