"""Query layer: retrievers, fusion, paging, explain, the Python search API and the HTTP API."""
