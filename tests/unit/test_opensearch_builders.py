"""OpenSearch request builders as exact dicts (the spec cannot pin these down on its own)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from modalfuse.engines.base import Deletion, Document, KnnQuery, LexicalQuery
from modalfuse.engines.filters import Exists, Filter, Range, Term, Terms
from modalfuse.engines.opensearch import bulk, queries
from modalfuse.engines.opensearch.engine import copies_to_wait_for
from modalfuse.errors import RetrievalError
from modalfuse.mappings import opensearch as m
from modalfuse.mappings.schema import ResolvedSchema, load_schema, parse_schema, resolve


def test_index_body_for_the_default_schema(resolved_products: ResolvedSchema) -> None:
    body = m.index_body(resolved_products)
    assert body["settings"] == {
        "index": {
            "knn": True,
            "number_of_shards": 1,
            "number_of_replicas": 0,
            "knn.algo_param.ef_search": 100,
        }
    }
    props = body["mappings"]["properties"]
    assert body["mappings"]["dynamic"] == "strict"
    assert props["title"] == {"type": "text", "analyzer": "english"}
    assert props["tags"] == {"type": "keyword", "ignore_above": 1024}
    assert props["price"] == {"type": "float"}
    assert props["image"] == {"type": "keyword", "index": False, "doc_values": False}
    assert props["text_vector"] == {
        "type": "knn_vector",
        "dimension": 384,
        "method": {
            "name": "hnsw",
            "engine": "faiss",
            "space_type": "innerproduct",
            "parameters": {"m": 16, "ef_construction": 128},
        },
    }
    assert props["image_vector"]["dimension"] == 512
    assert "aliases" not in body
    assert m.index_body(resolved_products, alias="products")["aliases"] == {"products": {}}


def cjk_schema(**vector: Any) -> ResolvedSchema:
    return resolve(
        parse_schema(
            {
                "name": "docs",
                "fields": [
                    {"name": "body", "type": "text", "analyzer": "cjk"},
                    {
                        "name": "v",
                        "type": "vector",
                        "encoder": "text",
                        "sources": ["body"],
                        **vector,
                    },
                ],
                "index": {"shards": 3, "replicas": 1, "refresh_interval": "5s"},
            }
        ),
        {"text": 8},
    )


def test_cjk_analyzer_uses_plugins_when_present_else_ngrams() -> None:
    resolved = cjk_schema(
        similarity="cosine",
        hnsw={"engine": "lucene", "m": 32, "ef_construction": 256, "ef_search": 50},
    )
    plain = m.index_body(resolved)
    assert plain["mappings"]["properties"]["body"] == {"type": "text", "analyzer": m.CJK_NGRAM}
    assert plain["settings"]["analysis"]["tokenizer"][m.CJK_NGRAM] == {
        "type": "ngram",
        "min_gram": 1,
        "max_gram": 2,
        "token_chars": ["letter", "digit"],
    }
    assert plain["settings"]["index"] == {
        "knn": True,
        "number_of_shards": 3,
        "number_of_replicas": 1,
        "knn.algo_param.ef_search": 50,
        "refresh_interval": "5s",
    }
    assert plain["mappings"]["properties"]["v"]["method"] == {
        "name": "hnsw",
        "engine": "lucene",
        "space_type": "cosinesimil",
        "parameters": {"m": 32, "ef_construction": 256},
    }
    smartcn = m.index_body(resolved, {m.SMARTCN, m.ICU})
    assert smartcn["mappings"]["properties"]["body"]["analyzer"] == "smartcn"
    assert "analysis" not in smartcn["settings"]
    icu = m.index_body(resolved, {m.ICU})
    assert icu["mappings"]["properties"]["body"]["analyzer"] == "icu_analyzer"


@pytest.mark.parametrize(
    ("engine", "encoder"),
    [("lucene", {"name": "sq"}), ("faiss", {"name": "sq", "parameters": {"type": "fp16"}})],
)
def test_scalar_quantisation_names_the_engines_encoder(engine: str, encoder: Any) -> None:
    resolved = cjk_schema(hnsw={"engine": engine, "quantization": "sq"})
    method = m.index_body(resolved)["mappings"]["properties"]["v"]["method"]
    assert method["parameters"] == {"m": 16, "ef_construction": 128, "encoder": encoder}


def test_index_template(resolved_products: ResolvedSchema) -> None:
    template = m.index_template(resolved_products)
    assert template["index_patterns"] == ["products-v*"]
    assert template["priority"] == 100
    assert template["template"] == {
        "settings": m.index_settings(resolved_products),
        "mappings": m.mappings(resolved_products),
    }


def test_pipelines() -> None:
    assert m.rrf_pipeline() == {
        "description": "modalfuse: reciprocal-rank fusion of hybrid sub-queries",
        "phase_results_processors": [
            {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}
        ],
    }
    weighted = m.rrf_pipeline(rank_constant=20, weights=[0.7, 0.3])
    assert weighted["phase_results_processors"][0]["score-ranker-processor"]["combination"] == {
        "technique": "rrf",
        "rank_constant": 20,
        "parameters": {"weights": [0.7, 0.3]},
    }
    assert m.normalization_pipeline(technique="z_score", weights=[0.4, 0.6])[
        "phase_results_processors"
    ] == [
        {
            "normalization-processor": {
                "normalization": {"technique": "z_score"},
                "combination": {
                    "technique": "arithmetic_mean",
                    "parameters": {"weights": [0.4, 0.6]},
                },
            }
        }
    ]


FILTERS: list[Filter] = [
    Term(field="brand", value="Puma"),
    Terms(field="tags", values=["summer", "sale"]),
    Range(field="price", gte=10, lt=50.5),
    Exists(field="colour", negate=True),
]


def test_bm25_with_boosts_and_filters() -> None:
    q = LexicalQuery(
        text="red dress", fields={"title": 2.0, "description": 1.0}, k=7, filters=FILTERS
    )
    assert queries.search_body(q, exclude=["text_vector"]) == {
        "query": {
            "bool": {
                "must": [
                    {
                        "multi_match": {
                            "query": "red dress",
                            "fields": ["title^2", "description"],
                            "type": "best_fields",
                            "tie_breaker": 0.5,
                        }
                    }
                ],
                "filter": [
                    {"term": {"brand": "Puma"}},
                    {"terms": {"tags": ["summer", "sale"]}},
                    {"range": {"price": {"gte": 10, "lt": 50.5}}},
                ],
                "must_not": [{"exists": {"field": "colour"}}],
            }
        },
        "size": 7,
        "_source": {"excludes": ["text_vector"]},
    }
    bare = queries.bm25_query(LexicalQuery(text="x", fields={"title": 1.5}))
    assert bare == {
        "multi_match": {
            "query": "x",
            "fields": ["title^1.5"],
            "type": "best_fields",
            "tie_breaker": 0.5,
        }
    }
    with pytest.raises(RetrievalError, match="at least one text field"):
        queries.bm25_query(LexicalQuery(text="x", fields={}))


def test_knn_with_efficient_filter() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    q = KnnQuery(
        field="text_vector",
        vector=np.array([0.5, -0.25], dtype=np.float32),
        k=5,
        filters=[Range(field="added", gte=when), Term(field="brand", value="x' OR '1'='1")],
        ef_search=3,
    )
    assert queries.knn_query(q) == {
        "knn": {
            "text_vector": {
                "vector": [0.5, -0.25],
                "k": 5,
                "filter": {
                    "bool": {
                        "filter": [
                            {"range": {"added": {"gte": "2024-01-01T00:00:00+00:00"}}},
                            {"term": {"brand": "x' OR '1'='1"}},
                        ]
                    }
                },
                # ef_search below k would return fewer than k neighbours
                "method_parameters": {"ef_search": 5},
            }
        }
    }
    assert queries.knn_query(KnnQuery(field="v", vector=[1.0], k=2)) == {
        "knn": {"v": {"vector": [1.0], "k": 2}}
    }


def test_msearch_and_hybrid() -> None:
    lex = LexicalQuery(text="dress", fields={"title": 1.0}, k=3)
    knn = KnnQuery(field="v", vector=[1.0, 0.0], k=4, filters=[Term(field="brand", value="a")])
    lines = queries.msearch_lines("products", [lex, knn])
    routing = queries.preference([lex, knn])
    assert lines == [
        {"index": "products", "preference": routing},
        {"query": queries.bm25_query(lex), "size": 3},
        {"index": "products", "preference": routing},
        {"query": queries.knn_query(knn), "size": 4},
    ]
    # With dfs, BM25 reads the index's term statistics; kNN has none to read.
    dfs = queries.msearch_lines("products", [lex, knn], dfs=True)
    assert dfs[0] == {"index": "products", "preference": routing, "search_type": queries.DFS}
    assert dfs[2] == {"index": "products", "preference": routing}
    # One key per query: the same sub-searches route alike, another query elsewhere.
    assert routing == queries.preference([lex, knn]) and routing.startswith("q")
    other = LexicalQuery(text="shirt", fields={"title": 1.0}, k=3)
    assert queries.preference([other, knn]) != routing
    body = queries.hybrid_body([lex, knn], size=10, window=50, from_=10, exclude=["v"])
    assert body == {
        "query": {
            "hybrid": {
                "queries": [
                    queries.bm25_query(lex),
                    {
                        "knn": {
                            "v": {
                                "vector": [1.0, 0.0],
                                "k": 50,
                                "filter": {"bool": {"filter": [{"term": {"brand": "a"}}]}},
                            }
                        }
                    },
                ],
                "pagination_depth": 50,
            }
        },
        "size": 10,
        "from": 10,
        "_source": {"excludes": ["v"]},
    }
    with pytest.raises(RetrievalError, match="window 15 is smaller than from \\+ size = 20"):
        queries.hybrid_body([lex], size=10, window=15, from_=10)


def test_bulk_actions_and_lines() -> None:
    doc = Document(
        id="42",
        version=7,
        fields={"title": "Red dress", "tags": ["a"]},
        vectors={"text_vector": np.array([0.5, 0.25], dtype=np.float32), "image_vector": None},
    )
    actions = bulk.upsert_actions("products", [doc]) + bulk.delete_actions(
        "products", [Deletion(id="9", version=8)]
    )
    # The vector stays a float32 array until the client's serializer writes it.
    vector = actions[0]["_source"].pop("text_vector")
    assert vector.dtype == np.float32 and vector.tolist() == [0.5, 0.25]
    actions[0]["_source"]["text_vector"] = [0.5, 0.25]
    assert actions == [
        {
            "_op_type": "index",
            "_index": "products",
            "_id": "42",
            "version": 7,
            "version_type": "external_gte",
            "_source": {"title": "Red dress", "tags": ["a"], "text_vector": [0.5, 0.25]},
        },
        {
            "_op_type": "delete",
            "_index": "products",
            "_id": "9",
            "version": 8,
            "version_type": "external_gte",
        },
    ]
    assert bulk.bulk_lines(actions) == [
        {
            "index": {
                "_id": "42",
                "_index": "products",
                "version": 7,
                "version_type": "external_gte",
            }
        },
        {"title": "Red dress", "tags": ["a"], "text_vector": [0.5, 0.25]},
        {
            "delete": {
                "_id": "9",
                "_index": "products",
                "version": 8,
                "version_type": "external_gte",
            }
        },
    ]


def test_vectors_go_on_the_wire_as_their_shortest_float32_repr() -> None:
    from modalfuse.engines.opensearch.connection import serializer

    vector = np.array([0.1, 1 / 3, -2.5e-8, 7.0], dtype=np.float32)
    doc = Document(id="1", version=1, fields={"title": "t"}, vectors={"v": vector})
    (action,) = bulk.upsert_actions("products", [doc])
    wire = serializer().dumps(action["_source"])
    # Not 0.10000000149011612 (the double repr of the float32 the stock serializer prints) ...
    assert wire == '{"title":"t","v":[0.1,0.33333334,-2.5e-8,7.0]}'
    # ... and it parses back to the same float32s, so the node stores what was encoded.
    parsed = np.array(json.loads(wire)["v"], dtype=np.float32)
    assert parsed.tobytes() == vector.tobytes()
    # Strings pass through (streaming_bulk serializes each line itself).
    assert serializer().dumps('{"a":1}') == '{"a":1}'


@pytest.mark.parametrize(
    ("ok", "item", "outcome", "transient"),
    [
        (True, {"index": {"_id": "1", "status": 201}}, "written", None),
        (
            False,
            {
                "index": {
                    "_id": "1",
                    "status": 409,
                    "error": {"type": "version_conflict_engine_exception"},
                }
            },
            "stale",
            None,
        ),
        (False, {"delete": {"_id": "1", "status": 404, "result": "not_found"}}, "written", None),
        (
            False,
            {
                "index": {
                    "_id": "1",
                    "status": 429,
                    "error": {"type": "es_rejected_execution_exception", "reason": "queue full"},
                }
            },
            "failed",
            True,
        ),
        (
            False,
            {
                "index": {
                    "_id": "1",
                    "status": 400,
                    "error": {"type": "mapper_parsing_exception", "reason": "bad"},
                }
            },
            "failed",
            False,
        ),
    ],
)
def test_classify_bulk_items(
    ok: bool, item: dict[str, Any], outcome: str, transient: bool | None
) -> None:
    got, doc_id, error = bulk.classify(ok, item)
    assert (got, doc_id) == (outcome, "1")
    if transient is None:
        assert error is None
    else:
        assert error is not None and error.transient is transient and error.doc_id == "1"


def test_parse_responses() -> None:
    response = {"hits": {"hits": [{"_id": "a", "_score": 1.5, "_source": {"title": "t"}}]}}
    [hit] = queries.parse_hits(response)
    assert (hit.id, hit.score, hit.source) == ("a", 1.5, {"title": "t"})
    with pytest.raises(RetrievalError, match="sub-search 1 failed: boom"):
        queries.parse_msearch({"responses": [response, {"error": {"reason": "boom"}}]})
    with pytest.raises(RetrievalError, match="unexpected search response"):
        queries.parse_hits({"nope": 1})


def test_default_schema_round_trips_through_dry_run_shape() -> None:
    resolved = resolve(load_schema(), {"text": 384})
    body = m.index_body(resolved)
    assert set(body) == {"settings", "mappings"}
    assert "image_vector" not in body["mappings"]["properties"]


def test_responses_are_parsed_exactly_as_the_standard_library_does() -> None:
    import json
    import math

    from modalfuse.engines.opensearch.connection import client_options
    from modalfuse.settings import Settings

    serializer = client_options(Settings(opensearch_url="http://127.0.0.1:9"))["serializer"]
    body = {"hits": {"hits": [{"_id": "a", "_score": 0.1 + 0.2, "_source": {"v": [1e-7, -2.5]}}]}}
    text = json.dumps(body)
    assert serializer.loads(text) == json.loads(text)
    assert math.isclose(serializer.loads(text)["hits"]["hits"][0]["_score"], 0.30000000000000004)
    assert serializer.dumps({"a": 1}) == '{"a":1}'  # requests as opensearch-py writes them
    from opensearchpy.exceptions import SerializationError

    with pytest.raises(SerializationError):
        serializer.loads("{not json")


def test_a_partial_answer_is_a_transient_failure() -> None:
    from modalfuse.errors import EngineUnavailable

    whole = {"_shards": {"total": 3, "failed": 0}, "hits": {"hits": [{"_id": "a", "_score": 1}]}}
    assert [h.id for h in queries.parse_hits(whole)] == ["a"]
    partial = {
        "_shards": {
            "total": 3,
            "failed": 1,
            "failures": [{"reason": {"type": "node_disconnected_exception"}}],
        },
        "hits": {"hits": [{"_id": "a", "_score": 1}]},
    }
    with pytest.raises(EngineUnavailable, match=r"1 of 3 shards failed \(node_disconnected"):
        queries.parse_hits(partial)
    with pytest.raises(EngineUnavailable):
        queries.parse_msearch({"responses": [whole, partial]})


def test_a_sub_search_a_lost_node_failed_is_transient() -> None:
    from modalfuse.errors import EngineUnavailable, RetrievalError

    lost = {"status": 503, "error": {"reason": "all shards failed"}}
    with pytest.raises(EngineUnavailable, match=r"sub-search 0 failed \(503\)"):
        queries.parse_msearch({"responses": [lost]})
    bad = {"status": 400, "error": {"reason": "failed to parse"}}
    with pytest.raises(RetrievalError, match="failed to parse"):
        queries.parse_msearch({"responses": [bad]})


@pytest.mark.parametrize(
    "replicas, data_nodes, wait", [(0, 1, 1), (1, 1, 1), (1, 3, 2), (2, 3, 3), (5, 3, 3), (0, 0, 1)]
)
def test_a_new_index_waits_for_the_copies_its_cluster_can_hold(
    replicas: int, data_nodes: int, wait: int
) -> None:
    assert copies_to_wait_for(replicas, data_nodes) == wait
