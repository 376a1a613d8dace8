"""Every request parameter is checked at the edge: a 4xx naming the field, never a 500. And the
API's lifecycle: a search past the time limit answers 504 and stops, and shutting down writes
the query log's last records and closes the engine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from modalfuse.query.api import create_api
from modalfuse.query.querylog import QueryLogger
from modalfuse.query.searcher import Searcher
from modalfuse.settings import Settings
from tests.integration.api_support import small_world

pytestmark = [pytest.mark.needs_export]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    minilm_fp32: Path,
    catalogue: list[tuple[str, dict[str, Any]]],
) -> Any:
    return small_world(
        tmp_path_factory.mktemp("edges"), settings.models_dir, minilm_fp32, catalogue
    )


BAD: dict[str, tuple[Any, str | None]] = {
    "negative weight": ({"text": "x", "weights": {"lexical": -1}}, "weights.lexical"),
    "infinite weight": (b'{"text": "x", "weights": {"lexical": Infinity}}', "weights.lexical"),
    "NaN weight": (b'{"text": "x", "weights": {"lexical": NaN}}', "weights.lexical"),
    "all weights 0": ({"text": "x", "weights": {"lexical": 0, "text_vector": 0}}, None),
    "weight of a retriever that does not run": (
        {"text": "x", "retrievers": ["lexical"], "weights": {"text_vector": 1}},
        "weights",
    ),
    "unknown retriever in weights": ({"text": "x", "weights": {"bm42": 1}}, "weights.bm42"),
    "k 0": ({"text": "x", "k": 0}, "k"),
    "window 0": ({"text": "x", "window": 0}, "window"),
    "window over the cap": ({"text": "x", "window": 1001}, "window"),
    "size 0": ({"text": "x", "size": 0}, "size"),
    "size over the cap": ({"text": "x", "size": 101}, "size"),
    "negative from": ({"text": "x", "from": -1}, "from"),
    "page beyond the window": ({"text": "x", "from": 95, "size": 10}, None),
    "no retrievers": ({"text": "x", "retrievers": []}, "retrievers"),
    "unknown retriever": ({"text": "x", "retrievers": ["bm42"]}, "retrievers.0"),
    "unknown fusion": ({"text": "x", "fusion": "borda"}, "fusion"),
    "filter without op": (
        {"text": "x", "filters": [{"field": "brand", "value": "A"}]},
        "filters.0",
    ),
    "range without a bound": (
        {"text": "x", "filters": [{"op": "range", "field": "price"}]},
        "filters.0.range",
    ),
    "filter on an unknown field": (
        {"text": "x", "filters": [{"op": "term", "field": "nope", "value": 1}]},
        "filters.0.field",
    ),
    "unknown top-level field": ({"text": "x", "colour": "red"}, "colour"),
    "server-side fusion on an engine without it": (
        {"text": "x", "server_side": True},
        "server_side",
    ),
    "boost on an unknown field": (
        {"text": "x", "boosts": [{"type": "field", "field": "nope", "weight": 0.1}]},
        "boosts[0].field",
    ),
    "boost on a field that is not a signal": (
        {"text": "x", "boosts": [{"type": "field", "field": "brand", "weight": 0.1}]},
        "boosts[0].field",
    ),
    "decay with a date origin on a number": (
        {
            "text": "x",
            "boosts": [
                {"type": "decay", "field": "year", "origin": "now", "scale": 2, "weight": 0.1}
            ],
        },
        "boosts[0].origin",
    ),
    "decay of 1": (
        {
            "text": "x",
            "boosts": [
                {
                    "type": "decay",
                    "field": "year",
                    "origin": 2012,
                    "scale": 2,
                    "decay": 1,
                    "weight": 0.1,
                }
            ],
        },
        "boosts.0.decay.decay",
    ),
    "boost weights over 1 in all": (
        {
            "text": "x",
            "boosts": [
                {"type": "field", "field": "year", "weight": 0.7},
                {"type": "field", "field": "price", "weight": 0.7},
            ],
        },
        "boosts",
    ),
    "lambda outside [0, 1]": (
        {"text": "x", "diversify": {"lambda": 1.5, "on": "text_vector"}},
        "diversify.lambda",
    ),
    "diversity over a number": (
        {"text": "x", "diversify": {"lambda": 0.5, "on": "price"}},
        "diversify.on",
    ),
    "inner count over its bound": (
        {"text": "x", "collapse": {"field": "style", "inner": 11}},
        "collapse.inner",
    ),
    "collapse by a multi-valued field": (
        {"text": "x", "collapse": {"field": "tags"}},
        "collapse.field",
    ),
    "facet of a text field": ({"text": "x", "facets": ["title"]}, "facets[0]"),
    "ranking with server-side fusion": (
        {"text": "x", "server_side": True, "collapse": {"field": "style"}},
        "collapse",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_parameters_are_4xx_naming_the_field(world: Any, case: str) -> None:
    from fastapi.testclient import TestClient

    s, engine = world
    body, field = BAD[case]
    app = create_api(s.model_copy(update={"query_log": False}), Searcher(s, engine=engine))
    with TestClient(app) as client:
        if isinstance(body, bytes):  # what a JSON encoder would refuse to write
            response = client.post(
                "/search", content=body, headers={"content-type": "application/json"}
            )
        else:
            response = client.post("/search", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == field, problem
    assert problem["error"] == "InvalidInput" and problem["detail"]


def test_a_fusion_config_file_with_bad_weights_names_them(tmp_path: Path) -> None:
    from modalfuse.errors import ConfigError
    from modalfuse.query.fusion_config import load_fusion_config

    path = tmp_path / "fusion.json"
    path.write_text('{"fusion": "rrf", "weights": {"lexical": -2}}')
    with pytest.raises(ConfigError, match=r"weights\.lexical"):
        load_fusion_config(path)
    path.write_text('{"weights": {"lexical": 0}}')
    with pytest.raises(ConfigError, match="at least one must be above 0"):
        load_fusion_config(path)


def test_a_timed_out_search_answers_504_and_stops(world: Any) -> None:
    from fastapi.testclient import TestClient

    s, engine = world
    slow = s.model_copy(update={"query_timeout_s": 0.001})
    searcher = Searcher(slow, engine=engine)
    searcher.logger = QueryLogger(engine, flush_every_s=60)
    app = create_api(slow, searcher)
    with TestClient(app) as client:
        response = client.post("/search", json={"text": "red dress"})
        assert response.status_code == 504 and response.json()["error"] == "SearchTimeout"
        time.sleep(1.0)  # long enough for a search left running to have finished and logged
        searcher.logger.flush()
        # Stopped at a stage boundary: it never reached the end, so it logged nothing.
        assert searcher.logger.written == 0


def test_shutdown_writes_the_last_query_log_records(world: Any) -> None:
    from fastapi.testclient import TestClient

    from modalfuse.engines.lancedb import LanceDBEngine

    s, _ = world

    shared = LanceDBEngine(s)
    searcher = Searcher(s, engine=shared)
    # A flush interval far longer than the test: only shutdown can write these records.
    searcher.logger = QueryLogger(shared, flush_every_s=3600)
    before = len([r for r in shared.recent_queries(limit=10_000) if r["query"] == "shutdown probe"])
    with TestClient(create_api(s, searcher)) as client:
        for _ in range(3):
            assert client.post("/search", json={"text": "shutdown probe"}).status_code == 200
        assert searcher.logger.written == 0
    after = LanceDBEngine(s).recent_queries(limit=10_000)
    assert len([r for r in after if r["query"] == "shutdown probe"]) == before + 3


def test_rules_over_http(world: Any) -> None:
    """Add a rule, see it fire on every page, refuse bad rules with their field, remove it."""
    from fastapi.testclient import TestClient

    s, engine = world
    app = create_api(s.model_copy(update={"query_log": False}), Searcher(s, engine=engine))
    pinned = "1579"  # Domyos Men Grey Second Skin Jacket: no match for the query below
    rule = {
        "id": "red-dress",
        "query": "Red Dress",
        "match": "phrase",
        "pin": [{"id": pinned, "position": 3}],
        "boost": [{"filter": {"op": "term", "field": "brand", "value": "Nike"}, "weight": -0.5}],
    }
    with TestClient(app) as client:
        added = client.post("/rules", json=rule)
        assert added.status_code == 201, added.text
        assert [r["id"] for r in client.get("/rules").json()["rules"]] == ["red-dress"]
        first = client.post("/search", json={"text": "long red dress", "size": 5}).json()
        assert first["rules"] == ["red-dress"]
        assert first["hits"][2]["id"] == pinned and first["hits"][2]["pinned"] == 3
        second = client.post("/search", json={"text": "long red dress", "size": 5, "from": 5})
        assert pinned not in [h["id"] for h in second.json()["hits"]]
        off = client.post("/search", json={"text": "long red dress", "rules": False}).json()
        assert off["rules"] == [] and pinned not in [h["id"] for h in off["hits"]]
        for bad, field in [
            ({"id": "x", "query": "q"}, "boost"),
            (
                {
                    "id": "x",
                    "query": "q",
                    "hide": ["1"],
                    "filters": [{"op": "term", "field": "nope", "value": "a"}],
                },
                "filters.0.field",
            ),
            ({"id": "X Y", "query": "q", "hide": ["1"]}, "id"),
        ]:
            refused = client.post("/rules", json=bad)
            assert refused.status_code == 422 and refused.json()["field"] == field, refused.text
        assert client.delete("/rules/nope").status_code == 404
        assert client.delete("/rules/red-dress").json() == {"rules": []}
        after = client.post("/search", json={"text": "long red dress", "size": 5}).json()
        assert after["rules"] == [] and pinned not in [h["id"] for h in after["hits"]]


def test_the_retriever_table_is_served(world: Any) -> None:
    """The search page turns its modes into retrievers from this, not from names of its own."""
    from fastapi.testclient import TestClient

    from modalfuse.query.retrievers import RETRIEVER_SPECS

    s, engine = world
    app = create_api(s.model_copy(update={"query_log": False}), Searcher(s, engine=engine))
    with TestClient(app) as client:
        table = client.get("/retrievers").json()
    assert [r["name"] for r in table] == [spec.name for spec in RETRIEVER_SPECS]
    by_name = {r["name"]: r for r in table}
    assert by_name["lexical"]["vector_role"] is None and by_name["image"]["needs"] == "image"
    assert by_name["text_to_image"] == {
        "name": "text_to_image",
        "needs": "text",
        "encoder": "text_to_image",
        "vector_role": "image",
        "vote": "text",
        "description": "kNN of the query text (text_to_image encoder) on the image vector field",
    }
