"""The query layer on every engine, on real data (the bundled catalogue with MiniLM vectors):
client-side hybrid with explain and stable paging, server-side hybrid where the engine has it
(the same ids in the same order as client-side), and the query log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from modalfuse.engines.base import Document, Engine, LexicalQuery, ServerSideFusion
from modalfuse.engines.filters import Term
from modalfuse.engines.opensearch import OpenSearchEngine
from modalfuse.errors import InvalidInput
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.query.fusion import head, min_max
from modalfuse.query.querylog import QueryLogger
from modalfuse.query.request import SearchRequest
from modalfuse.query.searcher import Searcher
from modalfuse.settings import Settings
from tests.conformance.conftest import FIELDS, ids, products

pytestmark = pytest.mark.needs_export
Catalogue = list[tuple[str, dict[str, Any]]]
QUERIES = ["black watch", "red dress for women", "running shoes", "blue denim jeans", "handbag"]


@pytest.fixture(scope="session")
def title_vectors(
    catalogue: Catalogue, minilm_fp32: Path, settings: Settings
) -> NDArray[np.float32]:
    encoder = OnnxEncoder(minilm_fp32, settings=settings)
    return encoder.encode_texts([f.get("title", "") for _, f in catalogue])


@pytest.fixture
def searcher(
    engine: Engine,
    engine_settings: Settings,
    alias: str,
    settings: Settings,
    catalogue: Catalogue,
    title_vectors: NDArray[np.float32],
) -> Iterator[Searcher]:
    engine.create(products(alias, text_dim=384, image_dim=None))
    docs = [
        Document(id=i, version=1, fields=f, vectors={"text_vector": v})
        for (i, f), v in zip(catalogue, title_vectors, strict=True)
    ]
    assert not engine.upsert(alias, docs).failed
    engine.refresh(alias)
    # The query encoder is the MiniLM export the session made.
    s = engine_settings.model_copy(update={"model_cache_dir": settings.models_dir})
    yield Searcher(s, engine=engine)


def request(alias: str, text: str, **extra: Any) -> SearchRequest:
    base = {"index": alias, "text": text, "retrievers": ["lexical", "text_vector"], "window": 50}
    return SearchRequest.model_validate(base | extra)


def test_client_side_hybrid_explains_and_pages_stably(searcher: Searcher, alias: str) -> None:
    for text in QUERIES:
        whole = searcher.search(request(alias, text, size=30, explain=True, fusion="rrf"))
        assert whole.retrievers == ["lexical", "text_vector"] and len(whole.hits) == 30
        lists = searcher.retrieve(request(alias, text))
        ranks: dict[str, dict[str, int]] = {
            name: {h.id: r for r, h in enumerate(hits, 1)} for name, hits in lists.items()
        }
        for hit in whole.hits:
            assert hit.explain is not None and hit.explain.keys() <= {"lexical", "text_vector"}
            for name, part in hit.explain.items():
                assert part.rank == ranks[name][hit.id]
                assert part.contribution == pytest.approx(1 / (60 + part.rank))
            assert hit.score == pytest.approx(sum(p.contribution for p in hit.explain.values()))
        # Pages are slices of one fused list: changing `from` never reorders earlier pages.
        paged = [
            h.id
            for start in range(0, 30, 10)
            for h in searcher.search(
                request(alias, text, size=10, fusion="rrf", **{"from": start})
            ).hits
        ]
        assert paged == [h.id for h in whole.hits]
        assert all(h.fields.get("title") for h in whole.hits)


def test_auto_fusion_by_default_explains_its_weights(searcher: Searcher, alias: str) -> None:
    for text in QUERIES:
        resp = searcher.search(request(alias, text, size=20, explain=True))
        assert resp.fusion == "auto" and resp.fusion_weights is not None
        # BM25's half is scaled by how much of its top 10 the vector list's top 10 holds.
        lists = searcher.retrieve(request(alias, text))
        lexical_top = {h.id for h in head(lists["lexical"])}  # ties at the 10th included
        held = len(lexical_top & {h.id for h in head(lists["text_vector"])})
        assert {n: v.weight for n, v in resp.fusion_weights.items()} == {
            "lexical": pytest.approx(0.5 * min(1.0, 0.3 + held / len(lexical_top))),
            "text_vector": 0.5,
        }
        assert f"{held} of its top {len(lexical_top)} are in" in resp.fusion_weights["lexical"].why
        assert all("1 of 2 equal votes" in v.why for v in resp.fusion_weights.values())
        for hit in resp.hits:
            parts = hit.explain or {}
            assert hit.score == pytest.approx(sum(p.contribution for p in parts.values()))
            assert all(p.normalized is not None and 0 < p.normalized <= 1 for p in parts.values())
        paged = [
            h.id
            for start in (0, 10)
            for h in searcher.search(request(alias, text, size=10, **{"from": start})).hits
        ]
        assert paged == [h.id for h in resp.hits]


def test_filters_apply_inside_every_retriever(searcher: Searcher, alias: str) -> None:
    women = Term(field="gender", value="Women")
    resp = searcher.search(request(alias, "black watch", filters=[women], size=20))
    assert len(resp.hits) == 20 and all(h.fields["gender"] == "Women" for h in resp.hits)
    for name, hits in searcher.retrieve(request(alias, "black watch", filters=[women])).items():
        assert len(hits) == 50, name
    direct = searcher.engine.lexical(
        alias, LexicalQuery(text="black watch", fields=FIELDS, k=5, filters=[women])
    )
    lexical = searcher.search(
        request(alias, "black watch", filters=[women], retrievers=["lexical"])
    )
    assert [h.id for h in lexical.hits[:5]] == ids(direct)


def test_lexical_fields_narrow_bm25_only(searcher: Searcher, alias: str) -> None:
    title_only = searcher.retrieve(
        request(alias, "black watch", retrievers=["lexical"], lexical_fields=["title"])
    )["lexical"]
    direct = searcher.engine.lexical(
        alias, LexicalQuery(text="black watch", fields={"title": FIELDS["title"]}, k=50)
    )
    # Equal scores on a replicated index come in each shard copy's own order, and the two
    # reads may be routed to different copies: the same scores, the same ids within each tie
    # (the last tie may be cut at k in different places).
    assert [h.score for h in title_only] == [h.score for h in direct]
    assert tie_groups(title_only)[:-1] == tie_groups(direct)[:-1]
    # The bundled products have no descriptions: BM25 over that field alone finds nothing.
    described = searcher.retrieve(
        request(alias, "black watch", retrievers=["lexical"], lexical_fields=["description"])
    )
    assert title_only and described["lexical"] == []
    # The vectors are untouched: the same vector list with or without the restriction.
    with_it = searcher.retrieve(request(alias, "black watch", lexical_fields=["title"]))
    without = searcher.retrieve(request(alias, "black watch"))
    assert ids(with_it["text_vector"]) == ids(without["text_vector"])
    with pytest.raises(InvalidInput, match="not a text field of the index: 'gender'") as e:
        searcher.search(request(alias, "black watch", lexical_fields=["title", "gender"]))
    assert e.value.field == "lexical_fields"


def shard_local_fusion(searcher: Searcher, req: SearchRequest, shards: int) -> list[float]:
    """The fused scores neural-search computes on a multi-shard index, from each shard's own
    lists. Each sub-search runs once over the whole index, on the shard copies the server
    query was routed to (the same preference), deep enough to hold every shard's top window;
    `explain` names each hit's shard, and each shard's list keeps that copy's tie order."""
    from modalfuse.engines.opensearch import queries

    engine = searcher.engine
    assert isinstance(engine, OpenSearchEngine)
    prepared = searcher._prepare(req, {}, [])
    weights = [float(req.weights.get(p.name, 1.0)) for p in prepared[3]]
    assert req.index is not None
    subs = [engine._with_ef(req.index, q) for q in prepared[5]]  # as the server query has them
    routing = queries.preference(subs)
    per_shard: list[list[list[tuple[str, float]]]] = [[] for _ in range(shards)]
    for sub in subs:
        body = queries.search_body(sub) | {"size": 1000, "_source": False, "explain": True}
        if "knn" in body["query"]:
            field = next(iter(body["query"]["knn"]))
            body["query"]["knn"][field]["k"] = req.window  # per shard, as in the hybrid query
        found = engine.client.search(index=req.index, body=body, params={"preference": routing})
        lists: list[list[tuple[str, float]]] = [[] for _ in range(shards)]
        for h in found["hits"]["hits"]:
            shard = int(str(h["_shard"]).rsplit("[", 1)[1].rstrip("]"))
            if len(lists[shard]) < req.window:
                lists[shard].append((h["_id"], float(h["_score"])))
        for shard in range(shards):
            per_shard[shard].append(lists[shard])
    fused: dict[str, float] = {}
    if req.fusion == "rrf":
        for lists in per_shard:
            for w, hits in zip(weights, lists, strict=True):
                for rank, (doc, _) in enumerate(hits, 1):
                    fused[doc] = fused.get(doc, 0.0) + w / (req.k + rank)
    else:
        for i in range(len(subs)):
            pooled = [hit for lists in per_shard for hit in lists[i]]
            normed = min_max([score for _, score in pooled])
            for (doc, _), n in zip(pooled, normed, strict=True):
                fused[doc] = fused.get(doc, 0.0) + weights[i] * n / sum(weights)
    return sorted(fused.values(), reverse=True)


