"""The `chinese` analyzer, token by token: the same function feeds both engines and the query."""

from __future__ import annotations

import pytest

from modalfuse.errors import EncoderMismatch, SchemaError
from modalfuse.mappings import opensearch as os_mappings
from modalfuse.mappings.analysis import (
    analyzed,
    chinese_tokens,
    lexical_target,
    pre_analyzed,
    shadow_field,
    with_tokens,
)
from modalfuse.mappings.lancedb import arrow_schema, fts_options
from modalfuse.mappings.schema import (
    VectorField,
    check_model,
    load_schema,
    parse_schema,
    resolve,
    with_models,
)


def test_cjk_runs_become_characters_and_bigrams() -> None:
    assert chinese_tokens("黄金面霜") == ["黄", "金", "面", "霜", "黄金", "金面", "面霜"]
    assert chinese_tokens("霜") == ["霜"]


def test_brand_names_and_model_numbers_stay_whole() -> None:
    assert chinese_tokens("AHC B5玻尿酸") == ["ahc", "b5", "玻", "尿", "酸", "玻尿", "尿酸"]
    assert chinese_tokens("佳能 EF 24-70mm") == ["佳", "能", "佳能", "ef", "24", "70mm"]
    assert chinese_tokens("小米Z62") == ["小", "米", "小米", "z62"]


def test_full_width_and_case_fold_to_the_plain_forms() -> None:
    full = "\uff21\uff28\uff23\u3000\uff22\uff15"  # "AHC B5" in full-width forms
    assert chinese_tokens(full) == chinese_tokens("ahc b5") == ["ahc", "b5"]
    assert chinese_tokens("SK-II神仙水") == ["sk", "ii", "神", "仙", "水", "神仙", "仙水"]


def test_punctuation_and_empty_text_give_no_tokens() -> None:
    assert chinese_tokens("【包邮】\uff01\uff0c。") == ["包", "邮", "包邮"]  # full-width ! and ,
    assert chinese_tokens("") == [] and analyzed("  ") == ""


def test_tokens_travel_in_a_shadow_field_and_queries_are_analysed_alike() -> None:
    doc = with_tokens({"title": "AHC面霜", "brand": "AHC"}, ["title"])
    assert doc == {"title": "AHC面霜", "brand": "AHC", "title__tokens": "ahc 面 霜 面霜"}
    assert lexical_target("AHC 面霜", {"title": 2.0}, ["title"]) == (
        "ahc 面 霜 面霜",
        {"title__tokens": 2.0},
    )
    assert lexical_target("red dress", {"title": 2.0}, []) == ("red dress", {"title": 2.0})


def test_both_engines_index_the_tokens_with_a_whitespace_analyzer() -> None:
    resolved = resolve(load_schema("products-zh"), {"text": 512, "image": 384})
    mapping = os_mappings.mappings(resolved)["properties"]
    assert mapping["title"] == {"type": "text", "index": False}
    assert mapping[shadow_field("title")] == {"type": "text", "analyzer": "whitespace"}
    columns = arrow_schema(resolved).names
    assert {"title", "title__tokens", "description__tokens"} <= set(columns)
    assert fts_options("chinese")["base_tokenizer"] == "whitespace"
    assert pre_analyzed(resolved.schema.text_fields) == ["title", "description"]


def test_a_schema_mixing_chinese_and_other_text_fields_is_refused() -> None:
    fields = [
        {"name": "title", "type": "text", "analyzer": "chinese"},
        {"name": "body", "type": "text", "analyzer": "english"},
    ]
    with pytest.raises(SchemaError, match="chinese analyzer on every text field or on none"):
        parse_schema({"name": "mixed", "fields": fields})
    with pytest.raises(SchemaError, match="kept for analysed text"):
        parse_schema({"name": "x", "fields": [{"name": "title__tokens", "type": "text"}]})


def test_the_vector_field_names_its_encoder_and_another_is_refused() -> None:
    schema = load_schema("products-zh")
    named = with_models(schema, {"text": "bge-small-zh-v1.5", "image": "fashion-aligned"})
    text_vector = named.field("text_vector")
    assert isinstance(text_vector, VectorField) and text_vector.model == "bge-small-zh-v1.5"
    with pytest.raises(SchemaError, match=r"'bge-small-zh-v1\.5', but the configured text"):
        with_models(schema, {"text": "all-MiniLM-L6-v2"})
    check_model(text_vector, "bge-small-zh-v1.5")
    with pytest.raises(EncoderMismatch) as err:
        check_model(text_vector, "all-MiniLM-L6-v2")
    assert "'bge-small-zh-v1.5'" in str(err.value) and "'all-MiniLM-L6-v2'" in str(err.value)
