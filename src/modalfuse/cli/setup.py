"""`modalfuse setup`: make a deployment ready, idempotently (the compose file's `init` service).

Creates the index (and its alias) when the alias has none, the search pipelines for the default
hybrid set on OpenSearch, and imports the Dashboards saved objects when a URL is given. Running
it again changes nothing that exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from modalfuse.settings import Settings


def setup(
    index: Annotated[
        str | None, typer.Option("--index", help="Alias name (default: settings).")
    ] = None,
    schema: Annotated[Path | None, typer.Option("--schema", help="Schema YAML file.")] = None,
    dashboards_url: Annotated[
        str | None, typer.Option(help="OpenSearch Dashboards URL: import the saved objects.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="What was done, as JSON.")] = False,
) -> None:
    """Create what is missing: index + alias, search pipelines, Dashboards objects."""
    from modalfuse.cli.index import _resolved_schema
    from modalfuse.engines import open_engine
    from modalfuse.engines.base import ServerSideFusion
    from modalfuse.errors import InvalidInput
    from modalfuse.mappings.dashboards import import_saved_objects, saved_objects, to_ndjson
    from modalfuse.query.request import SearchRequest
    from modalfuse.query.searcher import Searcher

    settings = Settings()
    resolved = _resolved_schema(settings, schema, index)
    name = resolved.name
    engine = open_engine(settings)
    result: dict[str, Any] = {"engine": engine.name, "index": name}
    target = engine.alias_target(name)
    result["created"] = engine.create(resolved) if target is None else None
    result["alias_target"] = engine.alias_target(name)
    pipelines: list[str] = []
    skipped: dict[str, str] = {}
    if isinstance(engine, ServerSideFusion):
        searcher = Searcher(settings, engine=engine)
        current = engine.schema_of(name)
        for fusion in ("rrf", "minmax", "zscore"):
            request = SearchRequest(text="setup", fusion=fusion)
            names = searcher.plan(request, current, "setup")
            try:
                pipelines.append(
                    engine.prepare_fusion(
                        name, method=fusion, rank_constant=request.k, weights=[1.0] * len(names)
                    )
                )
            except InvalidInput as e:  # a method this cluster cannot run server-side
                skipped[fusion] = str(e)
    result["pipelines"] = pipelines
    if skipped:
        result["pipelines_skipped"] = skipped
    if dashboards_url is not None:
        answer = import_saved_objects(
            dashboards_url, to_ndjson(saved_objects(name)), settings=settings
        )
        result["dashboards"] = {"url": dashboards_url, "imported": answer.get("successCount", 0)}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    Console().print(
        f"{name} on {engine.name}: "
        + (f"created {result['created']}" if result["created"] else f"-> {result['alias_target']}")
        + (f"; pipelines {', '.join(pipelines)}" if pipelines else "")
        + (f"; {result['dashboards']['imported']} Dashboards objects" if dashboards_url else "")
    )
