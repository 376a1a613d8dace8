"""The index schema and everything derived from it (OpenSearch mappings, LanceDB schema)."""
