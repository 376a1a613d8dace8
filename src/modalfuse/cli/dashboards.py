"""`modalfuse dashboards export|import`: the OpenSearch Dashboards saved objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modalfuse.cli.options import IndexOpt, JsonFlag, settings_for

dashboards_app = typer.Typer(
    no_args_is_help=True, help="OpenSearch Dashboards saved objects (index patterns, charts)."
)


@dashboards_app.command("export")
def export_objects(index: IndexOpt = None) -> None:
    """Print the saved objects as NDJSON (what Dashboards' import takes)."""
    from modalfuse.mappings.dashboards import saved_objects, to_ndjson

    print(to_ndjson(saved_objects(index or settings_for().index)), end="")


@dashboards_app.command("import")
def import_objects(
    dashboards_url: Annotated[
        str,
        typer.Option(
            "--dashboards-url", help="OpenSearch Dashboards base URL, e.g. http://localhost:5601."
        ),
    ],
    index: IndexOpt = None,
    file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="NDJSON to import (default: built-in)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Post the saved objects to Dashboards' import API (overwriting earlier imports).
    Credentials and TLS come from the OpenSearch settings (MODALFUSE_OPENSEARCH_USER, ...)."""
    from modalfuse.service.deployment import import_dashboards

    result = import_dashboards(settings_for(), url=dashboards_url, index=index, file=file)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    Console().print(f"imported {result.get('successCount', 0)} saved objects into {dashboards_url}")
