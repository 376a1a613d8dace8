"""Search request bodies: BM25, knn with an efficient filter, `_msearch` lines, `hybrid`.

Pure functions; filter values go in as typed JSON values, never as query strings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from modalfuse.engines.base import MULTI_FIELD_TIE_BREAKER, Hit, KnnQuery, LexicalQuery, SubSearch
from modalfuse.engines.filters import Exists, Filter, Range, Term, Terms
from modalfuse.errors import EngineUnavailable, RetrievalError

DFS = "dfs_query_then_fetch"


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def filter_clause(flt: Filter) -> dict[str, Any]:
    """One filter as a query clause, ignoring `negate` (the caller places it in must_not)."""
    if isinstance(flt, Term):
        return {"term": {flt.field: flt.value}}
    if isinstance(flt, Terms):
        return {"terms": {flt.field: list(flt.values)}}
    if isinstance(flt, Range):
        return {"range": {flt.field: {op: _json_value(v) for op, v in flt.bounds()}}}
    if isinstance(flt, Exists):
        return {"exists": {"field": flt.field}}
    raise AssertionError(f"unhandled filter {flt!r}")  # pragma: no cover


def filter_bool(filters: Sequence[Filter]) -> dict[str, Any] | None:
    """`{"bool": {"filter": [...], "must_not": [...]}}`, or None when there are no filters."""
    if not filters:
        return None
    inner: dict[str, Any] = {}
    keep = [filter_clause(f) for f in filters if not f.negate]
    drop = [filter_clause(f) for f in filters if f.negate]
    if keep:
        inner["filter"] = keep
    if drop:
        inner["must_not"] = drop
    return {"bool": inner}


def _boosted(fields: dict[str, float]) -> list[str]:
    return [name if boost == 1.0 else f"{name}^{boost:g}" for name, boost in fields.items()]


def bm25_query(q: LexicalQuery) -> dict[str, Any]:
    if not q.fields:
        raise RetrievalError("lexical search needs at least one text field")
    match = {
        "multi_match": {
            "query": q.text,
            "fields": _boosted(q.fields),
            "type": "best_fields",
            "tie_breaker": MULTI_FIELD_TIE_BREAKER,
        }
    }
    flt = filter_bool(q.filters)
    if flt is None:
        return match
    return {"bool": {"must": [match], **flt["bool"]}}


def knn_query(q: KnnQuery) -> dict[str, Any]:
    clause: dict[str, Any] = {"vector": [float(x) for x in q.vector], "k": q.k}
    flt = filter_bool(q.filters)
    if flt is not None:
        # Inside the knn clause: filtered during the graph search, so k hits still come back.
        clause["filter"] = flt
    if q.ef_search is not None:
        clause["method_parameters"] = {"ef_search": max(q.ef_search, q.k)}
    return {"knn": {q.field: clause}}


def sub_query(q: SubSearch) -> dict[str, Any]:
    return bm25_query(q) if isinstance(q, LexicalQuery) else knn_query(q)


def search_body(q: SubSearch, *, exclude: Sequence[str] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"query": sub_query(q), "size": q.k}
    if not q.source:
        body["_source"] = {"includes": list(q.returned)} if q.returned else False
    elif exclude:
        body["_source"] = {"excludes": list(exclude)}
    return body


def facets_body(fields: Sequence[str], size: int = 50) -> dict[str, Any]:
    """Value counts of keyword fields (a `terms` aggregation each), no hits."""
    return {
        "size": 0,
        "track_total_hits": True,
        "aggs": {f: {"terms": {"field": f, "size": size}} for f in fields},
    }


def parse_facets(
    response: dict[str, Any], fields: Sequence[str]
) -> dict[str, list[tuple[str, int]]]:
    aggs = response.get("aggregations", {})
    return {
        f: [(str(b["key"]), int(b["doc_count"])) for b in aggs.get(f, {}).get("buckets", [])]
        for f in fields
    }


def mget_body(ids: Sequence[str]) -> dict[str, Any]:
    return {"ids": list(ids)}


def ids_body(ids: Sequence[str], fields: Sequence[str]) -> dict[str, Any]:
    """A search for the given documents by id, returning only `fields` of each."""
    return {
        "query": {"ids": {"values": list(ids)}},
        "size": len(ids),
        "_source": {"includes": list(fields)},
    }


def preference(queries: Sequence[SubSearch]) -> str:
    """One routing key per query, from its sub-searches: every sub-search, every page and both
    fusion paths (client-side `_msearch`, server-side `hybrid`) of one query read the same shard
    copies, whose scores agree (a primary and its replica can differ in deleted documents, so in
    BM25 statistics), while different queries still spread over the replicas."""
    bodies = [search_body(q) for q in queries]
    digest = hashlib.sha1(orjson.dumps(bodies, option=orjson.OPT_SERIALIZE_NUMPY)).hexdigest()
    return f"q{digest[:16]}"


def header(index: str, query: SubSearch, *, dfs: bool, routing: str) -> dict[str, Any]:
    """An `_msearch` header: BM25 with the index's statistics when `dfs` (a kNN score does not
    depend on term statistics, so it never pays the extra round trip)."""
    out: dict[str, Any] = {"index": index, "preference": routing}
    if dfs and isinstance(query, LexicalQuery):
        out["search_type"] = DFS
    return out


def msearch_lines(
    index: str,
    queries: Sequence[SubSearch],
    *,
    exclude: Sequence[str] = (),
    dfs: bool = False,
) -> list[dict[str, Any]]:
    """Header/body pairs for one `_msearch` request."""
    routing = preference(queries)
    lines: list[dict[str, Any]] = []
    for q in queries:
        lines += [header(index, q, dfs=dfs, routing=routing), search_body(q, exclude=exclude)]
    return lines


def hybrid_body(
    queries: Sequence[SubSearch],
    *,
    size: int,
    window: int,
    from_: int = 0,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """A `hybrid` query, fused server-side by a search pipeline (score-ranker or normalization).

    `window` becomes `pagination_depth`: each sub-query contributes its top `window` hits, so
    pages taken with `from` are slices of one fused list.
    """
    if not queries:
        raise RetrievalError("a hybrid query needs at least one sub-query")
    if window < from_ + size:
        raise RetrievalError(f"window {window} is smaller than from + size = {from_ + size}")
    subs = []
    for q in queries:
        if isinstance(q, KnnQuery):
            q = KnnQuery(
                field=q.field, vector=q.vector, k=window, filters=q.filters, ef_search=q.ef_search
            )
        subs.append(sub_query(q))
    body: dict[str, Any] = {
        "query": {"hybrid": {"queries": subs, "pagination_depth": window}},
        "size": size,
    }
    if from_:
        body["from"] = from_
    if exclude:
        body["_source"] = {"excludes": list(exclude)}
    return body


def parse_hits(response: dict[str, Any]) -> list[Hit]:
    # A shard whose every copy failed (a node lost mid-query) leaves a 200 with partial hits:
    # never passed on as a complete answer, but as the transient failure it is.
    shards = response.get("_shards") or {}
    if shards.get("failed"):
        reasons = {
            str((f.get("reason") or {}).get("type", "unknown"))
            for f in shards.get("failures") or []
            if isinstance(f, dict)
        }
        raise EngineUnavailable(
            f"{shards['failed']} of {shards.get('total', '?')} shards failed "
            f"({', '.join(sorted(reasons)) or 'no reason given'}): the answer would be partial"
        )
    try:
        hits = response["hits"]["hits"]
        return [
            Hit(id=str(h["_id"]), score=float(h["_score"] or 0.0), source=h.get("_source"))
            for h in hits
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise RetrievalError(f"unexpected search response shape: {e!r}") from e


def parse_msearch(response: dict[str, Any]) -> list[list[Hit]]:
    out = []
    for i, item in enumerate(response.get("responses", [])):
        if "error" in item:
            reason = (
                item["error"].get("reason") if isinstance(item["error"], dict) else item["error"]
            )
            status = item.get("status")
            # A shard or node that is not there now (503, a lost node's shards) or a full
            # queue (429) is transient: retried, and a 503 if it lasts; anything else is not.
            if status == 429 or (isinstance(status, int) and status >= 500):
                raise EngineUnavailable(f"msearch sub-search {i} failed ({status}): {reason}")
            raise RetrievalError(f"msearch sub-search {i} failed: {reason}")
        out.append(parse_hits(item))
    return out
