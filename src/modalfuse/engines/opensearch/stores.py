"""The OpenSearch engine's side stores: dead letters (`<index>-deadletter`) and the query log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from modalfuse.engines.base import DeadLetter, dead_letter_name
from modalfuse.engines.opensearch.connection import Connection
from modalfuse.errors import EngineUnavailable
from modalfuse.mappings import opensearch as os_mappings
from modalfuse.mappings.querylog import QUERY_LOG, QueryLogRecord


class SideStores(Connection):
    # Records per page when every dead letter is dropped: a search returns at most 10,000.
    dead_letter_page = 10_000

    # -- dead letters --------------------------------------------------------------------

    def dead_letter(self, index: str, records: Sequence[DeadLetter]) -> None:
        from opensearchpy import helpers

        if not records:
            return
        name = dead_letter_name(index)
        if not self._call("check index", lambda: self.client.indices.exists(index=name)):
            body = {"mappings": os_mappings.DEAD_LETTER_MAPPING}
            self._call(
                "create dead-letter index",
                lambda: self.client.indices.create(index=name, body=body, ignore=400),
            )
        actions = [
            {"_op_type": "index", "_index": name, "_id": r.id, "_source": _dl_source(r)}
            for r in records
        ]
        _, errors = self._call(
            "dead-letter",
            lambda: helpers.bulk(self.client, actions, raise_on_error=False, refresh="wait_for"),
        )
        if errors:
            raise EngineUnavailable(
                f"dead-letter write failed for {len(errors)} record(s): {errors[0]}"
            )

    def dead_letters(self, index: str, *, limit: int = 100) -> list[DeadLetter]:
        name = dead_letter_name(index)
        if not self._call("check index", lambda: self.client.indices.exists(index=name)):
            return []
        body = {"query": {"match_all": {}}, "size": limit, "sort": [{"time": {"order": "desc"}}]}
        response = self._call("search", lambda: self.client.search(index=name, body=body))
        return [_dl_record(h["_source"]) for h in response["hits"]["hits"]]

    def drop_dead_letters(self, index: str, ids: Sequence[str] | None = None) -> int:
        from opensearchpy import helpers

        name = dead_letter_name(index)
        if not self._call("check index", lambda: self.client.indices.exists(index=name)):
            return 0
        if ids is None:
            # Every record, however many, a page at a time (delete-by-query is in the reindex
            # module, which a node need not have).
            dropped = 0
            while page := [r.id for r in self.dead_letters(index, limit=self.dead_letter_page)]:
                removed = self.drop_dead_letters(index, page)
                dropped += removed
                if removed == 0:  # the rest refuse to go: report what went, do not spin
                    break
            return dropped
        actions = [{"_op_type": "delete", "_index": name, "_id": i} for i in ids]
        ok, _ = self._call(
            "drop dead letters",
            lambda: helpers.bulk(self.client, actions, raise_on_error=False, refresh="wait_for"),
        )
        return int(ok)

    def append_query_log(self, records: Sequence[QueryLogRecord]) -> None:
        import json as _json

        from opensearchpy import helpers

        if not records:
            return
        if not self._call("check index", lambda: self.client.indices.exists(index=QUERY_LOG)):
            body = {"mappings": os_mappings.QUERY_LOG_MAPPING}
            self._call(
                "create query log",
                lambda: self.client.indices.create(index=QUERY_LOG, body=body, ignore=400),
            )
        actions = [
            {
                "_op_type": "index",
                "_index": QUERY_LOG,
                "_source": r
                | {"time": r["time"].isoformat(), "latency_ms": _json.loads(r["latency_ms"])},
            }
            for r in records
        ]
        self._call("query log", lambda: helpers.bulk(self.client, actions, raise_on_error=False))

    def recent_queries(self, *, limit: int = 100) -> list[dict[str, Any]]:
        if not self._call("check index", lambda: self.client.indices.exists(index=QUERY_LOG)):
            return []
        self.refresh(QUERY_LOG)
        body = {"query": {"match_all": {}}, "size": limit, "sort": [{"time": {"order": "desc"}}]}
        response = self._call("search", lambda: self.client.search(index=QUERY_LOG, body=body))
        return [dict(h["_source"]) for h in response["hits"]["hits"]]


def _dl_source(r: DeadLetter) -> dict[str, Any]:
    return {
        "id": r.id,
        "index": r.index,
        "doc_id": r.doc_id,
        "message": r.message,
        "error_type": r.error_type,
        "field": r.field,
        "reason": r.reason,
        "attempts": r.attempts,
        "time": r.time.isoformat(),
    }


def _dl_record(src: dict[str, Any]) -> DeadLetter:
    return DeadLetter(
        id=src["id"],
        index=src["index"],
        doc_id=src.get("doc_id"),
        message=src["message"],
        error_type=src["error_type"],
        field=src.get("field"),
        reason=src["reason"],
        attempts=int(src["attempts"]),
        time=datetime.fromisoformat(src["time"]),
    )
