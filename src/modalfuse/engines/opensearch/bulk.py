"""Bulk actions and per-item outcome classification for `helpers.streaming_bulk`.

Every write carries the producer's version with `version_type: external_gte`, so a redelivered
or reordered stale message is refused by the cluster (409) instead of overwriting newer data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from modalfuse.engines.base import Deletion, Document
from modalfuse.errors import IndexingError
from modalfuse.mappings.analysis import with_tokens
from modalfuse.mappings.opensearch import INDEXED_AT

Outcome = Literal["written", "stale", "failed"]


def source(
    doc: Document, *, indexed_at: str | None = None, analysed: Sequence[str] = ()
) -> dict[str, Any]:
    """The document as OpenSearch stores it; `analysed` names the pre-analysed text fields,
    whose tokens go beside them (mappings/analysis.py)."""
    out = with_tokens(doc.fields, analysed) if analysed else dict(doc.fields)
    for name, vector in doc.vectors.items():
        if vector is not None:
            # Kept a float32 array: the client's serializer writes it compactly (connection.py).
            out[name] = np.ascontiguousarray(vector, dtype=np.float32)
    if indexed_at is not None:
        out[INDEXED_AT] = indexed_at
    return out


def upsert_actions(
    index: str,
    docs: Iterable[Document],
    *,
    indexed_at: str | None = None,
    analysed: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """`indexed_at` (ISO time of the write) feeds the Dashboards ingest-rate chart."""
    return [
        {
            "_op_type": "index",
            "_index": index,
            "_id": doc.id,
            "version": doc.version,
            "version_type": "external_gte",
            "_source": source(doc, indexed_at=indexed_at, analysed=analysed),
        }
        for doc in docs
    ]


def delete_actions(index: str, deletions: Iterable[Deletion]) -> list[dict[str, Any]]:
    return [
        {
            "_op_type": "delete",
            "_index": index,
            "_id": d.id,
            "version": d.version,
            "version_type": "external_gte",
        }
        for d in deletions
    ]


def classify(ok: bool, item: dict[str, Any]) -> tuple[Outcome, str, IndexingError | None]:
    """Sort one `streaming_bulk` result into written, stale (lost to a newer version) or failed."""
    op, info = next(iter(item.items()))
    doc_id = str(info.get("_id", "?"))
    status = info.get("status")
    if ok:
        return "written", doc_id, None
    error = info.get("error")
    kind = error.get("type", "") if isinstance(error, dict) else str(error or "")
    reason = error.get("reason", kind) if isinstance(error, dict) else str(error or "unknown error")
    if status == 409 and "version_conflict" in kind:
        return "stale", doc_id, None
    if op == "delete" and status == 404:
        # Nothing to delete; with external versions the cluster still records the tombstone.
        return "written", doc_id, None
    transient = status == 429 or (isinstance(status, int) and status >= 500)
    return (
        "failed",
        doc_id,
        IndexingError(
            f"{op} failed with {status}: {kind}: {reason}", doc_id=doc_id, transient=transient
        ),
    )


def bulk_lines(actions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The NDJSON lines `streaming_bulk` sends for `actions`, as the node reads them (written by
    the client's serializer and parsed back: for contract tests and dry runs). A Smile body
    (smile.py) carries the same values."""
    import orjson
    from opensearchpy.helpers import expand_action

    from modalfuse.engines.opensearch.connection import serializer

    wire = serializer()
    lines: list[dict[str, Any]] = []
    for action in actions:
        meta, data = expand_action(action)
        lines.append(meta)
        if data is not None:
            lines.append(orjson.loads(wire.dumps(data)))
    return lines
