"""The query log: one record per search, written in the background, never in the request path.

Records go to `modalfuse-querylog` (an OpenSearch index or a LanceDB table) in small batches from
a daemon thread. When the engine is slow the queue absorbs it; when the queue is full, records
are dropped and counted rather than making a search wait.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from datetime import UTC, datetime

from modalfuse.engines.base import QueryLogSink
from modalfuse.errors import ModalfuseError
from modalfuse.mappings.querylog import MAX_LOGGED_QUERY_CHARS, QueryLogRecord
from modalfuse.query.request import SearchRequest, SearchResponse

log = logging.getLogger(__name__)


def log_record(req: SearchRequest, response: SearchResponse, text: str) -> QueryLogRecord:
    return {
        "time": datetime.now(UTC),
        "index": response.index,
        "query": text[:MAX_LOGGED_QUERY_CHARS],
        "has_image": req.image is not None,
        "filters": json.dumps([f.model_dump(mode="json") for f in req.filters]),
        "retrievers": list(response.retrievers),
        "fusion": response.fusion,
        "latency_ms": json.dumps(response.timings_ms),
        "total_ms": float(response.timings_ms.get("total", 0.0)),
        "hits": len(response.hits),
        "top_ids": [h.id for h in response.hits[:10]],
        "zero_results": not response.hits,
        # Which retriever contributed most to each top-10 hit (for the Dashboards share chart).
        "top_contributors": [
            max(h.explain.items(), key=lambda kv: kv[1].contribution)[0] if h.explain else ""
            for h in response.hits[:10]
        ],
    }


class QueryLogger:
    def __init__(
        self, engine: QueryLogSink, *, capacity: int = 10_000, flush_every_s: float = 1.0
    ) -> None:
        self._engine = engine
        self._queue: queue.Queue[QueryLogRecord] = queue.Queue(maxsize=capacity)
        self._flush_every_s = flush_every_s
        self.dropped = 0
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modalfuse-querylog", daemon=True)
        self._thread.start()

    def record(self, req: SearchRequest, response: SearchResponse, text: str) -> None:
        try:
            self._queue.put_nowait(log_record(req, response, text))
        except queue.Full:
            self.dropped += 1

    def _drain(self) -> list[QueryLogRecord]:
        batch: list[QueryLogRecord] = []
        with contextlib.suppress(queue.Empty):
            while len(batch) < 500:
                batch.append(self._queue.get_nowait())
        return batch

    def _run(self) -> None:
        while not self._stop.wait(self._flush_every_s):
            self.flush()
        self.flush()

    def flush(self) -> None:
        batch = self._drain()
        if not batch:
            return
        try:
            self._engine.append_query_log(batch)
            self.written += len(batch)
        except ModalfuseError as e:
            self.dropped += len(batch)
            log.warning("query log: %d record(s) not written: %s", len(batch), e)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
