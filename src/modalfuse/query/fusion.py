"""Fusion of ranked lists: reciprocal-rank fusion and score normalisation. Pure functions.

RRF is `score(d) = sum_i w_i / (k + rank_i(d))`, with rank counted from 1 within the first
`window` hits of list i; a document missing from a list contributes 0. This is the formula of
OpenSearch's score-ranker-processor and Elasticsearch's rrf retriever.

Normalisation fusion follows OpenSearch's normalization-processor: each list's scores are
normalised on their own (min-max, or z-score), then combined by a weighted arithmetic mean over
all the lists, a document missing from a list counting 0 there.

`auto` (the default) needs no judgments and no tuning: min-max normalisation as above, but
retrievers driven by one query embedding (the query text's vector searched against text vectors
and against image vectors) make one vote, in which a document counts with the better of its
normalised scores; every vote weighs the same. Two views of one query embedding are correlated
evidence: counted twice, they outvote BM25 whenever it is the stronger retriever (the loss RRF
shows on attribute queries). BM25's vote is then scaled by how much the other votes corroborate
its top 10 (`corroboration`): a lexical list whose top hits no vector list shares is how term
matching fails (a verbose query against short fields, a vocabulary the documents do not use),
and equal weight then costs the stronger vector retriever its lead. The study behind it, with
what was tried and dropped: docs/fusion.md.

Ties break by a stable rule: the best single rank a document has in any list, then its id.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from modalfuse.engines.base import Hit
from modalfuse.query.retrievers import RETRIEVER_SPECS

Method = Literal["auto", "rrf", "minmax", "zscore"]
DEFAULT_RANK_CONSTANT = 60
# OpenSearch's conventions: one result (or all equal) normalises to 1; the minimum of a
# min-max range to 0.001, so it still counts as present.
SINGLE_RESULT_SCORE = 1.0
MIN_SCORE = 0.001
# Under `auto`, a corroborated retriever's vote is min(1, FLOOR + share), where share is the
# part of its top DEPTH that the other votes' top DEPTH hold (chosen on dev halves: docs/fusion.md).
CORROBORATION_DEPTH = 10
CORROBORATION_FLOOR = 0.3
CORROBORATED = frozenset(s.name for s in RETRIEVER_SPECS if s.corroborated)


# Plain slotted classes, not frozen ones: a fusion builds a few hundred of these per query, and a
# frozen dataclass's constructor costs several times more.
@dataclasses.dataclass(slots=True)
class Contribution:
    """One retriever's part in a fused score."""

    rank: int
    raw_score: float
    normalized: float | None
    contribution: float


@dataclasses.dataclass(slots=True)
class Fused:
    id: str
    score: float
    contributions: dict[str, Contribution]

    @property
    def best_rank(self) -> int:
        return min(c.rank for c in self.contributions.values())


