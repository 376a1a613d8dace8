"""The options commands share, spelled one way: `--engine` wherever an engine is opened,
`--index` for an alias, `--json` for machine-readable output, `--fusion-config` for a fusion
file, `--dashboards-url` for Dashboards, `--yes` to confirm a deletion."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from modalfuse.settings import EngineName, Settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
EngineOpt = Annotated[
    EngineName | None,
    typer.Option("--engine", help="lancedb or opensearch (default: MODALFUSE_ENGINE)."),
]
IndexOpt = Annotated[
    str | None, typer.Option("--index", help="Alias name (default: MODALFUSE_INDEX).")
]
SchemaOpt = Annotated[
    str | None,
    typer.Option(
        "--schema", help="Schema YAML file, or a bundled schema's name (default: products)."
    ),
]
FusionConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--fusion-config",
        exists=True,
        dir_okay=False,
        help="Fusion config JSON (what `modalfuse eval --tune` writes).",
    ),
]
DashboardsUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--dashboards-url", help="OpenSearch Dashboards base URL, e.g. http://localhost:5601."
    ),
]
YesFlag = Annotated[bool, typer.Option("--yes", help="Confirm: this deletes data.")]


class WorkerPool(StrEnum):
    prefork = "prefork"
    solo = "solo"
    threads = "threads"


WorkerPoolOpt = Annotated[WorkerPool, typer.Option("--pool", help="Celery's execution pool.")]


def settings_for(engine: EngineName | None = None) -> Settings:
    """The environment's settings, with `--engine` over MODALFUSE_ENGINE when it is given."""
    settings = Settings()
    return settings if engine is None else settings.model_copy(update={"engine": engine})


def confirm(yes: bool, what: str) -> None:
    if not yes:
        raise typer.BadParameter(f"{what}; add --yes to confirm", param_hint="--yes")


LexicalFieldsOpt = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated text fields BM25 reads (say title); default: every text field. "
        "The vectors still embed what the schema says."
    ),
]


def common_request_fields(lexical_fields: str | None) -> dict[str, Any]:
    """Request fields every query of an evaluation carries, from the shared options."""
    if lexical_fields is None:
        return {}
    names = [n.strip() for n in lexical_fields.split(",") if n.strip()]
    if not names:
        raise typer.BadParameter("name at least one text field", param_hint="--lexical-fields")
    return {"lexical_fields": names}
