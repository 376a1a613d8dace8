import math

import pytest

from modalfuse.query.metrics import ndcg_at_k


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
