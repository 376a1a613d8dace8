"""Faults under load on the local three-node cluster (3 primaries, 1 replica each), through the
real queue and the real API: a node holding a primary killed with SIGKILL during a 5,000-document
RabbitMQ ingest with two workers, and a node killed during 2,000 searches at concurrency 16
against `modalfuse serve`, with the alias swapped to a new index version under the same load.
Each test brings the node back and waits for green before it ends,
so the cluster is whole for whatever runs next."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modalfuse.engines.base import Document
from modalfuse.engines.opensearch import OpenSearchEngine
from modalfuse.ingest.producer import Producer, ingest_file, wait
from modalfuse.mappings.schema import load_schema, parse_schema, resolve
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.sample import load_catalogue
from modalfuse.settings import Settings
from tests.conftest import REPO, opensearch_settings, service_unavailable, unique_name
from tests.integration.ingest_support import RABBITMQ, require_broker, wait_for, worker

pytestmark = [pytest.mark.needs_export, pytest.mark.opensearch, pytest.mark.cluster]
NODE = REPO / "scripts" / "opensearch-node.sh"
CLUSTER_INDEX = {"opensearch_shards": 3, "opensearch_replicas": 1}
INGESTED = 5000
SEARCHES = 2000
CONCURRENCY = 16


def node_script(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(NODE), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"opensearch-node.sh {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture
def local_cluster(opensearch_cluster_url: str) -> Iterator[str]:
    """The cluster's URL, when it is the local one this script can kill and restart; green
    again after the test, whatever it did to it."""
    status = subprocess.run(
        [str(NODE), "status", "--nodes", "3"], capture_output=True, text=True, check=False
    )
    if f"OPENSEARCH_URL={opensearch_cluster_url}" not in status.stdout:
        service_unavailable(
            f"OPENSEARCH_CLUSTER_URL ({opensearch_cluster_url}) is not the local cluster "
            "scripts/opensearch-node.sh can kill and restart"
        )
    yield opensearch_cluster_url
    node_script("start", "--nodes", "3")  # any node still down comes back; green when it returns


def green(engine: OpenSearchEngine, nodes: int = 3) -> None:
    # `timeout` as a keyword would be the client's own request timeout, not the API's.
    health = engine.client.cluster.health(
        params={"wait_for_status": "green", "wait_for_nodes": str(nodes), "timeout": "120s"},
        request_timeout=150,
    )
    assert health["status"] == "green" and not health["timed_out"], health


def node_of_primary(engine: OpenSearchEngine, alias: str, shard: int = 0) -> int:
    rows = engine.client.cat.shards(index=alias, format="json")
    name = next(r["node"] for r in rows if r["prirep"] == "p" and int(r["shard"]) == shard)
    return int(str(name).rsplit("-", 1)[1])  # modalfuse-node-N


def many_products(path: Path, count: int) -> list[str]:
    """`count` bare products: the sample catalogue, repeated under new ids where it runs out."""
    rows = load_catalogue()
    ids = []
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            doc_id, fields = rows[n % len(rows)]
            copy = n // len(rows)
            fields = {k: v for k, v in fields.items() if k != "image"}
            if copy:
                doc_id = f"{doc_id}-{copy}"
                fields["title"] = f"{fields.get('title', '')} (edition {copy + 1})"
            out.write(json.dumps({"id": doc_id, **fields}) + "\n")
            ids.append(doc_id)
    return ids


def create(s: Settings, alias: str) -> OpenSearchEngine:
    engine = OpenSearchEngine(s)
    engine.create(
        resolve(parse_schema(load_schema().model_dump() | {"name": alias}), {"text": 384})
    )
    return engine


def all_ids(engine: OpenSearchEngine, alias: str) -> list[str]:
    engine.refresh(alias)
    response = engine.client.search(
        index=alias, body={"query": {"match_all": {}}, "size": 10_000, "_source": False}
    )
    return [h["_id"] for h in response["hits"]["hits"]]


def queue_settings(url: str, tmp_path: Path, settings: Settings, **extra: Any) -> Settings:
    """Workers fed through RabbitMQ (a queue of the test's own) writing to the cluster."""
    return opensearch_settings(
        url,
        tmp_path / "data",
        model_cache_dir=settings.models_dir,
        broker_url=RABBITMQ,
        ingest_queue=f"modalfuse.test.{uuid.uuid4().hex[:8]}",
        image_encoder="none",
        intra_op_threads=1,
        retry_backoff_s=0.5,
        retry_backoff_max_s=2.0,
        opensearch_timeout_s=10,
        **CLUSTER_INDEX,
        **extra,
    )


def test_a_primary_killed_mid_ingest_loses_and_duplicates_nothing(
    tmp_path: Path, settings: Settings, minilm_fp32: Path, local_cluster: str
) -> None:
    require_broker(RABBITMQ)
    s = queue_settings(
        local_cluster, tmp_path, settings, ingest_batch_size=32, ingest_max_retries=100
    )
    alias = unique_name("fault-ingest")
    engine = create(s, alias)
    producer = Producer(s)
    try:
        ids = many_products(tmp_path / "products.jsonl", INGESTED)
        with worker(s, log=tmp_path / "w1.log"), worker(s, log=tmp_path / "w2.log"):
            published, results = ingest_file(
                tmp_path / "products.jsonl", settings=s, index=alias, producer=producer
            )

            def a_fifth_written() -> bool:
                engine.refresh(alias)
                return engine.stats(alias).documents >= INGESTED // 5

            wait_for(a_fifth_written, timeout=600, what="a fifth of the documents")
            victim = node_of_primary(engine, alias)
            before = engine.stats(alias).documents
            node_script("kill", str(victim))
            time.sleep(10)  # writes meet the lost primary while its replica is promoted
            node_script("restart", str(victim))
            totals = wait(results, timeout=900)
        green(engine)
        stored = all_ids(engine, alias)
        duplicated = len(stored) - len(set(stored))
        print(
            f"killed node {victim} (primary of shard 0) after {before} of {INGESTED}; "
            f"submitted {published}, indexed {totals['indexed']}, in the index {len(stored)}, "
            f"duplicated {duplicated}, dead-lettered {totals['dead_lettered']}, "
            f"retried {totals['retried']}"
        )
        assert before < INGESTED, "the ingest finished before the node could be killed"
        assert published == INGESTED and totals["dead_lettered"] == 0
        assert duplicated == 0 and sorted(stored) == sorted(ids)  # every id, exactly once
        assert engine.client.count(index=alias)["count"] == INGESTED
        assert engine.dead_letters(alias) == []
    finally:
        with producer.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(s.ingest_queue)
        engine.drop(alias)


def serve(s: Settings, alias: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MODALFUSE_ENGINE": "opensearch",
        "MODALFUSE_OPENSEARCH_URL": s.opensearch_url,
        "MODALFUSE_KNN_ENGINE": "lucene",
        "MODALFUSE_INDEX": alias,
        "MODALFUSE_DATA_DIR": str(s.data_dir),
        "MODALFUSE_MODEL_CACHE_DIR": str(s.model_cache_dir),
        "MODALFUSE_IMAGE_ENCODER": "none",
        "MODALFUSE_INTRA_OP_THREADS": "1",
    }
    cli = Path(sys.executable).parent / "modalfuse"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(cli), "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_searches_survive_a_node_killed_under_load(
    tmp_path: Path, settings: Settings, minilm_fp32: Path, local_cluster: str
) -> None:
    s = opensearch_settings(
        local_cluster,
        tmp_path / "data",
        model_cache_dir=settings.models_dir,
        image_encoder="none",
        **CLUSTER_INDEX,
    )
    alias = unique_name("fault-search")
    engine = create(s, alias)
    port = free_port()
    api: subprocess.Popen[bytes] | None = None
    try:
        rows = load_catalogue()
        vectors = OnnxEncoder(minilm_fp32, settings=s).encode_texts(
            [f.get("title", "") for _, f in rows]
        )
        docs = [
            Document(id=i, version=1, fields=f, vectors={"text_vector": np.asarray(v)})
            for (i, f), v in zip(rows, vectors, strict=True)
        ]
        assert not engine.upsert(alias, docs).failed
        engine.refresh(alias)
        green(engine)
        api = serve(s, alias, port, tmp_path / "api.log")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(base), timeout=180, what="modalfuse serve to be ready")
        texts = sorted(
            {f"{f.get('colour', '')} {f.get('category', '')}".strip().lower() for _, f in rows}
            - {""}
        )[:50]

        def ids_of(client: httpx.Client, text: str) -> list[str]:
            r = client.post("/search", json={"text": text, "size": 10, "return_fields": False})
            assert r.status_code == 200, r.text
            return [h["id"] for h in r.json()["hits"]]

        with httpx.Client(base_url=base, timeout=60) as client:
            before = {t: ids_of(client, t) for t in texts}

        statuses: Counter[int] = Counter()
        failed: list[str] = []
        overlaps: list[float] = []
        done = 0
        lock = threading.Lock()
        local = threading.local()

        def one(n: int) -> None:
            nonlocal done
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=base, timeout=60)
            text = texts[n % len(texts)]
            body = {"text": text, "size": 10, "return_fields": False}
            for attempt in range(4):  # a 503 is retryable by type: retried, and counted
                r = local.client.post("/search", json=body)
                with lock:
                    statuses[r.status_code] += 1
                if r.status_code != 503:
                    break
                time.sleep(0.5 * (attempt + 1))
            with lock:
                done += 1
                if r.status_code != 200:
                    failed.append(f"{r.status_code}: {r.text[:200]}")
                    return
                # Answered from a complete index: the answer it gave before any fault.
                got = {h["id"] for h in r.json()["hits"]}
                overlaps.append(len(got & set(before[text])) / len(before[text]))

        victim = 1
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            futures = [pool.submit(one, n) for n in range(SEARCHES)]
            wait_for(lambda: done >= SEARCHES // 5, timeout=600, what="a fifth of the searches")
            at_kill = done
            node_script("kill", str(victim))
            # Zero-downtime re-index under the same load, the node still down: a new version
            # built beside the live one, then the alias swapped to it.
            wait_for(lambda: done >= SEARCHES // 2, timeout=600, what="half the searches")
            new = engine.create(
                resolve(parse_schema(load_schema().model_dump() | {"name": alias}), {"text": 384})
            )
            assert not engine.upsert(new, docs).failed
            engine.refresh(new)
            assert engine.client.count(index=new)["count"] == len(docs)
            at_swap = done
            swapped = engine.swap(alias, new, keep_old=False)
            for f in futures:
                f.result()
        node_script("restart", str(victim))
        green(engine)
        with httpx.Client(base_url=base, timeout=60) as client:
            after = {t: ids_of(client, t) for t in texts}
        # The new version's HNSW graph is not the old one's: an approximate neighbour may
        # differ, so "the same answers" is read on the ids each query put in its top 10.
        retried = statuses[503]
        in_api = (tmp_path / "api.log").read_text(errors="replace").count("retried after a")
        identical = sum(o == 1.0 for o in overlaps)
        print(
            f"{SEARCHES} searches at concurrency {CONCURRENCY}, node {victim} killed after "
            f"{at_kill}, alias swapped {swapped.previous} -> {swapped.current} after {at_swap}: "
            f"answers by status {dict(statuses)}, retried by the client on 503 {retried}, "
            f"retried inside the API {in_api}, failed after retries {len(failed)}; answers "
            f"equal to the one before the faults {identical} of {len(overlaps)}, least top-10 "
            f"overlap {min(overlaps):.2f}"
        )
        assert statuses[500] == 0 and failed == []
        assert len(overlaps) == SEARCHES and min(overlaps) >= 0.8
        assert sum(overlaps) / len(overlaps) >= 0.99
        assert set(statuses) <= {200, 503}
        same = sum(set(after[t]) == set(before[t]) for t in texts)
        print(f"after recovery: {same} of {len(texts)} queries answer the same top 10")
        assert same >= len(texts) - 1
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
        engine.drop(alias)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_rolling_restart_under_ingest_and_search(
    tmp_path: Path, settings: Settings, minilm_fp32: Path, local_cluster: str
) -> None:
    """Every node stopped and started again, one at a time (green between), while two workers
    ingest through RabbitMQ into one index and `modalfuse serve` answers searches on another."""
    require_broker(RABBITMQ)
    s = queue_settings(
        local_cluster, tmp_path, settings, ingest_batch_size=16, ingest_max_retries=200
    )
    searched, written = unique_name("roll-search"), unique_name("roll-ingest")
    engine = create(s, searched)
    create(s, written)
    producer = Producer(s)
    port = free_port()
    api: subprocess.Popen[bytes] | None = None
    try:
        rows = load_catalogue()[:500]
        vectors = OnnxEncoder(minilm_fp32, settings=s).encode_texts(
            [f.get("title", "") for _, f in rows]
        )
        docs = [
            Document(id=i, version=1, fields=f, vectors={"text_vector": np.asarray(v)})
            for (i, f), v in zip(rows, vectors, strict=True)
        ]
        assert not engine.upsert(searched, docs).failed
        engine.refresh(searched)
        green(engine)
        api = serve(s, searched, port, tmp_path / "api.log")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(base), timeout=180, what="modalfuse serve to be ready")
        texts = ["black watch", "red dress", "running shoes", "blue jeans", "handbag"]
        with httpx.Client(base_url=base, timeout=60) as client:
            before = {t: client.post("/search", json={"text": t}).json()["hits"] for t in texts}
        statuses: Counter[int] = Counter()
        stop = threading.Event()

        def search_load() -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                n = 0
                while not stop.is_set():
                    for attempt in range(4):
                        r = client.post("/search", json={"text": texts[n % len(texts)]})
                        statuses[r.status_code] += 1
                        if r.status_code != 503:
                            break
                        time.sleep(0.5 * (attempt + 1))
                    statuses[-1 if r.status_code != 200 else 0] += 1  # -1: failed for good
                    n += 1

        ids = many_products(tmp_path / "products.jsonl", 3000)
        load = threading.Thread(target=search_load)
        load.start()
        # One wave of 1,000 documents published just before each restart, so every restart
        # happens while the workers write.
        lines = (tmp_path / "products.jsonl").read_text(encoding="utf-8").splitlines(True)
        with worker(s, log=tmp_path / "w1.log"), worker(s, log=tmp_path / "w2.log"):
            published, results = 0, []
            at_restart = []  # documents in the ingested index as each restart began
            for node in range(3):
                wave = tmp_path / f"wave-{node}.jsonl"
                wave.write_text("".join(lines[node * 1000 : (node + 1) * 1000]), encoding="utf-8")
                count, parts = ingest_file(wave, settings=s, index=written, producer=producer)
                published += count
                results += parts
                engine.refresh(written)
                at_restart.append(engine.stats(written).documents)
                node_script("restart", str(node))
                green(engine)
            totals = wait(results, timeout=900)
        stop.set()
        load.join(timeout=120)
        stored = all_ids(engine, written)
        print(
            f"rolling restart of 3 nodes (begun at {at_restart} of 3000 documents): "
            f"searches {statuses[0] + statuses[-1]} (answers by "
            f"status { ({k: v for k, v in statuses.items() if k > 0}) }, failed for good "
            f"{statuses[-1]}); ingest submitted {published}, in the index {len(stored)}, "
            f"duplicated {len(stored) - len(set(stored))}, dead-lettered "
            f"{totals['dead_lettered']}, retried {totals['retried']}"
        )
        assert statuses[-1] == 0 and statuses[500] == 0 and statuses[0] > 0
        assert published == 3000 and totals["dead_lettered"] == 0
        # Each restart began before its wave was written.
        assert all(n < 1000 * (i + 1) for i, n in enumerate(at_restart)), at_restart
        assert sorted(stored) == sorted(ids) and len(stored) == len(set(stored))
        with httpx.Client(base_url=base, timeout=60) as client:
            after = {t: client.post("/search", json={"text": t}).json()["hits"] for t in texts}
        assert {t: [h["id"] for h in hits] for t, hits in after.items()} == {
            t: [h["id"] for h in hits] for t, hits in before.items()
        }
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
        with producer.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(s.ingest_queue)
        engine.drop(searched)
        engine.drop(written)
