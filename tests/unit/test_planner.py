"""The query planner is a pure function: the request, the schema and the encoders in, the
retrievers (or the reason each cannot run) out."""

from __future__ import annotations

import pytest

from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import load_schema, resolve
from modalfuse.query import planner
from modalfuse.query.request import SearchRequest

WITH_IMAGES = resolve(load_schema(), {"text": 8, "image": 8})
TEXT_ONLY = resolve(load_schema(), {"text": 8})


def test_every_retriever_that_applies() -> None:
    req = SearchRequest(text="red dress", image=b"jpeg")
    why = planner.why_not(req, WITH_IMAGES, "red dress", image_encoder=True, text_side_problem=None)
    assert why == {"lexical": None, "text_vector": None, "text_to_image": None, "image": None}
    assert planner.plan(req, why) == ["lexical", "text_vector", "text_to_image", "image"]


def test_each_missing_part_says_why() -> None:
    req = SearchRequest(text="red dress")
    why = planner.why_not(
        req, WITH_IMAGES, "red dress", image_encoder=False, text_side_problem="no text side"
    )
    assert why == {
        "lexical": None,
        "text_vector": None,
        "text_to_image": "no text side",
        "image": "the query has no image",
    }
    assert planner.plan(req, why) == ["lexical", "text_vector"]
    text_only = planner.why_not(
        req, TEXT_ONLY, "red dress", image_encoder=True, text_side_problem=None
    )
    assert text_only["image"] == text_only["text_to_image"] == "the index has no image vector field"
    asked = SearchRequest(text="red dress", retrievers=["image"])
    with pytest.raises(InvalidInput, match="'image' cannot run: the query has no image") as err:
        planner.plan(asked, why)
    assert err.value.field == "retrievers"
    nothing = planner.why_not(
        SearchRequest(image=b"x"), TEXT_ONLY, "", image_encoder=False, text_side_problem=None
    )
    with pytest.raises(InvalidInput, match="no retriever applies"):
        planner.plan(SearchRequest(image=b"x"), nothing)


def test_lexical_fields_are_the_requests_text_fields_in_schema_order() -> None:
    every = planner.lexical_fields(TEXT_ONLY, None)
    assert [f.name for f in every] == [f.name for f in TEXT_ONLY.schema.text_fields]
    picked = planner.lexical_fields(TEXT_ONLY, ["description", "title"])
    assert [(f.name, f.boost) for f in picked] == [("title", 2.0), ("description", 1.0)]
    with pytest.raises(InvalidInput, match=r"not a text field of the index: 'price', 'nope'") as e:
        planner.lexical_fields(TEXT_ONLY, ["title", "price", "nope"])
    assert e.value.field == "lexical_fields"
    assert "its text fields are description, title" in str(e.value)
