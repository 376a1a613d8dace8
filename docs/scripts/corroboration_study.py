"""How docs/fusion.md chose `auto`'s corroboration of BM25: rules applied offline to lists that
docs/scripts/collect_lists.py pickled, on the dev and test halves (`modalfuse eval --tune`'s:
a hash of seed 0 and the query id), as deltas to each half's best single retriever:

    .venv/bin/python docs/scripts/corroboration_study.py /tmp/dom/*.pkl

A set of more than 3,000 judged queries (qbqtc's dev) is cut to 3,000, by a hash of the id.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modalfuse.engines.base import Hit
from modalfuse.evaluation import metrics, tuning
from modalfuse.query import fusion

Lists = Mapping[str, Sequence[Hit]]
Rule = Callable[[Lists, Mapping[str, str]], list[fusion.Fused]]
MAX_QUERIES = 3000


def load(path: Path) -> dict[str, Any]:
    d = pickle.loads(path.read_bytes())
    lists = {
        q: {n: [Hit(id=i, score=s) for i, s in hits] for n, hits in per.items()}
        for q, per in d["lists"].items()
    }
    if len(lists) > MAX_QUERIES:
        kept = sorted(lists, key=lambda q: hashlib.sha256(f"k:{q}".encode()).hexdigest())
        lists = {q: lists[q] for q in kept[:MAX_QUERIES]}
    return d | {"lists": lists}


def corroborated(floor: float, depth: int, on: str = "lexical") -> Rule:
    """`on`'s vote times min(1, floor + the share of its top `depth` the other votes hold)."""

    def rule(lists: Lists, groups: Mapping[str, str]) -> list[fusion.Fused]:
        weights = {}
        if on in lists and len({groups.get(n, n) for n in lists}) > 1:
            top = [h.id for h in lists[on][:depth]]
            others = {
                h.id
                for n, hits in lists.items()
                if groups.get(n, n) != groups.get(on, on)
                for h in hits[:depth]
            }
            if top:
                weights[on] = min(1.0, floor + sum(d in others for d in top) / len(top))
        return fusion.auto(lists, groups=groups, weights=weights, corroborated=())

    return rule


def constant(weight: float, on: str = "lexical") -> Rule:
    def rule(lists: Lists, groups: Mapping[str, str]) -> list[fusion.Fused]:
        weights = {on: weight} if on in lists else None
        return fusion.auto(lists, groups=groups, weights=weights, corroborated=())

    return rule


RULES: dict[str, Rule] = {
    "best of each vote (no corroboration)": lambda ls, g: fusion.auto(
        ls, groups=g, corroborated=()
    ),
    **{f"lexical x {w}": constant(w) for w in (0.5, 0.6, 0.7)},
    **{
        f"lexical x min(1, {f} + share of top {k})": corroborated(f, k)
        for k in (5, 10, 20)
        for f in (0.1, 0.2, 0.3, 0.4, 0.5)
    },
    "auto": lambda ls, g: fusion.auto(ls, groups=g),
}


def deltas(d: dict[str, Any], rule: Rule, half: str) -> float:
    dev, test = tuning.split_queries(sorted(d["lists"]), 0)
    ids = dev if half == "dev" else test
    totals: dict[str, float] = {}
    for q in ids:
        per = d["lists"][q]
        orders = {n: [h.id for h in hits] for n, hits in per.items()}
        orders["rule"] = [f.id for f in rule(per, d["groups"])]
        for n, order in orders.items():
            top = [x for x in order if x != q][:10]  # BEIR ignores a hit equal to the query
            totals[n] = totals.get(n, 0.0) + metrics.ndcg_at_k(top, d["qrels"][q], 10) / len(ids)
    return totals["rule"] - max(v for n, v in totals.items() if n != "rule")


def main(paths: list[Path]) -> None:
    sets = {p.stem: load(p) for p in paths}
    print(f"{'rule':44s} half " + " ".join(f"{s[:14]:>14s}" for s in sets) + "    worst")
    for name, rule in RULES.items():
        for half in ("dev", "test"):
            row = [deltas(d, rule, half) for d in sets.values()]
            cells = " ".join(f"{v:+14.4f}" for v in row)
            print(f"{name:44s} {half:4s} {cells} {min(row):+.4f}")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
