"""The LanceDB engine: the same protocol as OpenSearch, embedded in the process.

- Each physical index is a table `<alias>-v<N>`; the table's Arrow metadata keeps its schema.
- Writes are `merge_insert` on `id` with the condition `target._version <= source._version`,
  the rule OpenSearch applies with `version_type: external_gte`. Deletes write tombstone rows
  (no text, no vectors) under the same rule, so an older upsert cannot resurrect a document;
  `optimize()` purges tombstones older than `tombstone_retention_s`.
- The connection opens on first use and again after a fork: LanceDB crashes in a child that
  uses a connection opened by its parent.

This module holds the catalogue and the writes; the shared connection and names, the reads and
the side stores are its parts (`tables.py`, `search.py`, `stores.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from modalfuse.engines.base import (
    Deletion,
    Document,
    IndexStats,
    SwapResult,
    WriteResult,
    physical_name,
    physical_version,
)
from modalfuse.engines.lancedb import filters as sql
from modalfuse.engines.lancedb.search import Search
from modalfuse.engines.lancedb.stores import SideStores
from modalfuse.engines.lancedb.tables import NOT_DELETED
from modalfuse.errors import (
    ConfigError,
    IndexingError,
    IndexNotFound,
)
from modalfuse.mappings import lancedb as layout
from modalfuse.mappings.analysis import pre_analyzed, shadow_field, with_tokens
from modalfuse.mappings.schema import DateField, ResolvedSchema


class LanceDBEngine(Search, SideStores):
    name = "lancedb"
    # Compaction, tombstone purging and ANN builds happen only when optimize() runs.
    needs_periodic_optimize = True

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
        table = self._with_retries(
            "create table", lambda: self.db.create_table(name, schema=layout.arrow_schema(schema))
        )
        self._with_retries("index build", lambda: table.create_index(layout.ID, config=BTree()))
        analysed = pre_analyzed(schema.schema.text_fields)
        for f in schema.schema.text_fields:
            options = FTS(**layout.fts_options(f.analyzer))
            # A pre-analysed field is searched through its tokens' column.
            column = shadow_field(f.name) if f.name in analysed else f.name
            self._with_retries(
                "index build", functools.partial(table.create_index, column, config=options)
            )
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
        self._with_retries("drop table", lambda: self.db.drop_table(name))

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
        purge = f"`{layout.DELETED}` = TRUE AND `{layout.UPDATED_AT}` < {sql.literal(cutoff)}"
        # Each step is its own commit and may meet a worker's: each retries on its own.
        self._with_retries("tombstone purge", lambda: table.delete(purge))
        if table.count_rows(NOT_DELETED) >= self._settings.lancedb_ann_threshold:
            indexed = {c for ix in table.list_indices() for c in ix.columns}
            for name, vec in resolved.vectors.items():
                if name not in indexed:
                    config = IvfHnswSq(
                        distance_type=layout.METRIC[vec.field.similarity],
                        m=vec.field.hnsw.m,
                        ef_construction=vec.field.hnsw.ef_construction,
                    )
                    self._with_retries(
                        "index build", functools.partial(table.create_index, name, config=config)
                    )
        self._with_retries("compaction", lambda: table.optimize())

    @staticmethod
    def _has_ann(table: Any, resolved: ResolvedSchema) -> bool:
        indexed = {c for ix in table.list_indices() for c in ix.columns}
        return any(name in indexed for name in resolved.vectors)

    # -- writes --------------------------------------------------------------------------

    def _row(
        self,
        resolved: ResolvedSchema,
        doc_id: str,
        version: int,
        now: datetime,
        analysed: Sequence[str] = (),
        **values: Any,
    ) -> dict[str, Any]:
        """One table row; `analysed` names the pre-analysed text fields (found once per batch)."""
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
        if analysed:
            tokens = with_tokens(values, analysed)
            row |= {shadow_field(n): tokens.get(shadow_field(n)) for n in analysed}
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

    def upsert(self, index: str, docs: Sequence[Document]) -> WriteResult:
        if not docs:
            return WriteResult()
        resolved = self.schema_of(index)
        now = datetime.now(UTC)
        analysed = pre_analyzed(resolved.schema.text_fields)
        rows = []
        for d in docs:
            unknown = set(d.vectors) - set(resolved.vectors)
            if unknown:
                raise IndexingError(f"vectors for unknown fields {sorted(unknown)}", doc_id=d.id)
            rows.append(
                (
                    d.id,
                    d.version,
                    self._row(resolved, d.id, d.version, now, analysed, **d.fields, **d.vectors),
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
