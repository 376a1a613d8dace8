"""One batch of ingest messages: validate, load images, encode in batches, write.

Each message ends in exactly one of: written, stale (a newer version is already there),
dead-lettered (it can never succeed: the record says which field and why), or retry (a transient
failure: engine down, 429, image fetch timeout). One bad message never stops the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from modalfuse.engines import open_engine
from modalfuse.engines.base import DeadLetter, Deletion, Document, Engine, WriteResult
from modalfuse.errors import (
    IndexNotFound,
    InvalidInput,
    ModalfuseError,
    TransientError,
)
from modalfuse.images import sources as images
from modalfuse.images.roots import read_roots
from modalfuse.ingest.messages import UNPARSED, IngestMessage, dead_letter, index_of, parse_message
from modalfuse.mappings.documents import validate_fields
from modalfuse.mappings.schema import ImageField, ResolvedSchema, check_model
from modalfuse.onnx_models.pool import EncoderPool
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Retry:
    item: Any
    reason: str


@dataclasses.dataclass
class Outcome:
    written: list[str] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)
    dead: list[DeadLetter] = dataclasses.field(default_factory=list)
    retry: list[Retry] = dataclasses.field(default_factory=list)
    # Seconds per stage, so a benchmark can say where the time goes.
    stages: dict[str, float] = dataclasses.field(default_factory=dict)
    # Engine commits retried after a conflict with another writer (none lost: counted).
    commit_retries: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "indexed": len(self.written),
            "stale": len(self.stale),
            "dead_lettered": len(self.dead),
            "commit_retries": self.commit_retries,
            "stage_s": {k: round(v, 4) for k, v in self.stages.items()},
        }

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - started


def backoff(settings: Settings, retries: int) -> float:
    """Exponential backoff with full jitter: spreads retries of a failed engine over time."""
    cap = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2**retries)
    return random.uniform(cap / 2, cap)


def gave_up(retries: Sequence[Retry], *, attempts: int, default_index: str) -> list[DeadLetter]:
    """Dead letters for messages whose transient failures outlived their retries."""
    return [
        dead_letter(
            r.item,
            TransientError(f"gave up after {attempts} attempts: {r.reason}"),
            index=index_of(r.item, default_index),
            attempts=attempts,
        )
        for r in retries
    ]


class Pipeline:
    """Per worker process: encoders load once, the engine connects on first use (after fork)."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self.encoders = EncoderPool(settings)
        self._schemas: dict[str, ResolvedSchema] = {}
        self._http: Any = None
        # The threads pool runs several batches in one process: load shared parts once.
        self._lock = threading.Lock()
        self._last_optimize: dict[str, float] = {}

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.settings)
        return self._engine

    def encoder(self, role: str) -> OnnxEncoder:
        return self.encoders.require(
            role, why=f"the index has {role} vectors but no {role} encoder is configured here"
        )

    def schema(self, index: str) -> ResolvedSchema:
        if index not in self._schemas:
            with self._lock:
                engine = self.engine
            self._schemas[index] = engine.schema_of(index)
        return self._schemas[index]

    # -- the batch -----------------------------------------------------------------------

    def process(self, items: Sequence[Any], *, attempt: int = 1) -> Outcome:
        out = Outcome()
        by_index: dict[str, list[tuple[Any, IngestMessage]]] = defaultdict(list)
        with out.timed("validate"):
            self._parse(items, by_index, out, attempt)
        before = self.engine.commit_retries
        for index, group in by_index.items():
            self._process_index(index, group, out, attempt)
        out.commit_retries = self.engine.commit_retries - before
        return out

    def _parse(
        self,
        items: Sequence[Any],
        by_index: dict[str, list[tuple[Any, IngestMessage]]],
        out: Outcome,
        attempt: int,
    ) -> None:
        for item in items:
            unparsed = isinstance(item, dict) and isinstance(item.get(UNPARSED), str)
            try:
                msg = parse_message(
                    item[UNPARSED] if unparsed else item, max_bytes=self.settings.max_message_bytes
                )
            except InvalidInput as e:
                index = index_of(item, self.settings.index)
                original = item[UNPARSED] if unparsed else item
                out.dead.append(dead_letter(original, e, index=index, attempts=attempt))
                continue
            by_index[msg.index].append((item, msg))

    def _process_index(
        self, index: str, group: list[tuple[Any, IngestMessage]], out: Outcome, attempt: int
    ) -> None:
        try:
            resolved = self.schema(index)
        except IndexNotFound as e:
            for item, msg in group:
                out.dead.append(dead_letter(item, e, index=index, attempts=attempt, doc_id=msg.id))
            return
        upserts: list[tuple[Any, IngestMessage, dict[str, Any]]] = []
        deletes: list[tuple[Any, IngestMessage]] = []
        with out.timed("validate"):
            for item, msg in group:
                if msg.op == "delete":
                    deletes.append((item, msg))
                    continue
                try:
                    upserts.append((item, msg, validate_fields(resolved.schema, msg.fields)))
                except InvalidInput as e:
                    out.dead.append(
                        dead_letter(item, e, index=index, attempts=attempt, doc_id=msg.id)
                    )
        docs, sources = self._documents(index, resolved, upserts, out, attempt)
        with out.timed("write"):
            self._write(index, docs, sources, out, attempt)
        if deletes:
            result = self._guarded_write(
                lambda: self.engine.delete(
                    index, [Deletion(id=m.id, version=m.version) for _, m in deletes]
                ),
                [(item, m.id) for item, m in deletes],
                out,
            )
            if result is not None:
                self._account(index, result, {m.id: item for item, m in deletes}, out, attempt)

    def _documents(
        self,
        index: str,
        resolved: ResolvedSchema,
        upserts: list[tuple[Any, IngestMessage, dict[str, Any]]],
        out: Outcome,
        attempt: int,
    ) -> tuple[list[Document], dict[str, Any]]:
        """Load images, encode texts and images in batches, and build the documents: a
        document whose image fails is retried or dead-lettered, and the rest go on."""
        loaded, keep = self._images_for(index, resolved, upserts, out, attempt)
        vectors = self._encode(resolved, upserts, loaded, keep, out)
        image_fields = {f.name for f in resolved.schema.of_type(ImageField)}
        docs = []
        items = {}
        for i in keep:
            item, msg, fields = upserts[i]
            stored = {
                k: v
                for k, v in fields.items()
                # Inline images are encoded, not stored: the index keeps references only.
                if not (k in image_fields and images.source_kind(v) == "data")
            }
            docs.append(Document(id=msg.id, version=msg.version, fields=stored, vectors=vectors[i]))
            items[msg.id] = item
        return docs, items

    def _images_for(
        self,
        index: str,
        resolved: ResolvedSchema,
        upserts: list[tuple[Any, IngestMessage, dict[str, Any]]],
        out: Outcome,
        attempt: int,
    ) -> tuple[dict[int, dict[str, Image.Image]], list[int]]:
        """The images the image vectors need, per upsert; and the upserts that go on (those
        whose images failed are set to retry or dead-lettered here)."""
        wanted = {
            s
            for v in resolved.vectors.values()
            if v.field.encoder == "image"
            for s in v.field.sources
        }
        jobs = [
            (i, name, fields[name])
            for i, (_, _, fields) in enumerate(upserts)
            for name in wanted
            if isinstance(fields.get(name), str)
        ]
        loaded: dict[int, dict[str, Image.Image]] = {}
        failed: dict[int, BaseException] = {}
        if jobs:
            with out.timed("images"):
                loaded_or_errors = self._load_images(jobs)
            for (i, name, _), result in zip(jobs, loaded_or_errors, strict=True):
                if isinstance(result, BaseException):
                    failed.setdefault(i, result)
                else:
                    loaded.setdefault(i, {})[name] = result
        keep: list[int] = []
        for i, (item, msg, _) in enumerate(upserts):
            error = failed.get(i)
            if error is None:
                keep.append(i)
            elif isinstance(error, TransientError):
                out.retry.append(Retry(item=item, reason=str(error)))
            else:
                out.dead.append(
                    dead_letter(item, error, index=index, attempts=attempt, doc_id=msg.id)
                )
        return loaded, keep

    def _encode(
        self,
        resolved: ResolvedSchema,
        upserts: list[tuple[Any, IngestMessage, dict[str, Any]]],
        loaded: dict[int, dict[str, Image.Image]],
        keep: list[int],
        out: Outcome,
    ) -> dict[int, dict[str, Any]]:
        """Each kept upsert's vectors, encoded in one batch per vector field."""
        vectors: dict[int, dict[str, Any]] = {i: {} for i in keep}
        for name, vec in resolved.vectors.items():
            check_model(vec.field, self.encoder(vec.field.encoder).manifest.name)
            if vec.field.encoder == "text":
                texts = {i: joined_text(upserts[i][2], vec.field.sources) for i in keep}
                todo = [i for i in keep if texts[i]]
                if todo:
                    with out.timed("encode_text"):
                        encoded = self.encoder("text").encode_texts([texts[i] for i in todo])
                    for i, row in zip(todo, encoded, strict=True):
                        vectors[i][name] = row
            else:
                source = vec.field.sources[0]
                todo = [i for i in keep if source in loaded.get(i, {})]
                if todo:
                    with out.timed("encode_image"):
                        encoded = self.encoder("image").encode_images(
                            [loaded[i][source] for i in todo]
                        )
                    for i, row in zip(todo, encoded, strict=True):
                        vectors[i][name] = row
        return vectors

    def _load_images(self, jobs: list[tuple[int, str, str]]) -> list[Image.Image | BaseException]:
        if self._http is None:
            self._http = images.http_client(self.settings)
        roots = read_roots(self.settings)

        def load(job: tuple[int, str, str]) -> Image.Image | BaseException:
            _, name, source = job
            try:
                return images.load_source(
                    source,
                    settings=self.settings,
                    roots=roots,
                    client=self._http,
                    field=f"fields.{name}",
                )
            except ModalfuseError as e:
                return e

        # URL fetches wait on the network, not the CPU: fetch those concurrently. Local files
        # and inline images are CPU work; a thread pool only adds hand-offs (measured: 3x slower
        # for 2,000 thumbnails), so they load here, in order.
        remote = [i for i, job in enumerate(jobs) if images.source_kind(job[2]) == "url"]
        results: list[Image.Image | BaseException | None] = [None] * len(jobs)
        if remote:
            with ThreadPoolExecutor(max_workers=min(8, len(remote))) as pool:
                for i, result in zip(
                    remote, pool.map(load, [jobs[i] for i in remote]), strict=True
                ):
                    results[i] = result
        for i, job in enumerate(jobs):
            if results[i] is None:
                results[i] = load(job)
        return [r for r in results if r is not None]

    def _write(
        self, index: str, docs: list[Document], items: dict[str, Any], out: Outcome, attempt: int
    ) -> None:
        if not docs:
            return
        result = self._guarded_write(
            lambda: self.engine.upsert(index, docs), [(items[d.id], d.id) for d in docs], out
        )
        if result is not None:
            self._account(index, result, items, out, attempt)
            self._maybe_optimize(index)

    def _maybe_optimize(self, index: str) -> None:
        """An engine that needs compaction and index builds gets them from the worker now and
        then (one that maintains itself says so: `needs_periodic_optimize`)."""
        if not self.engine.needs_periodic_optimize:
            return
        now = time.monotonic()
        last = self._last_optimize.setdefault(index, now)
        if now - last < self.settings.optimize_interval_s:
            return
        self._last_optimize[index] = now
        try:
            self.engine.optimize(index)
        except ModalfuseError as e:  # the writes succeeded; compaction can wait for next time
            log.warning("optimize(%s) failed: %s", index, e)

    def _guarded_write(
        self, write: Any, pending: list[tuple[Any, str]], out: Outcome
    ) -> WriteResult | None:
        try:
            result: WriteResult = write()
        except TransientError as e:
            out.retry += [Retry(item=item, reason=str(e)) for item, _ in pending]
            return None
        return result

    def _account(
        self, index: str, result: WriteResult, items: dict[str, Any], out: Outcome, attempt: int
    ) -> None:
        out.written += result.written
        out.stale += result.stale
        for error in result.failed:
            item = items.get(error.doc_id or "")
            if error.transient:
                out.retry.append(Retry(item=item, reason=str(error)))
            else:
                out.dead.append(
                    dead_letter(item, error, index=index, attempts=attempt, doc_id=error.doc_id)
                )


def joined_text(fields: dict[str, Any], sources: Sequence[str]) -> str:
    return "\n".join(
        str(fields[s]).strip()
        for s in sources
        if isinstance(fields.get(s), str) and fields[s].strip()
    )
