"""The query benchmark runs end to end on a small corpus and reports what the README quotes.

Speed itself is measured by `modalfuse bench query`, never asserted here."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalfuse.settings import Settings

pytestmark = pytest.mark.needs_export


def test_query_benchmark_reports_every_mode(settings: Settings, minilm_fp32: Path) -> None:
    from modalfuse.benchmarks.query import render, run

    result = run(settings, sizes=(3000,), queries=12, window=20)
    size = result["3000"]
    assert size["documents"] == 3000 and size["ann_index"] is False
    modes = ["lexical", "vector", "hybrid", "fetch", "encode"]
    for figures in [*(size[m] for m in modes), *size["pairs"].values()]:
        assert 0 < figures["p50_ms"] <= figures["p95_ms"], figures
    for mode in ("lexical", "vector", "hybrid"):
        assert size[mode]["cpu_ms_per_call"] > 0
    assert size["hybrid_over_vector_p50"] == pytest.approx(
        size["hybrid"]["p50_ms"] / size["vector"]["p50_ms"], abs=1e-3
    )
    assert "hybrid/vector p50" in render(result)
    # Below the ANN threshold LanceDB searches exactly: brute force finds the same top 10.
    assert size["recall_at_10"] == 1.0
    assert [(p["ef_search"], p["recall_at_10"]) for p in size["ef_sweep"]] == [
        (100, 1.0), (200, 1.0), (400, 1.0), (800, 1.0)
    ]  # fmt: skip
    assert size["size_bytes"] > 0 and size["client_max_rss_mb"] > 0


@pytest.mark.slow
def test_ingest_benchmark_warms_up_then_times_rounds(
    settings: Settings, minilm_fp32: Path, tmp_path: Path
) -> None:
    from modalfuse.benchmarks.ingest import render, run

    result = run(settings, fashion_limit=40, batch_size=16, rounds=2, warmup=20)
    fashion = result["fashion"]
    assert result["rounds"] == 2 and fashion["warmup_docs"] == 20
    ratios = [r["ratio"] for r in fashion["rounds"]]
    for r in fashion["rounds"]:
        assert r["docs"] == 40 and r["retried"] == 0
        assert r["ratio"] == pytest.approx(r["docs_per_s"] / r["encoder_docs_per_s"], rel=0.02)
        assert {"encode_text", "encode_image", "write"} <= set(r["worker_stage_s"])
    # The median round's own figures, not a mix of rounds.
    assert fashion["ratio"] == max(ratios) and fashion["ratio_range"] == [min(ratios), max(ratios)]
    assert fashion["docs_per_s"] == max(fashion["rounds"], key=lambda r: r["ratio"])["docs_per_s"]
    # LanceDB runs in the worker itself: no server nodes, no nodes' CPU to report.
    assert "nodes_cpu_s" not in fashion and "nodes_cpu_s_warmup" not in fashion
    assert "median of 2" in render(result)


@pytest.mark.slow
@pytest.mark.opensearch
def test_ingest_benchmark_on_opensearch_warms_the_nodes_and_reports_their_cpu(
    settings: Settings, minilm_fp32: Path, opensearch_url: str
) -> None:
    from modalfuse.benchmarks.ingest import render, run
    from modalfuse.engines.opensearch import OpenSearchEngine
    from tests.conftest import opensearch_settings

    s = opensearch_settings(
        opensearch_url, settings.data_dir, model_cache_dir=settings.models_dir, intra_op_threads=2
    )
    result = run(s, fashion_limit=30, batch_size=10, rounds=1, warmup=10, node_warmup=45)
    fashion = result["fashion"]
    assert fashion["node_warmup_docs"] == 45 and fashion["node_warmup_s"] > 0
    # The nodes' process stats are sampled once a second, so a step this short may read 0.0;
    # the figures themselves are tested on the cluster (test_cluster_replication.py).
    assert fashion["nodes_cpu_s_node_warmup"] >= 0 and fashion["nodes_cpu_s"] >= 0
    assert fashion["rounds"][0]["docs"] == 30 and fashion["retried_all_rounds"] == 0
    assert "nodes warmed with 45 encoded docs" in render(result)
    # Every bench index, the node warm-up's included, is dropped: a shared cluster keeps none.
    with OpenSearchEngine(s) as engine:
        left = engine.client.indices.get(index="bench-ingest-*", expand_wildcards="all")
    assert left == {}


@pytest.mark.opensearch
def test_node_warm_up_writes_each_document_once_under_a_new_id(
    settings: Settings, minilm_fp32: Path, opensearch_url: str
) -> None:
    from modalfuse.benchmarks.ingest import RawEncoders, encoded, fashion_docs, warm_nodes
    from modalfuse.engines.opensearch import OpenSearchEngine
    from modalfuse.service.indexes import create_index
    from tests.conftest import dropped_after, opensearch_settings, unique_name

    s = opensearch_settings(opensearch_url, settings.data_dir, image_encoder="none")
    alias = unique_name("node-warm")
    docs = fashion_docs(4, images=False)
    with OpenSearchEngine(s) as engine, dropped_after(engine, alias):
        create_index(engine, s, name=alias)
        written = encoded(engine, alias, docs, RawEncoders(s))
        dims = [{k: None if v is None else len(v) for k, v in d.vectors.items()} for d in written]
        assert dims == [{"text_vector": 384}] * 4
        warm_nodes(engine, alias, written, count=10, batch_size=3)
        engine.refresh(alias)
        hits = engine.client.search(index=alias, body={"size": 20, "_source": ["title"]})
    ids = sorted(h["_id"] for h in hits["hits"]["hits"])
    assert ids == sorted(f"nw{i}-{docs[i % 4]['id']}" for i in range(10))
