"""Query latency on an engine (LanceDB by default; `--engine opensearch` with MODALFUSE_OPENSEARCH_URL)
at 10k and 100k documents (`--sizes` for others: 1M is in docs/opensearch.md).

Corpus: the 2,000 bundled products, encoded with the text encoder, then varied up to the target
size. Variant j of product i keeps i's words in a shuffled order with one word from another
product's title appended, and its vector is i's vector plus Gaussian noise (sigma 0.01 per
dimension, about 0.2 in norm), re-normalised. The vector mode's recall@10 is measured against a
brute-force search over the same vectors. So the lexical index sees a realistic vocabulary and
length distribution, and the vector index sees clusters of near-duplicates, as catalogues have.

Ranking after fusion (`ranking_stages.py`): each stage on its own at the run's window and at
1000, and the whole ranking run against the hybrid search that returns the fields it reads.

Queries: 200 title fragments (2-3 leading words of random real titles). Per query, after
warm-up: lexical (BM25, top `window`), vector (kNN, top `window`), hybrid (both at once through
`search_many`, then the default fusion, auto), each returning ids and scores from a precomputed query vector; the
query encoding on its own; and the fetch of a page's 10 documents, which every mode is followed
by. Reported: p50 and p95 in ms, and CPU time per call; `pairs` times two lexical and two vector
searches gathered, to show how far two concurrent sub-searches overlap.

    modalfuse bench query --json
"""

from __future__ import annotations

import dataclasses
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modalfuse.benchmarks import ranking_stages
from modalfuse.benchmarks.ranking_stages import measure_stages
from modalfuse.engines import open_engine
from modalfuse.engines.base import Document, KnnQuery, LexicalQuery, NodeHeaps, ServerSideFusion
from modalfuse.mappings.schema import parse_schema, resolve
from modalfuse.onnx_models import registry
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.query import fusion
from modalfuse.sample import load_catalogue
from modalfuse.settings import Settings

SCHEMA: dict[str, Any] = {
    "name": "bench",
    "fields": [
        {"name": "title", "type": "text", "analyzer": "english"},
        {"name": "category", "type": "keyword"},
        # What the ranking stages read: a signal, and the variant group (a product's variants).
        {"name": "popularity", "type": "number", "signal": True},
        {"name": "style", "type": "keyword"},
        {"name": "text_vector", "type": "vector", "encoder": "text", "sources": ["title"]},
    ],
}


def schema(name: str, quantization: str) -> dict[str, Any]:
    fields = [
        f | {"hnsw": {"quantization": quantization}} if f["type"] == "vector" else f
        for f in SCHEMA["fields"]
    ]
    return SCHEMA | {"name": name, "fields": fields}


