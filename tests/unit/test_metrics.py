import math

import pytest

from modalfuse.evaluation.metrics import ndcg_at_k


def test_perfect_ranking_is_one() -> None:
    assert ndcg_at_k(["a", "b", "x"], {"a": 2, "b": 1}) == pytest.approx(1.0)


def test_hand_computed_graded_case() -> None:
    # ranked: x (0), b (1), a (2); ideal: a, b
    dcg = (2**1 - 1) / math.log2(3) + (2**2 - 1) / math.log2(4)
    idcg = (2**2 - 1) / math.log2(2) + (2**1 - 1) / math.log2(3)
    assert ndcg_at_k(["x", "b", "a"], {"a": 2, "b": 1}) == pytest.approx(dcg / idcg)


def test_cutoff_and_no_positives() -> None:
    assert ndcg_at_k(["x", "a"], {"a": 1}, k=1) == 0.0
    assert ndcg_at_k(["a"], {"a": 0}) == 0.0
    assert ndcg_at_k(["n", "a"], {"a": 1, "n": -1}) == pytest.approx(1 / math.log2(3))


def test_recall_and_mrr_hand_computed() -> None:
    from modalfuse.evaluation.metrics import evaluate_query, mrr_at_k, recall_at_k

    relevant = {"a": 1, "b": 2, "c": 1, "z": 0}
    ranked = ["x", "b", "y", "a"]
    assert recall_at_k(ranked, relevant, k=2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, k=4) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, relevant, k=10) == pytest.approx(1 / 2)
    assert mrr_at_k(ranked, relevant, k=1) == 0.0
    assert recall_at_k(ranked, {"z": 0}) == 0.0
    figures = evaluate_query(ranked, relevant, k=2, deep=4)
    assert set(figures) == {"ndcg@2", "recall@2", "recall@4", "mrr@2", "success@2"}
    assert figures["success@2"] == 1.0 and evaluate_query(ranked, relevant, k=1)["success@1"] == 0
    # ndcg@2: only b (grade 2) at rank 2; ideal b then a
    ideal = 3 / math.log2(2) + 1 / math.log2(3)
    assert figures["ndcg@2"] == pytest.approx((3 / math.log2(3)) / ideal)


def test_mean_figures_is_the_macro_average() -> None:
    from modalfuse.evaluation.metrics import mean_figures

    assert mean_figures([{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 0.5}]) == {"a": 0.5, "b": 0.25}
    assert mean_figures([]) == {}
