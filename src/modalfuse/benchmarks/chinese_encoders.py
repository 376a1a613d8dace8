"""Query encoding with the prebuilt encoders, fp32 and int8, torch-free: bge-small-zh-v1.5 on a
Chinese judged set's queries and titles against all-MiniLM-L6-v2 on the catalogue's titles, in
texts/s, one query per call as the search path encodes (and in batches, as ingest does); plus
the int8 change of dense nDCG@10 on that set.

    modalfuse bench encoders --zh ../shared/data/taobao-cosmetics --json
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modalfuse.benchmarks.encoders import dense_ndcg, load_titles
from modalfuse.evaluation import beir
from modalfuse.onnx_models import prebuilt
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings


def _rate(encoder: OnnxEncoder, texts: Sequence[str], *, one_by_one: bool, rounds: int) -> float:
    encoder.encode_texts(list(texts[:16]))  # warm-up: session start, first shapes
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        if one_by_one:
            for t in texts:
                encoder.encode_texts([t])
        else:
            encoder.encode_texts(list(texts), batch_size=32)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def run(
    settings: Settings, dataset: Path, *, rounds: int = 3, queries: int = 200
) -> dict[str, Any]:
    data = beir.load(dataset, "dev")
    docs = list(beir.corpus(dataset))
    zh_queries = [q.text for q in data.queries.values()][:queries]
    zh_titles = [d.get("title") or "" for d in docs][:1000]
    en_titles = load_titles(None, 1000)
    out: dict[str, Any] = {"dataset": str(dataset), "rounds": rounds}
    vectors: dict[str, Any] = {}
    for name, sample_queries, sample_docs in (
        ("all-MiniLM-L6-v2", en_titles[:queries], en_titles),
        ("bge-small-zh-v1.5", zh_queries, zh_titles),
    ):
        for dtype in ("fp32", "int8"):
            directory = prebuilt.install(name, settings, quantize=dtype == "int8")
            encoder = OnnxEncoder(directory, settings=settings)
            key = f"{name} {dtype}"
            out[key] = {
                "queries_per_s": round(
                    _rate(encoder, sample_queries, one_by_one=True, rounds=rounds), 1
                ),
                "docs_per_s_batch32": round(
                    _rate(encoder, sample_docs, one_by_one=False, rounds=rounds), 1
                ),
            }
            if name.startswith("bge"):
                vectors[dtype] = encoder
    ids = [d["id"] for d in docs]
    corpus = [d.get("title") or "" for d in docs]
    texts = {q.id: q.text for q in data.queries.values()}
    judged = {q: r for q, r in data.qrels.items() if q in texts}
    ndcg = {
        dtype: dense_ndcg(enc, ids, enc.encode_texts(corpus), texts, judged)
        for dtype, enc in vectors.items()
    }
    out["bge_dense_ndcg10"] = {k: round(v, 4) for k, v in ndcg.items()}
    out["bge_int8_ndcg10_change"] = round(ndcg["int8"] - ndcg["fp32"], 4)
    return out


def render(result: dict[str, Any]) -> str:
    lines = [f"prebuilt encoders, best of {result['rounds']} rounds"]
    for key, value in result.items():
        if isinstance(value, dict) and "queries_per_s" in value:
            lines.append(
                f"  {key:24s} {value['queries_per_s']:8.1f} queries/s (one per call)  "
                f"{value['docs_per_s_batch32']:8.1f} texts/s (batch 32)"
            )
    lines.append(
        f"  bge dense nDCG@10 on {Path(result['dataset']).name} dev: {result['bge_dense_ndcg10']} "
        f"(int8 change {result['bge_int8_ndcg10_change']:+.4f})"
    )
    return "\n".join(lines)
