"""The LanceDB engine's side stores: dead letters (`<index>-deadletter`) and the query log."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from modalfuse.engines.base import (
    DeadLetter,
    dead_letter_name,
)
from modalfuse.engines.lancedb import filters as sql
from modalfuse.engines.lancedb.tables import Tables
from modalfuse.mappings import lancedb as layout
from modalfuse.mappings.querylog import QUERY_LOG, QueryLogRecord


class SideStores(Tables):
    # -- dead letters --------------------------------------------------------------------

    def _dead_letter_table(self, index: str, *, create: bool) -> Any:
        name = dead_letter_name(index)
        if name in self._tables:
            return self._tables[name]
        if name in self.table_names():
            table = self.db.open_table(name)
        elif create:
            table = self._with_retries(
                "create dead-letter table",
                lambda: self.db.create_table(name, schema=layout.DEAD_LETTER_SCHEMA, exist_ok=True),
            )
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
            self._with_retries("dead-letter delete", lambda: table.delete("true"))
        elif ids:
            where = f"`id` IN ({', '.join(sql.literal(i) for i in ids)})"
            self._with_retries("dead-letter delete", lambda: table.delete(where))
        return before - int(table.count_rows())

    def append_query_log(self, records: Sequence[QueryLogRecord]) -> None:
        if not records:
            return
        if QUERY_LOG not in self._tables:
            self._tables[QUERY_LOG] = self._with_retries(
                "create query log",
                lambda: self.db.create_table(
                    QUERY_LOG, schema=layout.QUERY_LOG_SCHEMA, exist_ok=True
                ),
            )
        table = self._tables[QUERY_LOG]
        self._with_retries("query log", lambda: table.add(list(records)))

    def recent_queries(self, *, limit: int = 100) -> list[dict[str, Any]]:
        if QUERY_LOG not in self.table_names():
            return []
        rows = self.db.open_table(QUERY_LOG).search().limit(None).to_list()
        rows.sort(key=lambda r: r["time"], reverse=True)
        return [dict(r) for r in rows[:limit]]
