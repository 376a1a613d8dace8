"""`modalfuse index create|drop|swap|stats`: index lifecycle on either engine."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modalfuse.mappings.schema import StoredKind
from modalfuse.settings import EngineName, Settings

index_app = typer.Typer(no_args_is_help=True, help="Create, swap, drop and inspect indices.")
EngineOpt = Annotated[
    EngineName | None, typer.Option("--engine", help="lancedb or opensearch (default: settings).")
]
NameOpt = Annotated[str | None, typer.Option("--index", help="Alias name (default: settings).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
err = Console(stderr=True)


def _resolved_schema(settings: Settings, schema_file: Path | None, name: str | None) -> Any:
    from modalfuse.mappings.schema import load_schema, parse_schema, resolve
    from modalfuse.onnx_models.registry import encoder_dims

    schema = load_schema(schema_file or settings.schema_file)
    if name is not None and name != schema.name:
        schema = parse_schema(schema.model_dump() | {"name": name}, origin="--index")
    resolved = resolve(schema, encoder_dims(settings))
    for field, reason in resolved.skipped.items():
        err.print(f"[yellow]note:[/] {field} left out: {reason}")
    return resolved


@index_app.command("create")
def create(
    engine: EngineOpt = None,
    index: NameOpt = None,
    schema: Annotated[Path | None, typer.Option("--schema", help="Schema YAML file.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be created; touch nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create the next version `<index>-v<N>`; the alias points at it if it had no target."""
    settings = Settings()
    chosen = engine or settings.engine
    resolved = _resolved_schema(settings, schema, index)
    from modalfuse.engines import open_engine

    eng = open_engine(settings, chosen)  # connects on first use: a dry run never does
    if dry_run:
        # The body is JSON either way; --json only keeps notes off stdout, which they already are.
        print(json.dumps(eng.create_body(resolved), indent=2))
        return
    physical = eng.create(resolved)
    target = eng.stats(resolved.name)
    result = {
        "engine": chosen,
        "alias": resolved.name,
        "created": physical,
        "alias_target": target.index,
        "vector_fields": {k: v.dim for k, v in resolved.vectors.items()},
        "skipped": resolved.skipped,
    }
    if as_json:
        print(json.dumps(result, indent=2))
        return
    Console().print(
        f"created [bold]{physical}[/] on {chosen}; alias {resolved.name!r} -> {target.index}"
    )
    if target.index != physical:
        Console().print(
            f"swap when ready: modalfuse index swap --index {resolved.name} --to {physical}"
        )


@index_app.command("swap")
def swap(
    to: Annotated[str, typer.Option("--to", help="Physical index to point the alias at.")],
    engine: EngineOpt = None,
    index: NameOpt = None,
    drop_old: Annotated[
        bool, typer.Option("--drop-old", help="Drop the previous index after the swap.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Atomically move the alias to another physical index."""
    from modalfuse.engines import open_engine

    settings = Settings()
    result = open_engine(settings, engine).swap(index or settings.index, to, keep_old=not drop_old)
    _print(dataclasses.asdict(result), as_json)


@index_app.command("drop")
def drop(
    name: Annotated[str, typer.Argument(help="An alias (drops every version) or one version.")],
    engine: EngineOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this deletes data.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Drop one physical index, or an alias with all its versions."""
    from modalfuse.engines import open_engine

    if not yes:
        raise typer.BadParameter("dropping deletes data; add --yes to confirm", param_hint="--yes")
    dropped = open_engine(Settings(), engine).drop(name)
    _print({"dropped": dropped}, as_json)


@index_app.command("stats")
def stats(engine: EngineOpt = None, index: NameOpt = None, as_json: JsonFlag = False) -> None:
    """Documents, vector fields, size and versions of an index."""
    from modalfuse.engines import open_engine

    settings = Settings()
    result = open_engine(settings, engine).stats(index or settings.index)
    _print(dataclasses.asdict(result), as_json)


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    table = Table(show_header=False)
    for key, value in result.items():
        table.add_row(key, json.dumps(value, default=str) if not isinstance(value, str) else value)
    Console().print(table)


@index_app.command("set-fusion")
def set_fusion(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Fusion config JSON (from `modalfuse eval --tune`)."),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the index's default.")] = False,
    engine: EngineOpt = None,
    index: NameOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a fusion config the default of an index's current version (searches that do not
    set fusion, k, weights, window or retrievers themselves use it)."""
    from modalfuse.errors import ConfigError
    from modalfuse.query.fusion_config import load_fusion_config

    if (config is None) == (not clear):
        raise ConfigError("give --config FILE, or --clear")
    fusion = load_fusion_config(config) if config is not None else None
    body = fusion.model_dump(mode="json", exclude_none=True) if fusion else None
    _store_default(
        "fusion",
        lambda eng, name: eng.store_settings(name, "fusion", body),
        engine=engine,
        index=index,
        as_json=as_json,
    )


@index_app.command("set-ranking")
def set_ranking(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Ranking JSON: boosts, collapse, diversify."),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the index's default.")] = False,
    engine: EngineOpt = None,
    index: NameOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a ranking the default of an index's current version (searches that do not set
    boosts, collapse or diversify themselves use it)."""
    from pydantic import ValidationError

    from modalfuse.errors import ConfigError
    from modalfuse.query.ranking import store
    from modalfuse.query.ranking.models import RankingConfig
    from modalfuse.query.request import first_error

    if (config is None) == (not clear):
        raise ConfigError("give --config FILE, or --clear")
    ranking = None
    if config is not None:
        try:
            ranking = RankingConfig.model_validate_json(config.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read ranking config {config}: {e}") from e
        except ValidationError as e:
            field, message = first_error(e)
            raise ConfigError(f"{config}: {field or 'config'}: {message}") from e
    _store_default(
        "ranking",
        lambda eng, name: store.set_ranking(eng, name, ranking),
        engine=engine,
        index=index,
        as_json=as_json,
    )


def _store_default(
    kind: StoredKind,
    store: Callable[[Any, str], str],
    *,
    engine: EngineName | None,
    index: str | None,
    as_json: bool,
) -> None:
    """Open the engine, store an index default through `store(engine, name)` (which returns
    the physical index), and show what the index now holds."""
    from modalfuse.engines import open_engine

    settings = Settings()
    name = index or settings.index
    eng = open_engine(settings, engine or settings.engine)
    physical = store(eng, name)
    result = {"index": name, "physical": physical, kind: eng.stored_settings(name, kind)}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    Console().print(f"{name} ({physical}): default {kind} {result[kind] or 'cleared'}")


@index_app.command("optimize")
def optimize(engine: EngineOpt = None, index: NameOpt = None) -> None:
    """Compact and fold new rows into the indices (LanceDB: full-text and ANN indices, tombstone
    purge; OpenSearch: expunge deletes). Ingest with --wait and workers do it on their own."""
    from modalfuse.engines import open_engine

    settings = Settings()
    name = index or settings.index
    open_engine(settings, engine or settings.engine).optimize(name)
    Console().print(f"optimized {name}")
