"""The producer side: turn JSONL lines into ingest messages and publish them in batches.

A line is either a full message (`{"op": ..., "index": ..., "id": ..., "fields": {...}}`) or a
bare document in the index's schema (`{"id": ..., "title": ..., "image": ...}`, an upsert). Lines
that are not JSON are still published, as they are, so the worker dead-letters them with the
reason: one place decides what is valid, and nothing is silently dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from modalfuse.images.roots import register_root
from modalfuse.images.sources import linked_image_folders, source_kind
from modalfuse.ingest.app import TASK, create_app
from modalfuse.ingest.messages import UNPARSED, now_version
from modalfuse.jsonl import read_lines
from modalfuse.settings import Settings


def to_item(
    record: Any,
    *,
    index: str,
    base_dir: Path | None,
    field_map: Mapping[str, str],
    image_fields: Sequence[str],
    version: int,
) -> Any:
    """One parsed line as a message dict (bare documents become upserts).

    A line that is not a JSON object travels as `{"unparsed": <line>, "index": ...}`, so the
    worker dead-letters it with its reason in the right index's dead-letter store.
    """
    if not isinstance(record, dict):
        text = record if isinstance(record, str) else json.dumps(record)
        return {UNPARSED: text, "index": index}
    if "fields" in record or "op" in record:
        message = {"index": index, "version": version} | record
    else:
        doc = {field_map.get(k, k): v for k, v in record.items()}
        doc_id = doc.pop("id", None)
        message = {"op": "upsert", "index": index, "id": doc_id, "version": version, "fields": doc}
        if doc_id is None:
            message.pop("id")
    fields = message.get("fields")
    if isinstance(fields, dict) and base_dir is not None:
        for name in image_fields:
            value = fields.get(name)
            # Relative paths are relative to the file they came from.
            if isinstance(value, str) and value and source_kind(value) == "path":
                path = Path(value)
                fields[name] = str(path if path.is_absolute() else (base_dir / path))
    if isinstance(message.get("id"), int):
        message["id"] = str(message["id"])
    return message


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Producer:
    """Publishes batches of messages to the ingest queue (any broker the settings name)."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app or create_app(settings)

    def publish(self, items: Sequence[Any]) -> AsyncResult:
        """One batch -> one task. Items are message dicts (or raw lines, to be dead-lettered)."""
        return self.app.send_task(TASK, args=[list(items)], queue=self.settings.ingest_queue)

    def publish_all(
        self, items: Iterable[Any], *, batch_size: int | None = None
    ) -> list[tuple[int, AsyncResult]]:
        size = batch_size or self.settings.ingest_batch_size
        return [(len(batch), self.publish(batch)) for batch in batched(items, size)]


# How often a wait checks that its worker is still there.
_LIVENESS_S = 2.0


def wait(
    results: Sequence[tuple[int, AsyncResult]],
    *,
    timeout: float | None = None,
    on_batch: Callable[[int, dict[str, Any]], None] | None = None,
    stages: bool = False,
    worker_gone: Callable[[], str | None] | None = None,
) -> dict[str, Any]:
    """Block until every batch is indexed or dead-lettered; return the summed counts
    (and, with `stages`, the workers' seconds per stage under `stage_s`). `worker_gone` says
    why the only worker that could finish them has stopped, if it has: then waiting is
    pointless, and the wait ends with WorkerExited rather than at the timeout."""
    from celery.exceptions import TimeoutError as ResultTimeout

    from modalfuse.errors import WorkerExited
    from modalfuse.ingest.tasks import add_summaries

    total: dict[str, Any] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    for done, (count, result) in enumerate(results):
        while True:
            step = None if worker_gone is None else _LIVENESS_S
            if deadline is not None:
                remaining = max(deadline - time.monotonic(), 0.1)
                step = remaining if step is None else min(step, remaining)
            try:
                summary = result.get(timeout=step, interval=0.05, propagate=True)
                break
            except ResultTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                why = worker_gone() if worker_gone is not None else None
                if why is not None:
                    raise WorkerExited(
                        f"{why}, with {len(results) - done} of {len(results)} batch(es) unfinished"
                    ) from None
        total = add_summaries(total, summary)
        if on_batch is not None:
            on_batch(count, summary)
    if not stages:
        total.pop("stage_s", None)
    return total


def _image_fields(settings: Settings, index: str) -> list[str]:
    from modalfuse.engines import open_engine
    from modalfuse.errors import ModalfuseError
    from modalfuse.mappings.schema import ImageField, load_schema

    engine = open_engine(settings)
    try:
        schema = engine.schema_of(index).schema
    except ModalfuseError:
        schema = load_schema(settings.schema_file)
    finally:
        engine.close()
    return [f.name for f in schema.of_type(ImageField)] or ["image"]


def ingest_file(
    path: Path,
    *,
    settings: Settings,
    index: str | None = None,
    field_map: Mapping[str, str] | None = None,
    batch_size: int | None = None,
    producer: Producer | None = None,
    on_published: Callable[[int], None] | None = None,
) -> tuple[int, list[tuple[int, AsyncResult]]]:
    """Publish every line of a JSONL file; returns (lines published, per-batch results)."""
    index = index or settings.index
    base_dir = path.resolve().parent
    # The file's folder becomes an allowed image root, so its relative paths can be read.
    register_root(settings, base_dir)
    image_fields = _image_fields(settings, index)
    version = now_version()
    producer = producer or Producer(settings)
    linked: set[Path] = set()

    def allow_links(message: Any) -> Any:
        # Images reached through a symlink inside the file's folder: the operator put the link
        # there, so its target folder becomes a root too (before this message is published).
        fields = message.get("fields") if isinstance(message, dict) else None
        if isinstance(fields, dict):
            values = [v for name in image_fields if isinstance(v := fields.get(name), str)]
            for folder in linked_image_folders(values, base_dir) - linked:
                register_root(settings, folder)
                linked.add(folder)
        return message

    items = (
        allow_links(
            to_item(
                record,
                index=index,
                base_dir=base_dir,
                field_map=field_map or {},
                image_fields=image_fields,
                version=version,
            )
        )
        for _, record in read_lines(path)
    )
    results = []
    published = 0
    for batch in batched(items, batch_size or settings.ingest_batch_size):
        results.append((len(batch), producer.publish(batch)))
        published += len(batch)
        if on_published is not None:
            on_published(len(batch))
    return published, results
