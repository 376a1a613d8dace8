"""`modalfuse search` (one query) and `modalfuse serve` (the HTTP API)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from modalfuse.cli.options import (
    EngineOpt,
    FusionConfigOpt,
    IndexOpt,
    JsonFlag,
    LexicalFieldsOpt,
    common_request_fields,
    settings_for,
)
from modalfuse.mappings.schema import Schema, VectorField


class Fusion(StrEnum):
    auto = "auto"
    rrf = "rrf"
    minmax = "minmax"
    zscore = "zscore"


def search(
    query: Annotated[str, typer.Argument(help="Query text (may be empty with --image).")] = "",
    index: IndexOpt = None,
    engine: EngineOpt = None,
    image: Annotated[Path | None, typer.Option("--image", help="Query image file.")] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="category=Dresses, price<50, tags=a|b, colour?, !colour?"),
    ] = None,
    retrievers: Annotated[
        str | None, typer.Option(help="Comma-separated: lexical,text_vector,text_to_image,image.")
    ] = None,
    lexical_fields: LexicalFieldsOpt = None,
    fusion: Annotated[Fusion | None, typer.Option(help="Fusion method (default auto).")] = None,
    weight: Annotated[
        list[str] | None, typer.Option("--weight", help="Retriever weight: text_vector=2.")
    ] = None,
    k: Annotated[int | None, typer.Option(help="RRF rank constant (default 60).")] = None,
    window: Annotated[
        int | None, typer.Option(help="Candidates per retriever (default 100).")
    ] = None,
    fusion_config: FusionConfigOpt = None,
    from_: Annotated[int, typer.Option("--from", help="Page offset.")] = 0,
    size: Annotated[int, typer.Option(help="Page size.")] = 10,
    explain: Annotated[
        bool, typer.Option("--explain", help="Per-retriever rank and share.")
    ] = False,
    server_side: Annotated[
        bool, typer.Option("--server-side", help="OpenSearch: fuse in the cluster.")
    ] = False,
    boost: Annotated[
        list[str] | None,
        typer.Option(
            "--boost",
            help="filter:brand=Nike:0.3, field:year:linear:0.2, decay:year:gauss:2012:2:0.2, "
            "or JSON.",
        ),
    ] = None,
    collapse: Annotated[
        str | None, typer.Option("--collapse", help="One hit per value of this keyword field.")
    ] = None,
    inner: Annotated[int, typer.Option("--inner", help="Variants listed per group.")] = 2,
    diversify: Annotated[
        float | None, typer.Option("--diversify", help="MMR lambda in [0, 1] (1: no change).")
    ] = None,
    diversify_on: Annotated[
        str | None,
        typer.Option("--diversify-on", help="Vector or keyword field (default: text vector)."),
    ] = None,
    rules: Annotated[
        bool, typer.Option("--rules/--no-rules", help="Apply the index's merchandising rules.")
    ] = True,
    facet: Annotated[
        list[str] | None, typer.Option("--facet", help="Count this keyword field's values.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Search one index: every retriever that applies, fused (auto by default; rrf, minmax or
    zscore by name), then ranked: boosts, rules, collapse, diversity."""
    from pydantic import ValidationError

    from modalfuse.errors import InvalidInput
    from modalfuse.query.filter_syntax import parse_filter
    from modalfuse.query.request import SearchRequest, first_error
    from modalfuse.query.searcher import Searcher

    settings = settings_for(engine)
    name = index or settings.index
    # The searcher opens the engine (lazily) and closes it when the search is done.
    searcher = Searcher(settings)
    schema = searcher.schema(name).schema
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
        "image": read_image_file(image) if image else None,
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
        "fusion": fusion.value if fusion is not None else None,
        "weights": weights or None,
        "k": k,
        "window": window,
    }
    given |= common_request_fields(lexical_fields)
    given |= {key: value for key, value in optional.items() if value is not None}
    given |= ranking_options(
        schema,
        boosts=boost or [],
        collapse=collapse,
        inner=inner,
        diversify=diversify,
        diversify_on=diversify_on,
        rules=rules,
        facets=facet or [],
    )
    try:
        request = SearchRequest.model_validate(given)
    except ValidationError as e:
        field, message = first_error(e)
        raise InvalidInput(message, field=field) from e
    if fusion_config is not None:
        from modalfuse.query.fusion_config import load_fusion_config

        request = load_fusion_config(fusion_config).apply(request)
    with searcher:
        response = searcher.search(request)
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
    if collapse:
        table.add_column("group (variants)")
    if explain:
        for r in response.retrievers:
            table.add_column(f"{r}\nrank / share", justify="right")
    for i, hit in enumerate(response.hits, start=from_ + 1):
        marker = f" [pinned {hit.pinned}]" if hit.pinned is not None else ""
        row = [str(i), hit.id + marker, f"{hit.score:.4f}", str(hit.fields.get("title", ""))]
        if collapse:
            row.append(f"{hit.group} (+{len(hit.variants or [])})")
        if explain:
            for r in response.retrievers:
                part = (hit.explain or {}).get(r)
                row.append(f"{part.rank} / {part.contribution:.4f}" if part else "-")
        table.add_row(*row)
    out.print(table)
    if response.rules:
        out.print(f"rules fired: {', '.join(response.rules)}")
    for name, counts in (response.facets or {}).items():
        out.print(f"{name}: " + ", ".join(f"{v} ({n})" for v, n in counts))
    out.print(f"{response.total} {response.total_counts} in the window")
    out.print(" ".join(f"{k}={v:.1f}ms" for k, v in response.timings_ms.items()))


def read_image_file(path: Path) -> bytes:
    """The query image's bytes; a file that cannot be read is one clear line, not a traceback."""
    from modalfuse.errors import InvalidInput

    try:
        return path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}", field="--image") from e


def ranking_options(
    schema: Schema,
    *,
    boosts: list[str],
    collapse: str | None,
    inner: int,
    diversify: float | None,
    diversify_on: str | None,
    rules: bool,
    facets: list[str],
) -> dict[str, object]:
    """The ranking part of a request from the command line's options (only what was given)."""
    from modalfuse.query.ranking.syntax import parse_boost

    out: dict[str, object] = {"rules": rules}
    if boosts:
        out["boosts"] = [
            parse_boost(b, schema, where="--boost").model_dump(mode="json") for b in boosts
        ]
    if collapse:
        out["collapse"] = {"field": collapse, "inner": inner}
    if diversify is not None:
        vectors = [f.name for f in schema.of_type(VectorField) if f.encoder == "text"]
        on = diversify_on or (vectors[0] if vectors else "")
        out["diversify"] = {"lambda": diversify, "on": on}
    if facets:
        out["facets"] = facets
    return out


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    fusion_config: FusionConfigOpt = None,
    engine: EngineOpt = None,
) -> None:
    """Serve the search page (/) and the HTTP API (POST /search, /healthz, /readyz, /docs)."""
    import uvicorn

    from modalfuse.query.api import create_api
    from modalfuse.query.fusion_config import load_fusion_config

    config = load_fusion_config(fusion_config) if fusion_config is not None else None
    uvicorn.run(
        create_api(settings_for(engine), fusion_config=config),
        host=host,
        port=port,
        log_level="info",
    )


def dump(data: object) -> str:
    return json.dumps(data, indent=2, default=str)
