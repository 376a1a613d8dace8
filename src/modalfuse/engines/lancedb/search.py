"""The LanceDB engine's reads: BM25 per text field combined as OpenSearch's `best_fields`, kNN,
several sub-searches at once on the async reader, fetches and facets."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from modalfuse.engines.base import (
    MULTI_FIELD_TIE_BREAKER,
    Hit,
    KnnQuery,
    LexicalQuery,
    SubSearch,
)
from modalfuse.engines.lancedb import filters as sql
from modalfuse.engines.lancedb.tables import BOOKKEEPING, NOT_DELETED, Tables
from modalfuse.errors import (
    RetrievalError,
)
from modalfuse.mappings import lancedb as layout
from modalfuse.mappings.analysis import SHADOW_SUFFIX
from modalfuse.mappings.schema import ResolvedSchema


class Search(Tables):
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

    def _returned(
        self, table: Any, resolved: ResolvedSchema, source: bool = True, fields: Sequence[str] = ()
    ) -> list[str]:
        if not source:
            present = set(table.schema.names)
            return [layout.ID, *(f for f in fields if f in present and f != layout.ID)]
        return [
            f.name
            for f in table.schema
            if f.name not in BOOKKEEPING
            and f.name not in resolved.vectors
            and not f.name.endswith(SHADOW_SUFFIX)
        ]

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
        table = self._table(index)
        resolved = self._resolved(table)
        columns = (
            self._returned(table, resolved, False, fields)
            if fields
            else self._returned(table, resolved)
        )
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
        resolved = self._resolved(table)
        columns = [*self._returned(table, resolved, query.source, query.returned), "_score"]
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
        columns = [
            *self._returned(table, self._resolved(table), query.source, query.returned),
            "_distance",
        ]
        predicate = self._predicate(table, query.filters)
        metric = layout.METRIC[vec.field.similarity]
        # Without one, the schema's ef_search, as on OpenSearch. A refined search asks the
        # graph for k x refine candidates, and LanceDB needs ef at least that wide.
        refine = self._settings.lancedb_refine_factor
        ef = max(query.ef_search or vec.field.hnsw.ef_search, query.k * (refine or 1))

        async def rows() -> list[dict[str, Any]]:
            search = await (await self._reader.table(physical)).search(
                vector, vector_column_name=query.field
            )
            search = search.distance_type(metric)
            search = search.ef(ef)
            if refine:
                search = search.refine_factor(refine)
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
