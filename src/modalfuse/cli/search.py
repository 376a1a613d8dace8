"""`modalfuse search` (one query) and `modalfuse serve` (the HTTP API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from modalfuse.settings import Settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def search(
    query: Annotated[str, typer.Argument(help="Query text (may be empty with --image).")] = "",
    index: Annotated[str | None, typer.Option("--index", help="Alias (default: settings).")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Query image file.")] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="category=Dresses, price<50, tags=a|b, colour?, !colour?"),
    ] = None,
    retrievers: Annotated[
        str | None, typer.Option(help="Comma-separated: lexical,text_vector,text_to_image,image.")
    ] = None,
    fusion: Annotated[
        str | None, typer.Option(help="auto, rrf, minmax or zscore (default auto).")
    ] = None,
    weight: Annotated[
        list[str] | None, typer.Option("--weight", help="Retriever weight: text_vector=2.")
    ] = None,
    k: Annotated[int | None, typer.Option(help="RRF rank constant (default 60).")] = None,
    window: Annotated[
        int | None, typer.Option(help="Candidates per retriever (default 100).")
    ] = None,
    fusion_config: Annotated[
        Path | None,
        typer.Option(
            "--fusion-config", help="Fusion settings file (from `modalfuse eval --tune`)."
        ),
    ] = None,
    from_: Annotated[int, typer.Option("--from", help="Page offset.")] = 0,
    size: Annotated[int, typer.Option(help="Page size.")] = 10,
    explain: Annotated[
        bool, typer.Option("--explain", help="Per-retriever rank and share.")
    ] = False,
    server_side: Annotated[
        bool, typer.Option("--server-side", help="OpenSearch: fuse in the cluster.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Search one index: every retriever that applies, fused with RRF (or score normalisation)."""
    from modalfuse.engines import open_engine
    from modalfuse.errors import InvalidInput
    from modalfuse.query.filter_syntax import parse_filter
    from modalfuse.query.request import SearchRequest
    from modalfuse.query.searcher import Searcher

    settings = Settings()
    engine = open_engine(settings)
    name = index or settings.index
    schema = engine.schema_of(name).schema
    weights = {}
    for pair in weight or []:
        key, _, value = pair.partition("=")
        try:
            weights[key] = float(value)
        except ValueError as e:
            raise InvalidInput(f"expected NAME=NUMBER, got {pair!r}", field="--weight") from e
    given: dict[str, object] = {
        "index": name,
        "text": query or None,
        "image": image.read_bytes() if image else None,
        "filters": [parse_filter(f, schema, where=f"--filter {f}") for f in filters or []],
        "from": from_,
        "size": size,
        "explain": explain,
        "server_side": server_side,
    }
    # Only what was given on the command line counts as set: the rest may come from the
    # --fusion-config file, then from the index's default fusion.
    optional = {
        "retrievers": retrievers.split(",") if retrievers else None,
        "fusion": fusion,
        "weights": weights or None,
        "k": k,
        "window": window,
    }
    given |= {key: value for key, value in optional.items() if value is not None}
    try:
        request = SearchRequest.model_validate(given)
    except ValueError as e:
        raise InvalidInput(str(e).splitlines()[-1] if str(e) else "invalid request") from e
    if fusion_config is not None:
        from modalfuse.query.fusion_config import load_fusion_config

        request = load_fusion_config(fusion_config).apply(request)
    response = Searcher(settings, engine=engine).search(request)
    if as_json:
        print(response.model_dump_json(indent=2))
        return
    out = Console()
    for warning in response.warnings:
        out.print(f"[yellow]warning:[/] {warning}")
    table = Table(title=f"{response.index}: {', '.join(response.retrievers)} ({response.fusion})")
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("title")
    if explain:
        for r in response.retrievers:
            table.add_column(f"{r}\nrank / share", justify="right")
    for i, hit in enumerate(response.hits, start=from_ + 1):
        row = [str(i), hit.id, f"{hit.score:.4f}", str(hit.fields.get("title", ""))]
        if explain:
            for r in response.retrievers:
                part = (hit.explain or {}).get(r)
                row.append(f"{part.rank} / {part.contribution:.4f}" if part else "-")
        table.add_row(*row)
    out.print(table)
    out.print(" ".join(f"{k}={v:.1f}ms" for k, v in response.timings_ms.items()))


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    fusion_config: Annotated[
        Path | None,
        typer.Option(
            "--fusion-config", help="Fusion settings for requests that do not set their own."
        ),
    ] = None,
) -> None:
    """Serve the search page (/) and the HTTP API (POST /search, /healthz, /readyz, /docs)."""
    import uvicorn

    from modalfuse.query.api import create_api
    from modalfuse.query.fusion_config import load_fusion_config

    config = load_fusion_config(fusion_config) if fusion_config is not None else None
    uvicorn.run(
        create_api(Settings(), fusion_config=config), host=host, port=port, log_level="info"
    )


def dump(data: object) -> str:
    return json.dumps(data, indent=2, default=str)
