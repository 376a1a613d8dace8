"""Index documents in this process: the pipeline the workers run (validate, load images,
encode, write, dead-letter), without a queue.

    from modalfuse import Indexer

    with Indexer(index="products") as indexer:
        report = indexer.add([{"id": "1", "title": "Red summer dress", "image": "/photos/1.jpg"}])
    print(report.indexed, report.dead_lettered, report.dead_letter_reasons)

A document that can never succeed is dead-lettered with the field and the reason, as a worker
would, and the others are written. A transient failure (engine down, image fetch timeout) is
retried with backoff, counted in `retried`, and dead-lettered when the retries run out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from modalfuse.engines import open_engine
from modalfuse.engines.base import DeadLetter, Engine
from modalfuse.ingest.deadletters import common_reasons
from modalfuse.ingest.messages import now_version
from modalfuse.ingest.pipeline import Outcome, Pipeline, backoff, gave_up
from modalfuse.ingest.producer import to_item
from modalfuse.settings import Settings


class IndexReport(BaseModel):
    """What became of the documents given: each is indexed, stale (a newer version is there) or
    dead-lettered with its reason; `retried` counts transient retries along the way."""

    model_config = ConfigDict(extra="forbid")

    indexed: int = 0
    stale: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    retried: int = 0
    commit_retries: int = 0
    dead_letter_reasons: list[dict[str, Any]] = Field(default_factory=list)


class Indexer:
    """Writes documents into an index in-process. Keyword-only; every argument has a default:
    the environment's settings, the engine they name, and their index."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        engine: Engine | None = None,
        index: str | None = None,
        image_roots: Sequence[Path] = (),
        batch_size: int | None = None,
        max_retries: int | None = None,
    ) -> None:
        base = settings if settings is not None else Settings()
        if image_roots:
            base = base.model_copy(update={"image_roots": [*base.image_roots, *image_roots]})
        self.settings = base
        self.index = index or base.index
        self._owns_engine = engine is None
        self._engine = engine if engine is not None else open_engine(base)
        self._pipeline = Pipeline(base, engine=self._engine)
        self.batch_size = batch_size or base.ingest_batch_size
        self.max_retries = base.ingest_max_retries if max_retries is None else max_retries
        self._written = False

    def add(self, documents: Iterable[Mapping[str, Any]]) -> IndexReport:
        """Upsert documents in the index's schema (`{"id": ..., "title": ..., ...}`), or full
        ingest messages (`{"op": ..., "id": ..., "fields": {...}}`)."""
        version = now_version()
        items = (
            to_item(
                dict(doc),
                index=self.index,
                base_dir=None,
                field_map={},
                image_fields=(),
                version=version,
            )
            for doc in documents
        )
        return self._run(items)

    def delete(self, ids: Iterable[str]) -> IndexReport:
        """Delete documents by id (a delete of an id that is not there is not an error)."""
        version = now_version()
        items = ({"op": "delete", "index": self.index, "id": i, "version": version} for i in ids)
        report = self._run(items)
        return report.model_copy(update={"deleted": report.indexed, "indexed": 0})

    def _run(self, items: Iterable[Any]) -> IndexReport:
        report = IndexReport()
        dead: list[DeadLetter] = []
        batch: list[Any] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self.batch_size:
                dead += self._batch(batch, report)
                batch = []
        if batch:
            dead += self._batch(batch, report)
        if dead:
            for index in {d.index for d in dead}:
                self._engine.dead_letter(index, [d for d in dead if d.index == index])
        report.dead_letter_reasons = common_reasons(dead)
        return report

    def _batch(self, items: list[Any], report: IndexReport) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        attempt = 1
        while items:
            out: Outcome = self._pipeline.process(items, attempt=attempt)
            report.indexed += len(out.written)
            report.stale += len(out.stale)
            report.commit_retries += out.commit_retries
            dead += out.dead
            items = [r.item for r in out.retry]
            if not items:
                break
            if attempt > self.max_retries:
                dead += gave_up(out.retry, attempts=attempt, default_index=self.index)
                break
            report.retried += len(items)
            time.sleep(backoff(self.settings, attempt - 1))
            attempt += 1
        report.dead_lettered += len(dead)
        self._written = self._written or report.indexed > 0
        return dead

    def close(self) -> None:
        """Fold what was written into the engine's indices (where it needs that: LanceDB), and
        close the engine this indexer opened."""
        if self._written and self._engine.needs_periodic_optimize:
            self._engine.optimize(self.index)
        if self._owns_engine:
            self._engine.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
