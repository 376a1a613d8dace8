"""modalfuse: multimodal hybrid search. BM25 beside dense text and image vectors, fused (by
default `auto`: min-max scores, one vote per query embedding; RRF and score normalisation by
name), then ranked like a shop.

The Python API:

    from modalfuse import Indexer, Searcher, SearchRequest, Settings, create_index, open_engine

    settings = Settings(engine="lancedb", index="products")
    with open_engine(settings) as engine:
        create_index(engine, settings, name=settings.index, if_missing=True)
    with Indexer(settings=settings) as indexer:
        indexer.add([{"id": "1", "title": "Red summer dress"}])
    with Searcher(settings) as searcher:
        response = searcher.search(SearchRequest(text="red dress"))

The names load on first use, so `import modalfuse` (every worker process does) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modalfuse.errors import ModalfuseError
from modalfuse.settings import Settings

if TYPE_CHECKING:
    from modalfuse.engines import open_engine
    from modalfuse.query.request import SearchRequest, SearchResponse
    from modalfuse.query.searcher import Searcher
    from modalfuse.service.indexer import Indexer, IndexReport

__version__ = "0.1.0"
_LAZY = {
    "Indexer": "modalfuse.service.indexer",
    "IndexReport": "modalfuse.service.indexer",
    "Searcher": "modalfuse.query.searcher",
    "SearchRequest": "modalfuse.query.request",
    "SearchResponse": "modalfuse.query.request",
    "open_engine": "modalfuse.engines",
    "create_index": "modalfuse.service.indexes",
}
__all__ = [
    "IndexReport",
    "Indexer",
    "ModalfuseError",
    "SearchRequest",
    "SearchResponse",
    "Searcher",
    "Settings",
    "__version__",
    "create_index",
    "open_engine",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modalfuse' has no attribute {name!r}")
