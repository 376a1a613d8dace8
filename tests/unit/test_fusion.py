"""Fusion as pure functions: hand-computed cases and properties on random rankings."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modalfuse.engines.base import Hit
from modalfuse.query import fusion
from modalfuse.query.fusion import fuse, min_max, normalized, page, rrf, z_score


def hits(*ids: str, scores: list[float] | None = None) -> list[Hit]:
    scores = scores or [float(len(ids) - i) for i in range(len(ids))]
    return [Hit(id=i, score=s) for i, s in zip(ids, scores, strict=True)]


def test_rrf_by_hand() -> None:
    fused = rrf({"lexical": hits("a", "b", "c"), "vector": hits("c", "a")}, rank_constant=60)
    by_id = {f.id: f for f in fused}
    assert by_id["a"].score == pytest.approx(1 / 61 + 1 / 62)
    assert by_id["c"].score == pytest.approx(1 / 63 + 1 / 61)
    assert by_id["b"].score == pytest.approx(1 / 62)  # missing from "vector": contributes 0
    assert [f.id for f in fused] == ["a", "c", "b"]
    assert set(by_id["b"].contributions) == {"lexical"}
    c = by_id["c"].contributions["vector"]
    assert (c.rank, c.raw_score) == (1, 2.0) and c.contribution == pytest.approx(1 / 61)


def test_rrf_weights_window_and_ties() -> None:
    weighted = rrf({"l": hits("a", "b"), "v": hits("b", "a")}, weights={"v": 2.0})
    assert [f.id for f in weighted] == ["b", "a"]
    assert weighted[0].score == pytest.approx(2 / 61 + 1 / 62)
    windowed = rrf({"l": hits("a", "b", "c")}, window=2)
    assert [f.id for f in windowed] == ["a", "b"]
    # Equal scores: the better single rank wins, then the id.
    tie = rrf({"l": hits("x", "y"), "v": hits("y", "x")})
    assert tie[0].score == tie[1].score and [f.id for f in tie] == ["x", "y"]
    with pytest.raises(ValueError, match="weights must be finite"):
        rrf({"l": hits("a")}, weights={"l": -1})


def test_min_max_and_z_score_by_hand() -> None:
    assert min_max([4.0, 3.0, 2.0]) == [1.0, 0.5, 0.001]
    assert min_max([5.0]) == [1.0] and min_max([2.0, 2.0]) == [1.0, 1.0]
    mean, std = 3.0, math.sqrt(2 / 3)
    assert z_score([4.0, 3.0, 2.0]) == pytest.approx([(4 - mean) / std, 0.0, (2 - mean) / std])
    assert z_score([7.0, 7.0]) == [1.0, 1.0]


def test_normalized_fusion_is_a_weighted_mean_over_all_lists() -> None:
    lists = {"l": hits("a", "b", scores=[10.0, 5.0]), "v": hits("b", "c", scores=[0.9, 0.3])}
    fused = {f.id: f for f in normalized(lists, technique="min_max", weights={"l": 1.0, "v": 3.0})}
    # a: only in l (1.0); b: l 0.001, v 1.0; c: only in v (0.001). Absent counts 0.
    assert fused["a"].score == pytest.approx(1.0 / 4)
    assert fused["b"].score == pytest.approx((1 * 0.001 + 3 * 1.0) / 4)
    assert fused["c"].score == pytest.approx(3 * 0.001 / 4)
    parts = fused["b"].contributions
    assert sum(p.contribution for p in parts.values()) == pytest.approx(fused["b"].score)
    assert parts["v"].normalized == 1.0 and parts["l"].raw_score == 5.0


ids = st.sampled_from([f"d{i}" for i in range(30)])
ranking = st.lists(ids, min_size=0, max_size=15, unique=True)
rankings = st.dictionaries(
    st.sampled_from(["lexical", "text_vector", "image"]), ranking, min_size=1
)


def as_lists(r: dict[str, list[str]]) -> dict[str, list[Hit]]:
    return {name: hits(*order) if order else [] for name, order in r.items()}


def opensearch_rrf(r: dict[str, list[str]], k: int) -> dict[str, float]:
    """The score-ranker-processor's formula, written directly: sum over lists of 1 / (k + rank)."""
    scores: dict[str, float] = defaultdict(float)
    for order in r.values():
        for rank, doc in enumerate(order, start=1):
            scores[doc] += 1.0 / (k + rank)
    return dict(scores)


