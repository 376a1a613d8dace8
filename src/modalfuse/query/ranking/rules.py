"""Merchandising rules, stored with an index (`modalfuse rules`, `/rules`): when a query matches
(exactly, or as a phrase, after normalisation) and the request carries the rule's filters, the
rule pins ids at positions, hides ids, and boosts or buries hits matching a filter.

Normalisation: Unicode NFKC (full-width forms to their plain ones), case folded, every run of
characters that are neither letters nor digits made one space. A phrase matches on word
boundaries; a phrase with CJK characters matches anywhere in the query, since CJK text has no
spaces between words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from pydantic import Field, ValidationInfo, field_validator, model_validator

from modalfuse.engines.filters import Filter
from modalfuse.query.ranking.models import BoostWeight, FilterBoost, _Model, check_weights_bound

MAX_RULES = 1000
_SEP = re.compile(r"[\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
RULE_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"


def normalise(text: str) -> str:
    return _SEP.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


class Pin(_Model):
    id: str = Field(min_length=1, max_length=512)
    position: int = Field(ge=1, le=1000, description="1-based position in the ranked list.")


class RuleBoost(_Model):
    filter: Filter
    weight: BoostWeight = Field(description="Above 0 boosts, below 0 buries.")


class Rule(_Model):
    id: str = Field(pattern=RULE_ID)
    query: str = Field(min_length=1, max_length=500)
    match: str = Field(default="exact", pattern="^(exact|phrase)$")
    filters: list[Filter] = Field(
        default_factory=list,
        max_length=16,
        description="The rule fires only when the request carries each of these filters.",
    )
    pin: list[Pin] = Field(default_factory=list, max_length=100)
    hide: list[str] = Field(default_factory=list, max_length=1000)
    # Validated even when left out: the check that the rule does something sits on it.
    boost: list[RuleBoost] = Field(default_factory=list, max_length=16, validate_default=True)

    @field_validator("query")
    @classmethod
    def _query(cls, query: str) -> str:
        if not normalise(query):
            raise ValueError("nothing is left of it after normalisation")
        return query

    @field_validator("pin")
    @classmethod
    def _pins(cls, pins: list[Pin]) -> list[Pin]:
        positions = [p.position for p in pins]
        if len(set(positions)) != len(positions):
            raise ValueError("two ids at one position")
        if len({p.id for p in pins}) != len(pins):
            raise ValueError("an id pinned twice")
        return pins

    @field_validator("boost")
    @classmethod
    def _action(cls, boost: list[RuleBoost], info: ValidationInfo) -> list[RuleBoost]:
        if not (boost or info.data.get("pin") or info.data.get("hide")):
            raise ValueError("a rule needs an action: pin, hide or boost")
        check_weights_bound(list(boost), "boost")
        return boost

    def fires(self, query: str, filters: Sequence[Filter]) -> bool:
        want, got = normalise(self.query), normalise(query)
        if not got:
            return False
        if self.match == "exact":
            hit = want == got
        elif _CJK.search(want):
            hit = want in got
        else:
            hit = f" {want} " in f" {got} "
        return hit and all(f in filters for f in self.filters)

    def boosts(self) -> list[FilterBoost]:
        return [FilterBoost(filter=b.filter, weight=b.weight) for b in self.boost]


class RuleSet(_Model):
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("two rules with one id")
        return self

    def fired(self, query: str, filters: Sequence[Filter]) -> list[Rule]:
        return [r for r in self.rules if r.fires(query, filters)]

    def with_rule(self, rule: Rule) -> RuleSet:
        """This set with `rule` added, or replacing the rule of its id."""
        kept = [r for r in self.rules if r.id != rule.id]
        return RuleSet(rules=[*kept, rule])

    def without(self, rule_id: str) -> RuleSet:
        return RuleSet(rules=[r for r in self.rules if r.id != rule_id])
