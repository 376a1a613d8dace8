"""Ingest a JSONL file through the queue and wait: the one workflow the CLI's `ingest --wait`,
the demo, evaluation and the ingest benchmark run.

Register the image folders the documents point into (in the data directory, so a later
`modalfuse serve` may read them too), start a worker when asked, publish, wait for every batch,
fold the new rows into the engine's indices, and sum up what was lost and why.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modalfuse.engines import open_engine
from modalfuse.engines.base import BulkLoads
from modalfuse.images.roots import register_root
from modalfuse.ingest.deadletters import reasons_of
from modalfuse.ingest.producer import Producer, ingest_file, wait
from modalfuse.ingest.worker import Pool, exit_reason, spawn_worker
from modalfuse.settings import Settings


class WorkerSpec(BaseModel):
    """A worker to start for this ingest (in its own process group, stopped afterwards)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    log: Path
    concurrency: int | None = None
    pool: Pool = "prefork"


class IngestReport(BaseModel):
    """What happened to a file's lines: every one is published, then indexed, stale (a newer
        version was there) or dead-lettered with its reason. `retried` counts messages retried after a
    transient failure, `commit_retries` engine commits retried after a concurrent one."""

    model_config = ConfigDict(extra="forbid")

    index: str
    published: int
    batches: int
    indexed: int = 0
    stale: int = 0
    dead_lettered: int = 0
    retried: int = 0
    commit_retries: int = 0
    dead_letter_reasons: list[dict[str, Any]] = Field(default_factory=list)
    elapsed_s: float = 0.0
    docs_per_s: float = 0.0
    # After the last result: refresh, fold-in, and the replicas of a bulk-loaded index.
    finish_s: float = 0.0
    # The index's own settings given back after a bulk load (engines.base.BulkLoads).
    settings_restored: dict[str, Any] = Field(default_factory=dict)
    stage_s: dict[str, float] = Field(default_factory=dict)
    waited: bool = False


def ingest_and_wait(
    path: Path,
    settings: Settings,
    *,
    index: str | None = None,
    worker: WorkerSpec | None = None,
    wait_for: bool = True,
    timeout: float | None = None,
    batch_size: int | None = None,
    field_map: Mapping[str, str] | None = None,
    image_roots: Iterable[Path] = (),
    producer: Producer | None = None,
    on_published: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    worker_gone: Callable[[], str | None] | None = None,
) -> IngestReport:
    """Publish every line of `path` to the ingest queue; with `wait_for`, block until each is
    indexed or dead-lettered and fold the new rows into the indices."""
    name = index or settings.index
    for root in image_roots:
        register_root(settings, root)
    started = time.perf_counter()
    with _worker(settings, worker) as spawned:
        published, results = ingest_file(
            path,
            settings=settings,
            index=name,
            field_map=field_map,
            batch_size=batch_size,
            producer=producer,
            on_published=on_published,
        )
        report = IngestReport(index=name, published=published, batches=len(results))
        if not wait_for:
            report.elapsed_s = round(time.perf_counter() - started, 2)
            return report
        totals = wait(
            results,
            timeout=timeout,
            stages=True,
            worker_gone=spawned or worker_gone,
            on_batch=(lambda n, _: on_batch(n)) if on_batch is not None else None,
        )
    elapsed = time.perf_counter() - started
    engine = open_engine(settings)
    restored: dict[str, Any] = {}
    try:
        if totals.get("indexed"):
            engine.refresh(name)
            if engine.needs_periodic_optimize:
                # Rows written since the last optimize are outside the full-text and vector
                # indices and scanned on every query: fold them in now the burst is over.
                engine.optimize(name)
        if isinstance(engine, BulkLoads):
            restored = engine.finish_load(name)
        finish = time.perf_counter() - started - elapsed
        lost = int(totals.get("dead_lettered", 0))
        reasons = reasons_of(engine, name, lost)
    finally:
        engine.close()
    return report.model_copy(
        update={
            "indexed": int(totals.get("indexed", 0)),
            "stale": int(totals.get("stale", 0)),
            "dead_lettered": lost,
            "retried": int(totals.get("retried", 0)),
            "commit_retries": int(totals.get("commit_retries", 0)),
            "dead_letter_reasons": reasons,
            "elapsed_s": round(elapsed, 2),
            "docs_per_s": round(published / elapsed, 1) if elapsed > 0 else 0.0,
            "finish_s": round(finish, 2),
            "settings_restored": restored,
            "stage_s": totals.get("stage_s", {}),
            "waited": True,
        }
    )


@contextlib.contextmanager
def _worker(
    settings: Settings, spec: WorkerSpec | None
) -> Iterator[Callable[[], str | None] | None]:
    """The worker this ingest starts, if any; yields what says whether it has exited."""
    if spec is None:
        yield None
        return
    with spawn_worker(settings, log=spec.log, concurrency=spec.concurrency, pool=spec.pool) as p:
        yield lambda: exit_reason(p, spec.log)
