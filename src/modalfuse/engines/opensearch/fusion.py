"""Server-side fusion on OpenSearch: a search pipeline (score-ranker or normalization
processor) made from the same parameters as the client-side fusion, and one `hybrid` query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from modalfuse.engines.base import Hit, SubSearch
from modalfuse.engines.opensearch import queries
from modalfuse.engines.opensearch.reads import Reads
from modalfuse.errors import InvalidInput
from modalfuse.mappings import opensearch as os_mappings

# The plugin whose search pipeline processors (score-ranker, normalization) fuse server-side.
FUSING_PLUGIN = "neural-search"


class ServerFusion(Reads):
    def server_fusion_problem(self) -> str | None:
        """None when every node has neural-search (a pipeline is created on whichever node
        the request reaches), else which nodes lack it."""
        if self._fusion_problem is None:
            rows = self._call("cat plugins", lambda: self.client.cat.plugins(format="json"))
            nodes = {str(r.get("name")) for r in rows}
            with_it = {str(r.get("name")) for r in rows if FUSING_PLUGIN in str(r.get("component"))}
            nodes |= set(self._node_names())
            lacking = sorted(nodes - with_it)
            self._fusion_problem = (
                f"the cluster lacks the {FUSING_PLUGIN} plugin (its score-ranker and "
                f"normalization search processors fuse server-side) on {', '.join(lacking)}"
                if lacking
                else ""
            )
        return self._fusion_problem or None

    def _node_names(self) -> list[str]:
        rows = self._call("cat nodes", lambda: self.client.cat.nodes(format="json", h="name"))
        return [str(r.get("name")) for r in rows]

    def server_fusion_caveats(self, index: str, method: str) -> list[str]:
        shards = self.primary_shards(index)
        if shards <= 1:
            return []
        how = (
            "ranks each shard's hits on their own (RRF ranks are per shard)"
            if method == "rrf"
            else f"normalises over every shard's top window ({shards} x window hits per list)"
        )
        return [
            f"server-side {method} on {shards} shards {how}, as neural-search does; "
            "client-side fusion of the same request ranks over the index's global lists"
        ]

    def put_pipeline(self, name: str, body: dict[str, Any]) -> None:
        self._call(
            "put search pipeline",
            lambda: self.client.transport.perform_request(
                "PUT", f"/_search/pipeline/{name}", body=body
            ),
        )

    def prepare_fusion(
        self, index: str, *, method: str, rank_constant: int, weights: Sequence[float]
    ) -> str:
        if method == "rrf" and any(w != 1.0 for w in weights) and self.server_version() < (3, 0):
            version = ".".join(map(str, self.server_version()))
            raise InvalidInput(
                f"OpenSearch {version} cannot weight RRF server-side (the score-ranker-processor "
                "takes weights from 3.0): use client-side fusion or equal weights",
                field="weights",
            )
        if method == "auto":
            raise InvalidInput(
                "a search pipeline cannot express auto fusion (one vote per query embedding, a "
                "document counting with the better of that vote's scores): fuse server-side "
                "with rrf or minmax, or leave server_side off",
                field="fusion",
            )
        if method == "zscore" and self.server_version() < (3, 0):
            version = ".".join(map(str, self.server_version()))
            raise InvalidInput(
                f"OpenSearch {version} cannot fuse zscore server-side (its normalization-processor "
                "has z_score from 3.0): use client-side fusion, or minmax or rrf",
                field="fusion",
            )
        name, body = search_pipeline(index, method, rank_constant, list(weights))
        if name not in self._pipelines:
            self.put_pipeline(name, body)
            self._pipelines.add(name)
        return name

    def fused_search(
        self,
        index: str,
        subs: Sequence[SubSearch],
        *,
        method: str,
        rank_constant: int,
        weights: Sequence[float],
        size: int,
        window: int,
        from_: int = 0,
    ) -> list[Hit]:
        """Server-side fusion: a search pipeline doing what `fusion.fuse` does client-side (same
        method, rank constant and weights), created on first use, then one `hybrid` query."""
        name = self.prepare_fusion(
            index, method=method, rank_constant=rank_constant, weights=weights
        )
        return self.hybrid(index, subs, pipeline=name, size=size, window=window, from_=from_)

    def hybrid(
        self,
        index: str,
        subs: Sequence[SubSearch],
        *,
        pipeline: str,
        size: int,
        window: int,
        from_: int = 0,
    ) -> list[Hit]:
        """Server-side fusion: one `hybrid` query through a search pipeline (2.19+)."""
        subs = [self._with_ef(index, q) for q in subs]
        body = queries.hybrid_body(
            subs, size=size, window=window, from_=from_, exclude=self.hidden_fields(index)
        )
        # Never dfs_query_then_fetch: on several shards its DFS phase skips the search
        # pipeline's normalisation and returns the sub-queries unfused (neural-search #1490).
        params: dict[str, Any] = {
            "search_pipeline": pipeline,
            "preference": queries.preference(subs),
        }
        return self._search(index, body, **params)


def search_pipeline(
    index: str, method: str, rank_constant: int, weights: list[float]
) -> tuple[str, dict[str, Any]]:
    """The search pipeline (name and body) that fuses as `fusion.fuse` does client-side: the
    same method, rank constant and per-sub-search weights, in sub-query order. One pipeline per
    distinct setting, so concurrent queries never rewrite one."""
    if method == "rrf":
        body = os_mappings.rrf_pipeline(rank_constant=rank_constant, weights=weights)
    elif method in ("minmax", "zscore"):
        technique: Literal["min_max", "z_score"] = "min_max" if method == "minmax" else "z_score"
        body = os_mappings.normalization_pipeline(technique=technique, weights=weights)
    else:
        raise InvalidInput(f"OpenSearch cannot fuse {method!r} server-side", field="fusion")
    tag = "-".join(f"{w:g}" for w in weights).replace(".", "_")
    return f"{index}-{method}-k{rank_constant}-w{tag}", body
