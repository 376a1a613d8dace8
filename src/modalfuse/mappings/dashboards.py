"""OpenSearch Dashboards saved objects (NDJSON) for inspecting modalfuse: index patterns for the
product alias, the query log and the dead-letter index; a saved search of dead letters; the
visualisations; and one dashboard holding them. Pure builders: `saved_objects()` returns the
objects, `to_ndjson()` the text `modalfuse dashboards export` prints and
`mappings/dashboards.ndjson` holds.

The format is what Dashboards' saved-objects export writes and its import reads: one JSON object
per line with `type`, `id`, `attributes` and `references`. Objects that use an index pattern
name it through a reference (`kibanaSavedObjectMeta.searchSourceJSON.index`), and a dashboard's
panels name their visualisation through `panelRefName` references. Ids are UUIDs derived from
the object's name (uuid5), so re-importing overwrites rather than duplicates.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from modalfuse.mappings.opensearch import INDEXED_AT, LATENCY_STAGES
from modalfuse.mappings.querylog import QUERY_LOG

NAMESPACE = uuid.UUID("6f1c3b7e-2d4a-5e8f-9a0b-1c2d3e4f5a6b")
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


def object_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


def _search_source(query: str = "") -> dict[str, Any]:
    source = {
        "query": {"query": query, "language": "kuery"},
        "filter": [],
        "indexRefName": INDEX_REF,
    }
    return {"searchSourceJSON": json.dumps(source)}


def _index_ref(pattern: str) -> list[dict[str, str]]:
    return [
        {"id": object_id(f"index-pattern:{pattern}"), "name": INDEX_REF, "type": "index-pattern"}
    ]


def index_pattern(title: str, time_field: str) -> dict[str, Any]:
    return {
        "type": "index-pattern",
        "id": object_id(f"index-pattern:{title}"),
        "attributes": {"title": title, "timeFieldName": time_field},
        "references": [],
        "migrationVersion": {"index-pattern": "7.6.0"},
    }


def _axes(title: str) -> dict[str, Any]:
    return {
        "grid": {"categoryLines": False},
        "categoryAxes": [
            {
                "id": "CategoryAxis-1",
                "type": "category",
                "position": "bottom",
                "show": True,
                "scale": {"type": "linear"},
                "labels": {"show": True, "truncate": 100},
                "title": {},
            }
        ],
        "valueAxes": [
            {
                "id": "ValueAxis-1",
                "name": "LeftAxis-1",
                "type": "value",
                "position": "left",
                "show": True,
                "scale": {"type": "linear", "mode": "normal"},
                "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                "title": {"text": title},
            }
        ],
        "addTooltip": True,
        "addLegend": True,
        "legendPosition": "right",
        "times": [],
        "addTimeMarker": False,
    }


def _date_histogram(agg_id: str, field: str, interval: str = "auto") -> dict[str, Any]:
    return {
        "id": agg_id,
        "enabled": True,
        "type": "date_histogram",
        "schema": "segment",
        "params": {
            "field": field,
            "interval": interval,
            "min_doc_count": 1,
            "extended_bounds": {},
        },
    }


def _count(agg_id: str = "1") -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": "count", "schema": "metric", "params": {}}


def _terms(agg_id: str, field: str, schema: str, size: int = 10) -> dict[str, Any]:
    return {
        "id": agg_id,
        "enabled": True,
        "type": "terms",
        "schema": schema,
        "params": {"field": field, "size": size, "order": "desc", "orderBy": "1"},
    }


def visualization(
    name: str,
    title: str,
    vis_type: str,
    aggs: list[dict[str, Any]],
    *,
    pattern: str,
    params: dict[str, Any] | None = None,
    query: str = "",
    description: str = "",
) -> dict[str, Any]:
    vis_state = {"title": title, "type": vis_type, "params": params or {}, "aggs": aggs}
    return {
        "type": "visualization",
        "id": object_id(f"visualization:{name}"),
        "attributes": {
            "title": title,
            "description": description,
            "visState": json.dumps(vis_state),
            "uiStateJSON": "{}",
            "version": 1,
            "kibanaSavedObjectMeta": _search_source(query),
        },
        "references": _index_ref(pattern),
        "migrationVersion": {"visualization": "7.10.0"},
    }


def _series(metric_id: str, label: str, mode: str = "normal", kind: str = "line") -> dict[str, Any]:
    return {
        "show": True,
        "type": kind,
        "mode": mode,
        "data": {"label": label, "id": metric_id},
        "valueAxis": "ValueAxis-1",
        "drawLinesBetweenPoints": True,
        "showCircles": True,
    }


def saved_objects(alias: str = "products") -> list[dict[str, Any]]:
    """Every object, index patterns first (an import resolves references in any order, but a
    reader of the file should meet what is referenced before what refers to it)."""
    dead = f"{alias}-deadletter"
    objects: list[dict[str, Any]] = [
        index_pattern(alias, INDEXED_AT),
        index_pattern(QUERY_LOG, "time"),
        index_pattern(dead, "time"),
    ]
    dead_search = {
        "type": "search",
        "id": object_id(f"search:{dead}-by-reason"),
        "attributes": {
            "title": "modalfuse: dead letters by reason",
            "description": "Messages that can never be indexed, newest first, with the field "
            "and the reason.",
            "columns": ["doc_id", "error_type", "field", "reason", "attempts"],
            "sort": [["time", "desc"]],
            "version": 1,
            "kibanaSavedObjectMeta": _search_source(),
        },
        "references": _index_ref(dead),
        "migrationVersion": {"search": "7.9.3"},
    }
    percentiles: list[dict[str, Any]] = [
        {
            "id": str(i),
            "enabled": True,
            "type": "percentiles",
            "schema": "metric",
            "params": {"field": f"latency_ms.{stage}", "percents": [50, 95]},
        }
        for i, stage in enumerate(LATENCY_STAGES, start=1)
    ]
    last = str(len(percentiles) + 1)
    visualizations = [
        visualization(
            "queries-per-minute",
            "modalfuse: queries per minute",
            "line",
            [_count(), _date_histogram("2", "time", "1m")],
            pattern=QUERY_LOG,
            params={"type": "line", **_axes("queries"), "seriesParams": [_series("1", "queries")]},
        ),
        visualization(
            "latency-per-stage",
            "modalfuse: latency p50 / p95 per stage (ms)",
            "line",
            [*percentiles, _date_histogram(last, "time")],
            pattern=QUERY_LOG,
            params={
                "type": "line",
                **_axes("ms"),
                "seriesParams": [_series(p["id"], p["params"]["field"]) for p in percentiles],
            },
        ),
        visualization(
            "zero-result-rate",
            "modalfuse: zero-result rate",
            "histogram",
            [_count(), _date_histogram("2", "time"), _terms("3", "zero_results", "group", 2)],
            pattern=QUERY_LOG,
            params={
                "type": "histogram",
                **_axes("share of queries"),
                # Percentage mode: each bar is 100%, split into zero-result and other queries.
                "seriesParams": [_series("1", "queries", mode="percentage", kind="histogram")],
            },
        ),
        visualization(
            "top-zero-result-queries",
            "modalfuse: top zero-result queries",
            "table",
            [_count(), _terms("2", "query.raw", "bucket", 25)],
            pattern=QUERY_LOG,
            query="zero_results:true",
            params={"perPage": 25, "showPartialRows": False, "showMetricsAtAllLevels": False},
        ),
        visualization(
            "ingest-rate",
            "modalfuse: documents written over time",
            "line",
            [_count(), _date_histogram("2", INDEXED_AT)],
            pattern=alias,
            params={
                "type": "line",
                **_axes("documents written"),
                "seriesParams": [_series("1", "documents")],
            },
        ),
        visualization(
            "dead-letters-over-time",
            "modalfuse: dead letters over time, by error",
            "histogram",
            [_count(), _date_histogram("2", "time"), _terms("3", "error_type", "group")],
            pattern=dead,
            params={
                "type": "histogram",
                **_axes("dead letters"),
                "seriesParams": [_series("1", "dead letters", mode="stacked", kind="histogram")],
            },
        ),
        visualization(
            "retriever-share",
            "modalfuse: share of top-10 hits by contributing retriever",
            "pie",
            [_count(), _terms("2", "top_contributors", "segment", 5)],
            pattern=QUERY_LOG,
            params={"type": "pie", "addTooltip": True, "addLegend": True, "isDonut": True},
            description="Each top-10 hit counts once, for the retriever whose RRF contribution "
            "to it was largest.",
        ),
    ]
    objects += [dead_search, *visualizations]
    objects.append(dashboard([*visualizations, dead_search]))
    return objects


def dashboard(panels: list[dict[str, Any]]) -> dict[str, Any]:
    grid = []
    references = []
    for i, obj in enumerate(panels):
        ref = f"panel_{i}"
        grid.append(
            {
                "panelIndex": str(i + 1),
                "gridData": {
                    "x": (i % 2) * 24,
                    "y": (i // 2) * 15,
                    "w": 24,
                    "h": 15,
                    "i": str(i + 1),
                },
                "embeddableConfig": {},
                "version": "2.19.0",
                "panelRefName": ref,
            }
        )
        references.append({"id": obj["id"], "name": ref, "type": obj["type"]})
    return {
        "type": "dashboard",
        "id": object_id("dashboard:modalfuse"),
        "attributes": {
            "title": "modalfuse: search and ingest",
            "description": "Query volume, latency per stage, zero results, retriever shares, "
            "ingest rate and dead letters.",
            "panelsJSON": json.dumps(grid),
            "optionsJSON": json.dumps({"hidePanelTitles": False, "useMargins": True}),
            "timeRestore": True,
            "timeFrom": "now-24h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 30000},
            "version": 1,
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {"query": {"query": "", "language": "kuery"}, "filter": []}
                )
            },
        },
        "references": references,
        "migrationVersion": {"dashboard": "7.9.3"},
    }


def to_ndjson(objects: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)


def import_saved_objects(url: str, ndjson: str, *, settings: Any) -> dict[str, Any]:
    """POST `ndjson` to `<url>/api/saved_objects/_import?overwrite=true` (multipart, with the
    `osd-xsrf` header Dashboards requires). Raises `ConfigError` with Dashboards' own reasons
    when it refuses any object."""
    import httpx

    from modalfuse.errors import ConfigError, EngineUnavailable

    auth = None
    if settings.opensearch_user is not None:
        password = settings.opensearch_password
        auth = (settings.opensearch_user, password.get_secret_value() if password else "")
    verify: Any = settings.opensearch_verify_certs
    if verify and settings.opensearch_ca_certs is not None:
        verify = str(settings.opensearch_ca_certs)
    endpoint = url.rstrip("/") + "/api/saved_objects/_import"
    try:
        response = httpx.post(
            endpoint,
            params={"overwrite": "true"},
            headers={"osd-xsrf": "true"},
            files={"file": ("modalfuse.ndjson", ndjson.encode(), "application/ndjson")},
            auth=auth,
            verify=verify,
            timeout=settings.opensearch_timeout_s,
        )
    except httpx.HTTPError as e:
        raise EngineUnavailable(f"cannot reach OpenSearch Dashboards at {url}: {e}") from e
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"text": response.text[:500]}
    if response.status_code != 200 or not body.get("success", False):
        errors = body.get("errors") or body.get("message") or body
        raise ConfigError(f"Dashboards refused the import ({response.status_code}): {errors}")
    return body
