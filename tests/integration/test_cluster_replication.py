"""Segment replication on the local three-node cluster: an index created with
`opensearch_replication=segment` has it, and its replicas reach their primaries' documents
and answer the same kNN results (they copy the primaries' segments, graphs included)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from modalfuse.engines.base import Document, KnnQuery
from modalfuse.engines.opensearch import OpenSearchEngine
from modalfuse.mappings.schema import load_schema, parse_schema, resolve
from tests.conftest import dropped_after, opensearch_settings, unique_name

pytestmark = [pytest.mark.opensearch, pytest.mark.cluster]


def copies(engine: OpenSearchEngine, index: str) -> dict[tuple[str, bool], int]:
    """Documents per shard copy: (shard, is primary) -> count."""
    stats = engine.client.indices.stats(index=index, level="shards", metric="docs")
    out: dict[tuple[str, bool], int] = {}
    for shards in stats["indices"].values():
        for shard, rows in shards["shards"].items():
            for row in rows:
                out[(shard, bool(row["routing"]["primary"]))] = row["docs"]["count"]
    return out


def products_index(engine: OpenSearchEngine, alias: str) -> str:
    """The bundled product schema under `alias`, 384-d text vectors; the physical index."""
    return engine.create(
        resolve(parse_schema(load_schema().model_dump() | {"name": alias}), {"text": 384})
    )


def random_docs(n: int, seed: int) -> tuple[np.ndarray, list[Document]]:
    """`n` documents with random unit text vectors, ids "0".."n-1"."""
    vectors = np.random.default_rng(seed).standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = [
        Document(id=str(i), version=1, fields={"title": f"item {i}"}, vectors={"text_vector": v})
        for i, v in enumerate(vectors)
    ]
    return vectors, docs


def test_segment_replicas_follow_their_primaries(
    opensearch_cluster_url: str, tmp_path: Path
) -> None:
    s = opensearch_settings(
        opensearch_cluster_url,
        tmp_path,
        opensearch_shards=3,
        opensearch_replicas=1,
        opensearch_replication="segment",
    )
    alias = unique_name("segrep")
    engine = OpenSearchEngine(s)
    with engine, dropped_after(engine, alias):
        index = products_index(engine, alias)
        got = engine.client.indices.get_settings(index=index, flat_settings=True)
        assert got[index]["settings"]["index.replication.type"] == "SEGMENT"
        vectors, docs = random_docs(300, seed=7)
        result = engine.upsert(alias, docs)
        assert len(result.written) == 300 and not result.failed
        engine.refresh(alias)
        deadline = time.monotonic() + 60
        while True:
            counts = copies(engine, index)
            replicas = {k[0]: v for k, v in counts.items() if not k[1]}
            primaries = {k[0]: v for k, v in counts.items() if k[1]}
            if replicas == primaries and sum(replicas.values()) == 300:
                break
            assert time.monotonic() < deadline, f"replicas never caught up: {counts}"
            time.sleep(0.5)
        assert len(primaries) == 3
        # Read from whichever copies: the nearest neighbour of a stored vector is itself.
        for i in (0, 150, 299):
            hits = engine.knn(alias, KnnQuery(field="text_vector", vector=vectors[i], k=3))
            assert hits[0].id == str(i)


def test_scalar_quantised_vectors_on_the_cluster(
    opensearch_cluster_url: str, tmp_path: Path
) -> None:
    s = opensearch_settings(
        opensearch_cluster_url, tmp_path, opensearch_shards=3, opensearch_replicas=1
    )
    alias = unique_name("sq")
    schema = load_schema().model_dump() | {"name": alias}
    for field in schema["fields"]:
        if field["type"] == "vector":
            field["hnsw"] = {"engine": "lucene", "quantization": "sq"}
    engine = OpenSearchEngine(s)
    with engine, dropped_after(engine, alias):
        index = engine.create(resolve(parse_schema(schema), {"text": 384}))
        mapping = engine.client.indices.get_mapping(index=index)[index]["mappings"]
        method = mapping["properties"]["text_vector"]["method"]
        assert method["engine"] == "lucene" and method["parameters"]["encoder"]["name"] == "sq"
        vectors, docs = random_docs(300, seed=11)
        assert not engine.upsert(alias, docs).failed
        engine.refresh(alias)
        # 7-bit codes keep a random vector's nearest neighbour itself.
        for i in (0, 99, 299):
            hits = engine.knn(alias, KnnQuery(field="text_vector", vector=vectors[i], k=3))
            assert hits[0].id == str(i)
        # Store sizes are cached per shard (index.store.stats_refresh_interval, 10 s by
        # default), so a fresh index may still report its empty size for a while.
        deadline = time.monotonic() + 30
        while (details := engine.stats(alias).details)["store_bytes_all_copies"] <= 300 * 384:
            assert time.monotonic() < deadline, f"store size never grew: {details}"
            time.sleep(1)
        assert details["shard_copies"] == 6
        heaps = engine.heap_used_mb()
        assert len(heaps) == 3 and all(mb > 0 for mb in heaps.values())
        # Every node has spent CPU by now (it indexed and searched), and the counter only grows.
        cpu = engine.node_cpu_s()
        assert set(cpu) == set(heaps) and all(s > 0 for s in cpu.values())
        assert all(engine.node_cpu_s()[n] >= s for n, s in cpu.items())


def test_a_bulk_load_starts_without_replicas_or_refreshes_and_ends_with_its_own(
    opensearch_cluster_url: str, tmp_path: Path
) -> None:
    s = opensearch_settings(
        opensearch_cluster_url,
        tmp_path,
        opensearch_shards=3,
        opensearch_replicas=1,
        opensearch_replication="segment",
        opensearch_load_replicas=0,
        opensearch_load_refresh_interval="-1",
    )
    alias = unique_name("load")
    engine = OpenSearchEngine(s)
    with engine, dropped_after(engine, alias):
        index = products_index(engine, alias)
        got = engine.client.indices.get_settings(index=index, flat_settings=True)
        assert got[index]["settings"]["index.number_of_replicas"] == "0"
        assert got[index]["settings"]["index.refresh_interval"] == "-1"
        _, docs = random_docs(120, seed=3)
        assert not engine.upsert(alias, docs).failed
        assert engine.client.count(index=index)["count"] == 0  # written, not yet searchable
        engine.refresh(alias)
        assert set(copies(engine, index)) == {(str(n), True) for n in range(3)}
        # The index's own count (the settings' 1, kept in its _meta) comes back, every copy
        # active, and its interval is the server's again (the setting reset, not a value).
        assert engine.finish_load(alias) == {"number_of_replicas": 1, "refresh_interval": None}
        health = engine.client.cluster.health(index=index)
        assert health["status"] == "green" and health["active_shards"] == 6
        got = engine.client.indices.get_settings(index=index, flat_settings=True)
        assert "index.refresh_interval" not in got[index]["settings"]
        counts = copies(engine, index)
        assert len(counts) == 6 and sum(v for (_, p), v in counts.items() if not p) == 120
        assert engine.finish_load(alias) == {}  # nothing left to do


@pytest.mark.parametrize("replicas, started", [(1, 6), (5, 9)])
def test_a_new_index_is_handed_out_with_every_copy_the_cluster_can_hold_started(
    opensearch_cluster_url: str, tmp_path: Path, replicas: int, started: int
) -> None:
    # 3 shards on 3 nodes: 1 replica gives 6 copies; 5 replicas can only place 2 per shard
    # (never beside their primary), so it waits for 3 copies a shard and gives the rest up.
    s = opensearch_settings(
        opensearch_cluster_url, tmp_path, opensearch_shards=3, opensearch_replicas=replicas
    )
    alias = unique_name("copies")
    engine = OpenSearchEngine(s)
    with engine, dropped_after(engine, alias):
        index = products_index(engine, alias)
        # Read at once, no wait: the replicas' recovery is over before create returns.
        rows = engine.client.cat.shards(index=index, format="json", h="shard,prirep,state")
        states = sorted((r["prirep"], r["state"]) for r in rows)
        assert states.count(("p", "STARTED")) == 3
        assert sum(1 for st in states if st[1] == "STARTED") == started
