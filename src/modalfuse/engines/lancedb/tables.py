"""What every part of the LanceDB engine shares: the connection (opened on first use and again
after a fork), table and alias names, the schema kept in each table, and write retries."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, get_args

import numpy as np

from modalfuse.engines.base import (
    Closable,
    physical_version,
)
from modalfuse.engines.lancedb.aliases import AliasFile, stored_files
from modalfuse.engines.lancedb.reader import AsyncReader
from modalfuse.errors import (
    EngineUnavailable,
    IndexNotFound,
)
from modalfuse.mappings import lancedb as layout
from modalfuse.mappings.schema import ResolvedSchema, StoredKind
from modalfuse.settings import Settings

T = TypeVar("T")
NOT_DELETED = "`_deleted` = FALSE"
# Columns of ours, never a document field.
BOOKKEEPING = {layout.VERSION, layout.DELETED, layout.UPDATED_AT}
# Lance resolves many concurrent commits itself; the rest ("Retryable commit conflict": a
# compaction or index build preempted by a write, or the reverse) are retried here.
_WRITE_ATTEMPTS = 8


class Tables(Closable):
    """Connection, names and schemas; the engine's parts build on it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._uri = settings.lancedb_location
        self._db: Any = None
        self._pid: int | None = None
        self._tables: dict[str, Any] = {}
        self._aliases = AliasFile(Path(self._uri))
        # Per physical table, one file per kind of stored settings (`_fusion.json`, ...).
        self._stored = {
            kind: AliasFile(Path(self._uri), *stored_files(kind)) for kind in get_args(StoredKind)
        }
        self._reader = AsyncReader(self._uri)
        self._schemas: dict[bytes, ResolvedSchema] = {}
        # Commits retried after a conflict with another writer (shown in stats and summaries).
        self.commit_retries = 0

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

    def stored_settings(self, name: str, kind: StoredKind) -> dict[str, Any] | None:
        _, physical = self._resolve(name)
        raw = self._stored[kind].read().get(physical)
        return json.loads(raw) if raw else None

    def store_settings(self, name: str, kind: StoredKind, value: Mapping[str, Any] | None) -> str:
        self._table(name)  # an unknown index is an error, not a silent new entry
        _, physical = self._resolve(name)
        with self._stored[kind].edit() as entries:
            if value is None:
                entries.pop(physical, None)
            else:
                entries[physical] = json.dumps(dict(value), sort_keys=True)
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

    def _with_retries(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return fn()
            except (RuntimeError, OSError) as e:
                # Rows were checked one by one before the write, so what fails here is the
                # storage or a commit race: worth retrying, here and then by the caller.
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise EngineUnavailable(f"LanceDB {what} failed: {e}") from e
                self.commit_retries += 1
                time.sleep(min(0.05 * 2**attempt, 2.0) * (1 + np.random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._reader.close()
        self._tables = {}
        self._db = None