@settings(max_examples=200)
@given(r=rankings, k=st.integers(min_value=1, max_value=100))
def test_rrf_equals_the_opensearch_formula(r: dict[str, list[str]], k: int) -> None:
    fused = rrf(as_lists(r), rank_constant=k, window=100)
    expected = opensearch_rrf(r, k)
    assert {f.id: f.score for f in fused} == pytest.approx(expected, rel=1e-12)
    assert [f.score for f in fused] == sorted((f.score for f in fused), reverse=True)


@settings(max_examples=200)
@given(r=rankings, method=st.sampled_from(["auto", "rrf", "minmax", "zscore"]))
def test_fusion_ignores_the_order_of_the_lists(r: dict[str, list[str]], method: str) -> None:
    forward = fuse(as_lists(r), method=method)  # type: ignore[arg-type]
    backward = fuse(dict(reversed(list(as_lists(r).items()))), method=method)  # type: ignore[arg-type]
    assert [f.id for f in forward] == [f.id for f in backward]
    assert [f.score for f in forward] == pytest.approx([f.score for f in backward])


@settings(max_examples=200)
@given(r=rankings, data=st.data())
def test_rrf_is_monotonic_in_rank(r: dict[str, list[str]], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(r)))
    order = r[name]
    if len(order) < 2:
        return
    i = data.draw(st.integers(min_value=1, max_value=len(order) - 1))
    moved = order[i]
    better = dict(r)
    better[name] = [*order[: i - 1], moved, order[i - 1], *order[i + 1 :]]
    before = {f.id: f.score for f in rrf(as_lists(r))}[moved]
    after = {f.id: f.score for f in rrf(as_lists(better))}[moved]
    assert after > before


@settings(max_examples=100)
@given(r=rankings, size=st.integers(min_value=1, max_value=7))
def test_pages_never_overlap_or_reorder(r: dict[str, list[str]], size: int) -> None:
    window = 45
    fused = fuse(as_lists(r), window=window)
    seen: list[str] = []
    for start in range(0, window - size + 1, size):
        seen += [f.id for f in page(fused, from_=start, size=size, window=window)]
    assert len(seen) == len(set(seen))
    assert seen == [f.id for f in fused][: len(seen)]
    with pytest.raises(ValueError, match="beyond the window"):
        page(fused, from_=window - size + 1, size=size, window=window)


def test_auto_gives_each_query_embedding_one_vote() -> None:
    """lexical is one vote; text_vector and text_to_image share the text embedding: one vote,
    in which a document counts with the better of its two normalised scores."""
    lists = {
        "lexical": hits("a", "b", "c", scores=[9.0, 5.0, 1.0]),
        "text_vector": hits("b", "c", scores=[0.9, 0.5]),
        "text_to_image": hits("c", "d", scores=[0.8, 0.2]),
    }
    groups = {"lexical": "lexical", "text_vector": "text", "text_to_image": "text"}
    # Corroboration off: the vote grouping alone (test_auto_corroborates_lexical has it on).
    fused = {f.id: f for f in fusion.auto(lists, groups=groups, corroborated=())}
    # lexical min-max: a 1, b 0.5, c 0.001; text_vector: b 1, c 0.001; text_to_image: c 1, d 0.001
    assert fused["a"].score == pytest.approx(0.5 * 1.0)
    assert fused["b"].score == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert fused["c"].score == pytest.approx(0.5 * 0.001 + 0.5 * 1.0)  # max(0.001, 1) in "text"
    assert fused["d"].score == pytest.approx(0.5 * 0.001)
    assert [f.id for f in fusion.auto(lists, groups=groups, corroborated=())] == [
        "b",
        "c",
        "a",
        "d",
    ]
    parts = fused["c"].contributions
    assert parts["text_vector"].contribution == 0.0  # outvoted inside its group
    assert parts["text_to_image"].contribution == pytest.approx(0.5)
    assert sum(p.contribution for p in parts.values()) == pytest.approx(fused["c"].score)
    # Without groups every retriever is its own vote: the same as equal-weight min-max.
    plain = [f.id for f in fusion.auto(lists, corroborated=())]
    assert plain == [f.id for f in normalized(lists, technique="min_max")]