def tie_groups(hits: list[Any]) -> list[list[str]]:
    """Hits as runs of equal score, ids sorted within a run: OpenSearch orders equal fused
    scores by its internal Lucene doc id, which no client sees, so only the order inside a
    tie may differ between the two paths."""
    groups: list[tuple[float, list[str]]] = []
    for h in hits:
        if groups and h.score == pytest.approx(groups[-1][0], rel=1e-6, abs=1e-9):
            groups[-1][1].append(h.id)
        else:
            groups.append((h.score, [h.id]))
    return [sorted(members) for _, members in groups]


@pytest.mark.server_side_fusion
@pytest.mark.parametrize("fusion", ["rrf", "minmax", "zscore", "auto"])
def test_server_side_hybrid_matches_client_side(
    searcher: Searcher, alias: str, fusion: str
) -> None:
    engine = searcher.engine
    if not isinstance(engine, ServerSideFusion):
        with pytest.raises(InvalidInput, match="cannot fuse server-side") as err:
            searcher.search(request(alias, "red dress", fusion=fusion, server_side=True))
        assert err.value.field == "server_side"
        return
    if fusion == "auto":
        # A pipeline cannot express auto: said plainly, never answered with another fusion.
        with pytest.raises(InvalidInput, match="cannot express auto") as err:
            searcher.search(request(alias, "red dress", server_side=True))
        assert err.value.field == "fusion"
        return
    if fusion == "zscore" and getattr(engine, "server_version", lambda: (3, 0))() < (3, 0):
        # Said plainly rather than answered with another fusion.
        with pytest.raises(InvalidInput, match="cannot fuse zscore server-side") as err:
            searcher.search(request(alias, "red dress", fusion=fusion, server_side=True))
        assert err.value.field == "fusion"
        return
    shards = engine.primary_shards(alias) if isinstance(engine, OpenSearchEngine) else 1
    ties = 0
    for text in QUERIES:
        common = {"fusion": fusion, "size": 40}
        client = searcher.search(request(alias, text, **common)).hits
        answer = searcher.search(request(alias, text, server_side=True, **common))
        server = answer.hits
        if shards > 1:
            # neural-search fuses each shard's lists (RRF ranks within a shard; min-max over
            # every shard's window): the server answers exactly that model, and says so.
            assert any(f"on {shards} shards" in w for w in answer.warnings)
            expected = shard_local_fusion(searcher, request(alias, text, **common), shards)
            # The last places may differ where a shard's list is cut inside a score tie.
            assert [h.score for h in server[:30]] == pytest.approx(expected[:30], rel=1e-5)
            continue
        # The last run may be cut by the page end differently on each side: compare the rest.
        assert tie_groups(server)[:-1] == tie_groups(client)[:-1], text
        assert [h.score for h in server] == pytest.approx([h.score for h in client], rel=1e-5)
        ties += sum(a.id != b.id for a, b in zip(server, client, strict=True))
        # Server-side pages are slices of one fused list, as client-side ones are.
        paged = [
            h.id
            for start in (0, 10, 20)
            for h in searcher.search(
                request(alias, text, server_side=True, fusion=fusion, size=10, **{"from": start})
            ).hits
        ]
        assert paged == [h.id for h in server[:30]], text
    print(f"{fusion}: {ties} of {40 * len(QUERIES)} positions differ, all inside score ties")


