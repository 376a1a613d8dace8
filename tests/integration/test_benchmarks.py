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
