"""An index's merchandising rules and default ranking, kept with the index itself: what
`modalfuse rules`, `modalfuse index set-ranking` and the HTTP API's `/rules` call."""

from __future__ import annotations

from modalfuse.engines.base import Catalogue
from modalfuse.errors import RuleNotFound
from modalfuse.query.hits import parse_stored
from modalfuse.query.ranking.check import check_ranking, check_rule
from modalfuse.query.ranking.models import RankingConfig
from modalfuse.query.ranking.rules import Rule, RuleSet


def rules_of(engine: Catalogue, index: str) -> RuleSet:
    raw = engine.stored_settings(index, "rules")
    return parse_stored(RuleSet, raw, index, "rules") if raw else RuleSet()


def add_rule(engine: Catalogue, index: str, rule: Rule) -> RuleSet:
    """Store `rule` with the index (replacing the rule of its id), checked against the index's
    schema first; returns the index's rules."""
    check_rule(engine.schema_of(index), rule)
    rules = rules_of(engine, index).with_rule(rule)
    engine.store_settings(index, "rules", rules.model_dump(mode="json"))
    return rules


def remove_rule(engine: Catalogue, index: str, rule_id: str) -> RuleSet:
    rules = rules_of(engine, index)
    if rule_id not in {r.id for r in rules.rules}:
        known = ", ".join(r.id for r in rules.rules) or "none"
        raise RuleNotFound(f"no rule {rule_id!r} on {index!r} (rules: {known})", field="id")
    left = rules.without(rule_id)
    engine.store_settings(index, "rules", left.model_dump(mode="json") if left.rules else None)
    return left


def set_ranking(engine: Catalogue, index: str, config: RankingConfig | None) -> str:
    """Make `config` the index's default ranking (None clears it); returns the physical index."""
    if config is not None:
        check_ranking(engine.schema_of(index), config.boosts, config.collapse, config.diversify)
    body = config.model_dump(mode="json", by_alias=True, exclude_none=True) if config else None
    return engine.store_settings(index, "ranking", body)
