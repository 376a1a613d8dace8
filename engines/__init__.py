"""Search engines behind one protocol: one module per engine (OpenSearch, LanceDB)."""