def truncated(lists: Mapping[str, Sequence[Hit]], window: int) -> dict[str, list[Hit]]:
    """Each list's first `window` distinct documents."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    out: dict[str, list[Hit]] = {}
    for name, hits in lists.items():
        seen: set[str] = set()
        kept: list[Hit] = []
        for hit in hits:
            # A retriever that returned a document twice counts it at its first rank only.
            if hit.id not in seen:
                seen.add(hit.id)
                kept.append(hit)
            if len(kept) == window:
                break
        out[name] = kept
    return out


def _weights(names: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    w = {name: float((weights or {}).get(name, 1.0)) for name in names}
    bad = {n: v for n, v in w.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise ValueError(f"weights must be finite and non-negative: {bad}")
    return w


def _ordered(fused: list[Fused]) -> list[Fused]:
    return sorted(fused, key=lambda f: (-f.score, f.best_rank, f.id))


def rrf(
    lists: Mapping[str, Sequence[Hit]],
    *,
    rank_constant: int = DEFAULT_RANK_CONSTANT,
    weights: Mapping[str, float] | None = None,
    window: int = 100,
) -> list[Fused]:
    if rank_constant < 1:
        raise ValueError(f"rank constant must be at least 1, got {rank_constant}")
    kept = truncated(lists, window)
    w = _weights(list(kept), weights)
    parts: dict[str, dict[str, Contribution]] = {}
    for name, hits in kept.items():
        for rank, hit in enumerate(hits, start=1):
            contribution = w[name] / (rank_constant + rank)
            parts.setdefault(hit.id, {})[name] = Contribution(
                rank=rank, raw_score=hit.score, normalized=None, contribution=contribution
            )
    return _ordered(
        [
            Fused(id=doc, score=math.fsum(c.contribution for c in cs.values()), contributions=cs)
            for doc, cs in parts.items()
        ]
    )


def min_max(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    out = []
    for s in scores:
        if hi == lo:
            out.append(SINGLE_RESULT_SCORE)
            continue
        n = (s - lo) / (hi - lo)
        out.append(MIN_SCORE if n == 0 else n)
    return out


def z_score(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / len(scores))
    if std == 0:
        return [SINGLE_RESULT_SCORE] * len(scores)
    return [(s - mean) / std for s in scores]


def normalized(
    lists: Mapping[str, Sequence[Hit]],
    *,
    technique: Literal["min_max", "z_score"] = "min_max",
    weights: Mapping[str, float] | None = None,
    window: int = 100,
) -> list[Fused]:
    kept = truncated(lists, window)
    w = _weights(list(kept), weights)
    norm = min_max if technique == "min_max" else z_score
    parts: dict[str, dict[str, Contribution]] = {}
    for name, hits in kept.items():
        for rank, (hit, n) in enumerate(zip(hits, norm([h.score for h in hits]), strict=True), 1):
            parts.setdefault(hit.id, {})[name] = Contribution(
                rank=rank, raw_score=hit.score, normalized=n, contribution=w[name] * n
            )
    # A document missing from a list counts 0 there, and the mean is over every list, as
    # OpenSearch's normalization-processor computes it (checked against a real 2.19 node).
    total_weight = math.fsum(w.values())
    fused = []
    for doc, cs in parts.items():
        score = (
            math.fsum(c.contribution for c in cs.values()) / total_weight if total_weight else 0.0
        )
        # Report each part as its share of the mean, so the parts add up to the score.
        shares = {
            name: dataclasses.replace(
                c, contribution=c.contribution / total_weight if total_weight else 0.0
            )
            for name, c in cs.items()
        }
        fused.append(Fused(id=doc, score=score, contributions=shares))
    return _ordered(fused)


@dataclasses.dataclass(frozen=True)
class Vote:
    """How `auto` weighed one retriever for one query, and why (for explain)."""

    weight: float
    group: str
    why: str


def head(hits: Sequence[Hit], depth: int = CORROBORATION_DEPTH) -> list[Hit]:
    """A list's first `depth` hits and every hit tied with the last of them: which of several
    equal scores an engine returns first is its own business, and must not change a vote."""
    if len(hits) <= depth:
        return list(hits)
    cut = hits[depth - 1].score
    return [h for h in hits if h.score >= cut] if hits[depth].score == cut else list(hits[:depth])


def corroboration(
    lists: Mapping[str, Sequence[Hit]], name: str, groups: Mapping[str, str]
) -> tuple[int, int] | None:
    """(how many of `name`'s top CORROBORATION_DEPTH the other votes' top lists hold, how many
    it has, ties at the cut included); None when no other vote has a list to corroborate it."""
    group = groups.get(name, name)
    others: set[str] = set()
    found_other = False
    for other, hits in lists.items():
        if groups.get(other, other) != group:
            found_other = True
            others.update(h.id for h in head(hits))
    top = [h.id for h in head(lists.get(name, ()))]
    if not found_other or not top:
        return None
    return sum(1 for d in top if d in others), len(top)


def auto_votes(
    names: Sequence[str],
    groups: Mapping[str, str] | None = None,
    weights: Mapping[str, float] | None = None,
    lists: Mapping[str, Sequence[Hit]] | None = None,
    corroborated: Collection[str] = CORROBORATED,
) -> dict[str, Vote]:
    """Each retriever's weight under `auto`: its group's equal share of the vote, times the
    caller's weight for it (default 1), times, for a `corroborated` retriever when the `lists`
    are given, min(1, floor + the share of its top hits the other votes hold). `groups` maps a
    retriever to the query embedding it is driven by; a retriever not in it is a group of its
    own."""
    w = _weights(names, weights)
    group_of = {n: (groups or {}).get(n, n) for n in names}
    members: dict[str, list[str]] = {}
    for n in names:
        members.setdefault(group_of[n], []).append(n)
    share = 1.0 / len(members) if members else 0.0
    votes = {}
    for n in names:
        mates = [m for m in members[group_of[n]] if m != n]
        why = f"1 of {len(members)} equal votes"
        if mates:
            why += (
                f"; shares the {group_of[n]} query embedding with {', '.join(mates)}, so a "
                "document counts with the better of their normalised scores"
            )
        factor = 1.0
        agreed = corroboration(lists, n, group_of) if lists is not None else None
        if n in corroborated and agreed is not None:
            held, of = agreed
            factor = min(1.0, CORROBORATION_FLOOR + held / of)
            why += (
                f"; {held} of its top {of} are in the other votes' top {CORROBORATION_DEPTH}, "
                f"so it counts {factor:.2g}"
            )
        if w[n] != 1.0:
            why += f"; weighted {w[n]:g} by request"
        votes[n] = Vote(weight=share * w[n] * factor, group=group_of[n], why=why)
    return votes


def auto(
    lists: Mapping[str, Sequence[Hit]],
    *,
    groups: Mapping[str, str] | None = None,
    weights: Mapping[str, float] | None = None,
    window: int = 100,
    corroborated: Collection[str] = CORROBORATED,
) -> list[Fused]:
    """Min-max per list; per document, the best weighted normalised score within each group of
    retrievers sharing a query embedding; the sum over groups (missing counts 0). The weights
    are `auto_votes`', corroboration included."""
    kept = truncated(lists, window)
    votes = auto_votes(list(kept), groups, weights, kept, corroborated)
    parts: dict[str, dict[str, Contribution]] = {}
    for name, hits in kept.items():
        weight = votes[name].weight
        normed = min_max([h.score for h in hits])
        for rank, (hit, n) in enumerate(zip(hits, normed, strict=True), 1):
            parts.setdefault(hit.id, {})[name] = Contribution(rank, hit.score, n, weight * n)
    group = {name: vote.group for name, vote in votes.items()}
    fused = []
    for doc, cs in parts.items():
        best: dict[str, Contribution] = {}
        for name, c in cs.items():
            held = best.get(group[name])
            if held is None or c.contribution > held.contribution:
                best[group[name]] = c
        # Only each group's best member counts; the others are shown with 0.
        for name, c in cs.items():
            if best[group[name]] is not c:
                c.contribution = 0.0
        score = math.fsum(c.contribution for c in cs.values())
        fused.append(Fused(doc, score, cs))
    return _ordered(fused)


def fuse(
    lists: Mapping[str, Sequence[Hit]],
    *,
    method: Method = "auto",
    rank_constant: int = DEFAULT_RANK_CONSTANT,
    weights: Mapping[str, float] | None = None,
    window: int = 100,
    groups: Mapping[str, str] | None = None,
) -> list[Fused]:
    """`groups` (retriever -> query embedding) is used by `auto` only."""
    if method == "auto":
        return auto(lists, groups=groups, weights=weights, window=window)
    if method == "rrf":
        return rrf(lists, rank_constant=rank_constant, weights=weights, window=window)
    technique: Literal["min_max", "z_score"] = "min_max" if method == "minmax" else "z_score"
    return normalized(lists, technique=technique, weights=weights, window=window)


def page(fused: Sequence[Fused], *, from_: int, size: int, window: int) -> list[Fused]:
    """A slice of one fused list; `window >= from + size` keeps pages stable as `from` grows."""
    if from_ < 0 or size < 1:
        raise ValueError("from must be >= 0 and size >= 1")
    if from_ + size > window:
        raise ValueError(f"from + size = {from_ + size} is beyond the window ({window})")
    return list(fused[from_ : from_ + size])
