"""The OpenSearch engine: thin I/O through opensearch-py around the pure builders.

This module holds the catalogue (versioned indices behind aliases, the k-NN preflight) and the
writes; the connection, the reads, server-side fusion and the side stores are the parts it is
made of (`connection.py`, `reads.py`, `fusion.py`, `stores.py`). The client is created on first
use, so a Celery worker can fork before it connects. Transport failures become
`EngineUnavailable` (retryable); a missing index becomes `IndexNotFound`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from modalfuse.engines.base import (
    Deletion,
    Document,
    IndexStats,
    SwapResult,
    WriteResult,
    physical_name,
    physical_version,
)
from modalfuse.engines.opensearch import bulk
from modalfuse.engines.opensearch.fusion import ServerFusion
from modalfuse.engines.opensearch.smile import SmileBulk
from modalfuse.engines.opensearch.stores import SideStores
from modalfuse.errors import (
    ConfigError,
    IndexNotFound,
    TransientError,
)
from modalfuse.mappings import opensearch as os_mappings
from modalfuse.mappings.schema import ResolvedSchema, StoredKind, with_knn_engine
from modalfuse.settings import Settings

KNN_PLUGIN = "opensearch-knn"
# k-NN 3.x stores vectors outside `_source` and derives them back on reads (on by default).
DERIVED_SOURCE = "index.knn.derived_source.enabled"

log = logging.getLogger(__name__)


def copies_to_wait_for(replicas: int, data_nodes: int) -> int:
    """How many copies of each shard a new index waits for: its primary and replicas, or as
    many as the cluster's data nodes can hold (a replica never shares its primary's node)."""
    return max(1, min(replicas + 1, data_nodes))


def with_cluster_sizing(schema: ResolvedSchema, settings: Settings) -> ResolvedSchema:
    """The schema with the shard and replica counts (and replication) the settings set for
    this cluster."""
    sizing = {
        k: v
        for k, v in (
            ("shards", settings.opensearch_shards),
            ("replicas", settings.opensearch_replicas),
            ("replication", settings.opensearch_replication),
            ("refresh_interval", settings.opensearch_refresh_interval),
        )
        if v is not None
    }
    if not sizing:
        return schema
    inner = schema.schema
    updated = inner.model_copy(update={"index": inner.index.model_copy(update=sizing)})
    return dataclasses.replace(schema, schema=updated)


class OpenSearchEngine(ServerFusion, SideStores):
    name = "opensearch"
    needs_periodic_optimize = False  # segments merge on their own

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
        return self._for_load(os_mappings.index_body(schema))

    def _for_load(self, body: dict[str, Any]) -> dict[str, Any]:
        # The schema in _meta keeps the index's own values, which finish_load restores.
        index = body["settings"]["index"]
        if (replicas := self._settings.opensearch_load_replicas) is not None:
            index["number_of_replicas"] = replicas
        if (refresh := self._settings.opensearch_load_refresh_interval) is not None:
            index["refresh_interval"] = refresh
        return body

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
        body = self._for_load(
            os_mappings.index_body(schema, plugins, alias=None if has_alias else alias)
        )
        self._call(
            "put template",
            lambda: self.client.indices.put_index_template(name=alias, body=template),
        )
        # Every copy started before the index is handed out: otherwise the replicas' recovery
        # runs beside the first writes (and a swap could point at a yellow index).
        replicas = int(body["settings"]["index"]["number_of_replicas"])
        health = self._call("cluster health", lambda: self.client.cluster.health())
        wait = copies_to_wait_for(replicas, int(health["number_of_data_nodes"]))
        created = self._call(
            "create index",
            lambda: self.client.indices.create(
                index=index, body=body, params={"wait_for_active_shards": str(wait)}
            ),
        )
        if not created.get("shards_acknowledged", True):
            log.warning(
                "index %s was created, but not %d copies of each shard in time", index, wait
            )
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
            details={
                "deleted_docs": int(primaries["docs"].get("deleted", 0)),
                "shard_copies": int(raw.get("_shards", {}).get("total", 0)),
                "store_bytes_all_copies": int(
                    raw["indices"][index].get("total", {}).get("store", {}).get("size_in_bytes", 0)
                ),
            },
        )

    def heap_used_mb(self) -> dict[str, int]:
        # Not part of stats(): health checks read stats, and node stats ask every node.
        raw = self._call("node stats", lambda: self.client.nodes.stats(metric="jvm"))
        return {
            n.get("name", node_id): int(n["jvm"]["mem"]["heap_used_in_bytes"]) >> 20
            for node_id, n in raw.get("nodes", {}).items()
        }

    def finish_load(self, name: str) -> dict[str, Any]:
        # An alias answers with its index: one request names the index and its settings.
        raw = self._call("settings", lambda: self.client.indices.get_settings(index=name))
        [(index, got)] = raw.items()
        body = os_mappings.restored_after_load(
            got["settings"]["index"], self.schema_of(index).schema.index
        )
        if not body:
            return {}
        self._call(
            "restore settings",
            lambda: self.client.indices.put_settings(index=index, body={"index": body}),
        )
        if "number_of_replicas" not in body:
            return body
        wait_s = max(60.0, self._settings.opensearch_timeout_s)
        health = self._call(
            "wait for replicas",
            lambda: self.client.cluster.health(
                index=index,
                wait_for_status="green",
                timeout=f"{int(wait_s)}s",
                params={"request_timeout": wait_s + 10},
            ),
        )
        if health.get("timed_out"):
            raise TransientError(
                f"index {index!r}: {body['number_of_replicas']} replica(s) set, but not every "
                f"copy was active after {int(wait_s)} s (status {health.get('status')}); they "
                "are still recovering"
            )
        return body

    def node_cpu_s(self) -> dict[str, float]:
        raw = self._call("node stats", lambda: self.client.nodes.stats(metric="process"))
        return {
            n.get("name", node_id): int(n["process"]["cpu"]["total_in_millis"]) / 1000
            for node_id, n in raw.get("nodes", {}).items()
        }

    def schema_of(self, name: str) -> ResolvedSchema:
        _, index = self._resolve(name)
        mapping = self._call("mapping", lambda: self.client.indices.get_mapping(index=index))
        return os_mappings.schema_from_meta(mapping[index]["mappings"].get("_meta", {}))

    def stored_settings(self, name: str, kind: StoredKind) -> dict[str, Any] | None:
        _, index = self._resolve(name)
        mapping = self._call("mapping", lambda: self.client.indices.get_mapping(index=index))
        meta = mapping[index]["mappings"].get("_meta", {})
        found = meta.get(os_mappings.meta_key(kind))
        return dict(found) if isinstance(found, dict) else None

    def store_settings(self, name: str, kind: StoredKind, value: Mapping[str, Any] | None) -> str:
        _, index = self._resolve(name)
        mapping = self._call("mapping", lambda: self.client.indices.get_mapping(index=index))
        current = mapping[index]["mappings"].get("_meta", {})
        body = os_mappings.stored_meta_body(current, kind, value)
        self._call("put mapping", lambda: self.client.indices.put_mapping(index=index, body=body))
        return index

    def optimize(self, index: str) -> None:
        self._call(
            "force merge",
            lambda: self.client.indices.forcemerge(index=index, only_expunge_deletes=True),
        )

    # -- writes --------------------------------------------------------------------------

    def bulk_format(self, index: str) -> Literal["smile", "json"]:
        """The body this engine's bulk writes to `index` use: the setting's, except JSON where
        the index derives its vectors' `_source` (k-NN 3.x's default): k-NN up to 3.3 parses the
        stored source there as JSON whatever its type (opensearch-project/k-NN#3529), and then
        refuses every Smile document."""
        if self._settings.opensearch_bulk_format == "json":
            return "json"
        if index not in self._bulk_formats:
            derives = False
            if self.server_version() >= (3, 0):
                raw = self._call(
                    "index settings",
                    lambda: self.client.indices.get_settings(
                        index=index, name=DERIVED_SOURCE, include_defaults=True, flat_settings=True
                    ),
                )
                derives = any(
                    str(part.get(DERIVED_SOURCE, "")).lower() == "true"
                    for per_index in raw.values()
                    for part in (per_index.get("settings", {}), per_index.get("defaults", {}))
                )
            self._bulk_formats[index] = "json" if derives else "smile"
        return self._bulk_formats[index]

    def _bulk(self, actions: list[dict[str, Any]], *, smile: bool = False) -> WriteResult:
        from opensearchpy import helpers

        s = self._settings

        def run() -> Iterator[tuple[bool, dict[str, Any]]]:
            # streaming_bulk retries exactly the items rejected with 429, backing off
            # exponentially up to max_backoff; other per-item errors come back to classify.
            return helpers.streaming_bulk(  # type: ignore[no-any-return]
                SmileBulk(self.client) if smile else self.client,
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
        analysed = self.analysed_fields(index)
        return self._bulk(
            bulk.upsert_actions(index, docs, indexed_at=now, analysed=analysed),
            smile=self.bulk_format(index) == "smile",
        )

    def delete(self, index: str, deletions: Sequence[Deletion]) -> WriteResult:
        return self._bulk(bulk.delete_actions(index, deletions)) if deletions else WriteResult()
