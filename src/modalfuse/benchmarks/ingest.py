"""End-to-end ingest throughput against raw encoder throughput, in one run.

For each dataset: warm the whole path up (JSONL -> producer -> broker -> worker processes ->
validate -> encode -> engine) with untimed documents; then, for each round, encode the documents'
texts (and images, when an image encoder is configured) with the encoders alone, in the
pipeline's batch size, to get the raw docs/s, and push the same documents (under new ids) through
the whole path, timed from the first publish to the last result. The median of the rounds' ratios
says what the queue and the engine cost; the workers' per-stage seconds say where it goes, and on
a server engine the nodes' CPU seconds say what the engine's own processes took.

    modalfuse bench ingest --json
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modalfuse.engines import open_engine
from modalfuse.engines.base import Document, Engine, NodeCpu
from modalfuse.errors import InvalidInput, ModalfuseError
from modalfuse.ingest.pipeline import joined_text
from modalfuse.ingest.producer import Producer
from modalfuse.ingest.worker import Pool, exit_reason, spawn_worker
from modalfuse.jsonl import read_records
from modalfuse.mappings.documents import validate_fields
from modalfuse.onnx_models import registry
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.sample import SAMPLE_DIR, load_catalogue
from modalfuse.service.indexes import create_index
from modalfuse.service.ingest import IngestReport, ingest_and_wait
from modalfuse.settings import Settings


def fashion_docs(limit: int, *, images: bool, folder: Path = SAMPLE_DIR) -> list[dict[str, Any]]:
    # Absolute: the workers run in other directories, and a relative --fashion named none of them.
    folder = folder.resolve()
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


class RawEncoders:
    """The encoders alone, loaded once, timed on the same inputs in the pipeline's batch size."""

    def __init__(self, settings: Settings) -> None:
        self.text = OnnxEncoder(registry.text_encoder_dir(settings), settings=settings)
        image_dir = registry.image_encoder_dir(settings)
        self.image = OnnxEncoder(image_dir, settings=settings) if image_dir else None

    def docs_per_s(self, docs: list[dict[str, Any]], *, batch_size: int) -> float:
        texts = [joined_text(d, ["title", "description"]) for d in docs]
        paths = [Path(d["image"]) for d in docs if "image" in d]
        self.text.encode_texts(texts[:batch_size])  # first-run allocations are not throughput
        started = time.perf_counter()
        for i in range(0, len(docs), batch_size):
            self.text.encode_texts([t for t in texts[i : i + batch_size] if t])
        if self.image is not None and paths:
            for i in range(0, len(paths), batch_size):
                self.image.encode_images(paths[i : i + batch_size])
        return len(docs) / (time.perf_counter() - started)


def encoded(
    engine: Engine, index: str, docs: list[dict[str, Any]], raw: RawEncoders
) -> list[Document]:
    """`docs` as the workers would write them to `index`, encoded once by the encoders alone."""
    resolved = engine.schema_of(index)
    fields = [
        validate_fields(resolved.schema, {k: v for k, v in d.items() if k != "id"}) for d in docs
    ]
    vectors: list[dict[str, Any]] = [{} for _ in docs]
    for name, vec in resolved.vectors.items():
        if vec.field.encoder == "text":
            rows = raw.text.encode_texts([joined_text(f, vec.field.sources) for f in fields])
        elif raw.image is not None and all(vec.field.sources[0] in f for f in fields):
            rows = raw.image.encode_images([Path(f[vec.field.sources[0]]) for f in fields])
        else:
            continue
        for i, row in enumerate(rows):
            vectors[i][name] = row
    return [
        Document(id=str(d["id"]), version=1, fields=f, vectors=v)
        for d, f, v in zip(docs, fields, vectors, strict=True)
    ]


def warm_nodes(
    engine: Engine, index: str, docs: list[Document], *, count: int, batch_size: int
) -> None:
    """Write `count` already-encoded documents (cycled, under new ids) to `index` with the
    engine's own bulk path: the nodes' JIT settles on their indexing code without the encoders
    spending the run's time."""
    cycled = itertools.islice(itertools.cycle(docs), count)
    renamed = [dataclasses.replace(d, id=f"nw{i}-{d.id}") for i, d in enumerate(cycled)]
    for i in range(0, len(renamed), batch_size):
        failed = engine.upsert(index, renamed[i : i + batch_size]).failed
        if failed:
            raise ModalfuseError(
                f"bench ingest (node warm-up): {len(failed)} failed, first: {failed[0]}"
            )


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose ratio is the median (the upper one of an even count), so the figures
    reported beside the ratio are that round's own, not a mix of rounds."""
    return sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]