def corpus_vectors(size: int, vectors: NDArray[np.float32], seed: int = 0) -> NDArray[np.float32]:
    """Every document's vector: the products' own, then noisy re-normalised copies."""
    rng = np.random.default_rng(seed)
    out = np.empty((size, vectors.shape[1]), dtype=np.float32)
    for start in range(0, size, 50_000):
        rows = np.arange(start, min(size, start + 50_000))
        base = vectors[rows % len(vectors)]
        noisy = base + rng.normal(0, 0.01, base.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        out[rows] = np.where((rows < len(vectors))[:, None], base, noisy)
    return out


def corpus(
    titles: list[str],
    categories: list[str],
    vectors: NDArray[np.float32],
    *,
    chunk: int = 5000,
    seed: int = 0,
) -> Iterator[list[Document]]:
    """The documents, `chunk` at a time (a million of them do not fit in memory at once)."""
    pyrng = random.Random(seed)
    words = [t.split() for t in titles]
    for start in range(0, len(vectors), chunk):
        docs = []
        for j in range(start, min(len(vectors), start + chunk)):
            i = j % len(titles)
            if j < len(titles):
                title = titles[i]
            else:
                shuffled = words[i][:]
                pyrng.shuffle(shuffled)
                extra = pyrng.choice(words[pyrng.randrange(len(words))] or ["item"])
                title = " ".join([*shuffled, extra])
            fields = {
                "title": title,
                "category": categories[i],
                "popularity": (j * 37) % 1000,
                "style": f"s{i}",
            }
            docs.append(
                Document(id=str(j), version=1, fields=fields, vectors={"text_vector": vectors[j]})
            )
        yield docs


def exact_top(
    corpus_vecs: NDArray[np.float32], queries: NDArray[np.float32], k: int
) -> list[set[str]]:
    """The true top-k ids of each query by inner product (the vectors are unit-norm)."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(corpus_vecs), 100_000):
        scores = queries @ corpus_vecs[start : start + 100_000].T
        ids = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate([best_ids, ids], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_ids = np.take_along_axis(ids, keep, axis=1)
    return [{str(i) for i in row} for row in best_ids]


def recall_at(hits: list[list[Any]], truth: list[set[str]], k: int) -> float:
    """Mean share of the true top-k found in each result's first k."""
    found = [len({h.id for h in got[:k]} & want) / k for got, want in zip(hits, truth, strict=True)]
    return round(float(np.mean(found)), 4)


def percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(q[49], 3), "p95_ms": round(q[94], 3)}


def latencies(fn: Callable[[int], Any], count: int) -> dict[str, float]:
    """p50/p95 of `fn(i)` for i in range(count), in ms, and the process CPU time per call (all
    threads, LanceDB's native ones included): CPU above wall time means parallel work."""
    samples = []
    cpu_started = time.process_time()
    for i in range(count):
        started = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - started) * 1000)
    cpu_ms = (time.process_time() - cpu_started) * 1000 / count
    return percentiles(samples) | {"cpu_ms_per_call": round(cpu_ms, 3)}


EF_SWEEP = (100, 200, 400, 800)


def ef_point(
    engine: Any, name: str, knn: list[KnnQuery], truth: list[set[str]], ef: int
) -> dict[str, Any]:
    wider = [dataclasses.replace(q, ef_search=ef) for q in knn]
    recall = recall_at([engine.knn(name, q) for q in wider], truth, 10)
    timed = latencies(lambda i: engine.knn(name, wider[i]), len(wider))
    return {"ef_search": ef, "recall_at_10": recall} | timed


