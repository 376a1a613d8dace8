"""Queue-fed ingest into a real OpenSearch node: a worker killed with SIGKILL, the node stopped
and started mid-ingest, and bulk 429s from a tiny write queue. Every submitted id ends up indexed
exactly once, and nothing valid is dead-lettered."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modalfuse.engines.opensearch import OpenSearchEngine
from modalfuse.ingest.producer import ingest_file, wait
from modalfuse.mappings.schema import load_schema, parse_schema, resolve
from modalfuse.settings import Settings
from tests.conftest import REPO, opensearch_settings, service_unavailable, unique_name
from tests.integration.ingest_support import catalogue_file, kill, wait_for, worker

pytestmark = [pytest.mark.needs_export, pytest.mark.slow, pytest.mark.opensearch]
NODE = REPO / "scripts" / "opensearch-node.sh"


def node_settings(url: str, root: Path, models: Path, **extra: Any) -> Settings:
    return opensearch_settings(
        url,
        root,
        model_cache_dir=models,
        intra_op_threads=1,
        retry_backoff_s=0.5,
        retry_backoff_max_s=2.0,
        image_encoder="none",
        **extra,
    )


def create(s: Settings, alias: str) -> OpenSearchEngine:
    engine = OpenSearchEngine(s)
    engine.create(
        resolve(parse_schema(load_schema().model_dump() | {"name": alias}), {"text": 384})
    )
    return engine


def stored_ids(engine: OpenSearchEngine, alias: str) -> list[str]:
    engine.refresh(alias)
    response = engine.client.search(
        index=alias, body={"query": {"match_all": {}}, "size": 10_000, "_source": False}
    )
    return sorted(h["_id"] for h in response["hits"]["hits"])


def engine_count(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/_cat/count?format=json", timeout=5) as r:
            return int(json.load(r)[0]["count"])
    except OSError:
        return None


class OwnNode:
    """A second, disposable node (own data, port and settings) for tests that stop it or starve
    it; the shared node the other tests use is never disturbed."""

    def __init__(self, *settings: str) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="modalfuse-node-"))
        self.env = os.environ | {"MODALFUSE_OPENSEARCH_RUN": str(self.run_dir)}
        self.settings = [arg for s in settings for arg in ("-E", s)]
        self.url = ""

    def start(self) -> str:
        proc = subprocess.run(
            [str(NODE), "start", *self.settings],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            service_unavailable(f"a second OpenSearch node did not start: {proc.stderr[-2000:]}")
        self.url = proc.stdout.strip().splitlines()[-1].split("=", 1)[1]
        return self.url

    def stop(self) -> None:
        subprocess.run([str(NODE), "stop"], env=self.env, capture_output=True, timeout=120)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture
def own_node() -> Iterator[OwnNode]:
    if not os.environ.get("OPENSEARCH_URL"):
        service_unavailable("OPENSEARCH_URL is not set: no local OpenSearch install to start")
    # One write thread and a queue of one: concurrent bulk requests are refused with 429.
    node = OwnNode("thread_pool.write.size=1", "thread_pool.write.queue_size=1")
    node.start()
    yield node
    node.close()


def test_kill_9_worker_mid_ingest(
    tmp_path: Path, settings: Settings, minilm_fp32: Path, opensearch_url: str
) -> None:
    s = node_settings(opensearch_url, tmp_path / "data", settings.models_dir, ingest_batch_size=32)
    alias = unique_name("crash")
    engine = create(s, alias)
    try:
        path, ids = catalogue_file(tmp_path / "cat", 1500, with_images=False)
        published, results = ingest_file(path, settings=s, index=alias)
        log = tmp_path / "worker.log"
        unacked = s.broker_root / "unacked"
        with worker(s, log=log) as first:

            def mid_run() -> bool:
                engine.refresh(alias)
                return engine.stats(alias).documents >= 200 and any(unacked.iterdir())

            wait_for(mid_run, timeout=300, what="200 documents and a batch in flight")
            kill(first, signal.SIGKILL)
        done_before = engine.stats(alias).documents
        assert done_before < 1500, "the worker finished before it could be killed"
        assert list(unacked.iterdir()), "a killed worker leaves its batch unacknowledged"
        with worker(s, log=log):
            totals = wait(results, timeout=600)
        assert published == 1500 and totals["dead_lettered"] == 0
        assert stored_ids(engine, alias) == sorted(ids)  # every submitted id, once
        assert engine.dead_letters(alias) == []
        print(f"killed after {done_before} of 1500 on OpenSearch")
    finally:
        engine.drop(alias)


def test_node_stopped_and_started_mid_ingest(
    tmp_path: Path, settings: Settings, minilm_fp32: Path, own_node: OwnNode
) -> None:
    s = node_settings(
        own_node.url,
        tmp_path / "data",
        settings.models_dir,
        ingest_batch_size=8,
        ingest_max_retries=100,
        opensearch_timeout_s=5,
    )
    engine = create(s, "outage")
    path, ids = catalogue_file(tmp_path / "cat", 2000, with_images=False)
    log = tmp_path / "worker.log"
    with worker(s, log=log):
        published, results = ingest_file(path, settings=s, index="outage")

        def some_written() -> bool:
            engine.refresh("outage")
            return engine.stats("outage").documents >= 100

        wait_for(some_written, timeout=300, what="100 documents before the outage")
        own_node.stop()
        before = engine_count(own_node.url)
        assert before is None  # the node is down
        time.sleep(5)  # the worker keeps trying to write to a closed port meanwhile
        assert own_node.start() == own_node.url  # same data, same port
        totals = wait(results, timeout=600)
    # The worker's log is complete once it has exited: the writes did fail and were retried.
    assert "cannot reach OpenSearch" in log.read_text()
    counts = {k: totals[k] for k in ("indexed", "stale", "dead_lettered")}
    assert published == 2000 and counts == {"indexed": 2000, "stale": 0, "dead_lettered": 0}
    # The messages that met the closed port were retried, and the summary counts them.
    assert totals["retried"] > 0
    assert stored_ids(engine, "outage") == sorted(ids)
    assert engine.dead_letters("outage") == []


def test_bulk_429s_are_retried_until_everything_is_written(
    tmp_path: Path, settings: Settings, minilm_fp32: Path, own_node: OwnNode
) -> None:
    s = node_settings(
        own_node.url,
        tmp_path / "data",
        settings.models_dir,
        ingest_batch_size=64,
        bulk_chunk_docs=4,
        bulk_max_retries=50,
        bulk_max_backoff_s=2,
        ingest_max_retries=50,
    )
    engine = create(s, "throttled")
    path, ids = catalogue_file(tmp_path / "cat", 1200, with_images=False)
    with worker(s, log=tmp_path / "worker.log", concurrency=4):
        published, results = ingest_file(path, settings=s, index="throttled")
        totals = wait(results, timeout=900)
    with urllib.request.urlopen(f"{own_node.url}/_nodes/stats/thread_pool", timeout=10) as r:
        stats = json.load(r)
    rejected = sum(n["thread_pool"]["write"]["rejected"] for n in stats["nodes"].values())
    assert rejected > 0, "the tiny write queue never refused a bulk request"
    counts = {k: totals[k] for k in ("indexed", "stale", "dead_lettered")}
    assert published == 1200 and counts == {"indexed": 1200, "stale": 0, "dead_lettered": 0}
    assert stored_ids(engine, "throttled") == sorted(ids)
    assert engine.dead_letters("throttled") == []
    print(f"{rejected} bulk request(s) refused with 429, all retried")