@pytest.mark.server_side_fusion
def test_server_side_weights_where_the_server_supports_them(searcher: Searcher, alias: str) -> None:
    weights = {"lexical": 0.3, "text_vector": 0.7}
    if not isinstance(searcher.engine, ServerSideFusion):
        # Weights apply client-side; asking this engine to fuse is refused, not ignored.
        weighted = searcher.search(request(alias, "black watch", weights=weights, explain=True))
        top = weighted.hits[0].explain or {}
        assert sum(p.contribution for p in top.values()) == pytest.approx(weighted.hits[0].score)
        with pytest.raises(InvalidInput, match="cannot fuse server-side"):
            searcher.search(request(alias, "black watch", weights=weights, server_side=True))
        return
    weights = {"lexical": 0.3, "text_vector": 0.7}
    common = {"fusion": "minmax", "weights": weights, "size": 10}
    client = searcher.search(request(alias, "black watch", **common))
    server = searcher.search(request(alias, "black watch", server_side=True, **common))
    engine = searcher.engine
    shards = engine.primary_shards(alias) if isinstance(engine, OpenSearchEngine) else 1
    if shards > 1:
        expected = shard_local_fusion(searcher, request(alias, "black watch", **common), shards)
        assert [h.score for h in server.hits] == pytest.approx(expected[:10], rel=1e-5)
        return  # weighted RRF on several shards: the same per-shard model, tested above
    assert [h.id for h in server.hits] == [h.id for h in client.hits]
    rrf = request(alias, "black watch", weights=weights, server_side=True, fusion="rrf")
    version = getattr(searcher.engine, "server_version", lambda: (3, 0))()
    if version < (3, 0):
        with pytest.raises(InvalidInput, match="cannot weight RRF server-side") as err:
            searcher.search(rrf)
        assert err.value.field == "weights"
    else:
        client_rrf = searcher.search(rrf.model_copy(update={"server_side": False}))
        assert [h.id for h in searcher.search(rrf).hits] == [h.id for h in client_rrf.hits]