def run_size(
    size: int,
    settings: Settings,
    *,
    titles: list[str],
    categories: list[str],
    vectors: NDArray[np.float32],
    queries: list[str],
    encoder: OnnxEncoder,
    window: int,
    quantization: str = "none",
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-query-{size}-") as tmp:
        engine = open_engine(settings.model_copy(update={"data_dir": Path(tmp)}))
        # Its own alias, so a shared cluster's indices are never touched (dropped at the end).
        name = f"bench-{size}-{os.getpid()}"
        engine.create(resolve(parse_schema(schema(name, quantization)), {"text": vectors.shape[1]}))
        try:
            return measure(
                engine, name, size, titles, categories, vectors, queries, encoder, window
            )
        finally:
            engine.drop(name)
            engine.close()


def measure(
    engine: Any,
    name: str,
    size: int,
    titles: list[str],
    categories: list[str],
    vectors: NDArray[np.float32],
    queries: list[str],
    encoder: OnnxEncoder,
    window: int,
) -> dict[str, Any]:
    corpus_vecs = corpus_vectors(size, vectors)
    started = time.perf_counter()
    for docs in corpus(titles, categories, corpus_vecs):
        written = engine.upsert(name, docs)
        if written.failed:
            raise RuntimeError(f"{len(written.failed)} document(s) failed: {written.failed[0]}")
    engine.refresh(name)
    engine.optimize(name)
    build_s = time.perf_counter() - started
    stats = engine.stats(name)
    ann = stats.details.get("ann", "hnsw")
    qvecs = encoder.encode_texts(queries)
    truth = exact_top(corpus_vecs, qvecs, 10)
    del corpus_vecs
    # As the query layer retrieves: ids and scores only (fields are fetched for the page).
    lex = [LexicalQuery(text=q, fields={"title": 1.0}, k=window, source=False) for q in queries]
    base_ef = max(100, window)
    knn = [
        KnnQuery(field="text_vector", vector=v, k=window, ef_search=base_ef, source=False)
        for v in qvecs
    ]

    def hybrid(i: int) -> list[Any]:
        # Retrieval as the query layer does it: both sub-searches at once, then the default
        # fusion (auto).
        lists = engine.search_many(name, [lex[i], knn[i]])
        fused = fusion.fuse({"lexical": lists[0], "text_vector": lists[1]}, window=window)
        return [lists, fused]

    for i in range(min(20, len(queries))):  # warm-up: caches, index pages, thread pools
        engine.lexical(name, lex[i])
        engine.knn(name, knn[i])
        hybrid(i)
    pages = [hybrid(i) for i in range(len(queries))]

    def fetch(i: int) -> None:
        lists, fused = pages[i]
        refs = {h.id: h.ref for hits in lists for h in hits}
        engine.fetch(name, [f.id for f in fused[:10]], refs)

    efs = sorted({base_ef, *(ef for ef in EF_SWEEP if ef >= window)})
    sweep = [ef_point(engine, name, knn, truth, ef) for ef in efs]
    out: dict[str, Any] = {
        "documents": size,
        "ann_index": ann,
        "build_s": round(build_s, 1),
        "size_bytes": stats.size_bytes,
        # The engine's own figures: shard copies, store across copies, the nodes' heaps.
        "engine": {k: v for k, v in stats.details.items() if k != "indices"}
        | ({"heap_used_mb": engine.heap_used_mb()} if isinstance(engine, NodeHeaps) else {}),
        # What a wider HNSW search buys: recall@10 (against brute force over the same vectors)
        # and latency per ef_search, starting at the one every mode below retrieves with.
        "ef_sweep": sweep,
        "recall_at_10": next(p["recall_at_10"] for p in sweep if p["ef_search"] == base_ef),
        "lexical": latencies(lambda i: engine.lexical(name, lex[i]), len(queries)),
        "vector": latencies(lambda i: engine.knn(name, knn[i]), len(queries)),
        "hybrid": latencies(hybrid, len(queries)),
        # How much two sub-searches overlap when gathered, whatever their kind: the
        # hybrid/vector ratio cannot beat what two of the same kind manage.
        "pairs": {
            "lexical+lexical": latencies(
                lambda i: engine.search_many(name, [lex[i], lex[i - 1]]), len(queries)
            ),
            "vector+vector": latencies(
                lambda i: engine.search_many(name, [knn[i], knn[i - 1]]), len(queries)
            ),
        },
        # Stored fields of the 10 hits of a page, after any mode (not part of the modes).
        "fetch": latencies(fetch, len(queries)),
        # Fusion alone, on lists already retrieved (the client-side hybrid's own cost): the
        # default (auto) and plain RRF.
        "fuse": latencies(
            lambda i: fusion.fuse(
                {"lexical": pages[i][0][0], "text_vector": pages[i][0][1]}, window=window
            ),
            len(queries),
        ),
        "fuse_rrf": latencies(
            lambda i: fusion.rrf(
                {"lexical": pages[i][0][0], "text_vector": pages[i][0][1]}, window=window
            ),
            len(queries),
        ),
    }
    # The stages after fusion, at this run's window and at the largest, and the hybrid search
    # that also returns the fields they read (the vector included), which is what they follow.
    windows = tuple(sorted({window, 1000}))
    out["stages"] = measure_stages(engine, name, queries, qvecs, windows, latencies)
    returned = ranking_stages.STAGE_FIELDS
    lex_f = [dataclasses.replace(q, returned=returned) for q in lex]
    knn_f = [dataclasses.replace(q, returned=returned) for q in knn]
    out["hybrid_with_stage_fields"] = latencies(
        lambda i: engine.search_many(name, [lex_f[i], knn_f[i]]), len(queries)
    )
    at_window = out["stages"][f"window_{window}"]
    # The client's work, and that with the one read diversity over a vector adds.
    ranking, load = at_window["ranking"]["p50_ms"], at_window["load_vectors"]["p50_ms"]
    hybrid_p50 = out["hybrid_with_stage_fields"]["p50_ms"]
    out["ranking_over_hybrid_p50"] = round(ranking / hybrid_p50, 3)
    out["ranking_and_load_over_hybrid_p50"] = round((ranking + load) / hybrid_p50, 3)
    if isinstance(engine, ServerSideFusion):
        weights = [1.0, 1.0]

        def server(i: int) -> Any:
            return engine.fused_search(
                name,
                [lex[i], knn[i]],
                method="rrf",
                rank_constant=60,
                weights=weights,
                size=10,
                window=window,
            )

        for i in range(min(20, len(queries))):
            server(i)
        out["hybrid_server_side"] = latencies(server, len(queries))
    # This process's peak resident memory: the corpus and, on LanceDB, the engine itself.
    out["client_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def run(
    settings: Settings,
    *,
    sizes: tuple[int, ...] = (10_000, 100_000),
    queries: int = 200,
    window: int = 100,
    quantization: str = "none",
) -> dict[str, Any]:
    catalogue = [(i, f) for i, f in load_catalogue() if f.get("title")]
    titles = [f["title"] for _, f in catalogue]
    categories = [f.get("category", "") for _, f in catalogue]
    encoder = OnnxEncoder(registry.text_encoder_dir(settings), settings=settings)
    vectors = encoder.encode_texts(titles)
    rng = random.Random(1)
    fragments = [" ".join(rng.choice(titles).split()[: rng.choice([2, 3])]) for _ in range(queries)]
    for q in fragments[:20]:
        encoder.encode_texts([q])
    result: dict[str, Any] = {
        "engine": settings.engine,
        "quantization": quantization,
        # The one search-time setting outside the schema that changes recall (LanceDB's).
        "refine_factor": settings.lancedb_refine_factor,
        "window": window,
        "queries": queries,
        "encode": latencies(lambda i: encoder.encode_texts([fragments[i]]), len(fragments)),
    }
    for size in sizes:
        result[str(size)] = run_size(
            size,
            settings,
            titles=titles,
            categories=categories,
            vectors=vectors,
            queries=fragments,
            encoder=encoder,
            window=window,
            quantization=quantization,
        ) | {"encode": result["encode"]}
        r = result[str(size)]
        for mode in ("lexical", "hybrid", "hybrid_server_side"):
            if mode in r:
                for q in ("p50", "p95"):
                    r[f"{mode}_over_vector_{q}"] = round(
                        r[mode][f"{q}_ms"] / r["vector"][f"{q}_ms"], 3
                    )
    return result


def render(result: dict[str, Any]) -> str:
    lines = [f"window {result['window']}, {result['queries']} queries; encode {result['encode']}"]
    for r in result.values():
        if isinstance(r, dict) and "documents" in r:
            lines.append(
                f"{r['documents']:>7} docs (ann {r['ann_index']}, built in {r['build_s']} s, "
                f"recall@10 {r['recall_at_10']}): "
                f"lexical {r['lexical']}  vector {r['vector']}  hybrid {r['hybrid']}  "
                f"fetch {r['fetch']}  "
                f"hybrid/vector p50 {r['hybrid_over_vector_p50']}  "
                f"stages {r['stages']}  ranking/hybrid p50 {r['ranking_over_hybrid_p50']}"
                + (
                    f"  server-side hybrid {r['hybrid_server_side']} "
                    f"(/vector p50 {r['hybrid_server_side_over_vector_p50']})"
                    if "hybrid_server_side" in r
                    else ""
                )
            )
    return "\n".join(lines)
