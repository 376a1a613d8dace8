"""`modalfuse eval --tune`: choose fusion settings on dev queries, report them on held-out ones.

Each retriever runs once per query, to the deepest window swept; every candidate setting is then
fused offline with the same `fusion.fuse` the query layer uses, so a sweep of about a thousand
settings costs one retrieval pass. The chosen setting is checked once more through the normal
query layer on the test half, and those are the figures reported.

Swept: RRF with k in K_GRID; min-max and z-score normalisation; per-retriever weights from
WEIGHT_GRID (0 drops a retriever); the window from WINDOW_GRID. Ties in dev nDCG prefer the
setting closest to the defaults, so noise alone never moves a default.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modalfuse.engines.base import Hit
from modalfuse.errors import ConfigError, InvalidInput
from modalfuse.evaluation import beir, metrics
from modalfuse.query import fusion
from modalfuse.query.fusion_config import FusionConfig
from modalfuse.query.request import RetrieverName, SearchRequest
from modalfuse.query.searcher import Searcher

K_GRID = (1, 10, 20, 40, 60, 100)
WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0)
WINDOW_GRID = (50, 100, 200)
Lists = dict[RetrieverName, list[Hit]]


def split_queries(query_ids: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """(dev, test): a fixed hash of (seed, id), so a query stays on its side as the set grows."""
    dev: list[str] = []
    test: list[str] = []
    for qid in sorted(query_ids):
        digest = hashlib.sha256(f"{seed}:{qid}".encode()).digest()
        (dev if digest[0] % 2 == 0 else test).append(qid)
    return dev, test


def weight_grid(names: Sequence[RetrieverName]) -> list[dict[RetrieverName, float]]:
    """Weight vectors over `names`, one per direction (scaling every weight changes neither
    RRF's order nor a weighted mean's), never all zero."""
    seen: set[tuple[float, ...]] = set()
    out = []
    for combo in itertools.product(WEIGHT_GRID, repeat=len(names)):
        top = max(combo)
        if top == 0:
            continue
        key = tuple(round(w / top, 6) for w in combo)
        if key not in seen:
            seen.add(key)
            out.append(dict(zip(names, (w / top for w in combo), strict=True)))
    return out


def candidates(names: Sequence[RetrieverName]) -> list[FusionConfig]:
    out = []
    for weights in weight_grid(names):
        active = [n for n in names if weights[n] > 0]
        kept = {n: w for n, w in weights.items() if w > 0}
        retrievers = active if len(active) < len(names) else None
        for window in WINDOW_GRID:
            for k in K_GRID:
                out.append(
                    FusionConfig(
                        fusion="rrf", k=k, weights=kept, window=window, retrievers=retrievers
                    )
                )
            for method in ("auto", "minmax", "zscore"):
                out.append(
                    FusionConfig(fusion=method, weights=kept, window=window, retrievers=retrievers)
                )
    return out


def distance_from_default(config: FusionConfig) -> float:
    weights = list(config.weights.values()) or [1.0]
    return (
        (config.fusion != "auto") * 1.0
        + abs(config.k - 60) / 100
        + abs(config.window - 100) / 200
        + (max(weights) - min(weights))
        + (config.retrievers is not None) * 1.0
    )


def fused_ids(
    lists: Lists,
    config: FusionConfig,
    depth: int = 100,
    groups: Mapping[str, str] | None = None,
) -> list[str]:
    chosen: dict[str, list[Hit]] = {
        n: hits for n, hits in lists.items() if n in (config.retrievers or lists)
    }
    fused = fusion.fuse(
        chosen,
        method=config.fusion,
        rank_constant=config.k,
        weights={str(n): w for n, w in config.weights.items() if n in chosen},
        window=config.window,
        groups=groups,
    )
    return [f.id for f in fused[:depth]]


def collect(
    searcher: Searcher,
    dataset: beir.Dataset,
    query_ids: Sequence[str],
    *,
    index: str,
    on_query: Callable[[], None] | None = None,
    common: Mapping[str, Any] | None = None,
) -> dict[str, Lists]:
    """Every applicable retriever's list for each query, to the deepest window swept.
    `common`: request fields every query carries (say `lexical_fields`)."""
    from modalfuse.evaluation.evaluation import _resolve_images

    queries = _resolve_images(dataset)
    out: dict[str, Lists] = {}
    for qid in query_ids:
        q = queries[qid]
        request = SearchRequest.model_validate(
            {
                "index": index,
                "text": q.text or None,
                "image": Path(q.image).read_bytes() if q.image else None,
                "window": max(WINDOW_GRID),
                "size": 1,
                "return_fields": False,
                **(common or {}),
            }
        )
        # A query no retriever can serve takes no part in tuning.
        with contextlib.suppress(InvalidInput):
            out[qid] = searcher.retrieve(request)
        if on_query is not None:
            on_query()
    return out


def score(
    lists: Mapping[str, Lists],
    qrels: Mapping[str, Mapping[str, float]],
    config: FusionConfig,
    *,
    k: int,
    ignore_identical_ids: bool = True,
    groups: Mapping[str, str] | None = None,
) -> float:
    values = []
    for qid, per_retriever in lists.items():
        ranked = [
            d
            for d in fused_ids(per_retriever, config, groups=groups)
            if not (ignore_identical_ids and d == qid)
        ]
        values.append(metrics.ndcg_at_k(ranked, qrels[qid], k))
    return sum(values) / len(values) if values else 0.0


def tune(
    searcher: Searcher,
    dataset: beir.Dataset,
    dev_ids: Sequence[str],
    *,
    index: str,
    k: int = 10,
    ignore_identical_ids: bool = True,
    on_query: Callable[[], None] | None = None,
    on_candidate: Callable[[], None] | None = None,
    progress_total: Callable[[int], None] | None = None,
    common: Mapping[str, Any] | None = None,
) -> tuple[FusionConfig, dict[str, Any]]:
    """The best setting on the dev queries, and the sweep's summary."""
    lists = collect(searcher, dataset, dev_ids, index=index, on_query=on_query, common=common)
    if not lists:
        raise ConfigError("no dev query can be served by any retriever; nothing to tune")
    names: list[RetrieverName] = sorted({n for per in lists.values() for n in per})
    groups = searcher.embedding_groups(names)
    grid = candidates(names)
    if progress_total is not None:
        progress_total(len(grid))
    scored = []
    for config in grid:
        scored.append(
            (
                score(
                    lists,
                    dataset.qrels,
                    config,
                    k=k,
                    ignore_identical_ids=ignore_identical_ids,
                    groups=groups,
                ),
                config,
            )
        )
        if on_candidate is not None:
            on_candidate()
    best_score = max(s for s, _ in scored)
    # Within noise of the best (1e-9), the setting nearest the defaults wins.
    best = min((c for s, c in scored if s >= best_score - 1e-9), key=distance_from_default)
    default = FusionConfig()
    top = sorted(scored, key=lambda sc: -sc[0])[:5]
    summary = {
        "retrievers": names,
        "dev_queries": len(lists),
        "candidates": len(grid),
        f"dev_ndcg@{k}": round(best_score, 4),
        f"dev_default_auto_ndcg@{k}": round(
            score(
                lists,
                dataset.qrels,
                default,
                k=k,
                ignore_identical_ids=ignore_identical_ids,
                groups=groups,
            ),
            4,
        ),
        "top5": [{"ndcg": round(s, 4), **c.settings()} for s, c in top],
    }
    return best, summary
