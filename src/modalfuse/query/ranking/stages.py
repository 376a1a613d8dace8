"""The stages after fusion, each a pure function over the ranked candidates:
rank (boosts and rules) -> collapse -> diversify -> page.

Every stage keeps pinned hits at their positions: it takes them out, does its work on the rest,
and puts them back (`place_pins`). Ties keep the order of the stage before (sorts are stable),
which is the fused order, itself tie-broken by best rank and id.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from modalfuse.query.fusion import Contribution, Fused
from modalfuse.query.ranking.models import MAX_MULTIPLIER, Boost, Collapse, Diversify
from modalfuse.query.ranking.rules import Rule
from modalfuse.query.ranking.signals import Columns, describe, factor_column

STAGES = ("fuse", "rank", "collapse", "diversify")


@dataclasses.dataclass(slots=True)
class BoostPart:
    """One boost's part in a hit's multiplier: `term = weight * factor`."""

    boost: str
    value: float | None
    factor: float
    weight: float
    term: float
    rule: str | None = None


@dataclasses.dataclass(slots=True)
class Candidate:
    id: str
    relevance: float  # the fused score
    score: float  # relevance x multiplier: the order after the rank stage
    fields: dict[str, Any]  # the stored fields the stages read (signals, group key, ...)
    contributions: dict[str, Contribution] = dataclasses.field(default_factory=dict)
    multiplier: float = 1.0
    # Each boost's (name, weight, rule), shared by every candidate of one rank, and this
    # candidate's (value, factor) for each: explain's BoostParts are built only when asked.
    boost_specs: Sequence[tuple[str, float, str | None]] = ()
    boost_table: tuple[np.ndarray, np.ndarray] | None = None  # (values, factors): boost x hit
    boost_row: int = 0
    pinned: int | None = None  # the 1-based position a rule pinned it at
    rule: str | None = None  # the rule that pinned it
    group: str | None = None
    variants: list[Candidate] = dataclasses.field(default_factory=list)
    group_size: int = 1
    mmr_penalty: float | None = None
    positions: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def boosts(self) -> list[BoostPart]:
        if self.boost_table is None:
            return []
        values, factors = (t[:, self.boost_row].tolist() for t in self.boost_table)
        return [
            BoostPart(name, None if math.isnan(v) else v, f, weight, weight * f, rule)
            for (name, weight, rule), v, f in zip(self.boost_specs, values, factors, strict=True)
        ]


def candidates(fused: Sequence[Fused], fields: Mapping[str, Mapping[str, Any]]) -> list[Candidate]:
    out = [
        Candidate(
            id=f.id,
            relevance=f.score,
            score=f.score,
            fields=dict(fields.get(f.id, {})),
            contributions=f.contributions,
        )
        for f in fused
    ]
    return _numbered(out, "fuse")


def _numbered(items: list[Candidate], stage: str) -> list[Candidate]:
    for position, c in enumerate(items, 1):
        c.positions[stage] = position
    return items


def place_pins(items: Sequence[Candidate]) -> list[Candidate]:
    """The unpinned items in their order, with each pinned one at its position (1-based); a
    position beyond the end puts it last, lower positions first."""
    pins = sorted((c for c in items if c.pinned is not None), key=lambda c: c.pinned or 0)
    out = [c for c in items if c.pinned is None]
    for c in pins:
        assert c.pinned is not None
        out.insert(min(c.pinned - 1, len(out)), c)
    return out


def rank(
    items: Sequence[Candidate],
    boosts: Sequence[Boost],
    rules: Sequence[Rule] = (),
    *,
    pinned_extra: Mapping[str, Candidate] | None = None,
    now: datetime | None = None,
) -> list[Candidate]:
    """Boosts and rules. Hidden ids go; every hit's score becomes
    `relevance x clamp(1 + sum(weight x factor), 0, 2)` over the request's boosts and the fired
    rules' boosts; the list is sorted by it (ties keep the fused order); pinned ids go to their
    positions. `pinned_extra` holds pinned documents that were not among the candidates (already
    checked against the request's filters)."""
    hidden = {i for r in rules for i in r.hide}
    kept = [c for c in items if c.id not in hidden]
    by_id = {c.id: c for c in kept}
    for doc_id, extra in (pinned_extra or {}).items():
        if doc_id not in by_id and doc_id not in hidden:
            kept.append(extra)
            by_id[doc_id] = extra
    every: list[tuple[Boost, str | None]] = [(b, None) for b in boosts]
    every += [(b, r.id) for r in rules for b in r.boosts()]
    specs = [(describe(b), b.weight, rule) for b, rule in every]
    if every:
        columns = Columns([c.fields for c in kept])
        read = [factor_column(b, columns, now=now) for b, _ in every]
        values = np.array([v for v, _ in read]).reshape(len(every), len(kept))
        table = np.array([f for _, f in read]).reshape(len(every), len(kept))
        weights = np.array([b.weight for b, _ in every])
        multipliers = np.clip(1.0 + weights @ table, 0.0, MAX_MULTIPLIER).tolist()
        for j, c in enumerate(kept):
            c.boost_specs, c.boost_table, c.boost_row = specs, (values, table), j
            c.multiplier = multipliers[j]
            c.score = c.relevance * c.multiplier
    ordered = sorted(kept, key=lambda c: -c.score)
    claimed: set[int] = set()
    for r in rules:  # the first rule to pin a position or an id keeps it
        for pin in r.pin:
            target = by_id.get(pin.id)
            if target is None or target.pinned is not None or pin.position in claimed:
                continue
            target.pinned, target.rule = pin.position, r.id
            claimed.add(pin.position)
    return _numbered(place_pins(ordered), "rank")


def _key(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else str(value)


def collapse(items: Sequence[Candidate], spec: Collapse) -> list[Candidate]:
    """One hit per value of `spec.field`: the first of its group in the ranked order (a pinned
    member before any other), with up to `spec.inner` other members as its variants. A hit
    without the field is a group of its own."""
    heads: dict[str, Candidate] = {}
    for c in items:  # pinned hits claim their groups first
        key = _key(c.fields.get(spec.field))
        c.group = key
        if c.pinned is not None and key is not None and key not in heads:
            heads[key] = c
    out: list[Candidate] = []
    for c in items:
        key = c.group
        head = heads.get(key) if key is not None else None
        if head is None:
            if key is not None:
                heads[key] = c
            out.append(c)
        elif head is c:
            out.append(c)
        else:
            head.group_size += 1
            if len(head.variants) < spec.inner:
                head.variants.append(c)
    return _numbered(place_pins(out), "collapse")


def _similarity(items: Sequence[Candidate], on: str, *, vector: bool) -> np.ndarray:
    """Pairwise similarity: cosine over a vector field, else 1 for equal keyword values (Jaccard
    for lists); 0 where a value is missing."""
    values = [c.fields.get(on) for c in items]
    n = len(items)
    if vector:
        dim = next((len(v) for v in values if isinstance(v, list) and v), 1)
        present = [isinstance(v, list) and len(v) == dim for v in values]
        if all(present):
            m = np.asarray(values, dtype=np.float64)
        else:
            m = np.zeros((n, dim), dtype=np.float64)
            for i, v in enumerate(values):
                if present[i]:
                    m[i] = v
        norms = np.linalg.norm(m, axis=1)
        m /= np.where(norms > 0, norms, 1.0)[:, None]
        sim: np.ndarray = m @ m.T
        return sim
    sets = [
        frozenset(v) if isinstance(v, list) else frozenset() if v is None else frozenset([v])
        for v in values
    ]
    sim = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(i, n):
            if sets[i] and sets[j]:
                s = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
                sim[i, j] = sim[j, i] = s
    return sim


def diversify(items: Sequence[Candidate], spec: Diversify, *, vector: bool) -> list[Candidate]:
    """Maximal marginal relevance over the top `spec.depth` unpinned hits: repeatedly take the
    hit with the best `lambda x rel - (1 - lambda) x max similarity to those taken`, where rel is
    the score min-max scaled over those hits. The rest keep their order after them."""
    free = [c for c in items if c.pinned is None]
    head, tail = free[: spec.depth], free[spec.depth :]
    if len(head) > 1:
        scores = np.array([c.score for c in head], dtype=np.float64)
        lo, hi = float(scores.min()), float(scores.max())
        rel = (scores - lo) / (hi - lo) if hi > lo else np.ones_like(scores)
        sim = _similarity(head, spec.on, vector=vector)
        lam = spec.lambda_
        taken: list[int] = []
        left = np.ones(len(head), dtype=bool)
        closest = np.zeros(len(head), dtype=np.float64)
        for _ in range(len(head)):
            # The first pick has no one to be like (closest is all 0): the best by relevance.
            # argmax takes the first of equals, the earlier hit.
            pick = int(np.argmax(np.where(left, lam * rel - (1 - lam) * closest, -np.inf)))
            head[pick].mmr_penalty = float(closest[pick])
            taken.append(pick)
            left[pick] = False
            np.maximum(closest, sim[pick], out=closest)
        head = [head[i] for i in taken]
    pinned = [c for c in items if c.pinned is not None]
    return _numbered(place_pins([*head, *tail, *pinned]), "diversify")


def page(items: Sequence[Candidate], *, from_: int, size: int) -> list[Candidate]:
    return list(items[from_ : from_ + size])


def facet_counts(
    items: Sequence[Candidate], fields: Sequence[str], *, size: int = 20
) -> dict[str, list[tuple[str, int]]]:
    """Value counts of keyword fields over the given hits (most frequent first, then value)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for name in fields:
        counts: dict[str, int] = {}
        for c in items:
            value = c.fields.get(name)
            for v in value if isinstance(value, list) else [] if value is None else [value]:
                counts[str(v)] = counts.get(str(v), 0) + 1
        out[name] = sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))[:size]
    return out
