"""Search engines behind one protocol: one module per engine (OpenSearch, LanceDB)."""

from __future__ import annotations

from modalfuse.engines.base import Engine
from modalfuse.settings import EngineName, Settings


def open_engine(settings: Settings, name: EngineName | None = None) -> Engine:
    """The engine named in settings (or `name`); it connects lazily, on first use."""
    chosen = name or settings.engine
    if chosen == "opensearch":
        from modalfuse.engines.opensearch import OpenSearchEngine

        return OpenSearchEngine(settings)
    from modalfuse.engines.lancedb import LanceDBEngine

    return LanceDBEngine(settings)


__all__ = ["Engine", "open_engine"]
