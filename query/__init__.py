"""Query layer: retrieval, fusion, paging, explain, search API and evaluation metrics."""
