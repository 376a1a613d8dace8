"""Make a deployment ready, idempotently (`modalfuse setup`, the compose file's `init`): the
index and its alias when the alias has none, the search pipelines for the default hybrid set on
an engine that fuses server-side, and the Dashboards saved objects when a URL is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modalfuse.engines.base import Engine, ServerSideFusion
from modalfuse.errors import InvalidInput
from modalfuse.mappings.dashboards import import_saved_objects, saved_objects, to_ndjson
from modalfuse.query.fusion import Method
from modalfuse.query.request import SearchRequest
from modalfuse.query.searcher import Searcher
from modalfuse.service.indexes import create_index
from modalfuse.settings import Settings

FUSIONS: tuple[Method, ...] = ("rrf", "minmax", "zscore")


def import_dashboards(
    settings: Settings, *, url: str, index: str | None = None, file: Path | None = None
) -> dict[str, Any]:
    """Post the saved objects (built for `index`, or read from `file`) to Dashboards' import
    API, overwriting earlier imports; returns its answer."""
    ndjson = (
        file.read_text(encoding="utf-8")
        if file is not None
        else to_ndjson(saved_objects(index or settings.index))
    )
    return import_saved_objects(url, ndjson, settings=settings)


def prepare_pipelines(engine: Engine, settings: Settings, index: str) -> dict[str, Any]:
    """The server-side search pipelines of the default hybrid set, one per fusion method the
    cluster can run (`pipelines`), and why the others cannot (`pipelines_skipped`)."""
    if not isinstance(engine, ServerSideFusion):
        return {"pipelines": []}
    searcher = Searcher(settings, engine=engine)
    current = engine.schema_of(index)
    pipelines: list[str] = []
    skipped: dict[str, str] = {}
    for fusion in FUSIONS:
        request = SearchRequest(text="setup", fusion=fusion)
        names = searcher.plan(request, current, "setup")
        try:
            pipelines.append(
                engine.prepare_fusion(
                    index, method=fusion, rank_constant=request.k, weights=[1.0] * len(names)
                )
            )
        except InvalidInput as e:  # a method this cluster cannot run server-side
            skipped[fusion] = str(e)
    return {"pipelines": pipelines} | ({"pipelines_skipped": skipped} if skipped else {})


def set_up(
    engine: Engine,
    settings: Settings,
    *,
    index: str | None = None,
    schema: str | Path | None = None,
    dashboards_url: str | None = None,
) -> dict[str, Any]:
    """Create what is missing; running it again changes nothing that exists."""
    made = create_index(engine, settings, schema=schema, name=index, if_missing=True)
    result: dict[str, Any] = {
        "engine": engine.name,
        "index": made.alias,
        "created": made.created,
        "alias_target": made.alias_target,
    }
    result |= prepare_pipelines(engine, settings, made.alias)
    if dashboards_url is not None:
        answer = import_dashboards(settings, url=dashboards_url, index=made.alias)
        result["dashboards"] = {"url": dashboards_url, "imported": answer.get("successCount", 0)}
    return result
