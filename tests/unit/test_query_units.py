"""Query-layer pieces without an engine: filter syntax, request rules, the server-side pipeline."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from modalfuse.engines.base import Hit
from modalfuse.engines.filters import Exists, Range, Term, Terms
from modalfuse.engines.opensearch.fusion import search_pipeline
from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import load_schema, parse_schema
from modalfuse.query import fusion
from modalfuse.query.filter_syntax import parse_filter
from modalfuse.query.querylog import log_record
from modalfuse.query.request import RETRIEVERS, SearchHit, SearchRequest, SearchResponse

SCHEMA = load_schema()


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("category=Dresses", Term(field="category", value="Dresses")),
        ("brand!=Puma", Term(field="brand", value="Puma", negate=True)),
        ("tags=summer|sale", Terms(field="tags", values=["summer", "sale"])),
        ("price<50", Range(field="price", lt=50.0)),
        ("price >= 9.5", Range(field="price", gte=9.5)),
        ("colour?", Exists(field="colour")),
        ("!colour?", Exists(field="colour", negate=True)),
        ("brand=x' OR '1'='1", Term(field="brand", value="x' OR '1'='1")),
    ],
)
def test_filter_expressions(expr: str, expected: object) -> None:
    assert parse_filter(expr, SCHEMA) == expected


def test_bad_filter_expressions() -> None:
    dated = parse_schema(
        {"name": "d", "fields": [{"name": "t", "type": "text"}, {"name": "added", "type": "date"}]}
    )
    assert parse_filter("added>=2024-01-02", dated) == Range(
        field="added", gte=datetime(2024, 1, 2)
    )
    for expr, message in [
        ("nonsense", "cannot parse"),
        ("size=10", "'size' is not a field"),
        ("price<cheap", "'cheap' is not a number"),
        ("brand<x", "needs a number or date field"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            parse_filter(expr, SCHEMA)
    with pytest.raises(InvalidInput, match="compare dates with"):
        parse_filter("added=2024-01-02", dated)


def test_request_rules() -> None:
    req = SearchRequest.model_validate({"text": "x", "from": 90, "size": 10, "window": 100})
    assert req.from_ == 90
    with pytest.raises(ValidationError, match="beyond the window"):
        SearchRequest.model_validate({"text": "x", "from": 95, "size": 10, "window": 100})
    with pytest.raises(ValidationError, match="at least 1 item"):
        SearchRequest(text="x", retrievers=[])
    with pytest.raises(ValidationError):
        SearchRequest(text="x", fusion="borda")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SearchRequest(text="x", retrievers=["bm42"])  # type: ignore[list-item]


@settings(max_examples=100)
@given(
    method=st.sampled_from(["rrf", "minmax", "zscore"]),
    k=st.integers(min_value=1, max_value=200),
    names=st.lists(st.sampled_from(RETRIEVERS), min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_server_pipeline_encodes_the_client_fusion(
    method: str, k: int, names: list[str], data: st.DataObject
) -> None:
    """Both OpenSearch paths fuse with the same method, rank constant and weights."""
    weights = {n: data.draw(st.floats(min_value=0.1, max_value=5)) for n in names}
    ordered = [weights[n] for n in names]
    name, body = search_pipeline("products", method, k, ordered)
    [processor] = body["phase_results_processors"]
    if method == "rrf":
        combination = processor["score-ranker-processor"]["combination"]
        assert combination["technique"] == "rrf" and combination["rank_constant"] == k
        if any(w != 1.0 for w in ordered):
            assert combination["parameters"]["weights"] == ordered
    else:
        inner = processor["normalization-processor"]
        assert (
            inner["normalization"]["technique"]
            == {"minmax": "min_max", "zscore": "z_score"}[method]
        )
        # The processor takes weights summing to 1; the mean is unchanged by the scaling.
        sent = inner["combination"]["parameters"]["weights"]
        assert sent == pytest.approx([w / sum(ordered) for w in ordered])
    assert name.startswith(f"products-{method}-k{k}-")
    # The client-side fusion with the same parameters: weights reach the scores. Lists at even
    # positions rank a over b, the others b over a.
    lists = {
        n: [Hit(id="a", score=2.0), Hit(id="b", score=1.0)]
        if i % 2 == 0
        else [Hit(id="b", score=2.0), Hit(id="a", score=1.0)]
        for i, n in enumerate(names)
    }
    fused = fusion.fuse(lists, method=method, rank_constant=k, weights=weights)  # type: ignore[arg-type]
    score = {f.id: f.score for f in fused}
    up = sum(w for i, w in enumerate(ordered) if i % 2 == 0)
    down = sum(w for i, w in enumerate(ordered) if i % 2 == 1)
    if method == "rrf":
        assert score["a"] == pytest.approx(up / (k + 1) + down / (k + 2))
    elif method == "minmax":  # a normalises to 1 where it leads, to 0.001 where it trails
        assert score["a"] == pytest.approx((up + 0.001 * down) / (up + down))
    else:  # z-scores of two values are +1 and -1
        assert score["a"] == pytest.approx((up - down) / (up + down))


def test_query_log_record() -> None:
    req = SearchRequest(text="red dress", filters=[Term(field="brand", value="Puma")])
    resp = SearchResponse(
        index="products",
        hits=[SearchHit(id="1", score=0.5, fields={}), SearchHit(id="2", score=0.4, fields={})],
        total=2,
        retrievers=["lexical", "text_vector"],
        fusion="rrf",
        timings_ms={"encode_text": 3.0, "retrieve": 4.0, "total": 8.0},
    )
    record = log_record(req, resp, "red dress")
    assert (
        record["query"] == "red dress" and record["hits"] == 2 and record["zero_results"] is False
    )
    assert record["top_ids"] == ["1", "2"] and record["total_ms"] == 8.0
    assert (
        record["filters"] == '[{"field": "brand", "negate": false, "op": "term", "value": "Puma"}]'
    )
    assert record["retrievers"] == ["lexical", "text_vector"] and not record["has_image"]
