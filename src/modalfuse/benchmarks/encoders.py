"""Encoder throughput: PyTorch fp32 (sentence-transformers) vs onnxruntime fp32 and int8.

All three run in one process, on the same inputs, with the same thread count and batch size,
interleaved over several rounds; each figure is the best round, so a noisy neighbour on a shared
machine slows a round rather than one contender. Also measures the int8 quality change as
nDCG@10 of dense retrieval on SciFact (train split).

    modalfuse bench encoders --json
"""

from __future__ import annotations

import io
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modalfuse.evaluation.metrics import ndcg_at_k
from modalfuse.jsonl import records
from modalfuse.onnx_models.export import export_encoder
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.sample import SAMPLE_DIR
from modalfuse.settings import Settings

SAMPLE = SAMPLE_DIR / "products.jsonl"


def load_titles(fashion: Path | None, limit: int) -> list[str]:
    path = (
        fashion / "products.jsonl" if fashion and (fashion / "products.jsonl").is_file() else SAMPLE
    )
    return [r["productDisplayName"] for r in records(path)][:limit]


def load_scifact(
    scifact: Path,
) -> tuple[list[str], list[str], dict[str, str], dict[str, dict[str, float]]]:
    corpus = records(scifact / "corpus.jsonl")
    queries = {q["_id"]: q["text"] for q in records(scifact / "queries.jsonl")}
    qrels: dict[str, dict[str, float]] = defaultdict(dict)
    for line in (scifact / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, doc, score = line.split("\t")
        qrels[qid][doc] = float(score)
    ids = [d["_id"] for d in corpus]
    texts = [f"{d['title']} {d['text']}".strip() for d in corpus]
    return ids, texts, {q: queries[q] for q in qrels if q in queries}, dict(qrels)


def throughput(
    contenders: dict[str, Callable[[Sequence[str]], Any]], texts: Sequence[str], rounds: int
) -> dict[str, float]:
    for fn in contenders.values():
        fn(texts[:32])  # warm-up: session init, allocator, first-batch shapes
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn(texts)
            rate = len(texts) / (time.perf_counter() - start)
            best[name] = max(best.get(name, 0.0), rate)
    return best


def dense_ndcg(
    encoder: OnnxEncoder,
    ids: list[str],
    corpus_vecs: np.ndarray[Any, Any],
    queries: dict[str, str],
    qrels: dict[str, dict[str, float]],
) -> float:
    qids = list(queries)
    qvecs = encoder.encode_texts([queries[q] for q in qids])
    scores = qvecs @ corpus_vecs.T
    top = np.argsort(-scores, axis=1)[:, :10]
    return float(
        np.mean(
            [ndcg_at_k([ids[j] for j in row], qrels[q]) for q, row in zip(qids, top, strict=True)]
        )
    )


def run(
    *,
    settings: Settings,
    fashion: Path | None,
    scifact: Path | None,
    titles: int,
    abstracts: int,
    rounds: int,
    batch_size: int,
) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    threads = settings.intra_op_threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    fp32_dir = export_encoder(settings=settings)
    int8_dir = export_encoder(settings=settings, quantize=True)
    fp32, int8 = OnnxEncoder(fp32_dir, settings=settings), OnnxEncoder(int8_dir, settings=settings)
    st = SentenceTransformer(
        fp32_dir.joinpath("manifest.json").exists() and fp32.manifest.source, device="cpu"
    )
    st.max_seq_length = fp32.manifest.text.max_seq_length if fp32.manifest.text else 256

    def pytorch(texts: Sequence[str]) -> Any:
        with torch.inference_mode():
            return st.encode(list(texts), batch_size=batch_size, normalize_embeddings=True)

    contenders = {
        "pytorch_fp32": pytorch,
        "ort_fp32": lambda t: fp32.encode_texts(t, batch_size=batch_size),
        "ort_int8": lambda t: int8.encode_texts(t, batch_size=batch_size),
    }
    result: dict[str, Any] = {
        "threads": threads,
        "batch_size": batch_size,
        "rounds": rounds,
        "provider": fp32.provider,
    }
    sets = {"titles": load_titles(fashion, titles)}
    scifact_data = None
    if scifact and (scifact / "corpus.jsonl").is_file():
        scifact_data = load_scifact(scifact)
        sets["abstracts"] = scifact_data[1][:abstracts]
    for name, texts in sets.items():
        rates = throughput(contenders, texts, rounds)
        result[name] = {k: round(v, 1) for k, v in rates.items()} | {
            "texts": len(texts),
            "ratio_ort_fp32": round(rates["ort_fp32"] / rates["pytorch_fp32"], 2),
            "ratio_ort_int8": round(rates["ort_int8"] / rates["pytorch_fp32"], 2),
        }
    if scifact_data is not None:
        ids, corpus, queries, qrels = scifact_data
        n32 = dense_ndcg(fp32, ids, fp32.encode_texts(corpus), queries, qrels)
        n8 = dense_ndcg(int8, ids, int8.encode_texts(corpus), queries, qrels)
        result |= {
            "ndcg10_fp32": round(n32, 4),
            "ndcg10_int8": round(n8, 4),
            "int8_ndcg10_drop": round(n32 - n8, 4),
            "ndcg_queries": len(queries),
        }
    return result


def render(result: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"texts/s, best of {result['rounds']} rounds; {result['threads']} threads, "
        f"batch {result['batch_size']}, {result['provider']}"
    )
    for column in (
        "set",
        "texts",
        "pytorch_fp32",
        "ort_fp32",
        "ort_int8",
        "fp32 / pytorch",
        "int8 / pytorch",
    ):
        table.add_column(column, justify="left" if column == "set" else "right")
    for name in ("titles", "abstracts"):
        if name in result:
            r = result[name]
            cells = (
                r["texts"],
                r["pytorch_fp32"],
                r["ort_fp32"],
                r["ort_int8"],
                r["ratio_ort_fp32"],
                r["ratio_ort_int8"],
            )
            table.add_row(name, *(str(c) for c in cells))
    console = Console(record=True, width=110, file=io.StringIO())  # rendered, printed by the caller
    console.print(table)
    if "int8_ndcg10_drop" in result:
        console.print(
            f"SciFact train dense nDCG@10 ({result['ndcg_queries']} queries): fp32 {result['ndcg10_fp32']}, "
            f"int8 {result['ndcg10_int8']}, drop {result['int8_ndcg10_drop']}"
        )
    else:
        console.print(
            "SciFact not found: abstracts and the int8 nDCG check were skipped (pass --scifact DIR)"
        )
    return console.export_text()
