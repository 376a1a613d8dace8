"""The LanceDB engine: the same protocol as OpenSearch, embedded in the process.

- Each physical index is a table `<alias>-v<N>`; the table's Arrow metadata keeps its schema.
- Writes are `merge_insert` on `id` with the condition `target._version <= source._version`,
  the rule OpenSearch applies with `version_type: external_gte`. Deletes write tombstone rows
  (no text, no vectors) under the same rule, so an older upsert cannot resurrect a document;
  `optimize()` purges tombstones older than `tombstone_retention_s`.
- The connection opens on first use and again after a fork: LanceDB crashes in a child that
  uses a connection opened by its parent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from modalfuse.engines.base import (
    MULTI_FIELD_TIE_BREAKER,
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
from modalfuse.engines.lancedb import filters as sql
from modalfuse.engines.lancedb.aliases import FUSION_FILE, FUSION_LOCK, AliasFile
from modalfuse.engines.lancedb.reader import AsyncReader
from modalfuse.errors import (
    ConfigError,
    EngineUnavailable,
    IndexingError,
    IndexNotFound,
    RetrievalError,
)
from modalfuse.mappings import lancedb as layout
from modalfuse.mappings.schema import DateField, ResolvedSchema
from modalfuse.settings import Settings

T = TypeVar("T")
NOT_DELETED = "`_deleted` = FALSE"
_BOOKKEEPING = {layout.VERSION, layout.DELETED, layout.UPDATED_AT}
# Lance retries commit conflicts itself; this covers the rarer "too many concurrent writers".
_WRITE_ATTEMPTS = 5


class LanceDBEngine:
    name = "lancedb"
    # Compaction, tombstone purging and ANN builds happen only when optimize() runs.
    needs_periodic_optimize = True

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._uri = settings.lancedb_location
        self._db: Any = None
        self._pid: int | None = None
        self._tables: dict[str, Any] = {}
        self._aliases = AliasFile(Path(self._uri))
        self._fusion = AliasFile(Path(self._uri), FUSION_FILE, FUSION_LOCK)
        self._reader = AsyncReader(self._uri)
        self._schemas: dict[bytes, ResolvedSchema] = {}

    @property
    def db(self) -> Any:
        if self._db is None or self._pid != os.getpid():
            import lancedb

            Path(self._uri).mkdir(parents=True, exist_ok=True)
            # Strong read consistency: see other processes' commits on every read.
            self._db = lancedb.connect(self._uri, read_consistency_interval=timedelta(0))
            self._pid = os.getpid()
            self._tables = {}
        return self._db

    # -- names ---------------------------------------------------------------------------

    def table_names(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            page = self.db.list_tables(page_token=token, limit=1000)
            names += list(page.tables)
            token = page.page_token
            if not token:
                return names

    def alias_target(self, alias: str) -> str | None:
        return self._aliases.read().get(alias)

    def versions(self, alias: str) -> list[str]:
        named = [(physical_version(alias, n), n) for n in self.table_names()]
        return [n for v, n in sorted((v, n) for v, n in named if v is not None)]

    def _resolve(self, name: str) -> tuple[str | None, str]:
        target = self.alias_target(name)
        return (name, target) if target is not None else (None, name)

    def _table(self, name: str) -> Any:
        _, physical = self._resolve(name)
        self.db  # noqa: B018 - reconnects (and clears the table cache) after a fork
        if physical not in self._tables:
            try:
                self._tables[physical] = self.db.open_table(physical)
            except (ValueError, FileNotFoundError) as e:
                raise IndexNotFound(f"no LanceDB table or alias {name!r} in {self._uri}") from e
        return self._tables[physical]

    def schema_of(self, name: str) -> ResolvedSchema:
        return self._resolved(self._table(name))

    def fusion_defaults(self, name: str) -> dict[str, Any] | None:
        _, physical = self._resolve(name)
        raw = self._fusion.read().get(physical)
        return json.loads(raw) if raw else None

    def set_fusion_defaults(self, name: str, config: Mapping[str, Any] | None) -> str:
        self._table(name)  # an unknown index is an error, not a silent new entry
        _, physical = self._resolve(name)
        with self._fusion.edit() as entries:
            if config is None:
                entries.pop(physical, None)
            else:
                entries[physical] = json.dumps(dict(config), sort_keys=True)
        return physical

    def _resolved(self, table: Any) -> ResolvedSchema:
        """The table's schema, parsed once per distinct metadata (it is read on every query)."""
        arrow = table.schema
        key = (arrow.metadata or {}).get(layout.SCHEMA_META, b"") + (arrow.metadata or {}).get(
            layout.DIMS_META, b""
        )
        if key not in self._schemas:
            self._schemas[key] = layout.schema_from_arrow(arrow)
        return self._schemas[key]

    # -- lifecycle -----------------------------------------------------------------------

    def create_body(self, schema: ResolvedSchema) -> dict[str, Any]:
        return {
            "columns": {f.name: str(f.type) for f in layout.arrow_schema(schema)},
            "fts": {f.name: layout.fts_options(f.analyzer) for f in schema.schema.text_fields},
        }

    def create(self, schema: ResolvedSchema) -> str:
        from lancedb.index import FTS, BTree

        alias = schema.name
        n = max((physical_version(alias, x) or 0 for x in self.versions(alias)), default=0) + 1
        name = physical_name(alias, n)
        table = self.db.create_table(name, schema=layout.arrow_schema(schema))
        table.create_index(layout.ID, config=BTree())
        for f in schema.schema.text_fields:
            table.create_index(f.name, config=FTS(**layout.fts_options(f.analyzer)))
        with self._aliases.edit() as aliases:
            aliases.setdefault(alias, name)
        return name

    def swap(self, alias: str, target: str, *, keep_old: bool = True) -> SwapResult:
        if target not in self.table_names():
            raise IndexNotFound(f"no table {target!r} to point {alias!r} at")
        with self._aliases.edit() as aliases:
            previous = aliases.get(alias)
            aliases[alias] = target
        dropped = None
        if previous is not None and previous != target and not keep_old:
            self._drop_table(previous)
            dropped = previous
        return SwapResult(alias=alias, previous=previous, current=target, dropped=dropped)

    def _drop_table(self, name: str) -> None:
        self._tables.pop(name, None)
        self._reader.forget(name)
        self.db.drop_table(name)

    def drop(self, name: str) -> list[str]:
        if self.alias_target(name) is not None:
            names = self.versions(name)
            for n in names:
                self._drop_table(n)
            with self._aliases.edit() as aliases:
                aliases.pop(name, None)
            return names
        if name not in self.table_names():
            raise IndexNotFound(f"no LanceDB table or alias {name!r}")
        current = {t: a for a, t in self._aliases.read().items()}
        if name in current:
            raise ConfigError(
                f"{name!r} is the current index of alias {current[name]!r}: swap the alias "
                f"first, or drop {current[name]!r} to remove every version"
            )
        self._drop_table(name)
        return [name]

    def stats(self, name: str) -> IndexStats:
        alias, physical = self._resolve(name)
        table = self._table(physical)
        resolved = layout.schema_from_arrow(table.schema)
        path = Path(self._uri) / f"{physical}.lance"
        size = (
            sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else None
        )
        return IndexStats(
            alias=alias,
            index=physical,
            documents=table.count_rows(NOT_DELETED),
            vector_fields={k: v.dim for k, v in resolved.vectors.items()},
            size_bytes=size,
            versions=self.versions(alias) if alias else [physical],
            details={
                "tombstones": table.count_rows(f"`{layout.DELETED}` = TRUE"),
                "table_version": table.version,
                "indices": sorted(ix.name for ix in table.list_indices()),
                "ann": self._has_ann(table, resolved),
            },
        )

    def refresh(self, index: str) -> None:
        """Writes are visible at once on LanceDB; kept for protocol symmetry."""

    def optimize(self, index: str) -> None:
        """Purge expired tombstones, build ANN indices past the size threshold, compact."""
        from lancedb.index import IvfHnswSq

        table = self._table(index)
        resolved = layout.schema_from_arrow(table.schema)
        cutoff = datetime.now(UTC) - timedelta(seconds=self._settings.tombstone_retention_s)
        table.delete(f"`{layout.DELETED}` = TRUE AND `{layout.UPDATED_AT}` < {sql.literal(cutoff)}")
        if table.count_rows(NOT_DELETED) >= self._settings.lancedb_ann_threshold:
            indexed = {c for ix in table.list_indices() for c in ix.columns}
            for name, vec in resolved.vectors.items():
                if name not in indexed:
                    table.create_index(
                        name,
                        config=IvfHnswSq(
                            distance_type=layout.METRIC[vec.field.similarity],
                            m=vec.field.hnsw.m,
                            ef_construction=vec.field.hnsw.ef_construction,
                        ),
                    )
        table.optimize()

    @staticmethod
    def _has_ann(table: Any, resolved: ResolvedSchema) -> bool:
        indexed = {c for ix in table.list_indices() for c in ix.columns}
        return any(name in indexed for name in resolved.vectors)

    # -- dead letters --------------------------------------------------------------------

    def _dead_letter_table(self, index: str, *, create: bool) -> Any:
        name = dead_letter_name(index)
        if name in self._tables:
            return self._tables[name]
        if name in self.table_names():
            table = self.db.open_table(name)
        elif create:
            table = self.db.create_table(name, schema=layout.DEAD_LETTER_SCHEMA, exist_ok=True)
        else:
            return None
        self._tables[name] = table
        return table

    def dead_letter(self, index: str, records: Sequence[DeadLetter]) -> None:
        if not records:
            return
        table = self._dead_letter_table(index, create=True)
        rows = [dataclasses.asdict(r) for r in records]
        self._with_retries("dead-letter", lambda: table.add(rows))

    def dead_letters(self, index: str, *, limit: int = 100) -> list[DeadLetter]:
        table = self._dead_letter_table(index, create=False)
        if table is None:
            return []
        rows = table.search().limit(None).to_list()
        rows.sort(key=lambda r: r["time"], reverse=True)
        return [DeadLetter(**r) for r in rows[:limit]]

    def drop_dead_letters(self, index: str, ids: Sequence[str] | None = None) -> int:
        table = self._dead_letter_table(index, create=False)
        if table is None:
            return 0
        before = int(table.count_rows())
        if ids is None:
            table.delete("true")
        elif ids:
            table.delete(f"`id` IN ({', '.join(sql.literal(i) for i in ids)})")
        return before - int(table.count_rows())

    def append_query_log(self, records: Sequence[dict[str, Any]]) -> None:
        from modalfuse.query.querylog import QUERY_LOG

        if not records:
            return
        if QUERY_LOG not in self._tables:
            self._tables[QUERY_LOG] = self.db.create_table(
                QUERY_LOG, schema=layout.QUERY_LOG_SCHEMA, exist_ok=True
            )
        table = self._tables[QUERY_LOG]
        self._with_retries("query log", lambda: table.add(list(records)))

    def recent_queries(self, *, limit: int = 100) -> list[dict[str, Any]]:
        from modalfuse.query.querylog import QUERY_LOG

        if QUERY_LOG not in self.table_names():
            return []
        rows = self.db.open_table(QUERY_LOG).search().limit(None).to_list()
        rows.sort(key=lambda r: r["time"], reverse=True)
        return [dict(r) for r in rows[:limit]]

    def close(self) -> None:
        self._reader.close()
        self._tables = {}
        self._db = None

    # -- writes --------------------------------------------------------------------------

    def _row(
        self, resolved: ResolvedSchema, doc_id: str, version: int, now: datetime, **values: Any
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            layout.ID: doc_id,
            layout.VERSION: version,
            layout.DELETED: values.pop("_deleted", False),
            layout.UPDATED_AT: now,
        }
        for f in resolved.stored_fields():
            value = values.get(f.name)
            if isinstance(f, DateField) and isinstance(value, str):
                value = datetime.fromisoformat(value)
            elif isinstance(value, np.ndarray):
                value = value.astype(np.float32, copy=False).tolist()
            row[f.name] = value
        return row

    def _existing_versions(self, table: Any, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            predicate = f"`{layout.ID}` IN ({', '.join(sql.literal(i) for i in chunk)})"
            rows = (
                table.search()
                .where(predicate)
                .select([layout.ID, layout.VERSION])
                .limit(len(chunk))
                .to_list()
            )
            out.update({r[layout.ID]: int(r[layout.VERSION]) for r in rows})
        return out

    def _merge(self, index: str, rows: list[tuple[str, int, dict[str, Any]]]) -> WriteResult:
        """Conditionally upsert `(id, version, row)` triples; report stale and failed ids."""
        result = WriteResult()
        if not rows:
            return result
        table = self._table(index)
        arrow_schema = table.schema
        latest: dict[str, tuple[int, dict[str, Any]]] = {}
        for doc_id, version, row in rows:
            if doc_id in latest and latest[doc_id][0] > version:
                result.stale.append(doc_id)
                continue
            if doc_id in latest:
                result.stale.append(doc_id)  # superseded inside this batch
            latest[doc_id] = (version, row)
        good, batch = self._fit(arrow_schema, [row for _, row in latest.values()], result)
        if not good:
            return result
        merged = self._with_retries(
            "merge_insert",
            lambda: (
                table.merge_insert(layout.ID)
                .when_matched_update_all(where="target._version <= source._version")
                .when_not_matched_insert_all()
                # Rows were checked above, so the only "bad" vectors left are the deliberate
                # nulls (no image, tombstones).
                .execute(batch, on_bad_vectors="null")
            ),
        )
        applied = int(merged.num_inserted_rows) + int(merged.num_updated_rows)
        # Only when some rows lost to a newer version is it worth finding out which.
        stored = (
            {}
            if applied == len(good)
            else self._existing_versions(table, [r[layout.ID] for r in good])
        )
        for r in good:
            doc_id, version = r[layout.ID], r[layout.VERSION]
            if stored.get(doc_id, version) > version:
                result.stale.append(doc_id)
            else:
                result.written.append(doc_id)
        return result

    @staticmethod
    def _fit(
        arrow_schema: pa.Schema, rows: list[dict[str, Any]], result: WriteResult
    ) -> tuple[list[dict[str, Any]], pa.Table | None]:
        """Rows as one Arrow table; rows that do not fit fail alone, with their id."""
        try:
            return rows, pa.Table.from_pylist(rows, schema=arrow_schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            pass
        good = []
        for row in rows:
            try:
                pa.Table.from_pylist([row], schema=arrow_schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
                result.failed.append(
                    IndexingError(f"does not fit the table: {e}", doc_id=row[layout.ID])
                )
                continue
            good.append(row)
        return good, pa.Table.from_pylist(good, schema=arrow_schema) if good else None

    def _with_retries(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return fn()
            except (RuntimeError, OSError) as e:
                # Rows were checked one by one before the write, so what fails here is the
                # storage or a commit race: worth retrying, here and then by the caller.
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise EngineUnavailable(f"LanceDB {what} failed: {e}") from e
                time.sleep(min(0.05 * 2**attempt, 1.0) * (1 + np.random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def upsert(self, index: str, docs: Sequence[Document]) -> WriteResult:
        if not docs:
            return WriteResult()
        resolved = self.schema_of(index)
        now = datetime.now(UTC)
        rows = []
        for d in docs:
            unknown = set(d.vectors) - set(resolved.vectors)
            if unknown:
                raise IndexingError(f"vectors for unknown fields {sorted(unknown)}", doc_id=d.id)
            rows.append(
                (
                    d.id,
                    d.version,
                    self._row(resolved, d.id, d.version, now, **d.fields, **d.vectors),
                )
            )
        return self._merge(index, rows)

    def delete(self, index: str, deletions: Sequence[Deletion]) -> WriteResult:
        if not deletions:
            return WriteResult()
        resolved = self.schema_of(index)
        now = datetime.now(UTC)
        rows = [
            (d.id, d.version, self._row(resolved, d.id, d.version, now, _deleted=True))
            for d in deletions
        ]
        return self._merge(index, rows)

    # -- reads ---------------------------------------------------------------------------

    def _predicate(self, table: Any, filters: Sequence[Any]) -> str | None:
        # Tombstones hold no text and no vectors, so neither BM25 nor kNN can return them: the
        # `_deleted` test is only needed beside user filters (a negation matches missing
        # fields). Without filters, no predicate at all, since a prefilter costs a full scan.
        if not filters:
            return None
        return sql.where(filters, self._columns(table), base=NOT_DELETED)

    def _columns(self, table: Any) -> dict[str, pa.DataType]:
        return {f.name: f.type for f in table.schema}

    def _returned(self, table: Any, resolved: ResolvedSchema, source: bool = True) -> list[str]:
        if not source:
            return [layout.ID]
        return [
            f.name
            for f in table.schema
            if f.name not in _BOOKKEEPING and f.name not in resolved.vectors
        ]

    def fetch(
        self, index: str, ids: Sequence[str], refs: Mapping[str, Any] | None = None
    ) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        table = self._table(index)
        columns = self._returned(table, self._resolved(table))
        rows: list[dict[str, Any]] = []
        wanted = set(ids)
        if refs:
            # Row ids from the search: a direct take, several times cheaper than `id IN (...)`.
            # A compaction in between can move rows, so the ids are checked, and what did not
            # come back is looked up by id.
            known = [refs[i] for i in ids if refs.get(i) is not None]
            if known:
                taken = table.take_row_ids(known).select([*columns, layout.DELETED]).to_list()
                rows = [r for r in taken if r[layout.ID] in wanted]
        missing = wanted - {r[layout.ID] for r in rows}
        rows = [r for r in rows if not r.pop(layout.DELETED)]
        if missing:
            # A deleted document is a tombstone row until optimize() purges it: never return it.
            listed = ", ".join(sql.literal(i) for i in sorted(missing))
            predicate = f"`{layout.ID}` IN ({listed}) AND {NOT_DELETED}"
            rows += table.search().where(predicate).select(columns).limit(len(missing)).to_list()
        return {
            r[layout.ID]: {
                k: _jsonable(v) for k, v in r.items() if v is not None and k != layout.ID
            }
            for r in rows
        }

    def _hits(
        self, rows: list[dict[str, Any]], score: Callable[[dict[str, Any]], float]
    ) -> list[Hit]:
        hits = []
        for r in rows:
            s = score(r)
            # Absent fields are left out, as OpenSearch's _source leaves them out.
            src = {
                k: _jsonable(v)
                for k, v in r.items()
                if v is not None and k not in ("_score", "_distance", "_rowid", layout.ID)
            }
            hits.append(Hit(id=r[layout.ID], score=s, source=src or None, ref=r.get("_rowid")))
        return hits

    def lexical(self, index: str, query: LexicalQuery) -> list[Hit]:
        return self.search_many(index, [query])[0]

    def knn(self, index: str, query: KnnQuery) -> list[Hit]:
        return self.search_many(index, [query])[0]

    def _lexical_search(self, physical: str, table: Any, query: LexicalQuery) -> _Search | None:
        from lancedb.query import FullTextOperator, MatchQuery

        if not query.fields:
            raise RetrievalError("lexical search needs at least one text field")
        if not query.text.strip():
            return None
        columns = [*self._returned(table, self._resolved(table), query.source), "_score"]
        predicate = self._predicate(table, query.filters)

        async def one(field: str, boost: float) -> list[dict[str, Any]]:
            match = MatchQuery(
                query.text,
                field,
                boost=boost,
                operator=FullTextOperator.OR,
                fuzziness=0,
                max_expansions=50,
                prefix_length=0,
                document_granularity=None,
            )
            search = await (await self._reader.table(physical)).search(match, query_type="fts")
            return await _finish(search, predicate, columns, query.k, not query.source)

        async def rows() -> list[dict[str, Any]]:
            per_field = await asyncio.gather(*(one(f, float(b)) for f, b in query.fields.items()))
            return best_fields(per_field, query.k)

        return _Search(rows=rows, score=lambda r: float(r["_score"]), what="full-text search")

    def _knn_search(self, index: str, physical: str, table: Any, query: KnnQuery) -> _Search:
        vec = self._resolved(table).vectors.get(query.field)
        if vec is None:
            raise RetrievalError(f"{index!r} has no vector field {query.field!r}")
        vector = np.asarray(query.vector, dtype=np.float32)
        if vector.shape != (vec.dim,):
            raise RetrievalError(
                f"query vector for {query.field!r} has shape {vector.shape}, expected ({vec.dim},)"
            )
        columns = [*self._returned(table, self._resolved(table), query.source), "_distance"]
        predicate = self._predicate(table, query.filters)
        metric = layout.METRIC[vec.field.similarity]
        # Without one, the schema's ef_search, as on OpenSearch.
        ef = max(query.ef_search or vec.field.hnsw.ef_search, query.k)

        async def rows() -> list[dict[str, Any]]:
            search = await (await self._reader.table(physical)).search(
                vector, vector_column_name=query.field
            )
            search = search.distance_type(metric)
            search = search.ef(ef)
            return await _finish(search, predicate, columns, query.k, not query.source)

        # dot and cosine distances are 1 - similarity; report the similarity.
        return _Search(rows=rows, score=lambda r: 1.0 - float(r["_distance"]), what="vector search")

    def facets(
        self, index: str, fields: Sequence[str], *, size: int = 50
    ) -> dict[str, list[tuple[str, int]]]:
        import pyarrow.compute as pc

        table = self._table(index)
        columns = self._columns(table)
        unknown = [f for f in fields if f not in columns]
        if unknown:
            raise RetrievalError(f"{index!r} has no field(s) {unknown} to count")
        data = (
            table.search()
            .where(NOT_DELETED)
            .select(list(fields))
            .limit(max(table.count_rows(), 1))
            .to_arrow()
        )
        out: dict[str, list[tuple[str, int]]] = {}
        for f in fields:
            column = data.column(f)
            if pa.types.is_list(column.type):
                column = pc.list_flatten(column)
            counts = pc.value_counts(column.drop_null()).to_pylist()
            ranked = sorted(
                ((str(c["values"]), int(c["counts"])) for c in counts),
                key=lambda vc: (-vc[1], vc[0]),
            )
            out[f] = ranked[:size]
        return out

    def search_many(self, index: str, queries: Sequence[SubSearch]) -> list[list[Hit]]:
        """All sub-searches awaited together on the async reader's loop (see reader.py)."""
        _, physical = self._resolve(index)
        # One read of the schema for the whole request (each read checks for a new version).
        table = _Snapshot(schema=self._table(index).schema)
        searches = [
            self._lexical_search(physical, table, q)
            if isinstance(q, LexicalQuery)
            else self._knn_search(index, physical, table, q)
            for q in queries
        ]
        pending = [s for s in searches if s is not None]

        async def gather() -> list[list[dict[str, Any]]]:
            return list(await asyncio.gather(*(s.rows() for s in pending)))

        try:
            results = iter(self._reader.run(gather()) if pending else [])
        except (RuntimeError, ValueError, OSError) as e:
            kinds = ", ".join(sorted({s.what for s in pending}))
            raise RetrievalError(f"LanceDB {kinds} failed: {e}") from e
        return [[] if s is None else self._hits(next(results), s.score) for s in searches]


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """What planning a search reads of a table: its schema, read once."""

    schema: pa.Schema


@dataclasses.dataclass(frozen=True)
class _Search:
    rows: Callable[[], Coroutine[Any, Any, list[dict[str, Any]]]]
    score: Callable[[dict[str, Any]], float]
    what: str


async def _finish(
    search: Any, predicate: str | None, columns: list[str], k: int, row_id: bool
) -> list[dict[str, Any]]:
    if predicate is not None:
        search = search.where(predicate)  # a prefilter: k hits still come back after filtering
    search = search.select(columns).limit(k)
    if row_id:
        search = search.with_row_id()
    table: pa.Table = await search.to_arrow()
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def best_fields(per_field: Sequence[list[dict[str, Any]]], k: int) -> list[dict[str, Any]]:
    """Per-field BM25 rows combined as OpenSearch's `best_fields` multi_match combines them:
    the best field's score plus MULTI_FIELD_TIE_BREAKER times the others' (LanceDB's own
    multi-match keeps the best field alone). Each field contributes its top `k` candidates."""
    if len(per_field) == 1:
        return per_field[0][:k]
    scores: dict[str, list[float]] = {}
    first: dict[str, dict[str, Any]] = {}
    for rows in per_field:
        for r in rows:
            scores.setdefault(r[layout.ID], []).append(float(r["_score"]))
            first.setdefault(r[layout.ID], r)
    combined = []
    for doc_id, found in scores.items():
        best = max(found)
        score = best + MULTI_FIELD_TIE_BREAKER * (sum(found) - best)
        combined.append(first[doc_id] | {"_score": score})
    combined.sort(key=lambda r: (-r["_score"], r[layout.ID]))
    return combined[:k]


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
