"""The OpenSearch engine: thin I/O through opensearch-py around the pure builders.

The client is created on first use, so a Celery worker can fork before it connects. Transport
failures become `EngineUnavailable` (retryable); a missing index becomes `IndexNotFound`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from modalfuse.engines.base import (
    DeadLetter,
    Deletion,
    Document,
    Hit,
    IndexStats,
    KnnQuery,
    LexicalQuery,
    SubSearch,
    SwapResult,
    WriteResult,
    dead_letter_name,
    physical_name,
    physical_version,
)
from modalfuse.engines.opensearch import bulk, queries
from modalfuse.errors import (
    ConfigError,
    EngineUnavailable,
    IndexNotFound,
    InvalidInput,
    RetrievalError,
)
from modalfuse.mappings import opensearch as os_mappings
from modalfuse.mappings.schema import ResolvedSchema, with_knn_engine
from modalfuse.settings import Settings

T = TypeVar("T")
KNN_PLUGIN = "opensearch-knn"


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `opensearchpy.OpenSearch` from settings (auth and TLS included)."""
    hosts = [h.strip() for h in settings.opensearch_url.split(",") if h.strip()]
    if not hosts:
        raise ConfigError("opensearch_url is empty")
    options: dict[str, Any] = {
        "hosts": hosts,
        "timeout": settings.opensearch_timeout_s,
        "verify_certs": settings.opensearch_verify_certs,
        "ssl_show_warn": settings.opensearch_verify_certs,
    }
    if any(urlsplit(h).scheme == "https" for h in hosts):
        options["use_ssl"] = True
    if settings.opensearch_ca_certs is not None:
        options["ca_certs"] = str(settings.opensearch_ca_certs)
    if settings.opensearch_user is not None:
        password = settings.opensearch_password
        options["http_auth"] = (
            settings.opensearch_user,
            password.get_secret_value() if password is not None else "",
        )
    return options


def with_cluster_sizing(schema: ResolvedSchema, settings: Settings) -> ResolvedSchema:
    """The schema with the shard and replica counts the settings set for this cluster."""
    sizing = {
        k: v
        for k, v in (
            ("shards", settings.opensearch_shards),
            ("replicas", settings.opensearch_replicas),
        )
        if v is not None
    }
    if not sizing:
        return schema
    inner = schema.schema
    updated = inner.model_copy(update={"index": inner.index.model_copy(update=sizing)})
    return dataclasses.replace(schema, schema=updated)


