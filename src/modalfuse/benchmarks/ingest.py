"""End-to-end ingest throughput against raw encoder throughput, in one run.

For each dataset: encode the documents' texts (and images, when an image encoder is configured)
directly with the encoder, in the pipeline's batch size, to get the raw docs/s; then push the
same documents through the whole path (JSONL -> producer -> embedded broker -> one worker process
-> validate -> encode -> LanceDB) and time it from the first publish to the last result. The ratio
of the two says what the queue costs; the workers' per-stage seconds say where it goes.

    modalfuse bench ingest --json
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from modalfuse.engines import open_engine
from modalfuse.errors import ModalfuseError
from modalfuse.ingest.pipeline import joined_text
from modalfuse.ingest.producer import Producer
from modalfuse.ingest.worker import Pool, exit_reason, spawn_worker
from modalfuse.jsonl import read_records
from modalfuse.onnx_models import registry
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.sample import SAMPLE_DIR, load_catalogue
from modalfuse.service.indexes import create_index
from modalfuse.service.ingest import ingest_and_wait
from modalfuse.settings import Settings


def fashion_docs(limit: int, *, images: bool, folder: Path = SAMPLE_DIR) -> list[dict[str, Any]]:
    docs = []
    for doc_id, fields in load_catalogue(folder)[:limit]:
        doc = {"id": doc_id, **fields}
        if images and "image" in fields:
            doc["image"] = str(folder / fields["image"])
        else:
            doc.pop("image", None)
        docs.append(doc)
    return docs


def scifact_docs(folder: Path, limit: int) -> list[dict[str, Any]]:
    corpus = itertools.islice(read_records(folder / "corpus.jsonl", required="_id"), limit)
    return [{"id": d["_id"], "title": d["title"], "description": d["text"]} for _, d in corpus]


def raw_throughput(docs: list[dict[str, Any]], settings: Settings, *, batch_size: int) -> float:
    """Docs/s of the encoders alone on the same inputs, in the pipeline's batch size."""
    text = OnnxEncoder(registry.text_encoder_dir(settings), settings=settings)
    image_dir = registry.image_encoder_dir(settings)
    image = OnnxEncoder(image_dir, settings=settings) if image_dir else None
    texts = [joined_text(d, ["title", "description"]) for d in docs]
    paths = [Path(d["image"]) for d in docs if "image" in d]
    text.encode_texts(texts[:batch_size])  # warm-up: first-run allocations are not throughput
    started = time.perf_counter()
    for i in range(0, len(docs), batch_size):
        text.encode_texts([t for t in texts[i : i + batch_size] if t])
    if image is not None and paths:
        for i in range(0, len(paths), batch_size):
            image.encode_images(paths[i : i + batch_size])
    return len(docs) / (time.perf_counter() - started)


def end_to_end(
    docs: list[dict[str, Any]],
    settings: Settings,
    *,
    batch_size: int,
    workdir: Path,
    image_root: Path = SAMPLE_DIR,
    pool: Pool = "prefork",
    concurrency: int | None = None,
) -> dict[str, Any]:
    processes = 1 if pool == "solo" else concurrency or os.cpu_count() or 1
    s = settings.model_copy(update={"data_dir": workdir, "model_cache_dir": settings.models_dir})
    # Its own alias, so a shared cluster's indices are never touched (dropped at the end).
    name = f"bench-ingest-{os.getpid()}"
    with open_engine(s) as engine:
        create_index(engine, s, name=name)
    warm = workdir / "warm.jsonl"
    warm.write_text("\n".join(json.dumps(d | {"id": f"warm-{d['id']}"}) for d in docs[:batch_size]))
    path = workdir / "docs.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    log = workdir / "worker.log"
    with spawn_worker(s, log=log, pool=pool, concurrency=concurrency) as proc:
        gone = functools.partial(exit_reason, proc, log)
        # The worker's start (imports, encoder sessions) is not throughput: warm it up first.
        producer = Producer(s)
        ingest_and_wait(
            warm, s, index=name, producer=producer, image_roots=[image_root], worker_gone=gone
        )
        report = ingest_and_wait(
            path,
            s,
            index=name,
            batch_size=batch_size,
            producer=producer,
            timeout=3600,
            worker_gone=gone,
        )
    with open_engine(s) as engine:
        engine.drop(name)
    if report.indexed != len(docs):
        raise ModalfuseError(f"bench ingest: {report.model_dump_json()}")
    stages = report.stage_s
    elapsed = report.elapsed_s  # first publish to last result (not the optimize after it)
    return {
        "docs": len(docs),
        "elapsed_s": elapsed,
        "docs_per_s": round(len(docs) / elapsed, 1),
        "retried": report.retried,
        "worker_stage_s": stages,
        "worker_processes": processes,
        # Per process: publishing, broker round trips, result polling, idle time between
        # batches (the stage seconds are summed over the processes that ran in parallel).
        "outside_stages_s": round(elapsed - sum(stages.values()) / processes, 2),
    }


def run(
    settings: Settings,
    *,
    fashion: Path = SAMPLE_DIR,
    fashion_limit: int = 2000,
    scifact: Path | None = None,
    scifact_limit: int = 1000,
    batch_size: int | None = None,
    pool: Pool = "prefork",
    concurrency: int | None = None,
) -> dict[str, Any]:
    batch = batch_size or settings.ingest_batch_size
    datasets: dict[str, list[dict[str, Any]]] = {
        "fashion": fashion_docs(
            fashion_limit, images=settings.image_encoder is not None, folder=fashion
        )
    }
    if scifact is not None and scifact_limit > 0:
        datasets["scifact"] = scifact_docs(scifact, scifact_limit)
    out: dict[str, Any] = {
        "batch_size": batch,
        "worker": f"{pool} x{concurrency or os.cpu_count()}",
        "image_encoder": str(settings.image_encoder) if settings.image_encoder else None,
    }
    for name, docs in datasets.items():
        raw = raw_throughput(docs, settings, batch_size=batch)
        with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{name}-") as tmp:
            e2e = end_to_end(
                docs,
                settings,
                batch_size=batch,
                workdir=Path(tmp),
                image_root=fashion,
                pool=pool,
                concurrency=concurrency,
            )
        out[name] = e2e | {
            "encoder_docs_per_s": round(raw, 1),
            "ratio": round(e2e["docs_per_s"] / raw, 3),
        }
    return out


def render(result: dict[str, Any]) -> str:
    lines = [
        f"batch size {result['batch_size']}, worker {result['worker']}, "
        f"image encoder: {result['image_encoder'] or 'none'}"
    ]
    for name in ("fashion", "scifact"):
        if name in result:
            r = result[name]
            lines.append(
                f"{name:8} {r['docs']:5d} docs  end-to-end {r['docs_per_s']:7.1f}/s  "
                f"encoder alone {r['encoder_docs_per_s']:7.1f}/s  ratio {r['ratio']:.3f}  "
                f"stages {r['worker_stage_s']}  outside stages {r['outside_stages_s']} s"
            )
    return "\n".join(lines)
