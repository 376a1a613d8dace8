"""OpenSearch index bodies, index templates and search pipelines derived from a schema.

Pure functions returning dicts: the contract tests validate them against the official API
spec and compare them as exact dicts.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

from modalfuse.errors import SchemaError
from modalfuse.mappings.analysis import PRE_ANALYZED, pre_analyzed, shadow_field
from modalfuse.mappings.schema import (
    Analyzer,
    DateField,
    FieldSpec,
    ImageField,
    IndexOptions,
    KeywordField,
    NumberField,
    ResolvedSchema,
    ResolvedVector,
    Schema,
    StoredKind,
    TextField,
    VectorField,
)

SPACE_TYPE = {"dot": "innerproduct", "cosine": "cosinesimil"}
CJK_NGRAM = "modalfuse_cjk_ngram"
# Plugin component names as `_cat/plugins` reports them.
SMARTCN, ICU = "analysis-smartcn", "analysis-icu"


def analyzer_name(analyzer: Analyzer, plugins: Collection[str] = ()) -> str:
    """The OpenSearch analyzer for a schema analyzer choice, given the installed plugins."""
    if analyzer == "cjk":
        if SMARTCN in plugins:
            return "smartcn"
        if ICU in plugins:
            return "icu_analyzer"
        return CJK_NGRAM
    return analyzer


def _analysis(resolved: ResolvedSchema, plugins: Collection[str]) -> dict[str, Any] | None:
    uses_ngram = any(
        analyzer_name(f.analyzer, plugins) == CJK_NGRAM for f in resolved.schema.text_fields
    )
    if not uses_ngram:
        return None
    # Unigrams plus bigrams: recall of single-character words, precision from the bigrams,
    # the usual fallback for CJK text without a segmenter.
    return {
        "tokenizer": {
            CJK_NGRAM: {
                "type": "ngram",
                "min_gram": 1,
                "max_gram": 2,
                "token_chars": ["letter", "digit"],
            }
        },
        "analyzer": {
            CJK_NGRAM: {
                "type": "custom",
                "tokenizer": CJK_NGRAM,
                "filter": ["cjk_width", "lowercase"],
            }
        },
    }


def field_mapping(
    spec: FieldSpec, resolved: ResolvedSchema, plugins: Collection[str] = ()
) -> dict[str, Any]:
    if isinstance(spec, TextField):
        if spec.analyzer in PRE_ANALYZED:
            return {"type": "text", "index": False}  # searched through its tokens' field
        return {"type": "text", "analyzer": analyzer_name(spec.analyzer, plugins)}
    if isinstance(spec, KeywordField):
        return {"type": "keyword", "ignore_above": 1024}
    if isinstance(spec, NumberField):
        return {"type": spec.number_type}
    if isinstance(spec, DateField):
        return {"type": "date"}
    if isinstance(spec, ImageField):
        # A reference (path or URL) kept for display; never searched, so not indexed.
        return {"type": "keyword", "index": False, "doc_values": False}
    if isinstance(spec, VectorField):
        return knn_vector(spec, resolved.vectors[spec.name].dim)
    raise AssertionError(f"unhandled field {spec!r}")  # pragma: no cover


SQ_ENCODER: dict[str, dict[str, Any]] = {
    "lucene": {"name": "sq"},
    "faiss": {"name": "sq", "parameters": {"type": "fp16"}},
}


def knn_vector(spec: VectorField, dim: int) -> dict[str, Any]:
    hnsw = spec.hnsw
    parameters: dict[str, Any] = {"m": hnsw.m, "ef_construction": hnsw.ef_construction}
    if hnsw.quantization == "sq":
        parameters["encoder"] = SQ_ENCODER[hnsw.engine]
    return {
        "type": "knn_vector",
        "dimension": dim,
        "method": {
            "name": "hnsw",
            "engine": hnsw.engine,
            "space_type": SPACE_TYPE[spec.similarity],
            "parameters": parameters,
        },
    }


def index_settings(resolved: ResolvedSchema, plugins: Collection[str] = ()) -> dict[str, Any]:
    opts = resolved.schema.index
    index: dict[str, Any] = {
        "knn": True,
        "number_of_shards": opts.shards,
        "number_of_replicas": opts.replicas,
    }
    ef_search = [v.field.hnsw.ef_search for v in resolved.vectors.values()]
    if ef_search:
        # faiss reads ef_search from this index setting; lucene takes it per query instead.
        index["knn.algo_param.ef_search"] = max(ef_search)
    if opts.refresh_interval is not None:
        index["refresh_interval"] = opts.refresh_interval
    if opts.replication == "segment":
        index["replication.type"] = "SEGMENT"
    out: dict[str, Any] = {"index": index}
    analysis = _analysis(resolved, plugins)
    if analysis:
        out["analysis"] = analysis
    return out


def restored_after_load(current: Mapping[str, Any], own: IndexOptions) -> dict[str, Any]:
    """The index settings that give a bulk-loaded index its own replicas and refresh interval
    back (None resets the interval to the server's), given its current `settings.index`."""
    body: dict[str, Any] = {}
    if int(current["number_of_replicas"]) != own.replicas:
        body["number_of_replicas"] = own.replicas
    if current.get("refresh_interval") != own.refresh_interval:
        body["refresh_interval"] = own.refresh_interval
    return body


# When a document was last written (set by the bulk writer): the Dashboards ingest-rate chart.
INDEXED_AT = "modalfuse_indexed_at"


def mappings(resolved: ResolvedSchema, plugins: Collection[str] = ()) -> dict[str, Any]:
    return {
        # Documents are validated against the schema before writing; anything else is a bug.
        "dynamic": "strict",
        # The schema travels with the index, so workers and queries need no other copy of it.
        "_meta": {
            "modalfuse_schema": resolved.schema.model_dump(mode="json"),
            "modalfuse_dims": {name: v.dim for name, v in resolved.vectors.items()},
        },
        "properties": {
            **{f.name: field_mapping(f, resolved, plugins) for f in resolved.stored_fields()},
            # Pre-analysed text (mappings/analysis.py): the tokens, split on spaces as they are.
            **{
                shadow_field(name): {"type": "text", "analyzer": "whitespace"}
                for name in pre_analyzed(resolved.schema.text_fields)
            },
            INDEXED_AT: {"type": "date"},
        },
    }


def meta_key(kind: StoredKind) -> str:
    """Where an index's stored `kind` settings sit in its mapping's `_meta`."""
    return f"modalfuse_{kind}"


FUSION_META = meta_key("fusion")


def stored_meta_body(
    current_meta: Mapping[str, Any], kind: StoredKind, value: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The put-mapping body that stores `value` as the index's `kind` settings (None clears
    them).

    `_meta` is replaced as a whole by a mapping update, so the schema and the other stored
    settings already in it are carried over unchanged.
    """
    meta = {k: v for k, v in current_meta.items() if k != meta_key(kind)}
    if value is not None:
        meta[meta_key(kind)] = dict(value)
    return {"_meta": meta}


def schema_from_meta(meta: dict[str, Any]) -> ResolvedSchema:
    """Recover the resolved schema from an index mapping's `_meta`."""
    if "modalfuse_schema" not in meta:
        raise SchemaError("index was not created by modalfuse (no schema in its _meta)")
    schema = Schema.model_validate(meta["modalfuse_schema"])
    dims = meta.get("modalfuse_dims", {})
    vectors = {
        f.name: ResolvedVector(field=f, dim=int(dims[f.name]))
        for f in schema.of_type(VectorField)
        if f.name in dims
    }
    return ResolvedSchema(schema=schema, vectors=vectors)


DEAD_LETTER_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": {"type": "keyword"},
        "index": {"type": "keyword"},
        "doc_id": {"type": "keyword"},
        "message": {"type": "text", "index": False},
        "error_type": {"type": "keyword"},
        "field": {"type": "keyword"},
        "reason": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 512}}},
        "attempts": {"type": "integer"},
        "time": {"type": "date"},
    },
}


