"""What the query layer reads of an index besides its documents, cached: the schema and the
settings stored with it (default fusion, default ranking, merchandising rules)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from modalfuse.engines.base import Catalogue
from modalfuse.mappings.schema import ResolvedSchema, StoredKind
from modalfuse.query.fusion_config import FusionConfig, parse_fusion_config
from modalfuse.query.hits import parse_stored
from modalfuse.query.ranking.models import RankingConfig
from modalfuse.query.ranking.rules import RuleSet

T = TypeVar("T")
# How long an index's schema and stored settings are kept before they are read again.
STORED_TTL_S = 30.0


class IndexSettings:
    """Re-read every STORED_TTL_S seconds; `forget` re-reads an index at once (after this
    process changed its rules or defaults)."""

    def __init__(self, catalogue: Callable[[], Catalogue]) -> None:
        self._catalogue = catalogue
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def _cached(self, index: str, kind: str, read: Callable[[], T]) -> T:
        hit = self._cache.get((index, kind))
        if hit is not None and time.monotonic() - hit[0] < STORED_TTL_S:
            return cast(T, hit[1])
        value = read()
        self._cache[(index, kind)] = (time.monotonic(), value)
        return value

    def _stored(self, index: str, kind: StoredKind, parse: Callable[[Any], T]) -> T | None:
        def read() -> T | None:
            raw = self._catalogue().stored_settings(index, kind)
            return parse(raw) if raw else None

        return self._cached(index, kind, read)

    def schema(self, index: str) -> ResolvedSchema:
        return self._cached(index, "schema", lambda: self._catalogue().schema_of(index))

    def fusion(self, index: str) -> FusionConfig | None:
        """The index's default fusion (`modalfuse index set-fusion`)."""
        origin = f"index {index!r} fusion default"
        return self._stored(index, "fusion", lambda raw: parse_fusion_config(raw, origin=origin))

    def ranking(self, index: str) -> RankingConfig | None:
        """The index's default ranking (`modalfuse index set-ranking`)."""
        return self._stored(
            index, "ranking", lambda raw: parse_stored(RankingConfig, raw, index, "ranking")
        )

    def rules(self, index: str) -> RuleSet:
        """The index's merchandising rules (`modalfuse rules`)."""
        found = self._stored(index, "rules", lambda raw: parse_stored(RuleSet, raw, index, "rules"))
        return found or RuleSet()

    def forget(self, index: str) -> None:
        self._cache = {k: v for k, v in self._cache.items() if k[0] != index}
