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


def _positives(relevant: Mapping[str, float]) -> set[str]:
    return {doc for doc, grade in relevant.items() if grade > 0}


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """Share of the positively judged documents found in the top k (0 when there are none)."""
    positives = _positives(relevant)
    if not positives:
        return 0.0
    return len(positives.intersection(ranked[:k])) / len(positives)


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """1 / rank of the first positively judged document within the top k, else 0."""
    positives = _positives(relevant)
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc in positives:
            return 1.0 / rank
    return 0.0


def success_at_k(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """1 when any positively judged document is in the top k (hit rate; with one relevant
    document per query it equals Recall@k)."""
    return 1.0 if _positives(relevant).intersection(ranked[:k]) else 0.0


def group_ndcg_at_k(
    ranked: Sequence[str],
    relevant: Mapping[str, float],
    group_of: Mapping[str, str],
    k: int = 10,
) -> float:
    """nDCG@k over groups (variant families): a group gains as its best judged member, once;
    a later hit of a group already shown takes its place in the top k and gains nothing. The
    ideal ranking shows each relevant group once. A document without a group is its own."""
    grade: dict[str, float] = {}
    for doc, g in relevant.items():
        key = group_of.get(doc, doc)
        grade[key] = max(grade.get(key, 0.0), g)
    seen: set[str] = set()
    gains = []
    for doc in ranked[:k]:
        key = group_of.get(doc, doc)
        gains.append(0.0 if key in seen else 2 ** max(grade.get(key, 0.0), 0) - 1)
        seen.add(key)
    ideal = sorted((2**g - 1 for g in grade.values() if g > 0), reverse=True)[:k]
    best = dcg(ideal)
    return dcg(gains) / best if best > 0 else 0.0


def distinct_at_k(ranked: Sequence[str], value_of: Mapping[str, str], k: int = 10) -> int:
    """How many distinct values (styles, colours) the top k show; a document without one is a
    value of its own."""
    return len({value_of.get(doc, f"\0{doc}") for doc in ranked[:k]})


def evaluate_query(
    ranked: Sequence[str], relevant: Mapping[str, float], *, k: int = 10, deep: int = 100
) -> dict[str, float]:
    """The per-query figures `modalfuse eval` reports: nDCG@k, Recall@k, Recall@deep, MRR@k,
    and Success@k (hit rate)."""
    return {
        f"ndcg@{k}": ndcg_at_k(ranked, relevant, k),
        f"recall@{k}": recall_at_k(ranked, relevant, k),
        f"recall@{deep}": recall_at_k(ranked, relevant, deep),
        f"mrr@{k}": mrr_at_k(ranked, relevant, k),
        f"success@{k}": success_at_k(ranked, relevant, k),
    }


def mean_figures(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each figure over queries (the macro average BEIR reports)."""
    if not rows:
        return {}
    return {key: math.fsum(r[key] for r in rows) / len(rows) for key in rows[0]}
