"""The query log's name and record, shared by the query layer (which writes records), the
engines (which store them: `opensearch.QUERY_LOG_MAPPING`, `lancedb.QUERY_LOG_SCHEMA`) and the
Dashboards objects (which chart them)."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

QUERY_LOG = "modalfuse-querylog"
MAX_LOGGED_QUERY_CHARS = 1000


class QueryLogRecord(TypedDict):
    """One search. `filters` and `latency_ms` are JSON text, so that one record fits both a
    LanceDB row and an OpenSearch document (which stores `latency_ms` as an object)."""

    time: datetime
    index: str
    query: str
    has_image: bool
    filters: str
    retrievers: list[str]
    fusion: str
    latency_ms: str
    total_ms: float
    hits: int
    top_ids: list[str]
    zero_results: bool
    top_contributors: list[str]
