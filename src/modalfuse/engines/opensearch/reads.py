"""The OpenSearch engine's reads: searches through the pure builders, fetches and facets."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from modalfuse.engines.base import Hit, KnnQuery, LexicalQuery, SubSearch
from modalfuse.engines.opensearch import queries
from modalfuse.engines.opensearch.connection import Connection
from modalfuse.errors import EngineUnavailable
from modalfuse.mappings import opensearch as os_mappings
from modalfuse.mappings.analysis import PRE_ANALYZED, SHADOW_SUFFIX

T = TypeVar("T")
log = logging.getLogger(__name__)
# A read meeting a lost node is tried this many times more, after 0.2 s, then 0.4 s.
READ_RETRIES = 2
READ_BACKOFF_S = 0.2


class Reads(Connection):
    # -- reads ---------------------------------------------------------------------------

    def hidden_fields(self, index: str) -> list[str]:
        """Fields left out of returned `_source`: vectors (large), the tokens of pre-analysed
        text and the write time (bookkeeping for Dashboards). Cached per index."""
        return self._index_facts(index)[0]

    def analysed_fields(self, index: str) -> list[str]:
        """The index's pre-analysed text fields (their tokens are written beside them)."""
        return self._index_facts(index)[2]

    def _index_facts(self, index: str) -> tuple[list[str], dict[str, int], list[str]]:
        """The hidden fields, each vector field's schema `ef_search` and the pre-analysed text
        fields, read once per index."""
        if index not in self._facts:
            mapping = self._call("mapping", lambda: self.client.indices.get_mapping(index=index))
            fields: list[str] = []
            ef: dict[str, int] = {}
            analysed: list[str] = []
            for body in mapping.values():
                props = body["mappings"].get("properties", {})
                fields += [k for k, v in props.items() if v.get("type") == "knn_vector"]
                fields += [k for k in props if k.endswith(SHADOW_SUFFIX)]
                meta = body["mappings"].get("_meta", {}).get("modalfuse_schema", {})
                for f in meta.get("fields", []):
                    if f.get("type") == "vector" and "hnsw" in f:
                        ef[f["name"]] = int(f["hnsw"]["ef_search"])
                    if f.get("type") == "text" and f.get("analyzer") in PRE_ANALYZED:
                        analysed.append(f["name"])
            hidden = [*sorted(set(fields)), os_mappings.INDEXED_AT]
            self._facts[index] = (hidden, ef, sorted(set(analysed)))
        return self._facts[index]

    def primary_shards(self, index: str) -> int:
        """The primary shards of the index an alias points at (read each time: a re-index may
        swap the alias to a version with another count)."""
        response = self._call(
            "index settings",
            lambda: self.client.indices.get_settings(index=index, name="index.number_of_shards"),
        )
        counts = [int(v["settings"]["index"]["number_of_shards"]) for v in response.values()]
        return max(counts, default=1)

    def _with_ef(self, index: str, query: SubSearch) -> SubSearch:
        """A kNN query without `ef_search` gets its field's from the schema: left to itself the
        lucene engine explores only k candidates, which misses neighbours at small k."""
        if isinstance(query, KnnQuery) and query.ef_search is None:
            ef = self._index_facts(index)[1].get(query.field)
            if ef is not None:
                return dataclasses.replace(query, ef_search=ef)
        return query

    def _read(self, what: str, fn: Callable[[], T]) -> T:
        """A read (idempotent) retried on a transient failure: a node lost mid-query leaves
        failed shards or a dropped connection, and the next try reaches the promoted replica."""
        for attempt in range(READ_RETRIES + 1):
            try:
                return fn()
            except EngineUnavailable:
                if attempt == READ_RETRIES:
                    raise
                self.read_retries += 1
                log.warning(
                    "%s retried after a transient failure (%d so far)", what, self.read_retries
                )
                time.sleep(READ_BACKOFF_S * (attempt + 1))
        raise AssertionError("unreachable")

    def _search(self, index: str, body: dict[str, Any], **params: Any) -> list[Hit]:
        return self._read(
            "search",
            lambda: queries.parse_hits(
                self._call(
                    "search",
                    lambda: self.client.search(index=index, body=body, params=params or None),
                )
            ),
        )

    def _routed(self, index: str, query: SubSearch) -> list[Hit]:
        body = queries.search_body(query, exclude=self.hidden_fields(index))
        head = queries.header(
            index, query, dfs=self._settings.opensearch_dfs, routing=queries.preference([query])
        )
        head.pop("index")
        return self._search(index, body, **head)

    def lexical(self, index: str, query: LexicalQuery) -> list[Hit]:
        return self._routed(index, query)

    def knn(self, index: str, query: KnnQuery) -> list[Hit]:
        return self._routed(index, self._with_ef(index, query))

    def fetch(
        self,
        index: str,
        ids: Sequence[str],
        refs: Mapping[str, Any] | None = None,
        *,
        fields: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        if fields:
            # A few fields of hits a search just returned (a vector for diversity): one search
            # by ids, whose fetch phase reads them in a batch, measured faster than mget's
            # document-by-document realtime gets (docs/ranking.md).
            body = queries.ids_body(ids, fields)
            found = self._search(index, body)
            return {h.id: h.source or {} for h in found}
        params = {"_source_excludes": ",".join(self.hidden_fields(index))}
        response = self._call(
            "mget",
            lambda: self.client.mget(index=index, body=queries.mget_body(ids), params=params),
        )
        return {d["_id"]: d.get("_source") or {} for d in response["docs"] if d.get("found")}

    def facets(
        self, index: str, fields: Sequence[str], *, size: int = 50
    ) -> dict[str, list[tuple[str, int]]]:
        body = queries.facets_body(fields, size)
        response = self._call("facets", lambda: self.client.search(index=index, body=body))
        return queries.parse_facets(response, fields)

    def search_many(self, index: str, subs: Sequence[SubSearch]) -> list[list[Hit]]:
        if not subs:
            return []
        subs = [self._with_ef(index, q) for q in subs]
        lines = queries.msearch_lines(
            index, subs, exclude=self.hidden_fields(index), dfs=self._settings.opensearch_dfs
        )
        return self._read(
            "msearch",
            lambda: queries.parse_msearch(
                self._call("msearch", lambda: self.client.msearch(body=lines))
            ),
        )
