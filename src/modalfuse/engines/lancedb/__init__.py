"""LanceDB, the embedded default: one table per physical index, aliases in a small JSON file."""

from modalfuse.engines.lancedb.engine import LanceDBEngine

__all__ = ["LanceDBEngine"]
