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

from modalfuse.cli.options import (
    EngineOpt,
    FusionConfigOpt,
    IndexOpt,
    JsonFlag,
    SchemaOpt,
    YesFlag,
    confirm,
    settings_for,
)
from modalfuse.mappings.schema import StoredKind
from modalfuse.settings import EngineName

index_app = typer.Typer(no_args_is_help=True, help="Create, swap, drop and inspect indices.")
err = Console(stderr=True)


@index_app.command("create")
def create(
    engine: EngineOpt = None,
    index: IndexOpt = None,
    schema: SchemaOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be created; touch nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create the next version `<index>-v<N>`; the alias points at it if it had no target."""
    from modalfuse.engines import open_engine
    from modalfuse.service.indexes import create_index, resolved_schema

    settings = settings_for(engine)
    with open_engine(settings) as eng:  # connects on first use: a dry run never does
        if dry_run:
            resolved = resolved_schema(settings, schema=schema, name=index)
            _notes(resolved.skipped)
            # JSON either way; --json only keeps notes off stdout, which they already are.
            print(json.dumps(eng.create_body(resolved), indent=2))
            return
        made = create_index(eng, settings, schema=schema, name=index)
    resolved, physical = made.resolved, made.created
    _notes(resolved.skipped)
    result = {
        "engine": settings.engine,
        "alias": resolved.name,
        "created": physical,
        "alias_target": made.alias_target,
        "vector_fields": {k: v.dim for k, v in resolved.vectors.items()},
        "skipped": resolved.skipped,
    }
    if as_json:
        print(json.dumps(result, indent=2))
        return
    Console().print(
        f"created [bold]{physical}[/] on {settings.engine}; "
        f"alias {resolved.name!r} -> {made.alias_target}"
    )
    if made.alias_target != physical:
        Console().print(
            f"swap when ready: modalfuse index swap --index {resolved.name} --to {physical}"
        )


def _notes(skipped: dict[str, str]) -> None:
    for field, reason in skipped.items():
        err.print(f"[yellow]note:[/] {field} left out: {reason}")


@index_app.command("swap")
def swap(
    to: Annotated[str, typer.Option("--to", help="Physical index to point the alias at.")],
    engine: EngineOpt = None,
    index: IndexOpt = None,
    drop_old: Annotated[
        bool, typer.Option("--drop-old", help="Drop the previous index after the swap.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Atomically move the alias to another physical index."""
    from modalfuse.engines import open_engine

    settings = settings_for(engine)
    with open_engine(settings) as eng:
        result = eng.swap(index or settings.index, to, keep_old=not drop_old)
    _print(dataclasses.asdict(result), as_json)


@index_app.command("drop")
def drop(
    index: Annotated[
        str,
        typer.Option("--index", help="An alias (drops every version) or one physical version."),
    ],
    engine: EngineOpt = None,
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Drop one physical index, or an alias with all its versions."""
    from modalfuse.engines import open_engine

    confirm(yes, "dropping deletes data")
    with open_engine(settings_for(engine)) as eng:
        dropped = eng.drop(index)
    _print({"dropped": dropped}, as_json)


@index_app.command("stats")
def stats(engine: EngineOpt = None, index: IndexOpt = None, as_json: JsonFlag = False) -> None:
    """Documents, vector fields, size and versions of an index."""
    from modalfuse.engines import open_engine

    settings = settings_for(engine)
    with open_engine(settings) as eng:
        result = eng.stats(index or settings.index)
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
    fusion_config: FusionConfigOpt = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the index's default.")] = False,
    engine: EngineOpt = None,
    index: IndexOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a fusion config the default of an index's current version (searches that do not
    set fusion, k, weights, window or retrievers themselves use it)."""
    from modalfuse.errors import ConfigError
    from modalfuse.query.fusion_config import load_fusion_config

    if (fusion_config is None) == (not clear):
        raise ConfigError("give --fusion-config FILE, or --clear")
    fusion = load_fusion_config(fusion_config) if fusion_config is not None else None
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
    ranking_config: Annotated[
        Path | None,
        typer.Option(
            "--ranking-config",
            exists=True,
            dir_okay=False,
            help="Ranking JSON: boosts, collapse, diversify.",
        ),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the index's default.")] = False,
    engine: EngineOpt = None,
    index: IndexOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a ranking the default of an index's current version (searches that do not set
    boosts, collapse or diversify themselves use it)."""
    from pydantic import ValidationError

    from modalfuse.errors import ConfigError
    from modalfuse.query.ranking import store
    from modalfuse.query.ranking.models import RankingConfig
    from modalfuse.query.request import first_error

    if (ranking_config is None) == (not clear):
        raise ConfigError("give --ranking-config FILE, or --clear")
    ranking = None
    if ranking_config is not None:
        try:
            ranking = RankingConfig.model_validate_json(ranking_config.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read ranking config {ranking_config}: {e}") from e
        except ValidationError as e:
            field, message = first_error(e)
            raise ConfigError(f"{ranking_config}: {field or 'config'}: {message}") from e
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

    settings = settings_for(engine)
    name = index or settings.index
    with open_engine(settings) as eng:
        physical = store(eng, name)
        result = {"index": name, "physical": physical, kind: eng.stored_settings(name, kind)}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    Console().print(f"{name} ({physical}): default {kind} {result[kind] or 'cleared'}")


@index_app.command("optimize")
def optimize(engine: EngineOpt = None, index: IndexOpt = None) -> None:
    """Compact and fold new rows into the indices (LanceDB: full-text and ANN indices, tombstone
    purge; OpenSearch: expunge deletes). Ingest with --wait and workers do it on their own."""
    from modalfuse.engines import open_engine

    settings = settings_for(engine)
    name = index or settings.index
    with open_engine(settings) as eng:
        eng.optimize(name)
    Console().print(f"optimized {name}")
