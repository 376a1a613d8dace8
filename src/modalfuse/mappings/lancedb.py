"""The LanceDB table layout derived from a schema: Arrow columns and full-text index options."""

from __future__ import annotations

import json
from typing import Any, Literal

import pyarrow as pa

from modalfuse.errors import SchemaError
from modalfuse.mappings.analysis import pre_analyzed, shadow_field
from modalfuse.mappings.schema import (
    Analyzer,
    DateField,
    FieldSpec,
    ImageField,
    KeywordField,
    NumberField,
    ResolvedSchema,
    ResolvedVector,
    Schema,
    TextField,
    VectorField,
)

# Bookkeeping columns. Deletes are kept as tombstone rows (`_deleted`) so that a stale upsert
# arriving after a newer delete cannot bring the document back; `optimize()` purges them.
ID, VERSION, DELETED, UPDATED_AT = "id", "_version", "_deleted", "_updated_at"
METRIC: dict[str, Literal["dot", "cosine"]] = {"dot": "dot", "cosine": "cosine"}
SCHEMA_META, DIMS_META = b"modalfuse_schema", b"modalfuse_dims"
_NUMBERS = {
    "float": pa.float32(),
    "double": pa.float64(),
    "integer": pa.int32(),
    "long": pa.int64(),
}


def column_type(spec: FieldSpec, resolved: ResolvedSchema) -> pa.DataType:
    if isinstance(spec, TextField | ImageField):
        return pa.string()
    if isinstance(spec, KeywordField):
        return pa.list_(pa.string()) if spec.multi else pa.string()
    if isinstance(spec, NumberField):
        return _NUMBERS[spec.number_type]
    if isinstance(spec, DateField):
        return pa.timestamp("us", tz="UTC")
    if isinstance(spec, VectorField):
        return pa.list_(pa.float32(), resolved.vectors[spec.name].dim)
    raise AssertionError(f"unhandled field {spec!r}")  # pragma: no cover


def arrow_schema(resolved: ResolvedSchema) -> pa.Schema:
    columns = [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(VERSION, pa.int64(), nullable=False),
        pa.field(DELETED, pa.bool_(), nullable=False),
        pa.field(UPDATED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
    ]
    columns += [
        pa.field(f.name, column_type(f, resolved), nullable=True) for f in resolved.stored_fields()
    ]
    # Pre-analysed text fields keep their tokens beside them (mappings/analysis.py).
    columns += [
        pa.field(shadow_field(name), pa.string(), nullable=True)
        for name in pre_analyzed(resolved.schema.text_fields)
    ]
    meta = {
        SCHEMA_META: resolved.schema.model_dump_json().encode(),
        DIMS_META: json.dumps({name: v.dim for name, v in resolved.vectors.items()}).encode(),
    }
    return pa.schema(columns, metadata=meta)


def schema_from_arrow(arrow: pa.Schema) -> ResolvedSchema:
    """Recover the schema a table was created from (kept in the Arrow schema's metadata)."""
    meta = arrow.metadata or {}
    if SCHEMA_META not in meta:
        raise SchemaError("table was not created by modalfuse (no schema in its metadata)")
    schema = Schema.model_validate_json(meta[SCHEMA_META])
    dims: dict[str, int] = json.loads(meta.get(DIMS_META, b"{}"))
    vectors = {
        name: ResolvedVector(field=f, dim=dims[name])
        for f in schema.of_type(VectorField)
        if (name := f.name) in dims
    }
    return ResolvedSchema(schema=schema, vectors=vectors)


DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("index", pa.string(), nullable=False),
        pa.field("doc_id", pa.string()),
        pa.field("message", pa.string(), nullable=False),
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


QUERY_LOG_SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("index", pa.string()),
        pa.field("query", pa.string()),
        pa.field("has_image", pa.bool_()),
        pa.field("filters", pa.string()),
        pa.field("retrievers", pa.list_(pa.string())),
        pa.field("fusion", pa.string()),
        pa.field("latency_ms", pa.string()),
        pa.field("total_ms", pa.float64()),
        pa.field("hits", pa.int32()),
        pa.field("top_ids", pa.list_(pa.string())),
        pa.field("zero_results", pa.bool_()),
        pa.field("top_contributors", pa.list_(pa.string())),
    ]
)


def fts_options(analyzer: Analyzer) -> dict[str, Any]:
    """Keyword arguments for `lancedb.index.FTS` that approximate each analyzer choice."""
    if analyzer == "english":
        return {
            "base_tokenizer": "simple",
            "language": "English",
            "stem": True,
            "remove_stop_words": True,
            "lower_case": True,
            "ascii_folding": True,
        }
    if analyzer == "chinese":
        # The tokens were made in Python (mappings/analysis.py): split on the spaces, as they are.
        return {
            "base_tokenizer": "whitespace",
            "stem": False,
            "remove_stop_words": False,
            "lower_case": False,
            "ascii_folding": False,
        }
    if analyzer == "cjk":
        # The same unigram+bigram fallback as the OpenSearch n-gram analyzer.
        return {
            "base_tokenizer": "ngram",
            "ngram_min_length": 1,
            "ngram_max_length": 2,
            "stem": False,
            "remove_stop_words": False,
            "lower_case": True,
            "ascii_folding": False,
        }
    # OpenSearch's standard analyzer: lowercase, no stemming, no stop words.
    return {
        "base_tokenizer": "simple",
        "stem": False,
        "remove_stop_words": False,
        "lower_case": True,
        "ascii_folding": True,
    }
