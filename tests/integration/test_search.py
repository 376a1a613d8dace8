"""The query layer on the embedded engine with real encoders: retrievers, fusion, paging,
explain, bad input, the HTTP API and the query log."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr

from modalfuse.engines.base import Document
from modalfuse.engines.filters import Filter, Range, Term, Terms
from modalfuse.engines.lancedb import LanceDBEngine
from modalfuse.errors import InvalidImage, InvalidInput
from modalfuse.mappings.querylog import QUERY_LOG
from modalfuse.mappings.schema import load_schema, parse_schema, resolve
from modalfuse.onnx_models.manifest import read_manifest
from modalfuse.onnx_models.registry import image_encoder_dir
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.query.querylog import QueryLogger
from modalfuse.query.request import SearchRequest
from modalfuse.query.searcher import Searcher
from modalfuse.sample import SAMPLE_DIR
from modalfuse.settings import Settings

pytestmark = [pytest.mark.needs_export]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    minilm_fp32: Path,
    catalogue: list[tuple[str, dict[str, Any]]],
) -> tuple[Settings, LanceDBEngine, dict[str, dict[str, Any]]]:
    # The bundled aligned image encoder (ONNX in the package): text_to_image runs on the text
    # encoder's query vector. The CLIP path (its own text tower) is in test_clip_encoder.py.
    s = Settings(
        data_dir=tmp_path_factory.mktemp("search"),
        model_cache_dir=settings.models_dir,
        intra_op_threads=1,
        index="qshop",
    )
    image_dir = image_encoder_dir(s)
    assert image_dir is not None
    engine = LanceDBEngine(s)
    dims = {"text": 384, "image": read_manifest(image_dir).dim}
    engine.create(resolve(parse_schema(load_schema().model_dump() | {"name": "qshop"}), dims))
    text = OnnxEncoder(minilm_fp32, settings=s).encode_texts(
        [f.get("title", "") for _, f in catalogue]
    )
    images = OnnxEncoder(image_dir, settings=s).encode_images(
        [SAMPLE_DIR / f["image"] for _, f in catalogue]
    )
    prices = np.random.default_rng(7).uniform(5, 200, len(catalogue)).round(2)
    docs = [
        Document(
            id=doc_id,
            version=1,
            fields=fields | {"price": float(price)},
            vectors={"text_vector": t, "image_vector": i},
        )
        for (doc_id, fields), t, i, price in zip(catalogue, text, images, prices, strict=True)
    ]
    assert not engine.upsert("qshop", docs).failed
    return s, engine, {d.id: d.fields for d in docs}


@pytest.fixture
def searcher(world: Any) -> Searcher:
    s, engine, _ = world
    return Searcher(s, engine=engine)


def test_default_retrievers_follow_the_query(searcher: Searcher, world: Any) -> None:
    _, _, docs = world
    text = searcher.search(SearchRequest(text="red summer dress", explain=True))
    assert text.retrievers == ["lexical", "text_vector", "text_to_image"]
    assert len(text.hits) == 10 and text.total >= 10
    assert set(text.timings_ms) >= {"encode_text", "retrieve", "fuse", "total"}
    # The aligned image encoder shares the text encoder's space: one query vector, encoded once.
    assert "encode_text_to_image" not in text.timings_ms
    for hit in text.hits:
        assert hit.explain is not None
        assert sum(p.contribution for p in hit.explain.values()) == pytest.approx(hit.score)
        assert all(p.rank >= 1 for p in hit.explain.values())
        assert hit.fields["title"] == docs[hit.id]["title"]
    photo = (SAMPLE_DIR / docs["1540"]["image"]).read_bytes()
    by_image = searcher.search(SearchRequest(image=photo, explain=True))
    assert by_image.retrievers == ["image"] and by_image.hits[0].id == "1540"
    both = searcher.search(SearchRequest(text="polo t-shirt", image=photo))
    assert both.retrievers == ["lexical", "text_vector", "text_to_image", "image"]


def test_filters_apply_inside_every_retriever(searcher: Searcher, world: Any) -> None:
    _, _, docs = world
    filters: list[Filter] = [Term(field="gender", value="Women"), Range(field="price", lt=100)]
    resp = searcher.search(SearchRequest(text="watch", filters=filters, size=20, window=50))
    assert len(resp.hits) == 20
    for hit in resp.hits:
        assert docs[hit.id]["gender"] == "Women" and docs[hit.id]["price"] < 100
    hostile = searcher.search(
        SearchRequest(text="watch", filters=[Term(field="brand", value="x' OR '1'='1")])
    )
    assert hostile.hits == [] and hostile.total == 0
    many = searcher.search(
        SearchRequest(
            text="shoes", filters=[Terms(field="category", values=["Casual Shoes", "Sports Shoes"])]
        )
    )
    assert many.hits and all(
        docs[h.id]["category"] in ("Casual Shoes", "Sports Shoes") for h in many.hits
    )


def test_pages_are_slices_of_one_fused_list(searcher: Searcher) -> None:
    full = searcher.search(SearchRequest(text="blue jeans", size=30, window=30))
    pages = [
        searcher.search(
            SearchRequest.model_validate(
                {"text": "blue jeans", "from": start, "size": 10, "window": 30}
            )
        )
        for start in (0, 10, 20)
    ]
    assert [h.id for p in pages for h in p.hits] == [h.id for h in full.hits]


def test_fusion_methods_and_weights(searcher: Searcher) -> None:
    base = dict(text="running shoes", retrievers=["lexical", "text_vector"])
    for method in ("auto", "rrf", "minmax", "zscore"):
        resp = searcher.search(SearchRequest(**base, fusion=method, explain=True))  # type: ignore[arg-type]
        assert resp.fusion == method and len(resp.hits) == 10
    lexical_only = searcher.search(SearchRequest(text="running shoes", retrievers=["lexical"]))
    heavy = searcher.search(SearchRequest(**base, fusion="rrf", weights={"lexical": 50.0}))  # type: ignore[arg-type]
    assert [h.id for h in heavy.hits[:3]] == [h.id for h in lexical_only.hits[:3]]
    with pytest.raises(InvalidInput, match="weights for retrievers that do not run"):
        searcher.search(SearchRequest(text="x", retrievers=["lexical"], weights={"image": 2.0}))


def test_bad_input(searcher: Searcher) -> None:
    with pytest.raises(InvalidInput, match="empty query") as info:
        searcher.search(SearchRequest(text="   "))
    assert info.value.field == "text"
    long = searcher.search(SearchRequest(text="dress " * 20_000))  # ~120 kB
    assert long.warnings and "cut from" in long.warnings[0]
    with pytest.raises(InvalidInput, match="'shoe_size' is not a filterable field"):
        searcher.search(SearchRequest(text="x", filters=[Term(field="shoe_size", value="9")]))
    with pytest.raises(InvalidImage):
        searcher.search(SearchRequest(image=b"<html>not an image</html>"))
    with pytest.raises(InvalidInput, match="'image' cannot run: the query has no image"):
        searcher.search(SearchRequest(text="x", retrievers=["image"]))


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def test_http_api(world: Any) -> None:
    from fastapi.testclient import TestClient

    from modalfuse.query.api import create_api

    s, engine, _ = world
    secured = s.model_copy(update={"api_key": SecretStr("sekrit"), "max_request_bytes": 200_000})
    logger = QueryLogger(engine, flush_every_s=0.1)
    app = create_api(secured, Searcher(secured, engine=engine, logger=logger))
    with TestClient(app) as client:
        headers = {"X-API-Key": "sekrit"}
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert "/search" in client.get("/openapi.json").json()["paths"]
        assert client.post("/search", json={"text": "dress"}).status_code == 401
        ok = client.post(
            "/search", json={"text": "red dress", "explain": True, "size": 5}, headers=headers
        )
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert (
            len(body["hits"]) == 5
            and body["hits"][0]["explain"]
            and body["timings_ms"]["total"] > 0
        )
        image = client.post(
            "/search",
            json={"image_base64": base64.b64encode(png_bytes()).decode()},
            headers=headers,
        )
        assert image.status_code == 200 and image.json()["retrievers"] == ["image"]
        upload = client.post(
            "/search",
            data={"request": '{"size": 3}'},
            files={"image": ("q.png", png_bytes(), "image/png")},
            headers=headers,
        )
        assert upload.status_code == 200 and len(upload.json()["hits"]) == 3
        errors = {
            "empty": client.post("/search", json={"text": ""}, headers=headers),
            "filter": client.post(
                "/search",
                json={"text": "x", "filters": [{"op": "term", "field": "nope", "value": "1"}]},
                headers=headers,
            ),
            "window": client.post(
                "/search", json={"text": "x", "from": 95, "size": 10}, headers=headers
            ),
            "not_image": client.post(
                "/search",
                json={"image_base64": base64.b64encode(b"<html/>").decode()},
                headers=headers,
            ),
            "bad_b64": client.post("/search", json={"image_base64": "%%%"}, headers=headers),
            "index": client.post("/search", json={"text": "x", "index": "nope"}, headers=headers),
            "too_big": client.post(
                "/search",
                content=b"{" + b" " * 300_000 + b"}",
                headers=headers | {"content-type": "application/json"},
            ),
            "not_json": client.post(
                "/search", content=b"{nope", headers=headers | {"content-type": "application/json"}
            ),
        }
        statuses = {k: (r.status_code, r.json().get("field")) for k, r in errors.items()}
        assert statuses == {
            "empty": (422, "text"),
            "filter": (422, "filters.0.field"),
            "window": (422, None),
            "not_image": (422, "image"),
            "bad_b64": (422, "image_base64"),
            "index": (404, None),
            "too_big": (413, None),
            "not_json": (422, "body"),
        }
    logger.close()
    assert logger.written >= 3 and logger.dropped == 0
    log_rows = engine.db.open_table(QUERY_LOG).to_arrow().to_pylist()
    assert any(
        r["query"] == "red dress" and r["hits"] == 5 and r["top_contributors"][0] for r in log_rows
    )
