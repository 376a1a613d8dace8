"""A small real world for API tests: 300 catalogue products with MiniLM vectors on LanceDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modalfuse.engines.base import Document
from modalfuse.engines.lancedb import LanceDBEngine
from modalfuse.mappings.schema import load_schema, resolve
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings


def small_world(
    data_dir: Path, models: Path, minilm: Path, catalogue: list[tuple[str, dict[str, Any]]]
) -> tuple[Settings, LanceDBEngine]:
    s = Settings(
        data_dir=data_dir,
        model_cache_dir=models,
        image_encoder="none",
        intra_op_threads=1,
        index="products",
    )
    engine = LanceDBEngine(s)
    engine.create(resolve(load_schema(), {"text": 384}))
    rows = catalogue[:300]
    vectors = OnnxEncoder(minilm, settings=s).encode_texts([f["title"] for _, f in rows])
    docs = [
        Document(id=i, version=1, fields=f, vectors={"text_vector": v})
        for (i, f), v in zip(rows, vectors, strict=True)
    ]
    assert not engine.upsert("products", docs).failed
    return s, engine
