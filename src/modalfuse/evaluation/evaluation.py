"""`modalfuse eval`: every query of a BEIR-layout dataset, in each retrieval mode, through the
normal query layer; nDCG@k, Recall@k, Recall@100 and MRR@k per mode.

Modes: each retriever by its name (`lexical`, `text_vector`, `text_to_image`, and `image`: query
image -> images), `hybrid` (every retriever that applies, fused as a search does by default:
`auto`),
`hybrid-rrf`, `hybrid-minmax`, `hybrid-zscore`, or an explicit retriever list joined with `+`
(`lexical+text_vector`), fused with `auto`. A mode may end with a ranking stage after fusion:
`+collapse` (one hit per style), `+mmr:LAMBDA` (MMR over the text vectors, depth 100) or
`+mmr:LAMBDA:FIELD` (over another vector or keyword field): `hybrid+collapse`, `hybrid+mmr:0.7`.

Where the corpus carries styles and colours (the derived fashion sets do), each mode also gets
group-level nDCG@k (a style counts once, as relevant as its best member) and the distinct styles
and colours in its top k.

As BEIR does, a hit whose id equals the query's id is ignored (image -> image queries are
corpus documents; they would otherwise find themselves first).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modalfuse.errors import ConfigError, InvalidInput
from modalfuse.evaluation import beir, metrics
from modalfuse.evaluation.defaults import DEFAULT_MODES
from modalfuse.query.fusion import Method
from modalfuse.query.fusion_config import FusionConfig
from modalfuse.query.request import RETRIEVERS, RetrieverName, SearchRequest
from modalfuse.query.retrievers import RETRIEVER_SPECS
from modalfuse.query.searcher import Searcher

# Every retriever by its name, from the one table of specs.
SINGLE: dict[str, RetrieverName] = {s.name: s.name for s in RETRIEVER_SPECS}
RENAMED = {"vector": "text_vector"}  # the mode's name before the retrievers were named
HYBRID: dict[str, Method] = {
    "hybrid": "auto",
    "hybrid-auto": "auto",
    "hybrid-rrf": "rrf",
    "hybrid-minmax": "minmax",
    "hybrid-zscore": "zscore",
}
DEPTH = 100  # Recall@100 needs the top 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class Mode:
    name: str
    retrievers: list[RetrieverName] | None  # None: every retriever that applies
    fusion: Method = "auto"
    config: FusionConfig | None = None  # a whole fusion config, applied as it is
    ranking: dict[str, Any] = dataclasses.field(default_factory=dict)  # stages after fusion


def configured_mode(name: str, config: FusionConfig) -> Mode:
    return Mode(name=name, retrievers=config.retrievers, fusion=config.fusion, config=config)


def _ranking_suffix(name: str) -> tuple[str, dict[str, Any]]:
    """`hybrid+collapse` -> ('hybrid', collapse by style); `x+mmr:0.7[:field]` -> MMR."""
    base, sep, last = name.rpartition("+")
    if not sep:
        return name, {}
    if last == "collapse":
        return base, {"collapse": {"field": "style", "inner": 0}}
    if last.startswith("mmr:"):
        _, lam, *on = last.split(":")
        try:
            value = float(lam)
        except ValueError as e:
            raise ConfigError(f"mode {name!r}: {lam!r} is not an MMR lambda") from e
        field = on[0] if on else "text_vector"
        return base, {"diversify": {"lambda": value, "on": field, "depth": DEPTH}}
    return name, {}


def parse_mode(name: str) -> Mode:
    name = name.strip()
    base, ranking = _ranking_suffix(name)
    if ranking:
        return dataclasses.replace(parse_mode(base), name=name, ranking=ranking)
    if name in SINGLE:
        return Mode(name=name, retrievers=[SINGLE[name]])
    if name in HYBRID:
        return Mode(name=name, retrievers=None, fusion=HYBRID[name])
    parts = [p.strip() for p in name.split("+")]
    if len(parts) > 1 and all(p in SINGLE for p in parts):
        return Mode(name=name, retrievers=list(dict.fromkeys(SINGLE[p] for p in parts)))
    if name in RENAMED:
        raise ConfigError(f"mode {name!r} is now {RENAMED[name]!r} (modes are retriever names)")
    known = [*SINGLE, *HYBRID, "a+b (e.g. lexical+text_vector)", "x+collapse", "x+mmr:0.7"]
    raise ConfigError(f"unknown mode {name!r}; known: {', '.join(known)}")


def request_for(
    query: beir.Query,
    mode: Mode,
    *,
    index: str,
    window: int,
    common: Mapping[str, Any] | None = None,
) -> SearchRequest:
    """`common`: request fields every query carries (say `lexical_fields`)."""
    image = None
    if query.image:
        image = Path(query.image).read_bytes()
    fields: dict[str, Any] = {
        "index": index,
        "text": query.text or None,
        "image": image,
        "size": DEPTH,
        "window": max(window, DEPTH),
        "return_fields": False,
        **(common or {}),
        **mode.ranking,
    }
    if mode.config is not None:
        # The config's own window decides; the page (top 100) must still fit in it.
        fields["window"] = max(mode.config.window, DEPTH)
        return mode.config.model_copy(update={"window": fields.pop("window")}).apply(
            SearchRequest.model_validate(fields)
        )
    if mode.retrievers is not None:
        fields["retrievers"] = mode.retrievers
    fields["fusion"] = mode.fusion
    return SearchRequest.model_validate(fields)


def _resolve_images(dataset: beir.Dataset) -> dict[str, beir.Query]:
    out = {}
    for qid, q in dataset.queries.items():
        image = q.image
        if image and not Path(image).is_absolute():
            image = str(dataset.root / image)
        out[qid] = dataclasses.replace(q, image=image)
    return out


def run_mode(
    searcher: Searcher,
    dataset: beir.Dataset,
    mode: Mode,
    *,
    index: str,
    k: int,
    window: int = DEPTH,
    ignore_identical_ids: bool = True,
    on_query: Callable[[], None] | None = None,
    attributes: dict[str, dict[str, str]] | None = None,
    common: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(mean figures, per-query rows) for one mode. Queries the mode cannot serve (an image
    mode on a text query, say) are counted under `not_applicable`, not scored as zero."""
    rows: list[dict[str, Any]] = []
    not_applicable: dict[str, int] = {}
    latencies: list[float] = []
    for qid, query in _resolve_images(dataset).items():
        try:
            request = request_for(query, mode, index=index, window=window, common=common)
            started = time.perf_counter()
            response = searcher.search(request)
            latencies.append((time.perf_counter() - started) * 1000)
        except InvalidInput as e:
            reason = str(e)
            not_applicable[reason] = not_applicable.get(reason, 0) + 1
            if on_query is not None:
                on_query()
            continue
        ranked = [h.id for h in response.hits if not (ignore_identical_ids and h.id == qid)]
        figures = metrics.evaluate_query(ranked, dataset.qrels[qid], k=k, deep=DEPTH)
        figures |= _group_figures(ranked, dataset.qrels[qid], attributes or {}, k)
        rows.append({"mode": mode.name, "query_id": qid, **figures, "top": ranked[:k]})
        if on_query is not None:
            on_query()
    means = metrics.mean_figures(
        [{key: r[key] for key in r if key not in ("mode", "query_id", "top")} for r in rows]
    )
    summary: dict[str, Any] = {key: round(v, 4) for key, v in means.items()}
    summary["queries"] = len(rows)
    if latencies:
        latencies.sort()
        summary["p50_ms"] = round(latencies[len(latencies) // 2], 2)
    if not_applicable:
        summary["not_applicable"] = not_applicable
    return summary, rows


def _group_figures(
    ranked: list[str],
    relevant: dict[str, float],
    attributes: dict[str, dict[str, str]],
    k: int,
) -> dict[str, float]:
    out: dict[str, float] = {}
    if "style" in attributes:
        out[f"group_ndcg@{k}"] = metrics.group_ndcg_at_k(ranked, relevant, attributes["style"], k)
        out[f"styles@{k}"] = metrics.distinct_at_k(ranked, attributes["style"], k)
    if "colour" in attributes:
        out[f"colours@{k}"] = metrics.distinct_at_k(ranked, attributes["colour"], k)
    return out


def evaluate(
    searcher: Searcher,
    dataset: beir.Dataset,
    modes: Sequence[Mode],
    *,
    index: str,
    k: int = 10,
    window: int = DEPTH,
    ignore_identical_ids: bool = True,
    on_query: Callable[[], None] | None = None,
    common: Mapping[str, Any] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Figures per mode and all per-query rows."""
    results: dict[str, dict[str, Any]] = {}
    per_query: list[dict[str, Any]] = []
    attributes = beir.attributes(dataset.root)
    for mode in modes:
        summary, rows = run_mode(
            searcher,
            dataset,
            mode,
            index=index,
            k=k,
            window=window,
            ignore_identical_ids=ignore_identical_ids,
            on_query=on_query,
            attributes=attributes,
            common=common,
        )
        results[mode.name] = summary
        per_query += rows
    return results, per_query


__all__ = [
    "DEFAULT_MODES",
    "RETRIEVERS",
    "Mode",
    "configured_mode",
    "evaluate",
    "parse_mode",
    "run_mode",
]
