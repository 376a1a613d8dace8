"""The scale benchmark's pure parts: the varied corpus, brute-force truth, recall, the plot."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from modalfuse.benchmarks.plot import scale_plot, series
from modalfuse.benchmarks.query import corpus, corpus_vectors, exact_top, recall_at
from modalfuse.errors import ConfigError


def unit_rows(rows: int, dim: int, seed: int) -> NDArray[np.float32]:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def test_corpus_keeps_the_products_then_varies_them() -> None:
    base = unit_rows(3, 8, 0)
    vecs = corpus_vectors(7, base)
    assert vecs.shape == (7, 8) and vecs.dtype == np.float32
    assert np.array_equal(vecs[:3], base)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    # A variant stays near its product (noise of about 0.03 in norm at 8 dimensions).
    assert float(vecs[3] @ base[0]) > 0.99 and float(vecs[4] @ base[1]) > 0.99
    chunks = list(corpus(["red dress", "blue shirt", "green hat"], ["a", "b", "c"], vecs, chunk=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    docs = [d for c in chunks for d in c]
    assert [d.id for d in docs] == [str(i) for i in range(7)]
    assert docs[0].fields["title"] == "red dress" and docs[6].fields["category"] == "a"
    assert sorted(docs[4].fields["title"].split()[:2]) == ["blue", "shirt"]
    stored = docs[5].vectors["text_vector"]
    assert stored is not None and np.array_equal(stored, vecs[5])


def test_exact_top_is_brute_force_across_chunks() -> None:
    corpus_vecs = unit_rows(250_000, 4, 1)
    queries = corpus_vecs[[7, 123_456, 249_999]]
    top = exact_top(corpus_vecs, queries, 3)
    expected = [set(np.argsort(-(corpus_vecs @ q))[:3].astype(str)) for q in queries]
    assert top == expected
    assert all(str(i) in t for i, t in zip([7, 123_456, 249_999], top, strict=True))


def test_recall_counts_the_true_ids_in_the_first_k() -> None:
    def hits(*ids: str) -> list[Any]:
        return [SimpleNamespace(id=i) for i in ids]

    truth = [{"a", "b"}, {"c", "d"}]
    assert recall_at([hits("a", "b", "x"), hits("c", "x", "d")], truth, 2) == 0.75
    assert recall_at([hits("b", "a"), hits("d", "c")], truth, 2) == 1.0


def result(engine: str, quantization: str, *sizes: int) -> dict[str, Any]:
    out: dict[str, Any] = {"engine": engine, "quantization": quantization, "window": 100}
    for n in sizes:
        mode = {"p50_ms": n / 1000, "p95_ms": n / 500}
        out[str(n)] = {
            "documents": n,
            "lexical": mode,
            "vector": mode,
            "hybrid": mode,
            "recall_at_10": 0.9,
            "build_s": n / 100,
        }
    return out


def test_series_merges_files_of_one_engine_and_orders_sizes(tmp_path: Path) -> None:
    lines = series(
        [result("opensearch", "none", 100_000), result("opensearch", "none", 10_000),
         result("opensearch", "sq", 10_000), result("lancedb", "none", 10_000, 1_000_000),
         result("lancedb", "none", 100_000) | {"refine_factor": 4}]
    )  # fmt: skip
    assert {k: [p["documents"] for p in v] for k, v in lines.items()} == {
        "lancedb": [10_000, 1_000_000],
        "lancedb refine 4": [100_000],
        "opensearch": [10_000, 100_000],
        "opensearch sq": [10_000],
    }
    with pytest.raises(ConfigError, match="no `bench query --json` sizes"):
        series([{"engine": "lancedb"}])
    out = scale_plot([result("lancedb", "none", 10_000, 100_000)], tmp_path / "img" / "s.svg")
    assert out.read_text().startswith("<?xml") and "recall@10" in out.read_text()
