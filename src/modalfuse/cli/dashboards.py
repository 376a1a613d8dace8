"""`modalfuse dashboards export|import`: the OpenSearch Dashboards saved objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modalfuse.settings import Settings

dashboards_app = typer.Typer(
    no_args_is_help=True, help="OpenSearch Dashboards saved objects (index patterns, charts)."
)


@dashboards_app.command("export")
def export_objects(
    index: Annotated[
        str | None, typer.Option("--index", help="Product alias (default: settings).")
    ] = None,
) -> None:
    """Print the saved objects as NDJSON (what Dashboards' import takes)."""
    from modalfuse.mappings.dashboards import saved_objects, to_ndjson

    print(to_ndjson(saved_objects(index or Settings().index)), end="")


@dashboards_app.command("import")
def import_objects(
    url: Annotated[str, typer.Option(help="Dashboards base URL, e.g. http://localhost:5601.")],
    index: Annotated[
        str | None, typer.Option("--index", help="Product alias (default: settings).")
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="NDJSON to import (default: the built-in objects).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's answer as JSON.")] = False,
) -> None:
    """Post the saved objects to Dashboards' import API (overwriting earlier imports).
    Credentials and TLS come from the OpenSearch settings (MODALFUSE_OPENSEARCH_USER, ...)."""
    from modalfuse.mappings.dashboards import import_saved_objects, saved_objects, to_ndjson

    settings = Settings()
    ndjson = (
        file.read_text(encoding="utf-8")
        if file
        else to_ndjson(saved_objects(index or settings.index))
    )
    result = import_saved_objects(url, ndjson, settings=settings)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    Console().print(f"imported {result.get('successCount', 0)} saved objects into {url}")
