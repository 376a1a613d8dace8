"""Ranking parameters checked against the index's schema: each problem names its field."""

from __future__ import annotations

from collections.abc import Sequence

from modalfuse.engines.filters import check_filters
from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import DateField, KeywordField, ResolvedSchema
from modalfuse.query.ranking.models import Boost, Collapse, DecayBoost, Diversify, FilterBoost
from modalfuse.query.ranking.rules import Rule


def _keyword(schema: ResolvedSchema, name: str, where: str, what: str) -> KeywordField:
    fields = {f.name: f for f in schema.schema.of_type(KeywordField)}
    spec = fields.get(name)
    if spec is None:
        known = ", ".join(sorted(fields)) or "none"
        raise InvalidInput(
            f"{name!r} is not a keyword field to {what} (keyword: {known})", field=where
        )
    return spec


def check_boosts(schema: ResolvedSchema, boosts: Sequence[Boost], where: str = "boosts") -> None:
    signals = schema.schema.signals
    for i, boost in enumerate(boosts):
        at = f"{where}[{i}]"
        if isinstance(boost, FilterBoost):
            try:
                check_filters(schema.schema, [boost.filter])
            except InvalidInput as e:
                raise InvalidInput(e.reason, field=f"{at}.filter.field") from e
            continue
        spec = signals.get(boost.field)
        if spec is None:
            known = ", ".join(sorted(signals)) or "none"
            raise InvalidInput(
                f"{boost.field!r} is not a signal field of {schema.name!r} (signals: {known}); "
                "declare it `signal: true` in the schema",
                field=f"{at}.field",
            )
        is_date = isinstance(spec, DateField)
        if isinstance(boost, DecayBoost):
            if boost.is_date() != is_date:
                want = "an ISO date or 'now'" if is_date else "a number"
                raise InvalidInput(
                    f"decay on {boost.field!r} needs {want} as origin", field=f"{at}.origin"
                )
            for name in ("scale", "offset"):
                value = getattr(boost, name)
                if isinstance(value, str) != is_date and not (name == "offset" and value == 0):
                    want = "a duration such as 7d" if is_date else "a number"
                    raise InvalidInput(
                        f"decay on {boost.field!r} needs {want} as {name}", field=f"{at}.{name}"
                    )
        elif is_date:
            raise InvalidInput(
                f"{boost.field!r} is a date: boost it with a decay, not a field modifier",
                field=f"{at}.type",
            )


def check_collapse(schema: ResolvedSchema, spec: Collapse) -> None:
    field = _keyword(schema, spec.field, "collapse.field", "collapse by")
    if field.multi:
        raise InvalidInput(
            f"{spec.field!r} holds several values per document; collapse needs one",
            field="collapse.field",
        )


def check_diversify(schema: ResolvedSchema, spec: Diversify) -> bool:
    """Whether similarity is over a vector (else a keyword field)."""
    if spec.on in schema.vectors:
        return True
    if spec.on not in {f.name for f in schema.schema.of_type(KeywordField)}:
        known = ", ".join(
            sorted(schema.vectors) + sorted(f.name for f in schema.schema.of_type(KeywordField))
        )
        raise InvalidInput(
            f"{spec.on!r} is neither a vector nor a keyword field (choose from: {known})",
            field="diversify.on",
        )
    return False


def check_ranking(
    schema: ResolvedSchema,
    boosts: Sequence[Boost],
    collapse: Collapse | None,
    diversify: Diversify | None,
    facets: Sequence[str] = (),
) -> bool:
    """Every ranking parameter of a request or an index default against the schema; returns
    whether diversity is over a vector."""
    check_boosts(schema, boosts)
    if collapse is not None:
        check_collapse(schema, collapse)
    on_vector = check_diversify(schema, diversify) if diversify is not None else False
    check_facets(schema, facets)
    return on_vector


def check_facets(schema: ResolvedSchema, facets: Sequence[str]) -> None:
    for i, name in enumerate(facets):
        _keyword(schema, name, f"facets[{i}]", "count")


def check_rule(schema: ResolvedSchema, rule: Rule) -> None:
    where = [(f"filters.{i}.field", f) for i, f in enumerate(rule.filters)]
    where += [(f"boost[{i}].filter.field", b.filter) for i, b in enumerate(rule.boost)]
    for at, flt in where:
        try:
            check_filters(schema.schema, [flt])
        except InvalidInput as e:
            raise InvalidInput(e.reason, field=at) from e