def relabelled(docs: list[dict[str, Any]], prefix: str, count: int) -> list[dict[str, Any]]:
    """`count` documents cycled from `docs`, each under a new id: every round writes new rows."""
    cycled = itertools.islice(itertools.cycle(docs), count)
    return [d | {"id": f"{prefix}{i}-{d['id']}"} for i, d in enumerate(cycled)]


def _write_jsonl(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    return path


def _cpu_s(engine: object) -> float | None:
    return sum(engine.node_cpu_s().values()) if isinstance(engine, NodeCpu) else None


@dataclasses.dataclass(kw_only=True)
class _Path:
    """The whole path of one benchmark: settings, worker and producer; each load its own index."""

    settings: Settings
    engine: Engine
    prefix: str
    batch_size: int
    processes: int
    producer: Producer
    worker_gone: Callable[[], str | None]
    workdir: Path

    def ingest(
        self, docs: list[dict[str, Any]], label: str, **kw: Any
    ) -> tuple[IngestReport, float | None]:
        """Load `docs` into a new index (as a catalogue's first load is) and drop it; the
        report and the nodes' CPU seconds it took (None off a server engine)."""
        index = f"{self.prefix}-{label}"
        create_index(self.engine, self.settings, name=index)
        try:
            before = _cpu_s(self.engine)
            report = ingest_and_wait(
                _write_jsonl(self.workdir / f"{label}.jsonl", docs),
                self.settings,
                index=index,
                batch_size=self.batch_size,
                producer=self.producer,
                timeout=3600,
                worker_gone=self.worker_gone,
                **kw,
            )
            after = _cpu_s(self.engine)
        finally:
            # Also when a load fails: a shared cluster keeps no bench index.
            self.engine.drop(index)
        if report.indexed != len(docs):
            raise ModalfuseError(f"bench ingest ({label}): {report.model_dump_json()}")
        return report, None if before is None or after is None else round(after - before, 2)

    def warm_nodes(
        self, docs: list[dict[str, Any]], raw: RawEncoders, count: int
    ) -> dict[str, Any]:
        """On a server engine, `count` more writes of documents encoded once (`warm_nodes`)."""
        if count <= 0:
            return {}
        index = f"{self.prefix}-nodes-warm"
        create_index(self.engine, self.settings, name=index)
        try:
            written = encoded(self.engine, index, docs, raw)
            before, started = _cpu_s(self.engine), time.perf_counter()
            warm_nodes(
                self.engine,
                index,
                written,
                count=count,
                batch_size=self.batch_size,
            )
            seconds, after = time.perf_counter() - started, _cpu_s(self.engine)
        finally:
            self.engine.drop(index)
        assert before is not None and after is not None  # only called on a server engine
        return {
            "node_warmup_docs": count,
            "node_warmup_s": round(seconds, 3),
            "nodes_cpu_s_node_warmup": round(after - before, 2),
        }

    def round(self, docs: list[dict[str, Any]], n: int, raw: RawEncoders) -> dict[str, Any]:
        encoder_rate = raw.docs_per_s(docs, batch_size=self.batch_size)
        report, cpu = self.ingest(relabelled(docs, f"r{n}-", len(docs)), f"round-{n}")
        elapsed = report.elapsed_s  # first publish to last result
        outside = elapsed - sum(report.stage_s.values()) / self.processes
        return {
            "docs": len(docs),
            "elapsed_s": elapsed,
            "docs_per_s": round(len(docs) / elapsed, 1),
            "encoder_docs_per_s": round(encoder_rate, 1),
            "ratio": round(len(docs) / elapsed / encoder_rate, 3),
            # Until the index is complete: refreshed, folded in, its replicas active.
            "finish_s": report.finish_s,
            "ratio_with_finish": round(len(docs) / (elapsed + report.finish_s) / encoder_rate, 3),
            "retried": report.retried,
            "worker_stage_s": report.stage_s,
            # Per process: publishing, broker round trips, result polling, idle time between
            # batches (the stage seconds are summed over the processes that ran in parallel).
            "outside_stages_s": round(outside, 2),
        } | ({} if cpu is None else {"nodes_cpu_s": cpu})


def end_to_end(
    docs: list[dict[str, Any]],
    settings: Settings,
    *,
    batch_size: int,
    workdir: Path,
    raw: RawEncoders,
    image_root: Path = SAMPLE_DIR,
    pool: Pool = "prefork",
    concurrency: int | None = None,
    rounds: int = 3,
    warmup: int = 500,
    node_warmup: int = 0,
) -> dict[str, Any]:
    """Warm the whole path up, then alternate the encoders alone and the whole path `rounds`
    times: on a shared machine the encoders' own rate moves between runs, so each ratio is taken
    against the encoders' rate measured just before it."""
    processes = 1 if pool == "solo" else concurrency or os.cpu_count() or 1
    s = settings.model_copy(update={"data_dir": workdir, "model_cache_dir": settings.models_dir})
    log = workdir / "worker.log"
    warm = max(warmup, batch_size)
    with (
        open_engine(s) as engine,
        spawn_worker(s, log=log, pool=pool, concurrency=concurrency) as proc,
    ):
        path = _Path(
            settings=s,
            engine=engine,
            # Its own indices, so a shared cluster's are never touched.
            prefix=f"bench-ingest-{os.getpid()}",
            batch_size=batch_size,
            processes=processes,
            producer=Producer(s),
            worker_gone=functools.partial(exit_reason, proc, log),
            workdir=workdir,
        )
        # The worker's start (imports, encoder sessions) and, on a server engine, the nodes'
        # JIT compilers are start-up costs, not throughput: paid before timing.
        _, warm_cpu = path.ingest(relabelled(docs, "warm", warm), "warm", image_roots=[image_root])
        nodes = path.warm_nodes(docs[:warm], raw, node_warmup) if warm_cpu is not None else {}
        results = [path.round(docs, n, raw) for n in range(rounds)]
    return (
        {"warmup_docs": warm}
        | ({} if warm_cpu is None else {"nodes_cpu_s_warmup": warm_cpu})
        | nodes
        | median_round(results)
        | {
            "worker_processes": processes,
            "ratio_range": [min(r["ratio"] for r in results), max(r["ratio"] for r in results)],
            "retried_all_rounds": sum(r["retried"] for r in results),
            "rounds": results,
        }
    )


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
    rounds: int = 3,
    warmup: int = 500,
    node_warmup: int = 0,
) -> dict[str, Any]:
    if rounds < 1:
        raise InvalidInput("rounds: at least one round is needed to measure a ratio")
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
        "rounds": rounds,
    }
    raw = RawEncoders(settings)
    for name, docs in datasets.items():
        with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{name}-") as tmp:
            out[name] = end_to_end(
                docs,
                settings,
                batch_size=batch,
                workdir=Path(tmp),
                raw=raw,
                image_root=fashion,
                pool=pool,
                concurrency=concurrency,
                rounds=rounds,
                warmup=warmup,
                node_warmup=node_warmup,
            )
    return out