LATENCY_STAGES = (
    "encode_text",
    "encode_text_to_image",
    "encode_image",
    "retrieve",
    "fuse",
    "fetch",
    "total",
)
QUERY_LOG_MAPPING: dict[str, Any] = {
    "properties": {
        "time": {"type": "date"},
        "index": {"type": "keyword"},
        "query": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}},
        "has_image": {"type": "boolean"},
        "filters": {"type": "keyword", "ignore_above": 1024},
        "retrievers": {"type": "keyword"},
        "fusion": {"type": "keyword"},
        # Per-stage latencies: stage -> milliseconds. The known stages are mapped as floats up
        # front; dynamic mapping would make a first whole-number value a `long`.
        "latency_ms": {
            "type": "object",
            "dynamic": True,
            "properties": {stage: {"type": "float"} for stage in LATENCY_STAGES},
        },
        "total_ms": {"type": "float"},
        "hits": {"type": "integer"},
        "top_ids": {"type": "keyword"},
        "zero_results": {"type": "boolean"},
        "top_contributors": {"type": "keyword"},
    }
}


def index_body(
    resolved: ResolvedSchema, plugins: Collection[str] = (), *, alias: str | None = None
) -> dict[str, Any]:
    """The `PUT <index>` body; with `alias`, the new index joins that alias atomically."""
    body: dict[str, Any] = {
        "settings": index_settings(resolved, plugins),
        "mappings": mappings(resolved, plugins),
    }
    if alias is not None:
        body["aliases"] = {alias: {}}
    return body


