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
