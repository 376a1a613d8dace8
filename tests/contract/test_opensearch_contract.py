"""Every OpenSearch request body modalfuse builds, validated against the official API spec."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from jsonschema.exceptions import ValidationError

from modalfuse.engines.base import Deletion, Document, KnnQuery, LexicalQuery
from modalfuse.engines.filters import Exists, Filter, Range, Term, Terms
from modalfuse.engines.opensearch import bulk, queries
from modalfuse.mappings import opensearch as m
from modalfuse.mappings.schema import IndexOptions, ResolvedSchema, parse_schema, resolve

Validate = Callable[[Any, str], None]  # the `validate` fixture of tests/contract/conftest.py
FILTERS: list[Filter] = [
    Term(field="brand", value="Puma"),
    Terms(field="tags", values=["a", "b"]),
    Range(field="price", gt=1.5, lte=20),
    Exists(field="colour", negate=True),
]
LEX = LexicalQuery(
    text="red dress", fields={"title": 2.0, "description": 1.0}, k=10, filters=FILTERS
)
KNN = KnnQuery(field="text_vector", vector=[0.1] * 384, k=20, filters=FILTERS, ef_search=200)
IMG = KnnQuery(field="image_vector", vector=np.full(512, 0.05, dtype=np.float32), k=20)


def cjk() -> ResolvedSchema:
    return resolve(
        parse_schema(
            {
                "name": "docs",
                "fields": [
                    {"name": "body", "type": "text", "analyzer": "cjk"},
                    {"name": "added", "type": "date"},
                    {
                        "name": "v",
                        "type": "vector",
                        "encoder": "text",
                        "sources": ["body"],
                        "similarity": "cosine",
                        "hnsw": {"engine": "lucene"},
                    },
                ],
                "index": {"refresh_interval": "1s"},
            }
        ),
        {"text": 16},
    )


def test_index_creation_bodies(validate: Validate, resolved_products: ResolvedSchema) -> None:
    for plugins in ((), (m.SMARTCN,), (m.ICU,)):
        validate(m.index_body(resolved_products, plugins, alias="products"), "indices.create")
        validate(m.index_body(cjk(), plugins), "indices.create")
        validate(m.index_template(resolved_products, plugins), "indices.put_index_template")
        validate(m.index_template(cjk(), plugins), "indices.put_index_template")
    mapping = m.index_body(resolved_products)["mappings"]["properties"]
    validate(mapping["text_vector"], "_common.mapping___KnnVectorProperty")
    validate(mapping["title"], "_common.mapping___TextProperty")


def test_search_bodies(validate: Validate) -> None:
    for q in (LEX, KNN, IMG):
        validate(queries.search_body(q, exclude=["text_vector", "image_vector"]), "search")
    validate(queries.knn_query(KNN)["knn"]["text_vector"], "_common.query_dsl___KnnQuery")
    dated = KnnQuery(
        field="v",
        vector=[1.0],
        filters=[Range(field="added", gte=datetime(2024, 1, 1, tzinfo=UTC))],
    )
    validate(queries.search_body(dated), "search")
    # Ids and scores, with the few fields ranking after fusion reads (a vector included).
    staged = dataclasses.replace(KNN, source=False, returned=("year", "style", "text_vector"))
    body = queries.search_body(staged)
    assert body["_source"] == {"includes": ["year", "style", "text_vector"]}
    validate(body, "search")
    validate(body, "_core.msearch___MultisearchBody")
    assert queries.search_body(dataclasses.replace(KNN, source=False))["_source"] is False
    by_ids = queries.ids_body(["a", "b"], ["text_vector"])
    assert by_ids == {
        "query": {"ids": {"values": ["a", "b"]}},
        "size": 2,
        "_source": {"includes": ["text_vector"]},
    }
    validate(by_ids, "search")


def test_msearch_lines(validate: Validate) -> None:
    lines = queries.msearch_lines("products", [LEX, KNN, IMG], exclude=["text_vector"])
    # The spec's msearch items are oneOf(header, body), and a body with no required keys matches
    # a header too, so the array as a whole can never validate; check each line by its role.
    headers, bodies = lines[0::2], lines[1::2]
    assert len(headers) == len(bodies) == 3
    for header in headers:
        validate(header, "_core.msearch___MultisearchHeader")
    for body in bodies:
        validate(body, "_core.msearch___MultisearchBody")
        validate(body, "search")


def test_hybrid_body(validate: Validate) -> None:
    body = queries.hybrid_body([LEX, KNN, IMG], size=10, window=100, from_=20, exclude=["v"])
    validate(body, "search")
    validate(body["query"]["hybrid"], "_common.query_dsl___HybridQuery")


@pytest.mark.parametrize(
    "pipeline",
    [
        m.rrf_pipeline(),
        m.rrf_pipeline(rank_constant=10, weights=[0.6, 0.4]),
        m.normalization_pipeline(),
        m.normalization_pipeline(technique="min_max", weights=[0.3, 0.7]),
    ],
)
def test_search_pipelines(validate: Validate, pipeline: dict[str, Any]) -> None:
    validate(pipeline, "search_pipeline.put")


def test_z_score_is_newer_than_the_spec(validate: Validate) -> None:
    """z_score normalisation arrived in neural-search 3.0; this spec build lists only l2 and
    min_max. Everything else in the body must still conform, so only the enum may fail."""
    body = m.normalization_pipeline(technique="z_score", weights=[0.3, 0.7])
    with pytest.raises(ValidationError):
        validate(body, "search_pipeline.put")
    processor = body["phase_results_processors"][0]["normalization-processor"]
    with pytest.raises(ValidationError, match="'z_score' is not one of \\['l2', 'min_max'\\]"):
        validate(
            processor["normalization"]["technique"],
            "search_pipeline._common___ScoreNormalizationTechnique",
        )
    processor["normalization"]["technique"] = "min_max"
    validate(body, "search_pipeline.put")


def test_bulk_lines(validate: Validate) -> None:
    docs = [
        Document(
            id="1",
            version=3,
            fields={"title": "t", "tags": ["a"]},
            vectors={"text_vector": np.ones(384, dtype=np.float32)},
        ),
        Document(id="2", version=4, fields={"title": "u"}),
    ]
    actions = bulk.upsert_actions("products", docs) + bulk.delete_actions(
        "products", [Deletion(id="3", version=5)]
    )
    lines = bulk.bulk_lines(actions)
    validate(lines, "bulk")
    # The spec accepts any object as a bulk line; check the action lines on their own schema.
    for line in (lines[0], lines[2], lines[4]):
        validate(line, "_core.bulk___OperationContainer")


def test_update_aliases_body(validate: Validate) -> None:
    body = {
        "actions": [
            {"remove": {"index": "products-v1", "alias": "products"}},
            {"add": {"index": "products-v2", "alias": "products"}},
        ]
    }
    validate(body, "indices.update_aliases")


@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({"knn": {"v": {"k": 3}}}, "_common.query_dsl___QueryContainer"),  # no vector
        (
            {
                "phase_results_processors": [
                    {
                        "score-ranker-processor": {
                            "combination": {"technique": "rrf", "rank_constant": 0}
                        }
                    }
                ]
            },
            "search_pipeline.put",
        ),
        (
            {
                "phase_results_processors": [
                    {"score-ranker-processor": {"combination": {"technique": "borda"}}}
                ]
            },
            "search_pipeline.put",
        ),
        (
            {"mappings": {"properties": {"v": {"type": "knn_vector"}}}},
            "indices.create",
        ),  # no dimension
        ({"query": {"hybrid": {"queries": "nope"}}}, "search"),
        ({"index": {"_id": "1", "version_type": "sideways"}}, "_core.bulk___OperationContainer"),
    ],
)
def test_the_validator_rejects_broken_bodies(validate: Validate, body: Any, target: str) -> None:
    with pytest.raises(ValidationError):
        validate(body, target)


def test_fusion_default_and_facet_bodies(
    validate: Validate, resolved_products: ResolvedSchema
) -> None:
    meta = m.index_body(resolved_products)["mappings"]["_meta"]
    config = {"fusion": "rrf", "k": 20, "weights": {"lexical": 0.5}, "window": 100}
    body = m.stored_meta_body(meta, "fusion", config)
    validate(body, "indices.put_mapping")
    # The schema travels on unchanged; clearing removes only the fusion entry.
    assert body["_meta"]["modalfuse_schema"] == meta["modalfuse_schema"]
    assert body["_meta"][m.FUSION_META] == config
    assert m.stored_meta_body(body["_meta"], "fusion", None) == {"_meta": meta}
    # Rules are stored beside the fusion default, and each kind clears on its own.
    rules = {"rules": [{"id": "r1", "query": "dress", "hide": ["7"]}]}
    both = m.stored_meta_body(body["_meta"], "rules", rules)
    validate(both, "indices.put_mapping")
    assert both["_meta"][m.meta_key("rules")] == rules
    assert both["_meta"][m.FUSION_META] == config
    assert m.stored_meta_body(both["_meta"], "rules", None) == body
    facets = queries.facets_body(["category", "gender"], size=20)
    validate(facets, "search")
    assert facets == {
        "size": 0,
        "track_total_hits": True,
        "aggs": {
            "category": {"terms": {"field": "category", "size": 20}},
            "gender": {"terms": {"field": "gender", "size": 20}},
        },
    }
    response = {"aggregations": {"category": {"buckets": [{"key": "Shirts", "doc_count": 3}]}}}
    assert queries.parse_facets(response, ["category", "gender"]) == {
        "category": [("Shirts", 3)],
        "gender": [],
    }


def test_documents_carry_their_write_time(resolved_products: ResolvedSchema) -> None:
    props = m.index_body(resolved_products)["mappings"]["properties"]
    assert props[m.INDEXED_AT] == {"type": "date"}
    doc = Document(id="1", version=3, fields={"title": "t"})
    (action,) = bulk.upsert_actions("products", [doc], indexed_at="2026-11-23T05:00:00+00:00")
    assert action["_source"] == {"title": "t", m.INDEXED_AT: "2026-11-23T05:00:00+00:00"}
    assert m.QUERY_LOG_MAPPING["properties"]["latency_ms"]["properties"]["retrieve"] == {
        "type": "float"
    }


def test_cluster_sizing_overrides_the_schema(resolved_products: ResolvedSchema) -> None:
    from modalfuse.engines.opensearch.engine import with_cluster_sizing
    from modalfuse.settings import Settings

    sized = with_cluster_sizing(
        resolved_products, Settings(opensearch_shards=3, opensearch_replicas=2)
    )
    settings = m.index_body(sized)["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == (3, 2)
    assert "refresh_interval" not in settings
    assert with_cluster_sizing(resolved_products, Settings()) is resolved_products
    bulk_load = with_cluster_sizing(resolved_products, Settings(opensearch_refresh_interval="30s"))
    assert m.index_body(bulk_load)["settings"]["index"]["refresh_interval"] == "30s"


def test_refresh_interval_setting_is_validated() -> None:
    from pydantic import ValidationError

    from modalfuse.settings import Settings

    with pytest.raises(ValidationError, match="opensearch_refresh_interval"):
        Settings(opensearch_refresh_interval="soon")


def test_a_bulk_load_creates_without_replicas_and_keeps_its_own_count_in_meta(
    resolved_products: ResolvedSchema,
) -> None:
    from modalfuse.engines.opensearch import OpenSearchEngine
    from modalfuse.settings import Settings

    s = Settings(opensearch_replicas=2, opensearch_load_replicas=0)
    body = OpenSearchEngine(s).create_body(resolved_products)  # the client is never opened
    assert body["settings"]["index"]["number_of_replicas"] == 0
    # What finish_load restores: the index's own count, as the stored schema records it.
    assert m.schema_from_meta(body["mappings"]["_meta"]).schema.index.replicas == 2
    plain = OpenSearchEngine(Settings(opensearch_replicas=2)).create_body(resolved_products)
    assert plain["settings"]["index"]["number_of_replicas"] == 2
    assert "refresh_interval" not in plain["settings"]["index"]


def test_a_bulk_load_creates_without_refreshes_and_keeps_its_own_interval_in_meta(
    resolved_products: ResolvedSchema,
) -> None:
    from modalfuse.engines.opensearch import OpenSearchEngine
    from modalfuse.settings import Settings

    s = Settings(opensearch_refresh_interval="5s", opensearch_load_refresh_interval="-1")
    body = OpenSearchEngine(s).create_body(resolved_products)
    assert body["settings"]["index"]["refresh_interval"] == "-1"
    own = m.schema_from_meta(body["mappings"]["_meta"]).schema.index
    assert own.refresh_interval == "5s"
    # What finish_load puts back, from the index's current settings and its own.
    assert m.restored_after_load(body["settings"]["index"], own) == {"refresh_interval": "5s"}
    plain_index = IndexOptions(replicas=1)
    assert m.restored_after_load({"number_of_replicas": "0"}, plain_index) == {
        "number_of_replicas": 1
    }
    # An index on the server's interval gets it back by a reset (null), not a value.
    loaded = {"number_of_replicas": "1", "refresh_interval": "-1"}
    assert m.restored_after_load(loaded, plain_index) == {"refresh_interval": None}
    assert m.restored_after_load({"number_of_replicas": "1"}, plain_index) == {}