def render(result: dict[str, Any]) -> str:
    lines = [
        f"batch size {result['batch_size']}, worker {result['worker']}, "
        f"image encoder: {result['image_encoder'] or 'none'}"
    ]
    for name in ("fashion", "scifact"):
        if name in result:
            r = result[name]
            low, high = r["ratio_range"]
            cpu = f"  nodes' CPU {r['nodes_cpu_s']} s" if "nodes_cpu_s" in r else ""
            if "node_warmup_docs" in r:
                lines.append(
                    f"{name:8} nodes warmed with {r['node_warmup_docs']} encoded docs in "
                    f"{r['node_warmup_s']} s ({r['nodes_cpu_s_node_warmup']} CPU-s)"
                )
            lines.append(
                f"{name:8} {r['docs']:5d} docs  end-to-end {r['docs_per_s']:7.1f}/s  "
                f"encoder alone {r['encoder_docs_per_s']:7.1f}/s  ratio {r['ratio']:.3f} "
                f"(median of {len(r['rounds'])}, {low:.3f}-{high:.3f}; "
                f"{r['ratio_with_finish']:.3f} with {r['finish_s']} s to complete the index)  "
                f"retried {r['retried_all_rounds']}{cpu}  "
                f"stages {r['worker_stage_s']}  outside stages {r['outside_stages_s']} s"
            )
    return "\n".join(lines)
