"""Server-side fusion: the engine fuses the sub-searches itself (OpenSearch's search pipelines),
with the same method, rank constant and weights the client-side fusion would use."""

from __future__ import annotations

import time
from collections.abc import Sequence

from modalfuse.engines.base import Engine, Hit, ServerSideFusion, SubSearch
from modalfuse.errors import InvalidInput
from modalfuse.query.request import RetrieverName, SearchHit, SearchRequest, SearchResponse


def fused_in_engine(
    engine: Engine,
    req: SearchRequest,
    index: str,
    names: Sequence[RetrieverName],
    subs: Sequence[SubSearch],
    warnings: list[str],
) -> list[Hit]:
    """The page of hits the engine fused; an engine or a deployment without the capability is
    refused, and how the server's fusion differs from the client-side one is warned."""
    if not isinstance(engine, ServerSideFusion):
        raise InvalidInput(
            f"the {engine.name} engine cannot fuse server-side: leave server_side off",
            field="server_side",
        )
    problem = engine.server_fusion_problem()
    if problem is not None:
        raise InvalidInput(f"{problem}: leave server_side off", field="server_side")
    warnings.extend(engine.server_fusion_caveats(index, req.fusion))
    return engine.fused_search(
        index,
        list(subs),
        method=req.fusion,
        rank_constant=req.k,
        weights=[float(req.weights.get(n, 1.0)) for n in names],
        size=req.size,
        window=req.window,
        from_=req.from_,
    )


def server_side_response(
    req: SearchRequest,
    index: str,
    names: list[RetrieverName],
    hits: Sequence[Hit],
    timings: dict[str, float],
    warnings: list[str],
    started: float,
) -> SearchResponse:
    if req.explain:
        warnings.append("server-side fusion returns fused scores only; explain needs client-side")
    timings["total"] = (time.perf_counter() - started) * 1000
    return SearchResponse(
        index=index,
        hits=[SearchHit(id=h.id, score=h.score, fields=h.source or {}) for h in hits],
        total=len(hits),
        retrievers=names,
        fusion=req.fusion,
        timings_ms={k: round(v, 3) for k, v in timings.items()},
        warnings=warnings,
    )
