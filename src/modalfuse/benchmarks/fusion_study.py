"""The study behind `auto` fusion: each fusion rule's nDCG@10 on the dev and test halves of a
BEIR-layout set, against the best single retriever, from one retrieval pass.

Every retriever that applies runs once per query (top 200, through the normal query layer, on
the engine in settings); the rules are then applied offline. The halves are the ones
`modalfuse eval --tune` uses (a hash of seed 0 and the query id): rules were compared on the dev
halves only, and the test halves are reported.

"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modalfuse.engines.base import Hit
from modalfuse.evaluation import beir, metrics, tuning
from modalfuse.evaluation.eval_index import ensure_index, for_language
from modalfuse.query import fusion
from modalfuse.query.searcher import Searcher
from modalfuse.settings import Settings

Lists = Mapping[str, Sequence[Hit]]
Rule = Callable[[Lists, Mapping[str, str]], list[str]]


def _ids(fused: Sequence[fusion.Fused]) -> list[str]:
    return [f.id for f in fused]


def _gap(hits: Sequence[Hit], top: int = 10) -> float:
    """How much of a list's score range its top `top` use: a sharp head reads as confidence."""
    scores = [h.score for h in hits[:100]]
    if len(scores) < 2 or scores[0] == scores[-1]:
        return 0.0
    return (scores[0] - scores[min(top, len(scores)) - 1]) / (scores[0] - scores[-1])


def _nqc(hits: Sequence[Hit], top: int = 10) -> float:
    """Normalised query commitment: the spread of the top scores after min-max."""
    normed = fusion.min_max([h.score for h in hits[:100]])[:top]
    return statistics.pstdev(normed) if len(normed) > 1 else 0.0


def _split_votes(lists: Lists, groups: Mapping[str, str]) -> dict[str, float]:
    """A group's vote split evenly among its members (rather than its best member counting)."""
    sizes: dict[str, int] = {}
    for name in lists:
        sizes[groups[name]] = sizes.get(groups[name], 0) + 1
    return {name: 1 / sizes[groups[name]] for name in lists}


def _qpp(signal: Callable[[Sequence[Hit]], float]) -> Rule:
    def rule(lists: Lists, groups: Mapping[str, str]) -> list[str]:
        split = _split_votes(lists, groups)
        weights = {n: split[n] * (0.05 + signal(hits)) for n, hits in lists.items()}
        return _ids(fusion.normalized(lists, technique="min_max", weights=weights))

    return rule


RULES: dict[str, Rule] = {
    "rrf (k 60)": lambda ls, g: _ids(fusion.rrf(ls)),
    "minmax": lambda ls, g: _ids(fusion.normalized(ls, technique="min_max")),
    "zscore": lambda ls, g: _ids(fusion.normalized(ls, technique="z_score")),
    "rrf, split votes": lambda ls, g: _ids(fusion.rrf(ls, weights=_split_votes(ls, g))),
    "minmax, split votes": lambda ls, g: _ids(
        fusion.normalized(ls, technique="min_max", weights=_split_votes(ls, g))
    ),
    "minmax, split votes x top-10 gap": _qpp(_gap),
    "minmax, split votes x NQC": _qpp(_nqc),
    "minmax, best of each vote": lambda ls, g: _ids(fusion.auto(ls, groups=g, corroborated=())),
    "lexical x 0.5 (no signal)": lambda ls, g: _ids(
        fusion.auto(
            ls, groups=g, corroborated=(), weights={"lexical": 0.5} if "lexical" in ls else None
        )
    ),
    "auto (best of each vote, lexical corroborated)": lambda ls, g: _ids(fusion.auto(ls, groups=g)),
}


def run(
    root: Path,
    split: str,
    settings: Settings,
    seed: int = 0,
    common: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`common`: request fields every query carries (say `lexical_fields`)."""
    data = beir.load(root, split)
    settings, language = for_language(data.root, settings)
    index = ensure_index(data.root, settings, language=language)["index"]
    searcher = Searcher(settings)
    lists = tuning.collect(searcher, data, list(data.queries), index=index, common=common)
    judged = [q for q in lists if any(g > 0 for g in data.qrels.get(q, {}).values())]
    names = sorted({n for per in lists.values() for n in per})
    groups = searcher.embedding_groups(names)
    dev, test = tuning.split_queries(judged, seed)
    out: dict[str, Any] = {"dataset": str(root), "split": split, "groups": groups, **(common or {})}
    for half, ids in (("dev", dev), ("test", test)):
        figures: dict[str, float] = {}
        for qid in ids:
            per: dict[str, Sequence[Hit]] = {str(n): hits for n, hits in lists[qid].items()}
            ranked: dict[str, list[str]] = {n: [h.id for h in hits] for n, hits in per.items()}
            if len(per) > 1:
                ranked |= {name: rule(per, groups) for name, rule in RULES.items()}
            for name, order in ranked.items():
                top = [d for d in order if d != qid][:10]  # BEIR ignores a hit equal to the query
                gain = metrics.ndcg_at_k(top, data.qrels[qid], 10)
                figures[name] = figures.get(name, 0.0) + gain / len(ids)
        best = max(figures[n] for n in names if n in figures)
        out[half] = {
            "queries": len(ids),
            "ndcg@10": {n: round(v, 4) for n, v in figures.items()},
            "delta_to_best_single": {n: round(v - best, 4) for n, v in figures.items()},
        }
    return out


def render(result: dict[str, Any]) -> str:
    lines = []
    for half in ("dev", "test"):
        lines.append(f"{half} ({result[half]['queries']} queries)")
        for name, value in result[half]["ndcg@10"].items():
            delta = result[half]["delta_to_best_single"][name]
            lines.append(f"  {name:36s} {value:.4f} ({delta:+.4f})")
    return "\n".join(lines)