def index_template(
    resolved: ResolvedSchema, plugins: Collection[str] = (), *, priority: int = 100
) -> dict[str, Any]:
    """An index template matching every physical version `<alias>-v*` of the schema's index."""
    return {
        "index_patterns": [f"{resolved.name}-v*"],
        "priority": priority,
        "template": {
            "settings": index_settings(resolved, plugins),
            "mappings": mappings(resolved, plugins),
        },
        "_meta": {"managed_by": "modalfuse"},
    }


def rrf_pipeline(
    *, rank_constant: int = 60, weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """A search pipeline fusing `hybrid` sub-queries with RRF (score-ranker-processor, 2.19+).

    Per-query weights need OpenSearch 3.0+; they are sent only when not all equal to 1.
    """
    combination: dict[str, Any] = {"technique": "rrf", "rank_constant": rank_constant}
    if weights is not None and any(w != 1.0 for w in weights):
        combination["parameters"] = {"weights": list(weights)}
    return {
        "description": "modalfuse: reciprocal-rank fusion of hybrid sub-queries",
        "phase_results_processors": [{"score-ranker-processor": {"combination": combination}}],
    }


def normalization_pipeline(
    *,
    technique: Literal["min_max", "z_score"] = "min_max",
    weights: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Score-normalisation fusion: per-list min-max or z-score, then a weighted arithmetic mean.

    The processor takes weights summing to 1; a weighted mean is the same for any scaling of
    its weights, so they are sent divided by their sum. z_score needs OpenSearch 3.0+.
    """
    combination: dict[str, Any] = {"technique": "arithmetic_mean"}
    if weights is not None:
        total = math.fsum(weights)
        if not total > 0:
            raise SchemaError(f"normalisation weights must sum to more than 0, got {list(weights)}")
        combination["parameters"] = {"weights": [w / total for w in weights]}
    return {
        "description": f"modalfuse: {technique} normalisation, weighted arithmetic mean",
        "phase_results_processors": [
            {
                "normalization-processor": {
                    "normalization": {"technique": technique},
                    "combination": combination,
                }
            }
        ],
    }
