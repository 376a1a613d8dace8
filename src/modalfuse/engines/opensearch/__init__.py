"""OpenSearch: pure request builders (`queries`, `bulk`) and the thin client (`engine`)."""

from modalfuse.engines.opensearch.engine import OpenSearchEngine

__all__ = ["OpenSearchEngine"]
