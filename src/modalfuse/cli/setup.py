"""`modalfuse setup`: make a deployment ready, idempotently (the compose file's `init` service).

Creates the index (and its alias) when the alias has none, the search pipelines for the default
hybrid set on OpenSearch, and imports the Dashboards saved objects when a URL is given. Running
it again changes nothing that exists.
"""

from __future__ import annotations

import json

from rich.console import Console

from modalfuse.cli.options import (
    DashboardsUrlOpt,
    EngineOpt,
    IndexOpt,
    JsonFlag,
    SchemaOpt,
    settings_for,
)


def setup(
    index: IndexOpt = None,
    schema: SchemaOpt = None,
    dashboards_url: DashboardsUrlOpt = None,
    engine: EngineOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Create what is missing: index + alias, search pipelines, Dashboards objects."""
    from modalfuse.engines import open_engine
    from modalfuse.service.deployment import set_up

    settings = settings_for(engine)
    with open_engine(settings) as eng:
        result = set_up(eng, settings, index=index, schema=schema, dashboards_url=dashboards_url)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    pipelines = result["pipelines"]
    Console().print(
        f"{result['index']} on {result['engine']}: "
        + (f"created {result['created']}" if result["created"] else f"-> {result['alias_target']}")
        + (f"; pipelines {', '.join(pipelines)}" if pipelines else "")
        + (f"; {result['dashboards']['imported']} Dashboards objects" if dashboards_url else "")
    )
