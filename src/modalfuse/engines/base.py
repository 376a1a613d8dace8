"""The engine protocol and the engine-neutral types that cross it.

Ingest and query talk only to `Engine`; everything OpenSearch- or LanceDB-specific stays in that
engine's module. Names: an *alias* (`products`) points at one *physical* index
(`products-v3`); reads and writes go through the alias.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from modalfuse.engines.filters import Filter
from modalfuse.errors import IndexingError
from modalfuse.mappings.querylog import QueryLogRecord
from modalfuse.mappings.schema import ResolvedSchema, StoredKind

# Lexical search over several text fields scores a document by its best field plus this share
# of its other fields' scores (OpenSearch's `best_fields` multi_match with a tie breaker; the
# setting BEIR's Elasticsearch baseline uses), so a title match is not drowned by body length.
MULTI_FIELD_TIE_BREAKER = 0.5

_PHYSICAL = re.compile(r"^(?P<alias>.+)-v(?P<n>[0-9]+)$")


def physical_name(alias: str, version: int) -> str:
    return f"{alias}-v{version}"


def physical_version(alias: str, name: str) -> int | None:
    """`3` for `products-v3` under alias `products`; None for names that are not its versions."""
    m = _PHYSICAL.match(name)
    return int(m["n"]) if m and m["alias"] == alias else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Document:
    """A validated document ready to write: schema fields plus the vectors computed for it."""

    id: str
    version: int
    fields: dict[str, Any]
    vectors: dict[str, NDArray[np.float32] | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Deletion:
    id: str
    version: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class LexicalQuery:
    """BM25 over text fields; `fields` maps field name to boost."""

    text: str
    fields: dict[str, float]
    k: int = 10
    filters: Sequence[Filter] = ()
    # False: ids and scores only. The query layer fetches fields for the returned page alone,
    # which saves materialising `k` rows per retriever.
    source: bool = True
    # With `source` False: the few stored fields each hit still carries (what ranking after
    # fusion reads: signals, a group key, a vector for diversity), so it needs no round trip.
    returned: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class KnnQuery:
    """Nearest neighbours of `vector` on one vector field, filtered inside the search."""

    field: str
    vector: Sequence[float] | NDArray[np.float32]
    k: int = 10
    filters: Sequence[Filter] = ()
    ef_search: int | None = None
    source: bool = True
    returned: tuple[str, ...] = ()  # as LexicalQuery.returned


SubSearch = LexicalQuery | KnnQuery


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hit:
    """One result. `score` is the engine's raw score (higher is better); `source` omits vectors."""

    id: str
    score: float
    source: dict[str, Any] | None = None
    # An engine's handle for a cheap `fetch` of this hit (LanceDB's row id); None elsewhere.
    ref: Any = None


