"""The engine conformance suite: every test runs against every engine (the embedded LanceDB and a
real OpenSearch node), with the same data and the same expected results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from modalfuse.engines import open_engine
from modalfuse.engines.base import Document, Engine
from modalfuse.mappings.schema import ResolvedSchema, load_schema, parse_schema, resolve
from modalfuse.settings import Settings
from tests.conftest import dropped_after, opensearch_settings, unique_name

ENGINES = [
    pytest.param("lancedb", id="lancedb"),
    pytest.param("opensearch", id="opensearch", marks=pytest.mark.opensearch),
    # The local three-node cluster (scripts/opensearch-node.sh start --nodes 3), its indices with
    # 3 primaries and a replica each: BM25 per shard, copies to route between.
    pytest.param(
        "opensearch-cluster",
        id="cluster",
        marks=[pytest.mark.opensearch, pytest.mark.cluster],
    ),
]
CLUSTER_INDEX = {"opensearch_shards": 3, "opensearch_replicas": 1}
FIELDS = {"title": 2.0, "description": 1.0}
DIM = 8


@pytest.fixture(params=ENGINES)
def engine_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "opensearch":
        url = request.getfixturevalue("opensearch_url")
        return opensearch_settings(url, tmp_path, bulk_chunk_docs=7, image_encoder="none")
    if request.param == "opensearch-cluster":
        url = request.getfixturevalue("opensearch_cluster_url")
        return opensearch_settings(
            url, tmp_path, bulk_chunk_docs=7, image_encoder="none", **CLUSTER_INDEX
        )
    return Settings(
        data_dir=tmp_path, engine="lancedb", tombstone_retention_s=0, image_encoder="none"
    )


@pytest.fixture
def engine(engine_settings: Settings) -> Iterator[Engine]:
    eng = open_engine(engine_settings)
    yield eng
    eng.close()


@pytest.fixture
def alias(engine: Engine) -> Iterator[str]:
    """An index name this test owns; every version of it and its dead letters are dropped after."""
    name = unique_name("conf")
    with dropped_after(engine, name):
        yield name


def products(name: str, text_dim: int = DIM, image_dim: int | None = DIM) -> ResolvedSchema:
    dims = {"text": text_dim} | ({"image": image_dim} if image_dim else {})
    return resolve(parse_schema(load_schema().model_dump() | {"name": name}), dims)


def doc(doc_id: str, version: int = 1, **fields: Any) -> Document:
    return Document(id=doc_id, version=version, fields=fields)


def ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


def unit(i: int, dim: int = DIM) -> NDArray[np.float32]:
    """A normalised vector near axis i: close to i's neighbours, far from the others."""
    v = np.full(dim, 0.01, dtype=np.float32)
    v[i % dim] = 1.0
    return v / np.linalg.norm(v)