def test_server_side_fusion_is_a_detected_capability(searcher: Searcher, alias: str) -> None:
    """Where the cluster has neural-search, a server-side request fuses; where it has not, it
    is a 422 on `server_side` that names the missing plugin (not a 502 from the pipeline)."""
    engine = searcher.engine
    if not isinstance(engine, ServerSideFusion):
        return  # LanceDB: refused by engine, test_server_side_hybrid_matches_client_side
    problem = engine.server_fusion_problem()
    fused = request(alias, "black watch", fusion="rrf", server_side=True)
    if problem is None:
        assert searcher.search(fused).hits
        return
    assert "lacks the neural-search plugin" in problem
    with pytest.raises(InvalidInput, match="lacks the neural-search plugin") as err:
        searcher.search(fused)
    assert err.value.field == "server_side"


def test_query_log_records_every_search(searcher: Searcher, alias: str) -> None:
    logger = QueryLogger(searcher.engine, flush_every_s=60)
    searcher.logger = logger
    try:
        for text in QUERIES[:3]:
            searcher.search(request(alias, text, explain=True))
    finally:
        logger.close()
    assert (logger.written, logger.dropped) == (3, 0)
    records = searcher.engine.recent_queries(limit=10)
    mine = [r for r in records if r["index"] == alias]
    assert sorted(r["query"] for r in mine) == sorted(QUERIES[:3])
    assert all(r["retrievers"] == ["lexical", "text_vector"] and r["hits"] == 10 for r in mine)