@dataclasses.dataclass(kw_only=True)
class WriteResult:
    """Outcome of a batch write. Stale items lost to a newer version are not failures."""

    written: list[str] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)
    failed: list[IndexingError] = dataclasses.field(default_factory=list)

    def merge(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            written=self.written + other.written,
            stale=self.stale + other.stale,
            failed=self.failed + other.failed,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A message that can never succeed (or ran out of retries), kept with why."""

    id: str
    index: str
    doc_id: str | None
    message: str  # the original message, as JSON text
    error_type: str
    field: str | None
    reason: str
    attempts: int
    time: datetime


def dead_letter_name(index: str) -> str:
    return f"{index}{DEAD_LETTER_SUFFIX}"


DEAD_LETTER_SUFFIX = "-deadletter"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SwapResult:
    alias: str
    previous: str | None
    current: str
    dropped: str | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class IndexStats:
    alias: str | None
    index: str
    documents: int
    vector_fields: dict[str, int]
    size_bytes: int | None
    versions: list[str]
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Closable:
    """A context manager over `close()`: `with open_engine(settings) as engine: ...`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class Catalogue(Protocol):
    """Indices: versioned physical indices behind an alias, their schema and stored settings."""

    name: str
    # True where the engine needs compaction and index builds run now and then (LanceDB);
    # False where it maintains itself (OpenSearch merges on its own).
    needs_periodic_optimize: bool
    # Commits this engine object retried after a conflict with another writer (LanceDB: a
    # compaction, index build or write preempted by a concurrent one). OpenSearch resolves
    # concurrent writes itself, so it stays 0 there.
    commit_retries: int

    def create(self, schema: ResolvedSchema) -> str:
        """Create the next physical index `<alias>-v<N>`; point the alias at it if it has none."""
        ...

    def create_body(self, schema: ResolvedSchema) -> dict[str, Any]:
        """What `create` would send or build, without connecting (`index create --dry-run`)."""
        ...

    def drop(self, name: str) -> list[str]:
        """Drop a physical index (not the alias's current one), or an alias and all its versions."""
        ...

    def swap(self, alias: str, target: str, *, keep_old: bool = True) -> SwapResult:
        """Atomically point `alias` at `target`; drop the previous index unless `keep_old`."""
        ...

    def stats(self, name: str) -> IndexStats: ...

    def alias_target(self, alias: str) -> str | None:
        """The physical index an alias points at; None when there is no such alias."""
        ...

    def schema_of(self, name: str) -> ResolvedSchema:
        """The schema an index was created from (kept in the index itself)."""
        ...

    def stored_settings(self, name: str, kind: StoredKind) -> dict[str, Any] | None:
        """What is stored with the index as its `kind` settings: its default fusion
        (`modalfuse index set-fusion`), its default ranking (`index set-ranking`) or its
        merchandising rules (`modalfuse rules`); None when nothing is."""
        ...

    def store_settings(self, name: str, kind: StoredKind, value: Mapping[str, Any] | None) -> str:
        """Store (or, with None, clear) the index's `kind` settings; returns the physical index."""
        ...

    def refresh(self, index: str) -> None:
        """Make acknowledged writes visible to search (a no-op where they already are)."""
        ...

    def optimize(self, index: str) -> None: ...

    def close(self) -> None:
        """Release the connection (the engine reconnects if used again)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Writer(Protocol):
    """Idempotent, versioned writes by document id."""

    def upsert(self, index: str, docs: Sequence[Document]) -> WriteResult: ...

    def delete(self, index: str, deletions: Sequence[Deletion]) -> WriteResult: ...


@runtime_checkable
class Retriever(Protocol):
    """Searches, each filtered inside the engine, and fetches of stored fields."""

    def lexical(self, index: str, query: LexicalQuery) -> list[Hit]: ...

    def knn(self, index: str, query: KnnQuery) -> list[Hit]: ...

    def search_many(self, index: str, queries: Sequence[SubSearch]) -> list[list[Hit]]:
        """Run several sub-searches at once (one `_msearch`, or concurrent calls)."""
        ...

    def facets(
        self, index: str, fields: Sequence[str], *, size: int = 50
    ) -> dict[str, list[tuple[str, int]]]:
        """The most frequent values of keyword fields, with counts (most frequent first)."""
        ...

    def fetch(
        self,
        index: str,
        ids: Sequence[str],
        refs: Mapping[str, Any] | None = None,
        *,
        fields: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Stored fields (no vectors) of the given documents; missing ids are left out.
        `refs` are the `Hit.ref` handles the search returned, when the engine has them.
        `fields`: only these, vector fields included (what diversity over a vector reads)."""
        ...


@runtime_checkable
class DeadLetterStore(Protocol):
    """Messages that can never succeed, kept with why, per index."""

    def dead_letter(self, index: str, records: Sequence[DeadLetter]) -> None:
        """Store records in `<index>-deadletter`, creating it on first use."""
        ...

    def dead_letters(self, index: str, *, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""
        ...

    def drop_dead_letters(self, index: str, ids: Sequence[str] | None = None) -> int:
        """Remove the given records (all of them when `ids` is None); returns how many."""
        ...


@runtime_checkable
class QueryLogSink(Protocol):
    """Where the query log goes (`modalfuse-querylog`), and what it holds."""

    def append_query_log(self, records: Sequence[QueryLogRecord]) -> None:
        """Append query-log records, creating the log on first use."""
        ...

    def recent_queries(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """The newest query-log records, newest first (empty when nothing was logged)."""
        ...


@runtime_checkable
class Engine(Catalogue, Writer, Retriever, DeadLetterStore, QueryLogSink, Protocol):
    """An engine is every seam at once; code that needs one seam types against that one."""


@runtime_checkable
class NodeHeaps(Protocol):
    """An engine that runs on server nodes with their own heaps (OpenSearch's JVMs)."""

    def heap_used_mb(self) -> dict[str, int]:
        """Each node's heap in use, in MiB, by node name: what sizing a cluster starts from."""
        ...


@runtime_checkable
class BulkLoads(Protocol):
    """An engine that can load a new index lighter than it serves it (OpenSearch: with fewer
    replicas and without refreshes, MODALFUSE_OPENSEARCH_LOAD_REPLICAS and
    MODALFUSE_OPENSEARCH_LOAD_REFRESH_INTERVAL, until the load ends)."""

    def finish_load(self, name: str) -> dict[str, Any]:
        """Give a loaded index its own settings back, waiting until every copy is active when
        its replicas change; the settings restored (empty when it already had its own)."""
        ...


@runtime_checkable
class NodeCpu(Protocol):
    """An engine whose server nodes do work of their own (OpenSearch's JVMs: indexing, merges,
    their JIT compilers), so a benchmark can say what share of the machine they took."""

    def node_cpu_s(self) -> dict[str, float]:
        """Each node process's CPU seconds since it started, by node name."""
        ...


@runtime_checkable
class ServerSideFusion(Protocol):
    """An engine that fuses sub-searches itself, keeping paging in the cluster (OpenSearch: one
    `hybrid` query through a search pipeline). Engines without it fuse client-side only."""

    def prepare_fusion(
        self, index: str, *, method: str, rank_constant: int, weights: Sequence[float]
    ) -> str:
        """Make the server ready to fuse this way (OpenSearch: the search pipeline); its name."""
        ...

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
        """The page `from_`..`from_ + size` of the sub-searches' top-`window` lists fused with
        `method` (rrf, minmax or zscore), weighted per sub-search in order."""
        ...

    def server_fusion_problem(self) -> str | None:
        """None when this deployment can fuse server-side, else why not (a cluster without the
        plugin that fuses, say)."""
        ...

    def server_fusion_caveats(self, index: str, method: str) -> list[str]:
        """How the server's fusion of this index differs from the client-side one, if it does."""
        ...
