"""Ranking metrics as pure functions over ranked ids and graded judgments."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """nDCG@k with exponential gain 2^grade - 1 (BEIR / trec_eval's convention).

    Documents judged 0 or below, and unjudged ones, gain nothing. A query without any positive
    judgment scores 0 (callers usually drop such queries before averaging).
    """
    gains = [2 ** max(relevant.get(doc, 0), 0) - 1 for doc in ranked[:k]]
    ideal = sorted((2**g - 1 for g in relevant.values() if g > 0), reverse=True)[:k]
    best = dcg(ideal)
    return dcg(gains) / best if best > 0 else 0.0
