from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modalfuse.errors import InvalidDocument, SchemaError
from modalfuse.mappings.documents import validate_fields
from modalfuse.mappings.schema import (
    KeywordField,
    TextField,
    VectorField,
    load_schema,
    parse_schema,
    resolve,
)


def raw_schema(*extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "shop",
        "fields": [
            {"name": "title", "type": "text", "analyzer": "english", "boost": 2},
            {"name": "image", "type": "image"},
            {"name": "brand", "type": "keyword"},
            {"name": "tv", "type": "vector", "encoder": "text", "sources": ["title"]},
            *extra,
        ],
    }


def test_default_schema_has_the_product_fields() -> None:
    schema = load_schema()
    kinds = {f.name: f.type for f in schema.fields}
    assert kinds == {
        "title": "text",
        "description": "text",
        "category": "keyword",
        "brand": "keyword",
        "season": "keyword",
        "usage": "keyword",
        "style": "keyword",
        "year": "number",
        "tags": "keyword",
        "gender": "keyword",
        "colour": "keyword",
        "price": "number",
        "image": "image",
        "text_vector": "vector",
        "image_vector": "vector",
    }
    tv = schema.field("text_vector")
    assert isinstance(tv, VectorField)
    assert (tv.encoder, tv.sources, tv.similarity) == ("text", ["title", "description"], "dot")
    iv = schema.field("image_vector")
    assert isinstance(iv, VectorField) and iv.encoder == "image" and iv.sources == ["image"]


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ({"name": "brand", "type": "keyword"}, "fields[4] (brand)", "duplicate field name 'brand'"),
        (
            {"name": "iv", "type": "vector", "encoder": "audio", "sources": ["image"]},
            "field 'iv'",
            "unknown encoder 'audio'",
        ),
        (
            {"name": "iv", "type": "vector", "encoder": "image", "sources": ["title"]},
            "field 'iv'",
            "source 'title' is a text field; the image encoder embeds image fields",
        ),
        (
            {"name": "iv", "type": "vector", "encoder": "text", "sources": ["nope"]},
            "field 'iv'",
            "source 'nope' is not a field",
        ),
        ({"name": "_version", "type": "keyword"}, "fields[4] (_version)", "name must match"),
        ({"name": "id", "type": "keyword"}, "fields[4] (id)", "'id' is reserved"),
        ({"name": "price", "type": "number", "number_type": "decimal"}, "fields[4] (price)", ""),
        ({"name": "t2", "type": "text", "analyzer": "klingon"}, "fields[4] (t2)", ""),
    ],
)
def test_invalid_schemas_name_the_field(extra: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_schema(raw_schema(extra))
    assert field in str(info.value)
    assert reason in str(info.value)


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("name: x\nfields: [", encoding="utf-8")
    with pytest.raises(SchemaError, match="not valid YAML"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema(tmp_path / "missing.yaml")


def test_resolve_takes_dimensions_from_encoders() -> None:
    schema = load_schema()
    resolved = resolve(schema, {"text": 384})
    assert {k: v.dim for k, v in resolved.vectors.items()} == {"text_vector": 384}
    assert resolved.skipped == {"image_vector": "no image encoder is configured"}
    assert "image_vector" not in [f.name for f in resolved.stored_fields()]
    both = resolve(schema, {"text": 384, "image": 512})
    assert {k: v.dim for k, v in both.vectors.items()} == {"text_vector": 384, "image_vector": 512}


def test_required_vector_without_encoder_is_an_error() -> None:
    schema = parse_schema(
        raw_schema({"name": "iv", "type": "vector", "encoder": "image", "sources": ["image"]})
    )
    with pytest.raises(SchemaError, match=r"iv: the image encoder is not configured"):
        resolve(schema, {"text": 384})


def test_schema_helpers() -> None:
    schema = parse_schema(raw_schema())
    assert [f.name for f in schema.of_type(TextField)] == ["title"]
    assert [f.name for f in schema.of_type(KeywordField)] == ["brand"]
    with pytest.raises(SchemaError, match="nope: no such field"):
        schema.field("nope")


def test_validate_fields_normalises_and_names_bad_fields() -> None:
    schema = load_schema()
    ok = validate_fields(
        schema,
        {"title": "Red dress", "tags": "summer", "price": 10, "brand": None},
    )
    assert ok == {"title": "Red dress", "tags": ["summer"], "price": 10.0}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"colour_name": "red"}, "fields.colour_name: not a field of index 'products'"),
        ({"price": "cheap"}, "fields.price: expected a number, got str"),
        ({"price": True}, "fields.price: expected a number, got bool"),
        ({"price": float("nan")}, "fields.price: must be finite"),
        ({"title": 3}, "fields.title: expected a string, got int"),
        ({"title": "\ud800"}, "fields.title: not valid Unicode"),
        ({"brand": ["a", "b"]}, "fields.brand: takes one value, got a list"),
        ({"tags": ["a", 1]}, "fields.tags[1]: expected a string"),
        ({"text_vector": [0.1]}, "fields.text_vector: vector fields are computed"),
        ({"title": "x" * 100_001}, "fields.title: longer than 100000 characters"),
    ]
    for fields, message in cases:
        with pytest.raises(InvalidDocument) as info:
            validate_fields(schema, fields)
        assert message in str(info.value)
        assert info.value.field == message.split(":")[0]


def test_validate_dates_and_integers() -> None:
    schema = parse_schema(
        raw_schema(
            {"name": "added", "type": "date"},
            {"name": "stock", "type": "number", "number_type": "integer"},
        )
    )
    out = validate_fields(schema, {"added": "2024-05-01T12:00:00+02:00", "stock": 3.0})
    assert out == {"added": "2024-05-01T10:00:00+00:00", "stock": 3}
    with pytest.raises(InvalidDocument, match=r"fields\.added: not an ISO-8601 date"):
        validate_fields(schema, {"added": "yesterday"})
    with pytest.raises(InvalidDocument, match=r"fields\.stock: expected an integer"):
        validate_fields(schema, {"stock": 2.5})
    with pytest.raises(InvalidDocument, match=r"fields\.stock: out of range for integer"):
        validate_fields(schema, {"stock": 2**40})