def test_auto_votes_explain_themselves() -> None:
    votes = fusion.auto_votes(
        ["lexical", "text_vector", "text_to_image"],
        {"lexical": "lexical", "text_vector": "text", "text_to_image": "text"},
        {"lexical": 2.0},
    )
    assert {n: v.weight for n, v in votes.items()} == {
        "lexical": 1.0,
        "text_vector": 0.5,
        "text_to_image": 0.5,
    }
    assert "shares the text query embedding with text_to_image" in votes["text_vector"].why
    assert "weighted 2 by request" in votes["lexical"].why
    assert votes["lexical"].why.startswith("1 of 2 equal votes")


def test_auto_corroborates_lexical() -> None:
    """BM25's vote is min(1, 0.3 + the share of its top 10 the other votes' top 10 hold)."""
    lexical = hits(*"abcdefghij", scores=[10.0 - i for i in range(10)])
    vector = hits("a", "x", "y", "z", scores=[0.9, 0.8, 0.7, 0.6])
    image = hits("b", "w", scores=[0.5, 0.4])
    groups = {"lexical": "lexical", "text_vector": "text", "text_to_image": "text"}
    lists = {"lexical": lexical, "text_vector": vector, "text_to_image": image}
    assert fusion.corroboration(lists, "lexical", groups) == (2, 10)  # a and b
    # Mates in its own group never corroborate a retriever; with no other vote there is none.
    assert fusion.corroboration({"text_vector": vector}, "text_vector", groups) is None
    votes = fusion.auto_votes(list(lists), groups, None, lists)
    assert votes["lexical"].weight == pytest.approx(0.5 * 0.5)  # min(1, 0.3 + 2/10)
    assert votes["text_vector"].weight == votes["text_to_image"].weight == 0.5
    assert "2 of its top 10 are in the other votes' top 10" in votes["lexical"].why
    fused = {f.id: f for f in fusion.auto(lists, groups=groups)}
    # lexical min-max: a 1; vector: a 1, x 2/3 (0.9-0.8)/(0.9-0.6) from the top
    assert fused["a"].score == pytest.approx(0.25 * 1.0 + 0.5 * 1.0)
    assert fused["x"].score == pytest.approx(0.5 * (0.8 - 0.6) / (0.9 - 0.6))
    # b: lexical (9-1)/(10-1); image: b 1 (the better of the text vote's two views)
    assert fused["b"].score == pytest.approx(0.25 * 8 / 9 + 0.5 * 1.0)
    # Fully corroborated (7 of 10 or more), BM25 keeps its whole vote.
    agreeing = {"lexical": lexical, "text_vector": hits(*"abcdefg", scores=[1.0] * 7)}
    assert fusion.auto_votes(["lexical", "text_vector"], None, None, agreeing)[
        "lexical"
    ].weight == pytest.approx(0.5)


def test_corroboration_counts_ties_at_the_cut_whatever_order_the_engine_gave_them() -> None:
    """Which of several equal BM25 scores an engine lists 10th is its own business: the head
    holds every hit tied with the 10th, so two engines with the same scores vote alike."""
    scores = [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 0.5]
    one = hits(*"abcdefghijkl", scores=scores)
    other = hits(*"abcdefghkjil", scores=scores)  # the tied i, j, k in another order
    assert [h.id for h in fusion.head(one)] == list("abcdefghijk")
    vector = hits("k", "x", scores=[0.9, 0.8])
    for lexical in (one, other):
        lists = {"lexical": lexical, "text_vector": vector}
        assert fusion.corroboration(lists, "lexical", {}) == (1, 11)
        assert fusion.auto_votes(["lexical", "text_vector"], None, None, lists)[
            "lexical"
        ].weight == pytest.approx(0.5 * (0.3 + 1 / 11))
    assert fusion.head(hits("a", "b", scores=[1.0, 1.0]), depth=10) == hits(
        "a", "b", scores=[1.0, 1.0]
    )
