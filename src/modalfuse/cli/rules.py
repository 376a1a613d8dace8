"""`modalfuse rules add|list|remove`: an index's merchandising rules, stored with the index."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modalfuse.cli.options import EngineOpt, IndexOpt, JsonFlag, settings_for
from modalfuse.engines import open_engine


class Match(StrEnum):
    exact = "exact"
    phrase = "phrase"


rules_app = typer.Typer(
    no_args_is_help=True,
    help="Merchandising rules: pin, hide, boost or bury for matching queries.",
)


def _show(rules: Any, as_json: bool, index: str) -> None:
    if as_json:
        print(json.dumps(rules.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    table = Table(title=f"{index}: {len(rules.rules)} rule(s)")
    for column in ("id", "when", "pin", "hide", "boost"):
        table.add_column(column)
    for r in rules.rules:
        when = f"{r.match} {r.query!r}" + (f" + {len(r.filters)} filter(s)" if r.filters else "")
        pins = ", ".join(f"{p.id}@{p.position}" for p in r.pin)
        boosts = ", ".join(f"{b.filter.field}:{b.weight:+g}" for b in r.boost)
        table.add_row(r.id, when, pins, ", ".join(r.hide), boosts)
    Console().print(table)


@rules_app.command("add")
def add(
    rule_id: Annotated[
        str | None, typer.Option("--id", help="Rule id (a-z, 0-9, _ and -).")
    ] = None,
    query: Annotated[str | None, typer.Option("--query", help="The query that fires it.")] = None,
    match: Annotated[
        Match, typer.Option("--match", help="How the query must match.")
    ] = Match.exact,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="Fire only when the search carries this filter."),
    ] = None,
    pins: Annotated[list[str] | None, typer.Option("--pin", help="ID@POSITION (1-based).")] = None,
    hide: Annotated[list[str] | None, typer.Option("--hide", help="An id to hide.")] = None,
    boosts: Annotated[
        list[str] | None,
        typer.Option("--boost", help="FILTER:WEIGHT, e.g. brand=Nike:0.3 or brand=Acme:-0.5."),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="The rule as a JSON file instead.")
    ] = None,
    engine: EngineOpt = None,
    index: IndexOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a rule to an index (or replace the rule of the same id)."""
    settings = settings_for(engine)
    name = index or settings.index
    with open_engine(settings) as eng:
        rules = _add(eng, name, file, rule_id, query, match.value, filters, pins, hide, boosts)
    _show(rules, as_json, name)


def _add(
    eng: Any,
    name: str,
    file: Path | None,
    rule_id: str | None,
    query: str | None,
    match: str,
    filters: list[str] | None,
    pins: list[str] | None,
    hide: list[str] | None,
    boosts: list[str] | None,
) -> Any:
    from pydantic import ValidationError

    from modalfuse.errors import ConfigError, InvalidInput
    from modalfuse.query.filter_syntax import parse_filter
    from modalfuse.query.ranking import store
    from modalfuse.query.ranking.rules import Rule
    from modalfuse.query.ranking.syntax import parse_pin
    from modalfuse.query.request import first_error

    if file is not None:
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read rule file {file}: {e}") from e
    else:
        schema = eng.schema_of(name).schema
        raw = {"id": rule_id, "query": query, "match": match}
        raw["filters"] = [
            parse_filter(f, schema, where="--filter").model_dump(mode="json") for f in filters or []
        ]
        raw["pin"] = [parse_pin(p).model_dump() for p in pins or []]
        raw["hide"] = list(hide or [])
        raw["boost"] = []
        for b in boosts or []:
            flt, _, weight = b.rpartition(":")
            parsed = parse_filter(flt, schema, where="--boost").model_dump(mode="json")
            raw["boost"].append({"filter": parsed, "weight": weight})
    try:
        rule = Rule.model_validate(raw)
    except ValidationError as e:
        field, message = first_error(e)
        raise InvalidInput(message, field=field) from e
    return store.add_rule(eng, name, rule)


@rules_app.command("list")
def list_rules(engine: EngineOpt = None, index: IndexOpt = None, as_json: JsonFlag = False) -> None:
    """The index's rules."""
    from modalfuse.query.ranking import store

    settings = settings_for(engine)
    name = index or settings.index
    with open_engine(settings) as eng:
        _show(store.rules_of(eng, name), as_json, name)


@rules_app.command("remove")
def remove(
    rule_id: Annotated[str, typer.Option("--id", help="The rule to remove.")],
    engine: EngineOpt = None,
    index: IndexOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove a rule from an index."""
    from modalfuse.query.ranking import store

    settings = settings_for(engine)
    name = index or settings.index
    with open_engine(settings) as eng:
        _show(store.remove_rule(eng, name, rule_id), as_json, name)
