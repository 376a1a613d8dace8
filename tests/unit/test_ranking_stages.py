"""The stages after fusion, each a pure function, checked with exact values."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from modalfuse.engines.filters import Exists, Range, Term, Terms, matches
from modalfuse.query.fusion import Fused
from modalfuse.query.ranking import stages
from modalfuse.query.ranking.models import (
    Collapse,
    DecayBoost,
    Diversify,
    FieldBoost,
    FilterBoost,
    RankingConfig,
)
from modalfuse.query.ranking.plan import RankingPlan, run
from modalfuse.query.ranking.rules import Rule, RuleSet, normalise
from modalfuse.query.ranking.signals import decayed, factors, modified


def cands(*rows: tuple[str, float, dict[str, Any]]) -> list[stages.Candidate]:
    fused = [Fused(id=i, score=s, contributions={}) for i, s, _ in rows]
    return stages.candidates(fused, {i: f for i, _, f in rows})


def rule(**raw: Any) -> Rule:
    return Rule.model_validate(raw)


def ids(items: list[stages.Candidate]) -> list[str]:
    return [c.id for c in items]


def test_modifiers_follow_their_formulas_and_stay_in_0_1() -> None:
    assert modified("log1p", 9, 1.0) == 1.0  # log10(1 + 9)
    assert modified("log1p", 0, 1.0) == 0.0
    assert modified("sqrt", 0.25, 1.0) == 0.5
    assert modified("none", 3, 0.1) == pytest.approx(0.3)
    assert modified("none", 30, 1.0) == 1.0  # capped
    assert modified("sqrt", -4, 1.0) == 0.0  # below 0 counts 0


@pytest.mark.parametrize("function", ["gauss", "exp", "linear"])
def test_decays_are_one_inside_the_offset_and_decay_at_offset_plus_scale(function: str) -> None:
    assert decayed(function, 0.5, scale=2.0, offset=1.0, decay=0.5) == 1.0
    assert decayed(function, -3.0, scale=2.0, offset=1.0, decay=0.5) == pytest.approx(0.5)
    assert decayed(function, 3.0, scale=2.0, offset=1.0, decay=0.25) == pytest.approx(0.25)


def test_decay_values_between() -> None:
    # Elasticsearch's definitions at distance 1, scale 2, decay 0.5.
    assert decayed("gauss", 1, scale=2, offset=0, decay=0.5) == pytest.approx(0.5**0.25)
    assert decayed("exp", 1, scale=2, offset=0, decay=0.5) == pytest.approx(0.5**0.5)
    assert decayed("linear", 1, scale=2, offset=0, decay=0.5) == pytest.approx(0.75)
    assert decayed("linear", 10, scale=2, offset=0, decay=0.5) == 0.0


def test_factors_per_boost_kind() -> None:
    rows: list[dict[str, Any]] = [{"pop": 10}, {"pop": 20}, {"pop": 30}, {}]
    linear = FieldBoost(field="pop", modifier="linear", missing=20, weight=0.5)
    assert factors(linear, rows) == [(10, 0.0), (20, 0.5), (30, 1.0), (None, 0.5)]
    brand = FilterBoost(filter=Term(field="brand", value="Nike"), weight=0.2)
    assert [f for _, f in factors(brand, [{"brand": "Nike"}, {"brand": "Puma"}, {}])] == [1, 0, 0]
    recency = DecayBoost(
        field="released", function="exp", origin="now", scale="10d", decay=0.5, weight=0.3
    )
    now = datetime(2026, 12, 1, tzinfo=UTC)
    got = factors(
        recency,
        [{"released": "2026-11-21T00:00:00+00:00"}, {"released": datetime(2026, 12, 1)}, {}],
        now=now,
    )
    assert [f for _, f in got] == [pytest.approx(0.5), 1.0, 0.0]


def test_filters_match_stored_fields_as_the_engines_do() -> None:
    doc = {"brand": "Nike", "tags": ["a", "b"], "price": 20.0, "when": "2026-01-02T00:00:00+00:00"}
    assert matches(Term(field="tags", value="b"), doc)
    assert matches(Terms(field="brand", values=["Puma", "Nike"]), doc)
    assert matches(Range(field="price", gte=20, lt=21), doc)
    assert not matches(Range(field="price", gt=20), doc)
    assert matches(Range(field="when", gte=datetime(2026, 1, 1, tzinfo=UTC)), doc)
    assert not matches(Exists(field="colour"), doc)
    assert matches(Exists(field="colour", negate=True), doc)
    assert matches(Term(field="colour", value="red", negate=True), doc)


def test_rank_multiplies_relevance_by_the_boosts() -> None:
    items = cands(("a", 1.0, {"pop": 0}), ("b", 0.8, {"pop": 10}), ("c", 0.5, {"pop": 2}))
    boost = FieldBoost(field="pop", factor=0.1, weight=0.5)
    ranked = stages.rank(items, [boost])
    assert ids(ranked) == ["b", "a", "c"]
    assert [c.multiplier for c in ranked] == [1.5, 1.0, pytest.approx(1.1)]
    assert [c.score for c in ranked] == [pytest.approx(1.2), 1.0, pytest.approx(0.55)]
    assert ranked[0].positions == {"fuse": 2, "rank": 1}


def test_the_multiplier_is_clamped_to_0_2() -> None:
    items = cands(("a", 1.0, {"brand": "X"}), ("b", 0.9, {"brand": "Y"}))
    up = FilterBoost(filter=Term(field="brand", value="Y"), weight=1.0)
    fired = rule(
        id="more",
        query="q",
        boost=[{"filter": {"op": "term", "field": "brand", "value": "Y"}, "weight": 1.0}],
    )
    down = rule(
        id="bury",
        query="q",
        boost=[{"filter": {"op": "term", "field": "brand", "value": "X"}, "weight": -1.0}],
    )
    ranked = stages.rank(items, [up], [fired, down])
    assert [(c.id, c.multiplier, c.score) for c in ranked] == [("b", 2.0, 1.8), ("a", 0.0, 0.0)]
    assert [p.rule for p in ranked[0].boosts] == [None, "more", "bury"]


def test_pins_hides_and_pins_from_outside() -> None:
    items = cands(("a", 1.0, {}), ("b", 0.8, {}), ("c", 0.5, {}), ("d", 0.4, {}))
    fired = rule(
        id="r", query="q", pin=[{"id": "c", "position": 1}, {"id": "z", "position": 3}], hide=["a"]
    )
    outside = stages.Candidate(id="z", relevance=0.0, score=0.0, fields={})
    ranked = stages.rank(items, [], [fired], pinned_extra={"z": outside})
    assert ids(ranked) == ["c", "b", "z", "d"]
    assert [c.pinned for c in ranked] == [1, None, 3, None]
    assert ranked[0].rule == "r"


def test_a_pin_beyond_the_end_goes_last() -> None:
    items = cands(("a", 1.0, {}), ("b", 0.8, {}))
    fired = rule(id="r", query="q", pin=[{"id": "a", "position": 9}])
    assert ids(stages.rank(items, [], [fired])) == ["b", "a"]


def test_collapse_keeps_the_best_of_each_group_with_its_variants() -> None:
    items = cands(
        ("a", 1.0, {"style": "s1"}),
        ("b", 0.9, {"style": "s2"}),
        ("c", 0.8, {"style": "s1"}),
        ("d", 0.7, {}),
        ("e", 0.6, {"style": "s1"}),
    )
    out = stages.collapse(stages.rank(items, []), Collapse(field="style", inner=1))
    assert ids(out) == ["a", "b", "d"]
    assert [ids(c.variants) for c in out] == [["c"], [], []]
    assert [c.group_size for c in out] == [3, 1, 1]
    assert [c.group for c in out] == ["s1", "s2", None]
    assert [c.positions["collapse"] for c in out] == [1, 2, 3]


def test_a_pinned_member_heads_its_group_at_its_position() -> None:
    items = cands(
        ("a", 1.0, {"style": "s1"}), ("b", 0.9, {"style": "s2"}), ("c", 0.8, {"style": "s1"})
    )
    fired = rule(id="r", query="q", pin=[{"id": "c", "position": 2}])
    out = stages.collapse(stages.rank(items, [], [fired]), Collapse(field="style", inner=2))
    assert ids(out) == ["b", "c"]
    assert ids(out[1].variants) == ["a"] and out[1].pinned == 2


def test_mmr_over_a_keyword_field() -> None:
    items = cands(
        ("a", 1.0, {"colour": "red"}), ("b", 0.9, {"colour": "red"}), ("c", 0.5, {"colour": "blue"})
    )
    # rel = [1, 0.8, 0]; after a: b gains 0.5*0.8 - 0.5*1 = -0.1, c gains 0.
    out = stages.diversify(
        items, Diversify.model_validate({"lambda": 0.5, "on": "colour"}), vector=False
    )
    assert ids(out) == ["a", "c", "b"]
    assert [c.mmr_penalty for c in out] == [0.0, 0.0, 1.0]
    keep = stages.diversify(
        cands(("a", 1.0, {"colour": "red"}), ("b", 0.9, {"colour": "red"})),
        Diversify.model_validate({"lambda": 1.0, "on": "colour"}),
        vector=False,
    )
    assert ids(keep) == ["a", "b"]


def test_mmr_over_vectors_within_its_depth() -> None:
    items = cands(
        ("a", 1.0, {"v": [1.0, 0.0]}),
        ("b", 0.9, {"v": [0.99, 0.141]}),
        ("c", 0.8, {"v": [0.0, 1.0]}),
        ("d", 0.1, {"v": [1.0, 0.0]}),
    )
    out = stages.diversify(
        items, Diversify.model_validate({"lambda": 0.5, "on": "v", "depth": 3}), vector=True
    )
    assert ids(out) == ["a", "c", "b", "d"]  # d is beyond the depth: it keeps its place
    assert out[2].mmr_penalty == pytest.approx(0.99 / math.hypot(0.99, 0.141))
    assert out[3].mmr_penalty is None


def test_mmr_keeps_pins_in_place() -> None:
    items = cands(("a", 1.0, {"k": "x"}), ("b", 0.9, {"k": "x"}), ("c", 0.5, {"k": "y"}))
    ranked = stages.rank(items, [], [rule(id="r", query="q", pin=[{"id": "b", "position": 2}])])
    out = stages.diversify(
        ranked, Diversify.model_validate({"lambda": 0.0, "on": "k"}), vector=False
    )
    assert ids(out) == ["a", "b", "c"] and out[1].pinned == 2


def test_facets_count_hits_or_groups() -> None:
    rows = [
        ("a", 1.0, {"style": "s1", "colour": "red"}),
        ("b", 0.9, {"style": "s1", "colour": "blue"}),
        ("c", 0.8, {"style": "s2", "colour": "red"}),
    ]
    fused = [Fused(id=i, score=s, contributions={}) for i, s, _ in rows]
    fields = {i: f for i, _, f in rows}
    plan = RankingPlan(collapse=Collapse(field="style"), facets=("colour",))
    assert run(plan, fused, fields, from_=0, size=10).facets == {"colour": [("red", 2)]}
    before = RankingPlan(
        collapse=Collapse(field="style"), facets=("colour",), facets_after_collapse=False
    )
    got = run(before, fused, fields, from_=0, size=10)
    assert got.facets == {"colour": [("red", 2), ("blue", 1)]} and got.total == 2


def test_plan_names_the_fields_the_stages_read() -> None:
    plan = RankingPlan(
        boosts=(FieldBoost(field="year", weight=0.1),),
        rules=(
            rule(
                id="r",
                query="q",
                boost=[{"filter": {"op": "term", "field": "brand", "value": "X"}, "weight": 0.1}],
            ),
        ),
        collapse=Collapse(field="style"),
        diversify=Diversify.model_validate({"lambda": 0.5, "on": "image_vector"}),
        facets=("colour", "style"),
    )
    assert plan.fields() == ("year", "brand", "style", "image_vector", "colour")
    # A diversity vector is loaded for the top `depth` only, not carried by every hit.
    on_vector = dataclasses.replace(plan, diversify_on_vector=True)
    assert on_vector.fields() == ("year", "brand", "style", "colour")
    loaded: list[list[str]] = []

    def load(wanted: list[str]) -> dict[str, dict[str, Any]]:
        loaded.append(wanted)
        return {i: {"image_vector": [1.0, 0.0] if i == "a" else [0.0, 1.0]} for i in wanted}

    fused = [
        Fused(id=i, score=s, contributions={}) for i, s in [("a", 1.0), ("b", 0.9), ("c", 0.8)]
    ]
    lean = RankingPlan(
        diversify=Diversify.model_validate({"lambda": 0.5, "on": "image_vector", "depth": 2}),
        diversify_on_vector=True,
    )
    got = run(lean, fused, {}, from_=0, size=3, load=load)
    assert loaded == [["a", "b"]] and [c.id for c in got.hits] == ["a", "b", "c"]
    assert got.hits[1].mmr_penalty == 0.0
    assert plan.stages == ["rank", "collapse", "diversify"]


def test_rules_normalise_and_fire() -> None:
    assert normalise("\uff21\uff28\uff23  Gold-Cream!") == "ahc gold cream"  # full-width AHC
    exact = rule(id="e", query="Red Dress", hide=["1"])
    assert exact.fires("red  DRESS", []) and not exact.fires("red dress long", [])
    phrase = rule(id="p", query="red dress", match="phrase", hide=["1"])
    assert phrase.fires("long red dress!", []) and not phrase.fires("tired dress", [])
    cjk = rule(id="c", query="面霜", match="phrase", hide=["1"])
    assert cjk.fires("AHC 黄金面霜", [])
    scoped = rule(id="s", query="dress", hide=["1"], filters=[Term(field="gender", value="Women")])
    assert not scoped.fires("dress", [])
    assert scoped.fires("dress", [Term(field="gender", value="Women"), Exists(field="colour")])
    rules = RuleSet(rules=[exact, phrase])
    assert [r.id for r in rules.fired("red dress", [])] == ["e", "p"]
    assert [r.id for r in rules.without("e").with_rule(cjk).rules] == ["p", "c"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"id": "r", "query": "q"}, "a rule needs an action"),
        ({"id": "R!", "query": "q", "hide": ["1"]}, "pattern"),
        ({"id": "r", "query": "!!", "hide": ["1"]}, "nothing is left"),
        (
            {
                "id": "r",
                "query": "q",
                "pin": [{"id": "1", "position": 1}, {"id": "2", "position": 1}],
            },
            "two ids at one",
        ),
    ],
)
def test_bad_rules_are_refused(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Rule.model_validate(bad)


def test_bad_ranking_parameters_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"positive weights add up to 1\.2"):
        RankingConfig(boosts=[FieldBoost(field="a", weight=0.6), FieldBoost(field="b", weight=0.6)])
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        Diversify.model_validate({"lambda": 1.5, "on": "v"})
    with pytest.raises(ValidationError, match="less than or equal to 10"):
        Collapse(field="style", inner=11)
    with pytest.raises(ValidationError, match="not a duration"):
        DecayBoost(field="d", origin="now", scale="soon", weight=0.1)
    with pytest.raises(ValidationError, match="less than 1"):
        DecayBoost(field="d", origin=0, scale=1, decay=1, weight=0.1)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0.001, 1.0), min_size=2, max_size=30),
    st.lists(st.floats(0.0, 100.0), min_size=30, max_size=30),
    st.floats(0.0, 1.0),
)
def test_relevance_stays_in_charge(
    relevance: list[float], signal: list[float], weight: float
) -> None:
    """Positive boosts at most double a score: a hit never passes one whose relevance is more
    than twice its own."""
    items = cands(*((str(i), r, {"pop": signal[i]}) for i, r in enumerate(relevance)))
    ranked = stages.rank(items, [FieldBoost(field="pop", modifier="log1p", weight=weight)])
    for i, later in enumerate(ranked):
        for earlier in ranked[:i]:
            assert not later.relevance > 2 * earlier.relevance
    for c in ranked:  # every final score is its explain's product
        expected = c.relevance * min(2.0, 1 + math.fsum(p.term for p in c.boosts))
        assert c.score == pytest.approx(expected, rel=1e-12, abs=1e-15)