class OpenSearchEngine:
    name = "opensearch"
    needs_periodic_optimize = False  # segments merge on their own

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._pid: int | None = None
        self._facts: dict[str, tuple[list[str], dict[str, int]]] = {}
        self._pipelines: set[str] = set()
        self._version: tuple[int, int] | None = None

    @property
    def client(self) -> Any:
        # One client per process: a client (and its connection pool) inherited across fork()
        # shares sockets with the parent.
        if self._client is None or self._pid != os.getpid():
            from opensearchpy import OpenSearch

            self._client = OpenSearch(**client_options(self._settings))
            self._pid = os.getpid()
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from opensearchpy.exceptions import (
            ConnectionError,
            NotFoundError,
            TransportError,
        )

        try:
            return fn()
        except ConnectionError as e:  # includes ConnectionTimeout and SSL errors
            raise EngineUnavailable(f"{what}: cannot reach OpenSearch: {e}") from e
        except NotFoundError as e:
            raise IndexNotFound(f"{what}: {e.error}") from e
        except TransportError as e:
            if e.status_code in (429, 502, 503, 504):
                raise EngineUnavailable(f"{what}: OpenSearch answered {e.status_code}") from e
            raise RetrievalError(f"{what}: OpenSearch answered {e.status_code}: {e.info}") from e

    # -- lifecycle -----------------------------------------------------------------------

    def plugins(self) -> set[str]:
        rows = self._call("list plugins", lambda: self.client.cat.plugins(format="json"))
        return {str(r.get("component")) for r in rows or []}

    def alias_target(self, alias: str) -> str | None:
        if not self._call("alias", lambda: self.client.indices.exists_alias(name=alias)):
            return None
        found = self._call("alias", lambda: self.client.indices.get_alias(name=alias))
        names = sorted(found)
        return names[0] if names else None

    def versions(self, alias: str) -> list[str]:
        found = self._call(
            "list indices",
            lambda: self.client.indices.get(index=f"{alias}-v*", ignore_unavailable=True),
        )
        named = [(physical_version(alias, n), n) for n in found]
        return [n for v, n in sorted((v, n) for v, n in named if v is not None)]

    def nodes_without_native_knn(self) -> list[str]:
        """Nodes that declare (node attribute `knn_native: false`) that their k-NN plugin has no
        native libraries. Such a node dies on the first faiss or nmslib write, so it must be
        caught before an index is created (scripts/opensearch-node.sh sets the attribute)."""
        rows = self._call(
            "node attributes", lambda: self.client.cat.nodeattrs(format="json", h="node,attr,value")
        )
        return sorted(
            str(r.get("node"))
            for r in rows or []
            if r.get("attr") == "knn_native" and str(r.get("value")).lower() == "false"
        )

    def _preflight(self, schema: ResolvedSchema, plugins: set[str]) -> None:
        if schema.vectors and KNN_PLUGIN not in plugins:
            raise ConfigError(
                f"index {schema.name!r} has vector fields but the cluster has no k-NN plugin "
                f"({KNN_PLUGIN}); installed: {sorted(plugins) or 'none'}"
            )
        native = sorted(n for n, v in schema.vectors.items() if v.field.hnsw.engine != "lucene")
        if native:
            lacking = self.nodes_without_native_knn()
            if lacking:
                raise ConfigError(
                    f"vector field(s) {', '.join(native)} use the faiss k-NN engine, but node(s) "
                    f"{', '.join(lacking)} have no k-NN native libraries and would fail at index "
                    "time: set MODALFUSE_KNN_ENGINE=lucene (or use a cluster with faiss)"
                )

    def create_body(self, schema: ResolvedSchema) -> dict[str, Any]:
        schema = with_knn_engine(
            with_cluster_sizing(schema, self._settings), self._settings.knn_engine
        )
        return os_mappings.index_body(schema)

    def create(self, schema: ResolvedSchema) -> str:
        schema = with_knn_engine(
            with_cluster_sizing(schema, self._settings), self._settings.knn_engine
        )
        alias = schema.name
        plugins = self.plugins()
        self._preflight(schema, plugins)
        existing = self.versions(alias)
        n = max((physical_version(alias, x) or 0 for x in existing), default=0) + 1
        index = physical_name(alias, n)
        has_alias = self.alias_target(alias) is not None
        template = os_mappings.index_template(schema, plugins)
        body = os_mappings.index_body(schema, plugins, alias=None if has_alias else alias)
        self._call(
            "put template",
            lambda: self.client.indices.put_index_template(name=alias, body=template),
        )
        self._call("create index", lambda: self.client.indices.create(index=index, body=body))
        return index

    def swap(self, alias: str, target: str, *, keep_old: bool = True) -> SwapResult:
        if not self._call("check index", lambda: self.client.indices.exists(index=target)):
            raise IndexNotFound(f"no index {target!r} to point {alias!r} at")
        previous = self.alias_target(alias)
        actions: list[dict[str, Any]] = []
        if previous is not None and previous != target:
            actions.append({"remove": {"index": previous, "alias": alias}})
        actions.append({"add": {"index": target, "alias": alias}})
        self._call(
            "update aliases",
            lambda: self.client.indices.update_aliases(body={"actions": actions}),
        )
        dropped = None
        if previous is not None and previous != target and not keep_old:
            self._call("drop old index", lambda: self.client.indices.delete(index=previous))
            dropped = previous
        return SwapResult(alias=alias, previous=previous, current=target, dropped=dropped)

    def drop(self, name: str) -> list[str]:
        target = self.alias_target(name)
        if target is not None:
            names = self.versions(name) or [target]
            self._call("drop", lambda: self.client.indices.delete(index=",".join(names)))
            with contextlib.suppress(IndexNotFound):
                self._call(
                    "drop template", lambda: self.client.indices.delete_index_template(name=name)
                )
            return names
        alias = name.rsplit("-v", 1)[0]
        if self.alias_target(alias) == name:
            raise ConfigError(
                f"{name!r} is the current index of alias {alias!r}: swap the alias first, "
                f"or drop {alias!r} to remove every version"
            )
        self._call("drop", lambda: self.client.indices.delete(index=name))
        return [name]

    def _resolve(self, name: str) -> tuple[str | None, str]:
        target = self.alias_target(name)
        return (name, target) if target is not None else (None, name)

    def stats(self, name: str) -> IndexStats:
        alias, index = self._resolve(name)
        raw = self._call("stats", lambda: self.client.indices.stats(index=index))
        primaries = raw["indices"][index]["primaries"]
        mapping = self._call("mapping", lambda: self.client.indices.get_mapping(index=index))
        props = mapping[index]["mappings"].get("properties", {})
        return IndexStats(
            alias=alias,
            index=index,
            documents=int(primaries["docs"]["count"]),
            vector_fields={
                k: int(v["dimension"]) for k, v in props.items() if v.get("type") == "knn_vector"
            },
            size_bytes=int(primaries.get("store", {}).get("size_in_bytes", 0)),
            versions=self.versions(alias) if alias else [index],
            details={"deleted_docs": int(primaries["docs"].get("deleted", 0))},
        )

    def schema_of(self, name: str) -> ResolvedSchema:
        _, index = self._resolve(name)
        mapping = self._call("mapping", lambda: self.client.indices.get_mapping(index=index))
        return os_mappings.schema_from_meta(mapping[index]["mappings"].get("_meta", {}))

    def fusion_defaults(self, name: str) -> dict[str, Any] | None:
        _, index = self._resolve(name)
        mapping = self._call("mapping", lambda: self.client.indices.get_mapping(index=index))
        meta = mapping[index]["mappings"].get("_meta", {})
        found = meta.get(os_mappings.FUSION_META)
        return dict(found) if isinstance(found, dict) else None

    def set_fusion_defaults(self, name: str, config: Mapping[str, Any] | None) -> str:
        _, index = self._resolve(name)
        mapping = self._call("mapping", lambda: self.client.indices.get_mapping(index=index))
        body = os_mappings.fusion_meta_body(mapping[index]["mappings"].get("_meta", {}), config)
        self._call("put mapping", lambda: self.client.indices.put_mapping(index=index, body=body))
        return index

    def refresh(self, index: str) -> None:
        self._call("refresh", lambda: self.client.indices.refresh(index=index))

    def optimize(self, index: str) -> None:
        self._call(
            "force merge",
            lambda: self.client.indices.forcemerge(index=index, only_expunge_deletes=True),
        )

    def put_pipeline(self, name: str, body: dict[str, Any]) -> None:
        self._call(
            "put search pipeline",
            lambda: self.client.transport.perform_request(
                "PUT", f"/_search/pipeline/{name}", body=body
            ),
        )

    # -- dead letters --------------------------------------------------------------------

    def dead_letter(self, index: str, records: Sequence[DeadLetter]) -> None:
        from opensearchpy import helpers

        if not records:
            return
        name = dead_letter_name(index)
        if not self._call("check index", lambda: self.client.indices.exists(index=name)):
            body = {"mappings": os_mappings.DEAD_LETTER_MAPPING}
            self._call(
                "create dead-letter index",
                lambda: self.client.indices.create(index=name, body=body, ignore=400),
            )
        actions = [
            {"_op_type": "index", "_index": name, "_id": r.id, "_source": _dl_source(r)}
            for r in records
        ]
        _, errors = self._call(
            "dead-letter",
            lambda: helpers.bulk(self.client, actions, raise_on_error=False, refresh="wait_for"),
        )
        if errors:
            raise EngineUnavailable(
                f"dead-letter write failed for {len(errors)} record(s): {errors[0]}"
            )

    def dead_letters(self, index: str, *, limit: int = 100) -> list[DeadLetter]:
        name = dead_letter_name(index)
        if not self._call("check index", lambda: self.client.indices.exists(index=name)):
            return []
        body = {"query": {"match_all": {}}, "size": limit, "sort": [{"time": {"order": "desc"}}]}
        response = self._call("search", lambda: self.client.search(index=name, body=body))
        return [_dl_record(h["_source"]) for h in response["hits"]["hits"]]

    def drop_dead_letters(self, index: str, ids: Sequence[str] | None = None) -> int:
        from opensearchpy import helpers

        name = dead_letter_name(index)
        if not self._call("check index", lambda: self.client.indices.exists(index=name)):
            return 0
        if ids is None:
            ids = [r.id for r in self.dead_letters(index, limit=10_000)]
        actions = [{"_op_type": "delete", "_index": name, "_id": i} for i in ids]
        ok, _ = self._call(
            "drop dead letters",
            lambda: helpers.bulk(self.client, actions, raise_on_error=False, refresh="wait_for"),
        )
        return int(ok)

    def append_query_log(self, records: Sequence[dict[str, Any]]) -> None:
        import json as _json

        from opensearchpy import helpers

        from modalfuse.query.querylog import QUERY_LOG

        if not records:
            return
        if not self._call("check index", lambda: self.client.indices.exists(index=QUERY_LOG)):
            body = {"mappings": os_mappings.QUERY_LOG_MAPPING}
            self._call(
                "create query log",
                lambda: self.client.indices.create(index=QUERY_LOG, body=body, ignore=400),
            )
        actions = [
            {
                "_op_type": "index",
                "_index": QUERY_LOG,
                "_source": r
                | {"time": r["time"].isoformat(), "latency_ms": _json.loads(r["latency_ms"])},
            }
            for r in records
        ]
        self._call("query log", lambda: helpers.bulk(self.client, actions, raise_on_error=False))

    def recent_queries(self, *, limit: int = 100) -> list[dict[str, Any]]:
        from modalfuse.query.querylog import QUERY_LOG

        if not self._call("check index", lambda: self.client.indices.exists(index=QUERY_LOG)):
            return []
        self.refresh(QUERY_LOG)
        body = {"query": {"match_all": {}}, "size": limit, "sort": [{"time": {"order": "desc"}}]}
        response = self._call("search", lambda: self.client.search(index=QUERY_LOG, body=body))
        return [dict(h["_source"]) for h in response["hits"]["hits"]]

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # -- writes --------------------------------------------------------------------------

    def _bulk(self, actions: list[dict[str, Any]]) -> WriteResult:
        from opensearchpy import helpers

        s = self._settings

        def run() -> Iterator[tuple[bool, dict[str, Any]]]:
            # streaming_bulk retries exactly the items rejected with 429, backing off
            # exponentially up to max_backoff; other per-item errors come back to classify.
            return helpers.streaming_bulk(  # type: ignore[no-any-return]
                self.client,
                actions,
                chunk_size=s.bulk_chunk_docs,
                max_chunk_bytes=s.bulk_chunk_bytes,
                raise_on_error=False,
                raise_on_exception=True,
                max_retries=s.bulk_max_retries,
                initial_backoff=1,
                max_backoff=int(s.bulk_max_backoff_s),
            )

        result = WriteResult()
        for ok, item in self._call("bulk", lambda: list(run())):
            outcome, doc_id, error = bulk.classify(ok, item)
            if outcome == "written":
                result.written.append(doc_id)
            elif outcome == "stale":
                result.stale.append(doc_id)
            else:
                assert error is not None
                result.failed.append(error)
        return result

    def upsert(self, index: str, docs: Sequence[Document]) -> WriteResult:
        if not docs:
            return WriteResult()
        now = datetime.now(UTC).isoformat()
        return self._bulk(bulk.upsert_actions(index, docs, indexed_at=now))

    def delete(self, index: str, deletions: Sequence[Deletion]) -> WriteResult:
        return self._bulk(bulk.delete_actions(index, deletions)) if deletions else WriteResult()

    # -- reads ---------------------------------------------------------------------------

    def hidden_fields(self, index: str) -> list[str]:
        """Fields left out of returned `_source`: vectors (large) and the write time
        (bookkeeping for Dashboards). Cached per index."""
        return self._index_facts(index)[0]

    def _index_facts(self, index: str) -> tuple[list[str], dict[str, int]]:
        """The hidden fields and each vector field's schema `ef_search`, read once per index."""
        if index not in self._facts:
            mapping = self._call("mapping", lambda: self.client.indices.get_mapping(index=index))
            fields: list[str] = []
            ef: dict[str, int] = {}
            for body in mapping.values():
                props = body["mappings"].get("properties", {})
                fields += [k for k, v in props.items() if v.get("type") == "knn_vector"]
                meta = body["mappings"].get("_meta", {}).get("modalfuse_schema", {})
                for f in meta.get("fields", []):
                    if f.get("type") == "vector" and "hnsw" in f:
                        ef[f["name"]] = int(f["hnsw"]["ef_search"])
            self._facts[index] = ([*sorted(set(fields)), os_mappings.INDEXED_AT], ef)
        return self._facts[index]

    def _with_ef(self, index: str, query: SubSearch) -> SubSearch:
        """A kNN query without `ef_search` gets its field's from the schema: left to itself the
        lucene engine explores only k candidates, which misses neighbours at small k."""
        if isinstance(query, KnnQuery) and query.ef_search is None:
            ef = self._index_facts(index)[1].get(query.field)
            if ef is not None:
                return dataclasses.replace(query, ef_search=ef)
        return query

    def _search(self, index: str, body: dict[str, Any], **params: Any) -> list[Hit]:
        response = self._call(
            "search", lambda: self.client.search(index=index, body=body, params=params or None)
        )
        return queries.parse_hits(response)

    def lexical(self, index: str, query: LexicalQuery) -> list[Hit]:
        return self._search(index, queries.search_body(query, exclude=self.hidden_fields(index)))

    def knn(self, index: str, query: KnnQuery) -> list[Hit]:
        query = self._with_ef(index, query)  # type: ignore[assignment]
        return self._search(index, queries.search_body(query, exclude=self.hidden_fields(index)))

    def fetch(
        self, index: str, ids: Sequence[str], refs: Mapping[str, Any] | None = None
    ) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        response = self._call(
            "mget",
            lambda: self.client.mget(
                index=index,
                body=queries.mget_body(ids),
                params={"_source_excludes": ",".join(self.hidden_fields(index))},
            ),
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
        lines = queries.msearch_lines(index, subs, exclude=self.hidden_fields(index))
        response = self._call("msearch", lambda: self.client.msearch(body=lines))
        return queries.parse_msearch(response)

    def server_version(self) -> tuple[int, int]:
        if self._version is None:
            number = self._call("info", lambda: self.client.info())["version"]["number"]
            major, minor = (int(x) for x in str(number).split(".")[:2])
            self._version = (major, minor)
        return self._version

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
        body = queries.hybrid_body(
            [self._with_ef(index, q) for q in subs],
            size=size,
            window=window,
            from_=from_,
            exclude=self.hidden_fields(index),
        )
        return self._search(index, body, search_pipeline=pipeline)


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


def _dl_source(r: DeadLetter) -> dict[str, Any]:
    return {
        "id": r.id,
        "index": r.index,
        "doc_id": r.doc_id,
        "message": r.message,
        "error_type": r.error_type,
        "field": r.field,
        "reason": r.reason,
        "attempts": r.attempts,
        "time": r.time.isoformat(),
    }


def _dl_record(src: dict[str, Any]) -> DeadLetter:
    from datetime import datetime

    return DeadLetter(
        id=src["id"],
        index=src["index"],
        doc_id=src.get("doc_id"),
        message=src["message"],
        error_type=src["error_type"],
        field=src.get("field"),
        reason=src["reason"],
        attempts=int(src["attempts"]),
        time=datetime.fromisoformat(src["time"]),
    )
